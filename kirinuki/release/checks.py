"""What a release may be made from, and under which name.

In: a version, a dataset name, a date, a build folder. Out: the version as a sortable key, the
name, the date (YYYY-MM-DD, or today, or SOURCE_DATE_EPOCH's), and the build's summary once the
build is shown to be a finished, validated build whose files are the ones validated; else a
`ReleaseError` with one line saying what to do."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kirinuki.schema import schema_version
from kirinuki.store.layout import data_files
from kirinuki.store.files import DATA_DIR, sha256_file

SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?", re.ASCII)
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
SUMS = "SHA256SUMS"
KEYS_LISTED = 1000  # changed keys listed per table and kind in changes.json
KEYS_SHOWN = 20  # ... and in CHANGELOG.md


class ReleaseError(Exception):
    """A release was refused or failed; the message is one line saying what to do."""


@dataclass(frozen=True)
class Release:
    path: Path | str  # a local folder, or an s3:// URL
    version: str
    manifest: dict
    changes: dict


# ---------------------------------------------------------------- names and checks


def check_version(version: str) -> tuple:
    if not SEMVER.fullmatch(version or ""):
        raise ReleaseError(f"release version {version!r} is not a semantic version like 1.0.0 or 1.1.0-rc.1")
    major, minor, patch, pre = SEMVER.fullmatch(version).group(1, 2, 3, 4)
    if not pre:  # a pre-release sorts before its release
        return int(major), int(minor), int(patch), (1,)
    # semver precedence: numeric identifiers compare as numbers and sort before alphanumeric ones
    ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in pre[1:].split("."))
    return int(major), int(minor), int(patch), (0, ids)


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.fullmatch(name or ""):
        raise ReleaseError(f"dataset name {name!r} must be 1-64 lowercase letters, digits, '-' or '_'")
    return name


def _json_object(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReleaseError(f"{path} is unreadable ({type(e).__name__}); rebuild with kirinuki build") from None
    if not isinstance(obj, dict):
        raise ReleaseError(f"{path} is not what kirinuki writes there; rebuild with kirinuki build")
    return obj


def check_build(build: Path) -> dict:
    """The build's summary, if the build passed validation and its data is what was validated."""
    summary_path = build / "build.json"
    if not (build / DATA_DIR).is_dir() or not summary_path.is_file():
        raise ReleaseError(f"{build} is not a finished kirinuki build (no build.json or {DATA_DIR}/); run kirinuki build first")
    summary = _json_object(summary_path)
    results = build / "validation" / "results.json"
    if not results.is_file():
        raise ReleaseError(f"{build} has no validation results; rebuild it with kirinuki build")
    validation = summary.get("validation")
    if not _json_object(results).get("success") or not isinstance(validation, dict) or not validation.get("success"):
        raise ReleaseError(f"{build} did not pass validation (see {build / 'validation' / 'report.html'}); fix and rebuild")
    files = summary.get("files")
    if not files:
        raise ReleaseError(f"{build} was made by an older kirinuki without data checksums; rebuild it")
    on_disk = {f"{DATA_DIR}/{p.relative_to(build / DATA_DIR).as_posix()}" for p in data_files(build / DATA_DIR)}
    for rel in sorted(on_disk | set(files)):
        if rel not in files or rel not in on_disk or sha256_file(build / rel) != files[rel]:
            raise ReleaseError(f"{build / rel} is not the file that was validated; rebuild before releasing")
    if summary.get("schema_version") != schema_version():
        raise ReleaseError(f"{build} was built with another schema version ({summary.get('schema_version')}); rebuild it")
    return summary

def release_date(given: str | None) -> str:
    if given:
        import datetime as dt

        try:
            valid = bool(DATE.fullmatch(given)) and dt.date.fromisoformat(given).isoformat() == given
        except ValueError:
            valid = False
        if not valid:
            raise ReleaseError(f"release date {given!r} is not a calendar date written YYYY-MM-DD")
        return given
    import datetime as dt

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return now.date().isoformat()
