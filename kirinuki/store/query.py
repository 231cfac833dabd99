"""Query: DuckDB SQL over a build's tables that cannot read or write anything else.

In: a build folder and SQL. Out: a relation whose rows are fetched a batch at a time. The tables
are the build's Parquet files, memory-mapped read-only by Arrow under the build's shared lock (so
one query reads one build) and handed to an in-memory DuckDB as views by name: DuckDB itself is
given no file path at all: file-system access, extensions and network
are off and the configuration is locked before any user SQL runs, and DuckDB's only writable
place is a private temporary folder (mode 0700) made for this connection and removed with it.
Only read-only statements are accepted (SELECT, EXPLAIN of a SELECT, PRAGMA); a time limit
interrupts a query that runs too long.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from kirinuki.schema import tables
from kirinuki.store.files import DATA_DIR, BuildLocked, read_locked
from kirinuki.store.layout import table_files

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\b\s*(?:ANALY[SZ]E\b\s*)?(?:\([^)]*\)\s*)?", re.I)
DEFAULT_TIMEOUT_S = 300


class QueryError(ValueError):
    pass


def open_build(build_dir: Path, memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    import pyarrow as pa
    import pyarrow.dataset as ds

    data = (build_dir / DATA_DIR).resolve()
    if not data.is_dir():
        raise QueryError(f"{build_dir} is not a kirinuki build (no {DATA_DIR}/ folder); run `kirinuki build` first")
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                              "autoload_known_extensions": False})
    # every table mapped while no build is writing: the query then reads that one build, even if
    # another build swaps a new folder in meanwhile (the mappings keep the old files' bytes)
    fmt = ds.ParquetFileFormat()
    try:
        with read_locked(build_dir):
            for name in tables():
                files = [f for f in table_files(data, name) if f.is_file() and not f.is_symlink()]
                if files:
                    fragments = [fmt.make_fragment(pa.memory_map(str(f)).read_buffer()) for f in files]
                    con.register(name, ds.FileSystemDataset(fragments, fragments[0].physical_schema, fmt))
    except BuildLocked as e:
        con.close()
        raise QueryError(str(e)) from None
    private = tempfile.mkdtemp(prefix="kirinuki-query-")  # 0700: only this user can enter it
    atexit.register(shutil.rmtree, private, True)
    con.execute("SET enable_progress_bar=false")  # it would print into the results on stdout
    con.execute(f"SET temp_directory={_lit(private)}")
    con.execute(f"SET memory_limit={_lit(memory_limit)}")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _check_read_only(con: duckdb.DuckDBPyConnection, statement) -> None:
    kind = statement.type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise QueryError(f"only read-only queries are allowed here ({kind} refused)")
    if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs what it explains: that must be read-only too
        inner = _EXPLAIN.sub("", statement.query, count=1)
        try:
            wrapped = con.extract_statements(inner)
        except duckdb.Error:
            raise QueryError("only EXPLAIN of a SELECT is allowed here") from None
        if len(wrapped) != 1 or wrapped[0].type.name != "SELECT":
            raise QueryError("only EXPLAIN of a SELECT is allowed here "
                             f"({wrapped[0].type.name if wrapped else 'nothing'} refused)")


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(message(e)) from None
    if not statements:
        raise QueryError("the query is empty")
    for st in statements:
        _check_read_only(con, st)
    try:
        for st in statements[:-1]:
            con.execute(st)
        return con.sql(statements[-1].query)
    except duckdb.Error as e:
        raise QueryError(message(e)) from None


@contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt whatever `con` runs after `seconds`; a QueryError then says so."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop) if seconds and seconds > 0 else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield
    except duckdb.Error as e:
        if fired.is_set():
            raise QueryError(f"the query was stopped after {seconds:g} s (raise --timeout to give it longer)") from None
        raise QueryError(message(e)) from None
    finally:
        if timer:
            timer.cancel()


def batches(rel: duckdb.DuckDBPyRelation, size: int = 10_000) -> Iterator[list[tuple]]:
    """The relation's rows, `size` at a time: never all of them in memory."""
    names = rel.columns
    for batch in rel.to_arrow_reader(size):
        if batch.num_rows:
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            yield list(zip(*columns)) if names else []


def message(e: Exception) -> str:
    """DuckDB's whole message (its hints, candidates and caret included), without blank lines."""
    return "\n".join(line for line in str(e).strip().splitlines() if line.strip())
