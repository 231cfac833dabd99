"""Dedup over a build's parts: read the excerpts, cluster them, write dedup's tables.

In: a build folder and its Arrow parts (documents and excerpts). Out: `articles`,
`article_paragraphs`, `article_quotes` (each excerpt's article and relation, in the excerpts'
order) and `dedup_links` Parquet files in the build."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from kirinuki.dedup.clusters import deduplicate, without_gc
from kirinuki.dedup.model import DedupConfig, Excerpt
from kirinuki.dedup.sketches import BodyDigests
from kirinuki.dedup.spill import BodyStore, StoredExcerpt

# ---------------------------------------------------------------- the stage over a build's parts

_QUOTE_COLUMNS = ["excerpt_id", "doc_id", "headline", "published_date", "outlet_id"]


def _batch_read(parts: str, n: int, known: BodyDigests | None) -> tuple:
    """Batch `n`'s part runs, its documents, its excerpts (without their bodies), the lengths and
    digests of the bodies when `known` knows the runs (else None), and then None, else the bodies
    as one array."""
    from kirinuki.build.parts import part_runs, read_index, read_part, read_runs

    index = read_index(parts, n)
    docs = read_part(parts, "documents", n, ["doc_id", "published_date"], index=index)
    mine = part_runs(index, "excerpts")
    last = known.of(mine) if known is not None else None
    if last is not None:  # bodies the last build read: left in the parts
        return mine, docs, read_runs(parts, "excerpts", mine, _QUOTE_COLUMNS), last, None
    t = read_runs(parts, "excerpts", mine, _QUOTE_COLUMNS + ["body_norm"])
    return mine, docs, t.drop_columns(["body_norm"]), None, t.column("body_norm").combine_chunks()


def _bodies(parts: str, runs: list) -> pa.ChunkedArray:
    """The excerpt bodies in these part runs, in order (a chunk per run)."""
    from kirinuki.build.parts import read_runs

    return read_runs(parts, "excerpts", runs, ["body_norm"]).column(0)


@without_gc  # an object per quote: at 100k posts the GC's rescans of them doubled this (18 s against 9.7 s)
def read_excerpts(parts: str, spill_dir: str | None = None, known: BodyDigests | None = None,
                  runs: list | None = None, as_last: list | None = None) -> list[Excerpt]:
    """Every excerpt of a build's parts, in part order, a part at a time; the bodies go to a
    BodyStore file in `spill_dir`, not into memory. Their lengths and digests are made from them,
    or taken from `known` (the last build's) for a batch whose part runs it knows: those bodies are
    not read now but left in the parts, read when asked for (an append compares few of the
    earlier quotes, and writing them all to the spill cost 4.8 of 11.8 CPU-s at 100k posts); `runs` is
    filled with every batch's runs, in order (for the next build's `known`), and `as_last` with a
    bool per excerpt: whether its batch's runs are ones `known` knows (a part never changes, so then
    every field read of the excerpt, and of its post, is what the last build read)."""
    from kirinuki.build.parts import part_numbers
    from kirinuki.dedup.memo import ReadAhead

    store = BodyStore(spill_dir)
    items: list[Excerpt] = []
    shared: dict = {}  # one object per distinct doc id, headline, date and outlet (they repeat)
    one = shared.setdefault
    # each batch read (and decompressed) in a thread while objects are made of the one before
    numbers = part_numbers(parts)
    batches = ReadAhead(_batch_read(parts, n, known) for n in numbers)
    try:
        for _ in numbers:
            mine, docs, t, last, bodies = batches.next()
            docs = docs.to_pydict()
            doc_date = dict(zip(docs["doc_id"], docs["published_date"]))
            if runs is not None:
                runs += mine
            if bodies is None:  # the last build read these bodies: they stay in the parts until asked for
                first = store.extend_lazy(t.num_rows, partial(_bodies, parts, mine))
                lengths, digests = last
            else:
                first, lengths, digests = store.extend(bodies)
            if as_last is not None:
                as_last += [last is not None] * t.num_rows
            ex = t.to_pydict()
            for k, (i, d, h, p, o) in enumerate(zip(ex["excerpt_id"], ex["doc_id"], ex["headline"],
                                                    ex["published_date"], ex["outlet_id"])):
                dp = doc_date.get(d)
                items.append(StoredExcerpt(i, one(d, d), one(h, h), store, first + k, int(lengths[k]), digests[k],
                                           one(p, p), one(o, o), one(dp, dp)))
    finally:
        batches.close()
    store.done()
    return items


@without_gc  # the quotes read stay alive to the end: the GC would only rescan them
def dedup_parts(root: str, parts: str, cfg: DedupConfig, memory_mb: int, last_state: str | None = None,
                code: str = "") -> dict:
    """Deduplicate the excerpts of a build's parts; write articles, article_paragraphs,
    article_quotes (in part order) and dedup_links under `root`, and each article's key
    (kirinuki.dedup.memo) to `root`/ARTICLE_KEYS; `copied` in the stats says which rows of the
    article tables are rows of the last build's files, copied as they were (validation need not
    judge them again), and where the others are (`root`/MADE_ROWS, which the caller removes). An
    article whose quotes are unchanged since the build that kept `last_state` (by the same `code`)
    is taken from it, and when quotes were only appended since, only they are clustered
    (kirinuki.dedup.appended, with the sketches that state kept; this build's go to `root`,
    kirinuki.dedup.sketches). Returns the stats with the row counts. Runs in a child process of its
    own on a large build, so its memory goes back to the system when done."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from kirinuki.dedup.memo import ArticleMemo, Run
    from kirinuki.dedup.sketches import load_sketches, write_sketches
    from kirinuki.store.files import DUCKDB_TMP, MADE_ROWS, duckdb_for_build, write_table
    from kirinuki.store.rowgroups import RowGroupWriter

    out = Path(root)
    from kirinuki.dedup.state import trusted_state

    if last_state is not None and not trusted_state(last_state):  # damaged: nothing of it is used
        last_state = None
    memo = ArticleMemo(last_state, code, checked=True)
    (out / DUCKDB_TMP).mkdir(exist_ok=True)  # where the bodies and sets spill, and DuckDB's joins
    runs: list = []
    as_last: list[bool] = []
    # the kept sketches load in a thread while the quotes are read (on a core that is idle then);
    # taken from the list by deduplicate, so that nothing else holds them once clustering is done
    loader = ThreadPoolExecutor(1)
    loading = [loader.submit(load_sketches, last_state, cfg, code, checked=True)]
    items = read_excerpts(parts, str(out / DUCKDB_TMP), BodyDigests.load(last_state, cfg, code), runs, as_last)

    def made_rows(name: str):  # the rows not copied, for validation: only when rows can be copied at all
        return lambda: out / MADE_ROWS / f"{name}.arrow" if memo.can_keep() else None

    with RowGroupWriter(out, "articles", made_rows("articles")) as arts, \
            RowGroupWriter(out, "article_paragraphs", made_rows("article_paragraphs")) as paras:
        def write(article: dict | list[Run], paragraphs: dict[str, list] | list[Run]) -> None:
            if isinstance(article, list):  # kept from the last build: copied as Arrow
                arts.add_runs(article)
                paras.add_runs(paragraphs)
            else:
                arts.add_row(article)
                paras.add_columns(paragraphs)

        try:
            # a loader, not the sketches: deduplicate lets them go once clustered (an argument
            # would be held by its wrapper to the end)
            # DuckDB opened by deduplicate, closed as soon as clustering is done
            res = deduplicate(items, cfg, lambda: duckdb_for_build(out, memory_mb), str(out / DUCKDB_TMP), write, memo,
                              lambda: loading.pop().result(),
                              keep=lambda sketches: write_sketches(root, sketches, cfg, code, runs),
                              as_last=np.array(as_last, bool))
        finally:
            loader.shutdown()  # (when deduplicate failed first: the load ends before its files go)
            shutil.rmtree(out / DUCKDB_TMP, ignore_errors=True)
            memo.close()
    quotes = pa.table({"excerpt_id": pa.array([e.excerpt_id for e in items], pa.string()),
                       "doc_id": pa.array([e.doc_id for e in items], pa.string()),
                       "article_id": pa.array(res.cluster_id, pa.string()),
                       "relation": pa.array(res.relation, pa.string()),
                       "similarity": pa.array(res.similarity, pa.float64()),
                       "canonical": pa.array(res.canonical, pa.bool_())})
    del items
    rows = {"articles": arts.rows, "article_paragraphs": paras.rows, "article_quotes": quotes.num_rows,
            "dedup_links": res.links.num_rows}
    write_table(out, "dedup_links", res.links)
    write_table(out, "article_quotes", quotes)
    memo.write(root)
    kept = memo.kept_from()  # {table: sha256 of the last build's file the kept rows came from}
    copied = {}
    for name, w in (("articles", arts), ("article_paragraphs", paras)):
        if w.copied and name in kept:
            copied[name] = {"from": kept[name], "rows": w.copied}
            if w.made_rows is not None:  # (none when every row was copied)
                copied[name].update(made=str(w.made_rows), made_rows=w.made)
    return dict(res.stats, rows=rows, copied=copied)

