"""The mentions rows of one document: every country, group, organisation and person it names.

In: a document row and its pieces (clean.pieces.text_pieces). Out: one row per
entity mention (clean.entities) in the order of the post, in the same pieces as the date mentions
(clean.pieces): excerpts' headlines (paragraph_id NULL, context `headline`) and paragraphs. The
post's text is read once, whole, and each mention given to the piece whose span holds it (one call a
post instead of one a paragraph, and a name is never read across a joined line break), so text[char_start:char_end] is always the surface. A mention inside a paragraph (or
headline) that repeats an earlier one of the post gets `repeat_of`, the id of the same mention in
the first copy, so counts can leave repeats out.
"""

from __future__ import annotations

from kirinuki.clean.entities import find_entities
from kirinuki.clean.pieces import Piece


def entity_mention_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-e{ordinal:05d}"


def entity_mention_rows(doc: dict, pieces: list[Piece]) -> list[dict]:
    found = find_entities(doc["text"])
    if not found:
        return []
    out: list[dict] = []
    seen: dict[str, dict[tuple[int, str], str]] = {}  # paragraph or excerpt id → (offset, surface) → id
    rest = iter(pieces)
    piece = next(rest, None)
    for m in found:  # both in the order of the post: one pass
        while piece is not None and piece.char_end <= m.start:
            piece = next(rest, None)
        if piece is None:
            break
        if m.start < piece.char_start or m.end > piece.char_end:
            continue  # outside every piece (a frame line, a blank) or across two
        at = (m.start - piece.char_start - piece.lead, m.surface)
        mine = seen.setdefault(piece.key, {})
        earlier = seen.get(piece.repeats, {}) if piece.repeats else {}
        n = len(out) + 1
        mine[at] = mid = entity_mention_id(doc["doc_id"], n)
        out.append({
            "mention_id": mid, "doc_id": doc["doc_id"], "source_sha256": doc["source_sha256"],
            "paragraph_id": piece.paragraph_id, "excerpt_id": piece.excerpt_id, "context": piece.context,
            "ordinal": n, "char_start": m.start, "char_end": m.end, "surface": m.surface,
            "entity_id": m.entity_id, "kind": m.kind, "rule": m.rule, "repeat_of": earlier.get(at),
        })
    return out
