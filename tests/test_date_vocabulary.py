"""Issue 18: the date vocabulary — longest match, no false dates, offsets that slice the source,
headline mentions, repeats, and no regression against the mentions found before the widening."""

import csv
from datetime import date
from itertools import pairwise

import pytest
from conftest import FIXTURES, rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kirinuki.clean.date_mentions import Run
from kirinuki.clean.normalize import clean_document, read_tsv
from kirinuki.ingest.sources import Source
from kirinuki.parse.records import source_rows
from kirinuki.schema import REFERENCE

DATE_RULES = read_tsv(REFERENCE / "date_rules.tsv")
ANCHOR = date(2024, 4, 10)  # a Wednesday

# (longer form, the shorter form written inside it, a sentence around the longer one)
CONTAINMENT = [
    ("一昨年", "昨年", "{}に計画が始まった。"),
    ("再来年", "来年", "{}に完成する。"),
    ("一昨日", "昨日", "{}から雪が続く。"),
    ("明後日", "明日", "{}に投票がある。"),
    ("先々週", "先週", "{}に署名した。"),
    ("再来週", "来週", "{}に採決する。"),
    ("今週末", "今週", "{}に投票がある。"),
    ("2023年度", "2023年", "{}に導入した。"),
    ("今年度", "今年", "{}の予算に盛り込む。"),
    ("2023年夏", "2023年", "{}に完成した。"),
    ("十数年前", "数年前", "{}に閉山した。"),
]


@pytest.mark.parametrize("long, short, sentence", CONTAINMENT, ids=lambda v: v if isinstance(v, str) else "")
def test_the_longer_expression_wins_over_the_one_inside_it(long, short, sentence):
    (m,) = Run(ANCHOR).mentions(sentence.format(long))
    (inner,) = Run(ANCHOR).mentions(sentence.format(short))
    assert m.raw == long and inner.raw == short
    assert (m.date_start, m.date_end) != (inner.date_start, inner.date_end)
    assert any(r["raw"].startswith(long) for r in DATE_RULES), f"{long} has no row in date_rules.tsv"


@pytest.mark.parametrize("text", [
    "一日も早く停戦を", "三日月の夜", "3日前後で届く", "五月雨式に", "毎週月曜に会合", "2023年度比で増えた",
    "3年間続いた", "10日間の会議", "数日間の停電", "半年間の交渉", "十日町の祭り", "毎年春に", "2日目の交渉",
])
def test_durations_sets_and_words_are_not_dates(text):
    assert Run(ANCHOR).mentions(text) == []


# ------------------------------------------------------------------ offsets and overlaps, generated

PIECES = ["2023年", "5月", "19日", "(月)", "夜", "昨年", "一昨年", "来年", "再来年", "昨日", "一昨日", "明日",
          "明後日", "先週", "先々週", "来週", "再来週", "週末", "この", "その", "翌日", "翌々日", "3日", "前",
          "後", "数", "十", "九", "二〇二三年", "三月", "度", "第3四半期", "上半期", "春", "冬", "上旬", "末",
          "月曜", "カ月", "半年", "年", "月", "日", "、", "。", "予定", "に", "は", "\n", " ", "１", "令和",
          "元年", "1～3月期", "本日", "今朝", "毎週"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30), anchor=st.dates(date(1990, 1, 1), date(2030, 12, 31)))
def test_every_mention_slices_its_text_and_no_two_overlap(pieces, anchor):
    text = "".join(pieces)
    ms = Run(anchor).mentions(text)
    for m in ms:
        assert text[m.start:m.end] == m.raw and m.raw
        assert (m.date_start is None) == (m.date_end is None) == (m.granularity is None)
        assert m.date_start is None or m.date_start <= m.date_end
    for a, b in pairwise(ms):
        assert a.end <= b.start


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=20))
def test_document_mentions_slice_the_decoded_post_also_in_headlines(pieces):
    words = "".join(pieces).replace("\n", "")
    text = (f"前置き{words}。\n\n****{words}の見出し****\n本文は{words}と伝えた。\n"
            f"【2024年4月9日 共同通信】\n****************\n")
    src = Source("gen.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf")
    tables = source_rows(src)
    clean_document(tables)
    ms = tables["date_mentions"]
    for m in ms:
        assert text[m["char_start"]:m["char_end"]] == m["raw"]
    spans = sorted((m["char_start"], m["char_end"]) for m in ms)
    for (_, a_end), (b_start, _) in pairwise(spans):
        assert a_end <= b_start


# ------------------------------------------------------------------ headlines and repeats

HEADLINE_POST = """今朝の切り抜きです。

****5月に一斉攻撃か 19日までに完全撤退****
国防省は15日、部隊が19日までに撤退すると発表した。
【2024年4月16日 共同通信】
****************

同じ記事がもう一度。

****5月に一斉攻撃か 19日までに完全撤退****
国防省は15日、部隊が19日までに撤退すると発表した。
【2024年4月16日 共同通信】
****************
"""


def _post_rows(text: str) -> dict:
    src = Source("headline.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf")
    tables = source_rows(src)
    clean_document(tables)
    return tables


def test_headline_dates_are_mentions_of_their_excerpt_resolved_against_the_article():
    t = _post_rows(HEADLINE_POST)
    first = t["excerpts"][0]["excerpt_id"]
    heads = [m for m in t["date_mentions"] if m["context"] == "headline" and m["excerpt_id"] == first]
    assert [(m["raw"], m["date_start"], m["rule"]) for m in heads] == [
        ("5月", date(2024, 5, 1), "month_nearest"), ("19日", date(2024, 4, 19), "day_ahead")]
    for m in heads:
        assert m["paragraph_id"] is None and m["anchor"] == date(2024, 4, 16)
        assert HEADLINE_POST[m["char_start"]:m["char_end"]] == m["raw"]


def test_mentions_in_a_repeated_excerpt_point_at_their_first_copy():
    ms = _post_rows(HEADLINE_POST)["date_mentions"]
    by_id = {m["mention_id"]: m for m in ms}
    first = [m for m in ms if HEADLINE_POST.index("****") < m["char_start"] < HEADLINE_POST.index("同じ記事")]
    again = [m for m in ms if m["char_start"] > HEADLINE_POST.index("同じ記事")]
    assert len(first) == len(again) == 4 and all(m["repeat_of"] is None for m in first)
    for m in again:
        original = by_id[m["repeat_of"]]
        assert (original["raw"], original["context"], original["date_start"]) == (
            m["raw"], m["context"], m["date_start"])
        assert original["char_start"] < m["char_start"]


def test_the_seeds_repeated_paragraphs_are_counted_once_by_repeat_of(seed_build):
    (r,) = rows(seed_build, """SELECT count(*) FILTER (WHERE repeat_of IS NOT NULL) AS repeats,
        count(*) FILTER (WHERE p.duplicate_of IS NOT NULL) AS in_repeated_paragraphs
        FROM date_mentions m LEFT JOIN paragraphs p USING (paragraph_id)""")
    assert r["repeats"] >= 1 and r["repeats"] == r["in_repeated_paragraphs"]
    bad = rows(seed_build, """SELECT m.raw FROM date_mentions m JOIN date_mentions o ON m.repeat_of = o.mention_id
        WHERE m.raw <> o.raw OR m.date_start IS DISTINCT FROM o.date_start OR o.char_start >= m.char_start""")
    assert bad == []


# ------------------------------------------------------------------ no regression against the old output

BEFORE = FIXTURES / "dates" / "mentions_before.tsv"


def _before() -> list[dict]:
    with BEFORE.open(encoding="utf-8") as f:
        return list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))


def test_mentions_only_grow_and_old_ones_keep_their_dates(seed_build, sample_build):
    old = _before()
    for build, name in ((seed_build, "seed"), (sample_build, "sample")):
        now = {(r["source_path"], r["char_start"]): r for r in rows(build, """
            SELECT d.source_path, m.char_start, m.char_end, m.raw, m.date_start, m.date_end
            FROM date_mentions m JOIN documents d USING (doc_id)""")}
        before = [r for r in old if r["build"] == name]
        assert before and len(now) > len(before)
        for r in before:
            got = now.get((r["source_path"], int(r["char_start"])))
            assert got is not None, f"{name}: {r['raw']} at {r['char_start']} of {r['source_path']} is lost"
            lo, hi = date.fromisoformat(r["date_start"]), date.fromisoformat(r["date_end"])
            if got["raw"] == r["raw"]:
                assert (got["date_start"], got["date_end"]) == (lo, hi), r
            else:  # read longer now (2023年 → 2023年夏): the same start, a narrower span inside the old one
                assert got["raw"].startswith(r["raw"]) and got["char_end"] > int(r["char_end"]), r
                assert lo <= got["date_start"] <= got["date_end"] <= hi, r


def test_the_validation_suite_knows_every_kind_and_granularity():
    import json

    from kirinuki.clean.date_patterns import KINDS
    from kirinuki.schema import folder

    suite = json.loads((folder("expectations") / "date_mentions.json").read_text(encoding="utf-8"))
    sets = {e["kwargs"]["column"]: set(e["kwargs"]["value_set"]) for e in suite["expectations"]
            if e["type"] == "expect_column_values_to_be_in_set"}
    assert sets["kind"] == set(KINDS)
    assert {r["granularity"] for r in DATE_RULES if r["granularity"]} <= sets["granularity"]


# ------------------------------------------------------------------ the peer table (ja-timex beside kirinuki)

PEERS = read_tsv(REFERENCE / "date_peers.tsv")


@pytest.mark.parametrize("r", PEERS, ids=lambda r: f"{r['class']}:{r['example']}")
def test_peer_row(r):
    ms = Run(date.fromisoformat(r["anchor"])).mentions(r["example"])
    if not r["raw"]:
        assert ms == [], f"{r['example']}: {[m.raw for m in ms]}"
        return
    (m,) = [m for m in ms if m.raw == r["raw"]]
    assert (m.kind, m.date_start, m.date_end, m.granularity) == (
        r["kind"], date.fromisoformat(r["date_start"]), date.fromisoformat(r["date_end"]), r["granularity"])
    assert r["why"], "every row says how kirinuki's answer relates to ja-timex's"


def test_the_peer_table_covers_ja_timex_four_classes():
    assert {r["class"] for r in PEERS} == {"absolute", "relative", "duration", "set"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES + ["今", "前", "同", "上", "一", "二十", "数", "半", "毎", "こ", "そ", "の",
                                                 "曜", "期", "四", "第", "再", "明", "後", "去", "本", "当", "先"]),
                       max_size=30))
def test_the_guard_never_hides_a_match_of_the_vocabulary(pieces):
    import re

    from kirinuki.clean.date_patterns import MENTION_RE, PATTERN

    text = "".join(pieces)
    unguarded = [(m.start(), m.end()) for m in re.finditer(PATTERN, text)]
    assert [(m.start(), m.end()) for m in MENTION_RE.finditer(text)] == unguarded
