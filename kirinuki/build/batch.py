"""One batch of input files -> Arrow parts, which are also the cache of the next build. Knows nothing
of Prefect, so a worker process imports only this and the stages it runs.

A batch writes `<parts>/index/part-NNNNNN.json` saying where each file's rows are: for every file
its cache key (pipeline code digest + relative path + sha256 of its bytes and sidecar), its size,
its dedup digest, the part that holds its rows and its row range there in each per-file table; for
every rejected file its reject row. Parts are `<parts>/<table>/<part>.arrow` (Arrow IPC, LZ4). A
build keeps its parts under `<out>/cache`; the next build looks each file's key up there and, on a
hit, neither parses the file nor copies its rows: it links the part that holds them into its own
parts and points at them (a part is never changed once written). Only the files parsed again go
into a new part, so a rebuild after a small change writes little.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow as pa

from kirinuki import PIPELINE_VERSION
from kirinuki.clean.normalize import clean_document
from kirinuki.ingest.sources import (META_SUFFIX, Reject, SourceRef, fingerprint_of, read_plain_file, read_sidecar,
                                     read_source)
from kirinuki.parse.records import reject_row, source_rows
from kirinuki.resources import package_files
from kirinuki.schema import spec
from kirinuki.store.files import link_file, to_table

PART_TABLES = ("documents", "excerpts", "paragraphs", "citations", "date_mentions")
# What can change a file's rows: any edit to these parts of the package invalidates the cache.
ROW_SOURCES = ("__init__.py", "resources.py", "schema.py", "ingest", "parse", "clean", "store", "build",
               "schemas", "reference")
INDEX = "index"
MAX_PARTS = 4  # a batch's rows lie in at most this many parts (its own, and earlier builds' it links)
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
SHIPPED_DATA = (".toml", ".tsv", ".txt", ".json")


@cache
def code_digest(whole_build: bool = False) -> str:
    """sha256 over everything that shapes a file's rows: code, schemas, reference data. With
    `whole_build`, over everything that shapes any table: the whole package (every module, the
    flows and the validation suites)."""
    h = hashlib.sha256(f"pipeline {PIPELINE_VERSION}\n".encode())
    for rel, p in package_files(suffixes=(".py",) + SHIPPED_DATA, under=() if whole_build else ROW_SOURCES):
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(ref: SourceRef, max_bytes: int) -> str | None:
    """sha256 of a file's bytes and its sidecar's; None for what is not cached (not a regular
    file, too large, unreadable: read_source rejects those again, cheaply). Read the way
    read_source reads: no link followed at open time, no FIFO waited on."""
    try:
        return fingerprint_of(read_plain_file(ref.path, max_bytes, ref.root), read_sidecar(ref.path))
    except OSError:
        return None


# A file changed this recently may change again within the file system's timestamp granularity
# without its stat changing: its state is not recorded, so it is hashed again next time.
RACY_NS = 2_000_000_000


def file_state(ref: SourceRef) -> list[int] | None:
    """What stat says of a regular file and its sidecar: device, inode, size, mtime and ctime (ns).
    Any write to a file sets its ctime to the time of the write, so an unchanged state means
    unchanged bytes (git trusts the same fields)."""
    try:
        st = os.stat(ref.path)
        if not stat.S_ISREG(st.st_mode):
            return None
        p = Path(ref.path)
        try:
            sc = os.stat(p.with_name(p.stem + META_SUFFIX))
            side = [sc.st_ino, sc.st_size, sc.st_mtime_ns, sc.st_ctime_ns]
        except FileNotFoundError:
            side = []
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns] + side


def fingerprints(refs: list[SourceRef], max_bytes: int, known: dict[str, list]) -> tuple[list[str | None], dict, int]:
    """The fingerprint of every file, the record for the next build, and how many files were read.
    A file whose state is the one `known` (the last build's record) holds for its path keeps the
    fingerprint recorded with it, unread; a file changed in the last RACY_NS before this call is
    not recorded."""
    fps: list[str | None] = []
    record: dict[str, list] = {}
    read = 0
    racy = time.time_ns() - RACY_NS
    for ref in refs:
        state = file_state(ref)
        prev = known.get(ref.rel)
        if state is not None and prev is not None and prev[0] == state:
            fp = prev[1]
        else:
            fp = fingerprint(ref, max_bytes)
            read += 1
        fps.append(fp)
        if fp is not None and state is not None and max(state[3:5] + state[7:9]) < racy:  # mtimes, ctimes
            record[ref.rel] = [state, fp]
    return fps, record, read


def cache_key(rel: str, fp: str | None, max_bytes: int) -> str | None:
    if fp is None:
        return None
    return hashlib.sha256(f"{code_digest()}\0{rel}\0{fp}\0{max_bytes}".encode()).hexdigest()


def exit_with(pid: int) -> None:
    """Initializer of the build's worker processes: exit as soon as process `pid` (the build) is
    gone, so a killed build does not leave workers writing into its temporary folder. (Their parent
    is the forkserver, which can outlive the build, so the parent-death signal is no use here.)"""
    import threading

    def watch() -> None:
        while True:
            time.sleep(0.2)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True, name="exit-with-build").start()


# ---------------------------------------------------------------- parts and their index


def part_path(parts: str | Path, table: str, part: str) -> Path:
    return Path(parts) / table / f"{part}.arrow"


def index_path(parts: str | Path, batch_no: int) -> Path:
    return Path(parts) / INDEX / f"part-{batch_no:06d}.json"


def part_numbers(parts: str | Path) -> list[int]:
    """The batches whose parts are complete (a batch writes its index last)."""
    return sorted(int(p.stem.split("-")[1]) for p in (Path(parts) / INDEX).glob("part-*.json"))


def _empty(table: str, columns: list[str] | None = None) -> pa.Table:
    schema = spec(table).part_schema
    return (pa.schema([schema.field(c) for c in columns]) if columns else schema).empty_table()


def _open_part(parts: str | Path, table: str, part: str) -> pa.Table:
    with pa.memory_map(str(part_path(parts, table, part))) as src:
        return pa.ipc.open_file(src).read_all()


def _runs(files: list[dict], t: int) -> list[tuple[str, int, int]]:
    """A batch's rows of table number `t` as (part, start, length) runs: its files' rows in order,
    adjacent ranges of one part merged."""
    runs: list[tuple[str, int, int]] = []
    for f in files:
        start, n = f["rows"][t]
        if not n:
            continue
        if runs and runs[-1][0] == f["part"] and runs[-1][1] + runs[-1][2] == start:
            runs[-1] = (f["part"], runs[-1][1], runs[-1][2] + n)
        else:
            runs.append((f["part"], start, n))
    return runs


def read_part(parts: str | Path, table: str, batch_no: int, columns: list[str] | None = None) -> pa.Table:
    """Batch `batch_no`'s rows of `table`, in file order: memory-mapped slices of the part files
    its index names (its own, or parts an earlier build wrote and this one linked)."""
    idx = json.loads(index_path(parts, batch_no).read_text(encoding="utf-8"))
    opened: dict[str, pa.Table] = {}
    pieces = []
    for part, start, n in _runs(idx["files"], PART_TABLES.index(table)):
        if part not in opened:
            t = _open_part(parts, table, part)
            opened[part] = t.select(columns) if columns else t
        pieces.append(opened[part].slice(start, n))
    return pa.concat_tables(pieces) if pieces else _empty(table, columns)


def read_parts(parts: str | Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """A table's rows from every part, in batch order."""
    pieces = [read_part(parts, table, n, columns) for n in part_numbers(parts)]
    return pa.concat_tables(pieces) if pieces else _empty(table, columns)


@dataclass(frozen=True)
class Hit:
    """Where a file's rows are in a previous build's parts (or its reject row)."""

    part: str = ""
    rows: tuple[tuple[int, int], ...] = ()  # (start, length) in the part, per PART_TABLES
    size: int = 0
    reject: dict | None = None
    dedup: str = ""  # the file's dedup_digest
    stats: dict = field(default_factory=dict)  # the file's file_stats


def cache_lookup(parts: str | Path | None) -> dict[str, Hit]:
    """key -> Hit for every file recorded in the index of a previous build's parts."""
    found: dict[str, Hit] = {}
    if parts is None:
        return found
    for n in part_numbers(parts):
        try:
            idx = json.loads(index_path(parts, n).read_text(encoding="utf-8"))
            for f in idx["files"]:
                if f["key"]:
                    found[f["key"]] = Hit(f["part"], tuple(tuple(r) for r in f["rows"]), f["size"], dedup=f["dedup"],
                                         stats=f["stats"])
            for r in idx["rejects"]:
                found[r["key"]] = Hit(reject=r["row"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged index: its files are parsed again
    return found


# What the dedup stage reads of a file's rows: if these are unchanged for every file, so is its output.
DEDUP_FIELDS = ("excerpt_id", "doc_id", "headline", "body_norm", "published_date", "outlet_id")


def dedup_digest(doc_rows: dict[str, list[dict]]) -> str:
    """sha256 of what dedup reads of one parsed file: its excerpts' DEDUP_FIELDS and its
    documents' publication dates (an edit to the commentary alone leaves it unchanged)."""
    h = hashlib.sha256(repr([(d["doc_id"], d["published_date"]) for d in doc_rows["documents"]]).encode())
    for e in doc_rows["excerpts"]:
        h.update(repr(tuple(e[f] for f in DEDUP_FIELDS)).encode())
    return h.hexdigest()


ROWS_KEY = b"kirinuki_rows"  # a part's row count, in its schema's metadata: known without reading its rows


def _write_ipc(path: Path, table: pa.Table) -> None:
    """Write a part under a temporary name, then rename it into place: a name already there may be
    a link to an earlier build's part, which must not be written into."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = table.schema.with_metadata({ROWS_KEY: str(table.num_rows).encode()})
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema, options=IPC_OPTIONS) as w:
        w.write_table(table.replace_schema_metadata(schema.metadata))
    os.replace(tmp, path)


def _part_rows(parts: str, table: str, part: str, schema: pa.Schema) -> int | None:
    """A part's row count from its footer (its rows stay unread), or None when the part is missing,
    damaged or of another schema."""
    try:
        with pa.memory_map(str(part_path(parts, table, part))) as src:
            found = pa.ipc.open_file(src).schema
        return int(found.metadata[ROWS_KEY]) if found.equals(schema) else None
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError):
        return None


def _link_part(old_parts: str, parts: str, table: str, part: str) -> None:
    """Make an earlier build's part one of this build's (parts are never changed once written);
    another batch of this build may have linked it already."""
    link_file(part_path(old_parts, table, part), part_path(parts, table, part))


def _usable_hits(hits: list[Hit | None], old_parts: str, schemas: dict[str, pa.Schema]) -> set[int]:
    """The hits whose rows are where the old index says: a part that is missing, damaged, of
    another schema or too short makes its files misses (they are parsed again)."""
    usable = set()
    rows: dict[tuple[str, str], int | None] = {}
    for i, hit in enumerate(hits):
        if hit is None or hit.reject is not None:
            continue
        for name, (start, n) in zip(PART_TABLES, hit.rows):
            key = (name, hit.part)
            if key not in rows:
                rows[key] = _part_rows(old_parts, name, hit.part, schemas[name])
            if rows[key] is None or start + n > rows[key]:
                break
        else:
            usable.add(i)
    return usable


def file_stats(doc_rows: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """What the build summary counts of one parsed file: its flags, outlet names not in the
    reference table, date mentions left unresolved (kept in the index for when it is not parsed)."""
    flags = Counter(f for name in ("documents", "excerpts") for r in doc_rows[name] for f in r["flags"] or ())
    unknown = Counter(r["outlet_raw"] for name in ("excerpts", "citations") for r in doc_rows[name]
                      if r["outlet_raw"] and r["outlet_id"] is None)
    unresolved = Counter(r["rule"] for r in doc_rows["date_mentions"] if r["date_start"] is None)
    return {k: dict(c) for k, c in (("flags", flags), ("unknown_outlets", unknown),
                                    ("unresolved_dates", unresolved)) if c}


def run_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int,
              keys: list[str | None] | None = None, hits: list[Hit | None] | None = None,
              old_parts: str | None = None) -> dict:
    """Read, decode, parse and clean one batch of files, or find their rows in `old_parts`; write
    the batch's index under `parts`, and a part with the rows of the files parsed. Files found in
    the old parts keep their rows where they are, unread: those parts are linked into `parts`,
    unless the batch's rows would then lie in more than MAX_PARTS parts (then every row is written
    into one new part). Returns small stats, never the rows."""
    keys = list(keys) if keys else [None] * len(refs)
    hits = hits or [None] * len(refs)
    schemas = {name: spec(name).part_schema for name in PART_TABLES}
    seconds: Counter = Counter()
    t = time.perf_counter()
    usable = _usable_hits(hits, old_parts, schemas) if old_parts else set()
    seconds["cache"] += time.perf_counter() - t
    # (file index, per-table rows of a parsed file or None for a hit, size, dedup digest, stats)
    docs: list[tuple[int, dict | None, int, str, dict]] = []
    rejects: list[tuple[str | None, dict]] = []
    for i, (ref, key, hit) in enumerate(zip(refs, keys, hits)):
        if i in usable:
            docs.append((i, None, hit.size, hit.dedup, hit.stats))
            continue
        if hit is not None and hit.reject is not None:
            rejects.append((key, hit.reject))
            continue
        t = time.perf_counter()
        src = read_source(ref, max_bytes)
        seconds["read"] += time.perf_counter() - t
        if isinstance(src, Reject):
            rejects.append((key, reject_row(src)))
            continue
        t = time.perf_counter()
        doc_rows = source_rows(src)
        seconds["parse"] += time.perf_counter() - t
        t = time.perf_counter()
        clean_document(doc_rows)
        seconds["clean"] += time.perf_counter() - t
        # the rows are kept under the key of the bytes that were read: a file that changed after it
        # was fingerprinted is not cached under its old bytes' key with its new bytes' rows
        keys[i] = cache_key(ref.rel, src.fingerprint, max_bytes) if src.fingerprint else None
        docs.append((i, doc_rows, src.size, dedup_digest(doc_rows), file_stats(doc_rows)))
    t = time.perf_counter()
    old = {hits[i].part for i in usable}
    parsed = [i for i, d, *_ in docs if d is not None]
    rewrite = not old or len(old) + bool(parsed) > MAX_PARTS  # every row into one new part
    mine = "part-{:06d}-{}".format(batch_no, hashlib.sha256("\0".join(
        keys[i] or refs[i].rel for i, d, *_ in docs if rewrite or d is not None).encode()).hexdigest()[:12])
    # the parsed files' rows become Arrow in one conversion per table
    fresh = {name: to_table(name, [r for _, d, *_ in docs if d is not None for r in d[name]], final=False)
             for name in PART_TABLES}
    opened: dict[tuple[str, str], pa.Table] = {}
    pieces: dict[str, list[pa.Table]] = {name: [] for name in PART_TABLES}  # what goes into `mine`
    offsets = dict.fromkeys(PART_TABLES, 0)  # into fresh
    filled = dict.fromkeys(PART_TABLES, 0)  # into mine
    files = []
    for i, d, size, digest, stats in docs:
        entry = {"key": keys[i], "size": size, "dedup": digest, "stats": stats, "part": mine, "rows": []}
        if d is None and not rewrite:  # a hit stays where it is
            entry.update(part=hits[i].part, rows=list(hits[i].rows))
        else:
            for k, name in enumerate(PART_TABLES):
                if d is None:  # a hit copied into the new part (compaction)
                    if (name, hits[i].part) not in opened:
                        opened[name, hits[i].part] = _open_part(old_parts, name, hits[i].part)
                    piece = opened[name, hits[i].part].slice(*hits[i].rows[k])
                else:
                    piece = fresh[name].slice(offsets[name], len(d[name]))
                    offsets[name] += len(d[name])
                entry["rows"].append((filled[name], len(piece)))
                filled[name] += len(piece)
                pieces[name].append(piece)
        files.append(entry)
    seconds["to_arrow"] += time.perf_counter() - t
    t = time.perf_counter()
    for name in PART_TABLES:
        if rewrite or parsed:
            # one record batch per part: many small ones (a slice per file) make LZ4 and IPC slow
            new = pa.concat_tables(pieces[name]).combine_chunks() if pieces[name] else _empty(name)
            _write_ipc(part_path(parts, name, mine), new)
        if not rewrite:
            for part in sorted(old):
                _link_part(old_parts, parts, name, part)
    index = {"files": files, "rejects": [{"key": k, "row": r} for k, r in rejects if k]}
    idx = index_path(parts, batch_no)
    idx.parent.mkdir(parents=True, exist_ok=True)
    idx.write_text(json.dumps(index, default=str), encoding="utf-8")  # last: the batch is complete
    seconds["write_parts"] += time.perf_counter() - t
    totals: dict[str, Counter] = {k: Counter() for k in ("flags", "unknown_outlets", "unresolved_dates")}
    for *_, stats in docs:
        for k, c in stats.items():
            totals[k].update(c)
    return {"files": len(refs), "read": len(docs), "bytes": sum(d[2] for d in docs),
            "dedup_digests": [d[3] for d in docs],
            "cache_hits": len(usable) + sum(1 for h in hits if h is not None and h.reject is not None),
            "rejects": [r for _, r in rejects], **{k: dict(c) for k, c in totals.items()}, "seconds": dict(seconds)}
