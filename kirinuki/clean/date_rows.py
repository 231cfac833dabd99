"""The date_mentions rows of one document.

In: a document row, its excerpt rows and its paragraph rows (as parse wrote them). Out: one row
per date expression, in the order of the post: headlines (paragraph_id NULL, context `headline`)
and paragraphs (context `paragraph`). Offsets point into the decoded post, also for hard-wrapped
paragraphs whose lines were joined (`wrapped_offsets` maps them back). A mention inside a paragraph (or headline) that repeats an
earlier one of the post gets `repeat_of`, the id of the same expression in the first copy, so
counts can leave repeats out.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date

from kirinuki.clean.date_mentions import Run


def mention_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-d{ordinal:05d}"


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


def date_mention_rows(doc: dict, excerpts: list[dict], paragraphs: list[dict]) -> list[dict]:
    text = doc["text"]
    post_date: date | None = doc["published_date"]
    article = {e["excerpt_id"]: e["published_date"] for e in excerpts}
    spans = sorted((p["char_start"], p["char_end"]) for p in paragraphs)
    pieces: list[tuple[int, int, dict]] = [(p["char_start"], 1, p) for p in paragraphs]
    for e in excerpts:
        at = _headline_start(text, e, spans)
        if at is not None:
            pieces.append((at, 0, {"headline_of": e, "char_start": at, "text": e["headline"]}))
    pieces.sort(key=lambda t: (t[0], t[1]))

    out: list[dict] = []
    seen: dict[str, dict[tuple[int, str], str]] = {}  # paragraph or excerpt id → (offset, raw) → mention id
    run_key: object = object()
    run = Run(None)
    for _, _, piece in pieces:
        if "headline_of" in piece:
            ex = piece["headline_of"]
            key, repeats = ex["excerpt_id"], ex.get("duplicate_of")
            anchor = article.get(key) or post_date
            r, at = Run(anchor), None
            paragraph_id, excerpt_id, context = None, key, "headline"
        else:
            p = piece
            if p.get("line_end", p["line_no"]) != p["line_no"]:  # joined lines: map back through the breaks
                at = wrapped_offsets(text[p["char_start"]:p["char_end"]], p["text"])
            else:
                at = None
            if p["excerpt_id"] != run_key:
                run_key = p["excerpt_id"]
                run = Run(article.get(run_key) or post_date)
            r, key, repeats = run, p["paragraph_id"], p.get("duplicate_of")
            paragraph_id, excerpt_id, context = key, p["excerpt_id"], "paragraph"
        body = piece["text"]
        lead = len(body) - len(body.lstrip())
        mine = seen.setdefault(key, {})
        earlier = seen.get(repeats, {}) if repeats else {}
        for m in r.mentions(body):
            n = len(out) + 1
            mid = mention_id(doc["doc_id"], n)
            mine[(m.start - lead, m.raw)] = mid
            anchor_kind = None
            if r.anchor is not None:
                anchor_kind = "article" if excerpt_id and article.get(excerpt_id) else "post"
            out.append({
                "mention_id": mid, "doc_id": doc["doc_id"], "source_sha256": doc["source_sha256"],
                "paragraph_id": paragraph_id, "excerpt_id": excerpt_id, "context": context, "ordinal": n,
                "char_start": piece["char_start"] + (at[m.start] if at else m.start),
                "char_end": piece["char_start"] + (at[m.end - 1] + 1 if at else m.end),
                "raw": m.raw, "kind": m.kind, "date_start": m.date_start, "date_end": m.date_end,
                "granularity": m.granularity, "anchor": r.anchor, "anchor_kind": anchor_kind,
                "rule": m.rule, "repeat_of": earlier.get((m.start - lead, m.raw)),
            })
    return out
