"""Table schemas declared in schemas/*.toml: the single source for Arrow schemas, docs and metadata."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

from kirinuki.resources import folder

SCHEMA_DIR = folder("schemas")
REFERENCE = folder("reference")  # curated data files the stages read

ARROW_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date32": pa.date32(),
    "timestamp": pa.timestamp("us"),  # Parquet and DuckDB TIMESTAMP
    "list<string>": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str
    stage: str = "parse"  # the stage that fills it: parse/clean rows, or "dedup" (added after)
    # Quoted news text: "always", or a SQL predicate over the row saying when the value is a quote.
    # The release profile `metadata` withholds it and publishes its sha256 and length instead.
    quoted: str = ""
    # Where the value was read from (hashes, offsets, sizes) rather than what was read: a release's
    # changelog counts a row whose only differences are here as moved, not changed.
    provenance: bool = False
    derived_from: str = ""  # release-only columns: the quoted column whose sha256/length this is
    # Whose text the value is, when it is not kirinuki's own derived data: "publishers" (quoted
    # news text), "authors" (what the posts' writers wrote) or "mixed" (both: publishers' where the
    # `quoted` predicate holds, the author's elsewhere). kirinuki/release/licences.py reads it.
    owner: str = ""
    personal: bool = False  # names real people (journalists): the dataset card says so


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    foreign_keys: tuple[tuple[tuple[str, ...], str], ...] = ()
    row_group_rows: int = 122_880  # DuckDB's row-group size; a table of long texts declares fewer
    # foreign keys that quarantine does not follow (`cascade = false`): a quote whose article row is
    # quarantined keeps its place rather than taking every other quote of the article with it
    loose_keys: tuple[tuple[tuple[str, ...], str], ...] = ()

    @property
    def arrow_schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    @property
    def part_schema(self) -> pa.Schema:
        """Columns the per-batch stages fill (everything but what dedup adds later)."""
        return pa.schema([f for f, c in zip(self.arrow_schema, self.columns) if c.stage != "dedup"])


TEXT_PROFILES = ("metadata", "full")
OWNERS = ("", "publishers", "authors", "mixed")


def release_columns(t: TableSpec, profile: str) -> tuple[Column, ...]:
    """The columns a release of `profile` publishes: `full` = as declared; `metadata` = quoted text
    withheld (NULL) with `<col>_sha256` and `<col>_chars` beside it, so quotes stay comparable."""
    if profile not in TEXT_PROFILES:
        raise ValueError(f"unknown text profile {profile!r}; use {' or '.join(TEXT_PROFILES)}")
    if profile == "full":
        return t.columns
    out: list[Column] = []
    for c in t.columns:
        if not c.quoted:
            out.append(c)
            continue
        when = "" if c.quoted == "always" else f" where {c.quoted}"
        out += [Column(c.name, c.type, True, f"{c.description} Withheld (NULL){when} in the metadata profile.",
                       c.stage, c.quoted, owner=c.owner, personal=c.personal),
                Column(f"{c.name}_sha256", "string", c.nullable,
                       f"sha256 of `{c.name}` (UTF-8), published in place of the withheld text.", c.stage,
                       derived_from=c.name),
                Column(f"{c.name}_chars", "int64", c.nullable, f"Length of `{c.name}` in characters.", c.stage,
                       derived_from=c.name)]
    return tuple(out)


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in columns])


def _load(path: Path) -> TableSpec:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    columns = tuple(Column(**c) for c in raw["columns"])
    unknown = [c.type for c in columns if c.type not in ARROW_TYPES]
    if unknown:
        raise ValueError(f"{path.name}: unknown column types {unknown}")
    owners = [c.owner for c in columns if c.owner not in OWNERS]
    if owners:
        raise ValueError(f"{path.name}: unknown column owners {owners}; use one of {', '.join(OWNERS[1:])}")
    fks = tuple((tuple(fk["columns"]), fk["references"]) for fk in raw.get("foreign_keys", []))
    loose = tuple((tuple(fk["columns"]), fk["references"]) for fk in raw.get("foreign_keys", [])
                  if fk.get("cascade", True) is False)
    return TableSpec(raw["name"], raw["description"], tuple(raw["primary_key"]), columns, fks,
                     int(raw.get("row_group_rows", TableSpec.row_group_rows)), loose)


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


def schema_version() -> str:
    """Digest of every declared table (names, columns, types, keys): changes whenever schemas/ does."""
    import hashlib
    import json

    canon = [[t.name, t.primary_key, t.foreign_keys, [[c.name, c.type, c.nullable, c.quoted, c.owner] for c in t.columns]]
             for t in tables().values()]
    return hashlib.sha256(json.dumps(canon).encode()).hexdigest()[:16]


def markdown_reference(profile: str = "full", names: list[str] | None = None, level: str = "###") -> str:
    """The table reference for README and dataset cards, generated from schemas/."""
    out: list[str] = []
    for t in tables().values():
        if names is not None and t.name not in names:
            continue
        out.append(f"{level} `{t.name}`\n\n{t.description} Key: `{', '.join(t.primary_key)}`.\n")
        out.append("| column | type | nullable | description |\n|---|---|---|---|")
        for c in release_columns(t, profile):
            desc = c.description.replace("|", "\\|")
            out.append(f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {desc} |")
        out.append("")
    return "\n".join(out)
