"""Per-post tables written one file per year (or month), and those that did not change linked, not written.

In: a build's parts (their index and Arrow files), a table's name, and the last build's `data/`
with the partition digests it kept. Out: `data/<table>/<year>.parquet` or `<year>-<month>.parquet`
(kirinuki.store.layout), each file written like a whole table (its rows in batch order, fixed row
groups) so its bytes depend only on its rows; and each partition's digest, for the next build.

A partition's digest covers what its rows are made from: the code, the table, the cache key and
export position of each of its posts in order (dedup's judgement of the excerpts is in its own
table, `article_quotes`, so it never dirties a year). A
partition whose digest is the one the last build recorded, and whose file there still has the
recorded sha256, is hard-linked from it; the others are written, each from its rows batch by
batch. When the posts come in date order (a blog's), so that each batch holds a month or two, the
partitions are written one after another straight from slices of their batches' rows, a few
batches held at a time; otherwise those rows are first gathered a batch at a time through an
uncompressed spill file per batch (so memory holds one batch, not the table). Either way a file
gets the same pieces in the same order, so the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki.store.files import DATA_DIR, compact, link_file, read_json, sha256_file, write_table
from kirinuki.store.layout import UNDATED, partition_label, split_years

PARTITION_DIGESTS = "partitions.json"  # in a build's parts folder: {table: {year: [digest, sha256]}}
MAX_OPEN_BATCHES = 4  # batches held at once when partitions are written straight from them (_batches_in_order)


@dataclass
class Plan:
    """Which rows of each batch belong to which year, per table, and each partition's digest."""

    documents: int = 0
    batches: list[int] = field(default_factory=list)
    years: list[str] = field(default_factory=list)  # the labels, by code
    # table -> batch -> the code of each row's year, for the rows of read_part(parts, table, batch)
    labels: dict[str, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    digests: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def plan_partitions(parts: str | Path, tables: list[str], code: str) -> Plan:
    """Each row's year, from the index and the documents' published_date, and each partition's
    digest of its inputs."""
    from kirinuki.build.parts import PART_TABLES, part_numbers, read_index, read_part

    plan = Plan()
    hashers: dict[tuple[str, str], object] = {}
    code_of: dict[str, int] = {}

    def batch(n: int) -> tuple[int, list[dict], list]:
        index = read_index(parts, n)  # (once: at 100k posts decoding the 391 indexes takes ~0.6 s)
        return n, index["files"], read_part(parts, "documents", n, ["published_date"], index=index).column(0).to_pylist()

    batches = [batch(n) for n in part_numbers(parts)]
    by_month = split_years(d for _, _, dates in batches for d in dates)
    for n, files, dates in batches:
        plan.batches.append(n)
        dates = iter(dates)
        labels = [partition_label(next(dates), by_month) if f["rows"][0][1] else "" for f in files]  # "": no rows
        codes = np.array([code_of.setdefault(label, len(code_of)) for label in labels], dtype=np.int32)
        plan.documents += sum(1 for f in files if f["rows"][0][1])
        for table in tables:
            t = PART_TABLES.index(table)
            counts = [f["rows"][t][1] for f in files]
            plan.labels[table][n] = np.repeat(codes, counts)
            for f, label, count in zip(files, labels, counts):
                if not count:
                    continue
                h = hashers.get((table, label))
                if h is None:
                    h = hashers[(table, label)] = hashlib.sha256(f"{code}\0{table}\0{label}\n".encode())
                # a post without a cache key cannot vouch for its rows: its partition is always written
                who = f["key"] or f"unkeyed {n} {f['part']} {f['rows']}"
                h.update(f"{who}\0{f.get('position')}\n".encode())
    for (table, label), h in hashers.items():
        plan.digests[table][label] = h.hexdigest()
    plan.years = list(code_of)
    return plan


def write_partitioned(root: Path, parts: str | Path, name: str, plan: Plan, old_data: Path | None, old: dict) -> tuple[int, dict[str, list[str]], int]:
    """Write (or link) every year of table `name` under root/data/<name>/. Returns the row count,
    {year: [digest, sha256 of its file]} and how many years were linked from `old_data`."""
    digests = plan.digests.get(name, {})
    if not digests:  # no rows: one empty file, as a small build has
        return compact(root, name, iter(())), {}, 0
    folder = root / DATA_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, list[str]] = {}
    linked = 0
    dirty = set()
    for label, digest in digests.items():
        was = (old.get(name) or {}).get(label)
        src = old_data / name / f"{label}.parquet" if old_data else None
        if isinstance(was, list) and len(was) == 2 and was[0] == digest and src is not None and src.is_file() \
                and not src.is_symlink() and sha256_file(src) == was[1]:
            link_file(src, folder / f"{label}.parquet")
            record[label] = [digest, was[1]]
            linked += 1
        else:
            dirty.add(label)
    uses = _batches_in_order(plan, name, dirty)
    if uses is not None:
        _write_in_order(root, parts, name, plan, uses, digests, record, folder)
    else:
        spill = root / f".partition-spill-{name}"  # removed before this returns
        spill.mkdir(parents=True, exist_ok=True)
        try:
            _write_dirty(root, parts, name, plan, dirty, digests, record, spill, folder)
        finally:
            shutil.rmtree(spill, ignore_errors=True)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))
    return rows, record, linked


def _write_partition(root: Path, name: str, folder: Path, label: str, pieces, digest: str) -> list[str]:
    """One partition's file from its pieces (its rows, batch by batch, in order), written like a whole
    table; returns [its digest, the file's sha256] for the record."""
    dest = folder / f"{label}.parquet"
    dest.unlink(missing_ok=True)  # never write into a file linked from the last build
    compact(root, name, pieces, dest=dest)
    return [digest, sha256_file(dest)]


def _batches_in_order(plan: Plan, name: str, dirty: set[str]) -> dict[str, list[int]] | None:
    """The batches holding each dirty partition's rows (partitions in label order, batches in
    order), when writing the partitions one after another from the batches themselves holds at most
    MAX_OPEN_BATCHES batches at a time: a blog's posts in date order, each batch a month or two.
    None otherwise (posts in no order: every partition would need most batches), and the spill is used."""
    order = sorted(dirty)
    position = {plan.years.index(label): i for i, label in enumerate(order)}
    uses: dict[str, list[int]] = {label: [] for label in order}
    span: list[tuple[int, int]] = []  # per batch that holds dirty rows: the first and last partition needing it
    for n in plan.batches:
        codes = plan.labels.get(name, {}).get(n)
        held = sorted(position[c] for c in np.unique(codes).tolist() if c in position) if codes is not None else []
        if held:
            for i in held:
                uses[order[i]].append(n)
            span.append((held[0], held[-1]))
    opened = np.zeros(len(order) + 1, dtype=np.int64)  # batches held while each partition is written
    for first, last in span:
        opened[first] += 1
        opened[last + 1] -= 1
    return uses if int(np.cumsum(opened).max(initial=0)) <= MAX_OPEN_BATCHES else None


def _write_in_order(root: Path, parts: str | Path, name: str, plan: Plan, uses: dict[str, list[int]],
                    digests: dict[str, str], record: dict, folder: Path) -> None:
    """The dirty partitions (the keys of `uses`, in that order) written from slices of their
    batches' rows, each batch read once and let go after the last partition that needs it; up to two
    partitions are encoded at a time in threads (Parquet encoding releases the GIL). The pieces of a
    partition are the spill's (its rows, batch by batch, in order), so its file is the same."""
    from kirinuki.build.parts import read_part

    last = {n: label for label, batches in uses.items() for n in batches}
    held: dict[int, pa.Table] = {}

    def one(label: str, pieces: list[pa.Table]) -> list[str]:
        return _write_partition(root, name, folder, label, pieces, digests[label])

    at_once = max(1, min(len(uses), os.cpu_count() or 1, 2))  # partitions encoded at a time
    with ThreadPoolExecutor(at_once) as pool:
        running: list[tuple[str, Future]] = []
        for label, batches in uses.items():
            code = plan.years.index(label)
            pieces = []
            for n in batches:
                if n not in held:
                    held[n] = read_part(parts, name, n)
                rows = np.flatnonzero(plan.labels[name][n] == code)
                contiguous = int(rows[-1]) - int(rows[0]) + 1 == len(rows)
                pieces.append(held[n].slice(int(rows[0]), len(rows)) if contiguous
                              else held[n].take(pa.array(rows)))
                if last[n] == label:
                    del held[n]  # its slices keep what the partitions still to be encoded need
            while len(running) >= at_once:  # the next partition's rows are gathered while these are encoded
                done_label, future = running.pop(0)
                record[done_label] = future.result()
            running.append((label, pool.submit(one, label, pieces)))
        for done_label, future in running:
            record[done_label] = future.result()


def _write_dirty(root: Path, parts: str | Path, name: str, plan: Plan, dirty: set[str], digests: dict[str, str],
                 record: dict, spill: Path, folder: Path) -> None:
    """The partitions that must be written: their rows gathered batch by batch into `spill` (one
    uncompressed file per batch, sorted by year), then each year compacted from its slices."""
    from kirinuki.build.parts import read_part

    where: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # label -> (batch, start, rows) in the spill
    wanted = np.zeros(len(plan.years), dtype=bool)
    wanted[[plan.years.index(label) for label in dirty]] = True
    for n in plan.batches:
        codes = plan.labels.get(name, {}).get(n)
        if codes is None or not wanted[codes].any():
            continue
        t = read_part(parts, name, n)
        order = np.argsort(codes, kind="stable")
        order = order[wanted[codes[order]]]  # rows of the dirty years, by year, each year's in batch order
        counts = np.bincount(codes, minlength=len(plan.years))
        runs, start = [], 0
        for code in np.flatnonzero(wanted & (counts > 0)).tolist():
            runs.append((plan.years[code], start, int(counts[code])))
            start += int(counts[code])
        if not np.array_equal(order, np.arange(t.num_rows)):  # (a blog's batch, all written, is in order: no copy)
            t = t.take(pa.array(order))
        t = t.combine_chunks()
        with pa.OSFile(str(spill / f"{n}.arrow"), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
            w.write_table(t)
        for label, start, count in runs:
            where[label].append((n, start, count))

    def one(label: str) -> list[str]:
        def pieces():
            for n, start, count in where[label]:  # zero-copy slices of the mapped file
                yield pa.ipc.open_file(pa.memory_map(str(spill / f"{n}.arrow"))).read_all().slice(start, count)

        return _write_partition(root, name, folder, label, pieces(), digests[label])

    # the years in parallel threads: Parquet encoding releases the GIL; one year's rows each in memory
    with ThreadPoolExecutor(max(1, min(len(dirty), os.cpu_count() or 1))) as pool:
        record.update(zip(sorted(dirty), pool.map(one, sorted(dirty))))


@dataclass
class Partitioning:
    """What a build's table writers need to write by year: the plan, and the last build's data
    folder with the digests it kept (empty when there is none or it may not be trusted)."""

    plan: Plan
    old_data: Path | None
    old: dict


def partitioning(parts: str | Path, posts: int, min_posts: int, code: str, old_build: Path | None,
                 old_parts: str | Path | None) -> Partitioning | None:
    """The per-post tables' partitioning for a build of `posts` posts, or None when they are
    written whole (fewer than `min_posts` posts)."""
    from kirinuki.build.parts import PART_TABLES

    if posts < min_posts:
        return None
    plan = plan_partitions(parts, list(PART_TABLES), code)
    if plan.documents < min_posts:
        return None
    old = read_json(Path(old_parts) / PARTITION_DIGESTS) if old_parts else None
    old = old if isinstance(old, dict) else {}
    return Partitioning(plan, old_build / DATA_DIR if old and old_build is not None else None, old)


def doc_years(data: Path) -> dict[str, str]:
    """doc_id -> the year file its documents row is in (for a partitioned build; else empty)."""
    folder = data / "documents"
    if not folder.is_dir():
        return {}
    return {d: p.stem for p in sorted(folder.glob("*.parquet"))
            for d in pq.read_table(p, columns=["doc_id"]).column(0).to_pylist()}


def rewrite_years(root: Path, name: str, table: pa.Table, years: dict[str, str]) -> None:
    """Write a partitioned table again from its rows (in order) after some left it (quarantine):
    each year's file from its rows, a year left with none removed."""
    folder = root / DATA_DIR / name
    labels = np.asarray([years.get(d, UNDATED) for d in table.column("doc_id").to_pylist()], dtype=object)
    keep = set(labels.tolist())
    for old in folder.glob("*.parquet"):
        if old.stem not in keep:
            old.unlink()
    for label in sorted(keep):
        rows = table.take(pa.array(np.flatnonzero(labels == label)))
        dest = folder / f"{label}.parquet"
        write_table(root, name, rows, dest=dest)  # replaces, never writes into, a linked file
