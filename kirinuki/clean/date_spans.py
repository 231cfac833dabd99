"""Calendar spans: the first and last day a date expression can mean.

In: years, months, days and named parts (上旬, 末, 夏, 上半期, 第3四半期, 年度 …). Out: `Span`
(start, end, granularity, rule), or `Unresolved` raised with the reason (impossible_date,
out_of_range). Weeks run Monday to Sunday; a fiscal year (年度) runs 1 April to 31 March; seasons
are spring 3–5, summer 6–8, autumn 9–11 and winter December to February (2023年冬 = 2023-12 …
2024-02).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, timedelta


@dataclass
class Span:
    start: date
    end: date
    granularity: str
    rule: str


class Unresolved(Exception):
    def __init__(self, rule: str):
        self.rule = rule


def check_year(y: int) -> None:
    if not MINYEAR <= y <= MAXYEAR:  # e.g. 翌年 of 9999年: a NULL with a reason, never an error
        raise Unresolved("out_of_range")


def day(y: int, m: int, d: int) -> date:
    check_year(y)
    try:
        return date(y, m, d)
    except ValueError:
        raise Unresolved("impossible_date") from None


def shift_days(x: date, n: int) -> date:
    try:
        return x + timedelta(days=n)
    except OverflowError:  # 翌日 of 9999-12-31, 前日 of 0001-01-01
        raise Unresolved("out_of_range") from None


def shift_month(y: int, m: int, delta: int) -> tuple[int, int]:
    k = y * 12 + (m - 1) + delta
    return k // 12, k % 12 + 1


def month_range(y: int, m1: int, m2: int, granularity: str, rule: str) -> Span:
    """From the first of month m1 to the last of month m2 (m2 < m1 reaches into the next year)."""
    if not (1 <= m1 <= 12 and 1 <= m2 <= 12):
        raise Unresolved("impossible_date")
    y2 = y + 1 if m2 < m1 else y
    check_year(y)
    check_year(y2)
    return Span(date(y, m1, 1), date(y2, m2, calendar.monthrange(y2, m2)[1]), granularity, rule)


def part_of_month(y: int, m: int, part: str, rule: str) -> Span:
    whole = month_range(y, m, m, "month", rule)
    if part in ("上旬", "初旬", "初め"):
        return Span(whole.start, date(y, m, 10), "ten_days", rule)
    if part == "中旬":
        return Span(date(y, m, 11), date(y, m, 20), "ten_days", rule)
    if part == "下旬":
        return Span(date(y, m, 21), whole.end, "ten_days", rule)
    return Span(whole.end, whole.end, "day", rule)  # 末: the last day


def month_or_day(y: int, m: int, d: int | None, part: str | None, rule: str) -> Span:
    if d is not None:
        x = day(y, m, d)
        return Span(x, x, "day", rule)
    if part:
        return part_of_month(y, m, part, rule)
    return month_range(y, m, m, "month", rule)


def year_span(y: int, ypart: str | None, rule: str) -> Span:
    check_year(y)
    if ypart == "末":
        return Span(date(y, 12, 1), date(y, 12, 31), "month", rule)
    if ypart == "初め":
        return Span(date(y, 1, 1), date(y, 1, 31), "month", rule)
    return Span(date(y, 1, 1), date(y, 12, 31), "year", rule)


_SEASON_START = {"春": 3, "夏": 6, "秋": 9, "冬": 12}


def season(y: int, name: str, rule: str) -> Span:
    m = _SEASON_START[name]
    return month_range(y, m, (m + 1) % 12 + 1, "season", rule)


def season_year_of(x: date, name: str) -> int:
    """The year whose `name` season contains, or comes nearest before, the day x: the winter
    of 2024-01-15 is 2023's."""
    return x.year - 1 if name == "冬" and x.month <= 2 else x.year


def fiscal_year_of(x: date) -> int:
    return x.year if x.month >= 4 else x.year - 1


_QUARTER = {"1": 1, "2": 2, "3": 3, "4": 4, "一": 1, "二": 2, "三": 3, "四": 4,
            "１": 1, "２": 2, "３": 3, "４": 4}
_HALF_FIRST = ("上半期", "上期", "前半")


def year_fraction(y: int, half: str | None, quarter: str | None, rule: str, first_month: int = 1) -> Span:
    """A half (上半期/下半期) or quarter (第N四半期) of the year that starts in first_month (1 for
    the calendar year, 4 for a fiscal year)."""
    if half:
        start = first_month if half in _HALF_FIRST else first_month + 6
        granularity, months = "half_year", 6
    else:
        start = first_month + 3 * (_QUARTER[quarter] - 1)
        granularity, months = "quarter", 3
    y1, m1 = shift_month(y, start, 0)
    y2, m2 = shift_month(y, start, months - 1)
    check_year(y2)
    return Span(date(y1, m1, 1), date(y2, m2, calendar.monthrange(y2, m2)[1]), granularity, rule)


def fiscal_year(y: int, part: str | None, quarter: str | None, rule: str) -> Span:
    if quarter or part in ("上半期", "下半期", "上期", "下期"):
        return year_fraction(y, part, quarter, rule, first_month=4)
    check_year(y + 1)
    if part == "末":
        return Span(date(y + 1, 3, 1), date(y + 1, 3, 31), "month", rule)
    return Span(date(y, 4, 1), date(y + 1, 3, 31), "fiscal_year", rule)


def week_of(x: date, weeks: int, rule: str, weekend: bool = False, weekday: int | None = None) -> Span:
    """The Monday–Sunday week `weeks` after x's (negative: before), its weekend or one weekday."""
    monday = shift_days(x, -x.weekday() + 7 * weeks)
    if weekday is not None:
        d = shift_days(monday, weekday)
        return Span(d, d, "day", rule)
    if weekend:
        return Span(shift_days(monday, 5), shift_days(monday, 6), "weekend", rule)
    return Span(monday, shift_days(monday, 6), "week", rule)
