"""Table schemas declared in schemas/*.toml: the single source for Arrow schemas, docs and metadata."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schemas"
REFERENCE = PROJECT_ROOT / "input" / "reference"  # curated data files the stages read

ARROW_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date32": pa.date32(),
    "list<string>": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str
    stage: str = "parse"  # the stage that fills it: parse/clean rows, or "dedup" (added after)


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    foreign_keys: tuple[tuple[tuple[str, ...], str], ...] = ()

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in self.columns]
        )

    @property
    def part_schema(self) -> pa.Schema:
        """Columns the per-batch stages fill (everything but what dedup adds later)."""
        return pa.schema([f for f, c in zip(self.arrow_schema, self.columns) if c.stage != "dedup"])


def _load(path: Path) -> TableSpec:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    columns = tuple(Column(**c) for c in raw["columns"])
    unknown = [c.type for c in columns if c.type not in ARROW_TYPES]
    if unknown:
        raise ValueError(f"{path.name}: unknown column types {unknown}")
    fks = tuple((tuple(fk["columns"]), fk["references"]) for fk in raw.get("foreign_keys", []))
    return TableSpec(raw["name"], raw["description"], tuple(raw["primary_key"]), columns, fks)


@cache
def tables() -> dict[str, TableSpec]:
    """All declared tables, in a fixed order (documents first, then alphabetical)."""
    specs = {p.stem: _load(p) for p in sorted(SCHEMA_DIR.glob("*.toml"))}
    order = ["documents"] + sorted(n for n in specs if n != "documents")
    return {n: specs[n] for n in order}


def spec(name: str) -> TableSpec:
    try:
        return tables()[name]
    except KeyError:
        raise KeyError(f"no table named {name!r}; known: {', '.join(tables())}") from None


def markdown_reference() -> str:
    """The table reference for README and dataset cards, generated from schemas/."""
    out: list[str] = []
    for t in tables().values():
        out.append(f"### `{t.name}`\n\n{t.description} Key: `{', '.join(t.primary_key)}`.\n")
        out.append("| column | type | nullable | description |\n|---|---|---|---|")
        for c in t.columns:
            desc = c.description.replace("|", "\\|")
            out.append(f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {desc} |")
        out.append("")
    return "\n".join(out)
