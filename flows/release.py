"""The release and verify flows: a validated build published as a versioned release, and re-checked.

Thin entrypoints over `kirinuki.release` for a Prefect user (`prefect deploy flows/release.py:release`);
the CLI's `kirinuki release` and `kirinuki verify` call the same functions directly.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

from pathlib import Path  # noqa: E402

from prefect import flow  # noqa: E402

from kirinuki.release import make_release, verify as verify_release  # noqa: E402


@flow(name="kirinuki-release", persist_result=False)
def release(build: str, version: str, to: str, text: str = "metadata", dataset: str = "kirinuki",
            date: str | None = None, homepage: str | None = None) -> dict:
    """Release the validated build in `build` as `<to>/<dataset>-<version>/`.

    Args:
        build: A validated build folder.
        version: Semantic version of the release, newer than the latest in `to`.
        to: The releases folder.
        text: metadata (quoted text withheld) or full.
        dataset: Dataset name (the folder is <dataset>-<version>).
        date: Release date YYYY-MM-DD (default: today, UTC).
        homepage: The dataset's address, cited in the card and metadata.
    """
    made = make_release(Path(build), version, Path(to), profile=text, dataset=dataset, date=date, homepage=homepage)
    return {"path": str(made.path), "version": made.version, "tables": made.manifest["tables"]}


@flow(name="kirinuki-verify", persist_result=False)
def verify(release_dir: str) -> list[str]:
    """Re-check a release from its own files; returns the problems found (none: it is intact).

    Args:
        release_dir: A release folder (<dataset>-<version>).
    """
    return verify_release(Path(release_dir))
