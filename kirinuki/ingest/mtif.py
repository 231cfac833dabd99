"""MTIF: a Movable Type Import/Export file split into its entries, each a post.

In: the decoded, LF-normalised text of one export file (what goo blog's 引越しデータ, Hatena, FC2,
livedoor and Movable Type write). Out: one `MtEntry` per entry, with its metadata, its post HTML
(BODY, then EXTENDED BODY: the post continues there), its comments kept apart from the post, and
where it lies in the export; or, for an entry that cannot be a post, the reason.

The format: entries end at a line of eight dashes, sections at a line of five; the first section
holds `KEY: value` lines, each later one opens with its name (`BODY:`, `COMMENT:` …). The split is
one pass over the lines. `entry_sources` turns the entries into posts. Comments are not read:
they are other people's words, not the post (docs/inputs.md).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from kirinuki.ingest.formats import ENTRY_END, HEAD_CHARS, export_in_bytes
from kirinuki.ingest.html_lines import html_to_lines
from kirinuki.ingest.model import Entry, Metadata, Reject, Source, share_range
from kirinuki.ingest.sources import over_budget

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
    # the extended body is a block of its own after the body (Movable Type's templates show it so)
    more = bodies.get("EXTENDED BODY")
    entry.body = bodies.get("BODY", "") + (f"<div>{more}</div>" if more else "")
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


def entry_sources(src: Source, keep_drafts: bool = False, share: tuple[int, int] = (0, 1)) -> list[Source | Reject]:
    """Each entry of the decoded export `src` as a post `Source` whose text is its BODY's lines
    (html_to_lines), or a `Reject` naming the entry and the reason. An entry's sha256 is over its
    lines in the export (decoded, LF-normalised, as UTF-8): adding or changing another entry
    leaves it as it was. With `share` (k, n), only the k-th of n runs of entries (share_range)."""
    out: list[Source | Reject] = []
    seen: dict[str, int] = {}
    entries = split_entries(src.text)
    mine = share_range(len(entries), share)
    for entry in entries[: mine.start]:  # identities the entries before this share took
        seen.setdefault(entry_identity(entry), entry.number)
    undecodable = {int(n[len(UNDECODABLE_NOTE):]) for n in src.notes if n.startswith(UNDECODABLE_NOTE)}
    notes = tuple(n for n in src.notes if not n.startswith(UNDECODABLE_NOTE))
    for entry in entries[mine.start : mine.stop]:
        raw = src.text[entry.start : entry.end].encode("utf-8")
        digest = hashlib.sha256(raw).hexdigest()
        ident = entry_identity(entry)
        where = f"{src.rel}#{ident}"

        def refuse(code: str, reason: str, where: str = where, digest: str = digest, size: int = len(raw),
                   number: int = entry.number) -> None:
            out.append(Reject(where, code, reason, digest, size, number))

        if ident in seen:
            refuse("duplicate_entry", f"entry {entry.number} has the identity of entry {seen[ident]} ({ident}); "
                                      "give it its own BASENAME", f"{where}@{entry.number}")
            continue
        seen[ident] = entry.number
        if entry.number in undecodable:
            refuse("malformed_entry", f"entry {entry.number} has bytes that are not valid {src.encoding}, the "
                                      "encoding of the export's other entries (re-save it in one encoding)")
            continue
        if entry.problem:
            refuse("malformed_entry", entry.problem)
            continue
        if entry.is_draft and not keep_drafts:
            refuse("draft", f"entry {entry.number} is a draft (STATUS: Draft), not a published post")
            continue
        convert = entry.fields.get("CONVERT BREAKS", "0").strip() not in ("0", "", "__default__")
        lines = html_to_lines(entry.body, convert_breaks=convert)
        if not lines.strip():
            refuse("empty", f"entry {entry.number}: the BODY has no text")
            continue
        if over := over_budget(lines):
            refuse("over_budget", f"entry {entry.number}: {over}")
            continue
        meta = Metadata(entry.published_at.date() if entry.published_at else None,
                        entry.fields.get("TITLE", "").strip() or None, None)
        info = Entry("mtif", ident, entry.number, None, tuple(entry.categories), tuple(entry.tags),
                     entry.published_at, None)
        out.append(Source(src.rel, lines, digest, len(raw), src.encoding, src.newline, meta,
                          notes + (("draft",) if entry.is_draft else ()),
                          entry_fingerprint(digest, keep_drafts, src.encoding, src.newline, notes), info))
    return out


def entry_fingerprint(digest: str, keep_drafts: bool, encoding: str, newline: str, notes: tuple[str, ...]) -> str:
    """The cache identity of an entry's rows: its hash, whether drafts are kept, and what its rows
    take from the export (its encoding, line endings, the decoding notes its rows carry)."""
    key = f"{digest}\0drafts={keep_drafts}\0{encoding}\0{newline}\0{notes}"
    return hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------- an export with bad bytes in some entries


UNDECODABLE_NOTE = "undecodable_entry:"


def decode_by_entry(data: bytes) -> tuple[str, str, tuple[str, ...]] | None:
    """An export the whole of which decodes in no supported encoding, read entry by entry: the
    encoding most entries decode in is the export's; an entry whose bytes are not valid in it is
    decoded with U+FFFD in their place and named in a note (its Source becomes a reject). None when
    the bytes do not look like an export or no entry decodes."""
    from kirinuki.ingest.sources import DecodeError, decode_with_notes

    if export_in_bytes(data[:HEAD_CHARS]) != "mtif":
        return None
    chunks: list[bytes] = []
    current: list[bytes] = []
    for line in data.split(b"\n"):
        current.append(line)
        if line.rstrip(b"\r") == ENTRY_END.encode():
            chunks.append(b"\n".join(current))
            current = []
    rest = b"\n".join(current)
    labels: list[str] = []
    for chunk in chunks + [rest]:
        try:
            labels.append(decode_with_notes(chunk + b"\n")[1] if chunk.strip() else "")
        except DecodeError:
            labels.append("")
    found = [x for x in labels if x and x not in ("utf-8-bom", "utf-16le", "utf-16be", "iso-2022-jp")]
    if not found:
        return None
    label = max(dict.fromkeys(found), key=found.count)
    codec = {"euc-jp": "euc_jp"}.get(label, label)
    texts, bad = [], []
    number = 0
    for i, chunk in enumerate(chunks + [rest]):
        lines_before_separator = chunk.split(b"\n")[:-1] if i < len(chunks) else chunk.split(b"\n")
        counted = bool(lines_before_separator) if i < len(chunks) else bool(chunk.strip())
        number += counted
        try:
            texts.append(chunk.decode(codec))
        except UnicodeDecodeError:
            texts.append(chunk.decode(codec, errors="replace"))
            if counted:
                bad.append(f"{UNDECODABLE_NOTE}{number}")
    return "\n".join(texts), label, tuple(bad)
