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
from typing import Callable, Iterable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kirinuki.allocators import give_back_freed_memory
from kirinuki.dedup.articles import _article, _paragraph_columns, _reconstruct
from kirinuki.dedup.candidates import candidate_pairs, overlap, paragraph_hashes
from kirinuki.dedup.memo import ArticleMemo, article_key
from kirinuki.dedup.minhash import (DedupTexts, LineIndex, _distinct_pairs, boiler_lines, boiler_strings,
                                    boilerplate_keys, line_index, sketch)
from kirinuki.dedup.model import DedupConfig, DedupResult, Excerpt
from kirinuki.dedup.sketches import Sketches, clustering_digest, headline_hashes
from kirinuki.dedup.spill import ShingleSets, read_ahead
from kirinuki.schema import spec


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


def article_id_for(quotes: Iterable[Excerpt]) -> str:
    """An article's id: 'art-' + the excerpt_id of its first quote in the blog's order, the one in
    the earliest post (posts without a date after the others; then the smallest id). It does not
    depend on which quote is canonical (that changes when a quote is edited to be the longest), only
    on the quotes' ids and their posts' dates, which are stable; and as a blog grows by later posts,
    a new quote joining an article never renames it. A merge keeps the id of the earlier article, a
    split gives the part without the naming quote its own. A pure function of the clusters, so a
    clean build and an incremental one agree."""
    first = min(quotes, key=lambda e: (e.doc_published is None, e.doc_published or date.min, e.excerpt_id))
    return "art-" + first.excerpt_id


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
    # what the next build may cluster appended quotes with (kirinuki.dedup.sketches), but for the
    # relations, which deduplicate adds
    keep: dict = field(default_factory=dict)
    # excerpt -> (relation, similarity) kept from the last build for clusters no new quote joined
    kept_relation: dict[int, tuple[str, float]] = field(default_factory=dict)  # or kept.KeptRelations


_METHOD = {1: "minhash", 2: "exact_paragraph", 3: "minhash+exact_paragraph"}
# kept articles are handed to the sink in runs of at most this many rows: a longer run (an append
# that changed few articles) would be decoded whole before any of it is written, the whole article
# tables held at once and their decoding and encoding done one after the other, not side by side
KEPT_RUN = 1024


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
                  con: duckdb.DuckDBPyConnection | None = None, spill_dir: str | None = None,
                  last: Sketches | None = None, as_last: np.ndarray | None = None) -> Clusters:
    """Verified links and clusters; `spill_dir` holds the exact shingle sets' temporary file
    (default: the system's temporary folder). With `last`, the sketches an earlier build kept,
    only the quotes appended since are sketched and compared (kirinuki.dedup.appended, which
    takes `as_last`) when the result is then the same as clustering everything; else everything
    is clustered."""
    if con is None:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    reason = "no clustering was kept from the last build"
    if last is not None:
        from kirinuki.dedup.appended import cluster_appended

        done = cluster_appended(excerpts, cfg, con, last, spill_dir, as_last)
        if isinstance(done, Clusters):
            return done
        reason = done
    cl = _cluster_all(excerpts, cfg, con, spill_dir)
    cl.stats.update(clustering="all", clustering_why=reason)
    return cl


def _cluster_all(excerpts: list[Excerpt], cfg: DedupConfig, con: duckdb.DuckDBPyConnection,
                 spill_dir: str | None) -> Clusters:
    n = len(excerpts)
    lines = line_index(excerpts)
    boiler = boilerplate_keys(excerpts, lines, cfg)
    where_boiler = boiler_lines(lines, boiler)
    sig, sets, common = sketch(DedupTexts(excerpts, boiler, set(where_boiler)), cfg, spill_dir)
    counts = sets.sizes
    ok = counts >= cfg.min_shingles
    lsh_ok = ok & (sig != 0xFFFFFFFF).any(axis=1)  # a signature with no 5-gram left collides with all
    boiler_line = np.isin(lines.hash, np.fromiter(boiler, np.uint64, len(boiler)))
    p_owner, p_hash = paragraph_hashes(lines, boiler_line, ok, cfg)
    kept = _kept_lines(excerpts, lines)
    del lines, boiler_line
    a, b, how = candidate_pairs(con, lsh_ok, sig, cfg, p_owner, p_hash)
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
    sel = np.flatnonzero(promising & ok[a] & ok[b])
    pairs = verify(sets, a[sel], b[sel], how[sel])
    links, root = links_and_roots(n, pairs, cfg)
    stats = {"excerpts": n, "characters": int(sum(e.body_len for e in excerpts)),
             "candidates": n_candidates, "promising": int(promising.sum()), "verified": len(sel),
             "links": len(links), "boilerplate_paragraphs": len(boiler), "too_short": int((~ok).sum())}
    kept.update(sig=sig, sizes=counts, common=common, boiler=boiler_strings(excerpts, boiler, where_boiler),
                pairs=pairs, para_owner=p_owner, para_hash=p_hash)
    return Clusters(root, links, sets, boiler, stats, where_boiler, kept)


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a, b, jaccard, containment, how


def verify(sets, a: np.ndarray, b: np.ndarray, how: np.ndarray) -> Pairs:
    """Every pair compared exactly: (a, b, Jaccard, containment, how it was found)."""
    j, c = np.zeros(len(a)), np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        j[i], c[i] = overlap(sets[x], sets[y])
    return a, b, j, c, how


def links_and_roots(n: int, pairs: Pairs, cfg: DedupConfig) -> tuple[list[tuple], list[int]]:
    """The verified pairs that pass (Jaccard or containment over its threshold), in (a, b) order,
    and each excerpt's cluster root: the connected components of those links."""
    a, b, j, c, how = pairs
    good = np.flatnonzero((j >= cfg.jaccard) | (c >= cfg.containment))
    good = good[np.lexsort((b[good], a[good]))]
    uf = UnionFind(n)
    links = []
    for i in good.tolist():
        x, y = int(a[i]), int(b[i])
        uf.union(x, y)
        links.append((x, y, float(j[i]), float(c[i]), _METHOD[int(how[i])]))
    return links, [uf.find(i) for i in range(n)]


def _kept_lines(excerpts: list[Excerpt], lines: LineIndex) -> dict:
    """The distinct (paragraph, headline) pairs that decide boilerplate, in stable hashes, for the
    next build."""
    heads = headline_hashes([e.headline for e in excerpts])
    pair_key, pair_head = _distinct_pairs(lines.stable, heads[lines.owner]) if len(lines.owner) else (lines.stable, lines.stable)
    return {"pair_key": pair_key, "pair_head": pair_head}


@without_gc
def deduplicate(excerpts: list[Excerpt], cfg: DedupConfig = DedupConfig(),
                con: duckdb.DuckDBPyConnection | Callable[[], duckdb.DuckDBPyConnection] | None = None,
                spill_dir: str | None = None, sink: Callable[[dict, dict[str, list]], None] | None = None,
                memo: ArticleMemo | None = None, last: Sketches | Callable[[], Sketches | None] | None = None,
                keep: Callable[[Sketches], None] | None = None, as_last: np.ndarray | None = None) -> DedupResult:
    """Clusters plus everything built from them: relations, articles, reconstructed text. With a
    `sink`, each article and its paragraphs' columns go to `sink(article, paragraphs)` as they are
    made, in article order (the result then holds none: at scale they are the corpus's text
    again); without one, the result holds them. With a `memo`, an article whose quotes are those
    of the last build's article is taken from that build (kirinuki.dedup.memo); with `last`, the
    sketches it kept (or a function that loads them: called here, so that nothing else holds them
    once clustering is done), quotes appended since are clustered on their own (find_clusters). The
    result's `sketches` are this build's, for the next one; with `keep`, they go to `keep(sketches)`
    as soon as they are made instead (and are not held while the articles are made). `con` may be
    a function that opens a connection: it is then closed as soon as clustering is done, so the
    memory DuckDB's joins took is not held while the articles are made. `as_last`: per excerpt,
    whether everything an article is made of it (ids, headline, dates, outlet, body) is what the
    build that kept `last` read (dedup.parts.read_excerpts): a cluster the append kept whole
    (kirinuki.dedup.kept), all of whose quotes are so, is the last build's article, its key not
    made again."""
    if callable(last):
        last = last()
    opened = callable(con)
    if opened:
        con = con()
    try:
        cl = find_clusters(excerpts, cfg, con, spill_dir, last, as_last)
    finally:
        if opened:
            con.close()
    del last, con  # the last build's sketches (hundreds of MB at scale): what is kept of them is in `cl`
    give_back_freed_memory()  # what clustering freed (~100 MB at 10k posts), not held while articles are made
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
        if len(group) == 1:  # (most clusters: no order to find)
            groups.append(("art-" + excerpts[group[0]].excerpt_id, group[0], group))
            continue
        canon = min(group, key=lambda i: (excerpts[i].published is None, excerpts[i].published or date.min,
                                          -excerpts[i].body_len, excerpts[i].excerpt_id))
        groups.append((article_id_for(excerpts[i] for i in group), canon, group))
    groups.sort()  # article order: the tables come out sorted
    # the bodies of the quotes of clusters a new quote joined (compared and made again below),
    # read at once where they are still unread (dedup.spill.BodyStore.want)
    read_ahead(excerpts, (i for _, _, group in groups if len(group) > 1 and not all(k in cl.kept_relation for k in group)
                          for i in group))
    for aid, canon, group in groups:
        canonical[canon] = True
        for i in group:
            cluster_id[i] = aid
            if i == canon:
                continue
            if i in cl.kept_relation:  # a cluster no new quote joined: as the last build had it
                relation[i], similarity[i] = cl.kept_relation[i]
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
    sketches = _sketches(excerpts, cl, relation, similarity)
    cl.keep = {}  # in `sketches` now
    if keep is not None:
        keep(sketches)
        sketches = None
    articles: list[dict] = []
    paragraphs = _paragraph_columns("", [])  # the table's columns, empty

    def put(art: dict | list, columns: dict[str, list] | list) -> None:
        if sink is not None:
            sink(art, columns)  # kept articles come as runs of Arrow rows (the sink copies them so)
            return
        if isinstance(art, list):  # kept: as Python values, like a made article's
            articles.extend(row for b, i, j in art for row in b.slice(i, j - i).to_pylist())
            columns = {name: [v for b, i, j in columns for v in b.column(name).slice(i, j - i).to_pylist()]
                       for name in paragraphs}
        else:
            articles.append(art)
        for name, values in columns.items():
            paragraphs[name].extend(values)

    kept_rows: list[int] = []  # [start, stop) of the last build's rows kept in a run, not yet put
    for aid, canon, group in groups:
        quotes = None  # (made only for an article keyed or made again: not for every kept one)
        row = None
        if memo is not None:
            key = None
            if as_last is not None and group[0] in cl.kept_relation and as_last[group].all():
                key = memo.last_key(aid)  # (its quotes, their lines' boilerplate and so its key are the last build's)
            if key is None:
                quotes = [excerpts[i] for i in group]
                boiler = [cl.boiler_lines.get(i, ()) for i in group] if len(group) > 1 else []
                key = article_key(aid, excerpts[canon], quotes, boiler)
            row = memo.kept(aid, key)
        if row is not None:  # the same quotes as in the last build: its rows, not made again
            if kept_rows and kept_rows[1] == row and row - kept_rows[0] < KEPT_RUN:
                kept_rows[1] = row + 1
            else:
                if kept_rows:
                    put(*memo.rows(*kept_rows))
                kept_rows = [row, row + 1]
            continue
        if kept_rows:
            put(*memo.rows(*kept_rows))
            kept_rows = []
        if quotes is None:
            quotes = [excerpts[i] for i in group]
        art = _article(aid, quotes, excerpts[canon])
        paras = _reconstruct(quotes, excerpts[canon], cl.boiler)
        art["text"] = "\n".join(text for text, _ in paras)
        art["n_paragraphs"] = len(paras)
        put(art, _paragraph_columns(aid, paras))
    if kept_rows:
        put(*memo.rows(*kept_rows))
    links = _links_table(excerpts, cl.links, cfg)
    stats = dict(cl.stats, clusters=len(members), articles_kept=memo.reused if memo is not None else 0,
                 multi_quote_clusters=sum(1 for g in members.values() if len(g) > 1), config=cfg.as_dict())
    return DedupResult(cluster_id, relation, similarity, canonical, links, articles, paragraphs, stats, sketches)


def _links_table(excerpts: list[Excerpt], links: list[tuple], cfg: DedupConfig) -> pa.Table:
    """The verified links as the `dedup_links` table, sorted by (excerpt_a, excerpt_b): made a
    column at a time (a dict per link, sorted in Python, took 0.16 s for 24,862 links, 0.07 s so)."""
    x, y, j, c, method = zip(*links) if links else ((), (), (), (), ())
    t = pa.table([pa.array([excerpts[i].excerpt_id for i in x], pa.string()),
                  pa.array([excerpts[i].excerpt_id for i in y], pa.string()),
                  pa.array([round(v, 6) for v in j], pa.float64()), pa.array([round(v, 6) for v in c], pa.float64()),
                  pa.array(method, pa.string()),
                  pa.array(["near" if v >= cfg.jaccard else "partial" for v in j], pa.string())],
                 schema=spec("dedup_links").arrow_schema)
    return t.take(pc.sort_indices(t, [("excerpt_a", "ascending"), ("excerpt_b", "ascending")]))


def _sketches(excerpts: list[Excerpt], cl: Clusters, relation: list[str], similarity: list[float]) -> Sketches:
    k = cl.keep
    content = [e.content_digest for e in excerpts]
    known = k.get("digests") or [None] * len(excerpts)  # (an append's earlier quotes: the last build's)
    return Sketches(
        ids=[e.excerpt_id for e in excerpts],
        digests=[d if d is not None else clustering_digest(e.headline, c) for e, c, d in zip(excerpts, content, known)],
        sizes=np.asarray(k["sizes"], np.int64), sig=k["sig"], common=k["common"], pair_key=k["pair_key"],
        pair_head=k["pair_head"], para_owner=k["para_owner"], para_hash=k["para_hash"], boiler=k["boiler"],
        boiler_pos=[cl.boiler_lines.get(i, ()) for i in range(len(excerpts))], relation=relation,
        similarity=similarity, pairs=k["pairs"], content=content,
        lengths=[e.body_len for e in excerpts])
