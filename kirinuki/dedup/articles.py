"""Articles: one record per cluster, and its text reconstructed from every quote of it.

In: a cluster's excerpts, its canonical excerpt and the boilerplate hashes. Out: the article row
(headline by majority, outlet, dates, counts) and its paragraphs in source order, each with the
excerpts that carry it (`_reconstruct`), as the article_paragraphs table's columns."""

from __future__ import annotations

from collections import Counter
from datetime import date

from kirinuki.dedup.minhash import key_hash, paragraph_key
from kirinuki.dedup.model import Excerpt


def _paragraph_columns(aid: str, paras: list[tuple[str, list[str]]]) -> dict[str, list]:
    """One article's reconstructed paragraphs as the article_paragraphs table's columns."""
    return {"article_id": [aid] * len(paras), "ordinal": list(range(1, len(paras) + 1)),
            "text_norm": [text for text, _ in paras], "contributed_by": [by for _, by in paras]}


def _article(aid: str, group: list[Excerpt], canon: Excerpt) -> dict:
    heads = Counter(e.headline for e in group)
    top = max(heads.values())
    headline = canon.headline if heads[canon.headline] == top else min(h for h, c in heads.items() if c == top)
    outlets = Counter(e.outlet_id for e in group if e.outlet_id)
    first = min(group, key=lambda e: (e.doc_published is None, e.doc_published or date.min, e.doc_id))
    return {"article_id": aid, "canonical_excerpt_id": canon.excerpt_id,
            "outlet_id": canon.outlet_id or (outlets.most_common(1)[0][0] if outlets else None),
            "published_date": canon.published, "headline": headline, "n_quotes": len(group),
            "n_documents": len({e.doc_id for e in group}), "first_quoted_in": first.doc_id}


def _content_lines(e: Excerpt) -> list[tuple[str, str]]:
    """(line, its paragraph key) for every line with content."""
    return [(line, k) for line in e.body_norm.split("\n") if (k := paragraph_key(line))]


def _grams(s: str) -> frozenset[str]:
    return frozenset({s[i : i + 3] for i in range(max(1, len(s) - 2))})


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    """3-gram Jaccard >= 0.7 (the bound on sizes first: it needs min/max >= 0.7)."""
    la, lb = len(a), len(b)
    if 10 * min(la, lb) < 7 * max(la, lb):
        return False
    inter = len(a & b)
    return 10 * inter >= 7 * (la + lb - inter)


def _reconstruct(group: list[Excerpt], canon: Excerpt, boiler: set[int]) -> list[tuple[str, list[str]]]:
    """Union of the quotes' paragraphs in source order, as (text, the quotes that carry it): start
    from the canonical quote, then merge every other quote (longest first). A line matches a
    paragraph exactly, or by 3-gram Jaccard >= 0.7 among the next few paragraphs after the last
    match (changed characters); an unmatched line is inserted after the last matched one. A quote
    none of whose lines match (re-flowed) adds no paragraphs."""
    if len(group) == 1:
        return [(line, [canon.excerpt_id]) for line, _ in _content_lines(canon)]
    base = [{"text": line, "key": k, "by": {canon.excerpt_id}} for line, k in _content_lines(canon)]
    grams: dict[str, frozenset[str]] = {}

    def gram(k: str) -> frozenset[str]:
        g = grams.get(k)
        if g is None:
            g = grams[k] = _grams(k)
        return g

    for e in sorted((e for e in group if e is not canon), key=lambda e: (-e.body_len, e.excerpt_id)):
        snapshot = list(base)
        index = {p["key"]: i for i, p in enumerate(snapshot)}
        plan: list[tuple[str, str, int | None]] = []
        last = -1
        for line, k in _content_lines(e):
            m = index.get(k)
            if m is None and len(k) >= 10:
                g = gram(k)
                for i in range(last + 1, min(last + 4, len(snapshot))):
                    if _similar(g, gram(snapshot[i]["key"])):
                        m = i
                        break
            if m is not None:
                last = m
            plan.append((line, k, m))
        if all(m is None for _, _, m in plan):
            continue
        prev = None
        for line, k, m in plan:
            if m is not None:
                prev = snapshot[m]
                prev["by"].add(e.excerpt_id)
            elif key_hash(k) not in boiler:
                new = {"text": line, "key": k, "by": {e.excerpt_id}}
                base.insert(base.index(prev) + 1 if prev is not None else 0, new)
                prev = new
    return [(p["text"], sorted(p["by"])) for p in base]
