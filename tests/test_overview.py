"""The overview page: every build writes overview.html (inline SVG charts, nothing fetched); a
headless browser shows every chart without a network request; the same build gives the same bytes;
a release ships the page and the charts as PNG images its dataset card embeds."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLE, SEED, needs_chromium, page_requests

CHARTS = ["posts-quotes", "outlets", "mentions", "requoted", "cluster-sizes", "date-coverage"]


@pytest.fixture(scope="module")
def generated_build(tmp_path_factory) -> Path:
    """A generated corpus (kirinuki synth), with the sample and the seed for places and people."""
    from kirinuki.flows.build import build
    from kirinuki.synth import write_corpus

    d = tmp_path_factory.mktemp("overview")
    corpus = d / "corpus"
    write_corpus(corpus / "synth", 60, seed=11)
    shutil.copytree(SAMPLE, corpus / "sample")
    shutil.copy(SEED, corpus / SEED.name)
    out = d / "build"
    build([str(corpus)], str(out))
    return out


def test_every_build_writes_a_self_contained_overview_with_every_chart(generated_build):
    html = (generated_build / "overview.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in html
    # nothing outside the page: references are to its own ids (#…), and the only URLs are SVG's namespaces
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)|https?://(?!www\.w3\.org/)|<script|@import|url\((?!#)""", html)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # each chart's glyphs and clip paths are its own
    for chart in CHARTS:
        figure = re.search(rf"<figure id='chart-{chart}'>(.*?)</figure>", html, re.S)
        assert figure and "<svg" in figure.group(1) and "<path" in figure.group(1), chart
    assert "データなし" not in html  # every chart has data on this corpus
    assert re.search(r"corpus sha256 <code>[0-9a-f]{64}</code>", html)


def test_the_same_build_gives_the_same_overview_bytes(generated_build, tmp_path):
    """Drawn again in another process (another hash seed), the page is byte-identical."""
    import json
    import os
    import sys

    copy = tmp_path / "again"
    shutil.copytree(generated_build, copy)
    (copy / "overview.html").unlink()
    summary = json.loads((generated_build / "build.json").read_text(encoding="utf-8"))
    code = ("import json, sys; from pathlib import Path; from kirinuki.overview import write_overview; "
            "write_overview(Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]))")
    identity = {"kirinuki_version": summary["kirinuki_version"], "corpus_sha256": summary["corpus_sha256"]}
    r = subprocess.run([sys.executable, "-c", code, str(copy), json.dumps(summary["validation"]), json.dumps(identity)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "7"})
    assert r.returncode == 0, r.stderr

    def digest(root: Path) -> str:
        return hashlib.sha256((root / "overview.html").read_bytes()).hexdigest()

    assert digest(copy) == digest(generated_build)


@needs_chromium
def test_the_overview_opens_in_a_headless_browser_with_every_chart_and_no_request(generated_build, tmp_path):
    page = generated_build / "overview.html"
    dom, urls = page_requests(page, tmp_path)
    assert urls == []
    for chart in CHARTS:
        assert f'id="chart-{chart}"' in dom
    assert dom.count("<svg") == len(CHARTS)
    shot = tmp_path / "overview.png"
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'shot-profile'}", "--window-size=1100,2600",
                        f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000


def test_a_release_ships_the_overview_and_its_card_embeds_the_charts(generated_build, tmp_path):
    from kirinuki.release import make_release, verify

    rel = make_release(generated_build, "1.0.0", tmp_path / "releases", date="2026-01-15")
    card = (rel.path / "README.md").read_text(encoding="utf-8")
    embedded = re.findall(r"!\[[^\]]+\]\((images/[a-z-]+\.png)\)", card)
    assert embedded == [f"images/{c}.png" for c in CHARTS]
    sums = (rel.path / "SHA256SUMS").read_text(encoding="utf-8")
    for path in embedded + ["overview.html"]:
        assert (rel.path / path).is_file() and f"  {path}\n" in sums
    for path in embedded:
        png = (rel.path / path).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (rel.path / "overview.html").read_bytes() == (generated_build / "overview.html").read_bytes()
    assert verify(rel.path) == []
    # the same build released again (full text): the same images, byte for byte
    again = make_release(generated_build, "1.0.0", tmp_path / "again", profile="full", date="2026-01-15")
    for path in embedded:
        assert (again.path / path).read_bytes() == (rel.path / path).read_bytes()


def test_cli_overview_prints_the_page_and_opens_it_in_the_browser(generated_build, tmp_path):
    import os
    import sys

    opened = tmp_path / "opened.txt"
    env = dict(os.environ, BROWSER=f"sh -c 'echo %s > {opened}'")  # webbrowser runs $BROWSER with the URL
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "overview", "--out", str(generated_build), "--open"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    page = (generated_build / "overview.html").resolve()
    assert r.stdout.strip() == str(page)
    assert opened.read_text().strip() == page.as_uri()
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "overview", "--out", str(tmp_path / "nothing")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "has no overview.html" in r.stderr


def test_a_time_axis_holds_at_most_120_periods_whatever_the_span_and_keeps_every_count():
    """A post dated 9999 among posts of 2023 (a hostile sidecar) once gave every time chart a bar
    a year from 2023 to 9999: ~8,000 bars, ~40 s to draw. Spans of up to 120 months stay months and
    up to 120 years years, as before; longer ones are counted by decade, century, …"""
    from kirinuki.overview.charts import charts
    from kirinuki.overview.figures import MAX_MONTHS, Figures, by_period, periods

    for first, last, unit in [("2023-01", "2032-12", "month"), ("2023-01", "2033-01", "year"),
                              ("1950-01", "2069-12", "year"), ("1950-01", "2070-01", "decade"),
                              ("2023-05", "9999-12", "century"), ("0001-01", "9999-12", "century")]:
        axis, period = periods(first, last)
        assert len(axis) <= MAX_MONTHS and len(set(axis)) == len(axis) and axis == sorted(axis)
        if unit in ("month", "year"):
            assert len(axis[0]) == {"month": 7, "year": 4}[unit]
        else:  # YYYY–YYYY, ten or a hundred years
            assert int(axis[0][5:]) - int(axis[0][:4]) + 1 == {"decade": 10, "century": 100}[unit]
        counts = {first: 5, last: 2, f"{(int(first[:4]) + int(last[:4])) // 2:04d}-06": 3}
        summed = by_period(counts, period)
        assert set(summed) <= set(axis) and sum(summed.values()) == 10, (first, last, summed)
        assert period(first) == axis[0] and period(last) == axis[-1]
    axis, _ = periods("2023-05", "9999-12")
    assert axis[0] == "2000–2099" and axis[-1] == "9900–9999"

    f = Figures(months=axis, posts={"2000–2099": 4, "9900–9999": 1}, quotes={"2000–2099": 9},
                date_months={"0001-01": 1, "2024-03": 6}, first_post="2023-05-01", last_post="9999-12-31")
    drawn = {c.id: c.svg for c in charts(f)}
    # a bar is a path with its own clip: two series over 80 centuries, not two over ~8,000 years
    assert drawn["posts-quotes"].count('clip-path="url(#posts-quotes-') <= 2 * MAX_MONTHS + 10
    assert drawn["date-coverage"].count('clip-path="url(#date-coverage-') <= MAX_MONTHS + 10
