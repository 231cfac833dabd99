"""Blog archives in (issue 16): MTIF and WXR exports and saved pages become one document per
published post, with the entry's metadata, and nothing of comments, drafts, sidebars or metadata."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
from conftest import SAMPLE, SEED

from kirinuki.ingest.posts import posts_of
from kirinuki.ingest.sources import Reject, Source, SourceRef, read_source

MTIF_SJIS = SAMPLE / "exports" / "minato-goo-export.txt"
WXR = SAMPLE / "exports" / "kaiko-wordpress.xml"
PAGE = SAMPLE / "pages" / "2024-08-15_hokubu-tetsudou.html"
# text that sits in the fixtures outside any published post: comments, drafts, excerpts, keywords,
# pages, sidebars, navigation, ads, footers
NEVER_POST_TEXT = ("船乗りより", "岸壁を直して", "コメントありがとう", "まだ下書き", "倉庫の建設についての短いまとめ",
                   "倉庫 港", "読者より", "高値はいつまで", "固定ページ", "まだ公開していない", "通貨の話の抜粋",
                   "期待しています", "乗りに行きます", "最新記事", "港の倉庫の続報", "今だけ半額", "Powered by",
                   "記事一覧", "トップ", "前の記事", "コメントを書く", "シェア", "この記事のタグ", "架空の国のニュースを切り抜く")


def posts(path: Path, **kw) -> list[Source | Reject]:
    src = read_source(SourceRef(str(path), path.name))
    assert isinstance(src, Source), src
    return posts_of(src, **kw)[1]


def test_shift_jis_crlf_mtif_gives_its_published_entries_with_their_metadata():
    got = posts(MTIF_SJIS)
    docs = [p for p in got if isinstance(p, Source)]
    assert [d.meta.title for d in docs] == ["ミレフ港の新しい倉庫", "国境の町の診療所"]
    assert {d.encoding for d in docs} == {"cp932"} and {d.newline for d in docs} == {"crlf"}
    first, second = (d.entry for d in docs)
    assert first.published_at == datetime(2024, 7, 3, 21, 40, 15) and second.published_at == datetime(2024, 7, 10, 19, 5)
    assert first.categories == ("ノルドリア", "港湾") and first.tags == ("倉庫", "穀物", "ミレフ 港")
    assert (first.entry_id, first.position, second.position) == ("2024/07/03/minato-souko", 1, 3)
    assert first.utc_offset_minutes is None  # MTIF carries no zone
    # the extended body continues the post as a line of its own; colour spans and <strong> vanish
    assert docs[0].text.splitlines()[-2:] == ["倉庫ができれば、積み込み待ちの船も減るはずです。",
                                              "追記:地元紙も同じ話を伝えています(7月3日 NHK)。"]
    [draft] = [p for p in got if isinstance(p, Reject)]
    assert (draft.code, draft.entry_position) == ("draft", 2)
    for text in NEVER_POST_TEXT:
        assert all(text not in d.text for d in docs), text


def test_drafts_are_kept_flagged_when_asked():
    docs = [p for p in posts(MTIF_SJIS, keep_drafts=True) if isinstance(p, Source)]
    assert [("draft" in d.notes) for d in docs] == [False, True, False]


def test_wxr_reads_published_posts_only_with_urls_terms_and_utc_offsets():
    got = posts(WXR)
    docs = [p for p in got if isinstance(p, Source)]
    assert [d.entry.entry_id for d in docs] == ["post-101", "post-57"]
    block, classic = docs
    assert block.entry.url == "https://kaiko.example.org/2024/08/02/nord-currency/"
    assert (block.entry.categories, block.entry.tags) == (("経済",), ("為替",))
    assert block.entry.published_at == datetime(2024, 8, 2, 20, 20) and block.entry.utc_offset_minutes == 540
    assert "****ノルド、対ドルで3か月ぶり高値 輸出回復を好感****" in block.text.splitlines()
    assert "輸入物価が落ち着けば、家計にも良い知らせです。" in block.text.splitlines()  # <strong> inside a line
    # the classic editor's newlines are WordPress's paragraphs and line breaks
    assert classic.text.splitlines()[2:4] == ["****ミレフ港で2日間のストライキ 積み出し停止****",
                                              "ミレフ港の荷役労働者は19日、賃上げを求めて2日間のストライキに入った。"]
    assert {(r.code, r.entry_position) for r in got if isinstance(r, Reject)} == {
        ("not_a_post", 3), ("not_a_post", 4), ("draft", 5)}
    for text in NEVER_POST_TEXT:
        assert all(text not in d.text for d in docs), text


def test_wxr_entities_are_refused_not_expanded(tmp_path):
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
            '<rss xmlns:wp="http://wordpress.org/export/1.2/"><channel><item><title>&b;</title></item></channel></rss>\n')
    (tmp_path / "bomb.xml").write_text(bomb, encoding="utf-8")
    [r] = posts(tmp_path / "bomb.xml")
    assert isinstance(r, Reject) and r.code == "unsafe_xml"


def test_a_truncated_wxr_keeps_its_complete_items(tmp_path):
    text = WXR.read_text(encoding="utf-8")
    cut = text.index("<title><![CDATA[このブログについて]]>")
    (tmp_path / "cut.xml").write_text(text[:cut], encoding="utf-8")
    got = posts(tmp_path / "cut.xml")
    assert [p.entry.entry_id for p in got if isinstance(p, Source)] == ["post-101", "post-57"]
    [broken] = [p for p in got if isinstance(p, Reject)]
    assert broken.code == "malformed_entry" and "first 2 items are read" in broken.reason


def test_saved_page_gives_the_post_body_and_its_metadata_only():
    [doc] = posts(PAGE)
    assert isinstance(doc, Source) and doc.source_format == "html"
    assert doc.meta.title == "北部鉄道の延伸計画"  # not the <title> with the blog's name
    assert doc.entry.url == "https://kitadayori.example.jp/entry/2024/08/15/hokubu-tetsudou"
    assert doc.entry.published_at == datetime(2024, 8, 15, 18, 30) and doc.entry.utc_offset_minutes == 540
    assert doc.entry.categories == ("鉄道", "ノルドリア")
    lines = doc.text.splitlines()
    assert lines[0] == "このページは kirinuki の確認用に作った架空のブログの保存ページです。"
    assert lines[-1] == "駅ができれば町の人手不足も少しは和らぐでしょうか。"  # the image gives nothing
    assert lines.count("北部鉄道の延伸計画") == 0  # the sidebar's copy of the title is not read
    for text in NEVER_POST_TEXT:
        assert text not in doc.text, text


def test_a_page_no_rule_knows_is_rejected_not_read_whole(tmp_path):
    (tmp_path / "p.html").write_text("<!DOCTYPE html><html><body><nav>メニュー</nav><div>本文らしきもの</div></body></html>",
                                     encoding="utf-8")
    [r] = posts(tmp_path / "p.html")
    assert isinstance(r, Reject) and r.code == "no_post_body"


def test_an_entry_with_bad_bytes_is_a_reject_and_the_others_are_read(tmp_path):
    data = MTIF_SJIS.read_bytes()
    at = data.index("国境の町で".encode("cp932"))
    (tmp_path / "bad.txt").write_bytes(data[:at] + b"\x81\x7f" + data[at:])  # 0x81 0x7F is no CP932 character
    got = posts(tmp_path / "bad.txt")
    assert [p.meta.title for p in got if isinstance(p, Source)] == ["ミレフ港の新しい倉庫"]
    assert {(r.code, r.entry_position) for r in got if isinstance(r, Reject)} == {("draft", 2), ("malformed_entry", 3)}


def test_seed_as_goo_entry_builds_the_same_records_as_the_seed_text(tmp_path):
    from kirinuki.flows.build import build

    body = "".join(f"{line}<br />\n" for line in SEED.read_text(encoding="utf-8").splitlines())
    export = ("AUTHOR: seed\nTITLE: seed\nBASENAME: seed\nSTATUS: Publish\nCONVERT BREAKS: 0\n"
              "DATE: 01/02/2030 10:00:00\n-----\nBODY:\n" + body + "-----\n--------\n")
    (tmp_path / "txt").mkdir()
    (tmp_path / "mt").mkdir()
    shutil.copy(SEED, tmp_path / "txt" / "seed.txt")  # with the entry's date, as a sidecar gives it
    (tmp_path / "txt" / "seed.meta.json").write_text('{"published_date": "2030-01-02"}', encoding="utf-8")
    (tmp_path / "mt" / "export.txt").write_text(export, encoding="utf-8")
    build([str(tmp_path / "txt")], str(tmp_path / "a"))
    build([str(tmp_path / "mt")], str(tmp_path / "b"))
    con = duckdb.connect()
    cols = {"excerpts": "ordinal, headline, lead, body, attribution_raw, outlet_raw, char_start, char_end",
            "paragraphs": "ordinal, role, text, char_start, char_end",
            "date_mentions": "raw, char_start, char_end, rule, date_start, date_end",
        "citations": "raw, outlet_raw, published_date, char_start, char_end"}
    for table, c in cols.items():
        a, b = (con.sql(f"SELECT {c} FROM '{tmp_path / d}/data/{table}.parquet' ORDER BY ALL").fetchall() for d in "ab")
        assert a == b and a, table


def test_sample_build_one_document_per_published_post_and_text_recovers_every_row(sample_build):
    con = duckdb.connect()
    data = sample_build / "data"
    docs = con.sql(f"SELECT source_format, count(*) FROM '{data}/documents.parquet' GROUP BY ALL ORDER BY 1").fetchall()
    assert docs == [("html", 1), ("mtif", 2), ("text", 5), ("wxr", 2)]
    for table in ("paragraphs", "excerpts", "citations", "date_mentions"):
        col = {"paragraphs": "t.text", "excerpts": None, "citations": "t.raw", "date_mentions": "t.raw"}[table]
        if col is None:
            continue
        bad = con.sql(f"SELECT count(*) FROM '{data}/{table}.parquet' t JOIN '{data}/documents.parquet' d USING (doc_id) "
                      f"WHERE substr(d.text, t.char_start + 1, t.char_end - t.char_start) <> {col}").fetchall()[0][0]
        assert bad == 0, table
    texts = [r[0] for r in con.sql(f"SELECT text FROM '{data}/paragraphs.parquet'").fetchall()]
    for text in NEVER_POST_TEXT:
        assert all(text not in t for t in texts), text
    quotes = con.sql(f"SELECT d.source_format, e.headline, e.outlet_raw, e.published_date FROM '{data}/excerpts.parquet' e "
                     f"JOIN '{data}/documents.parquet' d USING (doc_id) WHERE d.source_format <> 'text' "
                     "ORDER BY d.published_at").fetchall()
    day = datetime.fromisoformat
    assert quotes == [("wxr", "ミレフ港で2日間のストライキ 積み出し停止", "AFP", day("2023-11-19").date()),
                      ("mtif", "ミレフ港に大型倉庫 穀物の保管能力2倍に", "共同通信", day("2024-07-02").date()),
                      ("mtif", "カレン市の診療所、半年ぶりに再開 医師2人が着任", "NHK", day("2024-07-09").date()),
                      ("wxr", "ノルド、対ドルで3か月ぶり高値 輸出回復を好感", "ロイター", day("2024-08-01").date()),
                      ("html", "北部鉄道、カレン市まで延伸へ 2027年開業目指す", "共同通信", day("2024-08-14").date())]
    row = con.sql(f"SELECT title, published_date, date_inferred, year_rule, published_at FROM '{data}/documents.parquet' "
                  "WHERE entry_id = 'post-57'").fetchall()[0]
    assert row[:4] == ("古い記事:港のストライキ", datetime(2023, 11, 20).date(), False, "metadata")
    assert row[4] == datetime(2023, 11, 20, 8, 0)


def test_a_new_export_with_more_posts_parses_only_those_and_keeps_every_id(tmp_path):
    from kirinuki.flows.build import build

    (tmp_path / "in").mkdir()
    target = tmp_path / "in" / "blog.txt"
    shutil.copy(MTIF_SJIS, target)
    first = build([str(tmp_path / "in")], str(tmp_path / "out"))
    con = duckdb.connect()
    q = f"SELECT doc_id, entry_id, title FROM '{tmp_path}/out/data/documents.parquet' ORDER BY entry_id"
    before = con.sql(q).fetchall()
    text = MTIF_SJIS.read_bytes().decode("cp932")
    added = "".join(f"AUTHOR: x\r\nTITLE: 追加{i}\r\nBASENAME: add-{i}\r\nSTATUS: Publish\r\nDATE: 08/0{i + 1}/2024 10:00:00\r\n"
                    f"-----\r\nBODY:\r\n追加の記事{i}。<br />\r\n****見出し{i}****<br />本文{i}。【8月1日 共同通信】<br />*****<br />\r\n"
                    "-----\r\n--------\r\n" for i in range(5))
    target.write_bytes((added + text).encode("cp932"))  # newer posts first, as blogs export them
    second = build([str(tmp_path / "in")], str(tmp_path / "out"))
    assert (first["inputs"]["parsed"], second["inputs"]["parsed"]) == (2, 5)
    after = con.sql(q).fetchall()
    assert set(before) <= set(after) and len(after) == 7
    clean = build([str(tmp_path / "in")], str(tmp_path / "clean"), cache=False)
    for name in json.loads((tmp_path / "out" / "build.json").read_text())["files"]:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert clean["inputs"]["parsed"] == 7


def test_a_large_export_read_in_shares_by_several_workers_gives_the_same_tables(tmp_path, monkeypatch):
    """An export over SHARE_BYTES is split into runs of entries, one batch each: the tables are
    byte for byte those of reading it whole, and a rebuild after new entries still reuses the rest."""
    import kirinuki.ingest.posts as posts_module
    from kirinuki.flows.build import build

    (tmp_path / "in").mkdir()
    entries = "".join(f"AUTHOR: x\nTITLE: 記事{i}\nBASENAME: b-{i:03d}\nSTATUS: {'Draft' if i % 7 == 3 else 'Publish'}\n"
                      f"DATE: 03/{i % 28 + 1:02d}/2024 10:00:00\n-----\nBODY:\n解説{i}。<br />\n****見出し{i % 9}****<br />\n"
                      f"本文{i % 9}の段落です。【3月{i % 28 + 1}日 共同通信】<br />\n*****<br />\n-----\n--------\n"
                      for i in range(60))
    (tmp_path / "in" / "blog.txt").write_text(entries, encoding="utf-8")
    whole = build([str(tmp_path / "in")], str(tmp_path / "whole"), workers=2)
    monkeypatch.setattr(posts_module, "SHARE_BYTES", 1000)
    build([str(tmp_path / "in")], str(tmp_path / "shared"), workers=2)
    def batches(out: str) -> int:
        return len(list((tmp_path / out / "cache" / "index").glob("part-*.json")))

    assert (batches("whole"), batches("shared")) == (1, 8)  # 12 KB in 1000-byte shares, at most 4 per worker
    for name in whole["files"]:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "shared" / name).read_bytes(), name
    assert whole["rows"]["documents"] == 60 - 9 and whole["rejects"] == {"draft": 9}
    (tmp_path / "in" / "blog.txt").write_text(entries.replace("解説0。", "書き直した解説。"), encoding="utf-8")
    again = build([str(tmp_path / "in")], str(tmp_path / "shared"), workers=2)
    assert again["inputs"]["parsed"] == 1 and again["inputs"]["from_cache"] == 50
