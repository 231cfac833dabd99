"""A releases folder's history: versions.json and latest.json.

In: a releases folder and a verified release. Out: the history with it recorded (sorted by
version), latest.json pointing at the newest; `recover` drops unfinished release folders and
records a verified one whose run died before it was recorded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kirinuki.release.checks import SEMVER, SUMS, ReleaseError, check_version
from kirinuki.release.integrity import verify
from kirinuki.store.files import sha256_file, write_json

# ---------------------------------------------------------------- history: versions.json and latest.json


def read_history(dest: Path) -> list[dict]:
    path = dest / "versions.json"
    if not path.exists():
        return []
    try:
        releases = json.loads(path.read_text(encoding="utf-8"))["releases"]
        if not isinstance(releases, list) or not all(isinstance(h, dict) and isinstance(h.get("name"), str)
                                                     and isinstance(h.get("version"), str) for h in releases):
            raise ValueError("not a list of releases")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReleaseError(f"{path} is unreadable ({type(e).__name__}); restore it from a copy, or move it away "
                           "to start a new history") from None
    return releases


def _write_atomic_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_json(tmp, obj)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def record(dest: Path, entry: dict) -> None:
    """Add a verified release to versions.json, then point latest.json at it."""
    history = [h for h in read_history(dest) if h["name"] != entry["name"]] + [entry]
    history.sort(key=lambda h: (h["dataset"], check_version(h["version"])))
    _write_atomic_json(dest / "versions.json", {"releases": history})
    _write_atomic_json(dest / "latest.json", entry)


def _entry(path: Path, manifest: dict) -> dict:
    return {"dataset": manifest["dataset"], "version": manifest["version"], "name": path.name,
            "path": path.name, "release_date": manifest["release_date"], "text_profile": manifest["text_profile"],
            "sha256sums": sha256_file(path / SUMS)}


def recover(dest: Path, dataset: str) -> None:
    """Under the lock: drop unfinished release folders; record a complete release whose run died
    between the rename and the history update (it was verified before the rename)."""
    for tmp in dest.glob(f".{dataset}-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    known = {h["name"] for h in read_history(dest)}
    for d in sorted(dest.glob(f"{dataset}-*"), key=lambda p: _version_key(p.name, dataset)):
        if d.is_dir() and d.name not in known and SEMVER.fullmatch(d.name[len(dataset) + 1:]) and not verify(d):
            record(dest, _entry(d, json.loads((d / "manifest.json").read_text(encoding="utf-8"))))


def _version_key(name: str, dataset: str) -> tuple:
    try:
        return check_version(name[len(dataset) + 1:])
    except ReleaseError:
        return (-1,)


def latest(dest: Path, dataset: str) -> dict | None:
    same = [h for h in read_history(dest) if h["dataset"] == dataset]
    return max(same, key=lambda h: check_version(h["version"])) if same else None
