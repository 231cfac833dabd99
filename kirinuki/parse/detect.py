"""Detect: which declared convention a post quotes by, and its records under that convention.

In: LF-normalised post text and, optionally, the name of a pinned convention. Out: the
`ParsedPost`, the convention's name (None when no convention finds a quote) and the evidence: the
rules that opened its quotes, with counts (`frame×4`, `source_line×2 block_source×1`), prefixed
`pinned` when the user chose it.

Conventions are tried in the file's order. The seed's frame convention comes first: a post it finds
quotes in is parsed exactly as before and nothing else is tried. Otherwise every other convention
whose characters appear in the post is tried, a decisive one that finds a quote ends the search,
and the one that finds the most quotes wins (ties go to the earlier one). A post in which none
finds a quote keeps the seed grammar's records: all commentary.
"""

from __future__ import annotations

from collections import Counter

from kirinuki.parse.blocks import parse_block
from kirinuki.parse.conventions import Convention, Vocabulary, by_name, shipped
from kirinuki.parse.grammar import Attribution, ParsedPost, parse
from kirinuki.parse.post_lines import PostLines
from kirinuki.parse.source_lines import dateline, parse_source


def _frame(text: str, conv: Convention, voc: Vocabulary) -> ParsedPost:
    if conv.needs == "frame":
        return parse(text, conv.frame_chars)

    def source_of(content: str, s: int) -> Attribution | None:
        info = parse_source(content, voc, need_date=False)
        if info is None or (info.date is None and content[:1] not in "(（[［【"):
            return None
        return Attribution(content, s, s + len(content), info.date, info.outlet, info.author, None)

    parsed = parse(text, conv.frame_chars, source_of=source_of)
    weak = frozenset(ex.line_no for ex in parsed.excerpts if ex.attribution is None)
    if weak:  # a frame without an attribution is decoration here: read those lines again as text
        parsed = parse(text, conv.frame_chars, weak, source_of)
    return parsed


def _triggered(conv: Convention, text: str) -> bool:
    """A cheap test that the convention's characters occur at all (most conventions need some)."""
    if conv.shape == "frame":
        return any(c in text for c in conv.frame_chars)
    for rule in conv.open:
        if rule == "marker" and not any(m in text for m in conv.open_markers):
            continue
        if rule == "prefix" and not any(text.startswith(p) or "\n" + p in text for p in conv.prefixes):
            continue
        if rule == "brackets" and conv.open_char not in text:
            continue
        if rule == "bullet" and not any(c in text for c in conv.bullets):
            continue
        if rule == "headline_url" and "http" not in text:
            continue
        return True
    return False


def _under(conv: Convention, text: str, voc: Vocabulary,
           lines: PostLines | None) -> tuple[ParsedPost, PostLines | None]:
    if conv.shape == "frame":
        parsed = _frame(text, conv, voc)
    else:
        lines = lines or PostLines(text, voc)
        parsed = parse_block(lines, conv)
    if conv.needs != "frame":
        for ex in parsed.excerpts:
            first = next((p for o in ex.paragraphs if (p := parsed.paragraphs[o - 1]).role != "note"), None)
            if first is not None:
                ex.dateline = dateline(first.text)
    return parsed, lines


def evidence(parsed: ParsedPost) -> str:
    counts = Counter(ex.open_rule for ex in parsed.excerpts)
    return " ".join(f"{rule}×{n}" for rule, n in sorted(counts.items()))


Declared = tuple[tuple[Convention, ...], Vocabulary]


def parse_post(text: str, pinned: str | None = None,
               declared: Declared | None = None) -> tuple[ParsedPost, str | None, str | None]:
    """The post's records, the convention that found its quotes, and the evidence. `declared`
    replaces the shipped conventions (conventions.load of another file)."""
    conventions, voc = declared or shipped()
    if pinned is not None:
        conv = next((c for c in conventions if c.name == pinned), None) or by_name(pinned)
        parsed, _ = _under(conv, text, voc, None)
        return parsed, conv.name, " ".join(filter(None, ["pinned", evidence(parsed)]))
    seed = conventions[0]
    base, _ = _under(seed, text, voc, None)
    if base.excerpts:
        return base, seed.name, evidence(base)
    best: tuple[ParsedPost, Convention] | None = None
    lines = None
    for conv in conventions[1:]:
        if not _triggered(conv, text):
            continue
        parsed, lines = _under(conv, text, voc, lines)
        if parsed.excerpts and (best is None or len(parsed.excerpts) > len(best[0].excerpts)):
            best = (parsed, conv)
            if conv.decisive:
                break
    if best is None:
        return base, None, None
    return best[0], best[1].name, evidence(best[0])
