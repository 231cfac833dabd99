"""Where the dedup stage spends its time and memory: runs the stage (as a build does, in one
process) over the parts a build kept in its cache, timing each step and sampling RSS every 20 ms.

    .venv/bin/python benchmarks/dedup_steps.py /tmp/kirinuki-bench/build-10000

Prints one row per step: seconds, when it ended, RSS then and the peak so far (MB). Steps nest:
find_clusters contains line_index .. candidate_pairs (which makes the band hashes, a few bands at
a time); deduplicate contains find_clusters and then relations and article reconstruction;
dedup_parts is everything, with reading and writing.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import kirinuki.dedup as dedup
from kirinuki.dedup import candidates, clusters, minhash, parts as dedup_parts_module

MODULES = (dedup, candidates, clusters, dedup_parts_module, minhash)  # where the steps are looked up

STEPS = ["read_excerpts", "line_index", "boilerplate_keys", "sketch", "paragraph_hashes", "candidate_pairs",
         "find_clusters", "deduplicate"]


def rss_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", help="a build folder whose cache/ holds the parts (kirinuki build keeps them)")
    ap.add_argument("--duckdb-memory-mb", type=int, default=2048)
    args = ap.parse_args()
    parts = Path(args.build) / "cache"
    if not (parts / "index").is_dir():
        raise SystemExit(f"{parts} holds no parts: build with the cache on first "
                         f"(kirinuki build ... --out {args.build})")
    peak = [0]
    rows: list[tuple[str, float, float, int, int]] = []
    t0 = time.perf_counter()

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    for name in STEPS:
        fn = next(getattr(m, name) for m in MODULES if hasattr(m, name))

        def timed(*a, _fn=fn, _name=name, **k):
            t = time.perf_counter()
            out = _fn(*a, **k)
            rows.append((_name, time.perf_counter() - t, time.perf_counter() - t0, rss_mb(), peak[0]))
            return out

        for m in MODULES:  # every module that calls it by name
            if hasattr(m, name):
                setattr(m, name, timed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").mkdir()
        t = time.perf_counter()
        stats = dedup.dedup_parts(tmp, str(parts), dedup.DedupConfig(), args.duckdb_memory_mb)
        rows.append(("dedup_parts", time.perf_counter() - t, time.perf_counter() - t0, rss_mb(), peak[0]))
    print(f"{stats['excerpts']:,} excerpts, {stats['characters']:,} characters, {stats['links']:,} links\n")
    print(f"{'step':<18} {'seconds':>8} {'ends at':>8} {'RSS MB':>7} {'peak MB':>8}")
    print("-" * 53)
    for name, secs, at, rss, pk in rows:
        print(f"{name:<18} {secs:>8.2f} {at:>8.2f} {rss:>7,} {pk:>8,}")


if __name__ == "__main__":
    main()
