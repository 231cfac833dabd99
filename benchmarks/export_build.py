"""Blog exports: a build of N posts stored as one Movable Type export against the same N posts as
loose .txt files, side by side in one run (issue 16: the export may cost at most 1.3x).

    .venv/bin/python benchmarks/export_build.py                  # 10,000 posts
    .venv/bin/python benchmarks/export_build.py --posts 2000 --rounds 1

The posts come from `kirinuki synth` (seed-sized, ~24 KB each). The export holds each post as a
goo-style entry: a BASENAME, TITLE and DATE (the evening of the newest article the post quotes),
the post's lines as HTML-escaped text ended by `<br />`, CONVERT BREAKS 0, written in UTF-8. Each build is `kirinuki build --json --no-cache` in
its own process with a persistent PREFECT_HOME; the two kinds alternate for --rounds rounds and
the best wall time of each is compared, so both see the same machine state. Both must give the
same numbers of documents, excerpts, paragraphs, citations and date mentions (checked), and the ratio must be <= --limit (the
script exits 1 otherwise).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import BIN, ROOT, measured  # noqa: E402

_QUOTED_DAY = re.compile(r"【(\d{4})年(\d{1,2})月(\d{1,2})日")


def write_corpora(work: Path, posts: int) -> tuple[Path, Path]:
    loose, export = work / f"loose-{posts}", work / f"export-{posts}"
    if not (loose / "ground_truth.csv").exists():  # written last: the corpus is complete
        subprocess.run([str(BIN / "kirinuki"), "synth", "--out", str(loose), "--posts", str(posts)], check=True,
                       capture_output=True, cwd=ROOT)
    export.mkdir(exist_ok=True)
    target = export / "blog-export.txt"
    if not target.exists():
        with target.open("w", encoding="utf-8") as f:
            for i, p in enumerate(sorted(loose.glob("post_*.txt"))):
                text = p.read_text(encoding="utf-8")
                body = "".join(f"{html.escape(line, quote=False)}<br />\n" for line in text.split("\n") if line)
                # posted the evening of the newest article it quotes, as a clipping blog posts
                y, m, d = max((int(y), int(m), int(d)) for y, m, d in _QUOTED_DAY.findall(text))
                f.write(f"AUTHOR: bench\nTITLE: post {i + 1}\nBASENAME: {p.stem}\nSTATUS: Publish\n"
                        f"CONVERT BREAKS: 0\nDATE: {m:02d}/{d:02d}/{y} 21:{i // 60 % 60:02d}:{i % 60:02d}\n"
                        f"-----\nBODY:\n{body}-----\n--------\n")
    return loose, export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=float, default=1.3)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "kirinuki-export-bench"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    loose, export = write_corpora(work, args.posts)
    env = dict(os.environ, PREFECT_HOME=str(work / "prefect-home"))
    best: dict[str, tuple[float, int, dict]] = {}
    for _ in range(args.rounds):
        for kind, src in (("loose .txt", loose), ("MTIF export", export)):
            out = work / f"out-{kind.split()[0]}"
            wall, peak, stdout = measured([str(BIN / "kirinuki"), "build", str(src), "--out", str(out), "--json",
                                           "--no-cache", "--max-file-mb", "4096"], env)  # the export is one big file
            summary = json.loads(stdout.strip().splitlines()[-1])
            if kind not in best or wall < best[kind][0]:
                best[kind] = (wall, peak, summary)
    rows = {k: v[2]["rows"] for k, v in best.items()}
    (a, b) = rows.values()
    same = all(a[t] == b[t] for t in ("documents", "excerpts", "paragraphs", "citations", "date_mentions"))
    print(f"{'input':<12} {'posts':>7} {'MB':>6} {'wall s':>7} {'parse s':>8} {'peak MB':>8} {'excerpts':>9}")
    for kind, (wall, peak, s) in best.items():
        mb = s["inputs"]["bytes"] / 2**20
        print(f"{kind:<12} {s['rows']['documents']:>7,} {mb:>6,.0f} {wall:>7.1f} {s['durations_s']['parse']:>8.1f} "
              f"{peak / 2**20:>8,.0f} {s['rows']['excerpts']:>9,}")
    ratio = best["MTIF export"][0] / best["loose .txt"][0]
    print(f"export / loose: {ratio:.2f}x (limit {args.limit}x); same rows: {same}")
    if ratio > args.limit or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
