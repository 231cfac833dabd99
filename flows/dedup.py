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
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache, wraps
from datetime import date

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


@dataclass
class Excerpt:
    excerpt_id: str
    doc_id: str
    headline: str
    body_norm: str
    published: date | None
    outlet_id: str | None = None
    doc_published: date | None = None


@dataclass
class DedupResult:
    cluster_id: list[str]
    relation: list[str]
    similarity: list[float]
    canonical: list[bool]
    links: list[dict]
    articles: list[dict]
    article_paragraphs: list[dict]
    stats: dict


# ---------------------------------------------------------------- text and shingles


def paragraph_key(line: str) -> str:
    """A line without whitespace or elision markers: what two quotes of a paragraph share."""
    key = "".join(line.split())
    return _ELISION.sub("", key) if "略" in key else key


def line_keys(excerpts: list[Excerpt]) -> list[list[str]]:
    return [[paragraph_key(line) for line in e.body_norm.split("\n")] for e in excerpts]


def boilerplate_keys(excerpts: list[Excerpt], keys: list[list[str]], cfg: DedupConfig) -> set[str]:
    by_headline: dict[str, set[str]] = defaultdict(set)
    for e, ks in zip(excerpts, keys):
        by_headline[e.headline].update(ks)
    counts: Counter = Counter()
    for ks in by_headline.values():
        counts.update(ks)
    return {k for k, c in counts.items() if k and c > cfg.max_headlines}


def dedup_texts(keys: list[list[str]], boiler: set[str]) -> list[str]:
    return ["".join(k for k in ks if k and k not in boiler) for ks in keys]


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


def sketch(texts: list[str], cfg: DedupConfig) -> tuple[np.ndarray, "ShingleSets"]:
    """Signatures and exact shingle sets for all texts, in chunks of `chunk` texts (small numpy
    temporaries are much faster here than corpus-sized ones, and memory stays bounded). Two
    passes: the first collects sampled values and the corpus-wide 5-gram frequencies. Chunks run
    in threads: numpy releases the GIL in its loops, so this uses every core."""

    def first(s: int):
        part = texts[s : s + cfg.chunk]
        h, owner = shingle_hashes(part, cfg.shingle)
        bounds = np.searchsorted(owner, np.arange(len(part) + 1))
        vals, vowner = sample_values(h, owner, cfg)
        return s, h, bounds, vals, vowner.astype(np.int16 if cfg.chunk < 1 << 15 else np.int32)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        chunks = list(pool.map(first, range(0, len(texts), cfg.chunk)))
        counts = None
        if cfg.common_5grams and chunks:
            b = np.concatenate([frequency_buckets(c[3], cfg) for c in chunks])
            counts = np.minimum(np.bincount(b, minlength=1 << 24), 65535).astype(np.uint16)
            del b
        sig = np.empty((len(texts), cfg.perms), dtype=np.uint32)

        def second(i: int) -> None:
            s, h, bounds, vals, vowner = chunks[i]
            n = min(cfg.chunk, len(texts) - s)
            sig[s : s + n] = signatures(vals, vowner, n, cfg, counts)
            chunks[i] = (s, h, bounds, None, None)  # sampled values are no longer needed

        list(pool.map(second, range(len(chunks))))
    return sig, ShingleSets([(h, bounds) for _, h, bounds, _, _ in chunks], cfg.chunk)


def band_hashes(sig: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    b = sig.reshape(len(sig), cfg.bands, cfg.rows).astype(np.uint64)
    h = np.zeros(b.shape[:2], dtype=np.uint64)
    for r in range(cfg.rows):
        h = (h * _U64(0x100000001B3)) ^ b[:, :, r]
    return h


# ---------------------------------------------------------------- candidates


def candidate_pairs(con: duckdb.DuckDBPyConnection, sig_ok: np.ndarray, bands: np.ndarray,
                    para_owner: np.ndarray, para_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct pairs (a < b) from band collisions and shared paragraphs, with the method."""
    ids = np.flatnonzero(sig_ok)
    nb = bands.shape[1]
    band_tbl = pa.table({"e": np.repeat(ids, nb).astype(np.int32),
                         "band": np.tile(np.arange(nb, dtype=np.int16), len(ids)),
                         "h": bands[ids].ravel()})
    para_tbl = pa.table({"e": para_owner.astype(np.int32), "h": para_hash})
    con.register("band_tbl", band_tbl)
    con.register("para_tbl", para_tbl)
    res = con.sql("""
        WITH lsh AS (
          SELECT DISTINCT a.e AS a, b.e AS b FROM band_tbl a JOIN band_tbl b
            ON a.band = b.band AND a.h = b.h AND a.e < b.e),
        para AS (
          SELECT DISTINCT a.e AS a, b.e AS b FROM para_tbl a JOIN para_tbl b
            ON a.h = b.h AND a.e < b.e)
        SELECT coalesce(l.a, p.a) AS a, coalesce(l.b, p.b) AS b,
               (l.a IS NOT NULL)::INT + 2 * (p.a IS NOT NULL)::INT AS how
        FROM lsh l FULL OUTER JOIN para p ON l.a = p.a AND l.b = p.b
        ORDER BY a, b""").to_arrow_table()
    con.unregister("band_tbl")
    con.unregister("para_tbl")
    return (res["a"].to_numpy().astype(np.int64), res["b"].to_numpy().astype(np.int64),
            res["how"].to_numpy().astype(np.int8))


def paragraph_hashes(keys: list[list[str]], boiler: set[str], cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    owners, hashes = [], []
    for i, ks in enumerate(keys):
        seen = set()
        for k in ks:
            if len(k) >= cfg.paragraph_min_chars and k not in boiler and k not in seen:
                seen.add(k)
                owners.append(i)
                hashes.append(hash(k) & 0xFFFFFFFFFFFFFFFF)
    return np.array(owners, dtype=np.int64), np.array(hashes, dtype=np.uint64)


# ---------------------------------------------------------------- verification and clusters


class ShingleSets:
    """Sorted distinct k-gram hashes per text (exact, not sampled), computed on first use."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]], chunk: int):
        self.chunk = chunk
        self.parts = parts  # per chunk: hashes grouped by text, and each text's bounds in them
        self.sizes = np.concatenate([np.diff(b) for _, b in self.parts]) if self.parts else np.zeros(0, np.int64)
        self.cache: dict[int, np.ndarray] = {}

    def __getitem__(self, i: int) -> np.ndarray:
        s = self.cache.get(i)
        if s is None:
            h, bounds = self.parts[i // self.chunk]
            j = i % self.chunk
            x = np.sort(h[bounds[j] : bounds[j + 1]])
            s = self.cache[i] = x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x
        return s


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
    sets: ShingleSets
    boiler: set[str]
    stats: dict
    keys: list[list[str]]  # per excerpt, the paragraph key of each line of body_norm


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
                  con: duckdb.DuckDBPyConnection | None = None) -> Clusters:
    n = len(excerpts)
    if con is None:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    keys = line_keys(excerpts)
    boiler = boilerplate_keys(excerpts, keys, cfg)
    texts = dedup_texts(keys, boiler)
    sig, sets = sketch(texts, cfg)
    counts = sets.sizes
    ok = counts >= cfg.min_shingles
    lsh_ok = ok & (sig != 0xFFFFFFFF).any(axis=1)  # a signature with no 5-gram left collides with all
    bands = band_hashes(sig, cfg)
    p_owner, p_hash = paragraph_hashes(keys, boiler, cfg)
    keep = ok[p_owner] if len(p_owner) else np.zeros(0, bool)
    a, b, how = candidate_pairs(con, lsh_ok, bands, p_owner[keep], p_hash[keep])
    n_candidates = len(a)

    # Cheap estimates from the signatures drop candidates far below both thresholds; shared-
    # paragraph candidates always go on to exact verification.
    est_j = (sig[a] == sig[b]).mean(axis=1) if len(a) else np.zeros(0)
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
    stats = {"excerpts": n, "characters": int(sum(len(e.body_norm) for e in excerpts)),
             "candidates": n_candidates, "promising": int(promising.sum()), "verified": verified,
             "links": len(links), "boilerplate_paragraphs": len(boiler), "too_short": int((~ok).sum())}
    return Clusters([uf.find(i) for i in range(n)], links, sets, boiler, stats, keys)


@without_gc
def deduplicate(excerpts: list[Excerpt], cfg: DedupConfig = DedupConfig(),
                con: duckdb.DuckDBPyConnection | None = None) -> DedupResult:
    """Clusters plus everything built from them: relations, articles, reconstructed text."""
    cl = find_clusters(excerpts, cfg, con)
    n = len(excerpts)
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(cl.root):
        members[r].append(i)
    cluster_id = [""] * n
    relation = ["original"] * n
    similarity = [1.0] * n
    canonical = [False] * n
    articles, article_paragraphs = [], []
    for group in members.values():
        canon = min(group, key=lambda i: (excerpts[i].published is None, excerpts[i].published or date.min,
                                          -len(excerpts[i].body_norm), excerpts[i].excerpt_id))
        aid = article_id_for(excerpts[canon].excerpt_id)
        canonical[canon] = True
        for i in group:
            cluster_id[i] = aid
            if i == canon:
                continue
            if excerpts[i].body_norm == excerpts[canon].body_norm:
                relation[i] = "exact"
                continue
            j, c = overlap(cl.sets[i], cl.sets[canon])
            similarity[i] = round(j, 6)
            relation[i] = "near" if j >= cfg.jaccard else "partial"
        art = _article(aid, [excerpts[i] for i in group], excerpts[canon])
        lines = {i: _content_lines(excerpts[i], cl.keys[i]) for i in group}
        paras = _reconstruct(aid, [excerpts[i] for i in group], excerpts[canon], cl.boiler,
                             {excerpts[i].excerpt_id: lines[i] for i in group})
        art["text"] = "\n".join(p["text_norm"] for p in paras)
        art["n_paragraphs"] = len(paras)
        articles.append(art)
        article_paragraphs += paras
    articles.sort(key=lambda r: r["article_id"])
    article_paragraphs.sort(key=lambda r: (r["article_id"], r["ordinal"]))
    links = [{"excerpt_a": excerpts[x].excerpt_id, "excerpt_b": excerpts[y].excerpt_id,
              "jaccard": round(j, 6), "containment": round(c, 6), "method": meth,
              "relation": "near" if j >= cfg.jaccard else "partial"} for x, y, j, c, meth in cl.links]
    links.sort(key=lambda r: (r["excerpt_a"], r["excerpt_b"]))
    stats = dict(cl.stats, clusters=len(members),
                 multi_quote_clusters=sum(1 for g in members.values() if len(g) > 1), config=cfg.as_dict())
    return DedupResult(cluster_id, relation, similarity, canonical, links, articles, article_paragraphs, stats)


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


def _content_lines(e: Excerpt, keys: list[str]) -> list[tuple[str, str]]:
    """(line, its paragraph key) for every line with content."""
    return [(line, k) for line, k in zip(e.body_norm.split("\n"), keys) if k]


@lru_cache(maxsize=65536)
def _grams(s: str) -> frozenset[str]:
    return frozenset({s[i : i + 3] for i in range(max(1, len(s) - 2))})


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    """3-gram Jaccard >= 0.7 (the bound on sizes first: it needs min/max >= 0.7)."""
    la, lb = len(a), len(b)
    if 10 * min(la, lb) < 7 * max(la, lb):
        return False
    inter = len(a & b)
    return 10 * inter >= 7 * (la + lb - inter)


def _reconstruct(aid: str, group: list[Excerpt], canon: Excerpt, boiler: set[str],
                 lines: dict[str, list[tuple[str, str]]]) -> list[dict]:
    """Union of the quotes' paragraphs in source order: start from the canonical quote, then merge
    every other quote (longest first). A line matches a paragraph exactly, or by 3-gram Jaccard
    >= 0.7 among the next few paragraphs after the last match (changed characters); an unmatched
    line is inserted after the last matched one. A quote none of whose lines match (re-flowed) adds
    no paragraphs. Every paragraph records the quotes that carry it."""
    base = [{"text": line, "key": k, "by": {canon.excerpt_id}} for line, k in lines[canon.excerpt_id]]
    if len(group) == 1:
        return [{"article_id": aid, "ordinal": i + 1, "text_norm": p["text"], "contributed_by": [canon.excerpt_id]}
                for i, p in enumerate(base)]
    for e in sorted((e for e in group if e is not canon), key=lambda e: (-len(e.body_norm), e.excerpt_id)):
        snapshot = list(base)
        index = {p["key"]: i for i, p in enumerate(snapshot)}
        plan: list[tuple[str, str, int | None]] = []
        last = -1
        for line, k in lines[e.excerpt_id]:
            m = index.get(k)
            if m is None and len(k) >= 10:
                g = _grams(k)
                for i in range(last + 1, min(last + 4, len(snapshot))):
                    if _similar(g, _grams(snapshot[i]["key"])):
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
            elif k not in boiler:
                new = {"text": line, "key": k, "by": {e.excerpt_id}}
                base.insert(base.index(prev) + 1 if prev is not None else 0, new)
                prev = new
    return [{"article_id": aid, "ordinal": i + 1, "text_norm": p["text"], "contributed_by": sorted(p["by"])}
            for i, p in enumerate(base)]
