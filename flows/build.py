"""The build flow: Prefect tasks and the flow that compose kirinuki's stages into one build.

discover -> (read + decode + parse + clean -> Arrow parts) per batch -> dedup -> write tables ->
validate -> swap the finished folder into place. Each stage is a plain function in the `kirinuki`
package; this module only wires them into tasks, times them and reports. Deploy it with
`prefect deploy flows/build.py:build` (see prefect.yaml); the CLI runs the same flow.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.states import Completed  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed, wait  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from kirinuki import __version__  # noqa: E402
from kirinuki.build.batch import cache_key, code_digest, exit_with, fingerprints, run_batch  # noqa: E402
from kirinuki.build.parts import PART_TABLES, part_numbers, read_part  # noqa: E402
from kirinuki.build.reuse import Hit, cache_lookup, container_key, entries_by_export  # noqa: E402
from kirinuki.build.plan import (  # noqa: E402
    CACHE_DIR,
    DEDUP_STATE,
    FINGERPRINTS,
    VALIDATION_KEPT,
    build_digest,
    build_log,
    failed_log,
    known_fingerprints,
    previous_summary,
    share_exports,
)
from kirinuki.build.summary import summarize, summary_markdown  # noqa: E402
from kirinuki.clean.normalize import outlet_rows  # noqa: E402
from kirinuki.dedup import DedupConfig, dedup_key, dedup_parts, keep_dedup, read_cluster_columns, reuse_dedup  # noqa: E402
from kirinuki.ingest.sources import DEFAULT_MAX_BYTES, SourceRef, discover  # noqa: E402
from kirinuki.parse.records import reject_row  # noqa: E402
from kirinuki.store.files import (  # noqa: E402
    atomic_dir,
    check_output,
    compact,
    locked,
    read_json,
    to_table,
    views_sql,
    write_json,
    write_table,
)

log = logging.getLogger("kirinuki")

DEFAULT_BATCH_FILES = 256


# Set while a build runs with a local process pool: parse tasks hand their batch to it. Without one
# (a Dask worker, or workers=1) a task runs its batch itself.
_POOL: ProcessPoolExecutor | None = None
# Called with (files done, files total, bytes done) as batches finish; the CLI draws progress with it.
progress: Callable[[int, int, int], None] | None = None


@task(name="parse-batch", cache_policy=NO_CACHE, persist_result=False)
def parse_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int, keys: list[str | None],
                hits: list[Hit | None], old_parts: str | None, entry_hits: list[dict | None],
                keep_drafts: bool = False) -> dict:
    args = (refs, parts, batch_no, max_bytes, keys, hits, old_parts, entry_hits, keep_drafts)
    pool = _POOL
    return pool.submit(run_batch, *args).result() if pool is not None else run_batch(*args)


@task(name="dedup", task_run_name="dedup (reused: no quote changed since the last build)", cache_policy=NO_CACHE,
      persist_result=False)
def dedup_kept(stats: dict):
    """A dedup that did not run: the last build's output was kept (its input is unchanged). A task
    of its own so that the run shows the reuse, in the task's name and its state's message."""
    return Completed(message="reused the last build's dedup output: the excerpts and post dates are unchanged",
                     data=stats)


@task(name="dedup", task_run_name="dedup", cache_policy=NO_CACHE, persist_result=False)
def dedup_tables(root: str, parts: str, cfg: DedupConfig, duckdb_memory_mb: int = 2048) -> dict:
    """Cluster every quote of the same article (reading the excerpts from the parts); write
    articles, article_paragraphs, dedup_links and the excerpts' cluster columns. Runs in a child
    process (the parse stage's forkserver) so the memory it needs is returned when it ends."""
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=exit_with, initargs=(os.getpid(),)) as pool:
        return pool.submit(dedup_parts, root, parts, cfg, duckdb_memory_mb).result()


@task(name="write-tables", cache_policy=NO_CACHE, persist_result=False)
def write_tables(root: str, parts: str, names: list[str], excerpt_columns: dict | None = None) -> dict[str, int]:
    """Per-file tables from their parts (excerpts with dedup's columns added), in parallel threads
    (Parquet encoding releases the GIL)."""
    numbers = part_numbers(parts)

    def one(name: str) -> int:
        return compact(Path(root), name, (read_part(parts, name, n) for n in numbers),
                       excerpt_columns if name == "excerpts" else None)

    with ThreadPoolExecutor(max(1, min(len(names), os.cpu_count() or 1))) as pool:
        return dict(zip(names, pool.map(one, names)))


@task(name="write-reference", task_run_name="write rejects and outlets", cache_policy=NO_CACHE, persist_result=False)
def write_reference_tables(root: str, rejects: list[dict]) -> dict[str, int]:
    """Rejected inputs, and the curated outlets table."""
    rejects = sorted(rejects, key=lambda r: (r["source_path"], r["code"]))
    write_table(Path(root), "rejects", to_table("rejects", rejects))
    outlets = outlet_rows()
    write_table(Path(root), "outlets", to_table("outlets", outlets))
    return {"rejects": len(rejects), "outlets": len(outlets)}


@task(name="validate", task_run_name="validate", cache_policy=NO_CACHE, persist_result=False)
def validate_tables(root: str, parts: str, old_parts: str | None) -> tuple[dict, dict[str, str]]:
    """Run every suite; quarantine warning failures; fail the flow on a critical one. A table whose
    file is byte for byte one the last build (same code) validated keeps that build's GX results:
    they are kept in the parts folder with each file's sha256. Returns the summary of the report
    and the sha256 of each table's file as validated (empty when quarantine rewrote any)."""
    from kirinuki.validate import validate_build, write_reports

    code = code_digest(whole_build=True)
    kept = read_json(Path(old_parts) / VALIDATION_KEPT) if old_parts else None
    previous = kept.get("tables") if isinstance(kept, dict) and kept.get("code") == code else None
    report = validate_build(Path(root), previous=previous)
    write_reports(Path(root), report)
    if Path(parts).is_dir():
        write_json(Path(parts) / VALIDATION_KEPT, {"code": code, "tables": report.kept_results()})
    return ({"success": report.success, "checks": len(report.checks), "quarantined": report.quarantined,
             "reused": report.reused}, report.digests)


def _preload_validation() -> None:
    try:
        import great_expectations  # noqa: F401
    except Exception:  # noqa: BLE001 - the validate stage imports it again and reports any problem
        pass


def parse_all(refs: list[SourceRef], keys: list[str | None], parts: Path, batch_files: int, max_bytes: int,
              workers: int, old_parts: Path | None, keep_drafts: bool = False) -> list[dict]:
    """One parse task per batch; batches run in a pool of `workers` processes (spawned from a
    forkserver that has imported only the parsing stages). Results come back in batch order."""
    global _POOL
    refs, keys, ref_batches = share_exports(refs, keys, batch_files, workers)
    lookup = cache_lookup(old_parts)
    hits = [(lookup.get(k) or lookup.get(container_key(k, keep_drafts, r.share))) if k else None
            for r, k in zip(refs, keys)]
    exports = entries_by_export(lookup)  # what a changed export's unchanged entries may reuse
    entry_hits = [exports.get(r.rel) if h is None else None for r, h in zip(refs, hits)]
    del lookup, exports
    bounds = [0, *itertools.accumulate(len(b) for b in ref_batches)]
    key_batches, hit_batches, entry_batches = ([x[a:b] for a, b in zip(bounds, bounds[1:])]
                                               for x in (keys, hits, entry_hits))
    total, done, done_bytes = sum(1 for r in refs if not r.share[0]), 0, 0
    use_pool = workers > 1 and len(ref_batches) > 1 and _POOL is None
    ctx = multiprocessing.get_context("forkserver")
    if use_pool:
        ctx.set_forkserver_preload(["kirinuki.build.batch"])
    pool_args = dict(mp_context=ctx, initializer=exit_with, initargs=(os.getpid(),))
    with ProcessPoolExecutor(workers, **pool_args) if use_pool else nullcontext() as pool:
        if use_pool:
            _POOL = pool
        futures = []
        try:
            n = len(ref_batches)
            futures = [parse_batch.with_options(task_run_name=f"parse batch {i + 1}/{n}").submit(
                           b, str(parts), i, max_bytes, k, h, str(old_parts) if old_parts else None, e, keep_drafts)
                       for i, (b, k, h, e) in enumerate(zip(ref_batches, key_batches, hit_batches, entry_batches))]
            for f in as_completed(futures):
                res = f.result()
                done += res["files"]
                done_bytes += res["bytes"]
                if progress:
                    progress(done, total, done_bytes)
            return [f.result() for f in futures]
        except BaseException:
            # one batch failed (a full disk, a bug): no other batch may go on writing into the build's
            # temporary folder once it is removed, so the pool takes no more work and every task ends
            # before this returns (a task finding the pool shut fails at once; it never runs inline)
            if use_pool:
                pool.shutdown(wait=False, cancel_futures=True)
            wait(futures)
            raise
        finally:
            if use_pool:
                _POOL = None


def _run_name() -> str:
    """A flow run named after the folders it builds into and from: `sample <- sample` for
    `--out output/sample input/sample` (not `wisteria-lemur`)."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    inputs = ", ".join(Path(i).name or str(i) for i in p.get("inputs", []))
    return f"{Path(p.get('out', 'build')).name} <- {inputs}"[:120]


def artifact_key(out: Path, what: str) -> str:
    """An artifact key of this output folder (Prefect keys: lowercase letters, digits, dashes), so
    two deployments building into different folders keep their own artifacts."""
    import hashlib
    import re

    resolved = out.resolve()
    name = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-") or "build"
    return f"kirinuki-{what}-{name[:40]}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


@flow(name="kirinuki-build", flow_run_name=_run_name, persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=4))
def build(inputs: list[str], out: str, batch_files: int = DEFAULT_BATCH_FILES,
          max_file_mb: float = DEFAULT_MAX_BYTES / 2**20, dedup: dict | None = None,
          duckdb_memory_mb: int = 2048, workers: int = 0, cache: bool = True, runner: str = "local",
          drafts: bool = False, convention: str | None = None) -> dict:
    """Build every table from the posts under `inputs` into the folder `out`, atomically.

    Args:
        inputs: Folders or files of posts (text, exports, saved pages) to read.
        out: The build folder; replaced as a whole when the build succeeds.
        batch_files: Input files per parse task.
        max_file_mb: Larger inputs are rejected as too_large.
        dedup: Dedup parameters (shingle, bands, rows, jaccard, containment …); empty for the defaults.
        duckdb_memory_mb: Memory DuckDB may use in the dedup stage.
        workers: Parse processes (0 = one per core).
        cache: Reuse the rows of files unchanged since the previous build in `out`, and return that
            build as it is when nothing changed at all.
        runner: "local", or "dask" when the flow runs with a DaskTaskRunner (see `build_flow`): parse
            tasks then run on the cluster's workers, which must see the same file system.
        drafts: Read the drafts of exports as posts (flagged `draft`) instead of rejecting them.
        convention: Pin this quoting convention for every post (by default each post's is detected;
            conventions.toml files in the input folders pin it per folder or file).
    """
    out_path = Path(out)
    check_output(out_path, inputs)
    dedup_cfg = DedupConfig(**(dedup or {}))  # plain dict parameter: deployments and the UI can set it
    max_bytes = int(max_file_mb * 2**20)
    workers = workers or os.cpu_count() or 1
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with locked(out_path):
        refs, rejected = discover(inputs, convention=convention)
        timings["discover"] = time.perf_counter() - t0
        t = time.perf_counter()
        known = known_fingerprints(out_path / CACHE_DIR, max_bytes) if cache else {}
        fps, record, hashed = fingerprints(refs, max_bytes, known)
        keys = [cache_key(r.rel, fp, max_bytes, r.convention) for r, fp in zip(refs, fps)]
        del known, fps  # ~100 MB at 100k files: not kept through the build's peak
        timings["hash"] = time.perf_counter() - t
        digest = build_digest(keys, refs, rejected, max_bytes, dedup_cfg, drafts)
        previous = previous_summary(out_path)
        if cache and previous and previous.get("build_digest") == digest:
            previous["up_to_date"] = True
            failed_log(out_path).unlink(missing_ok=True)
            previous["durations_s"] = {**{k: round(v, 3) for k, v in timings.items()},
                                       "total": round(time.perf_counter() - t0, 3)}
            message = f"up to date: nothing changed since the last build of {out}, which is kept as it is"
            _artifacts(out_path, previous, note=message)
            return Completed(message=message, data=previous)
    with locked(out_path), atomic_dir(out_path) as tmp, build_log(tmp / "logs" / "build.log", failed_log(out_path)):
        log.info("kirinuki %s build of %s into %s (%d workers)", __version__, inputs, out, workers)
        log.info("discover: %.2f s, hash: %.2f s", timings["discover"], timings["hash"])
        t = time.perf_counter()
        # the parts are the next build's cache: kept in the build (cache/) unless caching is off
        parts = tmp / CACHE_DIR
        old_parts = out_path / CACHE_DIR if cache and (out_path / CACHE_DIR).is_dir() else None
        results = parse_all(refs, keys, parts, batch_files, max_bytes, workers if runner == "local" else 1,
                            old_parts, drafts)
        parts.mkdir(parents=True, exist_ok=True)
        (parts / FINGERPRINTS).write_text(json.dumps({"max_bytes": max_bytes, "files": record}, separators=(",", ":")),
                                          encoding="utf-8")
        del record
        timings["parse"] = time.perf_counter() - t
        log.info("parse: %.2f s", timings["parse"])
        rejects = [reject_row(r) for r in rejected] + [r for res in results for r in res["rejects"]]
        t = time.perf_counter()
        # tables that dedup does not touch are written while it runs (it is mostly Python, they
        # are mostly Parquet encoding: the two share the cores well)
        others = write_tables.with_options(task_run_name="write the tables dedup does not touch").submit(
            str(tmp), str(parts), [n for n in PART_TABLES if n != "excerpts"])
        # dedup reads only the excerpts (and the posts' dates): when none of that changed since the
        # last build, its output is that build's, exactly
        key = dedup_key([d for res in results for d in res["dedup_digests"]], dedup_cfg, code_digest(whole_build=True))
        state = parts / DEDUP_STATE
        dedup_stats = reuse_dedup(str(old_parts / DEDUP_STATE), str(tmp), str(state), key) if old_parts else None
        dedup_reused = dedup_stats is not None
        if dedup_reused:
            dedup_stats = dedup_kept(dedup_stats).result()  # the task returns its Completed state
        else:
            dedup_stats = dedup_tables(str(tmp), str(parts), dedup_cfg, duckdb_memory_mb)
            keep_dedup(str(tmp), str(state), key, dedup_stats)
        dedup_stats = dict(dedup_stats, reused=dedup_reused)
        timings["dedup"] = time.perf_counter() - t
        # importing Great Expectations takes seconds (and ~200 MB): do it while the last tables
        # are written, not earlier, so it does not add to the dedup process's peak
        threading.Thread(target=_preload_validation, daemon=True).start()
        log.info("dedup: %.2f s%s", timings["dedup"], " (the last build's output: its input is unchanged)" if dedup_reused else "")
        t = time.perf_counter()
        counts = write_tables.with_options(task_run_name="write excerpts")(str(tmp), str(parts), ["excerpts"],
                                                                       read_cluster_columns(str(state)))
        counts.update(others.result())
        counts.update(write_reference_tables(str(tmp), rejects))
        counts.update(dedup_stats.pop("rows"))
        timings["write"] = time.perf_counter() - t  # what is left to write after dedup
        log.info("write: %.2f s", timings["write"])
        t = time.perf_counter()
        report, digests = validate_tables(str(tmp), str(parts), str(old_parts) if old_parts else None)
        counts["quarantine"] = sum(report["quarantined"].values())
        timings["validate"] = time.perf_counter() - t
        log.info("validate: %.2f s", timings["validate"])
        t = time.perf_counter()
        (tmp / "views.sql").write_text(views_sql(), encoding="utf-8")
        if not cache:
            shutil.rmtree(parts)
        timings["finish"] = time.perf_counter() - t
        log.info("finish: %.2f s", timings["finish"])
        summary = summarize(tmp, inputs=inputs, refs=refs, rejected=rejected, results=results, rejects=rejects,
                            counts=counts, hashed=hashed, digest=digest, digests=digests, dedup_stats=dedup_stats,
                            report=report, timings=timings,
                            parameters={"batch_files": batch_files, "max_file_mb": max_file_mb,
                                        "duckdb_memory_mb": duckdb_memory_mb, "workers": workers, "cache": cache,
                                        "runner": runner, "drafts": drafts, "convention": convention})
        write_json(tmp / "build.json", summary)
    failed_log(out_path).unlink(missing_ok=True)  # an earlier failure's log no longer describes `out`
    summary["durations_s"]["total"] = round(time.perf_counter() - t0, 3)
    _artifacts(out_path, summary)
    return summary


def _artifacts(out: Path, summary: dict, note: str | None = None) -> None:
    """The run's artifacts, keyed by the output folder: rows per table, and the summary with links
    to the validation report and the build log and the checks that failed."""
    here = out.resolve()  # links need the absolute folder
    report = here / "validation" / "report.html"
    results = read_json(here / "validation" / "results.json") or {}
    failed = [c for c in results.get("checks", []) if isinstance(c, dict) and not c.get("success", True)]
    lines = [f"**{note}**", ""] if note else []
    lines += [f"[validation report](file://{report}) · [build log](file://{here / 'logs' / 'build.log'}) · "
              f"folder `{here}`", ""]
    if failed:
        lines += ["Checks that failed (their rows are in `quarantine`):", ""]
        lines += [f"- {c.get('table')}: `{c.get('name')}` ({c.get('unexpected', 0):,} rows)" for c in failed]
        lines.append("")
    create_table_artifact(key=artifact_key(out, "rows"), description=f"Rows per table of the kirinuki build in {out}",
                          table=[{"table": k, "rows": v} for k, v in summary["rows"].items()])
    create_markdown_artifact(key=artifact_key(out, "summary"), markdown="\n".join(lines) + summary_markdown(summary),
                             description=f"Summary of the kirinuki build in {out} (same content as build.json)")


def build_flow(runner: str = "local", scheduler: str | None = None):
    """The build flow for a runner: local (threads feeding a process pool) or an existing Dask
    cluster at `scheduler` (tcp://HOST:PORT) through prefect-dask."""
    if runner == "local":
        return build
    if runner != "dask":
        raise ValueError(f"unknown runner {runner!r}; use local or dask")
    if not scheduler:
        raise ValueError("--runner dask needs --scheduler tcp://HOST:PORT of a running Dask scheduler")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ValueError("--runner dask needs prefect-dask: pip install 'kirinuki[dask]'") from None
    return build.with_options(task_runner=DaskTaskRunner(address=scheduler))


