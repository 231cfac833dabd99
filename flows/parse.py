"""The parse stage of the build flow: one Prefect task per batch of input files, run in a pool of
worker processes, and one task that links the batches whose every file is unchanged.

In: the build's input refs, their cache keys, the parts folder and the last build's parts. Out: each
batch's small stats, in batch order (the rows are in the parts; kirinuki.build.batch).
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

import itertools  # noqa: E402
import multiprocessing  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed, wait  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from kirinuki.build.batch import run_batch  # noqa: E402
from kirinuki.build.plan import share_exports  # noqa: E402
from kirinuki.build.reuse import Hit, cache_lookup, container_key, entries_by_export  # noqa: E402
from kirinuki.build.workers import PARSE_PRELOAD, WorkerPool  # noqa: E402
from kirinuki.ingest.sources import SourceRef  # noqa: E402

# Set while a build runs with a local process pool: parse tasks hand their batch to it. Without one
# (a Dask worker, or workers=1) a task runs its batch itself.
_POOL: WorkerPool | None = None
# Called with (files done, files total, bytes done) as batches finish; the CLI draws progress with it.
progress: Callable[[int, int, int], None] | None = None


@task(name="parse-batch", cache_policy=NO_CACHE, persist_result=False)
def parse_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int, keys: list[str | None],
                hits: list[Hit | None], old_parts: str | None, entry_hits: list[dict | None],
                keep_drafts: bool = False) -> dict:
    args = (refs, parts, batch_no, max_bytes, keys, hits, old_parts, entry_hits, keep_drafts)
    pool = _POOL
    return pool.run(run_batch, *args) if pool is not None else run_batch(*args)


@task(name="link-unchanged-batches", cache_policy=NO_CACHE, persist_result=False)
def link_unchanged_batches(batches: list[tuple]) -> list[dict]:
    """run_batch for batches whose every file is a hit in the last build's parts, here, in turn:
    each links its parts and writes its index (a hit whose part turns out damaged is parsed here)."""
    return [run_batch(*map(_unquoted, args)) for args in batches]


def _unquoted(x):
    return x.unquote() if isinstance(x, quote) else x


def parse_all(refs: list[SourceRef], keys: list[str | None], parts: Path, batch_files: int, max_bytes: int,
              workers: int, old_parts: Path | None, keep_drafts: bool = False, local: bool = True) -> list[dict]:
    """One parse task per batch with files to parse; batches run in a pool of `workers` processes
    (spawned from a forkserver that has imported only the parsing stages). Batches whose every file
    is in the last build's parts are linked by one task here. `local` is False when the tasks run
    on a Dask cluster. Results come back in batch order."""
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
        ctx.set_forkserver_preload(PARSE_PRELOAD)  # (when the CLI has not started it already)
    with WorkerPool(workers, ctx) if use_pool else nullcontext() as pool:
        if use_pool:
            _POOL = pool
        futures = []
        try:
            n = len(ref_batches)
            # quoted: Prefect would otherwise walk every ref and cache hit of a batch to resolve its
            # inputs, which cost 0.15 s a batch at 10k posts, 14 s for one task given them all (not
            # on Dask, whose argument packing rebuilds the quoted tuples as plain ones)
            wrap = quote if local else (lambda x: x)
            args = [(wrap(b), str(parts), i, max_bytes, wrap(k), wrap(h), str(old_parts) if old_parts else None,
                     wrap(e), keep_drafts)
                    for i, (b, k, h, e) in enumerate(zip(ref_batches, key_batches, hit_batches, entry_batches))]
            # a batch whose every file is in the last build's parts only links them and writes its
            # index: those batches are one task in this process, not a task and a worker each (40
            # batches of a 10k rebuild cost 5 s of Prefect and worker round trips, 0.3 s of work)
            linked = [all(h is not None for h in _unquoted(a[5])) and not any(_unquoted(a[7])) for a in args]
            unchanged = [a for a, only_hits in zip(args, linked) if only_hits]
            pending = [a for a, only_hits in zip(args, linked) if not only_hits]
            futures = [parse_batch.with_options(task_run_name=f"parse batch {a[2] + 1}/{n}").submit(*a)
                       for a in pending]
            results: dict[int, dict] = {}
            if unchanged:
                for a, res in zip(unchanged, link_unchanged_batches.with_options(
                        task_run_name=f"link {len(unchanged)} unchanged batches of {n}")(quote(unchanged))):
                    results[a[2]] = res
                    done += res["files"]
                    done_bytes += res["bytes"]
                if progress:
                    progress(done, total, done_bytes)
            for f in as_completed(futures):
                res = f.result()
                done += res["files"]
                done_bytes += res["bytes"]
                if progress:
                    progress(done, total, done_bytes)
            results.update((a[2], f.result()) for a, f in zip(pending, futures))
            return [results[i] for i in range(n)]
        except BaseException:
            # one batch failed (a full disk, a bug): no other batch may go on writing into the build's
            # temporary folder once it is removed, so the pool takes no more work and every task ends
            # before this returns (a task finding the pool shut fails at once; it never runs inline)
            if use_pool:  # the batches still running would only be thrown away: stop them now
                pool.stop()
            wait(futures)
            raise
        finally:
            if use_pool:
                _POOL = None
