"""MTIF exports split into entries (issue 16, first part): metadata, post HTML, comments apart."""

from __future__ import annotations

from datetime import datetime

from conftest import SEED

from kirinuki.ingest.mtif import looks_like_mtif, parse_date, split_entries, split_tags
from kirinuki.ingest.sources import decode_with_notes, normalise_newlines

EXPORT = """AUTHOR: のりこ
TITLE: 港の倉庫の話
BASENAME: 2024/06/12/081500
STATUS: Publish
ALLOW COMMENTS: 1
CONVERT BREAKS: 0
DATE: 06/12/2024 08:15:00
PRIMARY CATEGORY: 経済
CATEGORY: 海外
CATEGORY: 経済
TAGS: 港湾,"北部 地方",倉庫
-----
BODY:
<p>北部の港で新しい倉庫の建設が始まった。</p>
-----
EXTENDED BODY:
<p>続きの段落です。</p>
-----
EXCERPT:
倉庫の話の要約。
-----
KEYWORDS:
倉庫 港
-----
COMMENT:
AUTHOR: 通りすがり
EMAIL:
IP: 192.0.2.1
DATE: 06/13/2024 10:00:00 PM
*****
コメントの本文です。
-----
--------
AUTHOR: のりこ
TITLE: 下書きのまま
STATUS: Draft
DATE: 06/20/2024 09:00:00
-----
BODY:
<p>まだ書きかけ。</p>
-----
--------
AUTHOR: のりこ
TITLE: 真夜中の更新
STATUS: Publish
DATE: 07/01/2024 12:05:00 AM
-----
BODY:
<p>深夜に書いた段落。</p>
-----
--------
TITLE: 最後の記事
STATUS: Publish
DATE: 07/02/2024 13:30:00
-----
BODY:
<p>区切り線のないまま終わる。</p>
-----
"""


def test_an_export_splits_into_entries_with_metadata_post_html_and_comments_apart():
    entries = split_entries(EXPORT)
    assert [e.number for e in entries] == [1, 2, 3, 4] and all(e.problem is None for e in entries)
    first = entries[0]
    assert first.fields["TITLE"] == "港の倉庫の話" and first.fields["BASENAME"] == "2024/06/12/081500"
    assert first.categories == ["経済", "海外"] and first.tags == ["港湾", "北部 地方", "倉庫"]
    assert first.published_at == datetime(2024, 6, 12, 8, 15)
    assert first.body == "<p>北部の港で新しい倉庫の建設が始まった。</p>\n<p>続きの段落です。</p>"
    assert first.excerpt == "倉庫の話の要約。" and first.keywords == "倉庫 港"
    (comment,) = first.comments
    assert comment.author == "通りすがり" and comment.date == datetime(2024, 6, 13, 22, 0)
    assert comment.text == "*****\nコメントの本文です。" and "コメント" not in first.body
    assert [e.is_draft for e in entries] == [False, True, False, False]
    assert entries[2].published_at == datetime(2024, 7, 1, 0, 5)  # 12 AM is midnight
    assert entries[3].body == "<p>区切り線のないまま終わる。</p>"  # no final separator: still read
    for e in entries:  # each entry's span in the export holds its own title and nothing of the next
        assert e.fields["TITLE"] in EXPORT[e.start : e.end]
        assert EXPORT[e.start : e.end].count("TITLE:") == 1


def test_a_malformed_entry_is_one_problem_with_its_number_and_the_others_are_read():
    broken = EXPORT.replace("DATE: 07/01/2024 12:05:00 AM", "DATE: 2024-07-01").replace(
        "BODY:\n<p>まだ書きかけ。</p>\n-----\n", "")
    entries = split_entries(broken)
    assert entries[1].problem == "entry 2: no BODY section"
    assert entries[2].problem == "entry 3: DATE '2024-07-01' is not MM/DD/YYYY hh:mm:ss"
    assert entries[0].problem is None and entries[3].problem is None


def test_shift_jis_with_crlf_gives_the_same_entries_as_utf8():
    text, encoding, _ = decode_with_notes(EXPORT.replace("\n", "\r\n").encode("cp932"))
    text, newline = normalise_newlines(text)
    assert encoding == "cp932" and newline == "crlf"
    assert split_entries(text) == split_entries(EXPORT)


def test_exports_are_told_by_content_and_a_clipping_post_is_not_one(seed_text):
    assert looks_like_mtif(EXPORT) and not looks_like_mtif(seed_text)
    assert SEED.suffix == ".txt"  # the seed and an export share the extension: only content tells them apart


def test_dates_and_tags_as_exports_write_them():
    assert parse_date("12/31/2023 11:59:59 PM") == datetime(2023, 12, 31, 23, 59, 59)
    assert parse_date("01/05/2024 7:03 AM") == datetime(2024, 1, 5, 7, 3)
    assert parse_date("02/30/2024 10:00:00") is None and parse_date("13:00 PM") is None
    assert split_tags('a, "b, c" ,d') == ["a", "b, c", "d"]
