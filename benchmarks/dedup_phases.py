"""Where dedup's time goes on a build: its phases timed in one process, without and with the kept
state of that build (every article then kept, the most a rebuild can save by copying them).

    .venv/bin/python benchmarks/dedup_phases.py /tmp/kb/build-10000

Reads the build's cache (its parts and `cache/dedup/`); writes only into a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import kirinuki.dedup.clusters as clusters
import kirinuki.dedup.memo as memo
import kirinuki.dedup.parts as parts
from kirinuki.build.batch import code_digest
from kirinuki.dedup import DedupConfig

# timed where find_clusters and deduplicate look them up (their module's names)
PHASES = [(parts, "read_excerpts"), (clusters, "find_clusters"), (clusters, "line_index"), (clusters, "sketch"),
          (clusters, "candidate_pairs"), (clusters, "_reconstruct"), (clusters, "_article"),
          (clusters, "article_key"), (memo.ArticleMemo, "kept")]
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


def main() -> None:
    build = Path(sys.argv[1])
    cache = build / "cache"
    for owner, name in PHASES:
        timed(owner, name)
    for label, state in (("without the kept state", None), ("with every article kept", str(cache / "dedup"))):
        spent.clear()
        with tempfile.TemporaryDirectory(prefix="kirinuki-dedup-phases-") as root:
            t = time.perf_counter()
            stats = parts.dedup_parts(root, str(cache), DedupConfig(), 2048, state, code_digest(whole_build=True))
            total = time.perf_counter() - t
        print(f"{label}: {total:.2f} s, {stats['articles_kept']:,} of {stats['clusters']:,} articles kept")
        for name, sec in spent.items():
            print(f"  {name:<16} {sec:6.2f} s")


if __name__ == "__main__":
    main()
