"""Command line: `kirinuki build` — decide whether anything needs doing, then run the build flow.

In: the post files and folders, the output folder and the build's options. Out: the build folder
(atomically replaced) and a summary on stdout. An unchanged build is reported before Prefect is
imported; otherwise the run gets its Prefect server (kirinuki/server.py), a validation worker when
its input is under 1 GiB, and SIGINT/SIGTERM handling that stops everything at once (exit status 130).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kirinuki.console import counted, err, fail, one_line, out, shown
from kirinuki.store.layout import PARTITION_MIN_DOCUMENTS

SHOWN_REJECTS = 50
INTERRUPTED = 130  # the exit status of a run stopped by SIGINT or SIGTERM


def build(
    paths: Annotated[list[str], typer.Argument(help="Post files, blog exports (MTIF, WXR), saved pages, or folders of them.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder to (re)create.")] = Path("output/build"),
    batch_files: Annotated[int, typer.Option(help="Files per parse task.", min=1)] = 256,
    max_file_mb: Annotated[float, typer.Option(help="Reject files larger than this.", min=0.001)] = 64.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    duckdb_memory_mb: Annotated[int, typer.Option(help="Memory limit for DuckDB stages (spills to disk beyond).", min=64)] = 2048,
    workers: Annotated[int, typer.Option(help="Parse processes (0: one per core).", min=0)] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Parse every file again, ignoring the previous build's cache.")] = False,
    runner: Annotated[str, typer.Option(help="local, or dask (parse on an existing Dask cluster).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address for --runner dask, e.g. tcp://10.0.0.5:8786.")] = None,
    drafts: Annotated[bool, typer.Option("--drafts", help="Read the drafts in blog exports as posts (flagged draft) instead of rejecting them.")] = False,
    convention: Annotated[Optional[str], typer.Option(help="Pin this quoting convention for every post (default: detected per post; see 'kirinuki conventions').")] = None,
    partition_min_posts: Annotated[int, typer.Option(help="From this many posts on, write the per-post tables one file per year, or per month in a busy year (docs/tables.md).", min=1)] = PARTITION_MIN_DOCUMENTS,
) -> None:
    """Read posts, parse them and write the Parquet tables to --out (atomically)."""
    from kirinuki.store.files import BuildLocked, UnsafeOutput, check_output, locked

    missing = [p for p in paths if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        fail(f"input not found: {missing[0]} (give existing post files or folders)", 2)
    from kirinuki.ingest.pins import PinError, check_name

    try:
        convention = check_name(convention, "--convention") if convention else None
    except PinError as e:
        fail(str(e), 2)
    try:  # before Prefect starts, so that a refusal is instant (the flow checks both again)
        check_output(out_dir, paths)
        with locked(out_dir):
            pass
    except UnsafeOutput as e:
        fail(str(e), 2)
    except BuildLocked as e:
        fail(str(e), 3)
    from kirinuki.build.inputs import build_identity, up_to_date

    # decided before anything expensive starts: an unchanged build costs a second
    check = up_to_date(paths, out_dir, max_file_mb, drafts=drafts, convention=convention, cache=not no_cache,
                       partition_min_posts=partition_min_posts)
    if check.previous is not None:
        return _report(check.previous, out_dir, paths, as_json, quiet)
    size, handoff = check.size, [check.plan]  # the plan goes to the build, which lets it go when done
    del check
    from kirinuki.build.workers import start_parse_forkserver, warm_validator

    if not size.small and runner == "local":  # the parse workers' stages load while Prefect is imported
        start_parse_forkserver()
    from kirinuki.server import RunServer, ServerError

    try:
        with RunServer() as server, interruptible():
            validator = warm_validator() if size.validation_worker and runner == "local" else None
            summary = _run_build(server, validator, build_identity(out_dir), paths, out_dir, runner, scheduler, quiet or as_json,
                                 dict(batch_files=batch_files, max_file_mb=max_file_mb, duckdb_memory_mb=duckdb_memory_mb,
                                      workers=workers, cache=not no_cache, runner=runner, drafts=drafts,
                                      convention=convention, partition_min_posts=partition_min_posts),
                                 handoff)
    except ServerError as e:
        fail(f"{e}; nothing was built (set PREFECT_API_URL to use a server of yours)", 1)
    except KeyboardInterrupt:
        fail("interrupted; the previous build is unchanged", INTERRUPTED)
    _report(summary, out_dir, paths, as_json, quiet)


def _run_build(server, validator, before: str | None, paths: list[str], out_dir: Path, runner: str,
               scheduler: str | None, silent: bool, options: dict, handoff: list | None = None) -> dict:
    from kirinuki.flows.build import build_flow as flow_for
    from kirinuki.ingest.pins import PinError
    from kirinuki.store.files import BuildLocked, UnsafeOutput
    from kirinuki.validate import ValidationFailed

    try:
        build_flow = flow_for(runner, scheduler)
    except ValueError as e:
        fail(str(e), 2)

    import kirinuki.flows.build as pipeline
    import kirinuki.flows.parse as parse_stage
    from kirinuki.flows.env import without_heartbeats

    pipeline.prewarmed = validator
    pipeline.prepared = handoff.pop() if handoff else None  # the up-to-date check's plan (inputs.PreparedPlan)
    try:
        server.ready()
        with _progress(enabled=not silent) as hook, without_heartbeats():
            parse_stage.progress = hook
            return build_flow(paths, str(out_dir), **options)
    except PinError as e:
        fail(f"{e}; nothing was built", 2)
    except UnsafeOutput as e:
        fail(str(e), 2)
    except BuildLocked as e:
        fail(str(e), 3)
    except ValidationFailed as e:
        fail(f"validation failed, nothing was written (the previous build is unchanged): {e}", 1)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as e:  # noqa: BLE001 - still one line, and the previous build stays
        from kirinuki.build.inputs import completed_build

        done = completed_build(out_dir, before)
        if done is not None:  # the build is in place and intact: what failed came after it
            err.print(f"warning: the build completed, but Prefect then failed ({type(e).__name__}: "
                      f"{shown(one_line(e))}); the run may be incomplete on its server", highlight=False,
                      soft_wrap=True)
            return done
        log = pipeline.failed_log(out_dir)
        kept = f" Log: {log}" if log.is_file() else ""
        if isinstance(e, OSError):
            fail(f"cannot write the build to {out_dir}: {e.strerror or e}; the previous build is unchanged.{kept}", 1)
        if os.environ.get("KIRINUKI_DEBUG"):
            raise
        fail(f"build failed ({type(e).__name__}: {one_line(e)}); the previous build is unchanged.{kept}", 1)
    finally:
        pipeline.discard_prewarmed()  # a run that failed before validating never took it


@contextmanager
def interruptible():
    """SIGINT and SIGTERM stop the run at once: the worker processes are killed first (so no task
    waits for its batch), then KeyboardInterrupt unwinds the flow, which removes its unfinished folder."""
    import signal

    from kirinuki.build.workers import kill_all_workers

    def stop(signum, frame):
        kill_all_workers()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _report(summary: dict, out_dir: Path, paths: list[str], as_json: bool, quiet: bool) -> None:
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    elif not quiet:
        _print_summary(summary, out_dir, paths)


@contextmanager
def _progress(enabled: bool):
    """A progress hook for the parse stage: a rich bar (files, MB, ETA) on a terminal, a plain line
    every 10 s otherwise, nothing when disabled."""
    if not enabled:
        yield None
        return
    if err.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                      TextColumn("{task.fields[mb]:,.1f} MB"), TimeRemainingColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("parse", total=None, mb=0.0)

            def hook(done: int, total: int, n_bytes: int) -> None:
                bar.update(task, completed=done, total=total, mb=n_bytes / 1e6)

            yield hook
        return
    started = last = time.monotonic()

    def plain(done: int, total: int, n_bytes: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 10:  # long runs only: a short one stays quiet
            last = now
            rate = done / max(now - started, 1e-9)
            eta = (total - done) / rate if rate else 0
            err.print(f"parsing: {done:,}/{total:,} files, {n_bytes / 1e6:,.1f} MB, ETA {eta:,.0f} s", highlight=False)

    yield plain


def _print_summary(s: dict, out_dir: Path, inputs: list[str]) -> None:
    where = shown(out_dir)
    if s.get("up_to_date"):
        out.print(f"{where} is up to date: no input, parameter or code change since it was built "
                  f"(checked {counted(s['inputs']['files'], 'file')} in {s['durations_s']['total']:.1f} s; "
                  "--no-cache rebuilds)", highlight=False)
        return
    out.print(f"kirinuki build -> {where}", highlight=False)
    t = Table()
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in s["rows"].items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    i = s["inputs"]
    v = s["validation"]
    n_rejected = sum(s["rejects"].values())
    kinds = ", ".join(f"{n:,} {code}" for code, n in s["rejects"].items())
    out.print(f"{counted(i['read'], 'post')} read ({i['bytes'] / 1e6:,.1f} MB), "
              f"{n_rejected:,} rejected{f' ({kinds})' if kinds else ''}, "
              f"{counted(v['checks'], 'check')} {'pass' if v['success'] else 'FAILED'}, "
              f"{counted(sum(v['quarantined'].values()), 'row')} quarantined, "
              f"in {s['durations_s'].get('total', 0):.1f} s (report: {shown(out_dir / 'validation' / 'report.html')})",
              highlight=False)
    listed = s.get("rejected_files", [])
    for r in listed[:SHOWN_REJECTS]:
        out.print(f"  rejected {shown(r['source_path'])}: {r['code']} — {shown(r['reason'])}",
                  highlight=False, soft_wrap=True)
    if n_rejected > SHOWN_REJECTS:
        out.print(f"  … and {n_rejected - SHOWN_REJECTS:,} more: kirinuki query \"SELECT * FROM rejects\" --out {where}",
                  highlight=False)
    if i["read"] == 0 and not n_rejected:
        from kirinuki.ingest.sources import DEFAULT_PATTERNS

        err.print(f"[yellow]warning:[/] no posts found in {shown(', '.join(inputs))}: kirinuki reads "
                  f"{', '.join(DEFAULT_PATTERNS)} files"
                  f"{_other_files(inputs)}; the build is empty", highlight=False, soft_wrap=True)


def _other_files(inputs: list[str]) -> str:
    """`` (3 other files there: .md, .html)`` for the empty-build warning, or nothing."""
    suffixes: dict[str, int] = {}
    for raw in inputs:
        root = Path(raw)
        for p in [root] if root.is_file() else (root.rglob("*") if root.is_dir() else []):
            if p.is_file() and not p.name.endswith(".meta.json"):
                suffixes[p.suffix or p.name] = suffixes.get(p.suffix or p.name, 0) + 1
    if not suffixes:
        return ""
    return f" ({counted(sum(suffixes.values()), 'other file')} there: {shown(', '.join(sorted(suffixes)))})"


