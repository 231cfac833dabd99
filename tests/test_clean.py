import re
import unicodedata
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kirinuki.clean.normalize import (clean_author, normalization_rules, normalize, outlet_key,
                         outlet_register, read_tsv, resolve_outlet)
from kirinuki.clean.date_mentions import Run
from kirinuki.clean.date_patterns import KINDS
from kirinuki.schema import REFERENCE
from conftest import rows

# ------------------------------------------------------------------ normalisation, one test per rule


@pytest.mark.parametrize("rule", normalization_rules(), ids=lambda r: r.name)
def test_each_normalization_rule(rule):
    for ch in rule.chars:
        # NFKC runs first: every listed character must still reach the rule after it
        seen = unicodedata.normalize("NFKC", ch)
        assert set(seen) <= set(rule.chars), f"NFKC turns {ch!r} into {seen!r} before the rule sees it"
        got = normalize(f"前{ch * rule.min_run}後")
        expect = "前" + rule.to + "後" if rule.to.strip() or not rule.to else "前 後"
        assert got == expect.replace("  ", " "), (rule.name, ch, got)
    if rule.min_run > 1:  # one character short of a run is left alone
        assert normalize(f"前{rule.chars[0] * (rule.min_run - 1)}後") == f"前{rule.chars[0] * (rule.min_run - 1)}後"


def test_spaces_between_date_and_outlet_survive_and_tilde_survives():
    assert normalize("【4月6日\u3000島田久仁彦氏  MAG2NEWS】") == "【4月6日 島田久仁彦氏 MAG2NEWS】"
    assert normalize("10〜20人") == normalize("10～20人") == "10~20人"


def test_nfkc_and_whitespace_handling():
    assert normalize("ＡＦＰ　ｶﾀｶﾅ\t１２３ ") == "AFP カタカナ 123"
    assert normalize("ロシア・ウクライナ") == "ロシア・ウクライナ"  # a single middle dot is a separator
    assert normalize("“綱渡り”・・・あるいは") == '"綱渡り"...あるいは'


_BLANK = re.compile(r"^[\s\u200b-\u200f\u2060-\u2064\ufeff]*$")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalize_is_idempotent_and_never_empties_a_non_blank_paragraph(text):
    once = normalize(text)
    assert normalize(once) == once
    if not _BLANK.match(text):
        assert once != ""


# ------------------------------------------------------------------ outlets and authors


def test_register_is_large_unique_and_well_formed():
    reg = outlet_register()
    assert len(reg) >= 60
    assert len({o["id"] for o in reg}) == len(reg)
    for o in reg:
        assert o["kind"] in {"wire", "newspaper", "broadcaster", "magazine", "web"}, o
        assert re.fullmatch(r"[A-Z]{2}", o["country"]), o
        assert not o["wikidata"] or re.fullmatch(r"Q[1-9][0-9]*", o["wikidata"]), o
        assert not o["homepage"] or o["homepage"].startswith("https://"), o
    # every name and alias resolves back to its own outlet (no alias is shared)
    for o in reg:
        for name in [o["name_ja"], o["name_en"], *filter(None, o["aliases"].split("|"))]:
            assert resolve_outlet(name) == o["id"], (name, o["id"])


@pytest.mark.parametrize("raw,oid", [
    ("AFP", "afp"), ("ＡＦＰ", "afp"), ("AFP時事", "afp"), ("afpbb news", "afp"), ("テレ朝news", "tv_asahi"),
    ("MAG2 NEWS", "mag2news"), ("産経", "sankei"), ("日経", "nikkei"), ("共同", "kyodo"), ("Newsweek", "newsweek_japan"),
    ("ニューヨーク・タイムズ", "nyt"), ("ニューヨークタイムズ", "nyt"), ("新潮社フォーサイト", "foresight"),
])
def test_outlet_aliases_resolve_after_normalisation(raw, oid):
    assert resolve_outlet(raw) == oid


def test_unknown_outlet_stays_null():
    assert resolve_outlet("架空タイムズ") is None and resolve_outlet(None) is None
    assert outlet_key(" Ｆｏｏ・Bar! ") == "foobar"


@pytest.mark.parametrize("raw,clean", [("島田久仁彦氏", "島田久仁彦"), ("田中 佑真 氏", "田中 佑真"), ("山田さん", "山田"),
                                       ("氏", "氏"), (None, None), ("  ", None)])
def test_author_without_honorifics(raw, clean):
    assert clean_author(raw) == clean


# ------------------------------------------------------------------ date rules (from the data file)

DATE_RULES = read_tsv(REFERENCE / "date_rules.tsv")


@pytest.mark.parametrize("r", DATE_RULES, ids=lambda r: f"{r['kind']}:{r['rule']}:{r['raw']}")
def test_date_rule(r):
    anchor = date.fromisoformat(r["anchor"]) if r["anchor"] else None
    found = [m for m in Run(anchor).mentions(r["example"]) if m.raw == r["raw"]]
    assert found, f"{r['raw']} not found in {r['example']}"
    m = found[0]
    assert (m.kind, m.rule) == (r["kind"], r["rule"])
    assert (m.date_start, m.date_end) == (
        date.fromisoformat(r["date_start"]) if r["date_start"] else None,
        date.fromisoformat(r["date_end"]) if r["date_end"] else None)
    assert m.granularity == (r["granularity"] or None)
    assert r["example"][m.start:m.end] == m.raw


def test_every_pattern_and_unresolved_reason_is_documented():
    assert set(KINDS) == {r["kind"] for r in DATE_RULES}
    assert {"no_anchor", "no_reference", "impossible_date", "out_of_range"} <= {r["rule"] for r in DATE_RULES}


@pytest.mark.parametrize("text", ["3日間の会議", "第1日", "10日ぶりに", "4カ月で", "2000名を越える", "6.5%"])
def test_durations_and_counts_are_not_dates(text):
    assert Run(date(2024, 4, 1)).mentions(text) == []


def test_relative_expressions_reach_back_into_the_previous_paragraph_of_the_run():
    run = Run(date(2024, 4, 9))
    run.mentions("2022年9月には併合を拒否した。")
    (m,) = run.mentions("この翌月、高官は述べた。")
    assert (m.date_start, m.granularity) == (date(2022, 10, 1), "month")


# ------------------------------------------------------------------ the seed, end to end

def test_seed_date_mentions(seed_build):
    got = {(r["outlet_raw"], r["raw"]): (r["date_start"], r["granularity"]) for r in rows(seed_build, """
        SELECT e.outlet_raw, m.raw, m.date_start, m.granularity FROM date_mentions m
        JOIN excerpts e USING (excerpt_id)""")}
    assert got[("AFP", "19日夜")] == (date(2023, 10, 19), "day")
    assert got[("テレ朝news", "1日")] == (date(2023, 11, 1), "day")
    assert got[("産経", "今月3日")] == (date(2023, 11, 3), "day")
    assert got[("産経", "9日")] == (date(2023, 11, 9), "day")
    assert got[("ロイター", "3月1日")] == (date(2024, 3, 1), "day")
    assert got[("MAG2NEWS", "昨年11月")] == (date(2023, 11, 1), "month")
    assert got[("Newsweek", "この翌月")] == (date(2022, 10, 1), "month")


def test_seed_mentions_slice_the_source_and_have_anchors(seed_build, seed_text):
    ms = rows(seed_build, "SELECT * FROM date_mentions")
    assert len(ms) > 25
    for m in ms:
        assert seed_text[m["char_start"]:m["char_end"]] == m["raw"]
        assert m["anchor"] is not None and m["anchor_kind"] == ("article" if m["excerpt_id"] else "post")


def test_every_outlet_in_seed_and_sample_has_an_id(seed_build, sample_build):
    for b in (seed_build, sample_build):
        assert rows(b, "SELECT count(*) n FROM excerpts WHERE outlet_id IS NULL") == [{"n": 0}]
        assert rows(b, "SELECT count(*) n FROM citations WHERE outlet_id IS NULL") == [{"n": 0}]
        assert rows(b, "SELECT count(*) n FROM documents WHERE caption_outlet_raw IS NOT NULL AND caption_outlet_id IS NULL") == [{"n": 0}]
    (mag,) = rows(seed_build, "SELECT author, author_raw FROM excerpts WHERE outlet_id = 'mag2news'")
    assert mag == {"author": "島田久仁彦", "author_raw": "島田久仁彦氏"}


def test_text_norm_beside_raw_text(seed_build):
    ps = rows(seed_build, "SELECT text, text_norm FROM paragraphs WHERE text LIKE '%“%'")
    assert ps and all('"' in p["text_norm"] and "“" in p["text"] for p in ps)
    for e in rows(seed_build, "SELECT body, body_norm FROM excerpts"):
        assert e["body_norm"].split("\n") == [normalize(line) for line in e["body"].split("\n")]


def test_unknown_outlets_are_counted_and_listed(tmp_path):
    import json
    import subprocess
    import sys

    from kirinuki.flows.build import build

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.txt").write_text("****見出し****\n本文。【2024年1月2日 架空タイムズ】\n*****\n"
                                            "****二****\n本文二。【2024年1月3日 架空タイムズ】\n*****\n", encoding="utf-8")
    summary = build([str(tmp_path / "in")], str(tmp_path / "out"))
    assert summary["unknown_outlets"] == {"distinct": 1, "rows": 2}
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "outlets", "--unknown", "--out", str(tmp_path / "out"),
                        "--format", "json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"outlet_raw": "架空タイムズ", "n": 2, "seen_in": "excerpts"}]
