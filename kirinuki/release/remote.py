"""Publish a release to S3-compatible storage (s3fs): stage, confirm every checksum remotely, promote.

The release is made and verified locally first (kirinuki/release/make.py), against a local mirror of the
remote history so the changelog compares with the remote's latest release. Then:
1. every file is uploaded under `<prefix>/.staging/<name>-<token>/`;
2. each staged object is read back and its sha256 compared with SHA256SUMS;
3. objects are copied server-side to `<prefix>/<name>/`, SHA256SUMS last: a remote release exists
   only once its SHA256SUMS does, so a promotion that dies half-way is cleaned up by the next one;
4. versions.json, then latest.json, are replaced.

Each step that talks to the store runs through `step(name, fn)` (default: call it). The release flow
passes a Prefect task with retries there, so a dropped connection is tried again; an answer that
cannot change on a retry (no such bucket, access denied, a release already there) is not. Every step
can run again after a failure: staging is under a fresh name, and a promotion finds a release it
already completed by its SHA256SUMS.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from kirinuki.release import SUMS, Release, ReleaseError, check_dataset_name, check_version, make_release
from kirinuki.store.files import sha256_file

STAGING = ".staging"
T = TypeVar("T")
Step = Callable[[str, Callable[[], T]], T]


class RemoteUnavailable(ReleaseError):
    """The store did not answer, or failed while answering: the same request may succeed later."""


# what the store said that a retry cannot change (s3fs maps S3's errors onto these)
FINAL_ANSWERS = (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError)


def run_step(name: str, fn: Callable[[], T]) -> T:
    """Run one step against the store, its errors as ReleaseError (RemoteUnavailable if transient)."""
    try:
        return fn()
    except ReleaseError:
        raise
    except FINAL_ANSWERS as e:
        raise ReleaseError(f"cannot {name}: {e}") from None
    except OSError as e:  # connection refused or reset, timeouts, 5xx: botocore/aiohttp errors surface as OSError
        raise RemoteUnavailable(f"cannot {name}: {e}") from None
    except ValueError as e:
        raise ReleaseError(f"cannot {name}: {e}") from None


def _direct(name: str, fn: Callable[[], T]) -> T:
    return fn()


def _fs(endpoint_url: str | None):
    try:
        import s3fs
    except ImportError:
        raise ReleaseError("publishing to s3:// needs s3fs: pip install 'kirinuki[s3]'") from None
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return s3fs.S3FileSystem(endpoint_url=endpoint_url, use_listings_cache=False) if endpoint_url \
        else s3fs.S3FileSystem(use_listings_cache=False)


def split_url(url: str) -> str:
    """s3://bucket/prefix -> 'bucket/prefix' (no trailing slash), refusing path tricks."""
    if not url.startswith("s3://"):
        raise ReleaseError(f"{url!r} is not an s3://bucket/prefix URL")
    path = url[len("s3://"):].strip("/")
    parts = path.split("/")
    if not parts[0] or any(p in ("", ".", "..") for p in parts):
        raise ReleaseError(f"{url!r} is not a valid s3://bucket/prefix URL")
    return path


def publish_s3(build: Path, version: str, url: str, profile: str = "metadata", dataset: str = "kirinuki",
               date: str | None = None, homepage: str | None = None, endpoint_url: str | None = None,
               about: dict | None = None, step: Step = _direct) -> Release:
    """Make the release locally and publish it under `url`; `step(name, fn)` runs each remote step."""
    check_version(version)
    check_dataset_name(dataset)
    base = split_url(url)
    fs = _fs(endpoint_url)
    name = f"{dataset}-{version}"
    final = f"{base}/{name}"

    def remote(what: str, fn: Callable[[], T]) -> T:
        return step(what, lambda: run_step(what, fn))

    with tempfile.TemporaryDirectory(prefix="kirinuki-release-") as tmp:
        mirror = Path(tmp)
        remote(f"read the release history at {url}", lambda: _mirror_history(fs, base, mirror, dataset, final))
        rel = make_release(build, version, mirror, profile, dataset, date, homepage, about)
        remote(f"upload and promote s3://{final}", lambda: _promote(fs, base, rel.path, name))
        remote(f"update versions.json and latest.json at {url}", lambda: _put_history(fs, base, mirror))
    return Release(f"s3://{final}", version, rel.manifest, rel.changes)


def _put_history(fs, base: str, mirror: Path) -> None:
    for meta in ("versions.json", "latest.json"):  # latest last
        fs.put_file(str(mirror / meta), f"{base}/{meta}")


def _mirror_history(fs, base: str, mirror: Path, dataset: str, final: str) -> None:
    """Refuse a version already published; copy the remote versions.json and the latest release's
    data and changelog into `mirror` (afresh on every try)."""
    if fs.exists(f"{final}/{SUMS}"):
        raise ReleaseError(f"s3://{final} already exists; releases are immutable, choose a new version")
    for old in mirror.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if not fs.exists(f"{base}/versions.json"):
        return
    fs.get_file(f"{base}/versions.json", str(mirror / "versions.json"))
    releases = [h for h in json.loads((mirror / "versions.json").read_text(encoding="utf-8"))["releases"]
                if h["dataset"] == dataset]
    if not releases:
        return
    prev = max(releases, key=lambda h: check_version(h["version"]))
    local = mirror / prev["path"]
    (local / "data").mkdir(parents=True)
    for path in fs.find(f"{base}/{prev['path']}"):
        rel = path[len(f"{base}/{prev['path']}/"):]
        if rel.startswith("data/") or rel in ("CHANGELOG.md", SUMS, "manifest.json"):
            fs.get_file(path, str(local / rel))


def _promote(fs, base: str, local: Path, name: str) -> None:
    sums = {line.split("  ", 1)[1]: line.split("  ", 1)[0]
            for line in (local / SUMS).read_text(encoding="utf-8").splitlines()}
    staging = f"{base}/{STAGING}/{name}-{os.urandom(6).hex()}"
    final = f"{base}/{name}"
    if fs.exists(f"{final}/{SUMS}"):  # a try that failed after promoting: done if it is this release
        with fs.open(f"{final}/{SUMS}", "rb") as f:
            if f.read() == (local / SUMS).read_bytes():
                return
        raise ReleaseError(f"s3://{final} was published by someone else meanwhile; choose a new version")
    try:
        for rel in [*sorted(sums), SUMS]:
            fs.put_file(str(local / rel), f"{staging}/{rel}")
        for rel, digest in sorted(sums.items()):
            if sha256_file(f"{staging}/{rel}", opener=fs.open) != digest:
                raise RemoteUnavailable(f"s3://{staging}/{rel} does not match its sha256 after upload; nothing was published")
        if fs.exists(final):  # a promotion that died before SHA256SUMS: never a release, remove it
            fs.rm(final, recursive=True)
        for rel in [*sorted(sums), SUMS]:  # SHA256SUMS last: it marks the release complete
            fs.copy(f"{staging}/{rel}", f"{final}/{rel}")
    finally:
        try:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
        except OSError:  # the store is gone: the staged copy is left under .staging/, never a release
            pass
