"""MTIF exports split into entries: metadata, post HTML, comments apart; entries as posts."""

from __future__ import annotations

from datetime import datetime

from conftest import SEED

from kirinuki.ingest.formats import looks_like_mtif
from kirinuki.ingest.mtif import parse_date, split_entries, split_tags
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
    # the extended body is a block of its own after the body
    assert first.body == "<p>北部の港で新しい倉庫の建設が始まった。</p><div><p>続きの段落です。</p></div>"
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


def _goo_entry(title: str, date: str, body_html: str, basename: str = "") -> str:
    head = f"AUTHOR: のりこ\nTITLE: {title}\n" + (f"BASENAME: {basename}\n" if basename else "")
    return f"{head}STATUS: Publish\nCONVERT BREAKS: 0\nDATE: {date}\n-----\nBODY:\n{body_html}\n-----\n--------\n"


def _rows_without_ids(src) -> dict:
    from kirinuki.clean.normalize import clean_document
    from kirinuki.parse.records import source_rows

    rows = source_rows(src)
    clean_document(rows)
    ids = ("doc_id", "source_sha256", "excerpt_id", "paragraph_id", "citation_id", "mention_id", "duplicate_of",
           "repeat_of")
    return {t: [{k: v for k, v in r.items() if k not in ids and not k.endswith("_inferred")} for r in rows[t]]
            for t in ("excerpts", "paragraphs", "date_mentions", "citations")}


def test_the_seed_as_a_goo_style_entry_gives_the_seed_s_excerpts_paragraphs_and_date_mentions(seed_text):
    import html

    from kirinuki.ingest.mtif import entry_sources
    from kirinuki.ingest.sources import Source

    loose = Source("seed.txt", seed_text, "0" * 64, len(seed_text.encode()), "utf-8", "lf")
    expected = _rows_without_ids(loose)
    from kirinuki.parse.records import source_rows

    day = source_rows(loose)["documents"][0]["published_date"]  # the seed's inferred date, which goo would carry
    body = "<br />\n".join(html.escape(line, quote=False) for line in seed_text.strip("\n").split("\n"))
    export = (_goo_entry("別の記事", "01/02/2024 09:00:00", "<p>前の記事の本文。</p>", "2024/01/02/090000")
              + _goo_entry("切り抜き", day.strftime("%m/%d/%Y 21:00:00"), body))
    first, seed_entry = entry_sources(Source("export.txt", export, "1" * 64, len(export.encode()), "utf-8", "lf"))
    assert first.key == "export.txt#2024/01/02/090000" and seed_entry.key.startswith("export.txt#entry-")
    assert first.rel == seed_entry.rel == "export.txt" and seed_entry.entry.position == 2
    assert seed_entry.text == seed_text.strip("\n") and seed_entry.meta.title == "切り抜き"
    assert _rows_without_ids(seed_entry) == expected


def test_entries_that_are_not_posts_are_rejects_with_their_number_and_ids_follow_identity_not_position():
    from kirinuki.ingest.mtif import entry_sources
    from kirinuki.ingest.sources import Source

    def name(x) -> str:  # a Source's key, a Reject's source_path
        return getattr(x, "key", None) or x.source_path

    def export(text: str) -> Source:
        return Source("blog.txt", text, "2" * 64, len(text.encode()), "utf-8", "lf")

    def digest(x) -> str:
        return getattr(x, "sha256", None) or x.source_sha256

    got = entry_sources(export(EXPORT))
    kinds = [(name(x), getattr(x, "code", "post")) for x in got]
    assert kinds[0] == ("blog.txt#2024/06/12/081500", "post") and kinds[1][1] == "draft"
    assert "entry 2 is a draft" in got[1].reason and [k for _, k in kinds[2:]] == ["post", "post"]
    added = _goo_entry("新しい記事", "08/01/2024 10:00:00", "<p>後から足した。</p>") + EXPORT
    again = entry_sources(export(added))
    assert [name(x) for x in again[1:]] == [name(x) for x in got]  # an entry in front moves no other id
    assert [digest(x) for x in again[1:]] == [digest(x) for x in got]
