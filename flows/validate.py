"""Validate: every table against its suite in expectations/<table>.json, before anything is final.

A suite holds Great Expectations 1.x expectations (validated on pandas, SUMMARY format) and DuckDB
SQL checks for rules across tables; each carries a severity. A `critical` failure stops the build
(nothing is written, one clear line names the table and the check). A `warning` failure moves the
failing rows to `quarantine` with the reason, together with the rows that depend on them through
the declared foreign keys; the published tables are then validated again and must pass everything.

Import this module only where validation runs: `import great_expectations` takes seconds.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import PROJECT_ROOT, spec, tables
from .store import DATA_DIR, ROW_GROUP_ROWS, sha256_file, to_table, write_json, write_table

SUITES = PROJECT_ROOT / "expectations"
NOT_VALIDATED = {"quarantine"}


class ValidationFailed(RuntimeError):
    """A critical expectation failed; the message is one line naming table and check."""


@dataclass
class Check:
    table: str
    name: str
    severity: str
    notes: str
    success: bool
    unexpected: int
    elements: int
    sample: list = field(default_factory=list)
    kind: str = "gx"  # gx or sql

    def line(self) -> str:
        return (f"{self.table}: {self.name} failed for {self.unexpected:,} of {self.elements:,} rows "
                f"({self.notes}); e.g. {self.sample[:3]}")


def load_suite(name: str) -> dict:
    path = SUITES / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"name": name, "expectations": [], "sql_checks": []}


def _columns_of(exps: list[dict]) -> list[str]:
    """The columns a list of expectations names."""
    return sorted({e["kwargs"][k] for e in exps for k in ("column", "column_A", "column_B") if k in e["kwargs"]})


def expectation_name(e: dict) -> str:
    kw = e["kwargs"]
    cols = kw.get("column") or f"{kw.get('column_A')},{kw.get('column_B')}"
    return f"{e['type']}({cols})"


def _row_keys(name: str, df: pd.DataFrame) -> pd.Series:
    cols = spec(name).primary_key
    keys = df[cols[0]].astype(str)
    for c in cols[1:]:
        keys = keys + "|" + df[c].astype(str)
    return keys


# ---------------------------------------------------------------- Great Expectations


class _GX:
    """One ephemeral GX context for a whole run, quiet."""

    def __init__(self):
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="great_expectations")
        import great_expectations as gx
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        for name in list(logging.root.manager.loggerDict):  # GX sets up its own loggers on import
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.ERROR)
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints each pandas batch by hashing the whole frame when it is under this size;
        # the fingerprint is only a batch marker, never part of a result, and on pandas' Arrow
        # string columns it cost more than all the checks together (15 of 24 s at 10k posts)
        pandas_execution_engine.HASH_THRESHOLD = 0
        self.gx = gx
        self.Config = ExpectationConfiguration
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.source = self.ctx.data_sources.add_pandas("kirinuki")
        self.n = 0

    def validate(self, name: str, df: pd.DataFrame, expectations: list[dict]) -> tuple[list[Check], dict]:
        if not expectations:
            return [], {"success": True, "results": []}
        self.n += 1
        # only the columns the suite names: GX fingerprints every batch by hashing the whole frame
        # (pickling it when a column holds lists), which cost more than the checks themselves
        used = set(_columns_of(expectations))
        df = df[[c for c in df.columns if c in used]]
        asset = self.source.add_dataframe_asset(name=f"{name}_{self.n}")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
        # GX reports results in its own order: tag each expectation to map its result back.
        suite = self.gx.ExpectationSuite(name=name, expectations=[
            self.Config(type=e["type"], kwargs=e["kwargs"], meta=dict(e["meta"], kirinuki_index=i)).to_domain_obj()
            for i, e in enumerate(expectations)])
        res = batch.validate(suite, result_format="SUMMARY").to_json_dict()
        # GX's execution engine keeps every batch's data (the frame) and every metric it computed
        # (whole columns of conditions) for the rest of the run: drop them, the run is done with them
        # (GX has no public call for the metric cache; without this a 100k-post build held ~2 GB)
        engine = batch.data.execution_engine
        self.source.delete_asset(asset.name)
        engine.batch_manager.batch_data_cache.clear()
        engine.batch_manager.reset_batch_cache()
        cache = getattr(engine, "_metric_cache", None)
        if isinstance(cache, dict):
            cache.clear()
        del batch, asset
        by_index = {r["expectation_config"]["meta"]["kirinuki_index"]: r for r in res["results"]}
        checks = []
        for i, e in enumerate(expectations):
            r = by_index[i]
            if r.get("exception_info", {}).get("raised_exception"):
                raise ValidationFailed(f"{name}: {expectation_name(e)} could not run: "
                                       f"{r['exception_info'].get('exception_message', '').splitlines()[0]}")
            out = r.get("result", {})
            checks.append(Check(name, expectation_name(e), e["meta"]["severity"], e["meta"].get("notes", ""),
                                bool(r["success"]), int(out.get("unexpected_count") or 0),
                                int(out.get("element_count") or len(df)), list(out.get("partial_unexpected_list") or [])))
        return checks, res


def failing_rows(df: pd.DataFrame, e: dict) -> pd.Series:
    """Rows that fail a warning-level expectation (GX SUMMARY gives counts, not row ids)."""
    t, kw = e["type"], e["kwargs"]
    col = df[kw["column"]] if "column" in kw else None
    present = col.notna() if col is not None else None
    if t == "expect_column_values_to_not_be_null":
        return col.isna()
    if t == "expect_column_values_to_be_in_set":
        return present & ~col.isin(kw["value_set"])
    if t == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        vals = col
        if isinstance(lo or hi, str):  # dates given as ISO strings
            vals = pd.to_datetime(col.where(present), errors="coerce")
            lo, hi = (pd.Timestamp(lo) if lo else None), (pd.Timestamp(hi) if hi else None)
        bad = pd.Series(False, index=df.index)
        if lo is not None:
            bad |= present & (vals < lo)
        if hi is not None:
            bad |= present & (vals > hi)
        return bad
    if t == "expect_column_value_lengths_to_be_between":
        lens = col.where(present).str.len()
        bad = pd.Series(False, index=df.index)
        if kw.get("min_value") is not None:
            bad |= present & (lens < kw["min_value"])
        if kw.get("max_value") is not None:
            bad |= present & (lens > kw["max_value"])
        return bad
    if t == "expect_column_values_to_match_regex":
        return present & ~col.where(present, "").astype(str).str.match(kw["regex"])
    if t == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = df[kw["column_A"]], df[kw["column_B"]]
        return a.notna() & b.notna() & ~(a > b)
    raise ValueError(f"no row-level rule for warning expectation {t}; make it critical or add one")


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


def needed_columns(name: str) -> list[str]:
    """The columns any check can read: keys, foreign keys, what the suite's expectations name, and
    every column whose name appears in any SQL check. Validation loads only these: the text
    columns, most of a build's bytes, are never read."""
    import re

    t = spec(name)
    words = set()
    for other in tables():
        for q in load_suite(other).get("sql_checks", []):
            words |= set(re.findall(r"[a-z_][a-z0-9_]*", q["sql"]))
    used = set(t.primary_key) | {c for cols, _ in t.foreign_keys for c in cols} | {"doc_id"}
    used |= set(_columns_of(load_suite(name)["expectations"]))
    return [c.name for c in t.columns if c.name in used or c.name in words]


def _load(data: Path, full: bool = False) -> dict[str, pa.Table]:
    return {name: _load_one(data, name, full) for name in tables() if (data / f"{name}.parquet").exists()}


def _load_one(data: Path, name: str, full: bool = False) -> pa.Table:
    return pq.read_table(data / f"{name}.parquet", columns=None if full else needed_columns(name))


def _sql_checks(con: duckdb.DuckDBPyConnection, rows: dict[str, int]) -> list[tuple[Check, list[str]]]:
    out = []
    for name in rows:
        for s in load_suite(name).get("sql_checks", []):
            keys = [str(r[0]) for r in con.execute(s["sql"]).fetchall()]
            out.append((Check(name, s["name"], s["severity"], s["notes"], not keys, len(keys), rows[name],
                              keys[:20], "sql"), keys))
    return out


def run_checks(frames: dict[str, pd.DataFrame] | None, gx: _GX, data: Path | None = None,
               previous: dict[str, dict] | None = None, digests: dict[str, str] | None = None,
               reused: list[str] | None = None) -> tuple[list[tuple[Check, dict | None, list[str]]], dict, dict[str, int]]:
    """Every check of every table: (check, the GX expectation or None, failing keys for SQL checks),
    the GX results and the row counts. Over `frames` held in memory, or (frames None) over the
    Parquet files in `data`: then one table's frame at a time is in memory, and the SQL checks
    read the files through DuckDB. Over files, each file's sha256 goes into `digests`, and a table
    whose file is the one `previous` (kept_results of an earlier build, same code) passed keeps
    those results instead of being checked again by GX (its name goes into `reused`); the SQL
    checks always run."""
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
    for check, keys in _sql_checks(con, rows):
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


def validate_build(root: Path, quarantine: bool = True, previous: dict[str, dict] | None = None) -> Report:
    """Validate the tables under root/data; quarantine warning failures (and what depends on them),
    rewrite the affected tables, validate again. Raises ValidationFailed on a critical failure.
    A build that passes is checked one table at a time; only a failing one is held whole.
    `previous`: Report.kept_results of an earlier build of the same code (see run_checks)."""
    data = root / DATA_DIR
    gx = _GX()
    digests: dict[str, str] = {}
    reused: list[str] = []
    results, gx_results, rows = run_checks(None, gx, data, previous, digests, reused)
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


def _rows(data: Path, name: str) -> int:
    path = data / f"{name}.parquet"
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


class _WholeTables(dict):
    """Table name -> the whole table (every column), read from `data` the first time it is asked for."""

    def __init__(self, data: Path):
        super().__init__()
        self.data = data

    def __missing__(self, name: str) -> pa.Table:
        self[name] = _load_one(self.data, name, full=True)
        return self[name]


def _quarantine(frames: dict[str, pd.DataFrame], arrows: dict[str, pa.Table], results) -> list[dict]:
    """Take failing rows out of their frames (in place) and return quarantine rows; then follow
    the declared foreign keys so no published row points at a quarantined one."""
    q_rows: list[dict] = []
    removed: dict[str, set[str]] = {}

    def take(name: str, mask: pd.Series, expectation: str, reason: str) -> None:
        df = frames[name]
        if not mask.any():
            return
        bad = df[mask]
        keys = _row_keys(name, bad)
        full_rows = arrows[name].filter(pa.array(mask.to_numpy(dtype=bool))).to_pylist()
        for k, row in zip(keys, full_rows):
            q_rows.append({"table_name": name, "row_key": k, "doc_id": row.get("doc_id"), "expectation": expectation,
                           "severity": "warning", "reason": reason,
                           "row_json": json.dumps(row, ensure_ascii=False, sort_keys=True, default=_json_default)})
        removed.setdefault(name, set()).update(keys)
        frames[name] = df[~mask].reset_index(drop=True)
        arrows[name] = arrows[name].filter(pa.array(~mask.to_numpy(dtype=bool)))  # Arrow keeps exact types

    for check, exp, keys in results:
        if check.success or check.severity != "warning":
            continue
        df = frames[check.table]
        mask = failing_rows(df, exp) if exp is not None else _row_keys(check.table, df).isin(set(keys))
        take(check.table, mask.fillna(False).astype(bool), check.name, f"{check.notes}")
    changed = True
    while changed:  # cascade along foreign keys until nothing more depends on a quarantined row
        changed = False
        for name, df in list(frames.items()):
            if name in NOT_VALIDATED:
                continue
            for cols, ref in spec(name).foreign_keys:
                ref_table, ref_col = ref.split(".")
                gone = removed.get(ref_table)
                if not gone or len(cols) != 1 or spec(ref_table).primary_key != (ref_col,):
                    continue
                mask = frames[name][cols[0]].astype(str).isin(gone) & frames[name][cols[0]].notna()
                if mask.any():
                    take(name, mask, f"cascade:{ref_table}", f"depends on a quarantined {ref_table} row ({cols[0]})")
                    changed = True
    return q_rows


def _json_default(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


# ---------------------------------------------------------------- reports


def write_reports(root: Path, report: Report) -> None:
    out = root / "validation"
    out.mkdir(exist_ok=True)
    write_json(out / "results.json", {
        "success": report.success,
        "rows": report.rows,
        "quarantined": report.quarantined,
        "checks": [c.__dict__ for c in report.checks],
        "great_expectations": report.gx_results,
    })
    (out / "report.html").write_text(render_html(root, report), encoding="utf-8")


def render_html(root: Path, report: Report) -> str:
    """One self-contained page: inline CSS, no scripts, no remote references."""
    from html import escape

    by_table: dict[str, list[Check]] = {}
    for c in report.checks:
        by_table.setdefault(c.table, []).append(c)
    q = pd.DataFrame()
    qf = root / DATA_DIR / "quarantine.parquet"
    if qf.exists():
        q = pq.read_table(qf).to_pandas()
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             "<title>kirinuki validation report</title><style>",
             "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}",
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}",
             ".ok{color:#176b2c;font-weight:600}.bad{color:#a61b1b;font-weight:600}.warn{color:#8a5a00;font-weight:600}",
             "code{font-size:12px}</style></head><body>",
             f"<h1>kirinuki validation: <span class='{'ok' if report.success else 'bad'}'>"
             f"{'all checks pass' if report.success else 'failures'}</span></h1>",
             f"<p>{sum(report.quarantined.values()):,} rows quarantined.</p>",
             "<h2>Tables</h2><table><tr><th>table</th><th>rows</th><th>checks</th><th>passed</th><th>result</th></tr>"]
    for name, checks in by_table.items():
        ok = sum(c.success for c in checks)
        cls = "ok" if ok == len(checks) else "bad"
        parts.append(f"<tr><td>{escape(name)}</td><td>{report.rows.get(name, 0):,}</td><td>{len(checks)}</td>"
                     f"<td>{ok}</td><td class='{cls}'>{'pass' if cls == 'ok' else 'fail'}</td></tr>")
    parts.append("</table><h2>Checks</h2><table><tr><th>table</th><th>check</th><th>severity</th><th>kind</th>"
                 "<th>failing rows</th><th>what it checks</th></tr>")
    for c in report.checks:
        cls = "ok" if c.success else ("bad" if c.severity == "critical" else "warn")
        parts.append(f"<tr><td>{escape(c.table)}</td><td><code>{escape(c.name)}</code></td><td>{c.severity}</td>"
                     f"<td>{c.kind}</td><td class='{cls}'>{c.unexpected:,}</td><td>{escape(c.notes)}</td></tr>")
    parts.append("</table><h2>Quarantined rows</h2>")
    if q.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append("<table><tr><th>table</th><th>row key</th><th>expectation</th><th>reason</th><th>row</th></tr>")
        for r in q.head(500).itertuples():
            parts.append(f"<tr><td>{escape(r.table_name)}</td><td><code>{escape(r.row_key)}</code></td>"
                         f"<td><code>{escape(r.expectation)}</code></td><td>{escape(r.reason)}</td>"
                         f"<td><code>{escape(r.row_json[:300])}</code></td></tr>")
        parts.append("</table>")
        if len(q) > 500:
            parts.append(f"<p>… and {len(q) - 500:,} more (query the quarantine table).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
