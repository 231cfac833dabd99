"""Entity mentions: the countries, groups, organisations and people a text names.

In: a text (a paragraph or a headline). Out: `EntityMatch`es in order, never overlapping, each with
its offsets in the text, the surface form and the gazetteer's entity. The gazetteer
(input/reference/gazetteer.tsv) and the rules for short forms and titles (gazetteer_rules.toml)
are data; docs/cleaning.md describes them.

Matching is one pass, longest match first: an Aho–Corasick automaton of every name (ahocorasick-rs)
lists each place a name stands and the longest name there, in linear time (a regular expression
finds the next short form). A name that begins or ends in katakana does not match inside a longer
katakana word; a Latin one not inside a longer Latin word. Where no name matches, a one-character short form (米, 露 …) counts only
in context (see gazetteer_rules.toml). A person's title right after the name (氏, 大統領 …) is
part of the mention. Full-width Latin letters and digits match as ASCII (one character for one, so
offsets stay the text's own).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache

from ahocorasick_rs import AhoCorasick, Implementation, MatchKind

from kirinuki.schema import REFERENCE

_WIDE = re.compile("[\uff01-\uff5e]")  # full-width ASCII
_DIGITS = set("0123456789０１２３４５６７８９〇一二三四五六七八九十百千万")
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}  # ！..～ -> !..~


def _word_kind(c: str) -> str:
    """k for a katakana letter (ー included, ・ not), l for a Latin letter or digit, else ''."""
    if "\u30a1" <= c <= "\u30fa" or c == "\u30fc" or "\uff66" <= c <= "\uff9f":
        return "k"
    if c.isascii() and c.isalnum():
        return "l"
    return ""


def _kanji(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or c == "\u3005"


@dataclass(frozen=True)
class Entity:
    id: str
    kind: str
    name_ja: str


@dataclass(frozen=True)
class EntityMatch:
    start: int
    end: int
    surface: str
    entity_id: str
    kind: str
    rule: str  # name, short_form or short_form_run


@dataclass(frozen=True)
class Gazetteer:
    entities: dict[str, Entity]
    names: dict[str, list[tuple[str, str]]]  # first character -> [(name, entity id)], longest first
    owner: dict[str, str]  # name -> entity id
    automaton: AhoCorasick  # every name: where each one stands in a text
    short_pattern: re.Pattern  # any short form
    edges: dict[str, tuple[str, str]]  # name -> the word kinds of its first and last characters
    short: dict[str, str]  # short form -> entity id
    before: frozenset[str]
    after: tuple[str, ...]  # longest first
    ambiguous_runs: frozenset[str]
    longest_ambiguous_run: int
    blocked: dict[str, list[tuple[str, int]]]  # short form -> [(blocked word, its offset in the word)]
    titles: tuple[str, ...]  # longest first
    unknown_titles: tuple[str, ...]


@cache
def gazetteer() -> Gazetteer:
    from kirinuki.clean.normalize import read_tsv  # normalize imports this module's rows at its top

    rows = read_tsv(REFERENCE / "gazetteer.tsv")
    rules = tomllib.loads((REFERENCE / "gazetteer_rules.toml").read_text(encoding="utf-8"))
    entities: dict[str, Entity] = {}
    names: dict[str, list[tuple[str, str]]] = {}
    short: dict[str, str] = {}
    owner: dict[str, str] = {}
    for r in rows:
        if r["id"] in entities:
            raise ValueError(f"gazetteer.tsv: entity {r['id']} is listed twice")
        entities[r["id"]] = Entity(r["id"], r["kind"], r["name_ja"])
        for name in [r["name_ja"], *(a for a in r["aliases"].split("|") if a)]:
            if owner.setdefault(name, r["id"]) != r["id"]:
                raise ValueError(f"gazetteer.tsv: {name} names both {owner[name]} and {r['id']}")
            if (name, r["id"]) not in names.get(name[0], []):
                names.setdefault(name[0], []).append((name, r["id"]))
        for s in (a for a in r["abbrev"].split("|") if a):
            if len(s) != 1 or short.setdefault(s, r["id"]) != r["id"]:
                raise ValueError(f"gazetteer.tsv: short form {s!r} of {r['id']} must be one character, of one entity")
    for options in names.values():
        options.sort(key=lambda t: -len(t[0]))
    ab = rules["abbreviation"]
    blocked: dict[str, list[tuple[str, int]]] = {}
    for word in ab["blocked"]:
        for k, c in enumerate(word):
            if c in short:
                blocked.setdefault(c, []).append((word, k))
    # every name in one automaton that reports every place each stands, in one pass over the
    # text in native code: 2.5x faster than the trie-shaped regular expression it replaced (3,000
    # posts of benchmarks/build.py's corpus: 0.70 s against 1.77 s), which the engine entered at
    # every character that can start a name. A DFA (built in 7 ms) scans twice as fast as the
    # default contiguous NFA: 0.032 s against 0.060 s over 512 posts of that corpus, the same matches
    automaton = AhoCorasick(list(owner), matchkind=MatchKind.Standard, implementation=Implementation.DFA)
    return Gazetteer(
        entities, names, owner, automaton, re.compile(f"[{re.escape(''.join(sorted(short)))}]"),
        {n: (_word_kind(n[0]), _word_kind(n[-1])) for n in owner}, short,
        frozenset(ab["before"]), tuple(sorted(ab["after"], key=len, reverse=True)), frozenset(ab["ambiguous_runs"]),
        max(map(len, ab["ambiguous_runs"]), default=0),
        blocked, tuple(sorted(rules["person"]["titles"], key=len, reverse=True)),
        tuple(rules["unknown_person"]["titles"]))


def _bounded(g: Gazetteer, text: str, start: int, end: int, name: str) -> bool:
    """A name beginning (ending) in katakana or a Latin letter is not part of a longer such word."""
    first, last = g.edges[name]
    if first and start > 0 and _word_kind(text[start - 1]) == first:
        return False
    return not (last and end < len(text) and _word_kind(text[end]) == last)


def _blocked_at(g: Gazetteer, text: str, i: int) -> bool:
    return any(text.startswith(word, i - k) for word, k in g.blocked.get(text[i], ()) if i >= k)


def _short_run_end(g: Gazetteer, text: str, i: int) -> int:
    """The end of the run of short forms that begins at i: the first place after i that is no short
    form or is inside a blocked word. Every start k inside [i, end) has the same end, so a caller
    that moves through a run keeps it (a run of 日 would otherwise be scanned again from each k)."""
    j = i + 1
    while j < len(text) and text[j] in g.short and not _blocked_at(g, text, j):
        j += 1
    return j


def _short_forms(g: Gazetteer, text: str, i: int, j: int) -> list[EntityMatch]:
    """The short forms at i that count (see gazetteer_rules.toml), or none; [i, j) is their run."""
    prev = text[i - 1] if i else ""
    if prev in _DIGITS or _blocked_at(g, text, i):
        return []
    starts_word = not _kanji(prev) if prev else True
    followed = any(text.startswith(w, j) for w in g.after)
    if j - i >= 2:
        ambiguous = j - i <= g.longest_ambiguous_run and text[i:j] in g.ambiguous_runs
        ok = (starts_word or prev in g.before) and (not ambiguous or followed)
        rule = "short_form_run"
    else:
        ok = prev in g.before or (starts_word and followed)
        rule = "short_form"
    if not ok:
        return []
    return [EntityMatch(k, k + 1, text[k], g.short[text[k]], g.entities[g.short[text[k]]].kind, rule)
            for k in range(i, j)]


def _name_at(g: Gazetteer, probe: str, i: int, longest: str) -> tuple[str, str] | None:
    """The longest name at i within its word boundaries (`longest`, the longest name standing at i,
    first)."""
    if _bounded(g, probe, i, i + len(longest), longest):
        return longest, g.owner[longest]
    for name, eid in g.names[probe[i]]:  # rare: the longest ran into a longer word; try shorter ones
        if len(name) < len(longest) and probe.startswith(name, i) and _bounded(g, probe, i, i + len(name), name):
            return name, eid
    return None


def _name_places(g: Gazetteer, probe: str) -> tuple[list[int], dict[int, int]]:
    """Every place in `probe` where a name begins, in order, and where the longest name there ends."""
    longest: dict[int, int] = {}
    for _, start, end in g.automaton.find_matches_as_indexes(probe, overlapping=True):
        if end > longest.get(start, -1):
            longest[start] = end
    return sorted(longest), longest


def find_entities(text: str) -> list[EntityMatch]:
    """Every entity mention in `text`, in order (see the module docstring)."""
    g = gazetteer()
    probe = text.translate(_FULL_WIDTH) if _WIDE.search(text) else text
    starts, longest = _name_places(g, probe)
    out: list[EntityMatch] = []
    pos = run_end = 0  # run_end: the end of the run of short forms last measured
    k = 0  # the next place a name begins, at or after pos
    short_m = g.short_pattern.search(probe)
    while True:  # the nearer of the next name and the next short form
        while k < len(starts) and starts[k] < pos:
            k += 1
        name_at = starts[k] if k < len(starts) else None
        if name_at is None and short_m is None:
            break
        if name_at is not None and (short_m is None or name_at <= short_m.start()):
            i = name_at
            found = _name_at(g, probe, i, probe[i:longest[i]])
        else:
            i, found = short_m.start(), None
        if found:
            name, eid = found
            end = i + len(name)
            kind = g.entities[eid].kind
            if kind == "person":
                end += next((len(t) for t in g.titles if text.startswith(t, end)), 0)
            out.append(EntityMatch(i, end, text[i:end], eid, kind, "name"))
            pos = end
        else:
            shorts = []
            if probe[i] in g.short:
                if i >= run_end:
                    run_end = _short_run_end(g, probe, i)
                shorts = _short_forms(g, probe, i, run_end)
            out.extend(shorts)
            pos = shorts[-1].end if shorts else i + 1
        if short_m and short_m.start() < pos:
            short_m = g.short_pattern.search(probe, pos)
    return out


def unknown_people(text: str) -> list[tuple[str, str]]:
    """(name, title) for each katakana name right before a title of `unknown_person` (トカエフ大統領)
    that the gazetteer does not know: people to add."""
    found = []
    for m in _unknown_pattern().finditer(text):
        name = m.group(1)
        known = find_entities(name)
        if known and known[-1].end == len(name):
            continue  # ロシア大統領: a country, or a known person, ends right before the title
        found.append((name, m.group(2)))
    return found


@cache
def _unknown_pattern() -> re.Pattern:
    titles = "|".join(re.escape(t) for t in sorted(gazetteer().unknown_titles, key=len, reverse=True))
    return re.compile(rf"(?<![\u30a1-\u30fa\u30fc・])([\u30a1-\u30fa][\u30a1-\u30fa\u30fc・]{{1,24}})氏?({titles})")
