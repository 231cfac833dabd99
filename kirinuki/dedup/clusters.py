"""Dedup's algorithm: every quote of the same article across the corpus, clustered.

In: a list of `Excerpt` and a `DedupConfig`. Out: `DedupResult` (cluster id, relation and
similarity per excerpt, verified links, articles with reconstructed text). Works on normalised
bodies in four steps:

1. boilerplate: a paragraph quoted under more than `max_headlines` different headlines is a stock
   phrase (wire boilerplate, (中略) lines …) and is left out of everything below;
2. candidates: excerpts sharing an exact paragraph, and excerpts whose one-permutation MinHash
   signatures (character 5-grams, `bands` x `rows`) collide in a band (a DuckDB self-join);
3. verification: every candidate pair is compared exactly on its 5-gram sets; Jaccard >= 0.8 is a
   near-duplicate, containment |A∩B|/min(|A|,|B|) >= 0.8 a partial quote;
4. clusters: connected components of verified links (union-find), one per article.

The text compared is the body without whitespace, elision markers or boilerplate, so re-flowed
lines and (中略) gaps do not hide a duplicate. Pure functions over arrays; no Prefect here."""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from functools import wraps
from typing import Callable

import duckdb
import numpy as np

from kirinuki.dedup.articles import _article, _paragraph_columns, _reconstruct
from kirinuki.dedup.candidates import candidate_pairs, overlap, paragraph_hashes
from kirinuki.dedup.memo import ArticleMemo, article_key
from kirinuki.dedup.minhash import DedupTexts, boiler_lines, boilerplate_keys, line_index, sketch
from kirinuki.dedup.model import DedupConfig, DedupResult, Excerpt
from kirinuki.dedup.spill import ShingleSets


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


def article_id_for(excerpt_ids) -> str:
    """An article's id: 'art-' + the smallest excerpt_id among its quotes. It does not depend on
    which quote is canonical (that changes when a quote is edited to be the longest), only on the
    quotes' ids, which are stable; a merge keeps the smaller of the two ids, a split gives the part
    without the smallest quote its own. A pure function of the clusters, so a clean build and an
    incremental one agree."""
    return "art-" + min(excerpt_ids)


# ---------------------------------------------------------------- the stage


@dataclass
class Clusters:
    """What duplicate detection found: verified links and a root per excerpt."""

    root: list[int]
    links: list[tuple[int, int, float, float, str]]  # a, b, jaccard, containment, method
    sets: ShingleSets | None
    boiler: set[int]  # hashes of the boilerplate paragraphs' keys
    stats: dict
    boiler_lines: dict[int, tuple[int, ...]] = field(default_factory=dict)  # see boiler_lines()


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
    where_boiler = boiler_lines(lines, boiler)
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
    return Clusters([uf.find(i) for i in range(n)], links, sets, boiler, stats, where_boiler)


@without_gc
def deduplicate(excerpts: list[Excerpt], cfg: DedupConfig = DedupConfig(),
                con: duckdb.DuckDBPyConnection | None = None, spill_dir: str | None = None,
                sink: Callable[[dict, dict[str, list]], None] | None = None,
                memo: ArticleMemo | None = None) -> DedupResult:
    """Clusters plus everything built from them: relations, articles, reconstructed text. With a
    `sink`, each article and its paragraphs' columns go to `sink(article, paragraphs)` as they are
    made, in article order (the result then holds none: at scale they are the corpus's text
    again); without one, the result holds them. With a `memo`, an article whose quotes are those
    of the last build's article is taken from that build (kirinuki.dedup.memo)."""
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
        groups.append((article_id_for(excerpts[i].excerpt_id for i in group), canon, group))
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
        kept = None
        if memo is not None:
            boiler = [cl.boiler_lines.get(i, ()) for i in group] if len(group) > 1 else []
            kept = memo.kept(aid, article_key(aid, excerpts[canon], quotes, boiler))
        if kept is not None:  # the same quotes as in the last build: its article, not made again
            art, columns = kept
        else:
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
    stats = dict(cl.stats, clusters=len(members), articles_kept=memo.reused if memo is not None else 0,
                 multi_quote_clusters=sum(1 for g in members.values() if len(g) > 1), config=cfg.as_dict())
    return DedupResult(cluster_id, relation, similarity, canonical, links, articles, paragraphs, stats)
