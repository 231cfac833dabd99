"""The build flow's tasks around the per-post tables: dedup, the reference tables, validation and
the overview. Each wraps a plain function of the `kirinuki` package; flows/build.py composes them.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

import multiprocessing  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from kirinuki.build.validation import validate_files  # noqa: E402
from kirinuki.build.workers import WorkerPool  # noqa: E402
from kirinuki.clean.normalize import entity_rows, outlet_rows  # noqa: E402
from kirinuki.dedup import DedupConfig, dedup_parts  # noqa: E402
from kirinuki.store.files import to_table, write_table  # noqa: E402


@task(name="dedup", task_run_name="dedup (reused: no quote changed since the last build)", cache_policy=NO_CACHE,
      persist_result=False)
def dedup_kept(stats: dict):
    """A dedup that did not run: the last build's output was kept (its input is unchanged). A task
    of its own so that the run shows the reuse, in the task's name and its state's message."""
    return Completed(message="reused the last build's dedup output: the excerpts and post dates are unchanged",
                     data=stats)


# Below this many posts dedup runs in the build's own process: a child process's start-up (its
# imports) costs more than the memory it would give back (benchmarks/loop.py).
DEDUP_IN_PROCESS_POSTS = 500


@task(name="dedup", task_run_name="dedup", cache_policy=NO_CACHE, persist_result=False)
def dedup_tables(root: str, parts: str, cfg: DedupConfig, duckdb_memory_mb: int = 2048, posts: int = 0,
                 last_state: str | None = None, code: str = "") -> dict:
    """Cluster every quote of the same article (reading the excerpts from the parts); write
    articles, article_paragraphs, article_quotes and dedup_links. On a large build
    it runs in a child process (the parse stage's forkserver) so the memory it needs is returned
    when it ends; below DEDUP_IN_PROCESS_POSTS posts in this process. Articles whose quotes are
    unchanged since the build that kept `last_state` are taken from it (kirinuki.dedup.memo)."""
    if posts < DEDUP_IN_PROCESS_POSTS:
        return dedup_parts(root, parts, cfg, duckdb_memory_mb, last_state, code)
    ctx = multiprocessing.get_context("forkserver")
    with WorkerPool(1, ctx) as pool:
        return pool.run(dedup_parts, root, parts, cfg, duckdb_memory_mb, last_state, code)


@task(name="write-reference", task_run_name="write rejects, outlets and entities", cache_policy=NO_CACHE,
      persist_result=False)
def write_reference_tables(root: str, rejects: list[dict]) -> dict[str, int]:
    """Rejected inputs, and the curated outlets and entities (gazetteer) tables."""
    rejects = sorted(rejects, key=lambda r: (r["source_path"], r["code"]))
    write_table(Path(root), "rejects", to_table("rejects", rejects))
    counts = {"rejects": len(rejects)}
    for name, rows in (("outlets", outlet_rows()), ("entities", entity_rows())):
        write_table(Path(root), name, to_table(name, rows))
        counts[name] = len(rows)
    return counts


@task(name="draw-overview", task_run_name="draw the overview's charts", cache_policy=NO_CACHE,
      persist_result=False)
def draw_overview(root: str):
    """The overview's figures and charts from the tables as written (drawn while they are validated)."""
    from kirinuki.overview.page import draw

    return draw(Path(root))


@task(name="overview", task_run_name="write the overview page", cache_policy=NO_CACHE, persist_result=False)
def write_overview_page(root: str, validation: dict, identity: dict, drawn=None) -> dict:
    """overview.html and its charts (kirinuki.overview), from the validated tables: `drawn` (passed
    quoted) when they are as they were drawn, else drawn here."""
    from kirinuki.overview import write_overview

    drawn = drawn.unquote() if isinstance(drawn, quote) else drawn  # Prefect unwraps it; a direct call may not
    return write_overview(Path(root), validation, identity, drawn)


@task(name="validate", task_run_name="validate", cache_policy=NO_CACHE, persist_result=False)
def validate_tables(root: str, parts: str, old_parts: str | None, validator: WorkerPool | None = None,
                    known: dict[str, str] | None = None, copied: dict | None = None) -> tuple[dict, dict[str, str]]:
    """Run every suite; quarantine warning failures; fail the flow on a critical one (reusing the
    last build's results for unchanged tables: kirinuki.build.validation). In `validator`, a worker
    that imported Great Expectations while the build parsed, when there is one. `known`: the
    sha256 the writers computed of the files they wrote or linked (by data/… path); `copied`: the
    rows of dedup's tables copied from the last build's files (kirinuki.dedup.parts)."""
    if validator is not None:
        return validator.run(validate_files, root, parts, old_parts, known, copied)
    return validate_files(root, parts, old_parts, known, copied)
