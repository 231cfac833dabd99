"""The overview page of a build, and the same charts as images for a release's dataset card.

In: a build folder being assembled (its data/ and the validation summary) and the build's identity.
Out: `<build>/overview.html` — inline SVG charts, no script, no style or font from anywhere else
(the same Content-Security-Policy as the validation report); and, for a release, `images/<chart>.png`
drawn from the build's tables (`write_images`). Same build, same bytes.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from kirinuki.overview.charts import Chart, charts
from kirinuki.overview.figures import Figures, read_figures, table_totals

PAGE = "overview.html"
IMAGES = "images"  # in a release: the charts as PNG files
STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:60em;color:#222}
figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em}svg{max-width:100%;height:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.fail{color:#b00}.ok{color:#070}"""


def draw(root: Path) -> tuple[Figures, list[Chart]]:
    """The figures of the build folder `root`'s tables and their charts (SVG), for write_overview."""
    f = read_figures(root / "data")
    return f, charts(f, "svg")


def write_overview(root: Path, validation: dict, identity: dict,
                   drawn: tuple[Figures, list[Chart]] | None = None) -> dict:
    """Write overview.html into the build folder `root` (with the charts `drawn` of its tables as
    they are now, else drawn here); returns what was drawn. The table counts are read now: a
    build's `quarantine` table is written after its charts may have been drawn."""
    f, charts_drawn = drawn or draw(root)
    f.totals = table_totals(root / "data")
    (root / PAGE).write_text(page(f, charts_drawn, validation, identity), encoding="utf-8")
    return {"charts": [c.id for c in charts_drawn]}


def write_images(build: Path, out: Path) -> list[dict]:
    """The build's charts as `out`/images/<chart>.png; returns each one's path, title and caption."""
    (out / IMAGES).mkdir()
    listed = []
    for c in charts(read_figures(build / "data"), "png"):
        (out / IMAGES / f"{c.id}.png").write_bytes(c.png)
        listed.append({"path": f"{IMAGES}/{c.id}.png", "title": c.title, "caption": c.caption})
    return listed


def page(f: Figures, drawn: list[Chart], validation: dict, identity: dict) -> str:
    span = f"{f.first_post} – {f.last_post}" if f.first_post else "no dated post"
    quarantined = validation.get("quarantined") or {}
    status = ("<span class='ok'>all checks pass</span>" if validation.get("success")
              else "<span class='fail'>checks failed</span>")
    rows = "".join(f"<tr><td>{escape(t)}</td><td>{n:,}</td><td>{quarantined.get(t, 0):,}</td></tr>"
                   for t, n in sorted(f.totals.items()))
    figures = "".join(f"<figure id='chart-{c.id}'>{c.svg}<figcaption>{escape(c.caption)}</figcaption></figure>"
                      for c in drawn)
    return ("<!doctype html><html lang='ja'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>kirinuki overview</title><style>{STYLE}</style></head><body>"
            "<h1>kirinuki overview</h1>"
            f"<p id='identity'>kirinuki {escape(identity.get('kirinuki_version', ''))} · "
            f"corpus sha256 <code>{escape(identity.get('corpus_sha256', ''))}</code> · "
            f"posts dated {escape(span)}</p>"
            f"<h2>Validation</h2><p id='validation'>{validation.get('checks', 0):,} checks: {status}; "
            f"{sum(quarantined.values()):,} rows quarantined.</p>"
            f"<table id='tables'><tr><th>table</th><th>rows</th><th>quarantined</th></tr>{rows}</table>"
            f"<h2>Charts</h2>{figures}</body></html>\n")
