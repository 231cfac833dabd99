from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kirinuki.parse.grammar import parse, split_source


def offsets_hold(text, post):
    for p in post.paragraphs:
        assert text[p.start:p.end] == p.text, p
    for e in post.excerpts:
        assert 0 <= e.start < e.end <= len(text)
        for o in e.paragraphs:
            p = post.paragraphs[o - 1]
            assert e.start <= p.start and p.end <= e.end
        if e.attribution:
            assert text[e.attribution.start:e.attribution.end] == e.attribution.raw
    for c in post.citations:
        assert text[c.start:c.end] == c.raw


# ------------------------------------------------------------------ the seed

SEED_EXCERPTS = [
    # outlet, author, title?, date raw, elided, headline start
    ("AFP", None, None, "2023年10月21日", False, "カザフ、対ロシア制裁による禁輸を否定"),
    ("テレ朝news", None, None, "2023年11月2日", False, "仏マクロン大統領が中央アジア歴訪"),
    ("産経", None, None, "2023年11月10日", True, "プーチン氏、カザフと結束確認"),
    ("Newsweek", None, None, "4月9日", True, "ロシアの隣りの強権国家までがロシア離れ"),
    ("ロイター", None, None, "4月8日", False, "ロシア、カザフからのガソリン供給を模索"),
    ("MAG2NEWS", "島田久仁彦氏", None, "4月6日", True, "5月に一斉攻撃か。"),
    ("現代ビジネス", None, "実は「ウクライナの次」は起きそうもない、あまりに分が悪いプーチンのロシアの対外関係",
     "3月20日", True, "中央アジアではロシアは「腐っても鯛」"),
]


def test_seed_roles_and_counts(seed_text):
    post = parse(seed_text)
    roles = Counter(p.role for p in post.paragraphs)
    assert roles["heading"] == 4
    assert roles["caption"] == 1
    assert roles["commentary"] == 19
    assert roles["lead"] == 1 and roles["subheading"] == 2
    assert len(post.excerpts) == 7 and len(post.citations) == 1
    offsets_hold(seed_text, post)


@pytest.mark.parametrize("i", range(7))
def test_seed_excerpt(seed_text, i):
    ex = parse(seed_text).excerpts[i]
    outlet, author, title, date_raw, elided, headline = SEED_EXCERPTS[i]
    assert ex.headline.startswith(headline)
    assert ex.attribution.outlet == outlet
    assert ex.attribution.author == author
    assert ex.attribution.title == title
    assert ex.attribution.date.raw == date_raw
    assert ex.elided is elided
    assert "【" not in ex.body and ex.flags == []


def test_seed_tv_asahi_repeats_are_flagged_and_kept_out_of_the_body(seed_text):
    post = parse(seed_text)
    ex = post.excerpts[1]
    own = [post.paragraphs[o - 1] for o in ex.paragraphs]
    assert len(own) == 9
    repeats = [p for p in own if p.duplicate_of is not None]
    assert len(repeats) == 4
    for p in repeats:
        original = post.paragraphs[p.duplicate_of - 1]
        assert original.text == p.text and original.ordinal < p.ordinal and original.excerpt == ex.ordinal
    assert ex.body.split("\n") == [p.text for p in own if p.duplicate_of is None]
    assert len(ex.body.split("\n")) == 5


def test_seed_newsweek_lead_and_subheadings(seed_text):
    post = parse(seed_text)
    ex = post.excerpts[3]
    assert ex.lead.startswith("かつて反政府デモの鎮圧") and not ex.lead.startswith("<")
    subs = [p.text for p in post.paragraphs if p.excerpt == ex.ordinal and p.role == "subheading"]
    assert subs == ["親ロの中央アジア諸国に動揺", "対ロ制裁の「抜け穴」"]
    assert ex.lead not in ex.body


def test_seed_citation_and_caption(seed_text):
    post = parse(seed_text)
    (c,) = post.citations
    assert (c.date.raw, c.author, c.outlet) == ("4月2日", "田中佑真氏", "新潮社フォーサイト")
    assert c.title.startswith("「中央アジアのロシア離れ」は本当か?")
    assert post.paragraphs[c.paragraph - 1].role == "commentary"
    assert post.caption.outlet == "日経" and post.caption.date.raw == "2023年11月9日"
    assert post.caption.text.startswith("カザフスタンを訪問した")


def test_seed_attribution_is_not_part_of_paragraph_text(seed_text):
    post = parse(seed_text)
    last = post.paragraphs[post.excerpts[0].paragraphs[-1] - 1]
    assert last.text.endswith("疑念を持たれている。")


# ------------------------------------------------------------------ grammar elements, one by one

def test_star_frames_of_three_to_five_and_unbalanced():
    text = "***三つ***\n本文。【1月2日 A】\n***\n*****五つ****\n本文。【1月3日 B】\n**********\n"
    post = parse(text)
    assert [e.headline for e in post.excerpts] == ["三つ", "五つ"]
    assert all(e.flags == [] for e in post.excerpts)


def test_heading_commentary_and_excerpt_order():
    text = "【節の見出し】\n解説の段落。\n\n****記事****\n記事本文。【2024年1月2日 共同】\n*****\n解説の続き。\n"
    post = parse(text)
    assert [p.role for p in post.paragraphs] == ["heading", "commentary", "body", "commentary"]
    assert post.paragraphs[2].excerpt == 1 and post.paragraphs[3].excerpt is None


def test_caption_only_on_the_first_line():
    text = "(【2024年1月9日 共同】 写真の説明)\n(【2024年1月9日 共同】 二行目は解説)\n"
    post = parse(text)
    assert [p.role for p in post.paragraphs] == ["caption", "commentary"]
    assert post.caption.text == "写真の説明" and post.caption.outlet == "共同"


@pytest.mark.parametrize("attr,outlet,author,title,year", [
    ("【2023年10月21日 AFP】", "AFP", None, None, 2023),
    ("【4月6日 島田久仁彦氏 MAG2NEWS】", "MAG2NEWS", "島田久仁彦氏", None, None),
    ("【3月20日 現代ビジネス“記事の題”】", "現代ビジネス", None, "記事の題", None),
    ("【３月２０日 日経】", "日経", None, None, None),
    ("【2024年1月9日(火) NHK】", "NHK", None, None, 2024),
    ("【ロイター】", "ロイター", None, None, None),
])
def test_attribution_forms(attr, outlet, author, title, year):
    text = f"****見出し****\n本文です。 {attr}\n*****\n"
    ex = parse(text).excerpts[0]
    a = ex.attribution
    assert (a.outlet, a.author, a.title) == (outlet, author, title)
    assert (a.date.year if a.date else None) == year
    assert ex.body == "本文です。"
    assert text[a.start:a.end] == attr


def test_attribution_on_its_own_line_is_not_a_paragraph():
    post = parse("****見出し****\n本文。\n【5月1日 時事】\n*****\n")
    assert [p.text for p in post.paragraphs] == ["本文。"]
    assert post.excerpts[0].attribution.outlet == "時事"


def test_elision_markers_flag_the_excerpt():
    post = parse("****見出し****\n(中略)\n一段落。(中略)\n二段落。(後略)【1月1日 A】\n*****\n"
                 "****別****\n本文。【1月1日 B】\n*****\n")
    assert [e.elided for e in post.excerpts] == [True, False]
    assert [p.elision for p in post.paragraphs] == [True, True, True, False]


def test_unterminated_excerpt_is_closed_at_end_of_file_and_flagged():
    text = "解説。\n****見出し****\n本文一。\n本文二。【2024年2月1日 共同】"
    post = parse(text)
    (ex,) = post.excerpts
    assert "unterminated" in ex.flags
    assert ex.end == len(text)
    assert ex.body == "本文一。\n本文二。"
    offsets_hold(text, post)


def test_new_headline_inside_an_open_excerpt_closes_it():
    post = parse("****一****\n本文。【1月1日 A】\n****二****\n本文二。【1月2日 B】\n*****\n")
    assert [e.headline for e in post.excerpts] == ["一", "二"]
    assert "reopened" in post.excerpts[0].flags and post.excerpts[1].flags == []


def test_section_heading_after_the_attribution_ends_a_forgotten_excerpt():
    post = parse("****一****\n本文。【1月1日 A】\n【次の節】\n解説。\n")
    assert "unterminated" in post.excerpts[0].flags
    assert [p.role for p in post.paragraphs] == ["body", "heading", "commentary"]


def test_missing_attribution_is_flagged_and_stray_close_line_is_noted():
    post = parse("****見出し****\n本文。\n*****\n*****\n")
    assert post.excerpts[0].flags == ["no_attribution"]
    assert post.flags == ["stray_close_line"]


def test_whole_excerpt_pasted_twice_points_at_the_first():
    block = "****同じ記事****\n本文一。\n本文二。【1月1日 A】\n*****\n"
    post = parse(block + "解説。\n" + block)
    assert [e.duplicate_of for e in post.excerpts] == [None, 1]
    assert post.excerpts[1].body == post.excerpts[0].body == "本文一。\n本文二。"
    dup = [p for p in post.paragraphs if p.excerpt == 2]
    assert [p.duplicate_of for p in dup] == [1, 2]


def test_lines_of_only_invisible_characters_are_blank():
    post = parse("解説。\n\u200b\ufeff \n解説二。\n")
    assert [p.text for p in post.paragraphs] == ["解説。", "解説二。"]


def test_bare_elision_lines_are_not_duplicates():
    post = parse("****見出し****\n(中略)\n本文。\n(中略)\n本文二。【1月1日 A】\n*****\n")
    assert all(p.duplicate_of is None for p in post.paragraphs)


@pytest.mark.parametrize("text,n,fields", [
    ("解説(4月2日 田中佑真氏 新潮社フォーサイト“題(副題)”)です。", 1, ("4月2日", "田中佑真氏", "新潮社フォーサイト", "題(副題)")),
    ("解説(2023年4月2日 日経)と(5月1日 NHK)。", 2, ("2023年4月2日", None, "日経", None)),
    ("(“綱渡り”・・・あるいは“いいとこ取り”でしょうか)", 0, None),
])
def test_inline_citations(text, n, fields):
    post = parse(text + "\n")
    assert len(post.citations) == n
    if n:
        c = post.citations[0]
        assert (c.date.raw, c.author, c.outlet, c.title) == fields
    offsets_hold(text, post)


def test_split_source_keeps_outlets_without_author():
    assert split_source("BBC“A title”").outlet == "BBC"
    assert split_source("田中氏 日経").author == "田中氏"
    assert split_source("").outlet is None


# ------------------------------------------------------------------ properties

_LINES = st.sampled_from([
    "****見出し****", "*****", "***", "【見出し】", "解説の段落。", "本文。【4月6日 島田久仁彦氏 MAG2NEWS】",
    "<リード>", "(中略)", "短い小見出し", "(【2023年11月9日 日経】 写真)", "引用(4月2日 田中氏 日経“題”)",
    "  字下げ  ", "", "本文。【2023年13月40日 A】", "****開いたまま",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(max_size=30)), max_size=40))
def test_parse_never_raises_and_offsets_always_hold(lines):
    text = "\n".join(lines)
    text = text.replace("\r", "")
    post = parse(text)
    offsets_hold(text, post)
    ids = [p.ordinal for p in post.paragraphs]
    assert ids == list(range(1, len(ids) + 1))
