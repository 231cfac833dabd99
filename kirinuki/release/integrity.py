"""Verify: re-check a release from its own files.

In: a release folder. Out: every problem found, one line each naming the file (checksums in
SHA256SUMS, manifest against the Parquet files' rows, sizes and schemas, no stray files); an empty
list means the release is intact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from kirinuki.release.checks import SUMS
from kirinuki.schema import ARROW_TYPES
from kirinuki.store.files import sha256_file

# ---------------------------------------------------------------- verify


def verify(root: Path) -> list[str]:
    """Every problem found re-checking a release from its own files, one line each naming the file
    (an empty list means the release is intact)."""
    problems: list[str] = []
    sums = root / SUMS
    if not sums.is_file():
        return [f"{SUMS}: missing (not a kirinuki release, or an unfinished one)"]
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = re.fullmatch(r"([0-9a-f]{64})  (\S.*)", line)
        if not m or not _safe_relpath(m.group(2)):
            problems.append(f"{SUMS}: line {n} is not '<sha256>  <relative path>'")
            continue
        if m.group(2) in listed:  # `sha256sum -c` checks every line; a second one must not win
            problems.append(f"{SUMS}: line {n} lists {m.group(2)} again")
            continue
        listed[m.group(2)] = m.group(1)
    on_disk = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            problems.append(f"{rel}: is a symlink (a release holds only plain files)")
        elif p.is_dir():
            if not any(p.iterdir()):
                problems.append(f"{rel}: an empty folder (not part of the release)")
        elif not p.is_file():
            problems.append(f"{rel}: is not a regular file (a release holds only plain files)")
        elif rel != SUMS:
            on_disk.add(rel)
    for rel in sorted(set(listed) - on_disk):
        problems.append(f"{rel}: listed in {SUMS} but missing")
    for rel in sorted(on_disk - set(listed)):
        problems.append(f"{rel}: not listed in {SUMS} (added after the release was made)")
    for rel in sorted(set(listed) & on_disk):
        if sha256_file(root / rel) != listed[rel]:
            problems.append(f"{rel}: sha256 does not match {SUMS} (the file was changed)")
    problems += _history_problems(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        declared = manifest["tables"]
    except (OSError, ValueError, KeyError, TypeError):
        return problems + ["manifest.json: missing or unreadable"]
    if not isinstance(declared, dict):
        return problems + ["manifest.json: `tables` is not an object of tables"]
    for name, t in declared.items():
        shape = _table_entry_problem(t)
        if shape:
            problems.append(f"manifest.json: table {name}: {shape}")
            continue
        path = root / t["path"]
        if not _safe_relpath(t["path"]) or not path.is_file():
            problems.append(f"{t['path']}: table {name} is missing")
            continue
        try:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            problems.append(f"{t['path']}: not readable as Parquet ({type(e).__name__})")
            continue
        want = [(c["name"], ARROW_TYPES.get(c["type"]), c["nullable"]) for c in t["columns"]]
        got = [(f.name, f.type, f.nullable) for f in schema]
        if want != got:
            problems.append(f"{t['path']}: schema differs from manifest.json ({_schema_diff(want, got)})")
        if pf.metadata.num_rows != t["rows"]:
            problems.append(f"{t['path']}: {pf.metadata.num_rows:,} rows, manifest.json says {t['rows']:,}")
        if listed.get(t["path"]) not in (None, t["sha256"]):
            problems.append(f"{t['path']}: sha256 in manifest.json differs from {SUMS}")
    return problems


def _table_entry_problem(t: object) -> str | None:
    """What is wrong with the shape of one manifest table entry (None: nothing)."""
    if not isinstance(t, dict):
        return "not an object"
    for key, kind in (("path", str), ("rows", int), ("sha256", str), ("columns", list)):
        if not isinstance(t.get(key), kind) or isinstance(t.get(key), bool):
            return f"`{key}` missing or not a {kind.__name__}"
    for c in t["columns"]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("type"), str) \
                or not isinstance(c.get("nullable"), bool):
            return "a column is not {name, type, nullable}"
    return None


def _history_problems(root: Path) -> list[str]:
    """A release inside a releases folder must be the one its history recorded: the sha256 of its
    SHA256SUMS in versions.json and, when it is the latest, in latest.json."""
    out = []
    sums = sha256_file(root / SUMS)
    for name in ("versions.json", "latest.json"):
        path = root.parent / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = data["releases"] if name == "versions.json" else [data]
            mine = [e for e in entries if isinstance(e, dict) and e.get("name") == root.name]
        except (OSError, ValueError, KeyError, TypeError):
            out.append(f"{path}: unreadable, so this release cannot be checked against its history")
            continue
        if any(e.get("sha256sums") != sums for e in mine):
            out.append(f"{SUMS}: its sha256 differs from the one {name} recorded (the release was altered)")
    return out


def _schema_diff(want: list, got: list) -> str:
    for w, g in zip(want, got):
        if w != g:
            return f"column {g[0]}: {g[1]}{'' if g[2] else ' not null'}, expected {w[0]}: {w[1]}{'' if w[2] else ' not null'}"
    return f"{len(got)} columns, expected {len(want)}"


def _safe_relpath(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)
