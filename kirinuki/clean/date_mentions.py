"""Date mentions: every date expression in a post's text, resolved against an anchor date.

The anchor is the article's date for text inside an excerpt and the post's date for commentary and
captions. Relative expressions (同日, 翌日, この翌月, 前年 …) resolve against the last date resolved
before them in the same excerpt or commentary run. The rules and one worked example each are in
input/reference/date_rules.tsv, which the tests run and docs/cleaning.md shows.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, timedelta
from functools import cache, cached_property, partial

from kirinuki.schema import REFERENCE

_DIG = str.maketrans("０１２３４５６７８９", "0123456789")
_N = "[0-9０-９]"
_ERAS = {"令和": 2018, "平成": 1988, "昭和": 1925}
_TOD = r"(?:\s*[(（][月火水木金土日][)）])?(?:未明|早朝|朝|午前|正午|昼|午後|夕方|夕|夜|深夜)?"
_PART = r"上旬|中旬|下旬|初旬|初め|末"


def _year(i: int) -> str:
    return rf"(?:(?P<y{i}>{_N}{{4}})|(?P<era{i}>令和|平成|昭和)(?P<ey{i}>元|{_N}{{1,2}}))年"


# Alternatives in priority order: at one position the first that matches wins, so longer forms
# come before their prefixes. Group names carry the alternative's number to stay unique.
_ALTERNATIVES = [
    ("full_date", lambda i: rf"{_year(i)}\s*(?P<m{i}>{_N}{{1,2}})月\s*(?P<d{i}>{_N}{{1,2}})日{_TOD}"),
    ("year_month", lambda i: rf"{_year(i)}\s*(?P<m{i}>{_N}{{1,2}})月(?P<part{i}>{_PART})?"),
    ("year", lambda i: rf"{_year(i)}(?P<ypart{i}>末|初め|内)?(?!間|代|度比)"),
    ("relative_year", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>一昨年|再来年|昨年|去年|今年|本年|来年|前年|翌年|同年)"
                                rf"(?:(?P<m{i}>{_N}{{1,2}})月(?:(?P<d{i}>{_N}{{1,2}})日{_TOD}|(?P<part{i}>{_PART}))?|(?P<ypart{i}>末|初め|内))?"),
    ("relative_month", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>先月|今月|来月|前月|翌月|同月)"
                                 rf"(?:(?P<d{i}>{_N}{{1,2}})日{_TOD}|(?P<part{i}>{_PART}))?"),
    ("month_day", lambda i: rf"(?<![0-9０-９.])(?P<m{i}>{_N}{{1,2}})月\s*(?P<d{i}>{_N}{{1,2}})日{_TOD}"),
    ("month", lambda i: rf"(?<![0-9０-９.])(?P<m{i}>{_N}{{1,2}})月(?P<part{i}>{_PART})?(?!間|分)"),
    ("relative_day", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>同日|翌日|前日|当日)"),
    ("day", lambda i: rf"(?<![0-9０-９.第毎])(?P<d{i}>{_N}{{1,2}})日(?!間|以上|以内|ぶり|分|連続|後|目|付|本)(?:{_TOD})"),
    ("year_part", lambda i: rf"(?<![0-9０-９昨去今本来前翌同])年(?P<ypart{i}>末|初め|内)"),
]
# The guard lets the regex engine skip, with one character test, every position where no
# alternative can start (most of the text); it measured ~4x faster on the seed.
_GUARD = r"(?=[0-9０-９昨去今本来前翌同先当年令平昭]|[こそ]の|一昨年|再来年)"
MENTION_RE = re.compile(_GUARD + "(?:" + "|".join(f"(?P<{k}>{make(i)})" for i, (k, make) in enumerate(_ALTERNATIVES)) + ")")
_PREFILTER = re.compile("[年月日]")
_FULL_STOP = re.compile("。")


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


@dataclass
class _Resolved:
    start: date
    end: date
    granularity: str
    rule: str


class _Unresolved(Exception):
    def __init__(self, rule: str):
        self.rule = rule


def _check_year(y: int) -> None:
    if not MINYEAR <= y <= MAXYEAR:  # e.g. 翌年 of 9999年: a NULL with a reason, never an error
        raise _Unresolved("out_of_range")


def _month_span(y: int, m: int) -> tuple[date, date]:
    if not 1 <= m <= 12:
        raise _Unresolved("impossible_date")
    _check_year(y)
    return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])


def _day(y: int, m: int, d: int) -> date:
    _check_year(y)
    try:
        return date(y, m, d)
    except ValueError:
        raise _Unresolved("impossible_date") from None


def _part_span(y: int, m: int, part: str) -> tuple[date, date]:
    first, last = _month_span(y, m)
    if part in ("上旬", "初旬", "初め"):
        return first, date(y, m, 10)
    if part == "中旬":
        return date(y, m, 11), date(y, m, 20)
    if part == "下旬":
        return date(y, m, 21), last
    return last, last  # 末: the last day


def _shift_month(y: int, m: int, delta: int) -> tuple[int, int]:
    k = y * 12 + (m - 1) + delta
    return k // 12, k % 12 + 1


def _month_or_day(y: int, m: int, d: str | None, part: str | None, rule: str) -> _Resolved:
    if d:
        x = _day(y, m, int(d))
        return _Resolved(x, x, "day", rule)
    if part:
        a, b = _part_span(y, m, part)
        return _Resolved(a, b, "day", rule)
    a, b = _month_span(y, m)
    return _Resolved(a, b, "month", rule)


def _year_span(y: int, ypart: str | None, rule: str) -> _Resolved:
    _check_year(y)
    if ypart == "末":
        return _Resolved(date(y, 12, 1), date(y, 12, 31), "month", rule)
    if ypart == "初め":
        return _Resolved(date(y, 1, 1), date(y, 1, 31), "month", rule)
    return _Resolved(date(y, 1, 1), date(y, 12, 31), "year", rule)


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


def _resolve(kind: str, g: dict, anchor: date | None, last: _Resolved | None, ahead) -> _Resolved:
    def need_anchor() -> date:
        if anchor is None:
            raise _Unresolved("no_anchor")
        return anchor

    def need_last(granularity: str) -> _Resolved:
        if last is None or (granularity == "day" and last.granularity != "day"):
            raise _Unresolved("no_reference")
        return last

    y = None
    if g.get("y"):
        y = int(g["y"].translate(_DIG))
    elif g.get("era"):
        ey = g["ey"].translate(_DIG)
        y = _ERAS[g["era"]] + (1 if ey == "元" else int(ey))
    m = int(g["m"].translate(_DIG)) if g.get("m") else None
    d = g["d"].translate(_DIG) if g.get("d") else None
    part, ypart, rel = g.get("part"), g.get("ypart"), g.get("rel")

    if kind in ("full_date", "year_month"):
        return _month_or_day(y, m, d, part, "explicit")
    if kind == "year":
        return _year_span(y, ypart, "explicit")
    if kind == "year_part":
        return _year_span(need_anchor().year, ypart, "anchor_year")
    if kind == "relative_year":
        if rel in ("前年", "翌年", "同年"):
            base = need_last("year").start.year + {"前年": -1, "翌年": 1, "同年": 0}[rel]
            rule = "relative_to_previous_date"
        else:
            base = need_anchor().year + {"一昨年": -2, "昨年": -1, "去年": -1, "今年": 0, "本年": 0, "来年": 1,
                                         "再来年": 2}[rel]
            rule = "relative_to_anchor"
        if m is None:
            return _year_span(base, ypart, rule)
        return _month_or_day(base, m, d, part, rule)
    if kind == "relative_month":
        if rel in ("前月", "翌月", "同月"):
            ref = need_last("month").start
            delta, rule = {"前月": -1, "翌月": 1, "同月": 0}[rel], "relative_to_previous_date"
        else:
            ref = need_anchor()
            delta, rule = {"先月": -1, "今月": 0, "来月": 1}[rel], "relative_to_anchor"
        yy, mm = _shift_month(ref.year, ref.month, delta)
        return _month_or_day(yy, mm, d, part, rule)
    if kind == "relative_day":
        ref = need_last("day").start
        try:
            x = ref + timedelta(days={"前日": -1, "翌日": 1, "同日": 0, "当日": 0}[rel])
        except OverflowError:  # 翌日 of 9999-12-31, 前日 of 0001-01-01
            raise _Unresolved("out_of_range") from None
        return _Resolved(x, x, "day", "relative_to_previous_date")
    a = need_anchor()
    if kind == "month_day":
        x = _day(a.year, m, int(d))
        if x <= a:
            return _Resolved(x, x, "day", "month_day")
        if ahead():
            return _Resolved(x, x, "day", "month_day_ahead")
        x = _day(a.year - 1, m, int(d))
        return _Resolved(x, x, "day", "month_day_previous_year")
    if kind == "month":
        if not 1 <= m <= 12:
            raise _Unresolved("impossible_date")
        here = a.year * 12 + a.month - 1
        yy = min((a.year - 1, a.year, a.year + 1), key=lambda c: (abs(c * 12 + m - 1 - here), c))
        return _month_or_day(yy, m, None, part, "month_nearest")
    # kind == "day": the anchor's month, or the month before when that would be after the anchor
    day = int(d)
    if day <= a.day:
        x = _day(a.year, a.month, day)
        return _Resolved(x, x, "day", "day_in_anchor_month")
    if ahead():
        x = _day(a.year, a.month, day)
        return _Resolved(x, x, "day", "day_ahead")
    yy, mm = _shift_month(a.year, a.month, -1)
    x = _day(yy, mm, day)
    return _Resolved(x, x, "day", "day_previous_month")


class Run:
    """Resolution state of one excerpt or one commentary run."""

    def __init__(self, anchor: date | None):
        self.anchor = anchor
        self.last: _Resolved | None = None

    def mentions(self, text: str) -> list[Mention]:
        if not _PREFILTER.search(text):
            return []
        out = []
        looks_ahead = _LookAhead(text)
        for m in MENTION_RE.finditer(text):
            kind = m.lastgroup
            g = {name: v for k, v in m.groupdict().items()
                 if v is not None and (name := k.rstrip("0123456789")) in _GROUPS}
            try:
                r = _resolve(kind, g, self.anchor, self.last, partial(looks_ahead, m.end()))
            except _Unresolved as u:
                out.append(Mention(m.start(), m.end(), m.group(0), kind, None, None, None, u.rule))
                continue
            self.last = r
            out.append(Mention(m.start(), m.end(), m.group(0), kind, r.start, r.end, r.granularity, r.rule))
        return out


_GROUPS = {"y", "era", "ey", "m", "d", "part", "ypart", "rel", "pre"}
