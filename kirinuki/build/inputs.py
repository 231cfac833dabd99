"""What a build would read, and whether the last build already holds its result.

In: the input paths, the output folder and the parameters that shape the tables. Out: an `InputPlan`
(inputs found and rejected, each file's cache key, the fingerprints to record, the build digest) and,
by `unchanged_since`, the last build's summary when nothing it depends on changed. Plain and cheap:
the CLI asks it before any orchestration or heavy import starts, and the build flow plans with it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from kirinuki.build.batch import cache_key, fingerprints
from kirinuki.build.plan import CACHE_DIR, build_digest, failed_log, known_fingerprints, previous_summary
from kirinuki.store.files import read_json
from kirinuki.dedup import DedupConfig
from kirinuki.ingest.sources import SourceRef, discover


@dataclass
class InputPlan:
    refs: list[SourceRef]
    rejected: list
    keys: list[str | None]
    record: dict  # the fingerprints the next build starts from
    hashed: int  # files read to fingerprint them (the rest kept the last build's)
    digest: str
    timings: dict[str, float] = field(default_factory=dict)


def plan_inputs(inputs: list[str], out: Path, max_bytes: int, dedup: DedupConfig, drafts: bool = False,
                convention: str | None = None, cache: bool = True, partition_min_posts: int | None = None) -> InputPlan:
    t0 = time.perf_counter()
    refs, rejected = discover(inputs, convention=convention)
    t1 = time.perf_counter()
    known = known_fingerprints(out / CACHE_DIR, max_bytes) if cache else {}
    fps, record, hashed = fingerprints(refs, max_bytes, known)
    keys = [cache_key(r.rel, fp, max_bytes, r.convention) for r, fp in zip(refs, fps)]
    del known, fps  # ~100 MB at 100k files: not kept through the build's peak
    digest = build_digest(keys, refs, rejected, max_bytes, dedup, drafts, partition_min_posts)
    return InputPlan(refs, rejected, keys, record, hashed, digest,
                     {"discover": t1 - t0, "hash": time.perf_counter() - t1})


def unchanged_since(plan: InputPlan, out: Path, started: float) -> dict | None:
    """The last build's summary, marked up to date, when its digest is this plan's (else None).
    The digests are compared before the last build's files are hashed to check them: a build that
    will run does not read the last one's data first (seconds at 100k posts)."""
    said = read_json(out / "build.json")
    if not isinstance(said, dict) or said.get("build_digest") != plan.digest:
        return None
    previous = previous_summary(out)
    if not previous or previous.get("build_digest") != plan.digest:
        return None
    previous["up_to_date"] = True
    failed_log(out).unlink(missing_ok=True)
    previous["durations_s"] = {**{k: round(v, 3) for k, v in plan.timings.items()},
                               "total": round(time.perf_counter() - started, 3)}
    return previous


# A build of fewer files than this, and fewer bytes, is small: the CLI does not start the parse
# workers' preloading forkserver for it (kirinuki.build.workers.start_parse_forkserver).
SMALL_BUILD_FILES, SMALL_BUILD_BYTES = 500, 16 * 2**20
# Below this many bytes of input, validation runs in a worker the CLI starts before it imports
# Prefect (kirinuki.build.workers.warm_validator), importing Great Expectations on the core the
# start-up leaves idle; above it, in the build's process while dedup runs, so that the parse
# workers have the memory a worker holding Great Expectations would take (~250 MB) while they parse.
VALIDATION_WORKER_BYTES = 1 << 30


@dataclass(frozen=True)
class Sizing:
    small: bool  # fewer than SMALL_BUILD_FILES files and SMALL_BUILD_BYTES bytes
    validation_worker: bool  # fewer than VALIDATION_WORKER_BYTES bytes


def sizing(refs: list[SourceRef]) -> Sizing:
    total = 0
    for r in refs:
        try:
            total += os.stat(r.path).st_size
        except OSError:
            pass
        if total >= VALIDATION_WORKER_BYTES:  # both settled: the rest need not be looked at
            break
    return Sizing(len(refs) < SMALL_BUILD_FILES and total < SMALL_BUILD_BYTES, total < VALIDATION_WORKER_BYTES)


@dataclass(frozen=True)
class InputCheck:
    previous: dict | None  # the last build's summary, when building again would give it unchanged
    size: Sizing
    plan: "PreparedPlan | None" = None  # what the check planned, for the build that follows it


@dataclass(frozen=True)
class PreparedPlan:
    """A plan made by the CLI's up-to-date check, handed to the build it then starts so the inputs
    are not listed and fingerprinted twice (seconds at 100k posts); taken only with the same
    arguments."""

    key: tuple
    plan: InputPlan


def plan_key(inputs: list[str], out: Path, max_bytes: int, dedup: DedupConfig, drafts: bool, convention: str | None,
             cache: bool, partition_min_posts: int | None) -> tuple:
    """What a plan was made from (plan_inputs' arguments), to tell whether a prepared one fits a build."""
    from kirinuki.store.layout import PARTITION_MIN_DOCUMENTS

    return (tuple(str(i) for i in inputs), str(Path(out).absolute()), max_bytes, tuple(sorted(dedup.as_dict().items())),
            drafts, convention, cache, partition_min_posts or PARTITION_MIN_DOCUMENTS)


def up_to_date(inputs: list[str], out: Path, max_file_mb: float, dedup: dict | None = None, drafts: bool = False,
               convention: str | None = None, cache: bool = True, partition_min_posts: int | None = None) -> InputCheck:
    """Whether the last build in `out` already is what building `inputs` would give (see InputCheck)."""
    started = time.perf_counter()
    if not cache or not (out / "build.json").is_file():
        return InputCheck(None, sizing(discover(inputs, convention=convention)[0]))
    max_bytes, cfg = int(max_file_mb * 2**20), DedupConfig(**(dedup or {}))
    plan = plan_inputs(inputs, out, max_bytes, cfg, drafts, convention, partition_min_posts=partition_min_posts)
    previous = unchanged_since(plan, out, started)
    prepared = None if previous is not None else \
        PreparedPlan(plan_key(inputs, out, max_bytes, cfg, drafts, convention, True, partition_min_posts), plan)
    return InputCheck(previous, sizing(plan.refs), prepared)


def build_identity(out: Path) -> str | None:
    """sha256 of the build's build.json (None if there is none): what a run compares after it
    fails, to tell whether it had already swapped its build in."""
    from kirinuki.store.files import sha256_file

    try:
        return sha256_file(out / "build.json")
    except OSError:
        return None


def completed_build(out: Path, before: str | None) -> dict | None:
    """The summary of the build in `out` if this run swapped it in — its build.json is not the one
    there before the run (`before`, from build_identity) — and it is complete and intact: a run
    that failed after the swap (its Prefect server gone, say) still built it. Builds of one folder
    never overlap (the lock), so a new build.json is this run's."""
    now = build_identity(out)
    if now is None or now == before:
        return None
    return previous_summary(out)
