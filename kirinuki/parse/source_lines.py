"""Source lines, datelines and news URLs: the evidence that a run of lines is a quoted article.

In: one line of a post (or the bracketed tail of a headline). Out: what it says about a source, or
None. A source line is a date and an outlet from the register, and at most a short author, with
nothing else: `2011.6.18 産経ニュース`, `JB Press 2014.09.04(木) 姫田 小夏`, `(2022/1/24 時事通信)`,
`BBC News, 3 March 2024`. A sentence that mentions an outlet (`産経によると…`) is not one. A
dateline opens an article's first paragraph (`【ワシントン共同】`, `[東京 4日 ロイター] -`) and names
its outlet. A news URL is a line holding one link whose host is a register homepage's or one of
the vocabulary's news hosts.

Every pattern here is a bounded date form between literals, tried on lines of at most
SOURCE_MAX_CHARS characters, so a line costs time linear in its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kirinuki.clean.normalize import outlet_for_host, resolve_outlet
from kirinuki.parse.conventions import Vocabulary
from kirinuki.parse.grammar import DateParts

SOURCE_MAX_CHARS = 80
AUTHOR_MAX_CHARS = 20
DATELINE_MAX_CHARS = 24
_D = "[0-9０-９]"
_WEEKDAY = r"(?:\s?[(（][月火水木金土日](?:曜日?)?[)）])?"
_TIME = rf"(?:\s?{_D}{{1,2}}[:：]{_D}{{2}})?"
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MON = (r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
        r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_SOURCE_DATE = re.compile(
    rf"(?:(?P<y>{_D}{{4}})年\s?)?(?P<m>{_D}{{1,2}})月\s?(?P<d>{_D}{{1,2}})日{_WEEKDAY}{_TIME}"
    rf"|(?P<y2>{_D}{{4}})\s?[./\-／．]\s?(?P<m2>{_D}{{1,2}})\s?[./\-／．]\s?(?P<d2>{_D}{{1,2}})日?{_WEEKDAY}{_TIME}"
    rf"|(?P<d3>[0-9]{{1,2}})\s{_MON}\s(?P<y3>[0-9]{{4}})"
    rf"|{_MON.replace('mon', 'mon4')}\s(?P<d4>[0-9]{{1,2}}),?\s(?P<y4>[0-9]{{4}})",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"[\s、,，|｜/／:：]+")
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
_BRACKETS = {"(": ")", "（": "）", "[": "]", "［": "］", "【": "】", "〔": "〕", "<": ">", "＜": "＞"}
_DATELINE_OPEN = {"【": "】", "[": "]", "［": "］", "〔": "〕"}


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source line says: each part as written (None when absent)."""

    date: DateParts | None
    outlet: str
    author: str | None


def _date_of(m: re.Match) -> DateParts:
    g = m.groupdict()
    if g["m"]:
        y, mo, d = g["y"], g["m"], g["d"]
    elif g["m2"]:
        y, mo, d = g["y2"], g["m2"], g["d2"]
    else:
        mon = (g["mon"] or g["mon4"]).lower().rstrip(".")
        mo = str(next(i for i, name in enumerate(_MONTHS, 1) if name.startswith(mon[:3])))
        y, d = (g["y3"], g["d3"]) if g["mon"] else (g["y4"], g["d4"])
    return DateParts(m.group(0), int(y.translate(_FULLWIDTH)) if y else None, int(mo.translate(_FULLWIDTH)),
                     int(d.translate(_FULLWIDTH)))


def _outlet_in(part: str, voc: Vocabulary) -> tuple[str, str] | None:
    """(outlet as written, the rest) when `part` opens with a register outlet's name."""
    tokens = [t for t in _SPLIT.split(part) if t]
    for k in range(len(tokens), 0, -1):
        head = " ".join(tokens[:k])
        found = _resolves(head, voc)
        if found is not None:
            return found, " ".join(tokens[k:])
    return None


def _resolves(name: str, voc: Vocabulary) -> str | None:
    if resolve_outlet(name):
        return name
    for suffix in voc.outlet_suffixes:
        if name.endswith(suffix) and len(name) > len(suffix) and resolve_outlet(name[: -len(suffix)].rstrip()):
            return name
    return None


def parse_source(line: str, voc: Vocabulary, *, need_date: bool = True) -> SourceInfo | None:
    """The source a stand-alone source line names, or None. A bracketed or labelled line
    (`(共同通信)`, `出典：NHK`) may leave out the date unless `need_date`."""
    s = line.strip()
    if not s or len(s) > SOURCE_MAX_CHARS or "。" in s:
        return None
    marked = False
    close = _BRACKETS.get(s[0])
    if close and s.endswith(close):
        s, marked = s[1:-1].strip(), True
    for label in voc.source_labels:
        if s.startswith(label):
            s, marked = s[len(label):].strip(), True
            break
    m = _SOURCE_DATE.search(s)
    if m is None and (need_date and not marked):
        return None
    before, after = (s[: m.start()], s[m.end():]) if m else (s, "")
    before, after = before.strip(" \t　,、-―–—:："), after.strip(" \t　,、-―–—:：")
    found = _outlet_in(before, voc) if before else None
    author = after if found else None
    if found is None and after:
        found = _outlet_in(after, voc)
        author = before or None
    if found is None:
        return None
    outlet, rest = found
    author = " ".join(x for x in (rest, author) if x) or None
    if author and (len(author) > AUTHOR_MAX_CHARS or any(ch.isdigit() for ch in author)):
        return None
    return SourceInfo(_date_of(m) if m else None, outlet, author)


def trailing_source(line: str, voc: Vocabulary) -> tuple[int, SourceInfo] | None:
    """(where it starts, source) of a dated `(date outlet)` that ends `line`: a headline's source."""
    s = line.rstrip()
    if not s or s[-1] not in ")）】]":
        return None
    opener = {")": "(（", "）": "(（", "】": "【", "]": "[［"}[s[-1]]
    start = max(s.rfind(ch) for ch in opener)
    if start <= 0 or len(s) - start > SOURCE_MAX_CHARS:
        return None
    info = parse_source(s[start:], voc)
    if info is None or info.date is None:
        return None
    return start, info


def dateline(text: str) -> tuple[str, str] | None:
    """(dateline as written, outlet as written) when `text` opens with one: 【ロンドン時事】 → 時事,
    【AFP=時事】 → AFP (the agency that wrote it), [東京 4日 ロイター] → ロイター."""
    if not text or text[0] not in _DATELINE_OPEN:
        return None
    end = text.find(_DATELINE_OPEN[text[0]], 1, DATELINE_MAX_CHARS + 2)
    if end < 0:
        return None
    inner = text[1:end].strip()
    if not inner or "。" in inner:
        return None
    for sep in ("=", "＝"):
        if sep in inner:
            first, _, second = inner.partition(sep)
            for name in (first.strip(), second.strip()):
                if resolve_outlet(name):
                    return text[: end + 1], name
            return None
    for i in range(len(inner)):  # the longest tail that names an outlet; what precedes is the place
        tail = inner[i:].strip()
        if tail and resolve_outlet(tail):
            return text[: end + 1], tail
    return None


def news_url(line: str, voc: Vocabulary) -> tuple[str, str] | None:
    """(url, host) when the line is a link (optionally labelled: `出典：https://…`) to a news site."""
    s = line.strip()
    i = s.find("http")
    if i < 0 or i > 12 or " " in s[i:] or "　" in s[i:]:
        return None
    url = s[i:]
    try:
        host = (urlsplit(url).hostname or "").removeprefix("www.")
    except ValueError:
        return None
    if not host or not url.startswith(("http://", "https://")):
        return None
    if outlet_for_host(host) is None:
        return None
    return url, urlsplit(url).hostname or host


_SENTENCE = re.compile(r"[。！？]|[.!?](?=\s|$|[\"”'’)])")


def sentence_count(text: str) -> int:
    return len(_SENTENCE.findall(text))


def is_latin(text: str) -> bool:
    """Mostly Latin letters: an English line (digits, spaces and punctuation do not count)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    return sum(c.isascii() for c in letters) >= 0.8 * len(letters)


def indent_columns(line: str) -> int:
    n = 0
    for c in line:
        if c == " ":
            n += 1
        elif c == "\t":
            n += 4
        elif c == "　":
            n += 2
        else:
            break
    return n
