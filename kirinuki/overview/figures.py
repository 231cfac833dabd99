"""What the overview shows, read from a build's tables with DuckDB.

In: a build's data folder (Parquet files). Out: `Figures`, plain lists and dicts — posts and quotes
per month, quotes per outlet per month, mentions of the most named countries and people per month,
the most re-quoted articles with the dates of the posts that quoted them, the cluster-size
distribution, date mentions per month and the unresolved ones by reason. No text of the quotes
themselves: articles are labelled by outlet, date and id, so the page can ship with any release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TOP_OUTLETS = 6
TOP_ENTITIES = 8
TOP_ARTICLES = 10
MAX_MONTHS = 120  # bars on a time axis: a longer span is counted by year, a bar a month would be too thin to see
# (and by decade, century, … past MAX_MONTHS years: one post dated 9999 among posts of 2023 drew ~8,000 bars a chart)


@dataclass
class Figures:
    # every month from the first post to the last, YYYY-MM (past MAX_MONTHS months every year, YYYY;
    # past MAX_MONTHS years every decade, century, …, YYYY–YYYY: kirinuki.overview.figures.periods)
    months: list[str] = field(default_factory=list)
    posts: dict[str, int] = field(default_factory=dict)
    quotes: dict[str, int] = field(default_factory=dict)
    outlets: dict[str, dict[str, int]] = field(default_factory=dict)  # outlet name -> month -> quotes
    entities: dict[str, dict[str, int]] = field(default_factory=dict)  # entity name -> month -> mentions
    articles: list[dict] = field(default_factory=list)  # label, published, quoted_on (post dates)
    cluster_sizes: dict[int, int] = field(default_factory=dict)  # quotes of an article -> articles
    date_months: dict[str, int] = field(default_factory=dict)  # month a date mention starts in -> mentions
    unresolved: dict[str, int] = field(default_factory=dict)  # rule -> date mentions with no date
    totals: dict[str, int] = field(default_factory=dict)  # table -> rows: set by the page (table_totals)
    first_post: str | None = None
    last_post: str | None = None


def month_range(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` (YYYY-MM), both included."""
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def periods(first: str, last: str) -> tuple[list[str], Callable[[str], str]]:
    """A time axis from month `first` to month `last` (YYYY-MM) in at most MAX_MONTHS periods:
    every month; past that every year (YYYY); past MAX_MONTHS years every decade, century, …
    (YYYY–YYYY). Returns the periods and the function that gives a month's period."""
    y0, y1 = int(first[:4]), int(last[:4])
    if (y1 - y0) * 12 + int(last[5:7]) - int(first[5:7]) < MAX_MONTHS:
        return month_range(first, last), lambda month: month
    width = 1  # years a period
    while y1 // width - y0 // width >= MAX_MONTHS:
        width *= 10
    if width == 1:
        return [f"{y:04d}" for y in range(y0, y1 + 1)], lambda month: month[:4]

    def label(y: int) -> str:
        return f"{y - y % width:04d}–{y - y % width + width - 1:04d}"

    return [label(y) for y in range(y0 - y0 % width, y1 + 1, width)], lambda month: label(int(month[:4]))


def table_totals(data: Path) -> dict[str, int]:
    """Each table's row count (from its files' footers), by name."""
    from kirinuki.schema import tables
    from kirinuki.store.layout import has_table, row_count

    return {name: row_count(data, name) for name in sorted(tables()) if has_table(data, name)}


def read_figures(data: Path) -> Figures:
    import duckdb

    from kirinuki.schema import tables
    from kirinuki.store.layout import duckdb_source, has_table

    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                              "autoload_known_extensions": False})
    try:
        have = {name for name in tables() if has_table(data, name)}
        for name in sorted(have):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {duckdb_source(data, name)}")
        return _figures(con, have)
    finally:
        con.close()


def _q(con, sql: str, *params) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def _figures(con, have: set[str]) -> Figures:
    f = Figures()
    month = "strftime(d.published_date, '%Y-%m')"
    first, last = _q(con, "SELECT min(published_date)::VARCHAR, max(published_date)::VARCHAR FROM documents")[0]
    f.first_post, f.last_post = first, last
    if first is None:
        return f
    f.months, period = periods(first[:7], last[:7])
    f.posts = dict(_q(con, f"SELECT {month}, count(*) FROM documents d WHERE d.published_date IS NOT NULL GROUP BY 1"))
    f.quotes = dict(_q(con, f"""SELECT {month}, count(*) FROM excerpts e JOIN documents d USING (doc_id)
                                WHERE d.published_date IS NOT NULL GROUP BY 1"""))
    top = [r[0] for r in _q(con, f"""SELECT o.name_ja FROM excerpts e JOIN outlets o ON o.id = e.outlet_id
                                     GROUP BY o.name_ja ORDER BY count(*) DESC, o.name_ja LIMIT {TOP_OUTLETS}""")]
    f.outlets = {name: {} for name in top}
    for name, m, n in _q(con, f"""SELECT o.name_ja, {month}, count(*) FROM excerpts e JOIN outlets o ON o.id = e.outlet_id
                                  JOIN documents d USING (doc_id) WHERE d.published_date IS NOT NULL
                                  AND list_contains($1, o.name_ja) GROUP BY ALL ORDER BY ALL""", top):
        f.outlets[name][m] = n
    if "mentions" in have and "entities" in have:
        names = dict(_q(con, "SELECT id, name_ja FROM entities"))
        top = [r[0] for r in _q(con, f"""SELECT m.entity_id FROM mentions m
                                         WHERE m.repeat_of IS NULL AND m.kind IN ('country', 'territory', 'person')
                                         GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {TOP_ENTITIES}""")]
        f.entities = {names[eid]: {} for eid in top}
        for eid, m, n in _q(con, f"""SELECT m.entity_id, {month}, count(*) FROM mentions m JOIN documents d USING (doc_id)
                                     WHERE m.repeat_of IS NULL AND d.published_date IS NOT NULL
                                     AND list_contains($1, m.entity_id) GROUP BY ALL ORDER BY ALL""", top):
            f.entities[names[eid]][m] = n
    if "articles" in have:
        arts = _q(con, f"""SELECT a.article_id, coalesce(o.name_ja, '出典不明'), a.published_date::VARCHAR, a.n_documents
                           FROM articles a LEFT JOIN outlets o ON o.id = a.outlet_id WHERE a.n_documents > 1
                           ORDER BY a.n_documents DESC, a.article_id LIMIT {TOP_ARTICLES}""")
        for aid, outlet, published, _ in arts:
            dates = [r[0] for r in _q(con, """SELECT DISTINCT d.published_date::VARCHAR FROM article_quotes q
                                             JOIN documents d USING (doc_id) WHERE q.article_id = $1
                                             AND d.published_date IS NOT NULL ORDER BY 1""", aid)]
            f.articles.append({"label": f"{outlet} {published or '日付不明'} · {aid}",
                               "published": published, "quoted_on": dates})
        f.cluster_sizes = dict(_q(con, "SELECT n_quotes, count(*) FROM articles GROUP BY 1 ORDER BY 1"))
    if "date_mentions" in have:
        f.date_months = dict(_q(con, """SELECT strftime(date_start, '%Y-%m'), count(*) FROM date_mentions
                                        WHERE date_start IS NOT NULL AND repeat_of IS NULL GROUP BY 1 ORDER BY 1"""))
        f.unresolved = dict(_q(con, """SELECT rule, count(*) FROM date_mentions WHERE date_start IS NULL
                                       AND repeat_of IS NULL GROUP BY 1 ORDER BY 2 DESC, 1"""))
    f.posts, f.quotes = by_period(f.posts, period), by_period(f.quotes, period)
    f.outlets = {k: by_period(v, period) for k, v in f.outlets.items()}
    f.entities = {k: by_period(v, period) for k, v in f.entities.items()}
    return f


def by_period(by_month: dict[str, int], period: Callable[[str], str]) -> dict[str, int]:
    """Counts by month summed by each month's `period` (periods())."""
    out: dict[str, int] = {}
    for m, n in by_month.items():
        out[period(m)] = out.get(period(m), 0) + n
    return out
