"""Store: the build folder on disk, and reading it back.

In: Arrow tables and a build folder. Out: deterministic Parquet files (`files`), written atomically
under a lock, with checksums and the views for DuckDB; `query` opens a finished build read-only.
"""
