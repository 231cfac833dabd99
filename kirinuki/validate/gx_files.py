"""Great Expectations over a table's Parquet files, a slice of rows at a time.

In: a table's files in row order (one, or one per year), their sha256, its expectations, and the
row-local results an earlier build (same code) kept per file. Out: one `Check` and one GX result per
expectation for the whole table, and the row-local results of each file for the next build.

Expectations that judge each row on its own (ROW_LOCAL) run file by file in slices of rows, their
results summed, so a table's text columns are never all in memory at once, and a file whose sha256
an earlier build checked keeps that build's row-local results. The others (uniqueness) see their
whole column, which is a key, not text, over every file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki.store.files import ROW_GROUP_ROWS
from kirinuki.validate.gx_engine import _GX
from kirinuki.validate.suites import Check, _columns_of

ROW_LOCAL = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
             "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between",
             "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b"}
SLICE_ROWS = ROW_GROUP_ROWS


class _Summed:
    """Per expectation index: its Check and GX result, with later slices' counts added in."""

    def __init__(self):
        self.checks: dict[int, Check] = {}
        self.results: dict[int, dict] = {}

    def add(self, indices: list[int], checks: list[Check], results: list[dict]) -> None:
        for i, c, r in zip(indices, checks, results):
            if i not in self.checks:
                self.checks[i], self.results[i] = Check(**c.__dict__), _copy(r)
                self.results[i]["expectation_config"]["meta"]["kirinuki_index"] = i
                continue
            have, out, more = self.checks[i], self.results[i]["result"], r.get("result", {})
            have.success = have.success and c.success
            have.unexpected += c.unexpected
            have.elements += c.elements
            have.sample = (have.sample + c.sample)[:20]
            self.results[i]["success"] = have.success
            for k in ("element_count", "unexpected_count"):
                out[k] = (out.get(k) or 0) + (more.get(k) or 0)
            total = out["element_count"]
            out["unexpected_percent"] = 100.0 * out["unexpected_count"] / total if total else 0.0
            for k in ("partial_unexpected_list", "partial_unexpected_index_list"):
                if k in out:
                    out[k] = (list(out[k]) + list(more.get(k) or []))[:20]


def _copy(r: dict) -> dict:
    return {**r, "result": dict(r.get("result") or {}),
            "expectation_config": {**r["expectation_config"], "meta": dict(r["expectation_config"].get("meta") or {})}}


def _run(gx: _GX, name: str, df: pd.DataFrame, exps: list[dict], indices: list[int]) -> tuple[list[Check], list[dict]]:
    checks, res = gx.validate(name, df, [exps[i] for i in indices])
    by_index = {r["expectation_config"]["meta"]["kirinuki_index"]: r for r in res["results"]}
    return checks, [by_index[j] for j in range(len(indices))]


def validate_files(gx: _GX, name: str, files: list[Path], shas: list[str], exps: list[dict],
                   kept: dict[str, dict] | None = None) -> tuple[list[Check], dict, dict[str, dict]]:
    """GX over a table's files: (checks, the GX result document, {sha256: row-local results} of each
    file). One small file is checked whole; see the module docstring for the rest."""
    if not exps:
        return [], {"success": True, "results": []}, {}
    if len(files) == 1 and pq.ParquetFile(files[0]).metadata.num_rows <= SLICE_ROWS:
        checks, res = gx.validate(name, pq.read_table(files[0], columns=_columns_of(exps)).to_pandas(), exps)
        return checks, res, {}
    local = [i for i, e in enumerate(exps) if e["type"] in ROW_LOCAL]
    whole = [i for i, e in enumerate(exps) if e["type"] not in ROW_LOCAL]
    total = _Summed()
    if whole:
        cols = _columns_of([exps[i] for i in whole])
        frame = pa.concat_tables([pq.read_table(f, columns=cols) for f in files], promote_options="default").to_pandas()
        total.add(whole, *_run(gx, name, frame, exps, whole))
        del frame
    per_file: dict[str, dict] = {}
    if local:
        cols = _columns_of([exps[i] for i in local])
        for f, sha in zip(files, shas):
            got = (kept or {}).get(sha)
            if not (isinstance(got, dict) and len(got.get("checks", ())) == len(local)):
                mine = _Summed()
                pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering keeps every slice read until the end
                for batch in pf.iter_batches(batch_size=SLICE_ROWS, columns=cols):
                    mine.add(local, *_run(gx, name, batch.to_pandas(), exps, local))
                if not mine.checks:  # a file with no rows
                    continue
                got = {"checks": [mine.checks[i].__dict__ for i in local], "results": [mine.results[i] for i in local]}
            per_file[sha] = got
            total.add(local, [Check(**c) for c in got["checks"]], got["results"])
    ordered = [total.results[i] for i in range(len(exps))]
    ok = sum(1 for r in ordered if r["success"])
    res = {"success": ok == len(ordered), "suite_name": name, "results": ordered,
           "statistics": {"evaluated_expectations": len(ordered), "successful_expectations": ok,
                          "unsuccessful_expectations": len(ordered) - ok,
                          "success_percent": 100.0 * ok / len(ordered)}}
    return [total.checks[i] for i in range(len(exps))], res, per_file
