"""Blocks: a block convention's open rules find the quotes among a post's lines.

In: LF-normalised post text (as `PostLines`, shared by every convention tried on the post) and one
block `Convention`. Out: a `ParsedPost` with the same records as the seed's grammar gives: lines a
rule claims become an excerpt (headline, body paragraphs, attribution, URL, the rules that opened
and closed it); every other line is commentary, heading or caption exactly as in the seed's grammar.

A rule claims lines only on evidence: a marker pair, a prefix, a bracket pair holding sentences, a
source line naming a register outlet, or a news site's URL. Hard-wrapped lines (a line that ends no
sentence and runs close to the quote's widest line) are joined into one paragraph whose offsets span
its lines and whose `line_end` is its last line. Every per-line fact is computed once per post,
and a block's end is looked up, not rescanned, so a post costs time linear in its length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kirinuki.parse.conventions import Convention
from kirinuki.parse.grammar import HEADING_RE, Attribution, Builder, ParsedPost, finish
from kirinuki.parse.post_lines import PostLines, marked
from kirinuki.parse.source_lines import (
    SourceInfo,
    is_latin,
    news_url,
    parse_source,
    sentence_count,
    trailing_source,
)

HEADLINE_MAX_CHARS = 100  # a headline line with a source or a URL after it
BLOCK_HEADLINE_MAX_CHARS = 60  # a block's first line taken for its headline
WRAP_SHARE = 0.7  # a line this close to the quote's widest line, ending no sentence, is wrapped
WRAP_MIN_CHARS = 12  # lines shorter than this are never taken for wrapped by their width
NOTE_MAX_CHARS = 40


@dataclass(slots=True)
class Quote:
    first: int  # index of the first line claimed
    last: int  # index of the last line claimed
    open_rule: str
    close_rule: str
    segments: list[tuple[int, int, int] | None]  # (line index, start, end) of body text; None breaks a paragraph
    headline: str = ""
    attribution: Attribution | None = None
    url: str | None = None
    flags: list[str] = field(default_factory=list)


def _attribution(pl: PostLines, i: int, info: SourceInfo, start: int | None = None) -> Attribution:
    ln = pl.lines[i]
    s = ln.s if start is None else start
    return Attribution(pl.text[s:ln.e], s, ln.e, info.date, info.outlet, info.author, None)


class Engine:
    def __init__(self, pl: PostLines, conv: Convention):
        self.pl, self.conv, self.voc = pl, conv, pl.voc
        self.lines = pl.lines
        self.n = len(self.lines)
        self.stop = self._stops()
        self._closes: list[int] | None = None
        self._matches: dict[int, tuple[int, int]] | None = None

    def _is_stop(self, i: int) -> bool:
        ln, conv = self.lines[i], self.conv
        if not ln.text or HEADING_RE.match(ln.text):
            return True
        if conv.block == "indented" and ln.indent < conv.indent:
            return True
        if conv.script == "latin" and not self.pl.latin(i):
            return True
        if conv.bullets and ln.text[0] in conv.bullets:
            return True
        return self.pl.source(i, need_date=True) is not None

    def _stops(self) -> list[int]:
        """stop[i]: the first line at or after i where a block ends (a blank line, a heading, a
        source line, or a line the convention's block or script leaves out)."""
        stop = [self.n] * (self.n + 1)
        for i in range(self.n - 1, -1, -1):
            stop[i] = i if self._is_stop(i) else stop[i + 1]
        return stop

    def _close_rule(self, j: int) -> str:
        if j >= self.n:
            return "end_of_text"
        ln = self.lines[j]
        if not ln.text:
            return "blank_line"
        if HEADING_RE.match(ln.text):
            return "heading"
        if self.pl.source(j) is not None:
            return "source_line"
        if self.conv.bullets and ln.text[0] in self.conv.bullets:
            return "next_item"
        return "dedent" if self.conv.block == "indented" else "script"

    def _body(self, i: int) -> tuple[list[tuple[int, int, int] | None], int]:
        """The block that starts at line i: its segments and the line where it stopped."""
        j = self.stop[i] if i < self.n else self.n
        return [(k, self.lines[k].s, self.lines[k].e) for k in range(i, j)], j

    def _headline(self, q: Quote) -> None:
        """A block's first line is its headline when it is short, ends no sentence and more follows."""
        segs = [x for x in q.segments if x is not None]
        if len(segs) < 2 or q.headline:
            return
        _, s, e = segs[0]
        t = self.pl.text[s:e]
        widest = max(e - s for _, s, e in segs[1:])
        if len(t) <= BLOCK_HEADLINE_MAX_CHARS and sentence_count(t) == 0 and not self._wrapped(t, widest):
            q.headline = t
            q.segments = q.segments[q.segments.index(segs[0]) + 1:]

    # ------------------------------------------------------------------ open rules

    def marker(self, i: int) -> Quote | None:
        conv, lines = self.conv, self.lines
        if lines[i].text not in conv.open_markers:
            return None
        j = self._next_close()[i + 1]
        if j == self.n:  # never closed: the block after the marker, flagged
            segs, j = self._body(i + 1)
            return Quote(i, j - 1, "marker", "end_of_block", segs, flags=["unterminated"])
        segs = [(k, lines[k].s, lines[k].e) if lines[k].text else None for k in range(i + 1, j)]
        q = Quote(i, j, "marker", "marker", segs)
        inside = [x for x in segs if x is not None]
        if inside and (info := self.pl.source(inside[-1][0], need_date=False)) is not None:
            q.attribution = _attribution(self.pl, inside[-1][0], info)
            q.segments = segs[: segs.index(inside[-1])]
        self._source_at_end(q)
        self._headline(q)
        return q

    def prefix(self, i: int) -> Quote | None:
        prefixes, lines = self.conv.prefixes, self.lines
        if not lines[i].text.startswith(prefixes):
            return None
        j, segs = i, []
        while j < self.n and lines[j].text.startswith(prefixes):
            t = lines[j].text
            k = 0
            while k < len(t) and (t.startswith(prefixes, k) or t[k].isspace()):
                k += 1
            segs.append((j, lines[j].s + k, lines[j].e) if k < len(t) else None)
            j += 1
        q = Quote(i, j - 1, "prefix", "prefix_end", segs)
        last = [x for x in segs if x is not None]
        if last:
            k, s, e = last[-1]
            info = parse_source(self.pl.text[s:e], self.voc, need_date=False)
            if info is not None and (info.date or marked(self.pl.text[s:e])):
                q.attribution = _attribution(self.pl, k, info, s)
                q.segments = segs[: segs.index(last[-1])]
        self._source_at_end(q)
        self._headline(q)
        return q

    def brackets(self, i: int) -> Quote | None:
        if not self.lines[i].text.startswith(self.conv.open_char):
            return None
        match = self._bracket_matches().get(i)
        return self._bracket_quote(i, *match) if match else None

    def _next_close(self) -> list[int]:
        """next_close[i]: the first line at or after i that is a close marker (n: none)."""
        if self._closes is None:
            self._closes = [self.n] * (self.n + 1)
            for i in range(self.n - 1, -1, -1):
                self._closes[i] = i if self.lines[i].text in self.conv.close_markers else self._closes[i + 1]
        return self._closes

    def _bracket_matches(self) -> dict[int, tuple[int, int]]:
        """line -> (line, position) of the bracket closing the one that opens the line, for every
        line that opens with one: one pass with a stack, emptied at each blank line."""
        if self._matches is None:
            self._matches, stack = {}, []
            op, cl = self.conv.open_char, self.conv.close_char
            for j, ln in enumerate(self.lines):
                if not ln.text:
                    stack.clear()
                    continue
                t = ln.text
                if op not in t and cl not in t:
                    continue
                for pos, c in enumerate(t):
                    if c == op:
                        stack.append((j, pos))
                    elif c == cl and stack:
                        oj, opos = stack.pop()
                        if opos == 0:
                            self._matches[oj] = (j, pos)
        return self._matches

    def _bracket_quote(self, i: int, j: int, pos: int) -> Quote | None:
        lines = self.lines
        rest = lines[j].text[pos + 1:].strip()
        end_s = lines[j].s + pos
        info = parse_source(rest, self.voc, need_date=False) if rest else None
        if rest and info is None:
            return None  # the bracket closed mid-line: a title or a phrase, not a block quote
        segs = [(k, lines[k].s + (1 if k == i else 0), end_s if k == j else lines[k].e) for k in range(i, j + 1)]
        segs = [x for x in segs if x[2] > x[1]]
        q = Quote(i, j, "brackets", "brackets", segs)
        if info is not None:
            q.attribution = _attribution(self.pl, j, info, lines[j].e - len(rest))
        else:
            self._source_at_end(q)
        return q

    def source_line(self, i: int) -> Quote | None:
        """A source line opens a quote when it stands after a blank line (directly after text it
        closes that text instead) and is not in round brackets (the form that follows a quote)."""
        info = self.pl.source(i)
        if info is None or i + 1 >= self.n or not self.lines[i + 1].text:
            return None
        if (i > 0 and self.lines[i - 1].text) or self.lines[i].text[:1] in "(（":
            return None
        q = self._after_head(i, i + 1, "source_line")
        if q is not None:
            q.attribution = _attribution(self.pl, i, info)
        return q

    def _after_head(self, i: int, k: int, rule: str, headline: str = "") -> Quote | None:
        """The quote whose head ends at line k-1 and whose block starts at k (an optional URL line first)."""
        url = None
        if k < self.n and (u := news_url(self.lines[k].text, self.voc)) is not None:
            url, k = u[0], k + 1
        if k >= self.n or not self.lines[k].text:
            return None
        segs, j = self._body(k)
        if not segs:
            return None
        q = Quote(i, j - 1, rule, self._close_rule(j), segs, headline=headline, url=url)
        if not headline:
            self._headline(q)
        return q

    def headline_source(self, i: int) -> Quote | None:
        t = self.lines[i].text
        found = trailing_source(t, self.voc)
        if found is None:
            return None
        start, info = found
        head = t[:start].strip()
        if not head or len(head) > HEADLINE_MAX_CHARS or head.endswith("。"):
            return None
        q = self._after_head(i, i + 1, "headline_source", head)
        if q is not None:
            q.attribution = _attribution(self.pl, i, info, self.lines[i].s + start)
        return q

    def headline_url(self, i: int) -> Quote | None:
        t = self.lines[i].text
        if (i + 1 >= self.n or len(t) > HEADLINE_MAX_CHARS or t.endswith("。")
                or news_url(t, self.voc) or news_url(self.lines[i + 1].text, self.voc) is None):
            return None
        return self._after_head(i, i + 1, "headline_url", t)

    def bullet(self, i: int) -> Quote | None:
        t = self.lines[i].text
        if t[0] not in self.conv.bullets:
            return None
        head = t[1:].strip()
        found = trailing_source(head, self.voc)
        j = self.stop[i + 1] if i + 1 < self.n else self.n
        segs = [(k, self.lines[k].s, self.lines[k].e) for k in range(i + 1, j)]
        q = Quote(i, j - 1, "bullet", self._close_rule(j), segs, headline=head)
        if found is not None:
            start, info = found
            q.headline = head[:start].strip()
            q.attribution = _attribution(self.pl, i, info, self.lines[i].e - (len(head) - start))
        elif j < self.n and (info := self.pl.source(j, need_date=False)) is not None:
            q.attribution, q.last, q.close_rule = _attribution(self.pl, j, info), j, "source_line"
        if q.attribution is None or not head:
            return None
        return q

    def block_source(self, i: int) -> Quote | None:
        j = self.stop[i]
        if j == i or j >= self.n or (info := self.pl.source(j, need_date=False)) is None:
            return None
        segs, j = self._body(i)
        if self.lines[j].text and (self.pl.source(j) is not None or marked(self.lines[j].text)):
            q = Quote(i, j, "block_source", "source_line", segs, attribution=_attribution(self.pl, j, info))
            self._headline(q)
            return q
        return None

    def _source_at_end(self, q: Quote) -> None:
        """A source line directly after the quote's last line is its attribution."""
        k = q.last + 1
        if q.attribution is None and k < self.n and (info := self.pl.source(k, need_date=False)) is not None:
            q.attribution, q.last = _attribution(self.pl, k, info), k

    # ------------------------------------------------------------------ the post

    def run(self) -> ParsedPost:
        pl, lines, conv = self.pl, self.lines, self.conv
        b = Builder(pl.text)
        rules = [getattr(self, name) for name in conv.open]
        # a rule whose quote from line i lacked the evidence finds none from a later line of it
        # either (a later start sees a part of the same lines): it is not tried there again, so
        # a post costs time linear in its length however its lines are made
        dead = [-1] * len(rules)
        links_until = -1  # lines after a 【関連記事】 heading list links, not quotes
        i = 0
        while i < self.n:
            ln = lines[i]
            if not ln.text:
                i += 1
                continue
            q = None
            if i > links_until:
                for r, rule in enumerate(rules):
                    if i <= dead[r]:
                        continue
                    q = rule(i)
                    if q is not None and self._evident(q):
                        break
                    if q is not None:
                        dead[r] = q.last
                    q = None
            if q is None:
                m = HEADING_RE.match(ln.text)
                if m and m.group("h").strip() in self.voc.link_list_headings:
                    links_until = self.stop[i + 1] if i + 1 < self.n else self.n
                b.paragraphs_line(ln.no, ln.s, ln.e)
                b.last_end = ln.e
                i += 1
                continue
            self._emit(b, q)
            i = q.last + 1
        return finish(b)

    def _evident(self, q: Quote) -> bool:
        body = " ".join(self.pl.text[s:e] for _, s, e in filter(None, q.segments))
        if not body.strip():
            return False
        if self.conv.script == "latin" and not is_latin(body):
            return False
        return sentence_count(body) >= self.conv.min_sentences

    def _note(self, t: str) -> bool:
        return (len(t) <= NOTE_MAX_CHARS and t[:1] in "(（※[［【〔<＜"
                and any(n in t for n in self.voc.elision_notes))

    def _emit(self, b: Builder, q: Quote) -> None:
        lines, text = self.lines, self.pl.text
        nxt = q.last + 1
        if nxt < self.n and self._note(lines[nxt].text):  # (以上は部分引用です) right after the quote
            q.segments.append(None)
            q.segments.append((nxt, lines[nxt].s, lines[nxt].e))
            q.last = nxt
        first = lines[q.first]
        ex = b.open_excerpt(first.s, first.e, q.headline, q.flags, first.no, q.open_rule)
        ex.url, ex.attribution = q.url, q.attribution
        segs = q.segments
        widest = max((e - s for x in segs if x for _, s, e in [x]), default=0)
        run: list[tuple[int, int, int]] = []
        for x in segs + [None]:
            if x is not None:
                k, s, e = x
                t = text[s:e]
                if self._note(t):
                    self._paragraph(b, run)
                    run = []
                    b.add_joined(lines[k].no, "note", s, e, text[s:e], None, True)
                    continue
                run.append(x)
                if not self._wrapped(t, widest):
                    self._paragraph(b, run)
                    run = []
            else:
                self._paragraph(b, run)
                run = []
        last = lines[q.last]
        b.last_end = last.e
        b.close_excerpt(last.e, rule=q.close_rule)

    def _wrapped(self, t: str, widest: int) -> bool:
        """A line that ends no sentence and ends with a comma or runs close to the widest line."""
        if not t or t[-1] in self.voc.sentence_ends:
            return False
        return t[-1] in "、，," or (len(t) >= WRAP_SHARE * widest and widest >= WRAP_MIN_CHARS)

    def _paragraph(self, b: Builder, run: list[tuple[int, int, int]]) -> None:
        if not run:
            return
        text = self.pl.text
        parts = [text[s:e] for _, s, e in run]
        joined = parts[0]
        for part in parts[1:]:
            sep = " " if joined[-1:].isascii() and part[:1].isascii() and joined[-1:] != "-" else ""
            joined += sep + part
        k0, s0, _ = run[0]
        k1, _, e1 = run[-1]
        no0, no1 = self.lines[k0].no, self.lines[k1].no
        b.add_joined(no0, "body", s0, e1, joined, no1 if no1 != no0 else None, bool(self.voc.elision_re.search(joined)))


def parse_block(pl: PostLines, conv: Convention) -> ParsedPost:
    return Engine(pl, conv).run()
