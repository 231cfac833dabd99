"""Conventions: the declared ways of quoting news, read from reference/conventions.toml.

In: the shipped conventions file. Out: `Convention` objects (one per [[convention]], in the file's
order, which is the order they are tried and the tie-break between them) and the shared
`Vocabulary`. A file that names an unknown shape, rule or key fails with one line naming the
convention and the key, so a new entry is checked before any post is parsed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache

from kirinuki.schema import REFERENCE

CONVENTIONS_FILE = "conventions.toml"
SHAPES = ("frame", "block")
NEEDS = ("frame", "attribution")
OPEN_RULES = ("marker", "prefix", "brackets", "source_line", "headline_source", "headline_url", "bullet",
              "block_source")
BLOCKS = ("paragraph", "indented")
SCRIPTS = ("any", "latin")
_KEYS = {"name", "description", "shape", "frame_chars", "needs", "decisive", "open", "open_markers",
         "close_markers", "prefixes", "open_char", "close_char", "bullets", "block", "indent", "script",
         "min_sentences"}


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    shape: str
    frame_chars: str = ""
    needs: str = "attribution"
    decisive: bool = False
    open: tuple[str, ...] = ()
    open_markers: frozenset[str] = frozenset()
    close_markers: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    open_char: str = ""
    close_char: str = ""
    bullets: str = ""
    block: str = "paragraph"
    indent: int = 2
    script: str = "any"
    min_sentences: int = 0


@dataclass(frozen=True)
class Vocabulary:
    sentence_ends: str
    source_labels: tuple[str, ...]
    outlet_suffixes: tuple[str, ...]
    link_list_headings: frozenset[str]
    elision_marks: tuple[str, ...]
    elision_notes: tuple[str, ...]
    news_hosts: tuple[tuple[str, str], ...] = ()  # (host, outlet id) beyond the register's homepages

    @property
    def elision_re(self) -> re.Pattern:
        return _elision_re(self.elision_marks)


@cache
def _elision_re(marks: tuple[str, ...]) -> re.Pattern:
    # literal alternatives only: one pass over the text, no backtracking
    return re.compile("|".join(re.escape(m) for m in sorted(marks, key=len, reverse=True)))


class ConventionError(ValueError):
    pass


def _convention(entry: dict) -> Convention:
    name = entry.get("name") or "?"
    where = f"{CONVENTIONS_FILE}: convention {name!r}"
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConventionError(f"{where}: unknown key {min(unknown)!r}; known keys are {', '.join(sorted(_KEYS))}")
    if "name" not in entry or not re.fullmatch(r"[a-z][a-z0-9_]*", entry["name"]):
        raise ConventionError(f"{where}: needs a name of lower-case letters, digits and _")
    shape = entry.get("shape")
    if shape not in SHAPES:
        raise ConventionError(f"{where}: shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    opens = tuple(entry.get("open", ()))
    for rule in opens:
        if rule not in OPEN_RULES:
            raise ConventionError(f"{where}: no open rule {rule!r}; rules are {', '.join(OPEN_RULES)}")
    if shape == "block" and not opens:
        raise ConventionError(f"{where}: a block convention needs at least one open rule")
    if shape == "frame" and not entry.get("frame_chars"):
        raise ConventionError(f"{where}: a frame convention needs frame_chars")
    for key, allowed in (("needs", NEEDS), ("block", BLOCKS), ("script", SCRIPTS)):
        if key in entry and entry[key] not in allowed:
            raise ConventionError(f"{where}: {key} must be one of {', '.join(allowed)}, not {entry[key]!r}")
    needed = {"marker": ("open_markers", "close_markers"), "prefix": ("prefixes",),
              "brackets": ("open_char", "close_char"), "bullet": ("bullets",)}
    for rule in opens:
        for key in needed.get(rule, ()):
            if not entry.get(key):
                raise ConventionError(f"{where}: the {rule} rule needs {key}")
    return Convention(
        name=entry["name"], description=entry.get("description", ""), shape=shape,
        frame_chars=entry.get("frame_chars", ""), needs=entry.get("needs", "attribution"),
        decisive=bool(entry.get("decisive", False)), open=opens,
        open_markers=frozenset(entry.get("open_markers", ())), close_markers=frozenset(entry.get("close_markers", ())),
        prefixes=tuple(sorted(entry.get("prefixes", ()), key=len, reverse=True)),
        open_char=entry.get("open_char", ""), close_char=entry.get("close_char", ""),
        bullets=entry.get("bullets", ""), block=entry.get("block", "paragraph"), indent=int(entry.get("indent", 2)),
        script=entry.get("script", "any"), min_sentences=int(entry.get("min_sentences", 0)),
    )


def load(text: str) -> tuple[tuple[Convention, ...], Vocabulary]:
    """Conventions and vocabulary from the text of a conventions file (checked)."""
    raw = tomllib.loads(text)
    voc = raw.get("vocabulary", {})
    vocabulary = Vocabulary(
        sentence_ends=voc.get("sentence_ends", "。.!?"),
        source_labels=tuple(voc.get("source_labels", ())),
        outlet_suffixes=tuple(sorted(voc.get("outlet_suffixes", ()), key=len, reverse=True)),
        link_list_headings=frozenset(voc.get("link_list_headings", ())),
        elision_marks=tuple(voc.get("elision_marks", ())),
        elision_notes=tuple(voc.get("elision_notes", ())),
        news_hosts=tuple(sorted(voc.get("news_hosts", {}).items())),
    )
    conventions = tuple(_convention(e) for e in raw.get("convention", ()))
    names = [c.name for c in conventions]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConventionError(f"{CONVENTIONS_FILE}: two conventions are named {dup!r}")
    if not conventions or conventions[0].shape != "frame":
        raise ConventionError(f"{CONVENTIONS_FILE}: the first convention must be the seed's frame convention")
    return conventions, vocabulary


@cache
def shipped() -> tuple[tuple[Convention, ...], Vocabulary]:
    return load((REFERENCE / CONVENTIONS_FILE).read_text(encoding="utf-8"))


def by_name(name: str) -> Convention:
    conventions, _ = shipped()
    for c in conventions:
        if c.name == name:
            return c
    raise ConventionError(f"no convention {name!r}; known: {', '.join(c.name for c in conventions)}")
