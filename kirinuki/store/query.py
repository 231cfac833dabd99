"""Query: DuckDB over a build's Parquet tables, read-only and sandboxed.

Each table is a view by its name. After the views are bound the connection may read only those
Parquet files: file access elsewhere, extensions and network are disabled and the configuration
is locked; only read-only statements (SELECT, EXPLAIN, DESCRIBE, SHOW, …) are accepted.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from kirinuki.schema import tables
from kirinuki.store.files import DATA_DIR

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}


class QueryError(ValueError):
    pass


def open_build(build_dir: Path, memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    data = (build_dir / DATA_DIR).resolve()
    if not data.is_dir():
        raise QueryError(f"{build_dir} is not a kirinuki build (no {DATA_DIR}/ folder); run `kirinuki build` first")
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                              "autoload_known_extensions": False})
    files = []
    for name in tables():
        f = data / f"{name}.parquet"
        if f.exists():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_lit(f)})")
            files.append(str(f))
    con.execute(f"SET allowed_paths=[{', '.join(_lit(f) for f in files)}]")
    con.execute(f"SET memory_limit={_lit(memory_limit)}")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(_first_line(e)) from None
    if not statements:
        raise QueryError("the query is empty")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise QueryError(f"only read-only queries are allowed here ({kind} refused)")
    try:
        for st in statements[:-1]:
            con.execute(st)
        return con.sql(statements[-1].query)
    except duckdb.Error as e:
        raise QueryError(_first_line(e)) from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0]
