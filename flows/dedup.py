"""Dedup: every quote of the same article across the corpus, clustered and reconstructed.

Works on normalised excerpt bodies (`body_norm`), in four steps:

1. boilerplate: a paragraph quoted under more than `max_headlines` different headlines is a stock
   phrase (wire boilerplate, (中略) lines …) and is left out of everything below;
2. candidates: excerpts sharing an exact paragraph, and excerpts whose one-permutation MinHash
   signatures (character 5-grams, `bands` x `rows`) collide in a band — band collisions are found
   with a DuckDB self-join, not Python dicts;
3. verification: every candidate pair is compared exactly on its 5-gram sets; Jaccard >= 0.8 is a
   near-duplicate, containment |A∩B|/min(|A|,|B|) >= 0.8 a partial quote;
4. clusters: connected components of verified links (union-find), one per article.

The text compared is the body without whitespace, elision markers or boilerplate, so re-flowed
lines and (中略) gaps do not hide a duplicate. Pure functions over arrays; no Prefect here.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import wraps
from datetime import date
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa

_ELISION = re.compile(r"[(（](?:中略|後略|前略)[)）]")
_U64 = np.uint64


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
    common_5grams: int = 100  # sampled 5-grams seen more often than this stay out of signatures
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
        return hash(self.body_norm)


class SpillFile:
    """An unlinked temporary file (in `spill_dir`) that data is appended to and read back from by
    offset with pread: thread-safe, and held by the page cache rather than the process."""

    def __init__(self, spill_dir: str | None, prefix: str):
        import tempfile

        self.file = tempfile.TemporaryFile(dir=spill_dir, prefix=prefix)
        self.size = 0

    def append(self, data: bytes) -> int:
        """Write `data` at the end; returns the offset it starts at."""
        start = self.size
        self.file.write(data)
        self.size += len(data)
        return start

    def flush(self) -> None:
        self.file.flush()

    def read(self, start: int, n: int) -> bytes:
        return os.pread(self.file.fileno(), n, start) if n > 0 else b""

    def close(self) -> None:
        self.file.close()


class BodyStore:
    """Excerpt bodies (UTF-8) in a SpillFile, read back by index: at scale the bodies are the
    corpus, too much to hold as Python strings."""

    def __init__(self, spill_dir: str | None = None):
        self.spill = SpillFile(spill_dir, "kirinuki-bodies-")
        self.offsets = [0]

    def append(self, text: str) -> int:
        data = text.encode("utf-8")
        self.offsets.append(self.spill.append(data) + len(data))
        return len(self.offsets) - 2

    def done(self) -> None:
        self.spill.flush()
        self.offsets = np.array(self.offsets, dtype=np.int64)

    def get(self, i: int) -> str:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.spill.read(start, end - start).decode("utf-8")


class StoredExcerpt(Excerpt):
    """An Excerpt whose body stays in a BodyStore until asked for; its length and hash are kept."""

    __slots__ = ("_store", "_index", "_len", "_hash")

    def __init__(self, excerpt_id: str, doc_id: str, headline: str, body: str, store: BodyStore,
                 published: date | None, outlet_id: str | None = None, doc_published: date | None = None):
        self.excerpt_id, self.doc_id, self.headline = excerpt_id, doc_id, headline
        self.published, self.outlet_id, self.doc_published = published, outlet_id, doc_published
        self._store, self._index = store, store.append(body)
        self._len, self._hash = len(body), hash(body)

    @property
    def body_norm(self) -> str:
        return self._store.get(self._index)

    @property
    def body_len(self) -> int:
        return self._len

    @property
    def body_hash(self) -> int:
        return self._hash


@dataclass
class DedupResult:
    cluster_id: list[str]
    relation: list[str]
    similarity: list[float]
    canonical: list[bool]
    links: list[dict]
    articles: list[dict]  # in article_id order
    article_paragraphs: dict[str, list]  # columns, in (article_id, ordinal) order
    stats: dict


# ---------------------------------------------------------------- text and shingles


def paragraph_key(line: str) -> str:
    """A line without whitespace or elision markers: what two quotes of a paragraph share."""
    key = "".join(line.split())
    return _ELISION.sub("", key) if "略" in key else key


def key_hash(k: str) -> int:
    """A paragraph key's 64-bit hash (Python's, so it is only compared within one run)."""
    return hash(k) & 0xFFFFFFFFFFFFFFFF


@dataclass
class LineIndex:
    """Every content line of every excerpt as numbers, not strings (the strings are most of the
    corpus again): its excerpt, its key's hash and its key's length, in body order."""

    owner: np.ndarray  # int64
    hash: np.ndarray  # uint64
    length: np.ndarray  # int64


def line_index(excerpts: list[Excerpt]) -> LineIndex:
    from array import array

    owner, hashes, lengths = array("q"), array("Q"), array("q")  # 8 bytes a line, not a Python int's 32
    for i, e in enumerate(excerpts):
        for line in e.body_norm.split("\n"):
            k = paragraph_key(line)
            if k:
                owner.append(i)
                hashes.append(key_hash(k))
                lengths.append(len(k))
    return LineIndex(np.frombuffer(owner, np.int64).copy(), np.frombuffer(hashes, np.uint64).copy(),
                     np.frombuffer(lengths, np.int64).copy())


def boilerplate_keys(excerpts: list[Excerpt], lines: LineIndex, cfg: DedupConfig) -> set[int]:
    """Hashes of the keys found under more than `max_headlines` distinct headlines."""
    headline_ids: dict[str, int] = {}
    hid = np.array([headline_ids.setdefault(e.headline, len(headline_ids)) for e in excerpts], np.int64)
    h, heads = _distinct_pairs(lines.hash, hid[lines.owner])
    if not len(h):
        return set()
    starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
    counts = np.diff(np.append(starts, len(h)))
    return set(h[starts[counts > cfg.max_headlines]].tolist())


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs, sorted by a then b (a sort, not np.unique: much faster here)."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


class DedupTexts:
    """The texts compared, built a slice at a time when sketch asks (never all held at once)."""

    def __init__(self, excerpts: list[Excerpt], boiler: set[int]):
        self.excerpts, self.boiler = excerpts, boiler

    def __len__(self) -> int:
        return len(self.excerpts)

    def __getitem__(self, s: slice) -> list[str]:
        return [dedup_text(e, self.boiler) for e in self.excerpts[s]]


def dedup_text(e: Excerpt, boiler: set[int]) -> str:
    """The text compared: the body's keys without boilerplate, joined."""
    return "".join(k for line in e.body_norm.split("\n") if (k := paragraph_key(line)) and key_hash(k) not in boiler)


_U32 = np.uint32


def _mix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x7FEB352D)
    h = h ^ (h >> _U32(15))
    h = h * _U32(0x846CA68B)
    return h ^ (h >> _U32(16))


def shingle_hashes(texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit polynomial hashes of every character k-gram (uint32 arithmetic), and the index of the
    text each belongs to. Collisions inside one compared pair are ~1e-4 per pair: negligible."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    n = len(cps)
    if n < k:
        return np.empty(0, np.uint32), np.empty(0, np.int32)
    m = n - k + 1
    h = cps[:m].copy()
    for j in range(1, k):
        h *= _U32(0x01000193)
        h += cps[j : m + j]
    owner = np.repeat(np.arange(len(texts), dtype=np.int32), lengths)[:m]
    # a k-gram is valid when it ends inside its own text: drop the k-1 starts before each end
    ends = np.cumsum(lengths)
    bad = (ends[:, None] - np.arange(1, k)).ravel()
    valid = np.ones(m, dtype=bool)
    valid[bad[(bad >= 0) & (bad < m)]] = False
    return h[valid], owner[valid]


def sample_values(h: np.ndarray, owner: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mix every k-gram hash once; keep a consistent 1/2**sample_bits of them (decided by the
    lowest bits, the same way in every text, so the sample's Jaccard estimates the full one)."""
    vals = _mix32(h ^ _U32(cfg.seed & 0xFFFFFFFF))
    if cfg.sample_bits:
        keep = (vals & _U32((1 << cfg.sample_bits) - 1)) == 0
        vals, owner = vals[keep], owner[keep]
    return vals, owner


def frequency_buckets(vals: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    return (vals >> _U32(cfg.sample_bits)) & _U32(0xFFFFFF)


def signatures(vals: np.ndarray, owner: np.ndarray, n: int, cfg: DedupConfig,
               counts: np.ndarray | None = None) -> np.ndarray:
    """One-permutation MinHash: the top bits of a value pick one of `perms` bins and each bin keeps
    its minimum. Values whose 5-gram is very common (per `counts`, an approximate frequency table
    over 2**24 buckets; collisions only over-count) stay out: they make unrelated texts collide in
    LSH bands. Empty bins borrow from the next non-empty bin (rotation densification)."""
    K = cfg.perms
    if counts is not None and cfg.common_5grams:
        keep = counts[frequency_buckets(vals, cfg)] <= cfg.common_5grams
        vals, owner = vals[keep], owner[keep]
    bins = ((vals.astype(np.uint64) * _U64(K)) >> _U64(32)).astype(np.int64)
    sig = np.full(n * K, 0xFFFFFFFF, dtype=np.uint32)
    np.minimum.at(sig, owner.astype(np.int64) * K + bins, vals)
    sig = sig.reshape(n, K)
    empty = sig == 0xFFFFFFFF
    rows = np.flatnonzero(empty.any(axis=1))
    if len(rows):
        sub, hole = sig[rows], empty[rows]
        pos = np.where(np.tile(~hole, 2), np.arange(2 * K, dtype=np.int16), np.int16(2 * K))
        nxt = np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1][:, :K]  # next filled bin, wrapping
        has = nxt < 2 * K
        borrowed = np.take_along_axis(sub, np.where(has, nxt % K, 0), axis=1)
        shift = (nxt - np.arange(K, dtype=np.int16)).astype(np.uint32) * _U32(0x9E3779B1)
        sig[rows] = np.where(hole & has, borrowed + shift, sub)
    return sig


def sketch(texts, cfg: DedupConfig, spill_dir: str | None = None) -> tuple[np.ndarray, "ShingleSets"]:
    """Signatures and exact shingle sets for all texts (a sequence whose slices are lists of str),
    in chunks of `chunk` texts: small numpy temporaries are much faster here than corpus-sized
    ones, and memory stays bounded. Two passes: the first writes each text's distinct 5-gram
    hashes to a file in `spill_dir` (they are ~4 bytes per character of the corpus: on disk, not
    in memory) and counts the corpus-wide 5-gram frequencies (over every occurrence); the second
    makes the signatures from the distinct hashes read back (a minimum does not care about
    repeats). Chunks run in threads: numpy releases the GIL in its loops, so this uses every core."""

    def first(s: int):
        part = texts[s : s + cfg.chunk]
        h, owner = shingle_hashes(part, cfg.shingle)
        sizes = np.diff(np.searchsorted(owner, np.arange(len(part) + 1)))
        buckets = frequency_buckets(sample_values(h, owner, cfg)[0], cfg) if cfg.common_5grams else None
        # the exact sets verification compares: each text's distinct hashes, sorted
        u = np.sort((owner.astype(np.uint64) << _U64(32)) | h)
        del h, owner
        if len(u):
            u = u[np.concatenate(([True], u[1:] != u[:-1]))]
        sets = (u & _U64(0xFFFFFFFF)).astype(np.uint32)
        bounds = np.searchsorted(u >> _U64(32), np.arange(len(part) + 1, dtype=np.uint64)).astype(np.int64)
        return sets, bounds, sizes, buckets

    store = ShingleSets(cfg.chunk, spill_dir)
    counts = np.zeros(1 << 24, np.uint32) if cfg.common_5grams else None
    pending: list[np.ndarray] = []

    def count_pending() -> None:  # one bincount per ~8M values: each costs a 2**24 table
        if pending:
            np.add(counts, np.bincount(np.concatenate(pending), minlength=1 << 24), out=counts, casting="unsafe")
            pending.clear()

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for sets, bounds, sizes, buckets in pool.map(first, range(0, len(texts), cfg.chunk)):
            store.append(sets, bounds, sizes)
            if buckets is not None:
                pending.append(buckets)
                if sum(len(b) for b in pending) >= 1 << 23:
                    count_pending()
        store.close_appends()
        if counts is not None:
            count_pending()
            counts = np.minimum(counts, 65535).astype(np.uint16)
        sig = np.empty((len(texts), cfg.perms), dtype=np.uint32)

        def second(c: int) -> None:
            s = c * cfg.chunk
            sets, bounds = store.chunk_sets(c)
            n = len(bounds) - 1
            owner = np.repeat(np.arange(n, dtype=np.int32), np.diff(bounds))
            vals, vowner = sample_values(sets, owner, cfg)
            sig[s : s + n] = signatures(vals, vowner, n, cfg, counts)

        list(pool.map(second, range(store.n_chunks)))
    return sig, store


def band_hashes(sig: np.ndarray, cfg: DedupConfig, first: int, count: int) -> np.ndarray:
    """64-bit hashes of bands first .. first+count-1 of every signature."""
    b = sig[:, first * cfg.rows : (first + count) * cfg.rows].reshape(len(sig), count, cfg.rows)
    h = np.zeros(b.shape[:2], dtype=np.uint64)
    for r in range(cfg.rows):  # widened one row at a time, not every row at once
        h = (h * _U64(0x100000001B3)) ^ b[:, :, r].astype(np.uint64)
    return h


# ---------------------------------------------------------------- candidates


def candidate_pairs(con: duckdb.DuckDBPyConnection, sig_ok: np.ndarray, sig: np.ndarray, cfg: DedupConfig,
                    para_owner: np.ndarray, para_hash: np.ndarray, bands_per_join: int = 7
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct pairs (a < b) from band collisions and shared paragraphs, with the method. The
    band self-join runs `bands_per_join` bands at a time (each join's tables and hash tables a
    fraction of the whole, and only those bands' hashes made: all of them were 200 MB at 100k
    posts), collecting pairs in a DuckDB table."""
    ids = np.flatnonzero(sig_ok).astype(np.int32)
    nb = cfg.bands
    con.execute("CREATE OR REPLACE TEMP TABLE lsh_pairs (a INTEGER, b INTEGER)")
    for g in range(0, nb, bands_per_join):
        k = min(bands_per_join, nb - g)
        band_tbl = pa.table({"e": np.repeat(ids, k), "band": np.tile(np.arange(g, g + k, dtype=np.int16), len(ids)),
                             "h": band_hashes(sig, cfg, g, k)[ids].ravel()})
        con.register("band_tbl", band_tbl)
        con.execute("""
            INSERT INTO lsh_pairs SELECT DISTINCT a.e, b.e FROM band_tbl a JOIN band_tbl b
              ON a.band = b.band AND a.h = b.h AND a.e < b.e""")
        con.unregister("band_tbl")
        del band_tbl
    para_tbl = pa.table({"e": para_owner.astype(np.int32), "h": para_hash})
    con.register("para_tbl", para_tbl)
    res = con.sql("""
        WITH lsh AS (SELECT DISTINCT a, b FROM lsh_pairs),
        para AS (
          SELECT DISTINCT a.e AS a, b.e AS b FROM para_tbl a JOIN para_tbl b
            ON a.h = b.h AND a.e < b.e)
        SELECT coalesce(l.a, p.a) AS a, coalesce(l.b, p.b) AS b,
               (l.a IS NOT NULL)::INT + 2 * (p.a IS NOT NULL)::INT AS how
        FROM lsh l FULL OUTER JOIN para p ON l.a = p.a AND l.b = p.b
        ORDER BY a, b""").to_arrow_table()
    con.unregister("para_tbl")
    con.execute("DROP TABLE lsh_pairs")
    return (res["a"].to_numpy().astype(np.int64), res["b"].to_numpy().astype(np.int64),
            res["how"].to_numpy().astype(np.int8))


def paragraph_hashes(lines: LineIndex, boiler: set[int], cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(excerpt, key hash) of every distinct long enough, non-boilerplate paragraph of each excerpt."""
    keep = lines.length >= cfg.paragraph_min_chars
    if boiler:
        keep &= ~np.isin(lines.hash, np.fromiter(boiler, np.uint64, len(boiler)))
    return _distinct_pairs(lines.owner[keep], lines.hash[keep])


# ---------------------------------------------------------------- verification and clusters


class ShingleSets:
    """Sorted distinct k-gram hashes per text (exact, not sampled), kept in a SpillFile, and each
    text's k-gram count (with repeats)."""

    def __init__(self, chunk: int, spill_dir: str | None = None):
        self.chunk = chunk
        self.spill = SpillFile(spill_dir, "kirinuki-shingles-")
        self.starts: list[int] = []  # per chunk: where its hashes begin in the file (in hashes)
        self.bounds: list[np.ndarray] = []  # per chunk: each text's range in the chunk's hashes
        self.size_parts: list[np.ndarray] = []
        self.sizes = np.zeros(0, np.int64)

    @property
    def n_chunks(self) -> int:
        return len(self.starts)

    def append(self, sets: np.ndarray, bounds: np.ndarray, sizes: np.ndarray) -> None:
        self.starts.append(self.spill.append(sets.astype("<u4", copy=False).tobytes()) // 4)
        self.bounds.append(bounds)
        self.size_parts.append(sizes)

    def close_appends(self) -> None:
        self.spill.flush()
        self.sizes = np.concatenate(self.size_parts) if self.size_parts else np.zeros(0, np.int64)
        self.size_parts = []

    def _read(self, start: int, n: int) -> np.ndarray:
        return np.frombuffer(self.spill.read(4 * start, 4 * n), dtype="<u4").astype(np.uint32, copy=False)

    def chunk_sets(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        bounds = self.bounds[c]
        return self._read(self.starts[c], int(bounds[-1])), bounds

    def __getitem__(self, i: int) -> np.ndarray:
        c, j = divmod(i, self.chunk)
        b = self.bounds[c]
        return self._read(self.starts[c] + int(b[j]), int(b[j + 1] - b[j]))

    def close(self) -> None:
        self.spill.close()


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Jaccard, containment) of two sorted distinct arrays."""
    if len(a) > len(b):
        a, b = b, a
    if not len(a):
        return 0.0, 0.0
    idx = np.searchsorted(b, a)
    idx[idx == len(b)] = 0
    inter = int(np.count_nonzero(b[idx] == a))
    return inter / (len(a) + len(b) - inter), inter / len(a)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def article_id_for(canonical_excerpt_id: str) -> str:
    return "art-" + canonical_excerpt_id


# ---------------------------------------------------------------- the stage


@dataclass
class Clusters:
    """What duplicate detection found: verified links and a root per excerpt."""

    root: list[int]
    links: list[tuple[int, int, float, float, str]]  # a, b, jaccard, containment, method
    sets: ShingleSets | None
    boiler: set[int]  # hashes of the boilerplate paragraphs' keys
    stats: dict


_METHOD = {1: "minhash", 2: "exact_paragraph", 3: "minhash+exact_paragraph"}


def without_gc(fn):
    """Run `fn` with the cyclic GC paused: dedup makes millions of short-lived keys and tuples
    with no reference cycles, which the GC would only rescan again and again (seconds at 50,000
    excerpts)."""

    @wraps(fn)
    def run(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return run


@without_gc
def find_clusters(excerpts: list[Excerpt], cfg: DedupConfig = DedupConfig(),
                  con: duckdb.DuckDBPyConnection | None = None, spill_dir: str | None = None) -> Clusters:
    """Verified links and clusters; `spill_dir` holds the exact shingle sets' temporary file
    (default: the system's temporary folder)."""
    n = len(excerpts)
    if con is None:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    lines = line_index(excerpts)
    boiler = boilerplate_keys(excerpts, lines, cfg)
    sig, sets = sketch(DedupTexts(excerpts, boiler), cfg, spill_dir)
    counts = sets.sizes
    ok = counts >= cfg.min_shingles
    lsh_ok = ok & (sig != 0xFFFFFFFF).any(axis=1)  # a signature with no 5-gram left collides with all
    p_owner, p_hash = paragraph_hashes(lines, boiler, cfg)
    del lines
    keep = ok[p_owner] if len(p_owner) else np.zeros(0, bool)
    a, b, how = candidate_pairs(con, lsh_ok, sig, cfg, p_owner[keep], p_hash[keep])
    n_candidates = len(a)

    # Cheap estimates from the signatures drop candidates far below both thresholds; shared-
    # paragraph candidates always go on to exact verification.
    est_j = np.zeros(len(a))
    for lo in range(0, len(a), 1 << 16):  # in slices: sig[a] whole would be candidates x perms x 4 bytes
        hi = lo + (1 << 16)
        est_j[lo:hi] = (sig[a[lo:hi]] == sig[b[lo:hi]]).mean(axis=1)
    size_a, size_b = counts[a].astype(float), counts[b].astype(float)
    est_c = est_j * (size_a + size_b) / (1 + est_j) / np.maximum(np.minimum(size_a, size_b), 1)
    m = cfg.estimate_margin
    promising = (est_j >= cfg.jaccard - m) | (est_c >= cfg.containment - m) | (how >= 2)
    order = np.lexsort((b, a, -est_j))  # strongest first, so redundant pairs can be skipped
    uf = UnionFind(n)
    links = []
    verified = 0
    for i in order[promising[order]].tolist():
        x, y = int(a[i]), int(b[i])
        if not (ok[x] and ok[y]) or uf.find(x) == uf.find(y):
            continue  # already connected: the link would not change any cluster
        verified += 1
        j, c = overlap(sets[x], sets[y])
        if j >= cfg.jaccard or c >= cfg.containment:
            uf.union(x, y)
            links.append((x, y, j, c, _METHOD[int(how[i])]))
    stats = {"excerpts": n, "characters": int(sum(e.body_len for e in excerpts)),
             "candidates": n_candidates, "promising": int(promising.sum()), "verified": verified,
             "links": len(links), "boilerplate_paragraphs": len(boiler), "too_short": int((~ok).sum())}
    return Clusters([uf.find(i) for i in range(n)], links, sets, boiler, stats)


@without_gc
def deduplicate(excerpts: list[Excerpt], cfg: DedupConfig = DedupConfig(),
                con: duckdb.DuckDBPyConnection | None = None, spill_dir: str | None = None,
                sink: Callable[[dict, dict[str, list]], None] | None = None) -> DedupResult:
    """Clusters plus everything built from them: relations, articles, reconstructed text. With a
    `sink`, each article and its paragraphs' columns go to `sink(article, paragraphs)` as they are
    made, in article order (the result then holds none: at scale they are the corpus's text
    again); without one, the result holds them."""
    cl = find_clusters(excerpts, cfg, con, spill_dir)
    n = len(excerpts)
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(cl.root):
        members[r].append(i)
    cluster_id = [""] * n
    relation = ["original"] * n
    similarity = [1.0] * n
    canonical = [False] * n
    groups = []
    for group in members.values():
        canon = min(group, key=lambda i: (excerpts[i].published is None, excerpts[i].published or date.min,
                                          -excerpts[i].body_len, excerpts[i].excerpt_id))
        groups.append((article_id_for(excerpts[canon].excerpt_id), canon, group))
    groups.sort()  # article order: the tables come out sorted
    for aid, canon, group in groups:
        canonical[canon] = True
        for i in group:
            cluster_id[i] = aid
            if i == canon:
                continue
            a, b = excerpts[i], excerpts[canon]
            if a.body_hash == b.body_hash and a.body_norm == b.body_norm:
                relation[i] = "exact"
                continue
            j, c = overlap(cl.sets[i], cl.sets[canon])
            similarity[i] = round(j, 6)
            relation[i] = "near" if j >= cfg.jaccard else "partial"
    cl.sets.close()  # the shingle sets are done with
    cl.sets = None
    articles: list[dict] = []
    paragraphs = _paragraph_columns("", [])  # the table's columns, empty
    for aid, canon, group in groups:
        quotes = [excerpts[i] for i in group]
        art = _article(aid, quotes, excerpts[canon])
        paras = _reconstruct(quotes, excerpts[canon], cl.boiler)
        art["text"] = "\n".join(text for text, _ in paras)
        art["n_paragraphs"] = len(paras)
        columns = _paragraph_columns(aid, paras)
        if sink is not None:
            sink(art, columns)
            continue
        articles.append(art)
        for name, values in columns.items():
            paragraphs[name].extend(values)
    links = [{"excerpt_a": excerpts[x].excerpt_id, "excerpt_b": excerpts[y].excerpt_id,
              "jaccard": round(j, 6), "containment": round(c, 6), "method": meth,
              "relation": "near" if j >= cfg.jaccard else "partial"} for x, y, j, c, meth in cl.links]
    links.sort(key=lambda r: (r["excerpt_a"], r["excerpt_b"]))
    stats = dict(cl.stats, clusters=len(members),
                 multi_quote_clusters=sum(1 for g in members.values() if len(g) > 1), config=cfg.as_dict())
    return DedupResult(cluster_id, relation, similarity, canonical, links, articles, paragraphs, stats)


def _paragraph_columns(aid: str, paras: list[tuple[str, list[str]]]) -> dict[str, list]:
    """One article's reconstructed paragraphs as the article_paragraphs table's columns."""
    return {"article_id": [aid] * len(paras), "ordinal": list(range(1, len(paras) + 1)),
            "text_norm": [text for text, _ in paras], "contributed_by": [by for _, by in paras]}


def _article(aid: str, group: list[Excerpt], canon: Excerpt) -> dict:
    heads = Counter(e.headline for e in group)
    top = max(heads.values())
    headline = canon.headline if heads[canon.headline] == top else min(h for h, c in heads.items() if c == top)
    outlets = Counter(e.outlet_id for e in group if e.outlet_id)
    first = min(group, key=lambda e: (e.doc_published is None, e.doc_published or date.min, e.doc_id))
    return {"article_id": aid, "canonical_excerpt_id": canon.excerpt_id,
            "outlet_id": canon.outlet_id or (outlets.most_common(1)[0][0] if outlets else None),
            "published_date": canon.published, "headline": headline, "n_quotes": len(group),
            "n_documents": len({e.doc_id for e in group}), "first_quoted_in": first.doc_id}


def _content_lines(e: Excerpt) -> list[tuple[str, str]]:
    """(line, its paragraph key) for every line with content."""
    return [(line, k) for line in e.body_norm.split("\n") if (k := paragraph_key(line))]


def _grams(s: str) -> frozenset[str]:
    return frozenset({s[i : i + 3] for i in range(max(1, len(s) - 2))})


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    """3-gram Jaccard >= 0.7 (the bound on sizes first: it needs min/max >= 0.7)."""
    la, lb = len(a), len(b)
    if 10 * min(la, lb) < 7 * max(la, lb):
        return False
    inter = len(a & b)
    return 10 * inter >= 7 * (la + lb - inter)


def _reconstruct(group: list[Excerpt], canon: Excerpt, boiler: set[int]) -> list[tuple[str, list[str]]]:
    """Union of the quotes' paragraphs in source order, as (text, the quotes that carry it): start
    from the canonical quote, then merge every other quote (longest first). A line matches a
    paragraph exactly, or by 3-gram Jaccard >= 0.7 among the next few paragraphs after the last
    match (changed characters); an unmatched line is inserted after the last matched one. A quote
    none of whose lines match (re-flowed) adds no paragraphs."""
    if len(group) == 1:
        return [(line, [canon.excerpt_id]) for line, _ in _content_lines(canon)]
    base = [{"text": line, "key": k, "by": {canon.excerpt_id}} for line, k in _content_lines(canon)]
    grams: dict[str, frozenset[str]] = {}

    def gram(k: str) -> frozenset[str]:
        g = grams.get(k)
        if g is None:
            g = grams[k] = _grams(k)
        return g

    for e in sorted((e for e in group if e is not canon), key=lambda e: (-e.body_len, e.excerpt_id)):
        snapshot = list(base)
        index = {p["key"]: i for i, p in enumerate(snapshot)}
        plan: list[tuple[str, str, int | None]] = []
        last = -1
        for line, k in _content_lines(e):
            m = index.get(k)
            if m is None and len(k) >= 10:
                g = gram(k)
                for i in range(last + 1, min(last + 4, len(snapshot))):
                    if _similar(g, gram(snapshot[i]["key"])):
                        m = i
                        break
            if m is not None:
                last = m
            plan.append((line, k, m))
        if all(m is None for _, _, m in plan):
            continue
        prev = None
        for line, k, m in plan:
            if m is not None:
                prev = snapshot[m]
                prev["by"].add(e.excerpt_id)
            elif key_hash(k) not in boiler:
                new = {"text": line, "key": k, "by": {e.excerpt_id}}
                base.insert(base.index(prev) + 1 if prev is not None else 0, new)
                prev = new
    return [(p["text"], sorted(p["by"])) for p in base]


# ---------------------------------------------------------------- the stage over a build's parts

CLUSTER_COLUMNS = ".dedup-columns.arrow"  # in the build folder until the excerpts table is written


def read_excerpts(parts: str, spill_dir: str | None = None) -> list[Excerpt]:
    """Every excerpt of a build's parts, in part order, a part at a time; the bodies go to a
    BodyStore file in `spill_dir`, not into memory."""
    from .batch import part_numbers, read_part

    store = BodyStore(spill_dir)
    items: list[Excerpt] = []
    shared: dict = {}  # one object per distinct doc id, headline, date and outlet (they repeat)
    one = shared.setdefault
    for n in part_numbers(parts):
        docs = read_part(parts, "documents", n, ["doc_id", "published_date"]).to_pydict()
        doc_date = dict(zip(docs["doc_id"], docs["published_date"]))
        ex = read_part(parts, "excerpts", n, ["excerpt_id", "doc_id", "headline", "body_norm", "published_date",
                                              "outlet_id"]).to_pydict()
        for i, d, h, b, p, o in zip(ex["excerpt_id"], ex["doc_id"], ex["headline"], ex["body_norm"],
                                    ex["published_date"], ex["outlet_id"]):
            dp = doc_date.get(d)
            items.append(StoredExcerpt(i, one(d, d), one(h, h), b, store, one(p, p), one(o, o), one(dp, dp)))
    store.done()
    return items


def dedup_parts(root: str, parts: str, cfg: DedupConfig, memory_mb: int) -> dict:
    """Deduplicate the excerpts of a build's parts; write articles, article_paragraphs and
    dedup_links under `root`, and the excerpts' cluster columns (in part order) to
    `root`/CLUSTER_COLUMNS for the excerpts table. Returns the stats with the row counts. Runs in a
    child process of its own on a large build, so its memory goes back to the system when done."""
    import shutil

    from .store import DUCKDB_TMP, RowGroupWriter, duckdb_for_build, to_table, write_table

    out = Path(root)
    con = duckdb_for_build(out, memory_mb)  # makes DUCKDB_TMP, where the bodies and sets spill too
    items = read_excerpts(parts, str(out / DUCKDB_TMP))
    with RowGroupWriter(out, "articles") as arts, RowGroupWriter(out, "article_paragraphs") as paras:
        def write(article: dict, paragraphs: dict[str, list]) -> None:
            arts.add_row(article)
            paras.add_columns(paragraphs)

        try:
            res = deduplicate(items, cfg, con, str(out / DUCKDB_TMP), write)
        finally:
            con.close()
            shutil.rmtree(out / DUCKDB_TMP, ignore_errors=True)
    del items
    rows = {"articles": arts.rows, "article_paragraphs": paras.rows, "dedup_links": len(res.links)}
    write_table(out, "dedup_links", to_table("dedup_links", res.links))
    columns = pa.table({"cluster_id": pa.array(res.cluster_id, pa.string()),
                        "relation": pa.array(res.relation, pa.string()),
                        "similarity": pa.array(res.similarity, pa.float64()),
                        "canonical": pa.array(res.canonical, pa.bool_())})
    with pa.OSFile(str(out / CLUSTER_COLUMNS), "wb") as f, pa.ipc.new_file(f, columns.schema) as w:
        w.write_table(columns)
    return dict(res.stats, rows=rows)


def read_cluster_columns(folder: str) -> dict[str, pa.Array]:
    """What dedup_parts left for the excerpts table (memory-mapped, not copied), in `folder`: the
    build folder, or the dedup state that keep_dedup moved it to."""
    t = pa.ipc.open_file(pa.memory_map(str(Path(folder) / CLUSTER_COLUMNS))).read_all()
    return {name: t.column(name).combine_chunks() for name in t.column_names}


# ---------------------------------------------------------------- reusing the last build's output

DEDUP_TABLES = ("articles", "article_paragraphs", "dedup_links")
STATE_FILES = (CLUSTER_COLUMNS,) + tuple(f"{name}.parquet" for name in DEDUP_TABLES)  # kept, with their sha256
STATE_FILE = "dedup.json"  # written last: a state folder without it is incomplete


def dedup_key(file_digests: list[str], cfg: DedupConfig, code: str) -> str:
    """Identity of everything dedup's output depends on: the code, its parameters and, in order,
    each file's batch.dedup_digest (what dedup reads of it)."""
    h = hashlib.sha256(json.dumps([code, cfg.as_dict()], sort_keys=True).encode())
    for d in file_digests:
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def keep_dedup(root: str, state: str, key: str, stats: dict) -> None:
    """Keep this build's dedup output in `state` (under the build's cache) for the next build:
    the cluster columns move there, the three tables are linked there, the key and stats last."""
    from .store import DATA_DIR, link_file, sha256_file, write_json

    out, st = Path(root), Path(state)
    st.mkdir(parents=True, exist_ok=True)
    os.replace(out / CLUSTER_COLUMNS, st / CLUSTER_COLUMNS)
    for name in DEDUP_TABLES:
        link_file(out / DATA_DIR / f"{name}.parquet", st / f"{name}.parquet")
    write_json(st / STATE_FILE, {"key": key, "stats": stats, "sha256": {f: sha256_file(st / f) for f in STATE_FILES}})


def reuse_dedup(old_state: str, root: str, state: str, key: str) -> dict | None:
    """When the last build's dedup ran on exactly the same input (same key), put its output in
    this build (tables under `root`, state under `state`) and return its stats; else None."""
    from .store import DATA_DIR, link_file, read_json, sha256_file, write_json

    old, st, data = Path(old_state), Path(state), Path(root) / DATA_DIR
    saved = read_json(old / STATE_FILE)
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    try:  # files damaged since are not trusted: dedup runs again
        if any(sha256_file(old / f) != saved["sha256"][f] for f in STATE_FILES):
            return None
    except (OSError, KeyError, TypeError):
        return None
    st.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    for f in STATE_FILES:
        link_file(old / f, st / f)
    for name in DEDUP_TABLES:
        link_file(st / f"{name}.parquet", data / f"{name}.parquet")
    write_json(st / STATE_FILE, saved)
    return saved["stats"]
