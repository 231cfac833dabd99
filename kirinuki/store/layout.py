"""Where a table's rows are on disk: one Parquet file, or one file per year (or month) of the post date.

In: a folder of tables (a build's or a release's `data/`) and a table name. Out: the table's files
in row order, the relative paths to name them by, a DuckDB source and its rows read back.

A small build writes each table as `data/<table>.parquet`. A large one (at least
PARTITION_MIN_DOCUMENTS posts) writes each per-post table as `data/<table>/<year>.parquet`, one file
per year of its posts' `published_date` (`undated.parquet` for posts without one), and a year of at
least MONTHS_FROM_POSTS posts as one file per month (`<year>-<month>.parquet`), so that adding this
week's posts rewrites this month's files only (docs/scale.md). The rows of a partitioned table
are its files' rows in file-name order; every reader here follows that order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARTITION_MIN_DOCUMENTS = 5000
UNDATED = "undated"  # sorts after every year


MONTHS_FROM_POSTS = 1200  # a year of at least this many posts is one file per month (~100 posts each)


def split_years(post_dates) -> set[int]:
    """The years that hold at least MONTHS_FROM_POSTS of these posts' dates (None: undated)."""
    counts: dict[int, int] = {}
    for d in post_dates:
        if d is not None:
            counts[d.year] = counts.get(d.year, 0) + 1
    return {y for y, n in counts.items() if n >= MONTHS_FROM_POSTS}


def partition_label(date: dt.date | None, by_month: set[int] | frozenset = frozenset()) -> str:
    """The partition a post belongs to: the year of its date (`2024`), its month when the year is one
    of `by_month` (`2024-04`), or UNDATED. Labels sort in date order."""
    if date is None:
        return UNDATED
    return f"{date.year:04d}-{date.month:02d}" if date.year in by_month else f"{date.year:04d}"


def table_files(data: Path, name: str) -> list[Path]:
    """The table's files in row order: [data/<name>.parquet], or its partitions by name; [] when
    the table is not there."""
    single = data / f"{name}.parquet"
    if single.is_file():
        return [single]
    folder = data / name
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def has_table(data: Path, name: str) -> bool:
    return bool(table_files(data, name))


def is_partitioned(data: Path, name: str) -> bool:
    return (data / name).is_dir()


def duckdb_source(data: Path, name: str) -> str:
    """A `read_parquet(...)` call reading the table's files in row order (as a SQL expression)."""
    return duckdb_files(table_files(data, name))


def duckdb_files(files: list[Path], filename: bool = False, row_number: bool = False) -> str:
    """A `read_parquet(...)` call reading these files in order (as a SQL expression); with
    `filename`, each row also has the path of its file (column `filename`), with `row_number` its
    row's number in that file (column `file_row_number`)."""
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    options = (", filename = true" if filename else "") + (", file_row_number = true" if row_number else "")
    return f"read_parquet([{listed}]{options})"


def read_table(data: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (or some of its columns) read from its files, in row order."""
    files = table_files(data, name)
    if not files:
        raise FileNotFoundError(f"{data}/{name}: no such table")
    return read_files(files, columns)


def read_files(files: list[Path], columns: list[str] | None = None) -> pa.Table:
    """These Parquet files (or some of their columns) as one table, in order. A file at a time,
    without pyarrow's per-call dataset set-up and thread pool (across a partitioned table's ~650
    files at 110k posts: 2.3 -> 0.7 s for the documents' keys); with threads for a single file."""
    pieces = [pq.ParquetFile(p, pre_buffer=False).read(columns=columns, use_threads=len(files) == 1) for p in files]
    # promote: a file written elsewhere may declare a column nullable that the others do not
    return pa.concat_tables(pieces, promote_options="default") if len(pieces) > 1 else pieces[0]


def row_count(data: Path, name: str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in table_files(data, name))


def data_files(data: Path) -> list[Path]:
    """Every table file under `data`: whole tables and partitions, sorted by relative path."""
    return sorted([*data.glob("*.parquet"), *data.glob("*/*.parquet")], key=lambda p: p.relative_to(data).as_posix())
