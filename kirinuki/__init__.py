"""kirinuki: Japanese news-clipping posts -> clean, deduplicated, validated Parquet tables."""

__version__ = "0.1.0"

# Bump when parsing or record semantics change: it keys caches and is recorded in every build.
PIPELINE_VERSION = "1"
