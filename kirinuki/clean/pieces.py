"""The pieces of a post that mentions are read from: its paragraphs, and its excerpts' headlines.

In: a document row, its excerpt rows and its paragraph rows (as parse wrote them). Out: `Piece`s in
the order of the post — each excerpt's headline where it is written verbatim on the excerpt's first
line outside any paragraph (context `headline`), and every paragraph (context `paragraph`) — with a
map from the piece's characters back to the decoded post, also for hard-wrapped paragraphs whose
lines were joined. clean_document makes them once a post; date mentions (date_rows) and entity
mentions (entity_rows) are both read from them.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ is 3x slower, and pieces are made per paragraph)
class Piece:
    text: str
    char_start: int  # where text[0] stands in the post
    char_end: int  # where the piece's span of the post ends
    at: list[int] | None  # for joined lines: the offset in the post's span of each character
    key: str  # the paragraph's id, or the excerpt's for its headline
    repeats: str | None  # the key of the piece this one repeats (paragraphs' and excerpts' duplicate_of)
    paragraph_id: str | None
    excerpt_id: str | None
    context: str  # headline or paragraph

    @property
    def lead(self) -> int:
        """Leading whitespace: a repeat is matched by offsets after it."""
        return len(self.text) - len(self.text.lstrip())

    def start(self, i: int) -> int:
        """The post offset of the piece's character i."""
        return self.char_start + (self.at[i] if self.at else i)

    def end(self, j: int) -> int:
        """The post offset just after the piece's character j - 1."""
        return self.char_start + (self.at[j - 1] + 1 if self.at else j)


def _headline_start(text: str, ex: dict, spans: list[tuple[int, int]]) -> int | None:
    """Where the excerpt's headline is written on its first line, when it is written there
    verbatim and is not inside a paragraph row; None otherwise (nothing to point at)."""
    head = ex.get("headline")
    if not head:
        return None
    line_end = text.find("\n", ex["char_start"])
    at = text.find(head, ex["char_start"], len(text) if line_end < 0 else line_end)
    if at < 0:
        return None
    k = bisect_right(spans, (at, float("inf"))) - 1
    return None if k >= 0 and spans[k][0] <= at < spans[k][1] else at


_BREAK = " \t\u3000\n>＞"


def wrapped_offsets(source: str, joined: str) -> list[int]:
    """For a hard-wrapped paragraph: the offset in `source` (its span of the post) of each of
    `joined`'s characters. The join left out each line break with the indentation and quote prefix
    after it, and put one space between Latin letters: such a space maps to the break."""
    out, j, n = [], 0, len(source)
    for c in joined:
        if j < n and source[j] == c:
            out.append(j)
            j += 1
            continue
        k = j
        while k < n and source[k] in _BREAK and source[k] != c:
            k += 1
        if c == " ":
            out.append(j)
            while k < n and source[k] in _BREAK:
                k += 1
            j = k
        else:
            out.append(min(k, n - 1))
            j = k + 1
    return out


def text_pieces(doc: dict, excerpts: list[dict], paragraphs: list[dict]) -> list[Piece]:
    text = doc["text"]
    spans = sorted((p["char_start"], p["char_end"]) for p in paragraphs)
    order: list[tuple[int, int, Piece]] = []
    for p in paragraphs:
        at = None
        if p.get("line_end", p["line_no"]) != p["line_no"]:  # joined lines: map back through the breaks
            at = wrapped_offsets(text[p["char_start"]:p["char_end"]], p["text"])
        piece = Piece(p["text"], p["char_start"], p["char_end"], at, p["paragraph_id"], p.get("duplicate_of"),
                      p["paragraph_id"], p["excerpt_id"], "paragraph")
        order.append((p["char_start"], 1, piece))
    for e in excerpts:
        at = _headline_start(text, e, spans)
        if at is not None:
            piece = Piece(e["headline"], at, at + len(e["headline"]), None, e["excerpt_id"], e.get("duplicate_of"),
                          None, e["excerpt_id"], "headline")
            order.append((at, 0, piece))
    order.sort(key=lambda t: (t[0], t[1]))
    return [piece for _, _, piece in order]
