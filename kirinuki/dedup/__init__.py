"""Dedup stage: every quote of the same news article across the corpus, clustered into articles.

In: the excerpts of a build (ids, headlines, normalised bodies, dates, outlets). Out: `articles`,
`article_paragraphs`, `article_quotes` (each excerpt's article) and `dedup_links` tables. The algorithm is in
`clusters` (with `minhash`, `candidates`, `articles`), its large temporaries in `spill`, the run over a
build's parts in `parts`, reuse of the last build's output in `state`, and of its unchanged
articles in `memo`.
"""

from kirinuki.dedup.candidates import candidate_pairs, overlap
from kirinuki.dedup.clusters import UnionFind, article_id_for, deduplicate, find_clusters
from kirinuki.dedup.minhash import paragraph_key, shingle_hashes, sketch
from kirinuki.dedup.model import DedupConfig, DedupResult, Excerpt
from kirinuki.dedup.parts import dedup_parts, read_excerpts
from kirinuki.dedup.state import dedup_key, keep_dedup, kept_state_digests, reuse_dedup

__all__ = ["DedupConfig", "DedupResult", "Excerpt", "UnionFind", "article_id_for", "candidate_pairs",
           "dedup_key", "dedup_parts", "deduplicate", "find_clusters", "keep_dedup", "kept_state_digests",
           "overlap", "paragraph_key", "read_excerpts", "reuse_dedup", "shingle_hashes", "sketch"]
