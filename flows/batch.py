"""One batch of input files -> Parquet parts, with a per-file cache. Knows nothing of Prefect, so a
worker process imports only this and the stages it runs.

Incremental rebuilds: each readable file gets a key from the pipeline's code digest, its relative
path and the sha256 of its bytes and sidecar. A file whose key is in the previous build's cache is
not parsed again: its rows are loaded from the cache (and hard-linked into the new build's cache,
so a cache holds exactly what its build used).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import time
from collections import Counter
from functools import cache
from pathlib import Path

import pyarrow as pa

from . import PIPELINE_VERSION
from .clean import clean_document
from .ingest import META_SUFFIX, Reject, SourceRef, read_source
from .records import reject_row, source_rows
from .schema import PROJECT_ROOT, REFERENCE, SCHEMA_DIR
from .store import to_table, write_part

PART_TABLES = ("documents", "excerpts", "paragraphs", "citations", "date_mentions")
# Modules and data whose change can change a file's rows: any edit to them invalidates the cache.
ROW_SOURCES = ("ingest", "parse", "dates", "records", "clean", "date_mentions", "schema", "store", "batch")


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


def _entry(cache_dir: str, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.pkl"


def _load(old: str | None, new: str | None, key: str | None):
    if key is None or old is None:
        return None
    src = _entry(old, key)
    try:
        with open(src, "rb") as f:
            obj = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None  # missing or damaged: parse the file again
    if new:
        dst = _entry(new, key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileExistsError:
            pass
        except OSError:
            _store(new, key, obj)
    return obj


def _store(new: str | None, key: str | None, obj) -> None:
    if key is None or new is None:
        return
    dst = _entry(new, key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(dst)


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(buf: bytes) -> pa.Table:
    return pa.ipc.open_stream(buf).read_all()


def run_batch(refs: list[SourceRef], root: str, batch_no: int, max_bytes: int,
              keys: list[str | None] | None = None, cache_old: str | None = None,
              cache_new: str | None = None) -> dict:
    """Read, decode, parse and clean one batch of files (or load them from the cache); write its
    rows as Parquet parts under `root`. Returns small stats, never the rows.

    A cache entry holds one file's rows of every table as Arrow IPC, so a hit costs a read, not a
    parse nor a conversion from Python objects."""
    keys = keys or [None] * len(refs)
    docs: list[tuple] = []  # ("arrow", {table: Table}) or ("rows", rows, key, size), in file order
    rejects: list[dict] = []
    n_bytes = 0
    seconds: Counter = Counter()
    hits = 0
    for ref, key in zip(refs, keys):
        t = time.perf_counter()
        cached = _load(cache_old, cache_new, key)
        if cached is not None:
            seconds["cache"] += time.perf_counter() - t
            hits += 1
            kind, payload, size = cached
            if kind == "reject":
                rejects.append(payload)
            else:
                n_bytes += size
                docs.append(("arrow", {name: _from_ipc(b) for name, b in payload.items()}))
            continue
        src = read_source(ref, max_bytes)
        seconds["read"] += time.perf_counter() - t
        if isinstance(src, Reject):
            rejects.append(reject_row(src))
            _store(cache_new, key, ("reject", rejects[-1], 0))
            continue
        n_bytes += src.size
        t = time.perf_counter()
        doc_rows = source_rows(src)
        seconds["parse"] += time.perf_counter() - t
        t = time.perf_counter()
        clean_document(doc_rows)
        seconds["clean"] += time.perf_counter() - t
        docs.append(("rows", doc_rows, key, src.size))
    t = time.perf_counter()
    # the parsed files' rows become Arrow in one conversion per table, then are cut back per file
    fresh = {name: to_table(name, [r for d in docs if d[0] == "rows" for r in d[1][name]], final=False)
             for name in PART_TABLES}
    offsets = dict.fromkeys(PART_TABLES, 0)
    pieces: dict[str, list[pa.Table]] = {name: [] for name in PART_TABLES}
    for d in docs:
        if d[0] == "arrow":
            for name in PART_TABLES:
                pieces[name].append(d[1][name])
            continue
        own = {}
        for name in PART_TABLES:
            n = len(d[1][name])
            own[name] = fresh[name].slice(offsets[name], n)
            offsets[name] += n
            pieces[name].append(own[name])
        _store(cache_new, d[2], ("arrow", {name: _to_ipc(tb) for name, tb in own.items()}, d[3]))
    seconds["to_arrow"] += time.perf_counter() - t
    t = time.perf_counter()
    tables = {}
    for name in PART_TABLES:
        schema = fresh[name].schema
        tables[name] = pa.concat_tables(pieces[name]) if pieces[name] else schema.empty_table()
        write_part(Path(root), name, batch_no, tables[name])
    seconds["write_parts"] += time.perf_counter() - t
    flags = Counter(f for col in (tables["documents"]["flags"], tables["excerpts"]["flags"])
                    for fl in col.to_pylist() for f in fl)
    unknown: Counter = Counter()
    for name in ("excerpts", "citations"):
        tb = tables[name].select(["outlet_raw", "outlet_id"]).to_pydict()
        unknown.update(r for r, i in zip(tb["outlet_raw"], tb["outlet_id"]) if r and i is None)
    dm = tables["date_mentions"].select(["rule", "date_start"]).to_pydict()
    unresolved = Counter(r for r, d in zip(dm["rule"], dm["date_start"]) if d is None)
    return {"files": len(refs), "read": len(refs) - len(rejects), "bytes": n_bytes, "cache_hits": hits,
            "rejects": rejects, "flags": dict(flags), "unknown_outlets": dict(unknown),
            "unresolved_dates": dict(unresolved), "seconds": dict(seconds)}
