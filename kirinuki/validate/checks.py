"""Validate stage: every table of a build against its suite, before anything is final.

In: a build folder's data/*.parquet. Out: a `Report` (every check, GX results, rows, quarantined
rows per check). A `critical` failure raises ValidationFailed (one line naming table and check); a
`warning` failure moves the failing rows to `quarantine`, and the published tables are then
validated again and must pass everything."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from kirinuki.schema import spec, tables
from kirinuki.store.files import DATA_DIR, sha256_file, to_table, write_table
from kirinuki.store.layout import duckdb_files, duckdb_source, has_table, is_partitioned, row_count, table_files
from kirinuki.store.partitions import doc_years, rewrite_years
from kirinuki.validate.gx_engine import _GX
from kirinuki.validate.gx_files import validate_files
from kirinuki.validate.partitionwise import batched_keys
from kirinuki.validate.quarantine import _quarantine, _WholeTables
from kirinuki.validate.suites import NOT_VALIDATED, Check, ValidationFailed, _load, load_suite

# ---------------------------------------------------------------- the stage


@dataclass
class Report:
    checks: list[Check]
    gx_results: dict[str, dict]
    rows: dict[str, int]
    quarantined: dict[str, int]
    reused: list[str] = field(default_factory=list)  # tables whose earlier GX results were kept
    table_files: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> its files' sha256, by data/… path
    local: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> sha256 -> rows, files that passed

    def kept_results(self) -> dict[str, dict]:
        """Each table's files' digests with its GX checks and results, for the next build to reuse
        (run_checks' `previous`); only from a build that passed without quarantining anything."""
        if not self.success or any(self.quarantined.values()):
            return {}
        return {name: {"files": files, "gx": self.gx_results[name], "local": self.local.get(name, {}),
                       "checks": [c.__dict__ for c in self.checks if c.table == name and c.kind == "gx"]}
                for name, files in self.table_files.items() if name in self.gx_results}

    @property
    def digests(self) -> dict[str, str]:
        """The sha256 of every table file as validated, by data/… path."""
        return {rel: sha for files in self.table_files.values() for rel, sha in files.items()}

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

# A check with `scope = "document"` in its suite relates only rows of one post to each other (a
# row alone, or rows of one post: its paragraphs against its document, a repeat against an earlier
# row of the same post): a document an earlier passing build of the same code checked, made of the
# same inputs (DOCUMENT_INPUTS: the post's bytes, its sidecar, its convention and how it was chosen,
# so a pin counts), is made into the same rows and passes it again.
DOCUMENT_SCOPE = "document"
DOCUMENT_INPUTS = ("doc_id", "source_sha256", "meta_sha256", "convention", "convention_rule")


def _sql_checks(con: duckdb.DuckDBPyConnection, rows: dict[str, int], fresh: bool = False,
                partitions: dict[str, list[Path]] | None = None) -> list[tuple[Check, list[str]]]:
    """Every SQL check of the tables in `rows`; with `fresh`, the document-scoped ones see only the
    documents not checked before (the `fresh` schema's views, see _fresh_views). A check naming
    `by_partition` runs a batch of partitions at a time (kirinuki.validate.partitionwise) over
    `partitions`: the files each partitioned table's view reads."""
    out = []
    for name in rows:
        for s in load_suite(name).get("sql_checks", []):
            scoped = fresh and s.get("scope") == DOCUMENT_SCOPE
            keys = batched_keys(con, s, partitions or {}, scoped)
            if keys is None:
                if scoped:
                    con.execute("SET search_path = 'fresh,main'")
                keys = [str(r[0]) for r in con.execute(s["sql"]).fetchall()]
                if scoped:
                    con.execute("SET search_path = 'main'")
            out.append((Check(name, s["name"], s["severity"], s["notes"], not keys, len(keys), rows[name],
                              keys[:20], "sql"), keys))
    return out


def _fresh_views(con: duckdb.DuckDBPyConnection, names: list[str], checked: pa.Table,
                 unseen: dict[str, list[Path]] | None = None) -> dict[str, list[Path]] | None:
    """Schema `fresh`: every per-post table's rows except those of the documents `checked` holds
    with the same DOCUMENT_INPUTS as this build's, for the document-scoped checks. `unseen`: for a
    table some of whose files are byte for byte files a passing build of the same code checked (all
    their documents are in `checked`: a year an append left alone), its other files; only they are
    read. Returns `unseen` as the views use it: None when every file is read."""
    con.execute("CREATE SCHEMA fresh")
    con.register("checked_documents", checked.select(list(DOCUMENT_INPUTS)))
    # joined on doc_id and source_sha256 (the rows' own key); the other inputs may be NULL
    same = " AND ".join(f"d.{c} IS NOT DISTINCT FROM c.{c}" for c in DOCUMENT_INPUTS[2:])
    con.execute("CREATE TEMP TABLE read_before AS SELECT d.doc_id, d.source_sha256, "
                f"({same}) AS unchanged FROM main.documents d JOIN checked_documents c USING (doc_id, source_sha256)")
    con.execute("CREATE TEMP TABLE unchanged_documents AS SELECT DISTINCT doc_id, source_sha256 FROM read_before "
                "WHERE unchanged")
    if con.execute("SELECT count(*) FROM read_before WHERE NOT unchanged").fetchone()[0]:
        # a post read again with another sidecar or convention: its rows in some table may be
        # the checked ones, in a file checked before, and must be read with its other rows
        unseen = None
    for name in names:
        cols = {c.name for c in spec(name).columns}
        if not {"doc_id", "source_sha256"} <= cols:
            continue
        source = f"main.{name}"
        if unseen is not None and name in unseen:
            source = duckdb_files(unseen[name]) if unseen[name] else f"(SELECT * FROM main.{name} WHERE false)"
        con.execute(f"CREATE VIEW fresh.{name} AS SELECT t.* FROM {source} t "
                    "ANTI JOIN unchanged_documents c USING (doc_id, source_sha256)")
    return unseen


def _all_sql_checks(con: duckdb.DuckDBPyConnection, names: list[str], rows: dict[str, int],
                    checked: pa.Table | None, unseen: dict[str, list[Path]],
                    data: Path | None = None) -> list[tuple[Check, list[str]]]:
    """Every SQL check of the tables in `rows`, the document-scoped ones over the `fresh` views
    when `checked` (see _fresh_views): one call, which run_checks may run in a thread. `data`: the
    tables' folder, when they are files (a partitioned table's checks may run partition-wise)."""
    read: dict[str, list[Path]] | None = None
    if checked is not None:
        read = _fresh_views(con, names, checked, unseen)
    partitions = {name: read[name] if read is not None and name in read else table_files(data, name)
                  for name in names if data is not None and is_partitioned(data, name)}
    return _sql_checks(con, rows, fresh=checked is not None, partitions=partitions)


SQL_BESIDE_GX_BYTES = 1 << 30  # a first build's SQL checks run beside GX below this much Parquet data


def data_bytes(data: Path) -> int:
    """The size of the Parquet files under a build's data folder."""
    return sum(p.stat().st_size for p in data.rglob("*.parquet"))


def run_checks(frames: dict[str, pd.DataFrame] | None, gx: _GX, data: Path | None = None,
               previous: dict[str, dict] | None = None, reused: list[str] | None = None,
               checked: pa.Table | None = None, kept_files: dict | None = None,
               local: dict | None = None, known: dict[str, str] | None = None, copied: dict | None = None
               ) -> tuple[list[tuple[Check, dict | None, list[str]]], dict, dict[str, int]]:
    """Every check of every table: (check, the GX expectation or None, failing keys for SQL checks),
    the GX results and the row counts. Over `frames` held in memory, or (frames None) over the
    Parquet files in `data`: then one table's frame at a time is in memory, and the SQL checks
    read the files through DuckDB. Over files, each table's files' sha256 (from `known`, else
    read) go into `kept_files`, and a table whose files are the ones `previous` (kept_results of an
    earlier build, same code) passed keeps those results instead of being checked again by GX (its
    name goes into `reused`); else a file `previous` checked is not checked again by the row-local
    expectations (`local` gets the files that passed, kirinuki.validate.gx_files), nor are a file's
    rows that `copied` (by data/… path) says are rows of a file `previous` passed; the SQL
    checks always run, the document-scoped ones only over the documents not in `checked` (those an
    earlier passing build of the same code checked). With `checked`, or over less than
    SQL_BESIDE_GX_BYTES of files, the SQL checks run in a thread (DuckDB releases the GIL) while
    Great Expectations (Python, one core) runs here; their results follow the GX ones either way."""
    results: list[tuple[Check, dict | None, list[str]]] = []
    gx_results = {}
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if frames is not None:
        names = list(frames)
        for name, df in frames.items():
            con.register(name, df)
    else:
        names = [name for name in tables() if has_table(data, name)]
        for name in names:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {duckdb_source(data, name)}")
        if "quarantine" not in names:
            con.register("quarantine", to_table("quarantine", []))
    rows = {}
    unseen: dict[str, list[Path]] = {}  # per table with files checked before (same code): its others
    todo = []
    for name in names:  # what each table is, before anything is checked (the SQL checks need `unseen`)
        if name in NOT_VALIDATED:
            continue
        if frames is not None:
            rows[name] = len(frames[name])
            todo.append((name, None, None, None))
            continue
        rows[name] = row_count(data, name)
        files = table_files(data, name)
        mine = {rel: (known or {}).get(rel) or sha256_file(p)
                for rel, p in ((f"{DATA_DIR}/{p.relative_to(data).as_posix()}", p) for p in files)}
        if kept_files is not None:
            kept_files[name] = mine
        kept = (previous or {}).get(name)
        before = set((kept or {}).get("files", {}).values())
        if before & set(mine.values()):
            unseen[name] = [p for p, sha in zip(files, mine.values()) if sha not in before]
        todo.append((name, files, mine, kept))
    # the SQL checks run in a thread beside Great Expectations when this build checks what changed
    # since an earlier one (`checked`), or its tables are small; a large first build runs them after
    # GX: both at once took 68 s instead of 86 s at 110k posts, but 5.4 GB at the peak instead of 3.8
    # (measured before the paragraph-slice check ran by partition, which took its 3.3 GB away: the
    # rule stands until it is measured again)
    beside = frames is None and (checked is not None or data_bytes(data) < SQL_BESIDE_GX_BYTES)
    pool = ThreadPoolExecutor(1) if beside else None
    sql = pool.submit(_all_sql_checks, con, names, rows, checked, unseen, data) if pool is not None else None
    try:
        for name, files, mine, kept in todo:
            exps = load_suite(name)["expectations"]
            if files is None:
                checks, res = gx.validate(name, frames[name], exps)
            elif kept and kept.get("files") == mine:
                checks, res = [Check(**c) for c in kept["checks"]], kept["gx"]
                if reused is not None:
                    reused.append(name)
                if local is not None and kept.get("local"):
                    local[name] = kept["local"]
            else:
                checks, res, per_file = validate_files(gx, name, files, list(mine.values()), exps,
                                                       (kept or {}).get("local"), kept,
                                                       {sha: (copied or {})[rel] for rel, sha in mine.items()
                                                        if rel in (copied or {})})
                if local is not None and per_file:
                    local[name] = per_file
            gx_results[name] = res
            results += [(c, e, []) for c, e in zip(checks, exps)]
        done = sql.result() if sql is not None else _all_sql_checks(con, names, rows, checked, unseen, data)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)  # the checks' thread is done with the connection before it closes
        con.close()
    results += [(check, None, keys) for check, keys in done]
    return results, gx_results, rows


def validate_build(root: Path, quarantine: bool = True, previous: dict[str, dict] | None = None,
                   checked: pa.Table | None = None, known: dict[str, str] | None = None,
                   copied: dict | None = None) -> Report:
    """Validate the tables under root/data; quarantine warning failures (and what depends on them),
    rewrite the affected tables, validate again. Raises ValidationFailed on a critical failure.
    A build that passes is checked one table at a time; only a failing one is held whole.
    `previous`: Report.kept_results of an earlier build of the same code, `checked`: the documents
    that same build checked (a file it validated holds only those, so the document-scoped checks
    do not read it), `known`: the sha256 of files (by data/… path) their writer has just computed, not
    read again to be hashed (see run_checks), `copied`: rows of files that are rows of earlier files
    (see kirinuki.validate.gx_files)."""
    data = root / DATA_DIR
    gx = _GX()
    reused: list[str] = []
    kept_files: dict[str, dict[str, str]] = {}
    local: dict[str, dict[str, int]] = {}
    results, gx_results, rows = run_checks(None, gx, data, previous, reused, checked, kept_files, local, known,
                                           copied)
    critical = [c for c, _, _ in results if not c.success and c.severity == "critical"]
    if critical:
        raise ValidationFailed(critical[0].line())
    q_rows: list[dict] = []
    if not quarantine:  # re-validation of a finished build: report only, write nothing
        return Report([c for c, _, _ in results], gx_results, dict(rows, quarantine=row_count(data, "quarantine")), {})
    if any(not c.success for c, _, _ in results):
        arrows = _load(data)
        arrows.setdefault("quarantine", to_table("quarantine", []))
        frames = {name: t.to_pandas() for name, t in arrows.items()}
        arrows = _WholeTables(data)  # rows move whole: every column, of the tables that lose rows only
        q_rows = _quarantine(frames, arrows, results)
        years = doc_years(data)  # before any table is rewritten
        for name in {r["table_name"] for r in q_rows}:
            if is_partitioned(data, name):
                rewrite_years(root, name, arrows[name], years)
            else:
                write_table(root, name, arrows[name])
        q_rows.sort(key=lambda r: (r["table_name"], r["row_key"], r["expectation"]))
        frames["quarantine"] = to_table("quarantine", q_rows).to_pandas()
        results, gx_results, rows = run_checks(frames, gx)  # the published tables must now pass everything
        still = [c for c, _, _ in results if not c.success]
        if still:
            raise ValidationFailed("after quarantine, " + still[0].line())
    write_table(root, "quarantine", to_table("quarantine", q_rows))
    counts = Counter(f"{r['table_name']}: {r['expectation']}" for r in q_rows)
    return Report([c for c, _, _ in results], gx_results, dict(rows, quarantine=len(q_rows)),
                  dict(sorted(counts.items())), reused, kept_files if not q_rows else {}, local if not q_rows else {})
