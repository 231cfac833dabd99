"""Hostile posts: parse time per character on long runs of the grammar's characters, and a build's
peak memory per MB of one large post, against floors measured in the same run.

    .venv/bin/python benchmarks/hostile_posts.py                 # both tables
    .venv/bin/python benchmarks/hostile_posts.py --only patterns

patterns: each post of issue 25 at 4 doubling sizes, parsed and cleaned in this process (the best
of 3); "ns/char" must stay flat as the size doubles (linear time). The floor is one pass of
str.translate over the same text, the least a per-character pass costs in Python.

memory: `kirinuki build` of a folder holding one post (seed-like paragraphs, 1 to 8 MB; and the
8 MB file of 4 million one-character lines, which the per-post budget rejects), peak RSS of the
process tree. The first row is the same build of a folder with one small post: what the interpreter,
Prefect and the libraries cost before any text. "one post's peak" is what reading, parsing, cleaning
and converting that one post to Arrow adds to a fresh interpreter's RSS (VmHWM), and "per input MB"
what it adds beyond the small post's, over the file's size: it must stay flat as the post doubles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import BIN, ROOT, measured  # noqa: E402

PATTERNS = {  # name -> post of n characters of the run
    "【 + spaces in an excerpt": lambda n: "****見出し****\n本文。\n【" + " " * n + "x\n******\n",
    "attribution, U+3000 runs": lambda n: "****見出し****\n本文。【2023年1月1日" + "\u3000" * n + "x】\n***\n",
    "citation, no closing )": lambda n: "本文(1月1日" + " " * n + "x\n",
    "headline, spaces": lambda n: "****a" + " " * n + "b****x\n",
    "headline, star run": lambda n: "***a" + "*" * n + "b\n",
    "caption, spaces": lambda n: "(【x】" + " " * n + "y\n",
    "day mentions": lambda n: "1日" * (n // 2) + "\n",
    "dates and 翌日": lambda n: "2023年1月1日翌日" * (n // 11) + "\n",
    "(date“ repeated": lambda n: "(1月1日“" * (n // 6) + "\n",
    "[ run": lambda n: "[" * n + "\n",
}
SIZES = (12_500, 25_000, 50_000, 100_000)


def best_of(fn, n: int = 3) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def patterns() -> None:
    from kirinuki.clean.normalize import clean_document
    from kirinuki.ingest.sources import Source
    from kirinuki.parse.records import source_rows

    def build_one(text: str) -> None:
        clean_document(source_rows(Source("p.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf")))

    table = str.maketrans({"*": "+", "【": "[", " ": "_"})
    print(f"| post | {' | '.join(f'{n // 1000}k chars ns/char' for n in SIZES)} | growth ×8 | floor ns/char |")
    print("|---|" + "---:|" * (len(SIZES) + 2))
    for name, make in PATTERNS.items():
        per = []
        for n in SIZES:
            text = make(n)
            per.append(best_of(partial(build_one, text)) / len(text) * 1e9)
        text = make(SIZES[-1])
        floor = best_of(partial(text.translate, table)) / len(text) * 1e9
        cells = " | ".join(f"{p:,.0f}" for p in per)
        print(f"| {name} | {cells} | {per[-1] / per[0] * 8:.1f} | {floor:.1f} |", flush=True)


ONE_POST = r"""
import sys
from kirinuki.clean.normalize import clean_document
from kirinuki.ingest.sources import Source, SourceRef, read_source
from kirinuki.parse.records import source_rows
from kirinuki.store.files import to_table
def kb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
before = kb("VmRSS:")
src = read_source(SourceRef(sys.argv[1], "post.txt", sys.argv[2]))
if isinstance(src, Source):
    rows = source_rows(src)
    clean_document(rows)
    tables = {name: to_table(name, r, final=False) for name, r in rows.items()}
print((kb("VmHWM:") - before) / 1024)
"""


def memory() -> None:
    seed_like = ("ロイター通信によると、北部の港で新しい倉庫の建設が始まった。" * 3 + "\n") * 40
    env = dict(os.environ, PREFECT_HOME=tempfile.mkdtemp(prefix="kb-prefect-"))
    with tempfile.TemporaryDirectory(prefix="kb-hostile-") as work:
        rows = []
        cases = [("one small post (floor)", seed_like[:2000], None)]
        cases += [(f"{mb} MB of paragraphs", seed_like * max(1, int(mb * 2**20 / len(seed_like.encode()))), mb)
                  for mb in (1, 2, 4, 8)]
        cases.append(("8 MB, 4M one-character lines", "a\n" * 4_000_000, 8))
        for name, text, _mb in cases:
            folder = Path(work) / f"in-{len(rows)}"
            folder.mkdir()
            (folder / "post.txt").write_text(text, encoding="utf-8")
            size = (folder / "post.txt").stat().st_size
            one = subprocess.run([sys.executable, "-c", ONE_POST, str(folder / "post.txt"), str(folder)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            post_mb = float(one.stdout.split()[-1])
            wall, peak, out = measured([str(BIN / "kirinuki"), "build", str(folder), "--out",
                                        str(Path(work) / f"out-{len(rows)}"), "--json"], env)
            summary = json.loads(out)
            rows.append((name, size, wall, peak, post_mb, summary["rows"]["paragraphs"], summary["rejects"]))
        print("| input | MB | build wall s | build peak MB (tree) | one post's peak MB | per input MB | result |")
        print("|---|---:|---:|---:|---:|---:|---|")
        base = rows[0][4]  # first use: reference tables read, patterns compiled
        for name, size, wall, peak, post_mb, paragraphs, rejects in rows:
            result = f"built, {paragraphs:,} paragraphs" if paragraphs else f"rejected: {rejects}"
            print(f"| {name} | {size / 2**20:.2f} | {wall:.1f} | {peak / 2**20:,.0f} | {post_mb:.0f} "
                  f"| {(post_mb - base) / (size / 2**20):.1f} | {result} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("patterns", "memory"))
    a = ap.parse_args()
    os.chdir(ROOT)
    if a.only != "memory":
        patterns()
    if a.only != "patterns":
        memory()


if __name__ == "__main__":
    main()
