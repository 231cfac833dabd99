"""The cache of a build: which rows of a previous build's parts the next build may take as they are.

In: a previous build's parts folder (its index files). Out: `Hit`s by cache key: a post's rows (the
part and row ranges that hold them), a reject's row, or, for an export read whole before, the
hits of all its entries and rejects (`members`). `PartCheck` says whether a hit's rows are really
where the index says; a hit that is not is parsed again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from kirinuki.build.parts import PART_TABLES, index_path, part_numbers, part_rows


@dataclass(frozen=True)
class Hit:
    """Where a post's rows are in a previous build's parts (or its reject row)."""

    part: str = ""
    rows: tuple[tuple[int, int], ...] = ()  # (start, length) in the part, per PART_TABLES
    size: int = 0
    reject: dict | None = None
    dedup: str = ""  # the post's dedup_digest
    stats: dict = field(default_factory=dict)  # the post's file_stats
    key: str = ""  # its cache key
    export: str = ""  # for an entry of an export: the export's relative path
    members: tuple[Hit, ...] = ()  # for an export: its entries' and rejects' hits, in order
    position: int | None = None  # for an entry of an export: its number in the export


def container_key(file_key: str, keep_drafts: bool, share: tuple[int, int] = (0, 1)) -> str:
    """The cache key of an export (or one share of it) read whole: its file's key, the share and
    whether drafts were kept."""
    return hashlib.sha256(f"{file_key}\0export\0drafts={keep_drafts}\0share={share}".encode()).hexdigest()


def cache_lookup(parts: str | Path | None) -> dict[str, Hit]:
    """key -> Hit for every post, reject and export recorded in the index of a previous build's parts."""
    found: dict[str, Hit] = {}
    members: dict[str, list[Hit]] = {}
    if parts is None:
        return found
    for n in part_numbers(parts):
        try:
            idx = json.loads(index_path(parts, n).read_text(encoding="utf-8"))
            for f in idx["files"]:
                hit = Hit(f["part"], tuple(tuple(r) for r in f["rows"]), f["size"], dedup=f["dedup"],
                          stats=f["stats"], key=f["key"] or "", export=f.get("in", ""), position=f.get("position"))
                if f["key"]:
                    found[f["key"]] = hit
                if f.get("container"):
                    members.setdefault(f["container"], []).append(hit)
            for r in idx["rejects"]:
                hit = Hit(reject=r["row"], key=r["key"] or "", export=r.get("in", ""))
                if r["key"]:
                    found[r["key"]] = hit
                if r.get("container"):
                    members.setdefault(r["container"], []).append(hit)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged index: its files are parsed again
    for ck, hits in members.items():
        found[ck] = Hit(key=ck, members=tuple(hits))
    return found


def entries_by_export(found: dict[str, Hit]) -> dict[str, dict[str, Hit]]:
    """export path -> {cache key: hit} of its entries: what a changed export may still reuse."""
    out: dict[str, dict[str, Hit]] = {}
    for key, hit in found.items():
        if hit.export and hit.reject is None:
            out.setdefault(hit.export, {})[key] = hit
    return out


class PartCheck:
    """Whether a hit's rows are where the old index says: a part that is missing, damaged, of
    another schema or too short makes its posts misses (they are parsed again)."""

    def __init__(self, old_parts: str | None, schemas: dict[str, pa.Schema]):
        self.old_parts = old_parts
        self.schemas = schemas
        self.rows: dict[tuple[str, str], int | None] = {}

    def ok(self, hit: Hit | None) -> bool:
        if hit is None or self.old_parts is None:
            return False
        if hit.members:
            return all(m.reject is not None or self.ok(m) for m in hit.members)
        if hit.reject is not None:
            return True
        for name, (start, n) in zip(PART_TABLES, hit.rows):
            key = (name, hit.part)
            if key not in self.rows:
                self.rows[key] = part_rows(self.old_parts, name, hit.part, self.schemas[name])
            if self.rows[key] is None or start + n > self.rows[key]:
                return False
        return True
