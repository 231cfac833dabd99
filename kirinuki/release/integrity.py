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
        listed[m.group(2)] = m.group(1)
    on_disk = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            problems.append(f"{rel}: is a symlink (a release holds only plain files)")
        elif p.is_file() and rel != SUMS:
            on_disk.add(rel)
    for rel in sorted(set(listed) - on_disk):
        problems.append(f"{rel}: listed in {SUMS} but missing")
    for rel in sorted(on_disk - set(listed)):
        problems.append(f"{rel}: not listed in {SUMS} (added after the release was made)")
    for rel in sorted(set(listed) & on_disk):
        if sha256_file(root / rel) != listed[rel]:
            problems.append(f"{rel}: sha256 does not match {SUMS} (the file was changed)")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        declared = manifest["tables"]
    except (OSError, ValueError, KeyError):
        return problems + ["manifest.json: missing or unreadable"]
    for name, t in declared.items():
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


def _schema_diff(want: list, got: list) -> str:
    for w, g in zip(want, got):
        if w != g:
            return f"column {g[0]}: {g[1]}{'' if g[2] else ' not null'}, expected {w[0]}: {w[1]}{'' if w[2] else ' not null'}"
    return f"{len(got)} columns, expected {len(want)}"


def _safe_relpath(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)
