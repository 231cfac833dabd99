"""Scan: the grammar's bracketed forms found in time linear in the line.

In: one line of a post (already stripped for the whole-line forms). Out: where a headline frame,
a trailing 【…】 attribution, a photo caption or an inline (date outlet) citation lies in it, or None.

These forms were regular expressions with lazy groups between runs of whitespace or stars, which
backtrack: a line of `【` and 2,000 spaces took minutes. Here each form is found with str methods
(strip, rfind, find) and anchored matches of DATE, whose own repeats sit between literal characters,
so no character is looked at more than a bounded number of times. Citations are bounded in length
(CITATION_MAX_CHARS): a citation is a date, an outlet and at most a title, never a paragraph.
"""

from __future__ import annotations

import re

_STARS = "*＊"
_OPEN_PAREN = re.compile("[(（]")
CITATION_MAX_CHARS = 400


def is_close_line(body: str, chars: str = _STARS) -> bool:
    """A line of three or more stars (or another convention's frame characters) and nothing else
    closes an excerpt."""
    return len(body) >= 3 and not body.strip(chars)


def headline(body: str, chars: str = _STARS) -> tuple[str, bool] | None:
    """`***headline***` -> (headline, True); `***headline` (no closing run) -> (headline, False).
    `body` is stripped and not a close line; a closing run needs three stars too."""
    rest = body.lstrip(chars)
    if len(body) - len(rest) < 3 or not rest.strip():
        return None
    inner = rest.rstrip(chars)
    if len(rest) - len(inner) >= 3 and inner.strip():
        return inner.strip(), True
    return rest.strip(), False


def trailing_brackets(text: str) -> tuple[int, int] | None:
    """(start, end) of a 【…】 that ends `text` (trailing whitespace aside) with no 【 or 】 inside."""
    end = len(text.rstrip())
    if end == 0 or text[end - 1] != "】":
        return None
    start = text.rfind("【", 0, end - 1)
    if start < 0 or text.find("】", start, end - 1) >= 0:
        return None
    return start, end


def caption_parts(body: str) -> tuple[str, str] | None:
    """`(【credit】 caption)` filling the whole line -> (credit, caption), as written."""
    if len(body) < 2 or body[0] not in "(（" or body[-1] not in ")）":
        return None
    inner = body[1:-1]
    j = len(inner) - len(inner.lstrip())
    if not inner.startswith("【", j):
        return None
    k = inner.find("】", j + 1)
    if k < 0 or inner.find("【", j + 1, k) >= 0:
        return None
    return inner[j + 1 : k], inner[k + 1 :].strip()


def citation_spans(text: str, date_re: re.Pattern) -> list[tuple[int, int, re.Match, str]]:
    """Every `(date rest)` in `text`: (start, end, date match, rest stripped). The rest holds no
    brackets or quote marks except whole “…” spans, which may hold anything but a line break."""
    out = []
    n = len(text)
    pos = 0
    while (o := _OPEN_PAREN.search(text, pos)) is not None:
        start = o.start()
        j = start + 1
        while j < n and text[j].isspace():
            j += 1
        d = date_re.match(text, j)
        end = _citation_end(text, d.end(), min(n, start + CITATION_MAX_CHARS)) if d else None
        if end is None:
            pos = start + 1
            continue
        out.append((start, end, d, text[d.end() : end - 1].strip()))
        pos = end
    return out


def _citation_end(text: str, k: int, limit: int) -> int | None:
    """The end of a citation whose rest starts at k, if its closing bracket lies before `limit`."""
    while k < limit:
        c = text[k]
        if c in ")）":
            return k + 1
        if c == "“":
            q = text.find("”", k + 1, limit)
            if q < 0 or text.find("\n", k + 1, q) >= 0:
                return None
            k = q + 1
            continue
        if c in "(（”\n":
            return None
        k += 1
    return None
