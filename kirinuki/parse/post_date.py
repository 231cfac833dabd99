"""Dates: the post's date and the year of year-less dates.

Japanese clipping posts write the year only for dates outside the post's own year, so
`【4月9日 Newsweek】` belongs to the post's year, which is rarely stated. Rules, in order:

- metadata: the sidecar gives the post date; a year-less date takes its year, or the year before
  when that would put it after the post.
- same_as_explicit / after_explicit: the latest explicitly-dated attribution or citation E fixes
  a base year (a photo-caption credit always carries its year, so it is not evidence here). Year-less dates take E's year when all of them then fall on or after E
  (the writer spelled out years out of habit); otherwise the next year (the writer spelled out the
  year because E lay in an earlier year than the post).
- text_year: no dated source or caption, but the text mentions `YYYY年M月`; the same test against
  the latest such month.
- caption_year: no dated source but the photo caption; the same test against the caption date.
- explicit_only: every date carries its year; nothing to decide.
- unknown: no evidence; year-less dates stay NULL and are flagged.

The year is never before the caption's year. An inferred post date is the latest date the post
quotes, cites or captions (it cannot predate them).
"""

from __future__ import annotations

import re
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
    yearless = [(p.month, p.day) for p in parts if p.year is None]
    cap = safe_date(caption.year, caption.month, caption.day) if caption and caption.year else None
    year: int | None = None
    if not yearless:
        rule = "explicit_only" if explicit or cap else "unknown"
    else:
        base, rule = _year_base(explicit, cap, text)
        if base is not None:
            fits = all((m, d) >= (base.month, base.day) for m, d in yearless)
            year = base.year if fits else base.year + 1
            if rule == "explicit":
                rule = "same_as_explicit" if fits else "after_explicit"
            if cap and cap.year > year:
                year = cap.year
    resolved = explicit + [d for m, dd in yearless if year and (d := safe_date(year, m, dd))]
    resolved += [cap] if cap else []
    post = max(resolved) if resolved else None
    return PostDate(post, True, year if yearless else (post.year if post else None), rule)


def _year_base(explicit: list[date], cap: date | None, text: str) -> tuple[date | None, str]:
    """The dated evidence that year-less dates are compared with, strongest first."""
    if explicit:
        return max(explicit), "explicit"
    if cap:
        return cap, "caption_year"
    months = [(int(y), int(m)) for y, m in _YEAR_MONTH_RE.findall(text) if 1 <= int(m) <= 12]
    if months:
        y, m = max(months)
        return date(y, m, 1), "text_year"
    return None, "unknown"


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
    d = safe_date(post.year, parts.month, parts.day)
    if d is None:
        return None, False, "impossible_date"
    if post.rule == "metadata" and post.date is not None and d > post.date:
        d = safe_date(post.year - 1, parts.month, parts.day)
        if d is None:
            return None, False, "impossible_date"
    return d, True, None
