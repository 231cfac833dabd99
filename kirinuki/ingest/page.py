"""A saved blog page: the post in it, and nothing of the page around it.

In: the decoded HTML of one page saved from a browser (`Source`). Out: one `Source` whose text is
the lines of the post's body element, with the post's title, time, canonical URL, categories and
tags; or a `Reject` (no_post_body) when no rule of input/reference/page_rules.toml finds the body.
Header, navigation, sidebar (which often repeats the title), ads, comments and footer lie outside
the body element and are never read; a rule's `drop` list removes what sits inside it but is not
the post (share buttons, related posts). Parsing is selectolax's Lexbor engine (C, HTML5 rules).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from kirinuki.ingest.html_lines import html_to_lines
from kirinuki.ingest.model import Entry, Metadata, Reject, Source
from kirinuki.ingest.sources import over_budget
from kirinuki.resources import folder

RULES_FILE = "page_rules.toml"
_JA_DATE = re.compile(r"(\d{4})\s*[年/.\-]\s*(\d{1,2})\s*[月/.\-]\s*(\d{1,2})日?(?:\D{0,12}?(\d{1,2})\s*[:時]\s*(\d{2}))?")


@dataclass(frozen=True)
class PageRule:
    name: str
    body: str
    drop: tuple[str, ...] = ()
    title: str = ""
    date: str = ""
    categories: str = ""
    tags: str = ""


@cache
def page_rules() -> tuple[PageRule, ...]:
    raw = tomllib.loads((folder("reference") / RULES_FILE).read_text(encoding="utf-8"))
    return tuple(PageRule(**{**r, "drop": tuple(r.get("drop", ()))}) for r in raw["rule"])


def _text(node: LexborNode | None) -> str:
    return " ".join((node.text(separator=" ") or "").split()) if node is not None else ""


def _first(tree: LexborHTMLParser, selector: str) -> LexborNode | None:
    return tree.css_first(selector) if selector else None


def _meta(tree: LexborHTMLParser, prop: str) -> str:
    node = tree.css_first(f'meta[property="{prop}"]') or tree.css_first(f'meta[name="{prop}"]')
    return (node.attributes.get("content") or "").strip() if node is not None else ""


def parse_time(value: str) -> tuple[datetime | None, int | None]:
    """ISO 8601 (with or without an offset) or a Japanese date such as 2024年06月12日 09:30: the
    local time and its UTC offset in minutes when the value gives one."""
    value = value.strip()
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        m = _JA_DATE.search(value)
        if not m:
            return None, None
        y, mo, d, h, mi = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0)), None
        except ValueError:
            return None, None
    offset = t.utcoffset()
    return t.replace(tzinfo=None), None if offset is None else round(offset.total_seconds() / 60)


def _links(tree: LexborHTMLParser, selector: str) -> tuple[str, ...]:
    if not selector:
        return ()
    return tuple(dict.fromkeys(t for n in tree.css(selector) if (t := _text(n))))


def page_source(src: Source) -> Source | Reject:
    """The post of the saved page `src` (see the module's docstring)."""
    tree = LexborHTMLParser(src.text)
    for rule in page_rules():
        body = _first(tree, rule.body)
        if body is not None:
            break
    else:
        return Reject(src.rel, "no_post_body", "saved page with no post body that a page rule knows (see "
                                               f"{RULES_FILE} in docs/inputs.md); the page is not read whole",
                      src.sha256, src.size)
    for selector in rule.drop:
        for node in body.css(selector):
            node.decompose()
    lines = html_to_lines(body.html or "")
    if not lines.strip():
        return Reject(src.rel, "empty", f"saved page ({rule.name}) whose post body has no text", src.sha256, src.size)
    if over := over_budget(lines):
        return Reject(src.rel, "over_budget", over, src.sha256, src.size)
    title = _text(_first(tree, rule.title)) or _meta(tree, "og:title") or _text(tree.css_first("title")) or None
    when = _first(tree, rule.date)
    stamp = ((when.attributes.get("datetime") or when.attributes.get("content") or _text(when))
             if when is not None else "") or _meta(tree, "article:published_time")
    published, offset = parse_time(stamp) if stamp else (None, None)
    canonical = tree.css_first('link[rel="canonical"]')
    url = ((canonical.attributes.get("href") or "").strip() if canonical is not None else "") or _meta(tree, "og:url")
    meta = Metadata(published.date() if published else None, title, None)
    info = Entry("html", None, None, url or None, _links(tree, rule.categories), _links(tree, rule.tags),
                 published, offset)
    return Source(src.rel, lines, src.sha256, src.size, src.encoding, src.newline, meta,
                  src.notes, src.fingerprint, info)
