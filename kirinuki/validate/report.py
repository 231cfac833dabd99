"""Validation reports: results.json and a self-contained report.html in the build.

In: a build folder and its `Report`. Out: validation/results.json and validation/report.html
(inline CSS, no scripts, no remote references)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kirinuki.store.files import DATA_DIR, write_json
from kirinuki.validate.checks import Report
from kirinuki.validate.suites import Check

# ---------------------------------------------------------------- reports


def write_reports(root: Path, report: Report) -> None:
    out = root / "validation"
    out.mkdir(exist_ok=True)
    write_json(out / "results.json", {
        "success": report.success,
        "rows": report.rows,
        "quarantined": report.quarantined,
        "checks": [c.__dict__ for c in report.checks],
        "great_expectations": report.gx_results,
    })
    (out / "report.html").write_text(render_html(root, report), encoding="utf-8")


def render_html(root: Path, report: Report) -> str:
    """One self-contained page: inline CSS, no scripts, no remote references."""
    from html import escape

    by_table: dict[str, list[Check]] = {}
    for c in report.checks:
        by_table.setdefault(c.table, []).append(c)
    q = pd.DataFrame()
    qf = root / DATA_DIR / "quarantine.parquet"
    if qf.exists():
        q = pq.read_table(qf).to_pandas()
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             "<title>kirinuki validation report</title><style>",
             "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}",
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}",
             ".ok{color:#176b2c;font-weight:600}.bad{color:#a61b1b;font-weight:600}.warn{color:#8a5a00;font-weight:600}",
             "code{font-size:12px}</style></head><body>",
             f"<h1>kirinuki validation: <span class='{'ok' if report.success else 'bad'}'>"
             f"{'all checks pass' if report.success else 'failures'}</span></h1>",
             f"<p>{sum(report.quarantined.values()):,} rows quarantined.</p>",
             "<h2>Tables</h2><table><tr><th>table</th><th>rows</th><th>checks</th><th>passed</th><th>result</th></tr>"]
    for name, checks in by_table.items():
        ok = sum(c.success for c in checks)
        cls = "ok" if ok == len(checks) else "bad"
        parts.append(f"<tr><td>{escape(name)}</td><td>{report.rows.get(name, 0):,}</td><td>{len(checks)}</td>"
                     f"<td>{ok}</td><td class='{cls}'>{'pass' if cls == 'ok' else 'fail'}</td></tr>")
    parts.append("</table><h2>Checks</h2><table><tr><th>table</th><th>check</th><th>severity</th><th>kind</th>"
                 "<th>failing rows</th><th>what it checks</th></tr>")
    for c in report.checks:
        cls = "ok" if c.success else ("bad" if c.severity == "critical" else "warn")
        parts.append(f"<tr><td>{escape(c.table)}</td><td><code>{escape(c.name)}</code></td><td>{c.severity}</td>"
                     f"<td>{c.kind}</td><td class='{cls}'>{c.unexpected:,}</td><td>{escape(c.notes)}</td></tr>")
    parts.append("</table><h2>Quarantined rows</h2>")
    if q.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append("<table><tr><th>table</th><th>row key</th><th>expectation</th><th>reason</th><th>row</th></tr>")
        for r in q.head(500).itertuples():
            parts.append(f"<tr><td>{escape(r.table_name)}</td><td><code>{escape(r.row_key)}</code></td>"
                         f"<td><code>{escape(r.expectation)}</code></td><td>{escape(r.reason)}</td>"
                         f"<td><code>{escape(r.row_json[:300])}</code></td></tr>")
        parts.append("</table>")
        if len(q) > 500:
            parts.append(f"<p>… and {len(q) - 500:,} more (query the quarantine table).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
