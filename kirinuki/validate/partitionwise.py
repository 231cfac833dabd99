"""A SQL check run one batch of partitions at a time, so its memory is a batch's, not the table's.

In: a DuckDB connection, a check from expectations/<table>.sql.toml that names `by_partition`
(the tables it joins, the first the one it reports on), and the files each of those tables' views
reads in this build. Out: the keys of the rows that fail it, the same keys the check run whole
returns, or None when it must run whole.

Why. paragraphs_text_is_the_documents_slice joins every paragraph to its document's text: run
whole, DuckDB's hash join holds every post's text at once (3.3 GB at 110k posts, more than the rest
of the build). A post's rows in every per-post table lie in the file of its date (`2024-04`), so a
join on doc_id finds the same pairs file by file, as long as no doc_id appears in files of two
different names across the joined tables: that is checked first (on the doc_id column alone),
and if it fails, or a table is one file, the check runs whole.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from kirinuki.store.layout import duckdb_files

PARTITION_BATCH_BYTES = 32 << 20  # each batch reads partitions holding about this much of the tables' Parquet


def batched_keys(con: duckdb.DuckDBPyConnection, check: dict, files: dict[str, list[Path]],
                 anti_join: bool) -> list[str] | None:
    """The failing keys of `check`, run over batches of the partitions in `files` (table -> the
    files its view reads, only for partitioned tables); with `anti_join`, the first table's view
    leaves out the documents in `unchanged_documents` as its `fresh` view does, and the others are
    what its rows are compared with, every row of the batch's files. (Leaving them out there too
    made DuckDB carry each post's lines into the anti join: 5.6 GB and 11.8 s instead of 0.35 GB
    and 1.9 s for a 10 % append at 100k posts.) None: run it whole instead."""
    names = check.get("by_partition") or []
    if not names or any(n not in files for n in names) or _crosses(con, [files[n] for n in names]):
        return None
    batches = _batches([files[n] for n in names])
    con.execute("CREATE SCHEMA IF NOT EXISTS part")
    keys: list[str] = []
    try:
        con.execute("SET search_path = 'part,main'")
        for labels in batches:
            for n in names:
                mine = [p for p in files[n] if p.stem in labels]
                source = duckdb_files(mine) if mine else f"(SELECT * FROM main.{n} WHERE false)"
                skip = (" ANTI JOIN unchanged_documents c USING (doc_id, source_sha256)"
                        if anti_join and n == names[0] else "")
                con.execute(f"CREATE OR REPLACE VIEW part.{n} AS SELECT t.* FROM {source} t{skip}")
            keys += [str(r[0]) for r in con.execute(check["sql"]).fetchall()]
    finally:
        con.execute("SET search_path = 'main'")
    return keys


def _crosses(con: duckdb.DuckDBPyConnection, tables: list[list[Path]]) -> bool:
    """Whether a doc_id of the first table's files is in a file of another name in another's."""
    first, *others = tables
    if not first:
        return False
    ids = "SELECT DISTINCT doc_id, parse_filename(filename, true) AS part FROM {}"
    for other in others:
        if other and con.execute(f"SELECT 1 FROM ({ids.format(duckdb_files(first, True))}) a JOIN "
                                 f"({ids.format(duckdb_files(other, True))}) b USING (doc_id) "
                                 "WHERE a.part <> b.part LIMIT 1").fetchone():
            return True
    return False


def _batches(tables: list[list[Path]]) -> list[set[str]]:
    """The partitions' names in order, grouped so that each group's files add up to about
    PARTITION_BATCH_BYTES (a partition larger than that is a group of its own)."""
    size: dict[str, int] = {}
    for files in tables:
        for p in files:
            size[p.stem] = size.get(p.stem, 0) + p.stat().st_size
    out: list[set[str]] = []
    held = 0
    for label in sorted(size):
        if not out or held + size[label] > PARTITION_BATCH_BYTES:
            out.append(set())
            held = 0
        out[-1].add(label)
        held += size[label]
    return out
