"""Clean: normalised text, outlet ids, clean author names and resolved date mentions.

Pure functions over one document's rows. Every cleaned value is added beside its raw source;
nothing written in the post is changed or dropped. The rules live in data files under
input/reference/ (normalization.tsv, outlets.tsv, date_rules.tsv, date_lookahead.txt).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kirinuki.clean.date_rows import date_mention_rows
from kirinuki.clean.entity_rows import entity_mention_rows
from kirinuki.clean.pieces import text_pieces
from kirinuki.schema import REFERENCE

_HONORIFICS = ("氏", "さん", "様", "記者")


def read_tsv(path: Path) -> list[dict[str, str]]:
    """A reference TSV: '#' comment lines, a header, no quoting."""
    with path.open(encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


def _unescape(s: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})|\\t", lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\t", s)


@dataclass(frozen=True)
class NormRule:
    chars: str
    min_run: int
    to: str
    name: str
    why: str


@cache
def normalization_rules() -> tuple[NormRule, ...]:
    return tuple(NormRule(_unescape(r["from"]), int(r["min_run"]), _unescape(r["to"]), r["name"], r["why"])
                 for r in read_tsv(REFERENCE / "normalization.tsv"))


@cache
def _compiled() -> tuple[re.Pattern, dict[str, str], list[tuple[str, re.Pattern, str]]]:
    table: dict[str, str] = {}
    runs: list[tuple[str, re.Pattern, str]] = []  # (its characters, the run, what it becomes)
    for r in normalization_rules():
        if r.min_run == 1:
            table.update({c: r.to for c in r.chars})
        else:
            runs.append((r.chars, re.compile(f"[{re.escape(r.chars)}]{{{r.min_run},}}"), r.to))
    chars = re.compile("[" + re.escape("".join(table)) + "]")
    return chars, table, runs


def normalize(text: str) -> str:
    """NFKC, then the table in normalization.tsv, then whitespace runs collapsed and ends trimmed."""
    chars, table, runs = _compiled()
    t = text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    if chars.search(t):  # rare: map only where a listed character occurs
        t = chars.sub(lambda m: table[m.group()], t)
    for run_chars, pattern, to in runs:
        if any(c in t for c in run_chars):  # a substring test first: most texts hold none (5x faster)
            t = pattern.sub(to, t)
    # whitespace runs as one space, ends trimmed: str.split's whitespace is the regex's \s (both
    # are str.isspace), and splitting is 4x faster than a substitution
    return " ".join(t.split())


# ---------------------------------------------------------------- outlets


def outlet_key(name: str) -> str:
    """Matching key: normalised, case-folded, without spaces, middle dots, ! and trailing periods."""
    return re.sub(r"[\s・!.]", "", normalize(name).casefold())


@cache
def outlet_register() -> tuple[dict[str, str], ...]:
    return tuple(read_tsv(REFERENCE / "outlets.tsv"))


@cache
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for o in outlet_register():
        for name in [o["name_ja"], o["name_en"], *filter(None, o["aliases"].split("|"))]:
            key = outlet_key(name)
            if index.get(key, o["id"]) != o["id"]:
                raise ValueError(f"outlets.tsv: alias {name!r} names both {index[key]} and {o['id']}")
            index[key] = o["id"]
    return index


def entity_rows() -> list[dict]:
    """The gazetteer as rows of the `entities` table (empty cells become NULL)."""
    return [{k: ([a for a in v.split("|") if a] if k in ("aliases", "abbrev") else (v or None)) for k, v in r.items()}
            for r in read_tsv(REFERENCE / "gazetteer.tsv")]


def outlet_rows() -> list[dict]:
    """The register as rows of the `outlets` table (empty cells become NULL)."""
    return [{k: ([a for a in v.split("|") if a] if k == "aliases" else (v or None)) for k, v in o.items()}
            for o in outlet_register()]


def resolve_outlet(raw: str | None) -> str | None:
    """The register id of an outlet's name or alias, or of a news site's host (www.asahi.com)."""
    if not raw:
        return None
    found = _alias_index().get(outlet_key(raw))
    if found is None and "." in raw and " " not in raw.strip():
        found = outlet_for_host(raw.strip())
    return found


@cache
def _news_hosts() -> dict[str, str]:
    """host -> outlet id: the register's homepages and the conventions' extra news hosts."""
    from urllib.parse import urlsplit

    from kirinuki.parse.conventions import shipped

    hosts = {}
    for o in outlet_register():
        if o["homepage"]:
            hosts[(urlsplit(o["homepage"]).hostname or "").removeprefix("www.")] = o["id"]
    for host, outlet in shipped()[1].news_hosts:
        hosts[host.lower().removeprefix("www.")] = outlet
    return hosts


def outlet_for_host(host: str) -> str | None:
    """The register id of a news site's host or of a site under it (www3.nhk.or.jp → nhk)."""
    parts = host.lower().removeprefix("www.").split(".")
    hosts = _news_hosts()
    for k in range(len(parts) - 1):
        if (hit := hosts.get(".".join(parts[k:]))) is not None:
            return hit
    return None


def clean_author(raw: str | None) -> str | None:
    """The name without honorifics (氏, さん, …) or stray spaces; None when nothing is left."""
    if not raw:
        return None
    name = normalize(raw)
    for h in _HONORIFICS:
        if name.endswith(h) and len(name) > len(h):
            name = name[: -len(h)]
            break
    name = name.strip()
    return name or None


# ---------------------------------------------------------------- the stage


def clean_document(rows: dict[str, list[dict]]) -> None:
    """Add the clean columns to one document's rows and fill its date_mentions and mentions (in place)."""
    (doc,) = rows["documents"]
    norm_of: dict[str, str] = {}
    for p in rows["paragraphs"]:
        p["text_norm"] = norm_of[p["text"]] = normalize(p["text"])
    for e in rows["excerpts"]:
        e["headline_norm"] = normalize(e["headline"])
        # body lines are paragraph texts: reuse their normal forms
        e["body_norm"] = "\n".join(norm_of.get(line) or normalize(line) for line in e["body"].split("\n"))
        e["outlet_id"] = resolve_outlet(e["outlet_raw"])
        e["author"] = clean_author(e["author_raw"])
    for c in rows["citations"]:
        c["outlet_id"] = resolve_outlet(c["outlet_raw"])
        c["author"] = clean_author(c["author_raw"])
    doc["caption_outlet_id"] = resolve_outlet(doc["caption_outlet_raw"])
    pieces = text_pieces(doc, rows["excerpts"], rows["paragraphs"])  # where mentions are read, made once
    rows["date_mentions"] = date_mention_rows(doc, rows["excerpts"], pieces)
    rows["mentions"] = entity_mention_rows(doc, pieces)
