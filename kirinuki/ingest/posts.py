"""A decoded input file as the posts it holds.

In: one decoded `Source` (a whole file). Out: its posts, each a `Source` of its own, and a `Reject`
for everything in it that is not a post, with the reason: a text file is one post; a Movable Type
export (mtif) or a WordPress export (wxr) is one post per published entry; a saved page (html) is
the post in it. The format is told by content (formats.detect_format).
"""

from __future__ import annotations

from kirinuki.ingest import mtif, page, wxr
from kirinuki.ingest.formats import detect_format
from kirinuki.ingest.model import Reject, Source


EXPORTS = ("mtif", "wxr")  # formats of many posts per file


def posts_of(src: Source, keep_drafts: bool = False) -> tuple[str, list[Source | Reject]]:
    """The file's format and what it holds."""
    fmt = detect_format(src.text)
    if fmt == "text":
        return fmt, [src]
    if fmt == "html":
        return fmt, [page.page_source(src)]
    if fmt == "xml":
        return fmt, [Reject(src.rel, "not_a_post", "XML that is not a WordPress export (WXR); kirinuki reads text posts, "
                                              "MTIF and WXR exports and saved pages", src.sha256, src.size)]
    found = (mtif if fmt == "mtif" else wxr).entry_sources(src, keep_drafts)
    return fmt, found or [Reject(src.rel, "empty", f"{fmt} export with no entries", src.sha256, src.size)]
