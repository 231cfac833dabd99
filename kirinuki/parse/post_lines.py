"""Post lines: a post's lines with what quoting conventions ask of each, each answer found once.

In: LF-normalised post text and the conventions' vocabulary. Out: `PostLines`: per line its
number, offsets (of the line and of its visible text), stripped text and indentation, and, asked
for lazily and cached, whether it is a source line and whether it is mostly Latin letters.
Every convention tried on a post shares one PostLines, so trying several costs little more than one.
"""

from __future__ import annotations

from dataclasses import dataclass

from kirinuki.parse.conventions import Vocabulary
from kirinuki.parse.source_lines import SourceInfo, indent_columns, is_latin, parse_source


@dataclass(slots=True)
class Line:
    no: int  # 1-based
    start: int  # offset of the line
    s: int  # offset of its first visible character
    e: int  # offset after its last visible character
    text: str  # stripped ("" for a blank line)
    indent: int


class PostLines:
    """A post's lines and the facts about each that conventions ask for, each found once."""

    def __init__(self, text: str, voc: Vocabulary):
        self.text, self.voc = text, voc
        self.lines: list[Line] = []
        pos = 0
        for no, raw in enumerate(text.split("\n"), start=1):
            body = raw.strip()
            s = pos + (len(raw) - len(raw.lstrip()))
            visible = bool(body) and any(not c.isspace() and c not in "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
                                         for c in body)
            self.lines.append(Line(no, pos, s, s + len(body), body if visible else "", indent_columns(raw)))
            pos += len(raw) + 1
        self._source: dict[int, SourceInfo | None] = {}
        self._latin: dict[int, bool] = {}

    def source(self, i: int, need_date: bool = True) -> SourceInfo | None:
        if i not in self._source:
            t = self.lines[i].text
            self._source[i] = parse_source(t, self.voc, need_date=False) if t else None
        info = self._source[i]
        if info is not None and need_date and info.date is None and not marked(self.lines[i].text):
            return None
        return info

    def latin(self, i: int) -> bool:
        if i not in self._latin:
            self._latin[i] = is_latin(self.lines[i].text)
        return self._latin[i]


def marked(t: str) -> bool:
    return t[:1] in "(（[［【〔<＜" or t.startswith(("出典", "引用元", "ソース", "Source"))
