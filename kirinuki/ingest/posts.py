"""A decoded input file as the posts it holds.

In: one decoded `Source` (a whole file). Out: its posts, each a `Source` of its own, and a `Reject`
for everything in it that is not a post, with the reason: a text file is one post; a Movable Type
export (mtif) or a WordPress export (wxr) is one post per published entry; a saved page (html) is
the post in it. The format is told by content (formats.detect_format). `export_shares` says into
how many runs of entries a large export may be split, so that several workers read it.
"""

from __future__ import annotations

from kirinuki.ingest import mtif, page, wxr
from kirinuki.ingest.formats import detect_format, export_in_bytes
from kirinuki.ingest.model import Reject, Source
from kirinuki.ingest.sources import over_budget


EXPORTS = ("mtif", "wxr")  # formats of many posts per file


def posts_of(src: Source, keep_drafts: bool = False, share: tuple[int, int] = (0, 1)) -> tuple[str, list[Source | Reject]]:
    """The file's format and what it holds (of an export: the entries of `share`, see share_range)."""
    fmt = detect_format(src.text, src.rel)
    if fmt == "text":  # what one post may cost: an export's entries and a page's post are held to it too
        over = over_budget(src.text)
        return fmt, [Reject(src.rel, "over_budget", over, src.sha256, src.size) if over else src]
    if fmt == "html":
        return fmt, [page.page_source(src)]
    if fmt == "xml":
        return fmt, [Reject(src.rel, "not_a_post", "XML that is not a WordPress export (WXR); kirinuki reads text posts, "
                                              "MTIF and WXR exports and saved pages", src.sha256, src.size)]
    found = (mtif if fmt == "mtif" else wxr).entry_sources(src, keep_drafts, share)
    if not found and share == (0, 1):
        found = [Reject(src.rel, "empty", f"{fmt} export with no entries", src.sha256, src.size)]
    return fmt, found


SHARE_BYTES = 4 * 2**20  # an export over this size is read in shares of about this size
_EXPORT_HEAD = 64 * 1024


def export_shares(path: str, size: int, most: int) -> int:
    """How many shares (1 to `most`) the file at `path` is read in: 1 unless it is an export (told
    by its first bytes: MTIF keys and separators, or WordPress's RSS) of more than SHARE_BYTES."""
    if size <= SHARE_BYTES or most <= 1:
        return 1
    try:
        with open(path, "rb") as f:
            head = f.read(_EXPORT_HEAD)
    except OSError:
        return 1
    return min(most, -(-size // SHARE_BYTES)) if export_in_bytes(head) else 1
