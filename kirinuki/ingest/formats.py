"""What kind of file a decoded input is, told by its content (the extension only breaks no tie).

In: the decoded, LF-normalised text of one input file. Out: its format name: `text` (one post,
the parser's own format), `mtif` (a Movable Type export: many posts), `wxr` (a WordPress export:
many posts), `html` (one saved blog page) or `xml` (XML that is no WordPress export: not a post).
Only the head of the text is looked at, so this costs nothing next to reading the file.
"""

from __future__ import annotations

import re

FORMATS = ("text", "mtif", "wxr", "html")
HEAD_CHARS = 20_000
ENTRY_END = "--------"
_MT_KEY = re.compile(r"^[A-Z][A-Z ]*[A-Z]:(?: .*)?$")
_LEADING_COMMENTS = re.compile(r"^(?:\s*<!--.*?-->)*\s*", re.S)


def looks_like_mtif(text: str) -> bool:
    """`KEY: value` lines first, a BODY section and an entry separator: a Movable Type export."""
    head = text[:HEAD_CHARS]
    first = head.split("\n", 1)[0].rstrip()
    return bool(_MT_KEY.match(first)) and "\nBODY:" in head and (
        f"\n{ENTRY_END}\n" in f"{head}\n" or head.rstrip().endswith(ENTRY_END))


def export_in_bytes(head: bytes) -> str | None:
    """`mtif` or `wxr` when a file's first bytes carry an export's markers (ASCII, so this holds in
    every ASCII-compatible encoding and needs no decoding), else None."""
    if b"\nBODY:" in head and b"\n" + ENTRY_END.encode() in head:
        return "mtif"
    if b"<rss" in head and b"xmlns:wp=" in head:
        return "wxr"
    return None


def detect_format(text: str, name: str = "") -> str:
    """One of FORMATS, or `xml` for XML that is not a WordPress export. The file's `name` breaks
    one tie: markup without <html> or <body> in a .html/.htm file is a page (a fragment)."""
    if looks_like_mtif(text):
        return "mtif"
    head = text[:HEAD_CHARS].lstrip("\ufeff")
    start = head[_LEADING_COMMENTS.match(head).end():][:HEAD_CHARS].lower()
    if start.startswith("<?xml") or start.startswith("<rss"):
        if "<rss" in start and ("xmlns:wp=" in start or "wordpress.org/export/" in start):
            return "wxr"
        if "<html" not in start:
            return "xml"
    if start.startswith(("<!doctype html", "<html", "<?xml")) or (start.startswith("<") and "<body" in start):
        return "html"
    if start.startswith("<") and name.lower().endswith((".html", ".htm")):
        return "html"
    return "text"
