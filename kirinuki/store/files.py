"""Store: Arrow tables from declared schemas, deterministic Parquet, atomic build folders.

A build is assembled in a hidden sibling folder and swapped into place only when complete, under a
lock, so an interrupted or failed run leaves the previous build intact and two runs never mix.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki.schema import TableSpec, spec, tables

DATA_DIR = "data"
DUCKDB_TMP = ".duckdb-tmp"  # DuckDB spills here; removed before the build is swapped in
DRAWN_FROM = ".drawn-from"  # the tables as the overview's charts are drawn from them (links); removed after
MADE_ROWS = ".made-rows"  # the article tables' rows an append made (not copied), for validation; removed after it
ROW_GROUP_ROWS = TableSpec.row_group_rows  # DuckDB's row-group size (a table's schema may declare fewer)
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True)


class BuildLocked(RuntimeError):
    pass


class UnsafeOutput(ValueError):
    """--out points somewhere a build must not replace."""


def check_output(out: Path, inputs: list[str]) -> None:
    """A build replaces its whole output folder: refuse one that holds the inputs or is not a build."""
    real = Path(os.path.realpath(out))
    here = Path(os.path.realpath(os.getcwd()))
    if here == real or real in here.parents:
        raise UnsafeOutput(f"--out {out} is the folder you are in (or holds it), which a build replaces whole; "
                           "run kirinuki from outside it, e.g. cd .. first")
    for raw in inputs:
        src = Path(os.path.realpath(raw))
        if real == src or real in src.parents:
            raise UnsafeOutput(f"--out {out} would replace the input {raw}; choose an output folder outside your inputs")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UnsafeOutput(f"--out {out} exists and is not a folder; choose a new or empty folder")
        if any(out.iterdir()) and not is_build(out):
            raise UnsafeOutput(f"--out {out} is a non-empty folder that is not a kirinuki build; "
                               "choose a new or empty folder (a build replaces the whole folder)")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in BUILD_ENTRIES) if is_build(out) else []
        if foreign:
            raise UnsafeOutput(f"--out {out} holds {foreign[0]!r}, which no build made and the next build would "
                               "delete; move it out of the build folder first")


# what a build folder holds (overview.html: kirinuki.overview)
BUILD_ENTRIES = {"build.json", "data", "views.sql", "logs", "validation", "cache", "overview.html"}
TMP_MARK = ".kirinuki-unfinished-build"  # in a build being assembled: what recover() may delete


def is_build(folder: Path) -> bool:
    """A folder a kirinuki build made: build.json and data/, and either build.json is a build
    summary or (a damaged build) nothing in the folder is foreign to a build."""
    if not (folder / "build.json").is_file() or not (folder / DATA_DIR).is_dir():
        return False
    summary = read_json(folder / "build.json")
    if isinstance(summary, dict) and "kirinuki_version" in summary:
        return True
    return all(p.name in BUILD_ENTRIES for p in folder.iterdir())


def duckdb_for_build(root: Path, memory_mb: int):
    """A DuckDB connection for the heavy stages: bounded memory, spilling to a folder in the build."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{int(memory_mb)}MB'")
    spill = root / DUCKDB_TMP
    spill.mkdir(exist_ok=True)
    con.execute("SET temp_directory = '" + str(spill).replace("'", "''") + "'")
    return con


def to_table(name: str, rows: list[dict], final: bool = True) -> pa.Table:
    """Rows (dicts with every column of the schema) -> an Arrow table of the declared schema
    (`final=False`: only the columns the per-batch stages fill)."""
    schema = spec(name).arrow_schema if final else spec(name).part_schema
    if rows and (missing := [n for n in schema.names if n not in rows[0]]):
        raise KeyError(f"{name}: rows lack {missing}")
    return pa.Table.from_pylist(rows, schema=schema)  # Arrow's own conversion: half the time of a list per column


def compact(root: Path, name: str, pieces: Iterable[pa.Table], dest: Path | None = None) -> int:
    """Write a table's pieces (its parts, in batch order) into data/<table>.parquet (or `dest`) with fixed-size
    row groups, so the file does not depend on how the input was batched. Streams one row group at
    a time; returns the row count."""
    schema = spec(name).arrow_schema
    group = spec(name).row_group_rows
    dest = dest or root / DATA_DIR / f"{name}.parquet"
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 0

    def flush(w: pq.ParquetWriter, t: pa.Table) -> None:
        nonlocal n
        # one contiguous chunk per column: the writer checks its dictionary size (and falls back to
        # plain pages) chunk by chunk, so chunk boundaries that follow the cache's parts would make
        # the bytes depend on which files were parsed again
        w.write_table(t.select(schema.names).cast(schema).combine_chunks(), row_group_size=group)
        n += t.num_rows

    with pq.ParquetWriter(dest, schema, **PARQUET_OPTIONS) as w:
        pending: list[pa.Table] = []
        pending_rows = 0
        for piece in pieces:
            pending.append(piece)
            pending_rows += piece.num_rows
            while pending_rows >= group:
                t = pa.concat_tables(pending)
                flush(w, t.slice(0, group))
                rest = t.slice(group)
                pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            flush(w, pa.concat_tables(pending))
    return n


def link_file(src: Path, dest: Path) -> None:
    """Hard-link `src` at `dest` (a copy, renamed into place, where links are not possible); a file
    already at `dest` is kept. Only for files never changed once written (cached parts, finished
    tables: write_table replaces a file rather than writing into it), so a link is as safe as a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except FileExistsError:
        pass
    except OSError:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def write_table(root: Path, name: str, table: pa.Table, dest: Path | None = None) -> None:
    """A small table written whole (already in its final order) to data/<name>.parquet or `dest`.
    A file already there is replaced, not written into: it may be a link to the next build's cache
    (dedup.keep_dedup) or a file of the last build."""
    dest = dest or root / DATA_DIR / f"{name}.parquet"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")  # renamed into place whole: a reader of
    schema = spec(name).arrow_schema  # the folder sees the old file or the new one, never half of it
    try:
        with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as w:
            if table.num_rows:  # an empty table has no row groups at all (readers choke on 0-row groups)
                w.write_table(table.cast(schema).combine_chunks(), row_group_size=spec(name).row_group_rows)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def link_data(root: Path, dest: Path) -> Path:
    """Every file under root/data hard-linked under dest/data (copied where links are not
    possible): what a reader sees there stays as it is now, while root's tables are rewritten
    (write_table and rewrite_years replace files, never write into them). Returns dest."""
    for src in sorted((root / DATA_DIR).rglob("*.parquet")):
        if not src.name.startswith("."):
            link_file(src, dest / DATA_DIR / src.relative_to(root / DATA_DIR))
    return dest


def views_sql(root: Path) -> str:
    """DuckDB views over the tables of the build in `root` (relative paths: open it from there);
    a partitioned table reads its year files by glob, in file-name order."""
    lines = ["-- Open with: cd <build folder> && duckdb -init views.sql", ""]
    for name in tables():
        where = f"{DATA_DIR}/{name}/*.parquet" if (root / DATA_DIR / name).is_dir() else f"{DATA_DIR}/{name}.parquet"
        lines.append(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{where}');")
    return "\n".join(lines) + "\n"


def sha256_file(path, chunk: int = 8 << 20, opener=open) -> str:
    """sha256 of a file read in chunks; `opener` may be a remote file system's open (fsspec)."""
    import hashlib

    h = hashlib.sha256()
    with opener(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> list[str]:
    """sha256_file of each path, in order, two at a time in threads, largest first (hashing and reading
    release the GIL): at 100k posts a dedup state's 1.9 GB took 1.4-1.6 s in turn, 0.7 s so."""
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(range(len(paths)), key=lambda i: -Path(paths[i]).stat().st_size)
    with ThreadPoolExecutor(2) as pool:
        digests = dict(zip(order, pool.map(lambda i: sha256_file(paths[i]), order)))
    return [digests[i] for i in range(len(paths))]


def input_files(data: Path) -> dict[str, str | None]:
    """source_path -> source_sha256 of every input a build read or rejected (from the tables in
    `data`; a rejected file whose bytes could not be read has None)."""
    out: dict[str, str | None] = {}
    from kirinuki.store.layout import has_table, read_table

    for name in ("documents", "rejects"):
        if has_table(data, name):
            t = read_table(data, name, columns=["source_path", "source_sha256"])
            out.update(zip(t["source_path"].to_pylist(), t["source_sha256"].to_pylist()))
    return out


def corpus_digest(root: Path) -> str:
    """sha256 over the sorted lines '<sha256>  <source_path>' of every input read or rejected with
    known bytes: the identity of the corpus a build was made from."""
    import hashlib

    lines = sorted(f"{h}  {p}" for p, h in input_files(root / DATA_DIR).items() if h)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n",
                    encoding="utf-8")


def read_json(path: Path) -> object | None:
    """What a JSON file at `path` holds, or None when it is missing, unreadable or not JSON (what an
    earlier build kept is only used when it reads back whole)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- atomic build folders


def _siblings(out: Path) -> tuple[Path, Path, Path]:
    return (out.parent / f".{out.name}.lock", out.parent / f".{out.name}.old",
            out.parent / f".{out.name}.tmp-{os.getpid()}")


def recover(out: Path) -> None:
    """Finish or undo what an interrupted swap left: restore the previous build, drop temp folders."""
    _, old, _ = _siblings(out)
    if old.exists():
        if not is_build(old):
            raise UnsafeOutput(f"{old} exists and is not a build kirinuki set aside; move it away (a build "
                               f"uses that name while it swaps {out} in)")
        if out.exists():
            shutil.rmtree(old)
        else:
            old.rename(out)
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        if (tmp / TMP_MARK).is_file():  # only what an unfinished build of ours left
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _flocked(path: Path, mode: int, busy: str, remove: bool = False) -> Iterator[None]:
    """Hold flock `mode` on the lock file `path`; BuildLocked(busy) at once if it is taken. With
    `remove` (the writer), the file is deleted before the lock is let go, so no `.OUT.lock` stays
    behind; every holder therefore checks, once locked, that the file it locked is still the one
    at `path` (not one a finished writer removed) and otherwise locks the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BuildLocked(busy) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        if remove:
            try:
                os.unlink(path)
            except OSError:
                pass
        os.close(fd)


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Exclusive lock for writing `out`; a second writer fails at once with a clear message."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with _flocked(_siblings(out)[0], fcntl.LOCK_EX,
                  f"another kirinuki run is writing {out}; wait for it to finish or use another --out", remove=True):
        yield


@contextmanager
def read_locked(out: Path) -> Iterator[None]:
    """Shared lock for reading `out` whole (a release, a query opening its tables): readers run
    together, but never while a build is writing or swapping `out` in; then they refuse at once.
    Readers leave the lock file for the next build to remove (only the writer deletes it)."""
    with ExitStack() as held:
        if out.parent.is_dir():
            try:
                held.enter_context(_flocked(_siblings(out)[0], fcntl.LOCK_SH,
                                            f"a kirinuki build is writing {out} right now; try again when it has finished"))
            except OSError:  # a read-only place: no build can be writing there either
                pass
        yield


@contextmanager
def atomic_dir(out: Path, unsynced: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success its files are synced to disk and it replaces
    `out`, on failure it is removed. `unsynced` names folders (relative to `out`) whose files are
    not synced: kept state whose every file is checked against its sha256 before it is used (the
    dedup state), so one torn by a crash is made again, never trusted. Call inside `locked(out)`.
    """
    recover(out)
    _, old, tmp = _siblings(out)
    tmp.mkdir(parents=True)
    (tmp / TMP_MARK).touch()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / TMP_MARK).unlink()
    fsync_tree(tmp, unsynced)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def fsync_tree(root: Path, skip: tuple[str, ...] = ()) -> None:
    """fsync every file under `root`, but those under the folders `skip` names (relative to it)."""
    skipped = {os.path.join(root, d) for d in skip}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skipped]
        for f in files:
            fsync_file(os.path.join(dirpath, f))


def fsync_file(path: str | Path) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
