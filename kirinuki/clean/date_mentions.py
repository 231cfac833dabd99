"""Date mentions: every date expression in a post's text, resolved against an anchor date.

In: a paragraph's (or headline's) text and the run it belongs to. Out: `Mention`s with offsets
into that text, the span of days each can mean, its granularity and the rule that resolved it.
The anchor is the article's date for text inside an excerpt and the post's date elsewhere.
Relative expressions (同日, 翌日, この翌月, その3日後 …) resolve against the last date resolved before
them in the same excerpt or commentary run. The vocabulary is kirinuki/clean/date_patterns.py;
the rules and a worked example of each are in input/reference/date_rules.tsv, which the tests
run and docs/cleaning.md shows.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date
from functools import cache, cached_property, partial

from kirinuki.clean import date_spans as sp
from kirinuki.clean.date_patterns import MENTION_RE, PREFILTER, groups_of, number
from kirinuki.clean.date_spans import Span, Unresolved
from kirinuki.schema import REFERENCE

_FULL_STOP = re.compile("。")
_ERAS = {"令和": 2018, "平成": 1988, "昭和": 1925}
_WEEKDAY = {c: i for i, c in enumerate("月火水木金土日")}


@cache
def lookahead_cues() -> tuple[str, ...]:
    lines = (REFERENCE / "date_lookahead.txt").read_text(encoding="utf-8").splitlines()
    return tuple(w.strip() for w in lines if w.strip() and not w.startswith("#"))


@dataclass
class Mention:
    start: int  # offsets into the paragraph text
    end: int
    raw: str
    kind: str
    date_start: date | None
    date_end: date | None
    granularity: str | None
    rule: str


class _LookAhead:
    """Whether a look-ahead cue (予定, 来週 …) follows a position within its sentence, answered in
    log time: the full stops and the cues' occurrences are found once per text (only when first
    asked), then each question is two bisections instead of a scan of the rest of the text."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def _index(self) -> tuple[list[int], list[int], list[int]]:
        """(full-stop positions, cue starts in order, the earliest cue end from each start on)."""
        text = self.text
        stops = [m.start() for m in _FULL_STOP.finditer(text)]
        found = []
        for cue in lookahead_cues():
            i = text.find(cue)
            while i >= 0:
                found.append((i, i + len(cue)))
                i = text.find(cue, i + 1)
        found.sort()
        min_end = [b for _, b in found]
        for k in range(len(found) - 2, -1, -1):
            min_end[k] = min(min_end[k], min_end[k + 1])
        return stops, [a for a, _ in found], min_end

    def __call__(self, pos: int) -> bool:
        stops, starts, min_end = self._index
        k = bisect_left(stops, pos)
        stop = stops[k] if k < len(stops) else len(self.text)
        c = bisect_left(starts, pos)
        return c < len(starts) and min_end[c] <= stop


_PREVIOUS_DAY = {"同日": 0, "当日": 0, "翌日": 1, "前日": -1, "翌々日": 2, "前々日": -2}
_ANCHOR_DAY = {"一昨日": -2, "昨日": -1, "昨夜": -1, "昨晩": -1, "本日": 0, "今日": 0, "今朝": 0, "今夜": 0,
               "今晩": 0, "今夕": 0, "明日": 1, "明後日": 2}
_PREVIOUS_YEAR = {"前年": -1, "翌年": 1, "同年": 0}
_ANCHOR_YEAR = {"一昨年": -2, "昨年": -1, "去年": -1, "今年": 0, "本年": 0, "来年": 1, "再来年": 2}
_PREVIOUS_MONTH = {"前月": -1, "翌月": 1, "同月": 0}
_ANCHOR_MONTH = {"先月": -1, "今月": 0, "来月": 1}
_PREVIOUS_WEEK = {"前週": -1, "翌週": 1, "同週": 0}
_ANCHOR_WEEK = {"先々週": -2, "先週": -1, "今週": 0, "来週": 1, "再来週": 2}
_SEASON_SHIFT = {"昨": -1, "今": 0, "来": 1}
_FRACTION_KEYS = frozenset({"half", "q", "m1", "fhalf"})
_MONTH_UNITS = frozenset({"カ月", "ヵ月", "ヶ月", "か月", "ケ月", "箇月"})
_DAY_GRAINS = frozenset({"day"})
_WEEK_GRAINS = frozenset({"day", "weekend", "week"})


def kind_of(alt: str, g: dict) -> str:
    """The mention's kind: its alternative, or what a year became (fiscal year, season …)."""
    if alt in ("year", "relative_year"):
        if "fy" in g:
            return "fiscal_year"
        if "season" in g:
            return "season"
        if _FRACTION_KEYS & g.keys():
            return "fraction"
        if alt == "year":
            return "full_date" if "d" in g else "year_month" if "m" in g else "year"
        return "relative_year"
    if alt == "week" and "lwd" in g:
        return "weekday"
    return alt


class _Context:
    def __init__(self, anchor: date | None, last: Span | None, ahead):
        self.anchor, self.last, self.ahead = anchor, last, ahead

    def anchor_day(self) -> date:
        if self.anchor is None:
            raise Unresolved("no_anchor")
        return self.anchor

    def last_span(self, grains: frozenset[str] | None = None) -> Span:
        if self.last is None or (grains is not None and self.last.granularity not in grains):
            raise Unresolved("no_reference")
        return self.last

    def reference(self, g: dict) -> tuple[date, str]:
        """この/その point back at the last resolved date; without them, the anchor."""
        if g.get("pre") == "その" or (g.get("pre") == "この" and self.last is not None):
            return self.last_span().start, "relative_to_previous_date"
        return self.anchor_day(), "relative_to_anchor"


def _int(s: str) -> int:
    n = number(s)
    if n is None:
        raise Unresolved("impossible_date")
    return n


def _by_weekday(candidates: list[tuple[date, str]], weekday: str | None) -> tuple[date, str]:
    """The first candidate on the weekday written in brackets (15日(月)); the first one, flagged
    weekday_mismatch, when none is."""
    if weekday is None:
        return candidates[0]
    w = _WEEKDAY[weekday]
    for i, (x, rule) in enumerate(candidates):
        if x.weekday() == w:
            return x, rule if i == 0 else "chosen_by_weekday"
    return candidates[0][0], "weekday_mismatch"


def _day_span(candidates: list[tuple[date, str]], g: dict) -> Span:
    x, rule = _by_weekday(candidates, g.get("wdp"))
    return Span(x, x, "day", rule)


def _candidates(make, options) -> list[tuple[date, str]]:
    out = []
    for args, rule in options:
        try:
            out.append((make(*args), rule))
        except Unresolved:
            if not out:
                raise
    return out


def _year_led(kind: str, alt: str, g: dict, c: _Context) -> Span:
    fiscal = kind == "fiscal_year"
    if alt == "year":
        y = _int(g["y"]) if "y" in g else _ERAS[g["era"]] + (1 if g["ey"] == "元" else _int(g["ey"]))
        rule = "explicit"
    elif g["rel"] in _PREVIOUS_YEAR:
        ref = c.last_span().start
        y = (sp.fiscal_year_of(ref) if fiscal else ref.year) + _PREVIOUS_YEAR[g["rel"]]
        rule = "relative_to_previous_date"
    else:
        a = c.anchor_day()
        y = (sp.fiscal_year_of(a) if fiscal else a.year) + _ANCHOR_YEAR[g["rel"]]
        rule = "relative_to_anchor"
    if fiscal:
        return sp.fiscal_year(y, g.get("fpart"), g.get("fq"), rule)
    if kind == "season":
        return sp.season(y, g["season"], rule)
    if kind == "fraction":
        if "m1" in g:
            m1, m2 = _int(g["m1"]), _int(g["m2"])
            return sp.month_range(y, m1, m2, "quarter" if (m2 - m1) % 12 == 2 else "range", rule)
        return sp.year_fraction(y, g.get("half") or g.get("fhalf"), g.get("q"), rule)
    if "m" not in g:
        return sp.year_span(y, g.get("ypart"), rule)
    m = _int(g["m"])
    if "d" not in g:
        return sp.month_or_day(y, m, None, g.get("part"), rule)
    return _day_span([(sp.day(y, m, _int(g["d"])), rule)], g)


def _counted(g: dict, c: _Context) -> Span:
    ref_day, rule = c.reference(g)
    sign = -1 if g["dir"] == "前" else 1
    n = g["n"]
    lo, hi = {"数": (2, 9), "十数": (11, 19)}.get(n, (None, None))
    unit = g["unit"]
    if n == "半":
        if unit != "年":
            raise Unresolved("imprecise_count")
        unit, lo = "カ月", 6
    exact = lo is None
    if exact:
        lo = hi = _int(n)
    elif hi is None:
        hi = lo
    a, b = sorted((sign * lo, sign * hi))
    grain = "range" if not exact and hi != lo else None
    if unit in ("日", "週", "週間"):
        k = 7 if unit != "日" else 1
        coarse = rule == "relative_to_previous_date" and c.last.granularity != "day"
        if coarse:  # その3日後 of a month: the month moved by three days, and the rule says so
            return Span(sp.shift_days(c.last.start, a * k), sp.shift_days(c.last.end, b * k), "range",
                        "relative_to_coarse_date")
        return Span(sp.shift_days(ref_day, a * k), sp.shift_days(ref_day, b * k), grain or "day", rule)
    if unit in _MONTH_UNITS:
        y1, m1 = sp.shift_month(ref_day.year, ref_day.month, a)
        y2, m2 = sp.shift_month(ref_day.year, ref_day.month, b)
        first = sp.month_range(y1, m1, m1, "month", rule)
        last = sp.month_range(y2, m2, m2, "month", rule)
        return Span(first.start, last.end, grain or "month", rule)
    first, last = sp.year_span(ref_day.year + a, None, rule), sp.year_span(ref_day.year + b, None, rule)
    return Span(first.start, last.end, grain or "year", rule)


def _week(kind: str, g: dict, c: _Context) -> Span:
    if kind == "weekday":
        w = _WEEKDAY[g["lwd"]]
        if g.get("pre") == "その":
            ref = c.last_span(_WEEK_GRAINS).start
            x = sp.shift_days(ref, (w - ref.weekday()) % 7)
            return Span(x, x, "day", "relative_to_previous_date")
        a = c.anchor_day()
        if c.ahead():
            x = sp.shift_days(a, (w - a.weekday()) % 7)
            return Span(x, x, "day", "weekday_ahead")
        x = sp.shift_days(a, -((a.weekday() - w) % 7))
        return Span(x, x, "day", "weekday_before")
    weekday = _WEEKDAY[g["wd"]] if "wd" in g else None
    rel = g.get("rel")
    if rel in _PREVIOUS_WEEK or (rel is None and g.get("pre") == "その"):
        ref = c.last_span(_WEEK_GRAINS).start
        return sp.week_of(ref, _PREVIOUS_WEEK.get(rel, 0), "relative_to_previous_date", "wend" in g or
                          "lone" in g, weekday)
    a = c.anchor_day()
    if rel is not None:
        return sp.week_of(a, _ANCHOR_WEEK[rel], "relative_to_anchor", "wend" in g, weekday)
    # 週末 / この週末: the weekend of the anchor's week, or the one before it when that is still
    # ahead of the anchor and the sentence does not look ahead
    if a.weekday() < 5 and not c.ahead():
        return sp.week_of(a, -1, "weekend_before", weekend=True)
    return sp.week_of(a, 0, "relative_to_anchor", weekend=True)


def _season(g: dict, c: _Context) -> Span:
    name = g["season"]
    if "srel" in g:
        return sp.season(sp.season_year_of(c.anchor_day(), name) + _SEASON_SHIFT[g["srel"]], name,
                         "relative_to_anchor")
    ref, rule = c.reference(g)
    return sp.season(sp.season_year_of(ref, name), name, rule)


def _resolve(kind: str, alt: str, g: dict, c: _Context) -> Span:
    if alt in ("year", "relative_year"):
        return _year_led(kind, alt, g, c)
    if alt == "season":
        return _season(g, c)
    if alt == "week":
        return _week(kind, g, c)
    if alt == "counted":
        return _counted(g, c)
    if alt == "fraction":
        span = _year_led(kind, "relative_year", {**g, "rel": "今年"}, c)
        span.rule = "anchor_year"  # 上半期 without a year: the anchor's year
        return span
    if alt == "year_part":
        a = c.anchor_day()
        if "fpart" in g:
            return sp.fiscal_year(sp.fiscal_year_of(a), g["fpart"], None, "anchor_year")
        return sp.year_span(a.year, g["ypart"], "anchor_year")
    if alt == "relative_month":
        if g["rel"] in _PREVIOUS_MONTH:
            ref, delta, rule = c.last_span().start, _PREVIOUS_MONTH[g["rel"]], "relative_to_previous_date"
        else:
            ref, delta, rule = c.anchor_day(), _ANCHOR_MONTH[g["rel"]], "relative_to_anchor"
        yy, mm = sp.shift_month(ref.year, ref.month, delta)
        if "d" in g:
            return _day_span([(sp.day(yy, mm, _int(g["d"])), rule)], g)
        return sp.month_or_day(yy, mm, None, g.get("part"), rule)
    if alt == "relative_day":
        if g["rel"] in _PREVIOUS_DAY:
            ref, delta, rule = c.last_span(_DAY_GRAINS).start, _PREVIOUS_DAY[g["rel"]], "relative_to_previous_date"
        else:
            ref, delta, rule = c.anchor_day(), _ANCHOR_DAY[g["rel"]], "relative_to_anchor"
        x = sp.shift_days(ref, delta)
        return Span(x, x, "day", rule)
    a = c.anchor_day()
    if alt == "month_day":
        m, d = _int(g["m"]), _int(g["d"])
        if sp.day(a.year, m, d) <= a:  # 2月30日 raises: impossible whatever the year
            default = (a.year, "month_day")
        elif c.ahead():
            default = (a.year, "month_day_ahead")
        else:
            default = (a.year - 1, "month_day_previous_year")
        options = [((default[0],), default[1])] + [
            ((y,), "chosen_by_weekday") for y in (a.year, a.year - 1, a.year + 1) if y != default[0]]
        return _day_span(_candidates(lambda y: sp.day(y, m, d), options), g)
    if alt == "month":
        m = _int(g["m"])
        if not 1 <= m <= 12:
            raise Unresolved("impossible_date")
        here = a.year * 12 + a.month - 1
        yy = min((a.year - 1, a.year, a.year + 1), key=lambda y: (abs(y * 12 + m - 1 - here), y))
        return sp.month_or_day(yy, m, None, g.get("part"), "month_nearest")
    # a bare day: the anchor's month, or the month before when that would be after the anchor
    d = _int(g["d"])
    if d <= a.day:
        options = [((a.year, a.month), "day_in_anchor_month")]
    elif c.ahead():
        options = [((a.year, a.month), "day_ahead")]
    else:
        options = [(sp.shift_month(a.year, a.month, -1), "day_previous_month")]
    options += [(ym, "chosen_by_weekday") for ym in (
        (a.year, a.month), sp.shift_month(a.year, a.month, -1), sp.shift_month(a.year, a.month, 1))
        if ym != options[0][0]]
    return _day_span(_candidates(lambda y, m: sp.day(y, m, d), options), g)


class Run:
    """Resolution state of one excerpt, one commentary run or one headline."""

    def __init__(self, anchor: date | None):
        self.anchor = anchor
        self.last: Span | None = None

    def mentions(self, text: str) -> list[Mention]:
        if not PREFILTER.search(text):
            return []
        out = []
        looks_ahead = _LookAhead(text)
        for m in MENTION_RE.finditer(text):
            alt, g = groups_of(m)
            kind = kind_of(alt, g)
            try:
                r = _resolve(kind, alt, g, _Context(self.anchor, self.last, partial(looks_ahead, m.end())))
            except Unresolved as u:
                out.append(Mention(m.start(), m.end(), m.group(0), kind, None, None, None, u.rule))
                continue
            self.last = r
            out.append(Mention(m.start(), m.end(), m.group(0), kind, r.start, r.end, r.granularity, r.rule))
        return out
