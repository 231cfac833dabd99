"""The release and verify flows: a validated build published as a versioned release, and re-checked.

Thin entrypoints over `kirinuki.release` (`prefect deploy flows/release.py:release`); `kirinuki release`
and `kirinuki verify` run these same flows. Publishing to s3:// runs each step that talks to the store
as a task with retries (a dropped connection is tried again, a refusal is not); nothing else retries,
because making a release from local files fails the same way twice.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, TypeVar  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from kirinuki.build.plan import api_logs  # noqa: E402
from kirinuki.flows.naming import artifact_key  # noqa: E402
from kirinuki.release import Release, make_release, verify as verify_release  # noqa: E402
from kirinuki.release.about import read_about  # noqa: E402

log = logging.getLogger("kirinuki")
T = TypeVar("T")
RETRY_DELAYS_S = [2, 10]


def _transient(task, task_run, state) -> bool:
    """Retry only what the store may answer differently next time (see release.remote)."""
    from kirinuki.release.remote import RemoteUnavailable

    return isinstance(state.result(raise_on_failure=False), RemoteUnavailable)


@task(name="s3 step", retries=len(RETRY_DELAYS_S), retry_delay_seconds=RETRY_DELAYS_S,
      retry_condition_fn=_transient, cache_policy=NO_CACHE, persist_result=False)
def remote_step(fn: Callable[[], T]) -> T:
    return fn()


def _as_task(name: str, fn: Callable[[], T]) -> T:
    return remote_step.with_options(task_run_name=name[:120])(fn)


@task(name="make release", task_run_name="make release", cache_policy=NO_CACHE, persist_result=False)
def make_local(build: Path, version: str, to: Path, text: str, dataset: str, date: str | None,
               homepage: str | None, about: dict) -> Release:
    return make_release(build, version, to, text, dataset, date, homepage, about)


def _release_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"{p.get('dataset', 'kirinuki')}-{p.get('version', '?')} <- {Path(str(p.get('build', 'build'))).name}"[:120]


@flow(name="kirinuki-release", flow_run_name=_release_name, persist_result=False)
def release(build: str, version: str, to: str = "output/releases", text: str = "metadata", dataset: str = "kirinuki",
            date: str | None = None, homepage: str | None = None, about: str | None = None,
            endpoint_url: str | None = None) -> Release:
    """Release the validated build in `build` as `<to>/<dataset>-<version>/`.

    Args:
        build: A validated build folder.
        version: Semantic version of the release, newer than the latest in `to`.
        to: The releases folder, or s3://bucket/prefix.
        text: metadata (quoted text withheld) or full.
        dataset: Dataset name (the folder is <dataset>-<version>).
        date: Release date YYYY-MM-DD (default: today, UTC).
        homepage: The dataset's address, cited in the card and metadata.
        about: A release.toml describing the corpus (default: ./release.toml if present).
        endpoint_url: S3 endpoint for s3:// (default: AWS_ENDPOINT_URL).
    """
    with api_logs():
        described = read_about(Path(about) if about else None)
        if to.startswith("s3://"):
            from kirinuki.release.remote import publish_s3

            rel = publish_s3(Path(build), version, to, text, dataset, date, homepage, endpoint_url, described,
                             step=_as_task)
        else:
            rel = make_local(Path(build), version, Path(to), text, dataset, date, homepage, described)
        c = rel.changes
        since = f"since {c['previous_version']}" if c["previous_version"] else "(first release)"
        log.info("released %s-%s (%s text) -> %s: rows %s", dataset, version, text, rel.path, since)
        _release_artifacts(rel, to, dataset, text)
    return rel


def _release_artifacts(rel: Release, to: str, dataset: str, text: str) -> None:
    where = str(rel.path)
    link = where if where.startswith("s3://") else f"file://{Path(where).resolve()}"
    c = rel.changes
    since = f"since {c['previous_version']}" if c["previous_version"] else "first release"
    lines = [f"**{dataset} {rel.version}** ({text} text, {since})", "",
             f"[release folder]({link}) · [dataset card]({link}/README.md) · [changelog]({link}/CHANGELOG.md) · "
             f"`kirinuki verify {where}`", ""]
    create_markdown_artifact(key=artifact_key(to, f"release-{dataset}"), markdown="\n".join(lines),
                             description=f"The latest {dataset} release in {to}")
    create_table_artifact(key=artifact_key(to, f"release-{dataset}-rows"),
                          description=f"Rows per table of {dataset} {rel.version}, and changed since the last release",
                          table=[{"table": t, "rows": rel.manifest["tables"][t]["rows"], **{k: v[k] for k in
                                  ("added", "removed", "changed")}} for t, v in sorted(c["tables"].items())
                                 if t in rel.manifest["tables"]])


def _verify_name() -> str:
    from prefect.runtime import flow_run

    return f"verify {Path(str(flow_run.parameters.get('release_dir', '?'))).name}"[:120]


@flow(name="kirinuki-verify", flow_run_name=_verify_name, persist_result=False)
def verify(release_dir: str) -> list[str]:
    """Re-check a release from its own files; returns the problems found (none: it is intact).

    Args:
        release_dir: A release folder (<dataset>-<version>).
    """
    with api_logs():
        problems = verify_release(Path(release_dir))
        for p in problems:
            log.warning("mismatch: %s", p)
        log.info("%s: %s", release_dir, f"{len(problems)} problems" if problems else "intact")
    where = Path(release_dir).resolve()
    create_markdown_artifact(
        key=artifact_key(where, "verify"), description=f"Re-check of the release {where.name}",
        markdown=f"**{where.name}**: " + (f"{len(problems)} problems" if problems else "every checksum, schema and row count matches")
        + "".join(f"\n- {p}" for p in problems[:50]))
    return problems
