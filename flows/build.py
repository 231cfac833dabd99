"""The build flow: Prefect tasks and the flow that compose kirinuki's stages into one build.

discover -> (read + decode + parse + clean -> Arrow parts) per batch -> dedup -> write tables ->
validate -> swap the finished folder into place. Each stage is a plain function in the `kirinuki`
package; this module only wires them into tasks, times them and reports (the parse tasks are in
flows/parse.py; dedup's, validation's and the overview's in flows/stages.py). Deploy it with `prefect deploy flows/build.py:build` (see prefect.yaml); the CLI
runs the same flow.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.states import Completed  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from kirinuki import __version__  # noqa: E402
from kirinuki.allocators import give_back_freed_memory  # noqa: E402
from kirinuki.build.batch import code_digest  # noqa: E402
from kirinuki.build.workers import WorkerPool, freeze_lasting, import_validation, in_background  # noqa: E402
from kirinuki.build.inputs import (  # noqa: E402
    InputPlan,
    PreparedPlan,
    plan_inputs,
    plan_key,
    unchanged_since,
)
from kirinuki.build.parts import PART_TABLES, part_numbers, read_part  # noqa: E402
from kirinuki.build.plan import (  # noqa: E402
    CACHE_DIR,
    DEDUP_STATE,
    FINGERPRINTS,
    build_log,
    failed_log,
)
from kirinuki.build.summary import summarize, summary_markdown  # noqa: E402
from kirinuki.flows.naming import artifact_key  # noqa: E402
from kirinuki.flows.parse import parse_all  # noqa: E402
from kirinuki.flows.stages import (  # noqa: E402
    dedup_kept,
    dedup_tables,
    draw_overview,
    validate_tables,
    write_overview_page,
    write_reference_tables,
)
from kirinuki.dedup import (  # noqa: E402
    DedupConfig,
    dedup_key,
    keep_dedup,
    kept_state_digests,
    reuse_dedup,
)
from kirinuki.ingest.sources import DEFAULT_MAX_BYTES  # noqa: E402
from kirinuki.parse.records import reject_row  # noqa: E402
from kirinuki.store.layout import PARTITION_MIN_DOCUMENTS  # noqa: E402
from kirinuki.store.partitions import (  # noqa: E402
    PARTITION_DIGESTS,
    Partitioning,
    partitioning,
    write_partitioned,
)
from kirinuki.store.files import (  # noqa: E402
    DATA_DIR,
    DRAWN_FROM,
    MADE_ROWS,
    atomic_dir,
    corpus_digest,
    check_output,
    compact,
    fsync_file,
    fsync_tree,
    link_data,
    locked,
    read_json,
    views_sql,
    write_json,
)

log = logging.getLogger("kirinuki")

DEFAULT_BATCH_FILES = 256


# A validation worker the CLI started before importing Prefect (workers.warm_validator); the next build uses it.
prewarmed: WorkerPool | None = None
# The plan the CLI's up-to-date check made (inputs.PreparedPlan); the next build takes it if made for its arguments.
prepared: PreparedPlan | None = None


def _plan(inputs: list[str], out: Path, max_bytes: int, cfg: DedupConfig, drafts: bool, convention: str | None,
          cache: bool, partition_min_posts: int) -> tuple[InputPlan, bool]:
    """The build's input plan: the CLI's (`prepared`) when made for these arguments, else made now;
    and whether it is the CLI's (which found the last build out of date already)."""
    global prepared
    ready, prepared = prepared, None
    if ready is not None and ready.key == plan_key(inputs, out, max_bytes, cfg, drafts, convention, cache,
                                                   partition_min_posts):
        return ready.plan, True
    return plan_inputs(inputs, out, max_bytes, cfg, drafts, convention, cache, partition_min_posts), False


@contextmanager
def _warm_validator():
    """The validation worker the CLI started (`prewarmed`: it does for a build of less than
    VALIDATION_WORKER_BYTES of input), importing Great Expectations while the build runs; else
    None (validation then runs in this process). Stopped at the end either way."""
    global prewarmed
    pool, prewarmed = prewarmed, None
    if pool is None:
        yield None
        return
    try:
        yield pool
    except Exception:
        pool.finish()
        raise
    except BaseException:
        pool.stop()
        raise
    pool.shutdown(wait=True)


def discard_prewarmed() -> None:
    """Stop the CLI's validation worker if no build took it (the run failed before building)."""
    global prewarmed
    pool, prewarmed = prewarmed, None
    if pool is not None:
        pool.finish()


@task(name="write-tables", cache_policy=NO_CACHE, persist_result=False)
def write_tables(root: str, parts: str, names: list[str], years: Partitioning | None = None) -> dict:
    """Per-file tables from their parts, in parallel threads
    (Parquet encoding releases the GIL): whole, or with `years` (passed quoted: Prefect would walk
    its plan, a label per row, to resolve the task's inputs; that took 9-12 s at 10k posts) one file per
    year, the years whose inputs did not change linked from the last build
    (kirinuki.store.partitions). Returns the rows
    per table, and each partitioned table's {year: [digest, sha256]} and years linked."""
    numbers = part_numbers(parts)
    by_year = years.unquote() if isinstance(years, quote) else years  # Prefect unwraps it; a direct call may not

    def one(name: str) -> tuple[int, dict, int, float]:
        in_background()  # this pool's thread, beside dedup (the build's critical path)
        t = time.perf_counter()
        if by_year is not None:
            done = write_partitioned(Path(root), parts, name, by_year.plan, by_year.old_data, by_year.old)
        else:
            done = compact(Path(root), name, (read_part(parts, name, n) for n in numbers)), {}, 0
        # on disk now, beside dedup, rather than in the build's last step (atomic_dir syncs every
        # file again before the build replaces the last one: by then these cost nothing)
        data = Path(root) / DATA_DIR
        if (data / name).is_dir():
            fsync_tree(data / name)
        else:
            fsync_file(data / f"{name}.parquet")
        return *done, time.perf_counter() - t

    with ThreadPoolExecutor(max(1, min(len(names), os.cpu_count() or 1))) as pool:
        done = dict(zip(names, pool.map(one, names)))
    give_back_freed_memory()  # the years' rows, freed: not held beside dedup's peak
    fsync_tree(Path(parts), (DEDUP_STATE,))  # the parts too (dedup writes its state there, never synced)
    for name, (_, years_written, linked, seconds) in done.items():  # logged here: the pool's threads have no run
        log.info("wrote %s: %.2f s%s", name, seconds,
                 f" ({len(years_written)} files, {linked} linked)" if by_year is not None else "")
    return {"rows": {n: d[0] for n, d in done.items()}, "partitions": {n: d[1] for n, d in done.items() if d[1]},
            "linked": sum(d[2] for d in done.values())}


def _run_name() -> str:
    """A flow run named after the folders it builds into and from: `sample <- sample` for
    `--out output/sample input/sample` (not `wisteria-lemur`)."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    inputs = ", ".join(Path(i).name or str(i) for i in p.get("inputs", []))
    return f"{Path(p.get('out', 'build')).name} <- {inputs}"[:120]


_FROZEN = threading.Event()


def freeze_imports() -> None:
    """Move what the imports and Prefect made (it lives as long as the process) out of the GC's
    passes: at 10k posts they cost this process a second. Once per process: a later build's
    frozen objects would include the garbage an earlier build left."""
    if not _FROZEN.is_set():
        _FROZEN.set()
        freeze_lasting()


@flow(name="kirinuki-build", flow_run_name=_run_name, persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=4))
def build(inputs: list[str], out: str, batch_files: int = DEFAULT_BATCH_FILES,
          max_file_mb: float = DEFAULT_MAX_BYTES / 2**20, dedup: dict | None = None,
          duckdb_memory_mb: int = 2048, workers: int = 0, cache: bool = True, runner: str = "local",
          drafts: bool = False, convention: str | None = None,
          partition_min_posts: int = PARTITION_MIN_DOCUMENTS) -> dict:
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
        partition_min_posts: From this many posts on, the per-post tables are written one file per
            year of the post date (data/<table>/<year>.parquet), and a rebuild rewrites only the
            years whose posts changed.
    """
    freeze_imports()
    out_path = Path(out)
    check_output(out_path, inputs)
    dedup_cfg = DedupConfig(**(dedup or {}))  # plain dict parameter: deployments and the UI can set it
    max_bytes = int(max_file_mb * 2**20)
    workers = workers or os.cpu_count() or 1
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with locked(out_path):
        plan, checked = _plan(inputs, out_path, max_bytes, dedup_cfg, drafts, convention, cache, partition_min_posts)
        refs, rejected, keys, record, hashed, digest = (plan.refs, plan.rejected, plan.keys, plan.record, plan.hashed,
                                                        plan.digest)
        timings.update(plan.timings)
        previous = unchanged_since(plan, out_path, t0) if cache and not checked else None
        del plan
        if previous is not None:
            message = f"up to date: nothing changed since the last build of {out}, which is kept as it is"
            _artifacts(out_path, previous, note=message)
            return Completed(message=message, data=previous)
    # the dedup state is not synced: every file of it is checked against its sha256 before use
    with locked(out_path), atomic_dir(out_path, unsynced=(f"{CACHE_DIR}/{DEDUP_STATE}",)) as tmp, \
            build_log(tmp / "logs" / "build.log", failed_log(out_path)), \
            _warm_validator() as validator:
        log.info("kirinuki %s build of %s into %s (%d workers)", __version__, inputs, out, workers)
        log.info("discover: %.2f s, hash: %.2f s%s", timings["discover"], timings["hash"],
                 " (by the up-to-date check before the run)" if checked else "")
        t = time.perf_counter()
        # the parts are the next build's cache: kept in the build (cache/) unless caching is off
        parts = tmp / CACHE_DIR
        old_parts = out_path / CACHE_DIR if cache and (out_path / CACHE_DIR).is_dir() else None
        results = parse_all(refs, keys, parts, batch_files, max_bytes, workers if runner == "local" else 1,
                            old_parts, drafts, local=runner == "local")
        parts.mkdir(parents=True, exist_ok=True)
        (parts / FINGERPRINTS).write_text(json.dumps({"max_bytes": max_bytes, "files": record}, separators=(",", ":")),
                                          encoding="utf-8")
        del record
        timings["parse"] = time.perf_counter() - t
        log.info("parse: %.2f s%s", timings["parse"], _peak())
        rejects = [reject_row(r) for r in rejected] + [r for res in results for r in res["rejects"]]
        t = time.perf_counter()
        code = code_digest(whole_build=True)
        posts = sum(res["read"] for res in results)
        years = partitioning(parts, posts, partition_min_posts, code, out_path if old_parts else None, old_parts)
        # the per-post tables are written while dedup runs (it is mostly Python, they are mostly
        # Parquet encoding: the two share the cores well); dedup writes its own tables
        per_post = write_tables.with_options(task_run_name="write the per-post tables").submit(
            str(tmp), str(parts), list(PART_TABLES), years=quote(years) if years else None)
        if validator is None:  # importing Great Expectations takes seconds (~200 MB): on a large build,
            # in this process while dedup runs in its own (not earlier: the parse workers need the memory)
            threading.Thread(target=import_validation, daemon=True).start()
        # dedup reads only the excerpts (and the posts' dates): when none of that changed since the
        # last build, its output is that build's, exactly
        key = dedup_key([d for res in results for d in res["dedup_digests"]], dedup_cfg, code)
        state = parts / DEDUP_STATE
        dedup_stats = reuse_dedup(str(old_parts / DEDUP_STATE), str(tmp), str(state), key) if old_parts else None
        dedup_reused = dedup_stats is not None
        copied = {}
        if dedup_reused:
            dedup_stats = dedup_kept(dedup_stats).result()  # the task returns its Completed state
        else:
            dedup_stats = dedup_tables(str(tmp), str(parts), dedup_cfg, duckdb_memory_mb,
                                       posts=posts,
                                       last_state=str(old_parts / DEDUP_STATE) if old_parts else None, code=code)
            copied = dedup_stats.pop("copied", {})  # rows of the last build's article tables: for validation
            keep_dedup(str(tmp), str(state), key, dedup_stats)
        dedup_stats = dict(dedup_stats, reused=dedup_reused)
        timings["dedup"] = time.perf_counter() - t
        log.info("dedup: %.2f s%s%s", timings["dedup"], " (the last build's output: its input is unchanged)" if dedup_reused else "",
                 _peak())
        t = time.perf_counter()
        written = per_post.result()
        counts, partitions = dict(written["rows"]), written["partitions"]
        layout = {"by_year": sorted(partitions), "years": len({y for v in partitions.values() for y in v}),
                  "files_linked": written["linked"]}
        counts.update(write_reference_tables(str(tmp), rejects))
        counts.update(dedup_stats.pop("rows"))
        timings["write"] = time.perf_counter() - t  # what is left to write after dedup
        log.info("write: %.2f s%s", timings["write"], _peak())
        t = time.perf_counter()
        known = {f"{DATA_DIR}/{name}/{year}.parquet": sha for name, years in partitions.items()
                 for year, (_, sha) in years.items()}
        known.update(kept_state_digests(str(state)))  # dedup's tables, hashed when its state was kept
        # the overview's charts are drawn from the tables while they are validated (mostly DuckDB
        # and matplotlib beside Great Expectations); again after validation if quarantine changed them.
        # They are drawn from links to the files as written: quarantine replaces files as it goes
        drawing = draw_overview.submit(str(link_data(tmp, tmp / DRAWN_FROM)))
        report, digests = validate_tables(str(tmp), str(parts), str(old_parts) if old_parts else None, validator,
                                          known=known, copied={f"{DATA_DIR}/{name}.parquet": c for name, c in copied.items()})
        shutil.rmtree(tmp / MADE_ROWS, ignore_errors=True)  # (dedup's made article rows, only for validation)
        counts["quarantine"] = sum(report["quarantined"].values())
        if partitions and not counts["quarantine"]:  # the years as validated: the next build may link them
            write_json(parts / PARTITION_DIGESTS, partitions)
        timings["validate"] = time.perf_counter() - t
        log.info("validate: %.2f s%s", timings["validate"], _peak())
        t = time.perf_counter()
        corpus = corpus_digest(tmp)
        drawn = drawing.result()
        shutil.rmtree(tmp / DRAWN_FROM)
        write_overview_page(str(tmp), report, {"kirinuki_version": __version__, "corpus_sha256": corpus},
                            None if counts["quarantine"] else quote(drawn))
        timings["overview"] = time.perf_counter() - t
        log.info("overview: %.2f s", timings["overview"])
        t = time.perf_counter()
        (tmp / "views.sql").write_text(views_sql(tmp), encoding="utf-8")
        if not cache:
            shutil.rmtree(parts)
        timings["finish"] = time.perf_counter() - t
        log.info("finish: %.2f s", timings["finish"])
        summary = summarize(tmp, corpus_sha256=corpus, inputs=inputs, refs=refs, rejected=rejected, results=results,
                            rejects=rejects,
                            counts=counts, hashed=hashed, digest=digest, digests=digests, dedup_stats=dedup_stats,
                            report=report, timings=timings,
                            parameters={"batch_files": batch_files, "max_file_mb": max_file_mb,
                                        "duckdb_memory_mb": duckdb_memory_mb, "workers": workers, "cache": cache,
                                        "runner": runner, "drafts": drafts, "convention": convention,
                                        "partition_min_posts": partition_min_posts})
        summary["layout"] = layout
        write_json(tmp / "build.json", summary)
    failed_log(out_path).unlink(missing_ok=True)  # an earlier failure's log no longer describes `out`
    summary["durations_s"]["total"] = round(time.perf_counter() - t0, 3)
    _artifacts(out_path, summary)
    return summary


def _peak() -> str:
    """This process's peak memory so far, for the stage lines of the log (where it grew)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f" (peak RSS of the flow's process so far: {int(line.split()[1]) // 1024} MB)"
    except (OSError, ValueError):
        pass
    return ""


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


