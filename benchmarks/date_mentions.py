"""Date-mention speed: today's vocabulary against the one before issue 18 widened it, and a floor.

    .venv/bin/python benchmarks/date_mentions.py                 # 1,000 synth posts + seed + sample
    .venv/bin/python benchmarks/date_mentions.py --posts 5000 --baseline 5ef5f20

Every post is parsed once (outside the timing); then every paragraph is read for dates, in runs
(one `Run` per excerpt or commentary run, as a build does), by three readers, the best of
ROUNDS interleaved rounds each with the collector paused:

- `at REV`: kirinuki/clean/date_mentions.py as it was at git revision REV (loaded from history);
- `today`: kirinuki.clean.date_mentions;
- floor: one `re.finditer` for the characters every date expression holds (年月日週曜 …) over
  the same texts: the least a regex reader of these texts must do.

The row "today / REV" is the cost of the wider vocabulary; mentions found are counted for each.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ROUNDS = 9
BASELINE_REV = "5ef5f20"  # the last commit before issue 18's vocabulary


def old_reader(rev: str, tmp: Path):
    """`Run` of date_mentions.py at `rev` as an importable module (None without git history)."""
    r = subprocess.run(["git", "show", f"{rev}:kirinuki/clean/date_mentions.py"], check=False, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    (tmp / "date_mentions_at_rev.py").write_text(r.stdout, encoding="utf-8")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("date_mentions_at_rev").Run


def runs_of(texts: list[str]) -> list[tuple[object, list[str]]]:
    """(anchor, paragraph texts) per excerpt or commentary run of every post."""
    from kirinuki.ingest.sources import Source
    from kirinuki.parse.records import source_rows

    out = []
    for i, text in enumerate(texts):
        rows = source_rows(Source(f"p{i}.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf"))
        post = rows["documents"][0]["published_date"]
        article = {e["excerpt_id"]: e["published_date"] for e in rows["excerpts"]}
        key, run = object(), None
        for p in rows["paragraphs"]:
            if p["excerpt_id"] != key:
                key = p["excerpt_id"]
                run = (article.get(key) or post, [])
                out.append(run)
            run[1].append(p["text"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=1000, help="synth posts (the seed and input/sample are added)")
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with ('' to skip)")
    args = ap.parse_args()

    from kirinuki.clean.date_mentions import Run
    from kirinuki.ingest.sources import decode
    from kirinuki.synth import write_corpus

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_corpus(tmp / "corpus", args.posts, seed=1, excerpts_per_post=6)
        synth = [decode(f.read_bytes())[0] for f in sorted((tmp / "corpus").glob("post_*.txt"))]
        real = sorted((ROOT / "input" / "sample").glob("*.txt"))  # the sample holds CP932, EUC-JP, ISO-2022-JP
        seed = ROOT.parent / "shared" / "seed" / "000_b7666d67213713ef.txt"
        real = [decode(f.read_bytes())[0] for f in real + ([seed] if seed.exists() else [])]
        old = old_reader(args.baseline, tmp) if args.baseline else None
        if old is None and args.baseline:
            print(f"(no git revision {args.baseline} here: compared with the floor only)", file=sys.stderr)
        size = sum(map(len, synth))
        dense = real * max(1, round(size / sum(map(len, real))))
        for label, texts in ((f"{len(synth):,} synth posts (few dates)", synth),
                             (f"the seed and sample posts x{len(dense) // len(real)} (dense in dates)", dense)):
            compare(label, texts, Run, old, args.baseline)


def compare(label: str, texts: list[str], today, old, rev: str) -> None:
    runs = runs_of(texts)
    chars = sum(len(t) for _, ps in runs for t in ps)
    floor_re = re.compile("[年月日週曜春夏秋冬期朝夜晩夕]")

    def read_with(run_class):
        def read() -> int:
            n = 0
            for anchor, paragraphs in runs:
                r = run_class(anchor)
                for text in paragraphs:
                    n += len(r.mentions(text))
            return n
        return read

    def floor() -> int:
        return sum(1 for _, ps in runs for t in ps for _ in floor_re.finditer(t))

    readers = [("floor: one regex pass", floor), ("today", read_with(today))]
    if old is not None:
        readers.insert(1, (f"at {rev}", read_with(old)))
    found = {name: fn() for name, fn in readers}  # also warms every cache outside the timing
    best = {name: float("inf") for name, _ in readers}
    gc.disable()
    try:
        for k in range(ROUNDS):
            for name, fn in readers[k % len(readers):] + readers[:k % len(readers)]:
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
            gc.collect()
    finally:
        gc.enable()
    print(f"\n{label}: {len(runs):,} runs, {chars / 1e6:.2f} M characters of paragraphs; best of {ROUNDS}")
    print(f"{'reader':<24} {'seconds':>8} {'Mchar/s':>8} {'found':>8} {'x floor':>8}")
    for name, _ in readers:
        s = best[name]
        print(f"{name:<24} {s:8.3f} {chars / 1e6 / s:8.2f} {found[name]:8,} {s / best[readers[0][0]]:8.2f}")
    if old is not None:
        print(f"today / at {rev}: {best['today'] / best[f'at {rev}']:.2f}")


if __name__ == "__main__":
    main()
