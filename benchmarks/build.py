"""End-to-end build benchmark: generated corpora of seed-sized posts, full build, no-change and
1%-changed rebuilds, against a floor measured in the same run.

    .venv/bin/python benchmarks/build.py                      # 1,000 and 10,000 posts
    .venv/bin/python benchmarks/build.py --sizes 1000,10000,100000 --workdir /tmp/kb

Corpora come from `kirinuki synth --in-order` (6 excerpts per post on average: ~24 KB per post, the
seed is 23 KB; each post dated after the one before, as a blog's) and are kept in --workdir
between runs. Every build runs as its own `kirinuki build --json` process with a persistent
PREFECT_HOME (so the database is migrated once, not per run). Peak RSS
is sampled from /proc every 0.1 s over the whole process tree (the CLI and its parse workers,
summed). "prefect" is the wall time the flow did not account for: the temporary Prefect server's
start and stop plus interpreter start-up (with `--server`, a `kirinuki server start` runs
throughout, as for a maintainer who rebuilds often, and no build starts a server; the running
server's memory is not in the RSS column). "of full" is a rebuild's flow time over the full
build's. The two 1% rebuilds edit 1% of the posts at random: "1% comment" appends a line of
commentary to each (the quotes are unchanged, so dedup's output is reused), "1% quotes" changes
a paragraph of a quoted article in each (dedup runs again over the whole corpus). The two
appends add new posts after the last one, as a blog grows: "append 1%" adds 1% of the corpus,
"append 10%" another 10% (both taken, in order, from a longer corpus of the same generator and
seed, so the new posts quote new articles and now and then re-quote old ones, and are dated after
the corpus); "append 1 post" adds the next post alone, a day's writing, which leaves almost every
article as it was; the corpus is put back as it was at the end. "wall of full" is the same share in wall
time, what the user waits for.

Floor: read + decode + split into lines + write one Parquet table of the lines with pyarrow, in
one process: the least any Python pipeline over these files must do. It runs three times per size:
before the builds, right after the full build, and after the last build (on the corpus as it was);
"x floor" divides by the median of the three. On this VM the floor moves far more than a build:
three full 10k builds of the same code within minutes took 58.5-60.3 s while their floors took
5.5-8.2 s, 7.4x to 10.6x (docs/measurements.md); three floors taken around the builds measure the
machine's speed over the stretch the builds ran in.

Side by side (`--against REV --rounds N`): the full build of the same corpus by today's code and by
the code at git revision REV (a git worktree under --workdir, run with this environment's packages),
alternated N times, each first in turn; the table gives every round and the best of each.

Parse speed (`--parse-baseline REV`, on by default): in one process, every post of the corpus is
parsed by the seed's grammar as it was at git revision REV (loaded from git history), by today's
seed grammar, and by today's parse with convention detection (`parse.detect.parse_post`, what a
build runs), the best of 15 interleaved rounds each. The detection's row says how it compares with REV's parser: the
target is within 10 % on the seed's convention. `--parse-baseline ''` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for tid in os.listdir(f"/proc/{p}/task"):  # children of every thread, not just the main one
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    pids += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def measured(cmd: list[str], env: dict, cwd: Path = ROOT) -> tuple[float, int, str]:
    """(wall seconds, peak tree RSS bytes, stdout) of one command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(p.pid))
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err.strip().splitlines()[-1] if err else ''}")
    return wall, peak, out


FLOOR = r"""
import sys, time, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
files = sorted(Path(sys.argv[1]).glob("post_*.txt"))
t = time.perf_counter()
lines, paths = [], []
for f in files:
    text = f.read_bytes().decode("utf-8")
    for line in text.splitlines():
        lines.append(line)
        paths.append(f.name)
pq.write_table(pa.table({"path": paths, "line": lines}), sys.argv[2], compression="zstd")
print(time.perf_counter() - t)
"""


def corpus(workdir: Path, posts: int, env: dict, name: str = "") -> Path:
    d = workdir / f"{name or f'corpus-{posts}'}-in-order"
    if not (d / "ground_truth.csv").exists():
        print(f"generating {posts:,} posts in {d} ...", file=sys.stderr, flush=True)
        subprocess.run([str(BIN / "kirinuki"), "synth", "--posts", str(posts), "--seed", "1", "--out", str(d),
                        "--excerpts-per-post", "6", "--in-order"],
                       check=True, env=env, cwd=ROOT, capture_output=True)
    return d


def change_one_percent(d: Path, seed: int = 5, quote: bool = False) -> int:
    """Edit 1% of the posts, chosen at random: append a line of commentary to each or, with
    `quote`, change the first paragraph of its first quoted article (the quotes change, so dedup
    cannot reuse the last build's output)."""
    files = sorted(d.glob("post_*.txt"))
    chosen = random.Random(seed).sample(files, max(1, len(files) // 100))
    for f in chosen:
        text = f.read_text(encoding="utf-8")
        if quote:
            lines = text.split("\n")
            i = next(i for i, line in enumerate(lines) if re.match(r"\*{3,5}[^*]", line))
            lines[i + 1] = "ベンチマークで変えた記事の一文。" + lines[i + 1]
            text = "\n".join(lines)
        else:
            text += "ベンチマークで書き足した解説の一行。\n"
        f.write_text(text, encoding="utf-8")
    return len(chosen)


def append_posts(src: Path, longer: Path, fraction: float, base: int) -> list[Path]:
    """Copy the next `fraction` x `base` posts (at least one) of the longer corpus (numbered after those in `src`)
    into `src`; return the paths added."""
    have = max(int(f.stem.split("_")[1]) for f in src.glob("post_*.txt"))
    added = []
    for n in range(have + 1, have + 1 + max(1, round(base * fraction))):
        name = f"post_{n:06d}.txt"
        shutil.copyfile(longer / name, src / name)
        added.append(src / name)
    return added


RUNS = ("full", "no change", "1% comment", "1% quotes", "append 1%", "append 10%", "append 1 post")
APPEND = {"append 1%": 0.01, "append 10%": 0.10, "append 1 post": 0.0}  # (0: one post)
BASELINE_REV = "81b2b7f"  # the last commit before quoting conventions (issue 17)
FLOORS = 3  # the floor's runs: its time moves more than a build's (3.8-9.9 s at 10k on one day)
ROUNDS = 15  # this VM's timings vary by ±10 % from run to run: the best of many rounds is stable


def old_parser(rev: str, tmp: Path):
    """`parse` of the seed grammar at git revision `rev`, as an importable module (None if git
    or the revision is not there, e.g. in a shallow clone)."""
    import importlib

    pkg = tmp / "kirinuki_parse_at_rev"
    pkg.mkdir(parents=True, exist_ok=True)
    for name in ("grammar", "scan"):
        r = subprocess.run(["git", "show", f"{rev}:kirinuki/parse/{name}.py"], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            return None
        (pkg / f"{name}.py").write_text(r.stdout.replace("kirinuki.parse.", "kirinuki_parse_at_rev."), encoding="utf-8")
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("kirinuki_parse_at_rev.grammar").parse


def parse_speed(src: Path, rev: str, tmp: Path) -> list[tuple[str, float]]:
    """(parser, best-of-3 seconds over every post) for REV's seed grammar, today's and detection."""
    sys.path.insert(0, str(ROOT))
    from kirinuki.parse.detect import parse_post
    from kirinuki.parse.grammar import parse

    texts = [f.read_text(encoding="utf-8") for f in sorted(src.glob("post_*.txt"))]
    parsers = [("seed grammar today", parse), ("parse_post (detection)", parse_post)]
    old = old_parser(rev, tmp) if rev else None
    if old is not None:
        parsers.insert(0, (f"seed grammar at {rev}", old))
    elif rev:
        print(f"(no git revision {rev} here: parse speed is compared with today's seed grammar only)", file=sys.stderr)
    import gc

    parse_post(texts[0])  # load the conventions and the register once, outside the timing
    best = {name: float("inf") for name, _ in parsers}
    gc.disable()  # a full collection costs in proportion to all the process holds, not to the parser
    try:
        for r in range(ROUNDS):
            k = r % len(parsers)  # interleaved, each first in turn, so a slow moment of the machine hits all alike
            for name, fn in parsers[k:] + parsers[:k]:
                t = time.perf_counter()
                for text in texts:
                    fn(text)
                best[name] = min(best[name], time.perf_counter() - t)
            gc.collect()
    finally:
        gc.enable()
    return [(name, best[name]) for name, _ in parsers]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--workdir", default="/tmp/kirinuki-bench")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--runs", default=",".join(RUNS), help="which builds, in this order (comma-separated)")
    ap.add_argument("--parse-baseline", default=BASELINE_REV, help="git revision whose seed grammar parse speed is compared with ('' to skip)")
    ap.add_argument("--against", default="", help="git revision whose full build is timed side by side with today's")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the side-by-side comparison")
    ap.add_argument("--server", action="store_true",
                    help="run the builds with `kirinuki server start` running (stopped at the end), as a maintainer "
                         "who rebuilds often would: no build pays a Prefect server's start-up")
    args = ap.parse_args()
    if args.against:
        return side_by_side(args)
    runs = [r for r in args.runs.split(",") if r]
    if unknown := [r for r in runs if r not in RUNS]:
        raise SystemExit(f"unknown run {unknown[0]!r}; choose from {', '.join(RUNS)}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"), KIRINUKI_STATE_DIR=str(workdir / "kirinuki-state"))
    env.pop("PREFECT_API_URL", None)
    if args.server:
        subprocess.run([str(BIN / "kirinuki"), "server", "start", "--port", "0"], env=env, check=True, capture_output=True)
    try:
        builds(args, runs, workdir, env)
    finally:
        if args.server:
            subprocess.run([str(BIN / "kirinuki"), "server", "stop"], env=env, capture_output=True)


def builds(args, runs: list[str], workdir: Path, env: dict) -> None:
    """Every size's builds, in the order of `runs`, and their table."""
    rows = []
    for posts in [int(s) for s in args.sizes.split(",")]:
        src = corpus(workdir, posts, env)
        mb = sum(f.stat().st_size for f in src.glob("post_*.txt")) / 1e6
        out = workdir / f"build-{posts}"
        if args.parse_baseline:  # "" skips it
            speeds = parse_speed(src, args.parse_baseline, workdir / "parse-at-rev")
            first = speeds[0][1]
            print(f"parse speed, {posts:,} posts (in one process, best of {ROUNDS} rounds; target: detection within 110 % of the first):")
            for name, sec in speeds:
                print(f"  {name:<28} {sec:7.2f} s  {posts / sec:8,.0f} posts/s  {sec / first:6.1%} of the first")
            print(flush=True)
        if not runs:
            continue

        def floors_taken() -> int:
            return sum(r["run"].startswith("floor") for r in rows if r["posts"] == posts)

        def floor() -> None:
            k = 1 + floors_taken()
            wall, rss, _ = measured([sys.executable, "-c", FLOOR, str(src), str(workdir / "floor.parquet")], env)
            rows.append({"posts": posts, "run": f"floor {k}/{FLOORS}", "wall": wall, "flow": wall, "rss": rss, "mb": mb,
                         "stages": {}})

        floor()
        build = [str(BIN / "kirinuki"), "build", str(src), "--out", str(out), "--json", "--workers", str(args.workers)]
        longer = corpus(workdir, posts + round(posts * sum(APPEND.values())) + 1, env, f"corpus-{posts}-longer") \
            if any(r in APPEND for r in runs) else None
        added: list[Path] = []
        try:
            for run in runs:
                if run == "full":  # from nothing, as a first build: it also fills the cache
                    shutil.rmtree(out, ignore_errors=True)
                elif run in APPEND:
                    added += append_posts(src, longer, APPEND[run], posts)
                elif run != "no change":
                    change_one_percent(src, seed=5 if run == "1% comment" else 7, quote=run == "1% quotes")
                wall, rss, stdout = measured(build, env)
                s = json.loads(stdout.strip().splitlines()[-1])
                d = s["durations_s"]
                stages = {k: d.get(k, 0.0) for k in ("discover", "hash", "parse", "write", "dedup", "validate", "overview")}
                rows.append({"posts": posts, "run": run, "wall": wall, "flow": d["total"], "rss": rss, "mb": mb,
                             "stages": stages, "cached": s["inputs"].get("from_cache", 0)})
                if run == "full" and floors_taken() == 1:
                    floor()  # right after the first full build: the same stretch of the machine's speed
        finally:
            for f in added:  # the corpus as it was: the next run of the benchmark builds the same posts
                f.unlink(missing_ok=True)
        while floors_taken() < FLOORS:
            floor()
        if runs:
            print_table(rows)
    json.dump(rows, open(workdir / "results.json", "w"), indent=1)


def worktree(rev: str, workdir: Path) -> Path:
    """A checkout of `rev` under `workdir` (made once), whose package runs from its own folder."""
    d = workdir / f"tree-{rev}"
    if not d.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(d), rev], cwd=ROOT, check=True, capture_output=True)
    return d


def side_by_side(args) -> None:
    """Full builds by today's code and REV's, alternated, each first in turn."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"))
    env.pop("PREFECT_API_URL", None)
    old = worktree(args.against, workdir)
    for posts in [int(s) for s in args.sizes.split(",")]:
        src = corpus(workdir, posts, env)
        out = workdir / f"build-{posts}"
        codes = [("today", ROOT), (args.against, old)]
        times: dict[str, list[float]] = {name: [] for name, _ in codes}
        for r in range(args.rounds):
            for name, tree in codes[r % 2:] + codes[:r % 2]:
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-c", "from kirinuki.cli import main; main()", "build", str(src), "--out",
                       str(out), "--json", "--workers", str(args.workers)]
                wall, _, stdout = measured(cmd, dict(env, PYTHONPATH=str(tree)), cwd=tree)
                flow = json.loads(stdout.strip().splitlines()[-1])["durations_s"]["total"]
                times[name].append(wall)
                print(f"{posts:>7,} posts  round {r + 1}  {name:<10} wall {wall:6.1f} s  flow {flow:6.1f} s", flush=True)
        best = {name: min(t) for name, t in times.items()}
        print(f"{posts:>7,} posts  best wall: today {best['today']:.1f} s, {args.against} {best[args.against]:.1f} s "
              f"-> today is {best['today'] / best[args.against]:.1%} of {args.against}", flush=True)


def floors(rows: list[dict]) -> dict[int, float]:
    """posts -> the median of the floor's runs at that size (the "x floor" column's denominator)."""
    import statistics

    walls: dict[int, list[float]] = {}
    for r in rows:
        if r["run"].startswith("floor"):
            walls.setdefault(r["posts"], []).append(r["wall"])
    return {posts: statistics.median(w) for posts, w in walls.items()}


def print_table(rows: list[dict]) -> None:
    head = (f"{'posts':>7} {'run':<13} {'MB':>7} {'wall s':>7} {'flow s':>7} {'prefect':>7} {'hash':>5} "
            f"{'parse':>6} {'write':>6} {'dedup':>6} {'valid.':>6} {'overv.':>6} {'MB/s':>6} {'posts/s':>7} {'µs/post':>8} "
            f"{'RSS MB':>7} {'of full':>7} {'wall of full':>12} {'x floor':>7}")
    print(head)
    print("-" * len(head))
    full: dict[int, float] = {}
    full_wall: dict[int, float] = {}
    floor = floors(rows)
    for r in rows:
        st = r["stages"]
        flow = r["flow"]
        if r["run"] == "full":
            full[r["posts"]], full_wall[r["posts"]] = flow, r["wall"]
        rebuild = r["run"] != "full" and not r["run"].startswith("floor") and r["posts"] in full
        share = f"{flow / full[r['posts']]:.0%}" if rebuild else ""
        wall_share = f"{r['wall'] / full_wall[r['posts']]:.0%}" if rebuild else ""
        print(f"{r['posts']:>7,} {r['run']:<13} {r['mb']:>7,.0f} {r['wall']:>7.1f} {flow:>7.1f} "
              f"{r['wall'] - flow:>7.1f} {st.get('hash', 0):>5.1f} {st.get('parse', 0):>6.1f} {st.get('write', 0):>6.1f} "
              f"{st.get('dedup', 0):>6.1f} {st.get('validate', 0):>6.1f} {st.get('overview', 0):>6.1f} {r['mb'] / flow:>6.1f} "
              f"{r['posts'] / flow:>7,.0f} {flow / r['posts'] * 1e6:>8,.0f} {r['rss'] / 1e6:>7,.0f} {share:>7} {wall_share:>12} "
              f"{r['wall'] / floor[r['posts']] if r['posts'] in floor else 0:>7.1f}")
    for posts, median in floor.items():
        print(f"{posts:,} posts: x floor is over the median of the {FLOORS} floor runs, {median:.1f} s "
              "(before the builds, after the full build, after the last one)")
    print(flush=True)


if __name__ == "__main__":
    main()
