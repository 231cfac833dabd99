"""Dedup benchmark: kirinuki vs datasketch vs rensa on one generated corpus with ground truth.

    .venv/bin/python benchmarks/dedup.py                       # 50,000 excerpts, all three methods
    .venv/bin/python benchmarks/dedup.py --excerpts 10000
    .venv/bin/python benchmarks/dedup.py --scale 10000,50000,200000 --no-libs
    .venv/bin/python benchmarks/dedup.py --no-libs --common-5grams 0   # no 5-gram left out of signatures

Every method gets the same texts (normalised bodies without whitespace or elision markers), runs in
its own fresh process (so peak RSS is its own) and has every candidate pair verified exactly with
the same rule: Jaccard >= 0.8 (near-duplicate) or containment >= 0.8 (partial quote) on character
5-gram sets; clusters are connected components. datasketch (MinHash 128 perms + MinHashLSH
threshold 0.8) and rensa (RMinHash 128 perms + RMinHashLSH threshold 0.8, 16 bands) are used the
way their documentation shows. kirinuki's time is its `find_clusters`; building articles (relations,
reconstructed text) is timed on its own line.

Ground truth comes from the generator: two excerpts are duplicates when they quote the same
article. A same-article pair counts as a full duplicate when its true 5-gram Jaccard is >= 0.8, as a
partial quote when its containment is >= 0.8 (and Jaccard < 0.8). Precision is over all pairs that
a method puts in one cluster.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


import kirinuki.synth as synth# noqa: E402
from kirinuki.dedup import Excerpt, UnionFind, paragraph_key  # noqa: E402

K = 5


def dedup_text(body: str) -> str:
    return "".join(paragraph_key(line) for line in body.split("\n"))


def shingle_set(t: str) -> set[str]:
    return {t[i : i + K] for i in range(len(t) - K + 1)}


def _status_mb(field: str) -> float:
    """From /proc/self/status (VmHWM = peak RSS of this process image; unlike ru_maxrss it is not
    inherited from the parent across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


def verify_and_cluster(n: int, sets: list[set[str]], candidates) -> list[int]:
    uf = UnionFind(n)
    for a, b in candidates:
        if uf.find(a) == uf.find(b):
            continue
        A, B = sets[a], sets[b]
        if not A or not B:
            continue
        inter = len(A & B)
        if inter / (len(A) + len(B) - inter) >= 0.8 or inter / min(len(A), len(B)) >= 0.8:
            uf.union(a, b)
    return [uf.find(i) for i in range(n)]


def _config():
    """DedupConfig's defaults, or `--common-5grams N`'s (passed to the child in the environment)."""
    import os

    from kirinuki.dedup import DedupConfig

    common = os.environ.get("KIRINUKI_BENCH_COMMON_5GRAMS")
    return DedupConfig(common_5grams=int(common)) if common else DedupConfig()


def run_kirinuki(items: list[Excerpt]) -> tuple[list[int], dict]:
    from kirinuki.dedup import find_clusters

    cl = find_clusters(items, _config())
    return cl.root, {"candidates": cl.stats["candidates"]}


def run_kirinuki_articles(items: list[Excerpt]) -> list[int]:
    from kirinuki.dedup import deduplicate

    res = deduplicate(items, _config())
    ids = {c: i for i, c in enumerate(dict.fromkeys(res.cluster_id))}
    return [ids[c] for c in res.cluster_id]


def run_datasketch(items: list[Excerpt]) -> list[int]:
    from datasketch import MinHash, MinHashLSH

    sets = [shingle_set(dedup_text(e.body_norm)) for e in items]
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    sigs = []
    for i, s in enumerate(sets):
        m = MinHash(num_perm=128)
        m.update_batch([x.encode("utf-8") for x in s])
        lsh.insert(i, m)
        sigs.append(m)
    cands = sorted({(min(i, j), max(i, j)) for i, m in enumerate(sigs) for j in lsh.query(m) if j != i})
    return verify_and_cluster(len(items), sets, cands)


def run_rensa(items: list[Excerpt]) -> list[int]:
    from rensa import RMinHash, RMinHashLSH

    sets = [shingle_set(dedup_text(e.body_norm)) for e in items]
    lsh = RMinHashLSH(threshold=0.8, num_perm=128, num_bands=16)
    sigs = []
    for i, s in enumerate(sets):
        m = RMinHash(num_perm=128, seed=42)
        m.update(list(s))
        lsh.insert(i, m)
        sigs.append(m)
    cands = sorted({(min(i, j), max(i, j)) for i, m in enumerate(sigs) for j in lsh.query(m) if j != i})
    return verify_and_cluster(len(items), sets, cands)


METHODS = {"kirinuki": run_kirinuki, "kirinuki (+articles)": run_kirinuki_articles,
           "datasketch": run_datasketch, "rensa": run_rensa}


def _child(method: str, path: str, q) -> None:
    with open(path, "rb") as f:
        items = pickle.load(f)
    base = rss_mb()
    t = time.perf_counter()
    roots = METHODS[method](items)
    took = time.perf_counter() - t
    roots, extra = roots if isinstance(roots, tuple) else (roots, {})
    q.put((roots, took, base, peak_mb(), extra))


def measure(method: str, path: str) -> tuple[list[int], float, float, float, dict]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(method, path, q))
    p.start()
    out = q.get()
    p.join()
    return out


def corpus(n: int, seed: int) -> tuple[list[Excerpt], list[str], list[str]]:
    ex = synth.excerpts(n, seed=seed)
    items = [Excerpt(f"x{i:07d}", f"d{i // 7:06d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(ex)]
    return items, [e.article_id for e in ex], [e.edit for e in ex]


def truth_pairs(items, articles, edits):
    """Same-article pairs classified full / partial by their true overlap, with the edit type of
    the re-quote when the other side is the article's first quote."""
    by_article = defaultdict(list)
    for i, a in enumerate(articles):
        by_article[a].append(i)
    sets = {}
    pairs = []
    for group in by_article.values():
        for x in range(len(group)):
            for y in range(x + 1, len(group)):
                a, b = group[x], group[y]
                for i in (a, b):
                    if i not in sets:
                        sets[i] = shingle_set(dedup_text(items[i].body_norm))
                A, B = sets[a], sets[b]
                inter = len(A & B)
                j = inter / max(len(A) + len(B) - inter, 1)
                c = inter / max(min(len(A), len(B)), 1)
                kind = "full" if j >= 0.8 else "partial" if c >= 0.8 else "other"
                edit = edits[b] if edits[a] == "original" else (edits[a] if edits[b] == "original" else "requote-requote")
                pairs.append((a, b, kind, edit))
    return pairs


def evaluate(roots: list[int], articles: list[str], pairs) -> dict:
    clusters = defaultdict(list)
    for i, r in enumerate(roots):
        clusters[r].append(i)
    predicted = tp = 0
    for g in clusters.values():
        if len(g) > 1:
            predicted += len(g) * (len(g) - 1) // 2
            counts = defaultdict(int)
            for i in g:
                counts[articles[i]] += 1
            tp += sum(c * (c - 1) // 2 for c in counts.values())
    found = defaultdict(lambda: [0, 0])
    for a, b, kind, edit in pairs:
        for key in (kind, f"{kind}:{edit}"):
            found[key][1] += 1
            found[key][0] += roots[a] == roots[b]
    rec = {k: v[0] / v[1] for k, v in found.items() if v[1]}
    rec["precision"] = tp / predicted if predicted else 1.0
    rec["_counts"] = {k: v[1] for k, v in found.items()}
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--excerpts", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-libs", action="store_true", help="only kirinuki")
    ap.add_argument("--scale", default="", help="comma-separated sizes for a kirinuki-only scaling table")
    ap.add_argument("--common-5grams", type=int, default=None,
                    help="kirinuki's DedupConfig.common_5grams (0: no 5-gram is left out of signatures)")
    args = ap.parse_args()
    if args.common_5grams is not None:
        import os

        os.environ["KIRINUKI_BENCH_COMMON_5GRAMS"] = str(args.common_5grams)  # (the children inherit it)

    with tempfile.TemporaryDirectory() as tmp:
        sizes = [int(s) for s in args.scale.split(",") if s] or [args.excerpts]
        if args.scale:
            print(f"\nkirinuki dedup scaling (seed {args.seed})\n")
            print("| excerpts | characters | seconds | M chars/s | µs per excerpt | peak RSS MB (above corpus) |")
            print("|---:|---:|---:|---:|---:|---:|")
            for n in sizes:
                items, articles, edits = corpus(n, args.seed)
                path = str(Path(tmp) / f"c{n}.pkl")
                with open(path, "wb") as f:
                    pickle.dump(items, f)
                chars = sum(len(e.body_norm) for e in items)
                roots, secs, base, peak, _ = measure("kirinuki", path)
                print(f"| {n:,} | {chars:,} | {secs:.2f} | {chars / secs / 1e6:.2f} | {secs / n * 1e6:.0f} | "
                      f"{peak:,.0f} ({peak - base:,.0f}) |", flush=True)
            return

        n = args.excerpts
        t = time.perf_counter()
        items, articles, edits = corpus(n, args.seed)
        chars = sum(len(e.body_norm) for e in items)
        path = str(Path(tmp) / "corpus.pkl")
        with open(path, "wb") as f:
            pickle.dump(items, f)
        pairs = truth_pairs(items, articles, edits)
        print(f"corpus: {n:,} excerpts, {chars:,} characters, {len(set(articles)):,} articles, "
              f"seed {args.seed} (generated and labelled in {time.perf_counter() - t:.0f} s)", flush=True)
        methods = ["kirinuki", "kirinuki (+articles)"] + ([] if args.no_libs else ["datasketch", "rensa"])
        results = {}
        for m in methods:
            roots, secs, base, peak, extra = measure(m, path)
            results[m] = (secs, base, peak, evaluate(roots, articles, pairs))
            more = "".join(f", {k} {v:,}" for k, v in extra.items())
            print(f"  done: {m} in {secs:.1f} s{more}", file=sys.stderr, flush=True)

    counts = results[methods[0]][3]["_counts"]
    print(f"\ntrue pairs: {counts.get('full', 0):,} full duplicates (J >= 0.8), "
          f"{counts.get('partial', 0):,} partial quotes (containment >= 0.8, J < 0.8)\n")
    print("| method | seconds | M chars/s | vs datasketch | peak RSS MB (above corpus) | precision | recall full | recall partial |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ds = results.get("datasketch", (None,))[0]
    for m in methods:
        secs, base, peak, ev = results[m]
        speed = f"{ds / secs:.1f}x" if ds else "-"
        print(f"| {m} | {secs:.2f} | {chars / secs / 1e6:.2f} | {speed} | {peak:,.0f} ({peak - base:,.0f}) | "
              f"{ev['precision']:.4f} | {ev.get('full', float('nan')):.4f} | {ev.get('partial', float('nan')):.4f} |")
    edits_seen = sorted({k.split(":", 1)[1] for k in counts if ":" in k})
    print("\nrecall by edit type (pairs of a first quote and a re-quote; requote-requote = two re-quotes), full / partial:\n")
    print("| edit | pairs full / partial | " + " | ".join(methods) + " |")
    print("|---|---:|" + "---:|" * len(methods))
    for e in edits_seen:
        nf, np_ = counts.get(f"full:{e}", 0), counts.get(f"partial:{e}", 0)
        cells = []
        for m in methods:
            ev = results[m][3]
            f = f"{ev[f'full:{e}']:.3f}" if nf else "-"
            p = f"{ev[f'partial:{e}']:.3f}" if np_ else "-"
            cells.append(f"{f} / {p}")
        print(f"| {e} | {nf:,} / {np_:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
