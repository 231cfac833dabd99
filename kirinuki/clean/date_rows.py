"""The date_mentions rows of one document.

In: a document row, its excerpt rows and its pieces (clean.pieces.text_pieces). Out: one row
per date expression, in the order of the post: headlines (paragraph_id NULL, context `headline`)
and paragraphs (context `paragraph`), read from clean.pieces. Offsets point into the decoded post,
also for hard-wrapped paragraphs whose lines were joined. A mention inside a paragraph (or headline) that repeats an
earlier one of the post gets `repeat_of`, the id of the same expression in the first copy, so
counts can leave repeats out.
"""

from __future__ import annotations

from datetime import date

from kirinuki.clean.date_mentions import Run
from kirinuki.clean.pieces import Piece


def mention_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-d{ordinal:05d}"


def date_mention_rows(doc: dict, excerpts: list[dict], pieces: list[Piece]) -> list[dict]:
    post_date: date | None = doc["published_date"]
    article = {e["excerpt_id"]: e["published_date"] for e in excerpts}
    out: list[dict] = []
    seen: dict[str, dict[tuple[int, str], str]] = {}  # paragraph or excerpt id → (offset, raw) → mention id
    run_key: object = object()
    run = Run(None)
    for piece in pieces:
        if piece.context == "headline":
            r = Run(article.get(piece.excerpt_id) or post_date)
        else:
            if piece.excerpt_id != run_key:
                run_key = piece.excerpt_id
                run = Run(article.get(run_key) or post_date)
            r = run
        excerpt_id, lead = piece.excerpt_id, piece.lead
        mine = seen.setdefault(piece.key, {})
        earlier = seen.get(piece.repeats, {}) if piece.repeats else {}
        for m in r.mentions(piece.text):
            n = len(out) + 1
            mid = mention_id(doc["doc_id"], n)
            mine[(m.start - lead, m.raw)] = mid
            anchor_kind = None
            if r.anchor is not None:
                anchor_kind = "article" if excerpt_id and article.get(excerpt_id) else "post"
            out.append({
                "mention_id": mid, "doc_id": doc["doc_id"], "source_sha256": doc["source_sha256"],
                "paragraph_id": piece.paragraph_id, "excerpt_id": excerpt_id, "context": piece.context, "ordinal": n,
                "char_start": piece.start(m.start), "char_end": piece.end(m.end),
                "raw": m.raw, "kind": m.kind, "date_start": m.date_start, "date_end": m.date_end,
                "granularity": m.granularity, "anchor": r.anchor, "anchor_kind": anchor_kind,
                "rule": m.rule, "repeat_of": earlier.get((m.start - lead, m.raw)),
            })
    return out
