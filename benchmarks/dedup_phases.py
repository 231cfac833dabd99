"""Where dedup's time goes on a build: its phases timed in one process, without and with the kept
state of that build (every article kept and no quote new: the most a rebuild can save), with the
peak RSS of this process after each.

    .venv/bin/python benchmarks/dedup_phases.py /tmp/kb/build-10000
    .venv/bin/python benchmarks/dedup_phases.py /tmp/kb/build-10000 --appended 0.01

With `--appended F`, clustering alone instead: the build's excerpts but the last F of them are
clustered and their sketches kept, then all of them are clustered with those sketches (the quotes
of posts appended since, kirinuki.dedup.appended) and without (a clean build), and the two results
are compared. Reads the build's cache (its parts and `cache/dedup/`; the kept state is used only if
that build was made by the same code); writes only into a temporary folder.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import kirinuki.dedup.appended as appended
import kirinuki.dedup.clusters as clusters
import kirinuki.dedup.memo as memo
import kirinuki.dedup.parts as parts
from kirinuki.build.batch import code_digest
from kirinuki.dedup import DedupConfig

# timed where find_clusters and deduplicate look them up (their module's names)
PHASES = [(parts, "read_excerpts"), (clusters, "find_clusters"), (clusters, "line_index"), (clusters, "sketch"),
          (clusters, "candidate_pairs"), (clusters, "_reconstruct"), (clusters, "_article"),
          (clusters, "article_key"), (memo.ArticleMemo, "kept"), (appended, "cluster_appended"),
          (appended, "sketch"), (appended, "candidate_pairs"), (clusters, "verify")]
spent: dict[str, float] = {}


def timed(owner, name: str) -> None:
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


def appended_only(cache: Path, fraction: float) -> None:
    with tempfile.TemporaryDirectory(prefix="kirinuki-dedup-phases-") as tmp:
        items = parts.read_excerpts(str(cache), tmp)
        cfg = DedupConfig()
        kept = len(items) - max(1, round(len(items) * fraction))
        last = clusters.deduplicate(items[:kept], cfg, spill_dir=tmp).sketches
        spent.clear()
        t = time.perf_counter()
        grown = clusters.find_clusters(items, cfg, None, tmp, last)
        took = time.perf_counter() - t
        phases = dict(spent)  # (the append's alone: the clean run below looks up the same names)
        del last
        t = time.perf_counter()
        clean = clusters.find_clusters(items, cfg, None, tmp)
        took_all = time.perf_counter() - t
        same = grown.root == clean.root and grown.links == clean.links
        print(f"{len(items) - kept:,} of {len(items):,} excerpts appended: find_clusters {took:.2f} s with the sketches "
              f"of the others, {took_all:.2f} s over all; same clusters and links: {same}")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in grown.stats.items() if isinstance(v, int)))
        for name in ("cluster_appended", "sketch", "candidate_pairs", "verify"):
            print(f"  {name:<16} {phases.get(name, 0.0):6.2f} s")


def main() -> None:
    build = Path(sys.argv[1])
    cache = build / "cache"
    if "--appended" in sys.argv:
        for owner, name in PHASES:
            timed(owner, name)
        return appended_only(cache, float(sys.argv[sys.argv.index("--appended") + 1]))
    ctx = multiprocessing.get_context("spawn")  # each in a process of its own: its own peak RSS
    for label, state in (("without the kept state", None), ("with every article kept", str(cache / "dedup"))):
        with ctx.Pool(1) as pool:
            total, stats, took, rss = pool.apply(one_run, (str(cache), state))
        print(f"{label}: {total:.2f} s, {stats['articles_kept']:,} of {stats['clusters']:,} articles kept, "
              f"clustering {stats.get('clustering')}; peak RSS {rss:,} MB")
        for name, sec in took.items():
            print(f"  {name:<16} {sec:6.2f} s")


def one_run(cache: str, state: str | None) -> tuple[float, dict, dict, int]:
    for owner, name in PHASES:
        timed(owner, name)
    with tempfile.TemporaryDirectory(prefix="kirinuki-dedup-phases-") as root:
        t = time.perf_counter()
        stats = parts.dedup_parts(root, cache, DedupConfig(), 2048, state, code_digest(whole_build=True))
        total = time.perf_counter() - t
    return total, stats, dict(spent), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


if __name__ == "__main__":
    main()
