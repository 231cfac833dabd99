"""Quarantine: rows that fail a warning-level check leave their table, with the reason.

In: the tables as frames and the failed checks. Out: quarantine rows (table, row key, expectation,
reason, the row as JSON), the frames without those rows, and every row that depends on one of them
through a declared foreign key taken out too."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from kirinuki.schema import spec
from kirinuki.validate.suites import NOT_VALIDATED, _load_one, _row_keys


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
                if (cols, ref) in spec(name).loose_keys:
                    continue
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
