"""make_release: a validated build becomes an immutable, versioned release folder.

In: a build folder, a version, a releases folder. Out: `<dest>/<dataset>-<version>/`, assembled in a
hidden sibling folder, verified from its own files, renamed into place (never over an existing
version) and only then recorded in versions.json and latest.json."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kirinuki.release.assemble import assemble
from kirinuki.release.checks import Release, ReleaseError, check_build, check_dataset_name, check_version, release_date
from kirinuki.release.history import _entry, latest, record, recover
from kirinuki.release.integrity import verify
from kirinuki.schema import TEXT_PROFILES
from kirinuki.store.files import BuildLocked, fsync_tree, is_build, locked, read_locked


def make_release(build: Path, version: str, dest: Path, profile: str = "metadata", dataset: str = "kirinuki",
                 date: str | None = None, homepage: str | None = None, about: dict | None = None) -> Release:
    """Release a validated build as `<dest>/<dataset>-<version>/` (see the module docstring)."""
    key = check_version(version)
    check_dataset_name(dataset)
    if profile not in TEXT_PROFILES:
        raise ReleaseError(f"unknown text profile {profile!r}; use {' or '.join(TEXT_PROFILES)}")
    date = release_date(date)
    real_dest = Path(os.path.realpath(dest))
    for folder in (real_dest, *real_dest.parents):
        if is_build(folder):
            raise ReleaseError(f"--to {dest} is inside the build folder {folder}, which every build replaces; "
                               "keep releases outside it (e.g. output/releases)")
    try:
        with read_locked(build):  # one build, whole: no build may swap a new one in meanwhile
            summary = check_build(build)
            dest.mkdir(parents=True, exist_ok=True)
            name = f"{dataset}-{version}"
            final = dest / name
            with locked(dest / dataset):
                recover(dest, dataset)
                if final.exists():
                    raise ReleaseError(f"{final} already exists; releases are immutable, choose a new version")
                prev = latest(dest, dataset)
                if prev and check_version(prev["version"]) >= key:
                    raise ReleaseError(f"version {version} is not newer than the latest release {prev['version']}")
                tmp = dest / f".{name}.tmp-{os.getpid()}"
                try:
                    manifest, changes = assemble(build, summary, tmp, dataset, version, profile, date,
                                                 (prev["version"], dest / prev["path"]) if prev else None, homepage,
                                                 about or {})
                    problems = verify(tmp)
                    if problems:
                        raise ReleaseError(f"the assembled release does not verify: {problems[0]}")
                    fsync_tree(tmp)
                    os.rename(tmp, final)  # an existing `final` (impossible under the lock) would make this fail
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                record(dest, _entry(final, manifest))
    except BuildLocked as e:
        raise ReleaseError(str(e)) from None
    return Release(final, version, manifest, changes)
