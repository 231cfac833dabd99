"""Pipeline: the Prefect flows that compose the pure stages.

build: discover -> (read + decode + parse -> Arrow parts) per batch -> dedup -> compact -> validate -> swap.
Each stage is a plain function from flows/; this module only wires them, times them and reports.
"""

from __future__ import annotations

from .prefect_setup import configure

configure()

import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from . import PIPELINE_VERSION, __version__  # noqa: E402
from .batch import (PART_TABLES, Hit, cache_key, cache_lookup, code_digest, exit_with,  # noqa: E402
                    fingerprints, part_numbers, read_part, run_batch)
from .ingest import DEFAULT_MAX_BYTES, SourceRef, discover  # noqa: E402
from .clean import outlet_rows  # noqa: E402
from .records import reject_row  # noqa: E402
from .dedup import (DedupConfig, dedup_key, dedup_parts, keep_dedup, read_cluster_columns,  # noqa: E402
                    reuse_dedup)
from .schema import schema_version  # noqa: E402
from .store import (DATA_DIR, atomic_dir, check_output, compact, corpus_digest, locked,  # noqa: E402
                    read_json, sha256_file, to_table, views_sql, write_json, write_table)

log = logging.getLogger("kirinuki")

DEFAULT_BATCH_FILES = 256
MAX_LISTED_REJECTS = 1000  # in build.json; the rejects table has them all


# Set while a build runs with a local process pool: parse tasks hand their batch to it. Without one
# (a Dask worker, or workers=1) a task runs its batch itself.
_POOL: ProcessPoolExecutor | None = None
# Called with (files done, files total, bytes done) as batches finish; the CLI draws progress with it.
progress: Callable[[int, int, int], None] | None = None


@task(name="parse-batch", cache_policy=NO_CACHE, persist_result=False)
def parse_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int, keys: list[str | None],
                hits: list[Hit | None], old_parts: str | None) -> dict:
    args = (refs, parts, batch_no, max_bytes, keys, hits, old_parts)
    pool = _POOL
    return pool.submit(run_batch, *args).result() if pool is not None else run_batch(*args)


@task(name="dedup", cache_policy=NO_CACHE, persist_result=False)
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


@task(name="write-reference", cache_policy=NO_CACHE, persist_result=False)
def write_reference_tables(root: str, rejects: list[dict]) -> dict[str, int]:
    """Rejected inputs, and the curated outlets table."""
    rejects = sorted(rejects, key=lambda r: (r["source_path"], r["code"]))
    write_table(Path(root), "rejects", to_table("rejects", rejects))
    outlets = outlet_rows()
    write_table(Path(root), "outlets", to_table("outlets", outlets))
    return {"rejects": len(rejects), "outlets": len(outlets)}


VALIDATION_KEPT = "validation.json"  # under CACHE_DIR: the GX results of the tables that passed


@task(name="validate", cache_policy=NO_CACHE, persist_result=False)
def validate_tables(root: str, parts: str, old_parts: str | None) -> tuple[dict, dict[str, str]]:
    """Run every suite; quarantine warning failures; fail the flow on a critical one. A table whose
    file is byte for byte one the last build (same code) validated keeps that build's GX results:
    they are kept in the parts folder with each file's sha256. Returns the summary of the report
    and the sha256 of each table's file as validated (empty when quarantine rewrote any)."""
    from .validate import validate_build, write_reports

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


def failed_log(out: Path) -> Path:
    return out.parent / f"{out.name}.failed.log"


@contextmanager
def build_log(path: Path, keep_on_failure: Path) -> Iterator[None]:
    """Send this run's log records (Prefect's warnings and errors, kirinuki's stage lines) to a
    file in the build folder. The folder is renamed into place with the file still open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    except BaseException as e:
        log.error("build failed: %r", e, exc_info=True)
        handler.flush()
        shutil.copyfile(path, keep_on_failure)  # the build folder is about to be removed
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def batches(refs: list, size: int) -> list[list]:
    return [refs[i : i + size] for i in range(0, len(refs), size)]


CACHE_DIR = "cache"
DEDUP_STATE = "dedup"  # under CACHE_DIR: the last dedup's output and key (dedup.keep_dedup)
FINGERPRINTS = "fingerprints.json"  # under CACHE_DIR: each input's stat state and fingerprint


def build_digest(keys: list[str | None], refs: list[SourceRef], rejected: list, max_bytes: int,
                 dedup: DedupConfig) -> str:
    """Identity of everything a build's tables depend on: code, every input, parameters."""
    h = hashlib.sha256(json.dumps([__version__, code_digest(whole_build=True), max_bytes, asdict(dedup),
                                   [r.source_path + ":" + r.code for r in rejected]]).encode())
    for ref, key in zip(refs, keys):
        h.update(f"{ref.rel}\0{key or _stat_signature(ref.path)}\n".encode())
    return h.hexdigest()


def _stat_signature(path: str) -> str:
    """For inputs that are not hashed (too large, not regular, unreadable): what stat says."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"error:{e.errno}"
    return f"stat:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}"


def _known_fingerprints(parts: Path, max_bytes: int) -> dict[str, list]:
    """The last build's record of file states and fingerprints (batch.fingerprints)."""
    kept = read_json(parts / FINGERPRINTS)
    return kept.get("files", {}) if isinstance(kept, dict) and kept.get("max_bytes") == max_bytes else {}


def previous_summary(out: Path) -> dict | None:
    summary = read_json(out / "build.json")
    return summary if isinstance(summary, dict) and summary.get("validation", {}).get("success") else None


def parse_all(refs: list[SourceRef], keys: list[str | None], parts: Path, batch_files: int, max_bytes: int,
              workers: int, old_parts: Path | None) -> list[dict]:
    """One parse task per batch; batches run in a pool of `workers` processes (spawned from a
    forkserver that has imported only the parsing stages). Results come back in batch order."""
    global _POOL
    lookup = cache_lookup(old_parts)
    hits = [lookup.get(k) if k else None for k in keys]
    ref_batches, key_batches, hit_batches = (batches(x, batch_files) for x in (refs, keys, hits))
    total, done, done_bytes = len(refs), 0, 0
    use_pool = workers > 1 and len(ref_batches) > 1 and _POOL is None
    ctx = multiprocessing.get_context("forkserver")
    if use_pool:
        ctx.set_forkserver_preload(["flows.batch"])
    pool_args = dict(mp_context=ctx, initializer=exit_with, initargs=(os.getpid(),))
    with ProcessPoolExecutor(workers, **pool_args) if use_pool else nullcontext() as pool:
        if use_pool:
            _POOL = pool
        try:
            futures = [parse_batch.submit(b, str(parts), i, max_bytes, k, h, str(old_parts) if old_parts else None)
                       for i, (b, k, h) in enumerate(zip(ref_batches, key_batches, hit_batches))]
            for f in as_completed(futures):
                res = f.result()
                done += res["files"]
                done_bytes += res["bytes"]
                if progress:
                    progress(done, total, done_bytes)
            return [f.result() for f in futures]
        finally:
            if use_pool:
                _POOL = None


@flow(name="kirinuki-build", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=4))
def build(inputs: list[str], out: str, batch_files: int = DEFAULT_BATCH_FILES,
          max_file_mb: float = DEFAULT_MAX_BYTES / 2**20, dedup: dict | None = None,
          duckdb_memory_mb: int = 2048, workers: int = 0, cache: bool = True, runner: str = "local") -> dict:
    """Build every table from the posts under `inputs` into the folder `out`, atomically.

    workers: parse processes (0 = one per core); cache: reuse the rows of files unchanged since the
    previous build in `out`, and return that build as it is when nothing changed at all; runner:
    "local", or "dask" when the flow runs with a DaskTaskRunner (see `build_flow`): parse tasks then
    run on the cluster's workers, which must see the same file system."""
    out_path = Path(out)
    check_output(out_path, inputs)
    dedup_cfg = DedupConfig(**(dedup or {}))  # plain dict parameter: deployments and the UI can set it
    max_bytes = int(max_file_mb * 2**20)
    workers = workers or os.cpu_count() or 1
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with locked(out_path):
        refs, rejected = discover(inputs)
        timings["discover"] = time.perf_counter() - t0
        t = time.perf_counter()
        known = _known_fingerprints(out_path / CACHE_DIR, max_bytes) if cache else {}
        fps, record, hashed = fingerprints(refs, max_bytes, known)
        keys = [cache_key(r.rel, fp, max_bytes) for r, fp in zip(refs, fps)]
        del known, fps  # ~100 MB at 100k files: not kept through the build's peak
        timings["hash"] = time.perf_counter() - t
        digest = build_digest(keys, refs, rejected, max_bytes, dedup_cfg)
        previous = previous_summary(out_path)
        if cache and previous and previous.get("build_digest") == digest:
            previous["up_to_date"] = True
            previous["durations_s"] = {**{k: round(v, 3) for k, v in timings.items()},
                                       "total": round(time.perf_counter() - t0, 3)}
            return previous
    with locked(out_path), atomic_dir(out_path) as tmp, build_log(tmp / "logs" / "build.log", failed_log(out_path)):
        log.info("kirinuki %s build of %s into %s (%d workers)", __version__, inputs, out, workers)
        log.info("discover: %.2f s, hash: %.2f s", timings["discover"], timings["hash"])
        t = time.perf_counter()
        # the parts are the next build's cache: kept in the build (cache/) unless caching is off
        parts = tmp / CACHE_DIR
        old_parts = out_path / CACHE_DIR if cache and (out_path / CACHE_DIR).is_dir() else None
        results = parse_all(refs, keys, parts, batch_files, max_bytes, workers if runner == "local" else 1,
                            old_parts)
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
        others = write_tables.submit(str(tmp), str(parts), [n for n in PART_TABLES if n != "excerpts"])
        # dedup reads only the excerpts (and the posts' dates): when none of that changed since the
        # last build, its output is that build's, exactly
        key = dedup_key([d for res in results for d in res["dedup_digests"]], dedup_cfg, code_digest(whole_build=True))
        state = parts / DEDUP_STATE
        dedup_stats = reuse_dedup(str(old_parts / DEDUP_STATE), str(tmp), str(state), key) if old_parts else None
        dedup_reused = dedup_stats is not None
        if dedup_stats is None:
            dedup_stats = dedup_tables(str(tmp), str(parts), dedup_cfg, duckdb_memory_mb)
            keep_dedup(str(tmp), str(state), key, dedup_stats)
        dedup_stats = dict(dedup_stats, reused=dedup_reused)
        timings["dedup"] = time.perf_counter() - t
        # importing Great Expectations takes seconds (and ~200 MB): do it while the last tables
        # are written, not earlier, so it does not add to the dedup process's peak
        threading.Thread(target=_preload_validation, daemon=True).start()
        log.info("dedup: %.2f s%s", timings["dedup"], " (the last build's output: its input is unchanged)" if dedup_reused else "")
        t = time.perf_counter()
        counts = write_tables(str(tmp), str(parts), ["excerpts"], read_cluster_columns(str(state)))
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
        totals: dict[str, Counter] = {k: Counter() for k in ("flags", "unknown_outlets", "unresolved_dates", "seconds")}
        for res in results:
            for k, c in totals.items():
                c.update(res[k])
        # summed over batches; with parallel batches these add up to more than the "parse" wall time
        timings.update({f"batches_{k}_sum": v for k, v in totals["seconds"].items()})
        summary = {
            "kirinuki_version": __version__,
            "pipeline_version": PIPELINE_VERSION,
            "schema_version": schema_version(),
            "corpus_sha256": corpus_digest(tmp),
            # what was validated: a release refuses data files that no longer match these
            "files": {f"{DATA_DIR}/{p.name}": digests.get(p.stem) or sha256_file(p)
                      for p in sorted((tmp / DATA_DIR).glob("*.parquet"))},
            "build_digest": digest,
            "inputs": {"roots": len(inputs), "files": len(refs) + len(rejected),
                       "read": sum(r["read"] for r in results), "bytes": sum(r["bytes"] for r in results),
                       "from_cache": sum(r["cache_hits"] for r in results), "hashed": hashed},
            "rejects": dict(sorted(Counter(r["code"] for r in rejects).items())),
            "rows": counts,
            "flags": dict(sorted(totals["flags"].items())),
            "unknown_outlets": {"distinct": len(totals["unknown_outlets"]),
                                "rows": sum(totals["unknown_outlets"].values())},
            "unresolved_dates": dict(sorted(totals["unresolved_dates"].items())),
            "dedup": dedup_stats,
            "validation": report,
            "rejected_files": [{k: r[k] for k in ("source_path", "code", "reason")}
                               for r in sorted(rejects, key=lambda r: r["source_path"])[:MAX_LISTED_REJECTS]],
            "parameters": {"batch_files": batch_files, "max_file_mb": max_file_mb,
                           "duckdb_memory_mb": duckdb_memory_mb, "workers": workers, "cache": cache,
                           "runner": runner},
            "durations_s": {k: round(v, 3) for k, v in timings.items()},
        }
        write_json(tmp / "build.json", summary)
    summary["durations_s"]["total"] = round(time.perf_counter() - t0, 3)
    create_table_artifact(key="kirinuki-build-rows", description="Rows per table of the last kirinuki build",
                          table=[{"table": k, "rows": v} for k, v in summary["rows"].items()])
    create_markdown_artifact(key="kirinuki-build", markdown=summary_markdown(summary),
                             description="Summary of the last kirinuki build (same content as build.json)")
    return summary


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


def summary_markdown(s: dict) -> str:
    """build.json as a short Markdown page for the Prefect UI."""
    i = s["inputs"]
    lines = ["# kirinuki build", "",
             f"{i['read']:,} posts read ({i['bytes']:,} bytes) of {i['files']:,} files; "
             f"rejected: {s['rejects'] or 'none'}.", "", "| table | rows |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in s["rows"].items()]
    v = s["validation"]
    lines += ["", f"Validation: {v['checks']} checks, {'all pass' if v['success'] else 'failures'}; "
                  f"quarantined: {v['quarantined'] or 'none'}.", "",
              "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {t:.3f} |" for k, t in s["durations_s"].items()]
    return "\n".join(lines) + "\n"
