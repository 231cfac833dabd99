"""Records: one parsed post -> rows of every table, with ids and provenance.

IDs are derived from the relative source path (for an export's entry: the export's path and the
entry's identity, never its position) and ordinals only, so the same input gives the same ids on
any machine and in any run.
"""

from __future__ import annotations

import hashlib

from kirinuki.ingest.sources import Reject, Source
from kirinuki.parse.detect import parse_post
from kirinuki.parse.grammar import Excerpt, ParsedPost
from kirinuki.parse.post_date import PostDate, infer_post_date, resolve

TableRows = dict[str, list[dict]]


def doc_id_for(source_path: str) -> str:
    return hashlib.sha256(f"doc:{source_path}".encode()).hexdigest()[:16]


def excerpt_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-e{ordinal:04d}"


def paragraph_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-p{ordinal:05d}"


def citation_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}-c{ordinal:04d}"


def empty_rows() -> TableRows:
    return {"documents": [], "excerpts": [], "paragraphs": [], "citations": [], "date_mentions": [], "mentions": []}


def post_date_of(parsed: ParsedPost, src: Source) -> PostDate:
    parts = [e.attribution.date for e in parsed.excerpts if e.attribution and e.attribution.date]
    parts += [c.date for c in parsed.citations]
    caption = parsed.caption.date if parsed.caption else None
    return infer_post_date(parts, src.text, src.meta.published_date, caption)


def outlet_of(ex: Excerpt) -> tuple[str | None, str | None]:
    """(outlet as written, where it was written): the attribution's, else the first paragraph's
    dateline's, else the host of the article's URL."""
    att = ex.attribution
    if att is not None and att.outlet:
        return att.outlet, "attribution"
    if ex.dateline is not None:
        return ex.dateline[1], "dateline"
    if ex.url is not None:
        from urllib.parse import urlsplit

        return urlsplit(ex.url).hostname, "url"
    return None, None


def source_rows(src: Source, convention: str | None = None) -> TableRows:
    """Parse one decoded source into its rows of every table (as written; clean adds the rest).
    `convention` pins the quoting convention; by default it is detected per post."""
    out = empty_rows()
    parsed, conv, conv_rule = parse_post(src.text, convention)
    doc = doc_id_for(src.key)
    sha = src.sha256
    post = post_date_of(parsed, src)
    doc_flags = list(dict.fromkeys(parsed.flags))
    if src.meta.error:
        doc_flags.append("metadata_invalid")
    doc_flags += list(src.notes)

    for ex in parsed.excerpts:
        att = ex.attribution
        d, inferred, problem = resolve(att.date if att else None, post)
        flags = list(ex.flags) + ([problem] if problem else [])
        outlet, outlet_from = outlet_of(ex)
        out["excerpts"].append({
            "excerpt_id": excerpt_id(doc, ex.ordinal), "doc_id": doc, "source_sha256": sha,
            "ordinal": ex.ordinal, "headline": ex.headline, "lead": ex.lead, "body": ex.body,
            "attribution_raw": att.raw if att else None,
            "date_raw": att.date.raw if att and att.date else None,
            "outlet_raw": outlet, "outlet_from": outlet_from, "author_raw": att.author if att else None,
            "article_title": att.title if att else None,
            "published_date": d, "date_inferred": inferred, "elided": ex.elided,
            "n_paragraphs": len(ex.paragraphs),
            "duplicate_of": excerpt_id(doc, ex.duplicate_of) if ex.duplicate_of else None,
            "char_start": ex.start, "char_end": ex.end,
            "attribution_start": att.start if att else None, "attribution_end": att.end if att else None,
            "flags": flags, "open_rule": ex.open_rule, "close_rule": ex.close_rule, "url": ex.url,
            "dateline_raw": ex.dateline[0] if ex.dateline else None,
        })
        if problem == "year_unknown" and "year_unknown" not in doc_flags:
            doc_flags.append("year_unknown")

    for p in parsed.paragraphs:
        out["paragraphs"].append({
            "paragraph_id": paragraph_id(doc, p.ordinal), "doc_id": doc, "source_sha256": sha,
            "excerpt_id": excerpt_id(doc, p.excerpt) if p.excerpt else None,
            "role": p.role, "ordinal": p.ordinal, "line_no": p.line_no, "line_end": p.line_end or p.line_no,
            "text": p.text,
            "char_start": p.start, "char_end": p.end, "elision": p.elision,
            "duplicate_of": paragraph_id(doc, p.duplicate_of) if p.duplicate_of else None,
        })

    for c in parsed.citations:
        d, inferred, problem = resolve(c.date, post)
        if problem == "year_unknown" and "year_unknown" not in doc_flags:
            doc_flags.append("year_unknown")
        out["citations"].append({
            "citation_id": citation_id(doc, c.ordinal), "doc_id": doc, "source_sha256": sha,
            "paragraph_id": paragraph_id(doc, c.paragraph), "ordinal": c.ordinal, "raw": c.raw,
            "date_raw": c.date.raw, "outlet_raw": c.outlet, "author_raw": c.author, "title": c.title,
            "published_date": d, "date_inferred": inferred, "char_start": c.start, "char_end": c.end,
        })

    headings = parsed.headings
    if src.meta.title:
        title, title_source = src.meta.title, "metadata"
    elif headings:
        title, title_source = headings[0].text[1:-1].strip(), "first_heading"
    else:
        title, title_source = None, None
    cap = parsed.caption
    cap_date = resolve(cap.date, post)[0] if cap and cap.date else None
    out["documents"].append({
        "doc_id": doc, "source_path": src.rel, "source_sha256": sha, "source_bytes": src.size,
        "encoding": src.encoding, "newline": src.newline, "n_chars": len(src.text),
        "title": title, "title_source": title_source,
        "published_date": post.date, "date_inferred": post.inferred if post.date else False,
        "year_rule": post.rule,
        "caption": cap.text if cap else None, "caption_outlet_raw": cap.outlet if cap else None,
        "caption_date": cap_date,
        "n_paragraphs": len(parsed.paragraphs), "n_excerpts": len(parsed.excerpts),
        "n_citations": len(parsed.citations), "meta_sha256": src.meta.sha256, "flags": doc_flags,
        "convention": conv, "convention_rule": conv_rule,
        **entry_columns(src),
    })
    return out


def entry_columns(src: Source) -> dict:
    """The documents columns that say which post of its file a document is, and its text."""
    e = src.entry
    return {"source_format": src.source_format, "entry_id": e.entry_id if e else None,
            "entry_position": e.position if e else None, "url": e.url if e else None,
            "categories": list(e.categories) if e else [], "tags": list(e.tags) if e else [],
            "published_at": e.published_at if e else None,
            "utc_offset_minutes": e.utc_offset_minutes if e else None, "text": src.text}


def reject_row(r: Reject) -> dict:
    return {"source_path": r.source_path, "code": r.code, "reason": r.reason,
            "source_sha256": r.source_sha256, "source_bytes": r.source_bytes, "entry_position": r.entry_position}
