"""HTML to lines (issue 16): a post's HTML becomes the lines the parser reads."""

from __future__ import annotations

import html

import pytest

from kirinuki.clean.normalize import clean_document
from kirinuki.ingest.html_lines import html_to_lines
from kirinuki.ingest.sources import Source
from kirinuki.parse.records import source_rows


def _goo_br(text: str) -> str:  # one line, <br /> between lines, as goo blog's editor stores a post
    return "<br />\n".join(html.escape(line, quote=False) for line in text.split("\n"))


def _paragraphs(text: str) -> str:  # a <p> per line, a blank line as two <br />
    return "".join(f"<p>{html.escape(line, quote=False)}</p>" if line else "<br /><br />" for line in text.split("\n"))


def _styled(text: str) -> str:  # colour spans and bold around every line's first character
    return "<br />".join(f'<span style="color:#c00"><strong>{html.escape(line[:1])}</strong></span>'
                         f"{html.escape(line[1:])}" if line else "" for line in text.split("\n"))


def _records(text: str) -> dict:
    src = Source("post.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf")
    rows = source_rows(src)
    clean_document(rows)
    keep = {"excerpts": ("ordinal", "headline", "body", "attribution_raw", "published_date", "char_start", "char_end"),
            "paragraphs": ("ordinal", "role", "text", "char_start", "char_end", "line_no"),
            "date_mentions": ("raw", "date_start", "rule", "char_start")}
    return {t: [{k: r[k] for k in cols} for r in rows[t]] for t, cols in keep.items()}


@pytest.mark.parametrize("as_html", [_goo_br, _styled])
def test_the_seed_stored_as_html_gives_the_seed_s_lines_and_records(seed_text, as_html):
    text = seed_text.strip("\n")
    assert html_to_lines(as_html(text)) == text
    assert _records(html_to_lines(as_html(text))) == _records(text)


def test_paragraph_html_gives_the_seed_s_non_blank_lines(seed_text):
    lines = [line for line in seed_text.split("\n") if line]
    assert [x for x in html_to_lines(_paragraphs(seed_text.strip("\n"))).split("\n") if x] == lines


def test_blocks_break_lines_inline_elements_do_not_and_nothing_hidden_is_text():
    got = html_to_lines('<div><h2>見出し</h2><p>本文は<a href="https://example.invalid/">リンクの文字</a>を含む。'
                        '<img src="x.jpg" alt="写真"></p><script>alert("x")</script><style>p{}</style>'
                        "<!-- 注釈 --><ul><li>一つ目</li><li>二つ目 &amp; 三つ目</li></ul>a<br><br>b</div>")
    assert got == "見出し\n本文はリンクの文字を含む。\n一つ目\n二つ目 & 三つ目\na\n\nb"


def test_converted_breaks_keep_source_newlines_and_ascii_whitespace_collapses_but_u3000_stays():
    assert html_to_lines("一行目\n二行目\n\n四行目", convert_breaks=True) == "一行目\n二行目\n\n四行目"
    assert html_to_lines("一行目\n  二行目") == "一行目 二行目"
    assert html_to_lines("<p>\u3000字下げ  の  段落</p>") == "\u3000字下げ の 段落"
