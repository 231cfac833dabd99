"""One batch of input files -> Arrow parts, which are also the cache of the next build. Knows nothing
of Prefect, so a worker process imports only this and the stages it runs.

A batch writes `<parts>/<table>/part-NNNNNN.arrow` (Arrow IPC, LZ4) for each per-file table, and
`<parts>/index/part-NNNNNN.json` saying which file's rows are where: for every file its cache key
(pipeline code digest + relative path + sha256 of its bytes and sidecar), its size and its row range
in each table; for every rejected file its reject row. A build keeps its parts under `<out>/cache`;
the next build looks each file's key up in them and, on a hit, copies the rows instead of parsing
the file again (a hit costs a memory-mapped read, not a parse nor a conversion from Python objects).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

from . import PIPELINE_VERSION
from .clean import clean_document
from .ingest import META_SUFFIX, Reject, SourceRef, read_source
from .records import reject_row, source_rows
from .schema import PROJECT_ROOT, REFERENCE, SCHEMA_DIR, spec
from .store import to_table

PART_TABLES = ("documents", "excerpts", "paragraphs", "citations", "date_mentions")
# Modules and data whose change can change a file's rows: any edit to them invalidates the cache.
ROW_SOURCES = ("ingest", "parse", "dates", "records", "clean", "date_mentions", "schema", "store", "batch")
INDEX = "index"
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


@cache
def code_digest(whole_build: bool = False) -> str:
    """sha256 over everything that shapes a file's rows: code, schemas, reference data. With
    `whole_build`, over everything that shapes any table: every module and the validation suites."""
    h = hashlib.sha256(f"pipeline {PIPELINE_VERSION}\n".encode())
    if whole_build:
        files = sorted((PROJECT_ROOT / "flows").glob("*.py")) + sorted((PROJECT_ROOT / "expectations").glob("*.json"))
    else:
        files = [PROJECT_ROOT / "flows" / f"{m}.py" for m in ROW_SOURCES]
    files += sorted(SCHEMA_DIR.glob("*.toml")) + sorted(p for p in REFERENCE.rglob("*") if p.is_file())
    for p in files:
        h.update(p.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(ref: SourceRef, max_bytes: int) -> str | None:
    """sha256 of a file's bytes and its sidecar's; None for what is not cached (not a regular
    file, too large, unreadable: read_source rejects those again, cheaply)."""
    try:
        st = os.stat(ref.path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        h = hashlib.sha256()
        with open(ref.path, "rb") as f:
            h.update(f.read(max_bytes + 1))
        p = Path(ref.path)
        side = p.with_name(p.stem + META_SUFFIX)
        h.update(b"\0sidecar\0")
        if side.exists():
            h.update(side.read_bytes())
        return h.hexdigest()
    except OSError:
        return None


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


def part_path(parts: str | Path, table: str, batch_no: int) -> Path:
    return Path(parts) / table / f"part-{batch_no:06d}.arrow"


def index_path(parts: str | Path, batch_no: int) -> Path:
    return Path(parts) / INDEX / f"part-{batch_no:06d}.json"


def part_numbers(parts: str | Path) -> list[int]:
    """The batches whose parts are complete (a batch writes its index last)."""
    return sorted(int(p.stem.split("-")[1]) for p in (Path(parts) / INDEX).glob("part-*.json"))


def read_part(parts: str | Path, table: str, batch_no: int, columns: list[str] | None = None) -> pa.Table:
    with pa.memory_map(str(part_path(parts, table, batch_no))) as src:
        t = pa.ipc.open_file(src).read_all()
    return t.select(columns) if columns else t


def read_parts(parts: str | Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """A table's rows from every part, in batch order."""
    pieces = [read_part(parts, table, n, columns) for n in part_numbers(parts)]
    if not pieces:
        schema = spec(table).part_schema
        return (pa.schema([schema.field(c) for c in columns]) if columns else schema).empty_table()
    return pa.concat_tables(pieces)


@dataclass(frozen=True)
class Hit:
    """Where a file's rows are in a previous build's parts (or its reject row)."""

    batch_no: int = -1
    rows: tuple[tuple[int, int], ...] = ()  # (start, length) per PART_TABLES
    size: int = 0
    reject: dict | None = None
    dedup: str = ""  # the file's dedup_digest


def cache_lookup(parts: str | Path | None) -> dict[str, Hit]:
    """key -> Hit for every file recorded in the index of a previous build's parts."""
    found: dict[str, Hit] = {}
    if parts is None:
        return found
    for n in part_numbers(parts):
        try:
            idx = json.loads(index_path(parts, n).read_text(encoding="utf-8"))
            for f in idx["files"]:
                found[f["key"]] = Hit(n, tuple(tuple(r) for r in f["rows"]), f["size"], dedup=f["dedup"])
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


def _write_ipc(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=IPC_OPTIONS) as w:
        w.write_table(table)


def _load_hits(hits: list[Hit | None], old_parts: str,
               schemas: dict[str, pa.Schema]) -> dict[int, dict[str, pa.Table]]:
    """Each hit's rows per table, read from the old parts; a part that cannot be read or does not
    hold what its index says is a miss (the file is parsed again)."""
    loaded: dict[int, dict[str, pa.Table]] = {}
    opened: dict[tuple[str, int], pa.Table | None] = {}
    for i, hit in enumerate(hits):
        if hit is None or hit.reject is not None:
            continue
        rows = {}
        for name, (start, n) in zip(PART_TABLES, hit.rows):
            key = (name, hit.batch_no)
            if key not in opened:
                try:
                    t = read_part(old_parts, name, hit.batch_no)
                    opened[key] = t if t.schema.equals(schemas[name]) else None
                except (OSError, pa.ArrowException):
                    opened[key] = None
            t = opened[key]
            if t is None or start + n > t.num_rows:
                rows = None
                break
            rows[name] = t.slice(start, n)
        if rows is not None:
            loaded[i] = rows
    return loaded


def run_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int,
              keys: list[str | None] | None = None, hits: list[Hit | None] | None = None,
              old_parts: str | None = None) -> dict:
    """Read, decode, parse and clean one batch of files (or copy their rows from `old_parts`);
    write the batch's parts and index under `parts`. Returns small stats, never the rows."""
    keys = keys or [None] * len(refs)
    hits = hits or [None] * len(refs)
    schemas = {name: spec(name).part_schema for name in PART_TABLES}
    seconds: Counter = Counter()
    t = time.perf_counter()
    loaded = _load_hits(hits, old_parts, schemas) if old_parts else {}
    seconds["cache"] += time.perf_counter() - t
    docs: list[tuple[int, str, dict, int, str]] = []  # (file index, "arrow"/"rows", per-table data, size, dedup digest)
    rejects: list[tuple[str | None, dict]] = []
    for i, (ref, key, hit) in enumerate(zip(refs, keys, hits)):
        if i in loaded:
            docs.append((i, "arrow", loaded[i], hit.size, hit.dedup))
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
        docs.append((i, "rows", doc_rows, src.size, dedup_digest(doc_rows)))
    t = time.perf_counter()
    # the parsed files' rows become Arrow in one conversion per table, then are cut back per file
    fresh = {name: to_table(name, [r for _, kind, d, *_ in docs if kind == "rows" for r in d[name]], final=False)
             for name in PART_TABLES}
    offsets = dict.fromkeys(PART_TABLES, 0)
    pieces: dict[str, list[pa.Table]] = {name: [] for name in PART_TABLES}
    filled = dict.fromkeys(PART_TABLES, 0)
    files = []
    for i, kind, d, size, digest in docs:
        ranges = []
        for name in PART_TABLES:
            if kind == "arrow":
                piece = d[name]
            else:
                piece = fresh[name].slice(offsets[name], len(d[name]))
                offsets[name] += len(d[name])
            ranges.append((filled[name], len(piece)))
            filled[name] += len(piece)
            pieces[name].append(piece)
        files.append({"key": keys[i], "size": size, "rows": ranges, "dedup": digest})
    seconds["to_arrow"] += time.perf_counter() - t
    t = time.perf_counter()
    # one record batch per part: many small ones (a slice per file) make LZ4 and IPC slow
    tables = {name: pa.concat_tables(pieces[name]).combine_chunks() if pieces[name] else schemas[name].empty_table()
              for name in PART_TABLES}
    for name in PART_TABLES:
        _write_ipc(part_path(parts, name, batch_no), tables[name])
    index = {"files": [f for f in files if f["key"]],
             "rejects": [{"key": k, "row": r} for k, r in rejects if k]}
    idx = index_path(parts, batch_no)
    idx.parent.mkdir(parents=True, exist_ok=True)
    idx.write_text(json.dumps(index, default=str), encoding="utf-8")  # last: the batch is complete
    seconds["write_parts"] += time.perf_counter() - t
    flags = Counter(f for col in (tables["documents"]["flags"], tables["excerpts"]["flags"])
                    for fl in col.to_pylist() for f in fl)
    unknown: Counter = Counter()
    for name in ("excerpts", "citations"):
        tb = tables[name].select(["outlet_raw", "outlet_id"]).to_pydict()
        unknown.update(r for r, i in zip(tb["outlet_raw"], tb["outlet_id"]) if r and i is None)
    dm = tables["date_mentions"].select(["rule", "date_start"]).to_pydict()
    unresolved = Counter(r for r, d in zip(dm["rule"], dm["date_start"]) if d is None)
    return {"files": len(refs), "read": len(docs), "bytes": sum(d[3] for d in docs),
            "dedup_digests": [d[4] for d in docs],
            "cache_hits": len(loaded) + sum(1 for h in hits if h is not None and h.reject is not None),
            "rejects": [r for _, r in rejects], "flags": dict(flags), "unknown_outlets": dict(unknown),
            "unresolved_dates": dict(unresolved), "seconds": dict(seconds)}
