"""Command line: `kirinuki release` and `kirinuki verify`, each running its Prefect flow.

In: a validated build folder and a version (release), or a release folder (verify). Out: the release
and one line saying what changed since the last one; or every mismatch found, exit 1 if any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kirinuki.cli_build import INTERRUPTED
from kirinuki.console import err, fail, out, shown


def release(
    version: Annotated[str, typer.Argument(help="Semantic version of the release, e.g. 1.0.0.")],
    build_dir: Annotated[Path, typer.Option("--from", help="Validated build folder to release.")] = Path("output/build"),
    dest: Annotated[str, typer.Option("--to", help="Releases folder, or s3://bucket/prefix.")] = "output/releases",
    text: Annotated[str, typer.Option("--text", help="metadata (quoted text withheld) or full.")] = "metadata",
    name: Annotated[str, typer.Option("--name", help="Dataset name (folder <name>-<version>).")] = "kirinuki",
    date: Annotated[Optional[str], typer.Option("--date", help="Release date YYYY-MM-DD (default: today, UTC).")] = None,
    homepage: Annotated[Optional[str], typer.Option("--homepage", help="URL cited in the card and metadata.")] = None,
    endpoint_url: Annotated[Optional[str], typer.Option("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL).")] = None,
    about_file: Annotated[Optional[Path], typer.Option("--about", help="release.toml describing the corpus: creator, publisher, homepage, card sections (default: ./release.toml if present).")] = None,
) -> None:
    """Publish a validated build as an immutable, verifiable dataset release (the kirinuki-release flow)."""
    from kirinuki.release import ReleaseError, check_dataset_name, check_version
    from kirinuki.release.about import read_about
    from kirinuki.schema import TEXT_PROFILES

    try:  # before Prefect starts, so that a refusal is instant (the flow checks again)
        check_version(version)
        check_dataset_name(name)
        read_about(about_file)
        if text not in TEXT_PROFILES:
            raise ReleaseError(f"unknown text profile {text!r}; use {' or '.join(TEXT_PROFILES)}")
    except ReleaseError as e:
        fail(str(e), 2)
    from kirinuki.flows.env import without_heartbeats
    from kirinuki.flows.release import release as release_flow

    try:
        with without_heartbeats():
            rel = release_flow(str(build_dir), version, dest, text, name, date, homepage,
                               str(about_file) if about_file else None, endpoint_url)
    except ReleaseError as e:
        fail(str(e), 2)
    except OSError as e:
        fail(f"cannot write the release to {dest}: {e.strerror or e}", 1)
    except KeyboardInterrupt:
        fail("interrupted; no release was made and every earlier release is unchanged", INTERRUPTED)
    where = str(rel.path)
    c = rel.changes
    since = f"since {c['previous_version']}" if c["previous_version"] else "(first release)"
    totals = {k: sum(t[k] for t in c["tables"].values()) for k in ("added", "removed", "changed")}
    out.print(f"released {shown(name)} {shown(version)} ({shown(text)} text) -> {shown(where)}: rows {shown(since)} "
              f"+{totals['added']:,} -{totals['removed']:,} ~{totals['changed']:,}", highlight=False)
    if not rel.manifest.get("homepage"):
        out.print("note: no --homepage (nor homepage in release.toml): croissant.json names a placeholder url "
                  "(https://example.invalid/…); release again with the dataset's address before publishing it",
                  highlight=False)


def verify(
    release_dir: Annotated[Path, typer.Argument(help="Release folder to check.")],
) -> None:
    """Re-check a release's checksums, schemas and row counts from its own files (exit 1 on any problem)."""
    if not release_dir.is_dir():
        fail(f"{release_dir} is not a folder; give a release folder such as output/releases/kirinuki-1.0.0", 2)
    if not (release_dir / "SHA256SUMS").exists() and (release_dir / "versions.json").is_file():
        inside = sorted(p.name for p in release_dir.iterdir() if (p / "SHA256SUMS").is_file())
        fail(f"{release_dir} is a releases folder, not a release; verify one of its releases, e.g. "
             f"{release_dir / (inside[-1] if inside else 'kirinuki-1.0.0')}", 2)
    from kirinuki.flows.env import without_heartbeats
    from kirinuki.flows.release import verify as verify_flow

    with without_heartbeats():
        problems = verify_flow(str(release_dir))
    for p in problems:
        err.print(f"[bold red]mismatch:[/] {shown(p)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    out.print(f"{shown(release_dir)}: every checksum, schema and row count matches", highlight=False)


