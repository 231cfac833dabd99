"""Dedup's records and parameters.

In: nothing (definitions). Out: `DedupConfig` (shingle size, LSH bands and rows, thresholds),
`Excerpt` (one quote as dedup sees it: ids, headline, normalised body, dates, outlet) and
`DedupResult` (what `deduplicate` returns: per-excerpt cluster columns, links, articles)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class DedupConfig:
    shingle: int = 5
    bands: int = 42
    rows: int = 3
    jaccard: float = 0.8
    containment: float = 0.8
    max_headlines: int = 20  # a paragraph under more distinct headlines than this is boilerplate
    paragraph_min_chars: int = 20  # shorter paragraphs are not used as exact-match keys
    min_shingles: int = 8  # excerpts with fewer 5-grams stay alone
    sample_bits: int = 1  # signatures use a consistent 1/2**bits of the 5-grams
    common_5grams: int = 100  # a sampled 5-gram held by more quotes than this before a quote stays out of its signature
    chunk: int = 1000  # texts per numpy pass
    estimate_margin: float = 0.15  # drop candidates estimated this far below both thresholds
    seed: int = 20240409

    @property
    def perms(self) -> int:
        return self.bands * self.rows

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class Excerpt:
    excerpt_id: str
    doc_id: str
    headline: str
    body_norm: str
    published: date | None
    outlet_id: str | None = None
    doc_published: date | None = None

    @property
    def body_len(self) -> int:
        return len(self.body_norm)

    @property
    def body_hash(self) -> int:
        """Equal for equal bodies (a quick test before comparing them)."""
        return hash(self.body_norm)

    @property
    def content_digest(self) -> bytes:
        """A digest of the body that is the same in every process (`body_hash` is not)."""
        return body_digest(self.body_norm.encode("utf-8"))


def body_digest(data: bytes) -> bytes:
    """Excerpt.content_digest of a body's UTF-8 bytes."""
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class DedupResult:
    cluster_id: list[str]
    relation: list[str]
    similarity: list[float]
    canonical: list[bool]
    links: pa.Table  # the dedup_links table, sorted
    articles: list[dict]  # in article_id order
    article_paragraphs: dict[str, list]  # columns, in (article_id, ordinal) order
    stats: dict
    sketches: object = None  # kirinuki.dedup.sketches.Sketches: what the next build may cluster appended quotes with
