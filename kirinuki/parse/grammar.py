"""Parse: the clipping-post grammar, from LF-normalised text to paragraphs, excerpts and citations.

One line is one paragraph. Every element keeps character offsets into the text it was parsed from,
so `text[p.start:p.end] == p.text` for every paragraph. Parsing never raises on odd input: what
does not fit the grammar is kept (as commentary or body) and flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kirinuki.parse.scan import caption_parts, citation_spans, headline, is_close_line, trailing_brackets

# Digits may be ASCII or full-width; dates may carry a weekday: 2023年11月9日(木).
_D = "[0-9０-９]"
DATE = (
    rf"(?:(?P<y>{_D}{{4}})年\s*)?(?P<m>{_D}{{1,2}})月\s*(?P<d>{_D}{{1,2}})日"
    r"(?:\s*[(（][月火水木金土日][)）])?"
)
_DATE_RE = re.compile(DATE)
HEADING_RE = re.compile(r"^【(?P<h>[^【】]+)】$")
LEAD_RE = re.compile(r"^[<＜](?P<lead>.+)[>＞]$")
ELISION_RE = re.compile(r"[(（](?:中略|後略|前略)[)）]")
_AUTHOR_RE = re.compile(r"^(?P<author>[^\s“”「」]{1,20}?\s*(?:氏|さん))(?:\s+|(?=\S))(?P<outlet>.*)$")
_TITLE_QUOTES = (("“", "”"), ("『", "』"), ("「", "」"), ('"', '"'))
_VISIBLE = re.compile(r"[^\s\u200b-\u200f\u2060-\u2064\ufeff]")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")

SUBHEADING_MAX_CHARS = 40
DATELESS_ATTRIBUTION_MAX_CHARS = 40


@dataclass(slots=True)
class DateParts:
    raw: str
    year: int | None
    month: int
    day: int


@dataclass(slots=True)
class Source_:
    """Outlet / author / title parsed from the text after a date, as written."""

    outlet: str | None
    author: str | None
    title: str | None


@dataclass(slots=True)
class Attribution:
    raw: str
    start: int
    end: int
    date: DateParts | None
    outlet: str | None
    author: str | None
    title: str | None


@dataclass(slots=True)
class Paragraph:
    ordinal: int
    line_no: int
    role: str
    start: int
    end: int
    text: str
    excerpt: int | None = None  # excerpt ordinal
    elision: bool = False
    duplicate_of: int | None = None  # paragraph ordinal
    line_end: int | None = None  # last line of a hard-wrapped paragraph (None: line_no)


@dataclass(slots=True)
class Excerpt:
    ordinal: int
    start: int
    end: int
    headline: str
    lead: str | None = None
    paragraphs: list[int] = field(default_factory=list)  # paragraph ordinals
    attribution: Attribution | None = None
    body: str = ""
    elided: bool = False
    duplicate_of: int | None = None  # excerpt ordinal
    flags: list[str] = field(default_factory=list)
    open_rule: str = "frame"  # the convention's rule that found the quote's start
    close_rule: str = "close_line"  # ... and its end
    url: str | None = None  # the article's URL, when a URL line belongs to the quote
    dateline: tuple[str, str] | None = None  # (as written, outlet as written) opening its first paragraph
    line_no: int = 0  # the line that opened it


@dataclass(slots=True)
class Citation:
    ordinal: int
    paragraph: int
    raw: str
    start: int
    end: int
    date: DateParts
    outlet: str | None
    author: str | None
    title: str | None


@dataclass(slots=True)
class Caption:
    text: str
    date: DateParts | None
    outlet: str | None


@dataclass(slots=True)
class ParsedPost:
    paragraphs: list[Paragraph]
    excerpts: list[Excerpt]
    citations: list[Citation]
    caption: Caption | None
    flags: list[str]

    @property
    def headings(self) -> list[Paragraph]:
        return [p for p in self.paragraphs if p.role == "heading"]


def date_parts(m: re.Match) -> DateParts:
    y = m.group("y")
    return DateParts(
        m.group(0),
        int(y.translate(_FULLWIDTH_DIGITS)) if y else None,
        int(m.group("m").translate(_FULLWIDTH_DIGITS)),
        int(m.group("d").translate(_FULLWIDTH_DIGITS)),
    )


def split_source(rest: str) -> Source_:
    """`[author氏] outlet[“title”]` -> parts, each as written, honorific included (None when absent)."""
    rest = rest.strip()
    title = None
    for open_q, close_q in _TITLE_QUOTES:
        i = rest.find(open_q)
        j = rest.rfind(close_q)
        if i >= 0 and j > i:
            title = rest[i + 1 : j].strip() or None
            rest = (rest[:i] + rest[j + 1 :]).strip()
            break
    author = None
    m = _AUTHOR_RE.match(rest)
    if m and m.group("outlet").strip():
        author = m.group("author")
        rest = m.group("outlet").strip()
    return Source_(rest or None, author, title)


def find_attribution(text: str, offset: int) -> Attribution | None:
    """A trailing 【[date] outlet】 at the end of a paragraph (offset = where `text` starts)."""
    span = trailing_brackets(text)
    if span is None:
        return None
    start, end = span
    inner = text[start + 1 : end - 1]
    lead = len(inner) - len(inner.lstrip())
    dm = _DATE_RE.match(inner, lead)
    rest = (inner[dm.end():] if dm else inner).strip()
    if dm is None and (not rest or len(rest) > DATELESS_ATTRIBUTION_MAX_CHARS or "。" in rest):
        return None
    src = split_source(rest)
    return Attribution(text[start:end], offset + start, offset + end, date_parts(dm) if dm else None,
                       src.outlet, src.author, src.title)


def find_citations(text: str, offset: int) -> list[tuple[int, int, DateParts, Source_]]:
    return [(offset + s, offset + e, date_parts(d), split_source(rest))
            for s, e, d, rest in citation_spans(text, _DATE_RE)]


def _is_subheading(text: str) -> bool:
    return (
        len(text) <= SUBHEADING_MAX_CHARS
        and "。" not in text
        and not ELISION_RE.search(text)
        and not text.endswith(("、", "，", ","))
    )


class Builder:
    def __init__(self, text: str, source_of=None):
        self.text = text
        self.source_of = source_of  # line -> Attribution of a stand-alone source line (other frame conventions)
        self.paragraphs: list[Paragraph] = []
        self.excerpts: list[Excerpt] = []
        self.citations: list[Citation] = []
        self.caption: Caption | None = None
        self.flags: list[str] = []
        self.open: Excerpt | None = None
        self.last_end = 0  # end offset of the last non-blank content

    def add_paragraph(self, line_no: int, role: str, start: int, end: int) -> Paragraph:
        t = self.text[start:end]
        p = Paragraph(len(self.paragraphs) + 1, line_no, role, start, end, t,
                      self.open.ordinal if self.open else None, bool(ELISION_RE.search(t)))
        self.paragraphs.append(p)
        if self.open:
            self.open.paragraphs.append(p.ordinal)
        return p

    def add_joined(self, line_no: int, role: str, start: int, end: int, text: str, line_end: int | None,
                   elision: bool) -> Paragraph:
        """A paragraph whose text is not the slice as it stands: hard-wrapped lines joined (other
        conventions), or with its own elision marks."""
        p = Paragraph(len(self.paragraphs) + 1, line_no, role, start, end, text,
                      self.open.ordinal if self.open else None, elision, line_end=line_end)
        self.paragraphs.append(p)
        if self.open:
            self.open.paragraphs.append(p.ordinal)
        return p

    def open_excerpt(self, start: int, end: int, headline: str, flags: list[str], line_no: int = 0,
                     open_rule: str = "frame") -> Excerpt:
        if self.open:
            self.close_excerpt(self.last_end, "reopened")
        self.open = Excerpt(len(self.excerpts) + 1, start, end, headline, flags=list(flags), open_rule=open_rule,
                            line_no=line_no)
        self.excerpts.append(self.open)
        return self.open

    def close_excerpt(self, end: int, flag: str | None = None, rule: str | None = None) -> None:
        ex = self.open
        assert ex is not None
        ex.end = end
        if flag:
            ex.flags.append(flag)
        ex.close_rule = rule or _CLOSE_RULES.get(flag, "close_line")
        if ex.attribution is None:
            ex.flags.append("no_attribution")
        self.open = None

    def excerpt_line(self, line_no: int, s: int, e: int) -> None:
        ex = self.open
        assert ex is not None
        content = self.text[s:e]
        if not ex.paragraphs and ex.lead is None and (m := LEAD_RE.match(content)):
            ex.lead = m.group("lead").strip()
            self.add_paragraph(line_no, "lead", s, e)
            return
        att = find_attribution(content, s)
        if att is None and self.source_of is not None and (att := self.source_of(content, s)) is not None:
            if ex.attribution is not None and att.raw != ex.attribution.raw:
                ex.flags.append("several_attributions")
            ex.attribution = att
            return
        if ex.attribution is not None and HEADING_RE.match(content) and (att is None or att.date is None):
            # A dateless 【…】 line after the attribution is a section heading: the closing * line
            # was forgotten.
            self.close_excerpt(self.last_end, "unterminated", "heading")
            self.paragraphs_line(line_no, s, e)
            return
        if att is not None and ex.attribution is not None and att.raw != ex.attribution.raw:
            ex.flags.append("several_attributions")
        if att is not None:
            ex.attribution = att
            e = s + len(content[: att.start - s].rstrip())
            if e <= s:  # the attribution stood on its own line
                return
        self.add_paragraph(line_no, "body", s, e)

    def paragraphs_line(self, line_no: int, s: int, e: int) -> None:
        content = self.text[s:e]
        if not self.paragraphs and self.caption is None and (cap := caption_parts(content)):
            credit, caption = cap
            dm = _DATE_RE.search(credit)
            src = split_source(credit[dm.end():] if dm else credit)
            self.caption = Caption(caption, date_parts(dm) if dm else None, src.outlet)
            self.add_paragraph(line_no, "caption", s, e)
            return
        if HEADING_RE.match(content):
            self.add_paragraph(line_no, "heading", s, e)
            return
        p = self.add_paragraph(line_no, "commentary", s, e)
        for cs, ce, d, src in find_citations(content, s):
            self.citations.append(Citation(len(self.citations) + 1, p.ordinal, self.text[cs:ce],
                                           cs, ce, d, src.outlet, src.author, src.title))


_CLOSE_RULES = {"reopened": "next_headline", "unterminated": "end_of_text"}


def parse(text: str, frame_chars: str = "*＊", skip: frozenset[int] = frozenset(), source_of=None) -> ParsedPost:
    """Parse one post. `text` must already be LF-normalised (ingest does that). `frame_chars` are
    the frame convention's characters (the seed's stars by default); lines in `skip` never open a
    quote; `source_of` reads stand-alone source lines as attributions."""
    b = Builder(text, source_of)
    pos = 0
    for line_no, line in enumerate(text.split("\n"), start=1):
        start, pos = pos, pos + len(line) + 1
        body = line.strip()
        if not body or not _VISIBLE.search(body):
            continue  # blank, or only invisible format characters (zero-width space, BOM …)
        s = start + (len(line) - len(line.lstrip()))
        e = s + len(body)
        if is_close_line(body, frame_chars):
            if b.open:
                b.close_excerpt(e)
            else:
                b.flags.append("stray_close_line")
        elif (h := headline(body, frame_chars)) and line_no not in skip:
            b.open_excerpt(s, e, h[0], [] if h[1] else ["headline_unframed"], line_no,
                           "frame" if h[1] else "frame_unclosed")
        elif b.open:
            b.excerpt_line(line_no, s, e)
        else:
            b.paragraphs_line(line_no, s, e)
        b.last_end = e
    if b.open:
        b.close_excerpt(b.last_end, "unterminated")
    return finish(b)


def finish(b: Builder) -> ParsedPost:
    """The post's records once every line is placed: repeats marked, excerpts' bodies joined."""
    _mark_duplicates(b.paragraphs)
    for ex in b.excerpts:
        _finish_excerpt(ex, b.paragraphs)
    _mark_duplicate_excerpts(b.excerpts)
    return ParsedPost(b.paragraphs, b.excerpts, b.citations, b.caption, b.flags)


def _mark_duplicates(paragraphs: list[Paragraph]) -> None:
    first: dict[str, int] = {}
    for p in paragraphs:
        if p.elision and not ELISION_RE.sub("", p.text).strip():
            continue  # a bare (中略) line repeats legitimately
        if p.text in first:
            p.duplicate_of = first[p.text]
        else:
            first[p.text] = p.ordinal


def _finish_excerpt(ex: Excerpt, paragraphs: list[Paragraph]) -> None:
    own = [paragraphs[o - 1] for o in ex.paragraphs]
    body = [p for p in own if p.role == "body"]
    # Short lines without a full stop are subheadings, unless they are the last line.
    for p in body[:-1]:
        if _is_subheading(p.text):
            p.role = "subheading"
    ex.elided = any(p.elision for p in own)
    members = set(ex.paragraphs)
    kept = [p.text for p in own if p.role not in ("lead", "note")
            and not (p.duplicate_of is not None and p.duplicate_of in members)]
    ex.body = "\n".join(kept)
    if ex.attribution is not None and ex.open_rule.startswith("frame"):
        last = max((p for p in own if p.duplicate_of is None), key=lambda p: p.start, default=None)
        if last is not None and last.start > ex.attribution.start:
            ex.flags.append("text_after_attribution")


def _mark_duplicate_excerpts(excerpts: list[Excerpt]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for ex in excerpts:
        key = (ex.headline, ex.body)
        if key in seen and ex.body:
            ex.duplicate_of = seen[key]
        else:
            seen.setdefault(key, ex.ordinal)
