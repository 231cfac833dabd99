"""The build's summary: build.json, and the same as Markdown for Prefect's UI.

In: what each stage of a build returned (batch results, rejects, row counts, dedup statistics, the
validation report, timings, parameters). Out: the summary dict written to build.json (the only file
of a build with timings in it) and `summary_markdown`, a short page of it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kirinuki import PIPELINE_VERSION, __version__
from kirinuki.schema import schema_version
from kirinuki.store.layout import data_files
from kirinuki.store.files import DATA_DIR, sha256_file

MAX_LISTED_REJECTS = 1000  # in build.json; the rejects table has them all


def summarize(tmp: Path, *, corpus_sha256: str, inputs: list[str], refs: list, rejected: list, results: list[dict],
              rejects: list[dict],
              counts: dict[str, int], hashed: int, digest: str, digests: dict[str, str], dedup_stats: dict,
              report: dict, timings: dict[str, float], parameters: dict) -> dict:
    """build.json's content for the build assembled in `tmp`."""
    totals: dict[str, Counter] = {k: Counter() for k in ("flags", "unknown_outlets", "unresolved_dates", "seconds")}
    for res in results:
        for k, c in totals.items():
            c.update(res[k])
    # summed over batches; with parallel batches these add up to more than the "parse" wall time
    timings.update({f"batches_{k}_sum": v for k, v in totals["seconds"].items()})
    summary = {
        "kirinuki_version": __version__,
        "pipeline_version": PIPELINE_VERSION,
        "schema_version": schema_version(),
        "corpus_sha256": corpus_sha256,
        # what was validated: a release refuses data files that no longer match these
        "files": {rel: digests.get(rel) or sha256_file(p)
                  for p in data_files(tmp / DATA_DIR) for rel in [f"{DATA_DIR}/{p.relative_to(tmp / DATA_DIR).as_posix()}"]},
        "build_digest": digest,
        "inputs": {"roots": len(inputs), "files": len(refs) + len(rejected),
                   "read": sum(r["read"] for r in results), "parsed": sum(r.get("parsed", 0) for r in results),
                   "bytes": sum(r["bytes"] for r in results),
                   "from_cache": sum(r["cache_hits"] for r in results), "hashed": hashed},
        "rejects": dict(sorted(Counter(r["code"] for r in rejects).items())),
        "rows": counts,
        "flags": dict(sorted(totals["flags"].items())),
        "unknown_outlets": {"distinct": len(totals["unknown_outlets"]),
                            "rows": sum(totals["unknown_outlets"].values())},
        "unresolved_dates": dict(sorted(totals["unresolved_dates"].items())),
        "dedup": dedup_stats,
        "validation": report,
        "rejected_files": [{k: r[k] for k in ("source_path", "code", "reason")}
                           for r in sorted(rejects, key=lambda r: r["source_path"])[:MAX_LISTED_REJECTS]],
        "parameters": parameters,
        "durations_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return summary


def summary_markdown(s: dict) -> str:
    """build.json as a short Markdown page for the Prefect UI."""
    i = s["inputs"]
    lines = ["# kirinuki build", "",
             f"{i['read']:,} posts read ({i['bytes']:,} bytes) of {i['files']:,} files; "
             f"rejected: {s['rejects'] or 'none'}.", "", "| table | rows |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in s["rows"].items()]
    v = s["validation"]
    lines += ["", f"Validation: {v['checks']} checks, {'all pass' if v['success'] else 'failures'}; "
                  f"quarantined: {v['quarantined'] or 'none'}.", "",
              "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {t:.3f} |" for k, t in s["durations_s"].items()]
    return "\n".join(lines) + "\n"
