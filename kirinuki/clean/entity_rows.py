"""The mentions rows of one document: every country, group, organisation and person it names.

In: a document row, its excerpt rows and its paragraph rows (as parse wrote them). Out: one row per
entity mention (clean.entities) in the order of the post, read from the same pieces as the date
mentions (clean.pieces): excerpts' headlines (paragraph_id NULL, context `headline`) and paragraphs.
Offsets point into the decoded post: text[char_start:char_end] is the surface. A mention inside a
paragraph (or headline) that repeats an earlier one of the post gets `repeat_of`, the id of the same
mention in the first copy, so counts can leave repeats out.
"""

from __future__ import annotations

from kirinuki.clean.entities import find_entities
from kirinuki.clean.pieces import text_pieces


def entity_mention_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-e{ordinal:05d}"


def entity_mention_rows(doc: dict, excerpts: list[dict], paragraphs: list[dict]) -> list[dict]:
    out: list[dict] = []
    seen: dict[str, dict[tuple[int, str], str]] = {}  # paragraph or excerpt id → (offset, surface) → id
    for piece in text_pieces(doc, excerpts, paragraphs):
        lead = piece.lead
        mine = seen.setdefault(piece.key, {})
        earlier = seen.get(piece.repeats, {}) if piece.repeats else {}
        for m in find_entities(piece.text):
            n = len(out) + 1
            mid = entity_mention_id(doc["doc_id"], n)
            mine[(m.start - lead, m.surface)] = mid
            out.append({
                "mention_id": mid, "doc_id": doc["doc_id"], "source_sha256": doc["source_sha256"],
                "paragraph_id": piece.paragraph_id, "excerpt_id": piece.excerpt_id, "context": piece.context,
                "ordinal": n, "char_start": piece.start(m.start), "char_end": piece.end(m.end),
                "surface": m.surface, "entity_id": m.entity_id, "kind": m.kind, "rule": m.rule,
                "repeat_of": earlier.get((m.start - lead, m.surface)),
            })
    return out
