"""Validate stage: every table of a build against its suite, before anything is final.

In: a build folder's data/*.parquet. Out: a `Report` (every check, GX results, rows, quarantined
rows per check). A `critical` failure raises ValidationFailed (one line naming table and check); a
`warning` failure moves the failing rows to `quarantine`, and the published tables are then
validated again and must pass everything."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki.schema import spec, tables
from kirinuki.store.files import DATA_DIR, ROW_GROUP_ROWS, sha256_file, to_table, write_table
from kirinuki.validate.gx_engine import _GX
from kirinuki.validate.quarantine import _quarantine, _rows, _WholeTables
from kirinuki.validate.suites import NOT_VALIDATED, Check, ValidationFailed, _columns_of, _load, _load_one, load_suite

# ---------------------------------------------------------------- the stage


@dataclass
class Report:
    checks: list[Check]
    gx_results: dict[str, dict]
    rows: dict[str, int]
    quarantined: dict[str, int]
    digests: dict[str, str] = field(default_factory=dict)  # sha256 of each table's file as validated
    reused: list[str] = field(default_factory=list)  # tables whose earlier GX results were kept

    def kept_results(self) -> dict[str, dict]:
        """Each table's file digest with its GX checks and results, for the next build to reuse
        (run_checks' `previous`); only from a build that passed without quarantining anything."""
        if not self.success or any(self.quarantined.values()):
            return {}
        return {name: {"sha256": digest, "gx": self.gx_results[name],
                       "checks": [c.__dict__ for c in self.checks if c.table == name and c.kind == "gx"]}
                for name, digest in self.digests.items() if name in self.gx_results}

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

# A check with `scope = "document"` in its suite relates only rows of one post to each other, in
# columns that come from the post's text alone (offsets, slices, lengths): a document an earlier
# passing build of the same code checked (same doc_id, same source sha256) passes it again.
DOCUMENT_SCOPE = "document"


def _sql_checks(con: duckdb.DuckDBPyConnection, rows: dict[str, int],
                fresh: bool = False) -> list[tuple[Check, list[str]]]:
    """Every SQL check of the tables in `rows`; with `fresh`, the document-scoped ones see only the
    documents not checked before (the `fresh` schema's views, see _fresh_views)."""
    out = []
    for name in rows:
        for s in load_suite(name).get("sql_checks", []):
            scoped = fresh and s.get("scope") == DOCUMENT_SCOPE
            if scoped:
                con.execute("SET search_path = 'fresh,main'")
            keys = [str(r[0]) for r in con.execute(s["sql"]).fetchall()]
            if scoped:
                con.execute("SET search_path = 'main'")
            out.append((Check(name, s["name"], s["severity"], s["notes"], not keys, len(keys), rows[name],
                              keys[:20], "sql"), keys))
    return out


def _fresh_views(con: duckdb.DuckDBPyConnection, names: list[str], checked: pa.Table) -> None:
    """Schema `fresh`: every per-post table's rows except those of the documents in `checked`
    (doc_id, source_sha256), for the document-scoped checks."""
    con.execute("CREATE SCHEMA fresh")
    con.register("checked_documents", checked)
    for name in names:
        cols = {c.name for c in spec(name).columns}
        if {"doc_id", "source_sha256"} <= cols:
            con.execute(f"CREATE VIEW fresh.{name} AS SELECT t.* FROM main.{name} t "
                        "ANTI JOIN checked_documents c USING (doc_id, source_sha256)")


def run_checks(frames: dict[str, pd.DataFrame] | None, gx: _GX, data: Path | None = None,
               previous: dict[str, dict] | None = None, digests: dict[str, str] | None = None,
               reused: list[str] | None = None, checked: pa.Table | None = None,
               ) -> tuple[list[tuple[Check, dict | None, list[str]]], dict, dict[str, int]]:
    """Every check of every table: (check, the GX expectation or None, failing keys for SQL checks),
    the GX results and the row counts. Over `frames` held in memory, or (frames None) over the
    Parquet files in `data`: then one table's frame at a time is in memory, and the SQL checks
    read the files through DuckDB. Over files, each file's sha256 goes into `digests`, and a table
    whose file is the one `previous` (kept_results of an earlier build, same code) passed keeps
    those results instead of being checked again by GX (its name goes into `reused`); the SQL
    checks always run, the document-scoped ones only over the documents not in `checked` (those an
    earlier passing build of the same code checked)."""
    results: list[tuple[Check, dict | None, list[str]]] = []
    gx_results = {}
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if frames is not None:
        names = list(frames)
        for name, df in frames.items():
            con.register(name, df)
    else:
        names = [name for name in tables() if (data / f"{name}.parquet").exists()]
        for name in names:
            path = str(data / f"{name}.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        if "quarantine" not in names:
            con.register("quarantine", to_table("quarantine", []))
    rows = {}
    for name in names:
        if name in NOT_VALIDATED:
            continue
        exps = load_suite(name)["expectations"]
        if frames is not None:
            rows[name] = len(frames[name])
            checks, res = gx.validate(name, frames[name], exps)
        else:
            rows[name] = _rows(data, name)
            digest = sha256_file(data / f"{name}.parquet")
            if digests is not None:
                digests[name] = digest
            kept = (previous or {}).get(name)
            if kept and kept["sha256"] == digest:
                checks, res = [Check(**c) for c in kept["checks"]], kept["gx"]
                if reused is not None:
                    reused.append(name)
            else:
                checks, res = _validate_file(gx, data, name, exps)
        gx_results[name] = res
        results += [(c, e, []) for c, e in zip(checks, exps)]
    fresh = checked is not None and frames is None
    if fresh:
        _fresh_views(con, names, checked)
    for check, keys in _sql_checks(con, rows, fresh):
        results.append((check, None, keys))
    con.close()
    return results, gx_results, rows


# Expectations that judge each row on its own: a large table is checked in slices of rows for
# these (results summed), so its text columns are never all in memory at once. The others
# (uniqueness) see the whole of their column, which is a key, not text.
ROW_LOCAL = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
             "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between",
             "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b"}
SLICE_ROWS = ROW_GROUP_ROWS


def _validate_file(gx: _GX, data: Path, name: str, exps: list[dict]) -> tuple[list[Check], dict]:
    """GX over one table's Parquet file: whole when small; else the whole-column expectations over
    their columns, and the row-local ones slice by slice, each expectation's results summed."""
    path = data / f"{name}.parquet"
    pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every slice read until the end
    if pf.metadata.num_rows <= SLICE_ROWS or not exps:
        return gx.validate(name, _load_one(data, name).to_pandas(), exps)
    local = [i for i, e in enumerate(exps) if e["type"] in ROW_LOCAL]
    whole = [i for i, e in enumerate(exps) if e["type"] not in ROW_LOCAL]
    checks: dict[int, Check] = {}
    results: dict[int, dict] = {}

    def add(indices: list[int], df: pd.DataFrame) -> None:
        part_checks, res = gx.validate(name, df, [exps[i] for i in indices])
        by_index = {r["expectation_config"]["meta"]["kirinuki_index"]: r for r in res["results"]}
        for j, (i, c) in enumerate(zip(indices, part_checks)):
            r = by_index[j]
            if i not in checks:
                checks[i], results[i] = c, r
                results[i]["expectation_config"]["meta"]["kirinuki_index"] = i
                continue
            have, out, more = checks[i], results[i]["result"], r.get("result", {})
            have.success = have.success and c.success
            have.unexpected += c.unexpected
            have.elements += c.elements
            have.sample = (have.sample + c.sample)[:20]
            results[i]["success"] = have.success
            for k in ("element_count", "unexpected_count"):
                out[k] = (out.get(k) or 0) + (more.get(k) or 0)
            total = out["element_count"]
            out["unexpected_percent"] = 100.0 * out["unexpected_count"] / total if total else 0.0
            for k in ("partial_unexpected_list", "partial_unexpected_index_list"):
                if k in out:
                    out[k] = (list(out[k]) + list(more.get(k) or []))[:20]

    if whole:
        add(whole, pq.read_table(path, columns=_columns_of([exps[i] for i in whole])).to_pandas())
    if local:
        for batch in pf.iter_batches(batch_size=SLICE_ROWS, columns=_columns_of([exps[i] for i in local])):
            add(local, batch.to_pandas())
    ordered = [results[i] for i in range(len(exps))]
    ok = sum(1 for r in ordered if r["success"])
    res = {"success": ok == len(ordered), "suite_name": name, "results": ordered,
           "statistics": {"evaluated_expectations": len(ordered), "successful_expectations": ok,
                          "unsuccessful_expectations": len(ordered) - ok,
                          "success_percent": 100.0 * ok / len(ordered)}}
    return [checks[i] for i in range(len(exps))], res


def validate_build(root: Path, quarantine: bool = True, previous: dict[str, dict] | None = None,
                   checked: pa.Table | None = None) -> Report:
    """Validate the tables under root/data; quarantine warning failures (and what depends on them),
    rewrite the affected tables, validate again. Raises ValidationFailed on a critical failure.
    A build that passes is checked one table at a time; only a failing one is held whole.
    `previous`: Report.kept_results of an earlier build of the same code, `checked`: the documents it
    checked (see run_checks)."""
    data = root / DATA_DIR
    gx = _GX()
    digests: dict[str, str] = {}
    reused: list[str] = []
    results, gx_results, rows = run_checks(None, gx, data, previous, digests, reused, checked)
    critical = [c for c, _, _ in results if not c.success and c.severity == "critical"]
    if critical:
        raise ValidationFailed(critical[0].line())
    q_rows: list[dict] = []
    if not quarantine:  # re-validation of a finished build: report only, write nothing
        return Report([c for c, _, _ in results], gx_results, dict(rows, quarantine=_rows(data, "quarantine")), {})
    if any(not c.success for c, _, _ in results):
        arrows = _load(data)
        arrows.setdefault("quarantine", to_table("quarantine", []))
        frames = {name: t.to_pandas() for name, t in arrows.items()}
        arrows = _WholeTables(data)  # rows move whole: every column, of the tables that lose rows only
        q_rows = _quarantine(frames, arrows, results)
        for name in {r["table_name"] for r in q_rows}:
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
                  dict(sorted(counts.items())), digests if not q_rows else {}, reused)
