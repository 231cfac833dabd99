"""The loop a person runs: build, edit or add a post, build again — and Ctrl-C in the middle of a build.

    .venv/bin/python benchmarks/loop.py                  # sample + seed, then Ctrl-C on 1,500 posts
    .venv/bin/python benchmarks/loop.py --workdir /tmp/kl --interrupt-posts 0   # no Ctrl-C part

The corpus is input/sample plus the seed post. Every build is a `kirinuki build --json` process, as a
user runs it, timed from start to exit (wall). Each sequence — first build, edit one post (a quoted
paragraph, so dedup runs again), add one post, nothing changed — runs twice: with no Prefect server
running (each build starts one of its own) and with `kirinuki server start` running. The floor, in
the same run, is one process that reads and decodes every file, splits it into lines and writes
one Parquet table of them with pyarrow (best of three, wall time as for the builds): the least any
Python pipeline over these files must do.

Ctrl-C: a synthetic corpus (`kirinuki synth`) is built once; then rebuilds with --no-cache get
SIGINT, sent to the process group as a terminal sends it, at several moments; each must exit with
130 within 2 s, print `interrupted; the previous build is unchanged`, leave the previous build's
files byte for byte as they were, and leave no process of its own behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED = ROOT.parent / "shared" / "seed" / "000_b7666d67213713ef.txt"

FLOOR = r"""
import sys, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
lines, paths = [], []
for f in sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file()):
    for line in f.read_bytes().decode("utf-8", "replace").splitlines():
        lines.append(line)
        paths.append(f.name)
pq.write_table(pa.table({"path": paths, "line": lines}), sys.argv[2], compression="zstd")
"""


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return wall, r


def make_corpus(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ROOT / "input" / "sample", d)
    shutil.copy(SEED, d / SEED.name)


def edit_quote(d: Path, n: int) -> None:
    """Change a quoted paragraph of the seed (its first body line after a headline frame)."""
    post = d / SEED.name
    lines = post.read_text(encoding="utf-8").split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith("****") and len(line) > 8)
    lines[i + 1] = f"ループの計測で{n}回目に書き換えた一文。" + lines[i + 1]
    post.write_text("\n".join(lines), encoding="utf-8")


def add_post(d: Path, n: int) -> None:
    src = d / SEED.name
    text = src.read_text(encoding="utf-8").replace("。", f"。追記{n}。", 3)
    (d / f"added_{n}.txt").write_text(text, encoding="utf-8")


def sequence(workdir: Path, env: dict, label: str) -> list[dict]:
    corpus, out = workdir / f"corpus-{label}", workdir / f"build-{label}"
    make_corpus(corpus)
    shutil.rmtree(out, ignore_errors=True)
    build = [str(BIN / "kirinuki"), "build", str(corpus), "--out", str(out), "--json"]
    rows = []
    for run, change in (("first build", None), ("edit one post", edit_quote), ("add one post", add_post),
                        ("no change", None)):
        if change:
            change(corpus, len(rows))
        wall, r = timed(build, env)
        s = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append({"server": label, "run": run, "wall": wall, "flow": s["durations_s"]["total"],
                     "up_to_date": bool(s.get("up_to_date"))})
    return rows


def tree_digest(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(d).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def leftovers(marker: bytes) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "environ").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def interrupts(workdir: Path, env: dict, posts: int, delays: list[float]) -> list[dict]:
    corpus, out = workdir / f"synth-{posts}", workdir / f"build-synth-{posts}"
    if not corpus.is_dir():
        subprocess.run([str(BIN / "kirinuki"), "synth", "--posts", str(posts), "--seed", "3", "--out", str(corpus)],
                       check=True, env=env, capture_output=True)
    if not (out / "build.json").is_file():
        timed([str(BIN / "kirinuki"), "build", str(corpus), "--out", str(out), "-q"], env)
    before = tree_digest(out)
    rows = []
    for delay in delays:
        marker = f"KIRINUKI_LOOP_BENCH={time.time_ns()}"
        p = subprocess.Popen([str(BIN / "kirinuki"), "build", str(corpus), "--out", str(out), "--no-cache"],
                             env=dict(env, KIRINUKI_LOOP_BENCH=marker.split("=", 1)[1]), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(delay)
        t = time.perf_counter()
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = p.communicate(timeout=120)
        stop_s = time.perf_counter() - t
        time.sleep(0.5)
        rows.append({"delay": delay, "stop_s": stop_s, "code": p.returncode,
                     "said": "interrupted; the previous build is unchanged" in err,
                     "unchanged": tree_digest(out) == before, "left": len(leftovers(marker.encode())),
                     "stderr_lines": len(err.strip().splitlines())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/kirinuki-loop")
    ap.add_argument("--interrupt-posts", type=int, default=1500)
    ap.add_argument("--interrupt-at", default="4,8,12", help="seconds after start to send SIGINT (comma-separated)")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"), KIRINUKI_STATE_DIR=str(workdir / "kirinuki-state"))
    env.pop("PREFECT_API_URL", None)
    subprocess.run([str(BIN / "kirinuki"), "server", "stop"], env=env, capture_output=True)

    make_corpus(workdir / "corpus-floor")
    floor = min(timed([sys.executable, "-c", FLOOR, str(workdir / "corpus-floor"), str(workdir / "floor.parquet")], env)[0]
                for _ in range(3))
    rows = sequence(workdir, env, "none")
    timed([str(BIN / "kirinuki"), "server", "start", "--port", "0"], env)
    try:
        rows += sequence(workdir, env, "running")
    finally:
        subprocess.run([str(BIN / "kirinuki"), "server", "stop"], env=env, capture_output=True)

    targets = {"no change": 10 * floor + 1, "edit one post": 30 * floor + 2}
    print(f"floor (read, decode, split, write one Parquet table; its own process): {floor:.2f} s\n")
    print(f"{'server':<8} {'run':<14} {'wall s':>7} {'flow s':>7} {'x floor':>8}  target")
    for r in rows:
        target = targets.get(r["run"])
        verdict = (f"<= {target:.1f} s {'ok' if r['wall'] <= target else 'MISSED'}") if target else ""
        print(f"{r['server']:<8} {r['run']:<14} {r['wall']:>7.2f} {r['flow']:>7.2f} {r['wall'] / floor:>8.1f}  {verdict}")
    if args.interrupt_posts:
        stops = interrupts(workdir, env, args.interrupt_posts, [float(x) for x in args.interrupt_at.split(",")])
        print(f"\nCtrl-C on {args.interrupt_posts:,} posts (rebuild with --no-cache, SIGINT to the process group):")
        print(f"{'sent at':>8} {'stopped in':>10} {'exit':>5} {'said so':>8} {'previous kept':>14} {'left':>5}  target")
        for r in stops:
            ok = r["stop_s"] <= 2 and r["code"] == 130 and r["said"] and r["unchanged"] and not r["left"]
            print(f"{r['delay']:>7.1f}s {r['stop_s']:>9.2f}s {r['code']:>5} {str(r['said']):>8} {str(r['unchanged']):>14} "
                  f"{r['left']:>5}  <= 2 s, 130, previous kept, none left: {'ok' if ok else 'MISSED'}")
    json.dump({"floor": floor, "rows": rows}, open(workdir / "results.json", "w"), indent=1)


if __name__ == "__main__":
    main()
