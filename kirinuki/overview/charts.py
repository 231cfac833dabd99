"""The overview's charts, drawn with matplotlib in IPAex Gothic (matplotlib-fontja's bundled font).

In: `Figures` (overview.figures) and the image format. Out: `Chart`s, each an SVG (text drawn as
paths, so Japanese labels render in any browser with no font installed and no request made: the
build's page) or a PNG (a release's dataset card). The same figures give the same bytes: no date in
the files, a fixed hash salt.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cache

from kirinuki.overview.figures import Figures, by_period, periods

WIDTH, HEIGHT, DPI = 8.0, 3.2, 100
PALETTE = ["#3b6ea5", "#d9822b", "#4f9a58", "#c2484d", "#8264a8", "#8c6a4f", "#d17fb6", "#7f7f7f", "#b5b83a"]


_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    svg: str  # "" when drawn as PNG
    png: bytes  # b"" when drawn as SVG


@cache
def _matplotlib():
    """matplotlib on its Agg backend with the Japanese font, set once per process."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import font_manager
    from matplotlib.figure import Figure
    import matplotlib_fontja

    path = matplotlib_fontja.get_font_ttf_path()
    font_manager.fontManager.addfont(path)
    matplotlib.rcParams.update({
        "font.family": font_manager.FontProperties(fname=path).get_name(),
        "svg.fonttype": "path", "svg.hashsalt": "kirinuki", "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlesize": 11, "font.size": 9, "legend.fontsize": 8, "legend.frameon": False,
    })
    return Figure


def _render(image: str, chart_id: str, title: str, caption: str, draw) -> Chart:
    Figure = _matplotlib()
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ax = fig.add_subplot()
    if not draw(ax):
        ax.text(0.5, 0.5, "データなし (no data)", ha="center", va="center", transform=ax.transAxes, color="#777")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, loc="left")
    fig.tight_layout()
    if image == "png":
        png = io.BytesIO()
        fig.savefig(png, format="png", metadata={"Software": None})
        return Chart(chart_id, title, caption, "", png.getvalue())
    svg = io.StringIO()
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    text = svg.getvalue()
    text = _METADATA.sub("", text[text.index("<svg"):])  # an RDF block naming its vocabularies' URLs: not needed inline
    # ids (glyphs, clip paths) are the chart's own once several charts share one page
    text = text.replace('id="', f'id="{chart_id}-').replace('href="#', f'href="#{chart_id}-').replace("url(#", f"url(#{chart_id}-")
    return Chart(chart_id, title, caption, text, b"")


def _month_ticks(ax, months: list[str]) -> None:
    step = max(1, len(months) // 12)
    ax.set_xticks(range(0, len(months), step), [months[i] for i in range(0, len(months), step)], rotation=45,
                  ha="right")


def _stacked(ax, months: list[str], series: dict[str, dict[str, int]]) -> bool:
    """Stacked areas, one a series, in steps a period wide (one polygon a series: a bar a period and
    series costs a drawing object each, 0.2 s a chart at 300 bars)."""
    if not months or not series:
        return False
    ax.stackplot(range(len(months)), *([by.get(m, 0) for m in months] for by in series.values()),
                 labels=list(series), colors=PALETTE[:len(series)], step="mid")
    _month_ticks(ax, months)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return True


def charts(f: Figures, image: str = "svg") -> list[Chart]:
    """The overview's charts drawn as `image` (svg or png)."""
    months = f.months

    def posts_quotes(ax) -> bool:
        if not months:
            return False
        xs = range(len(months))
        ax.bar([x - 0.2 for x in xs], [f.posts.get(m, 0) for m in months], width=0.4, label="投稿 posts",
               color=PALETTE[0])
        ax.bar([x + 0.2 for x in xs], [f.quotes.get(m, 0) for m in months], width=0.4, label="引用 quotes",
               color=PALETTE[1])
        _month_ticks(ax, months)
        ax.legend(loc="upper left")
        return True

    def entities(ax) -> bool:
        if not months or not f.entities:
            return False
        for k, (name, by_month) in enumerate(f.entities.items()):
            ax.plot(range(len(months)), [by_month.get(m, 0) for m in months], marker="o", markersize=3, label=name,
                    color=PALETTE[k % len(PALETTE)])
        _month_ticks(ax, months)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return True

    def requoted(ax) -> bool:
        if not f.articles:
            return False
        import datetime as dt

        def day(s: str) -> float:
            return dt.date.fromisoformat(s).toordinal()

        labels = [a["label"] for a in f.articles]
        for y, a in enumerate(f.articles):
            xs = [day(d) for d in a["quoted_on"]]
            ax.plot(xs, [y] * len(xs), "o", color=PALETTE[0], markersize=4)
            if xs:
                ax.plot([min(xs), max(xs)], [y, y], color=PALETTE[0], linewidth=0.8)
            if a["published"]:
                ax.plot([day(a["published"])], [y], "|", color=PALETTE[3], markersize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ticks = ax.get_xticks()
        ax.set_xticks(ticks, [dt.date.fromordinal(int(t)).isoformat() if t >= 1 else "" for t in ticks], rotation=30,
                      ha="right")
        return True

    def sizes(ax) -> bool:
        if not f.cluster_sizes:
            return False
        keys = sorted(f.cluster_sizes)
        ax.bar([str(k) for k in keys], [f.cluster_sizes[k] for k in keys], color=PALETTE[2])
        ax.set_xlabel("1記事あたりの引用数 quotes per article")
        ax.set_ylabel("記事数 articles")
        return True

    def dates(ax) -> bool:
        if not f.date_months and not f.unresolved:
            return False
        ms = sorted(f.date_months)
        if ms:
            full, period = periods(ms[0], ms[-1])
            by = by_period(f.date_months, period)
            ax.bar(range(len(full)), [by.get(m, 0) for m in full], color=PALETTE[4])
            _month_ticks(ax, full)
        n = sum(f.unresolved.values())
        ax.text(0.99, 0.95, f"未解決 unresolved: {n:,}" + "".join(f"\n{k}: {v:,}" for k, v in list(f.unresolved.items())[:5]),
                ha="right", va="top", transform=ax.transAxes, fontsize=8)
        return True

    return [
        _render(image, "posts-quotes", "投稿と引用の推移 — posts and quotes over time",
                "Posts by their date, and the excerpts they quote, per month (per year over a span of ten years, per decade "
                "over 120 years).", posts_quotes),
        _render(image, "outlets", "引用元の推移 — quotes per outlet (top outlets) over time",
                "Excerpts per month of the post, for the outlets quoted most.",
                lambda ax: _stacked(ax, months, f.outlets)),
        _render(image, "mentions", "国・人物の言及 — countries and people mentioned over time",
                "Mentions per month (repeated paragraphs counted once) of the countries and people named most.",
                entities),
        _render(image, "requoted", "繰り返し引用された記事 — the most re-quoted articles",
                "Each row an article (outlet, date, id): a dot for each post date that quoted it, a red tick at "
                "the article's own date.", requoted),
        _render(image, "cluster-sizes", "記事ごとの引用数 — cluster sizes",
                "How many articles were quoted once, twice, … (dedup clusters).", sizes),
        _render(image, "date-coverage", "日付表現の分布 — dates mentioned, by month",
                "Date mentions resolved to a day, month or longer span, by the month they start in; the unresolved "
                "ones by reason.", dates),
    ]

