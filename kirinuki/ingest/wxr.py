"""WXR: a WordPress export (RSS 2.0 with WordPress's `wp:` elements) read as its published posts.

In: the decoded export (`Source`). Out: one `Source` per item that is a published post
(`wp:post_type` post, `wp:status` publish): its `content:encoded` as lines (block-editor comments
vanish; classic-editor text has its newlines converted as WordPress shows them), its title,
`<link>`, categories and tags (told apart by the category's `domain`), `wp:post_date` (the site's
local time) with its UTC offset from `wp:post_date_gmt`. Pages, attachments, menu items and drafts
are `Reject`s saying what they are; comments and the channel's own elements are never post text.

The XML is parsed with defusedxml: a DTD's entities (billion laughs, external files) are refused,
never expanded. Items are read one at a time, so an export cut off mid-file keeps its complete items
and the rest is one reject saying where the XML broke. A large export is read in shares (runs of
items, in order) by several workers; each share parses the XML and converts only its own items.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from kirinuki.ingest.html_lines import html_to_lines
from kirinuki.ingest.model import Entry, Metadata, Reject, Source, share_range
from kirinuki.ingest.mtif import entry_fingerprint
from kirinuki.ingest.sources import over_budget

CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
WP_NS_PREFIX = "http://wordpress.org/export/"  # /1.0/, /1.1/, /1.2/; excerpts are /1.2/excerpt/
_NO_DATE = "0000-00-00 00:00:00"


def _local(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag."""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def item_fields(item: Element) -> dict:
    """What kirinuki reads of one <item>, as plain values."""
    out: dict = {"categories": [], "tags": []}
    for child in item:
        ns, name = _local(child.tag)
        text = (child.text or "").strip() if name != "encoded" else (child.text or "")
        if not ns and name in ("title", "link"):
            out[name] = text
        elif not ns and name == "category":
            kind = child.get("domain", "category")
            if text and kind in ("category", "post_tag"):
                (out["categories"] if kind == "category" else out["tags"]).append(text)
        elif ns == CONTENT_NS and name == "encoded":
            out["content"] = text
        elif ns.startswith(WP_NS_PREFIX) and "excerpt" not in ns and name in (
                "post_id", "post_date", "post_date_gmt", "post_name", "status", "post_type"):
            out[name] = text
    return out


def _published(fields: dict) -> tuple[datetime | None, int | None]:
    try:
        local = datetime.strptime(fields.get("post_date", ""), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None, None
    gmt = fields.get("post_date_gmt", "")
    try:
        offset = round((local - datetime.strptime(gmt, "%Y-%m-%d %H:%M:%S")).total_seconds() / 60)
    except ValueError:
        offset = None
    return local, offset if gmt and gmt != _NO_DATE and abs(offset or 0) <= 18 * 60 else None


def identity(fields: dict) -> str:
    """A post's identity across exports of the site: its post id, else its link, else a digest."""
    if fields.get("post_id"):
        return f"post-{fields['post_id']}"
    if fields.get("link"):
        return fields["link"]
    key = f"{fields.get('post_date', '')}\0{fields.get('title', '')}".encode()
    return "item-" + hashlib.sha256(key).hexdigest()[:12]


def entry_sources(src: Source, keep_drafts: bool = False, share: tuple[int, int] = (0, 1)) -> list[Source | Reject]:
    """Each published post of the export `src`, or a reject saying why an item is not one. With
    `share` (k, n), only the k-th of n runs of items (share_range)."""
    items: list[dict] = []
    broken: Reject | None = None
    try:
        for _, el in SafeET.iterparse(io.StringIO(src.text), events=("end",)):
            if _local(el.tag) == ("", "item"):
                items.append(item_fields(el))
                el.clear()
    except DefusedXmlException as e:
        if share[0]:
            return []
        return [Reject(src.rel, "unsafe_xml", f"the export declares XML entities or a DTD ({type(e).__name__}); "
                                              "kirinuki does not expand them: remove the DOCTYPE", src.sha256, src.size)]
    except ParseError as e:
        line, col = e.position
        read = f"its first {len(items)} items are read" if items else "no item could be read"
        broken = Reject(f"{src.rel}#after-{len(items)}", "malformed_entry",
                        f"the export's XML breaks at line {line}, column {col}; {read}; re-export the site",
                        src.sha256, src.size, len(items) + 1)
    mine = share_range(len(items), share)
    seen: dict[str, int] = {}
    for number, f in enumerate(items[: mine.start], 1):
        seen.setdefault(identity(f), number)
    out = [_item(src, f, i + 1, seen, keep_drafts) for i, f in zip(mine, items[mine.start : mine.stop])]
    last = share[0] == share[1] - 1
    if broken is not None and last:
        out.append(broken)
    if not items and broken is None and last:
        out.append(Reject(src.rel, "empty", "WordPress export with no items", src.sha256, src.size))
    return out


def _item(src: Source, f: dict, number: int, seen: dict[str, int], keep_drafts: bool) -> Source | Reject:
    ident = identity(f)
    raw = json.dumps(f, ensure_ascii=False, sort_keys=True).encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    where = f"{src.rel}#{ident}"

    def refuse(code: str, reason: str, at: str = where) -> Reject:
        return Reject(at, code, reason, digest, len(raw), number)

    kind, status = f.get("post_type", ""), f.get("status", "")
    if ident in seen:
        return refuse("duplicate_entry", f"item {number} has the identity of item {seen[ident]} ({ident})",
                      f"{where}@{number}")
    seen[ident] = number
    if kind != "post":
        return refuse("not_a_post", f"item {number} has wp:post_type {kind or '(none)'}; only posts are read "
                                    "(not pages, attachments or menu items)")
    draft = status == "draft"
    if status != "publish" and not (draft and keep_drafts):
        return refuse("draft", f"item {number} has wp:status {status or '(none)'}; only published posts are read")
    content = f.get("content", "")
    lines = html_to_lines(content, convert_breaks="<!-- wp:" not in content)  # classic posts: wpautop's newlines
    if not lines.strip():
        return refuse("empty", f"item {number}: content:encoded has no text")
    if over := over_budget(lines):
        return refuse("over_budget", f"item {number}: {over}")
    published, offset = _published(f)
    if f.get("post_date") and published is None:
        return refuse("malformed_entry", f"item {number}: wp:post_date {f['post_date']!r} is not YYYY-MM-DD hh:mm:ss")
    meta = Metadata(published.date() if published else None, f.get("title") or None, None)
    info = Entry("wxr", ident, number, f.get("link") or None, tuple(dict.fromkeys(f["categories"])),
                 tuple(dict.fromkeys(f["tags"])), published, offset)
    return Source(src.rel, lines, digest, len(raw), src.encoding, src.newline, meta,
                  src.notes + (("draft",) if draft else ()), entry_fingerprint(digest, keep_drafts, src.encoding, src.newline, src.notes), info)
