"""The suites: what each table is checked against, read from the shipped expectations/ folder.

In: a table name. Out: its suite (Great Expectations 1.x expectations from expectations/<table>.json,
a native GX suite, and DuckDB SQL checks from expectations/<table>.sql.toml, each with a severity),
the columns the checks read, and `Check`, one check's outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from kirinuki.resources import folder
from kirinuki.schema import spec, tables
from kirinuki.store.layout import has_table, read_table

SUITES = folder("expectations")
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
    """{"name", "expectations": [GX expectation dicts with their own `severity`], "sql_checks": […]}:
    expectations/<name>.json is a native GX 1.x suite (`gx.ExpectationSuite(**json)` loads it),
    expectations/<name>.sql.toml the table's DuckDB SQL checks."""
    import tomllib

    path, sql = SUITES / f"{name}.json", SUITES / f"{name}.sql.toml"
    suite = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"name": name, "expectations": []}
    checks = tomllib.loads(sql.read_text(encoding="utf-8")).get("check", []) if sql.exists() else []
    return {"name": suite["name"], "expectations": suite["expectations"], "sql_checks": checks}


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
    return {name: _load_one(data, name, full) for name in tables() if has_table(data, name)}


def _load_one(data: Path, name: str, full: bool = False) -> pa.Table:
    return read_table(data, name, columns=None if full else needed_columns(name))
