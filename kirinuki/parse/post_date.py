"""Dates: the post's date and the year of year-less dates.

In: a post's attribution and citation dates (`DateParts`, some without a year), its photo-caption
date, its text and the date its metadata gives, if any. Out: `PostDate` (the post's date, whether
it was inferred, the year and the rule that decided it) and `resolve()`, which gives one
attribution or citation its date.

Japanese clipping posts write the year only for dates outside the post's own year, so
`【4月9日 Newsweek】` belongs to the post's year, which is rarely stated. Posts quote recent news,
so the post date E is chosen as the one that keeps the post's dates closest together before it:

- metadata: the export or sidecar gives the post date; it always wins, nothing is inferred.
- nearest_explicit: E is the latest explicitly-dated attribution or citation (or the caption), or
  one of the year-less dates placed on or after all of them; every year-less date is the latest
  occurrence of its month and day on or before E. Of the candidates, the one whose earliest date
  lies least far before E wins (ties: the earlier E). 【2019年3月5日】 with (3月4日) is 2019-03-04,
  a day apart, never 2020: a gap of days is no reason to add a year.
- caption_year: no dated attribution or citation but a photo-caption credit (which always writes
  its year); the same choice with the caption date as the only explicit one.
- text_year: neither, but the text mentions `YYYY年M月`; E is not before the latest such month.
- explicit_only: every date carries its year; nothing to decide.
- unknown: no evidence; year-less dates stay NULL and are flagged.

Limits: a post whose year-less dates spread over more than a year cannot be told apart from one
a year later; the rule picks the tighter reading.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from calendar import isleap
from dataclasses import dataclass
from datetime import date

from kirinuki.parse.grammar import DateParts

_YEAR_MONTH_RE = re.compile(r"([12][0-9]{3})年\s*([0-9]{1,2})月")


@dataclass(frozen=True)
class PostDate:
    date: date | None
    inferred: bool
    year: int | None  # the year given to year-less dates
    rule: str


def safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def infer_post_date(parts: list[DateParts], text: str, meta_date: date | None,
                    caption: DateParts | None = None) -> PostDate:
    """Decide the post date and the year of its year-less dates from the dates it carries:
    `parts` are attribution and citation dates, `caption` the photo-credit date."""
    if meta_date is not None:
        return PostDate(meta_date, False, meta_date.year, "metadata")
    explicit = [d for p in parts if p.year is not None and (d := safe_date(p.year, p.month, p.day))]
    cap = safe_date(caption.year, caption.month, caption.day) if caption and caption.year else None
    known = explicit + ([cap] if cap else [])
    yearless = sorted({(p.month, p.day) for p in parts if p.year is None and safe_date(2000, p.month, p.day)})
    if not yearless:
        post = max(known) if known else None
        return PostDate(post, True, post.year if post else None, "explicit_only" if known else "unknown")
    if known:
        floor, rule = max(known), "nearest_explicit" if explicit else "caption_year"
    else:
        months = [(int(y), int(m)) for y, m in _YEAR_MONTH_RE.findall(text) if 1 <= int(m) <= 12]
        if not months:
            return PostDate(None, True, None, "unknown")
        floor, rule = date(*max(months), 1), "text_year"
    post = _closest_post_date(yearless, floor, min(known) if known else None)
    if post is None:  # only 2月29日, and no leap year in reach of the text's month
        return PostDate(None, True, None, "unknown")
    return PostDate(post, True, post.year, rule)


def _earliest_placed(e: date, keys: list[tuple[int, int]]) -> date | None:
    """The earliest of the year-less dates when each is placed on or before e: the first key after
    e's month and day in the year before, else the first key in e's year."""
    k = bisect_right(keys, (e.month, e.day))
    for y, run in ((e.year - 1, keys[k:]), (e.year, keys[:k])):
        for m, d in run:
            if (x := safe_date(y, m, d)) is not None:
                return x
    return None


def _closest_post_date(keys: list[tuple[int, int]], floor: date, earliest_known: date | None) -> date | None:
    """The post date E ≥ floor that keeps every date of the post closest before it (see the module
    docstring); keys are the year-less (month, day) pairs, sorted."""
    candidates = [floor] if earliest_known is not None else []
    candidates += [x for y in (floor.year, floor.year + 1) for m, d in keys
                   if (x := safe_date(y, m, d)) is not None and x >= floor]
    leap_day = (2, 29) in keys

    def score(e: date) -> tuple[bool, int, date]:
        lows = [x for x in (_earliest_placed(e, keys), earliest_known) if x is not None]
        # a 2月29日 that would land in a common year is a date the reading cannot place: avoid it
        unplaced = leap_day and not isleap(e.year if (e.month, e.day) >= (2, 29) else e.year - 1)
        return unplaced, (e - min(lows)).days if lows else 0, e

    return min(candidates, key=score, default=None)


def resolve(parts: DateParts | None, post: PostDate) -> tuple[date | None, bool, str | None]:
    """(date, year_inferred, problem) for one attribution or citation date."""
    if parts is None:
        return None, False, None
    if parts.year is not None:
        d = safe_date(parts.year, parts.month, parts.day)
        return d, False, None if d else "impossible_date"
    if safe_date(2000, parts.month, parts.day) is None:  # no year has it (2000 was a leap year)
        return None, False, "impossible_date"
    if post.year is None:
        return None, False, "year_unknown"
    y = post.year
    if post.date is not None and (parts.month, parts.day) > (post.date.month, post.date.day):
        y -= 1  # the latest occurrence on or before the post
    d = safe_date(y, parts.month, parts.day)
    return (d, True, None) if d else (None, False, "impossible_date")
