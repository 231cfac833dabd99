"""Great Expectations over a table's Parquet files, a slice of rows at a time.

In: a table's files in row order (one, or one per year or month), their sha256, its expectations, and the
files an earlier passing build (same code) checked. Out: one `Check` and one GX result per
expectation for the whole table, and the files that passed, for the next build.

Expectations that judge each row on its own (ROW_LOCAL) run over slices of rows (across files),
their results summed, so a table's text columns are never all in memory at once; a file whose
sha256 an earlier passing build of the same code checked is not read again for them (its rows
count as passing), nor are the rows of a file that are rows of such a file copied as they were
(the articles dedup kept from the last build). The others (uniqueness) see their whole column,
which is a key, not text, over every file; except that when an earlier passing build (same code)
found the values of some of the files distinct, only the other files' values, and the old values
equal to one of them, are handed to Great Expectations (_unique_against).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kirinuki.store.files import ROW_GROUP_ROWS
from kirinuki.store.layout import duckdb_files, read_files
from kirinuki.validate.gx_engine import _GX
from kirinuki.validate.suites import Check, _columns_of

NOT_NULL = "expect_column_values_to_not_be_null"
ROW_LOCAL = {NOT_NULL, "expect_column_values_to_be_in_set",
             "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between",
             "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b"}
SLICE_ROWS = ROW_GROUP_ROWS
# at most about this much of a slice's columns (Parquet's uncompressed size): a table of whole post
# texts (documents, ~25 KB a row) is sliced in far fewer rows than one of short keys
SLICE_BYTES = 256 * 2**20


def slice_rows(files: list[Path], columns: list[str]) -> int:
    """Rows per slice for these files' `columns`: SLICE_ROWS, or fewer when their rows are wide,
    so that a slice holds about SLICE_BYTES of them (measured from the files' footers)."""
    rows = size = 0
    wanted = set(columns)
    for f in files:
        meta = pq.ParquetFile(f).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            size += sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)
                        if group.column(c).path_in_schema.split(".")[0] in wanted)
    return SLICE_ROWS if not rows or not size else max(1, min(SLICE_ROWS, int(SLICE_BYTES * rows / size)))


class _Summed:
    """Per expectation index: its Check and GX result, with later slices' counts added in."""

    def __init__(self):
        self.checks: dict[int, Check] = {}
        self.results: dict[int, dict] = {}

    def add(self, indices: list[int], checks: list[Check], results: list[dict]) -> None:
        for i, c, r in zip(indices, checks, results):
            if i not in self.checks:
                self.checks[i], self.results[i] = Check(**c.__dict__), _copy(r)
                self.results[i]["expectation_config"]["meta"]["kirinuki_index"] = i
                continue
            have, out, more = self.checks[i], self.results[i]["result"], r.get("result", {})
            have.success = have.success and c.success
            have.unexpected += c.unexpected
            have.elements += c.elements
            have.sample = (have.sample + c.sample)[:20]
            self.results[i]["success"] = have.success
            for k in ("element_count", "unexpected_count"):
                out[k] = (out.get(k) or 0) + (more.get(k) or 0)
            total = out["element_count"]
            out["unexpected_percent"] = 100.0 * out["unexpected_count"] / total if total else 0.0
            for k in ("partial_unexpected_list", "partial_unexpected_index_list"):
                if k in out:
                    out[k] = (list(out[k]) + list(more.get(k) or []))[:20]


def _copy(r: dict) -> dict:
    return {**r, "result": dict(r.get("result") or {}),
            "expectation_config": {**r["expectation_config"], "meta": dict(r["expectation_config"].get("meta") or {})}}


def nullness_only(exps: list[dict]) -> frozenset[str]:
    """The columns `exps` read only to ask whether each value is null (documents.text: the posts
    themselves, 240 MB at 10k posts)."""
    kinds: dict[str, set[str]] = {}
    for e in exps:
        if (column := e.get("kwargs", {}).get("column")) is not None:
            kinds.setdefault(column, set()).add(e["type"])
    return frozenset(c for c, k in kinds.items() if k == {NOT_NULL})


def _stood_in(t: pa.Table, nullness: frozenset[str]) -> pa.Table:
    """`t` with its `nullness` columns as an empty string where the value is not null and null
    where it is. What is null stays null, so the not-null expectations give the same results (a
    null is reported as null), without the values made Python strings (at 10k posts the
    documents' text took 2 of the 2.2 s its expectations took) or copied into a slice."""
    for column in nullness:
        i = t.schema.get_field_index(column)
        if i >= 0:
            stand_in = pc.if_else(t.column(i).is_null(), pa.scalar(None, pa.string()), pa.scalar("", pa.string()))
            t = t.set_column(i, pa.field(column, pa.string()), stand_in)
    return t


def _null_free(files: list[Path], columns: frozenset[str]) -> frozenset[str]:
    """The `columns` that every row group of every file says, in its statistics, holds no null:
    their stand-in (_stood_in) is "" in every row, known without reading a value (the documents'
    text is most of a build's bytes). These are the footer's null counts, which query engines
    already trust to skip row groups; a row group without the column or its null count (statistics
    not written) keeps it out, and it is read."""
    if not columns:  # most tables have no such column: no footer is read for them
        return frozenset()
    free = set(columns)
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            nulls = {}
            for c in range(group.num_columns):
                chunk = group.column(c)
                if chunk.path_in_schema in free:
                    stats = chunk.statistics
                    nulls[chunk.path_in_schema] = stats.null_count if stats is not None and stats.has_null_count else None
            free = {c for c in free if nulls.get(c) == 0}
            if not free:
                return frozenset()
    return frozenset(free)


def _frame(t: pa.Table, nullness: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Rows for Great Expectations, the `nullness` columns stood in for (_stood_in)."""
    return _stood_in(t, nullness).to_pandas()


def _run(gx: _GX, name: str, df: pd.DataFrame, exps: list[dict], indices: list[int]) -> tuple[list[Check], list[dict]]:
    checks, res = gx.validate(name, df, [exps[i] for i in indices])
    by_index = {r["expectation_config"]["meta"]["kirinuki_index"]: r for r in res["results"]}
    return checks, [by_index[j] for j in range(len(indices))]


def _slices(files: list[Path], columns: list[str], skip: dict[Path, np.ndarray] | None = None,
            nullness: frozenset[str] = frozenset(), made: dict[Path, str] | None = None):
    """The rows of `files`, in order, as frames of `slice_rows` rows (a slice may span files: Great
    Expectations' cost is mostly per call, and a year file is often a few hundred rows); a file in
    `skip` without the rows its mask marks (a row group of only those is not read), or, when `made`
    names the Arrow file its writer kept of exactly its other rows, those read from there; the `nullness`
    columns as _frame gives them, not read at all when the files' statistics say they hold no null
    (_null_free; nor do they count in the slice's size then)."""
    free = _null_free(files, nullness & set(columns))
    if len(free) == len(columns):  # one column is read, for the rows
        free = frozenset()
    nullness = nullness - free
    read = [c for c in columns if c not in free]
    size = slice_rows(files, read)
    pending: list[pa.RecordBatch] = []
    count = 0
    for f in files:
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering keeps every slice read until the end
        for batch in _batches(pf, size, read, (skip or {}).get(f), (made or {}).get(f)):
            if free:  # never read: every value is a stand-in's ""
                batch = pa.RecordBatch.from_arrays(
                    [pa.repeat(pa.scalar("", pa.string()), batch.num_rows) if c in free else batch.column(c)
                     for c in columns], schema=pa.schema([pa.field(c, pa.string()) if c in free else batch.schema.field(c)
                                                          for c in columns]))
            # stood in for as it is read: the slice is made contiguous (_joined), which would copy
            # a column of whole posts (at 10k posts 510 MB more at the documents' peak, and a second)
            pending.extend(_stood_in(pa.Table.from_batches([batch]), nullness).to_batches() if nullness else [batch])
            count += batch.num_rows
            while count >= size:
                t = _joined(pending)
                yield _frame(t.slice(0, size))
                rest = t.slice(size)
                pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield _frame(_joined(pending))


def _batches(pf: pq.ParquetFile, size: int, columns: list[str], skip: np.ndarray | None, made: str | None = None):
    """A file's rows in batches of at most `size`, without those `skip` marks; from `made` when it
    is given (the rows `skip` does not mark, in order, as their writer kept them)."""
    if made is not None:
        with pa.OSFile(made) as src:  # (read, not mapped: the slices outlive the file's opening)
            for batch in pa.ipc.open_stream(src):
                for at in range(0, batch.num_rows, size):
                    yield batch.slice(at, size).select(columns)
        return
    if skip is None:
        yield from pf.iter_batches(batch_size=size, columns=columns)
        return
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        keep = ~skip[start:start + n]
        if keep.any():
            at = 0
            for batch in pf.iter_batches(batch_size=size, row_groups=[g], columns=columns):
                yield batch.filter(pa.array(keep[at:at + batch.num_rows]))
                at += batch.num_rows
        start += n


def _checked_unique(before: dict | None, whole: list[int]) -> set[str]:
    """The sha256 of the files over which an earlier passing build (same code) found every
    uniqueness expectation (`whole`) met, all files together; empty when one was not met."""
    checks = (before or {}).get("checks") or []
    if not whole or not all(i < len(checks) and checks[i].get("success") for i in whole):
        return set()
    return set(((before or {}).get("files") or {}).values())


def _unique_against(gx: _GX, name: str, exps: list[dict], i: int, new: list[Path], old: list[Path],
                    old_rows: int, total: _Summed) -> None:
    """Uniqueness expectation `i` over `new` and `old` files, where the old files' values are known
    to be distinct (_checked_unique): Great Expectations judges the new files' values with the old
    values equal to one of them (any duplicate has a new value in it), and the other old rows
    count as passing (`old_rows`: the old files' rows). The old values equal to a new one are found
    by DuckDB in one query over every old file (_equal_in), so only the new values are held."""
    column = exps[i]["kwargs"]["column"]
    fresh = read_files(new, [column])[column]
    values = pc.unique(fresh.combine_chunks().drop_null())
    equal = _equal_in(old, column, values).cast(fresh.type)
    passing = old_rows - len(equal)
    frame = pa.table({column: pa.chunked_array(fresh.chunks + equal.chunks, fresh.type)}).to_pandas()
    total.add([i], *_run(gx, name, frame, exps, [i]))
    if passing:
        c = total.checks[i]
        total.add([i], [Check(name, c.name, c.severity, "", True, 0, passing, [])],
                  [{"success": True, "result": {"element_count": passing, "unexpected_count": 0}}])


def _equal_in(files: list[Path], column: str, values: pa.Array) -> pa.ChunkedArray:
    """The values of `column` in `files` equal to one of `values`, in file and row order. One DuckDB
    query over all the files: it reads them on every core and without the GIL. (A loop over the
    files in Python, each read and looked up in turn, took 4-6 s a table at 110k posts, its 650
    files waiting for the GIL while the overview's charts were drawn beside it.)"""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("new_values", pa.table({"v": values}))
        con.register("file_order", pa.table({"filename": [str(f) for f in files], "i": list(range(len(files)))}))
        source = duckdb_files(files, filename=True, row_number=True)
        found = con.sql(f'SELECT t."{column}" AS v FROM {source} t JOIN file_order o USING (filename) '
                        f'SEMI JOIN new_values n ON t."{column}" = n.v ORDER BY o.i, t.file_row_number').to_arrow_table()
    finally:
        con.close()
    return found.column("v")


def _made_rows_of(copied: dict, skip: np.ndarray) -> bool:
    """Whether `copied` names an Arrow file of the rows `skip` does not mark (as many as there are)."""
    where = copied.get("made")
    return bool(where) and Path(where).is_file() and copied.get("made_rows") == int((~skip).sum())


def copied_mask(rows: int, ranges: list[list[int]]) -> np.ndarray:
    """Which of a file's `rows` the [start, count] ranges cover."""
    mask = np.zeros(rows, dtype=bool)
    for start, count in ranges:
        mask[start:start + count] = True
    return mask


def _joined(batches: list[pa.RecordBatch]) -> pa.Table:
    # promoted: a file written elsewhere may declare nullable a column the others do not
    return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="default").combine_chunks()


def validate_files(gx: _GX, name: str, files: list[Path], shas: list[str], exps: list[dict],
                   passed: dict[str, int] | None = None, before: dict | None = None,
                   copied: dict[str, dict] | None = None) -> tuple[list[Check], dict, dict[str, int]]:
    """GX over a table's files: (checks, the GX result document, {sha256: rows} of the files that
    passed every row-local expectation, for the next build). One small file is checked whole; else
    see the module docstring: `passed` names the files an earlier build of the same code checked
    (their rows count as passing), `before` is that build's kept results of the table (the shape
    of each expectation's result when no file is new), `copied` (by sha256) the rows of a file
    that are rows of an earlier file, as they were ({"from": its sha256, "rows": [[start, count],
    …]}): when that file is one `passed` names, those rows count as passing too."""
    if not exps:
        return [], {"success": True, "results": []}, {}
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    shaped = isinstance(before, dict) and len((before.get("gx") or {}).get("results") or ()) == len(exps) \
        and len(before.get("checks") or ()) == len(exps)
    passed = (passed or {}) if shaped else {}
    skip = {f: copied_mask(n, copied[sha]["rows"]) for f, n, sha in zip(files, rows, shas)
            if sha not in passed and sha in (copied or {}) and copied[sha].get("from") in passed}
    made = {f: copied[sha]["made"] for f, sha in zip(files, shas) if f in skip and _made_rows_of(copied[sha], skip[f])}
    local = [i for i, e in enumerate(exps) if e["type"] in ROW_LOCAL]
    nullness = nullness_only(exps)
    whole = [i for i, e in enumerate(exps) if e["type"] not in ROW_LOCAL]
    if len(files) == 1 and not skip and rows[0] <= slice_rows(files, _columns_of(exps)):
        checks, res = gx.validate(name, _frame(pq.read_table(files[0], columns=_columns_of(exps)), nullness), exps)
        return checks, res, ({shas[0]: rows[0]} if all(checks[i].success for i in local) else {})
    total = _Summed()
    unique = _checked_unique(before, whole) if shaped else set()
    old = [f for k, (f, sha) in enumerate(zip(files, shas)) if sha in unique and sha not in shas[:k]]
    if whole and old and len(old) < len(files):  # (a file twice over is old once: its copy is new)
        known = set(old)
        new = [f for f in files if f not in known]
        old_rows = sum(n for f, n in zip(files, rows) if f in known)
        for i in whole:
            _unique_against(gx, name, exps, i, new, old, old_rows, total)
    elif whole:
        cols = _columns_of([exps[i] for i in whole])
        frame = read_files(files, cols).to_pandas()
        total.add(whole, *_run(gx, name, frame, exps, whole))
        del frame
    if local:
        fresh = [f for f, sha in zip(files, shas) if sha not in passed]
        for frame in _slices(fresh, _columns_of([exps[i] for i in local]), skip, nullness, made):
            total.add(local, *_run(gx, name, frame, exps, local))
        for f, n, sha in zip(files, rows, shas):
            if sha not in passed:
                if f not in skip:
                    continue
                n = int(skip[f].sum())  # its rows copied from a file checked before
            for i in local:  # a file checked before: its rows passed, none unexpected
                if i not in total.checks:
                    c, r = Check(**before["checks"][i]), before["gx"]["results"][i]
                    total.add([i], [Check(c.table, c.name, c.severity, c.notes, True, 0, 0, [])],
                              [{**r, "success": True, "result": {**(r.get("result") or {}), "element_count": 0,
                                                                 "unexpected_count": 0, "partial_unexpected_list": []}}])
                total.add([i], [Check(name, total.checks[i].name, total.checks[i].severity, "", True, 0, n, [])],
                          [{"success": True, "result": {"element_count": n, "unexpected_count": 0}}])
    ordered = [total.results[i] for i in range(len(exps))]
    ok = sum(1 for r in ordered if r["success"])
    res = {"success": ok == len(ordered), "suite_name": name, "results": ordered,
           "statistics": {"evaluated_expectations": len(ordered), "successful_expectations": ok,
                          "unsuccessful_expectations": len(ordered) - ok,
                          "success_percent": 100.0 * ok / len(ordered)}}
    checks = [total.checks[i] for i in range(len(exps))]
    clean = all(checks[i].success for i in local)
    return checks, res, ({sha: n for sha, n in zip(shas, rows)} if clean else {})
