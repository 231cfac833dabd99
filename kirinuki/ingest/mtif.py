"""MTIF: a Movable Type Import/Export file split into its entries (issue 16, first part).

In: the decoded, LF-normalised text of one export file (what goo blog's 引越しデータ, Hatena, FC2,
livedoor and Movable Type write). Out: one `MtEntry` per entry, with its metadata, its post HTML
(BODY, then EXTENDED BODY: the post continues there), its comments kept apart from the post, and
where it lies in the export; or, for an entry that cannot be a post, the reason.

The format: entries end at a line of eight dashes, sections at a line of five; the first section
holds `KEY: value` lines, each later one opens with its name (`BODY:`, `COMMENT:` …). The split is
one pass over the lines. `entry_sources` turns the entries into posts. Not wired into the build
yet: discovery by content, the documents columns and per-entry caching come next.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from kirinuki.ingest.html_lines import html_to_lines
from kirinuki.ingest.sources import Metadata, Reject, Source

ENTRY_END = "--------"
SECTION_END = "-----"
TEXT_SECTIONS = ("BODY", "EXTENDED BODY", "EXCERPT", "KEYWORDS", "COMMENT", "PING")
_KEY_RE = re.compile(r"^([A-Z][A-Z ]*[A-Z]):(?: (.*))?$")
_DATE_RE = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?(?: ?([AP]M))?$")


@dataclass(frozen=True)
class MtComment:
    author: str | None
    date: datetime | None
    text: str


@dataclass
class MtEntry:
    number: int  # 1-based position in the export
    start: int  # character offsets of the entry's lines in the export text
    end: int
    fields: dict[str, str] = field(default_factory=dict)  # AUTHOR, TITLE, BASENAME, STATUS, DATE …
    categories: list[str] = field(default_factory=list)  # PRIMARY CATEGORY first, then CATEGORY lines
    tags: list[str] = field(default_factory=list)
    body: str = ""  # BODY and EXTENDED BODY, HTML as written
    excerpt: str | None = None
    keywords: str | None = None
    comments: list[MtComment] = field(default_factory=list)
    published_at: datetime | None = None  # the export's local time (MTIF carries no zone)
    problem: str | None = None  # why this entry cannot be a post

    @property
    def is_draft(self) -> bool:
        return self.fields.get("STATUS", "").strip().casefold() == "draft"


def looks_like_mtif(text: str) -> bool:
    """An export, told by content: `KEY: value` lines, a BODY section and an entry separator."""
    head = text[:20_000]
    return (f"\n{ENTRY_END}\n" in f"\n{head}\n" or head.rstrip().endswith(ENTRY_END)) and \
        "\nBODY:\n" in f"\n{head}" and bool(_KEY_RE.match(head.split("\n", 1)[0]))


def parse_date(value: str) -> datetime | None:
    """`MM/DD/YYYY hh:mm:ss`, 24-hour or with AM/PM (seconds optional); None when it is not one."""
    m = _DATE_RE.match(value.strip())
    if not m:
        return None
    month, day, year, hour, minute, second, half = m.groups()
    h = int(hour)
    if half:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if half == "PM" else 0)
    try:
        return datetime(int(year), int(month), int(day), h, int(minute), int(second or 0))
    except ValueError:
        return None


def split_tags(value: str) -> list[str]:
    """TAGS: comma-separated, a tag with spaces or commas in double quotes."""
    row = next(csv.reader([value], skipinitialspace=True), [])
    return [t.strip() for t in row if t.strip()]


def split_entries(text: str) -> list[MtEntry]:
    """Every entry of an export, in order; a last entry without its separator is still read."""
    entries: list[MtEntry] = []
    lines = text.split("\n")
    pos = 0
    block: list[tuple[int, str]] = []  # (offset, line) of the current entry
    for line in lines:
        if line.rstrip() == ENTRY_END:
            if block:
                entries.append(_entry(len(entries) + 1, block, pos))
            block = []
        else:
            block.append((pos, line))
        pos += len(line) + 1
    if any(line.strip() for _, line in block):
        entries.append(_entry(len(entries) + 1, block, len(text)))
    return entries


def _sections(block: list[tuple[int, str]]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for _, line in block:
        if line.rstrip() == SECTION_END:
            out.append([])
        else:
            out[-1].append(line)
    trimmed = []
    for section in out:
        while section and not section[0].strip():  # a blank line after a separator opens nothing
            section = section[1:]
        if section:
            trimmed.append(section)
    return trimmed


def _entry(number: int, block: list[tuple[int, str]], end: int) -> MtEntry:
    entry = MtEntry(number, block[0][0], min(end, block[-1][0] + len(block[-1][1])))
    sections = _sections(block)
    if not sections:
        entry.problem = "empty entry"
        return entry
    first_is_meta = sections[0][0].rstrip().rstrip(":") not in TEXT_SECTIONS
    for line in sections[0] if first_is_meta else []:
        m = _KEY_RE.match(line.rstrip())
        if not m:
            continue
        key, value = m.group(1), (m.group(2) or "").strip()
        if key in ("CATEGORY", "PRIMARY CATEGORY"):
            if value and value not in entry.categories:
                entry.categories.insert(0 if key == "PRIMARY CATEGORY" else len(entry.categories), value)
        elif key == "TAGS":
            entry.tags = split_tags(value)
        else:
            entry.fields.setdefault(key, value)
    bodies: dict[str, str] = {}
    for section in sections[1:] if first_is_meta else sections:
        name = section[0].rstrip().rstrip(":")
        if name not in TEXT_SECTIONS:
            continue
        content = "\n".join(section[1:]).strip("\n")
        if name == "COMMENT":
            entry.comments.append(_comment(section[1:]))
        elif name != "PING":
            bodies[name] = bodies.get(name, "") + content
    entry.body = "\n".join(x for x in (bodies.get("BODY"), bodies.get("EXTENDED BODY")) if x)
    entry.excerpt = bodies.get("EXCERPT") or None
    entry.keywords = bodies.get("KEYWORDS") or None
    if "DATE" in entry.fields:
        entry.published_at = parse_date(entry.fields["DATE"])
        if entry.published_at is None:
            entry.problem = f"entry {number}: DATE {entry.fields['DATE']!r} is not MM/DD/YYYY hh:mm:ss"
    if "BODY" not in bodies:
        entry.problem = f"entry {number}: no BODY section"
    elif not entry.body.strip():
        entry.problem = f"entry {number}: the BODY is empty"
    return entry


def _comment(lines: list[str]) -> MtComment:
    meta: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _KEY_RE.match(lines[i].rstrip())
        if not m or m.group(1) not in ("AUTHOR", "EMAIL", "URL", "IP", "DATE"):
            break
        meta[m.group(1)] = (m.group(2) or "").strip()
        i += 1
    return MtComment(meta.get("AUTHOR") or None, parse_date(meta.get("DATE", "")), "\n".join(lines[i:]).strip("\n"))


# ---------------------------------------------------------------- entries as posts


def entry_identity(entry: MtEntry) -> str:
    """What names an entry across exports of the same blog: its BASENAME, else a digest of its
    DATE and TITLE; never its position, so an entry added to a later export moves no other id."""
    basename = entry.fields.get("BASENAME", "").strip()
    if basename:
        return basename
    key = f"{entry.fields.get('DATE', '')}\0{entry.fields.get('TITLE', '')}".encode()
    return "entry-" + hashlib.sha256(key).hexdigest()[:12]


def entry_sources(rel: str, text: str, encoding: str, newline: str, keep_drafts: bool = False) -> list:
    """Each entry of the export at `rel` (its decoded text) as a post `Source` whose text is its
    BODY's lines (html_to_lines), or a `Reject` with the entry's number and the reason. An entry's
    sha256 is over its lines in the export, as UTF-8."""
    out: list = []
    seen: dict[str, int] = {}
    for entry in split_entries(text):
        raw = text[entry.start : entry.end].encode("utf-8")
        digest = hashlib.sha256(raw).hexdigest()
        ident = entry_identity(entry)
        where = f"{rel}#{ident}"
        if ident in seen:
            out.append(Reject(where, "duplicate_entry", f"entry {entry.number} has the identity of entry "
                                                         f"{seen[ident]} ({ident}); give it its own BASENAME",
                              digest, len(raw)))
            continue
        seen[ident] = entry.number
        if entry.problem:
            out.append(Reject(where, "malformed_entry", entry.problem, digest, len(raw)))
            continue
        if entry.is_draft and not keep_drafts:
            out.append(Reject(where, "draft", f"entry {entry.number} is a draft (STATUS: Draft), not a published post",
                              digest, len(raw)))
            continue
        convert = entry.fields.get("CONVERT BREAKS", "0").strip() not in ("0", "", "__default__")
        lines = html_to_lines(entry.body, convert_breaks=convert)
        if not lines.strip():
            out.append(Reject(where, "empty", f"entry {entry.number}: the BODY has no text", digest, len(raw)))
            continue
        meta = Metadata(entry.published_at.date() if entry.published_at else None,
                        entry.fields.get("TITLE") or None, None)
        out.append(Source(where, lines, digest, len(raw), encoding, newline, meta,
                          ("draft",) if entry.is_draft else (), digest))
    return out
