"""Quoting conventions: each declared convention finds the quotes of its fixtures (boundaries,
headline, outlet, date, URL, hard-wrapped paragraphs), the traps give none, precision and recall
on the mixed fixture folder, pins, and a new convention added as data alone."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from conftest import SEED, rows

from kirinuki.clean.normalize import resolve_outlet
from kirinuki.ingest.pins import PinError
from kirinuki.ingest.sources import SourceRef, discover, read_source
from kirinuki.parse import conventions as conv_mod
from kirinuki.parse.detect import parse_post
from kirinuki.parse.grammar import parse
from kirinuki.parse.records import outlet_of, source_rows

FIXTURES = Path(__file__).parent / "fixtures" / "conventions"
EXPECTED = tomllib.loads((FIXTURES / "expected.toml").read_text(encoding="utf-8"))


def _text(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text(encoding="utf-8")


def _quotes(text: str, pinned: str | None = None, declared=None):
    """(convention, [found excerpt as a dict comparable with expected.toml])."""
    parsed, name, _ = parse_post(text, pinned, declared)
    found = []
    for ex in parsed.excerpts:
        body = [p for p in parsed.paragraphs if p.excerpt == ex.ordinal and p.role != "note"]
        outlet, outlet_from = outlet_of(ex)
        d = ex.attribution.date if ex.attribution else None
        found.append({
            "headline": ex.headline, "first_line": body[0].line_no, "last_line": body[-1].line_end or body[-1].line_no,
            "outlet": resolve_outlet(outlet), "outlet_from": outlet_from,
            "date": (f"{d.year}-{d.month:02d}-{d.day:02d}" if d.year else f"{d.month:02d}-{d.day:02d}") if d else None,
            "url": ex.url, "author": ex.attribution.author if ex.attribution else None,
            "dateline": ex.dateline[0] if ex.dateline else None, "elided": ex.elided,
            "wrapped": [[p.line_no, p.line_end] for p in body if p.line_end],
        })
    return name, found


def test_every_fixture_has_its_expectations():
    assert sorted(p.stem for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)
    declared = {c.name for c in conv_mod.shipped()[0]} - {"star_frame"}  # the seed is the seed's own fixture
    assert declared <= {e.get("convention") for e in EXPECTED.values()}, "a convention without fixtures"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_gives_its_records(name):
    want = EXPECTED[name]
    convention, found = _quotes(_text(name))
    assert convention == want.get("convention")
    expected = want.get("excerpt", [])
    assert [(f["first_line"], f["last_line"]) for f in found] == [(e["first_line"], e["last_line"]) for e in expected]
    for f, e in zip(found, expected):
        for key in ("headline", "outlet", "date", "url", "author", "dateline", "outlet_from"):
            if key in e:
                assert f[key] == e[key], (name, key, f)
        assert f["wrapped"] == e.get("wrapped", []), (name, f)
        assert f["elided"] == e.get("elided", False), (name, f)


def test_traps_leave_everything_commentary():
    for name in ("traps", "traps_diary"):
        parsed, convention, rule = parse_post(_text(name))
        assert parsed.excerpts == [] and convention is None and rule is None
        assert {p.role for p in parsed.paragraphs} <= {"commentary", "heading"}
    # commentary that names an outlet stays commentary, with or without the outlet's date
    parsed, _, _ = parse_post("産経によると、今週はずっと雨らしい。\n2024年6月3日 毎日新聞を駅で買った。\n")
    assert parsed.excerpts == []


def test_precision_and_recall_on_the_mixed_folder():
    """Every fixture together: a found excerpt is right when its first and last quoted lines are
    the expected ones."""
    expected, found = set(), set()
    for name, want in EXPECTED.items():
        expected |= {(name, e["first_line"], e["last_line"]) for e in want.get("excerpt", [])}
        found |= {(name, f["first_line"], f["last_line"]) for f in _quotes(_text(name))[1]}
    right = len(expected & found)
    precision, recall = right / len(found), right / len(expected)
    assert len(expected) >= 20
    assert precision >= 0.95, (precision, sorted(found - expected))
    assert recall >= 0.90, (recall, sorted(expected - found))


def test_hard_wrapped_paragraph_offsets_span_its_lines():
    text = _text("english")
    rows_ = source_rows(read_source(SourceRef(str(FIXTURES / "english.txt"), "english.txt")))
    (wrapped, *_) = [p for p in rows_["paragraphs"] if p["line_end"] != p["line_no"]]
    span = text[wrapped["char_start"]:wrapped["char_end"]]
    assert "\n" in span and span.replace("\n", " ") == wrapped["text"]
    assert wrapped["text"].startswith("Residents of a small") and wrapped["text"].endswith("for a decade.")
    japanese = source_rows(read_source(SourceRef(str(FIXTURES / "indented.txt"), "indented.txt")))
    joined = next(p for p in japanese["paragraphs"] if p["line_no"] == 2)
    assert joined["text"] == "市教育委員会は8日、市内の全ての小学校に図書館司書を配置する方針を明らかにした。"
    assert joined["line_end"] == 3


def test_seed_convention_is_the_seed_grammar(seed_text):
    parsed, convention, rule = parse_post(seed_text)
    legacy = parse(seed_text)
    assert convention == "star_frame" and rule == f"frame×{len(legacy.excerpts)}"
    assert parsed == legacy


def test_pinning_a_folder_a_file_and_the_run(tmp_path):
    blog = tmp_path / "blog"
    (blog / "old").mkdir(parents=True)
    shutil.copy(FIXTURES / "source_before.txt", blog / "a.txt")
    shutil.copy(FIXTURES / "digest.txt", blog / "old" / "b.txt")
    shutil.copy(FIXTURES / "headline_url.txt", blog / "old" / "c.txt")
    (blog / "conventions.toml").write_text('convention = "quote_markers"\n[files]\n"old/c.txt" = "headline_url"\n',
                                           encoding="utf-8")
    refs, _ = discover([str(blog)])
    assert {r.rel: r.convention for r in refs} == {"a.txt": "quote_markers", "old/b.txt": "quote_markers",
                                                  "old/c.txt": "headline_url"}
    # pinned, the digest is read for quote markers: none, and the document says it was pinned
    b = next(r for r in refs if r.rel == "old/b.txt")
    doc = source_rows(read_source(b), b.convention)["documents"][0]
    assert (doc["convention"], doc["convention_rule"], doc["n_excerpts"]) == ("quote_markers", "pinned", 0)
    c = next(r for r in refs if r.rel == "old/c.txt")
    doc = source_rows(read_source(c), c.convention)["documents"][0]
    assert (doc["convention"], doc["convention_rule"]) == ("headline_url", "pinned headline_url×2")
    (blog / "old" / "conventions.toml").write_text('convention = "digest"\n', encoding="utf-8")
    refs, _ = discover([str(blog)])
    assert {r.rel: r.convention for r in refs}["old/b.txt"] == "digest"  # the nearest folder decides
    refs, _ = discover([str(blog)], convention="star_frame")
    assert {r.convention for r in refs} == {"star_frame"}
    (blog / "conventions.toml").write_text('convention = "nope"\n', encoding="utf-8")
    with pytest.raises(PinError, match=r"conventions\.toml: no convention 'nope'; known: star_frame"):
        discover([str(blog)])


def test_pinned_build_records_and_caches_by_pin(tmp_path):
    from kirinuki.flows.build import build

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIXTURES / "digest.txt", folder / "d.txt")
    out = tmp_path / "out"
    build([str(folder)], str(out))
    assert rows(out, "SELECT convention, convention_rule, n_excerpts FROM documents") == [
        {"convention": "digest", "convention_rule": "bullet×3", "n_excerpts": 3}]
    (folder / "conventions.toml").write_text('convention = "quote_markers"\n', encoding="utf-8")
    build([str(folder)], str(out))  # the pin changed the file's cache key: it is parsed again
    assert rows(out, "SELECT convention, convention_rule, n_excerpts FROM documents") == [
        {"convention": "quote_markers", "convention_rule": "pinned", "n_excerpts": 0}]


def test_a_new_convention_is_a_data_entry():
    text = (conv_mod.REFERENCE / conv_mod.CONVENTIONS_FILE).read_text(encoding="utf-8") + '''
[[convention]]
name = "tortoise_markers"
description = "A blog that opens a quote with 〔引用〕 and closes it with 〔引用終わり〕."
shape = "block"
open = ["marker"]
open_markers = ["〔引用〕"]
close_markers = ["〔引用終わり〕"]
'''
    declared = conv_mod.load(text)
    post = "前置き。\n〔引用〕\n市は1日、新しい公園を開いた。\n(2024/6/2 朝日新聞)\n〔引用終わり〕\n感想。\n"
    assert _quotes(post)[1] == []  # the shipped conventions do not know it
    name, found = _quotes(post, declared=declared)
    assert name == "tortoise_markers"
    assert [(f["first_line"], f["last_line"], f["outlet"], f["date"]) for f in found] == [(3, 3, "asahi", "2024-06-02")]


@pytest.mark.parametrize("entry, message", [
    ('name = "x"\nshape = "circle"', "shape must be one of frame, block"),
    ('name = "x"\nshape = "block"\nopen = ["telepathy"]', "no open rule 'telepathy'"),
    ('name = "x"\nshape = "block"\nopen = ["marker"]', "the marker rule needs open_markers"),
    ('name = "x"\nshape = "block"\nopen = ["prefix"]\nprefixes = [">"]\ncolour = "red"', "unknown key 'colour'"),
])
def test_a_broken_convention_entry_fails_with_one_line(entry, message):
    text = (conv_mod.REFERENCE / conv_mod.CONVENTIONS_FILE).read_text(encoding="utf-8") + "\n[[convention]]\n" + entry
    with pytest.raises(conv_mod.ConventionError, match=message) as e:
        conv_mod.load(text)
    assert "\n" not in str(e.value)


def test_a_requote_in_another_convention_clusters_with_the_seed_s(tmp_path, seed_text):
    """The seed's Reuters excerpt quoted again on another blog, as a headline with a (date outlet)
    source: dedup finds the two quotes of one article across conventions."""
    from kirinuki.flows.build import build

    legacy = parse(seed_text)
    ex = next(e for e in legacy.excerpts if e.attribution and e.attribution.outlet == "ロイター")
    lines = [p.text for p in legacy.paragraphs if p.excerpt == ex.ordinal and p.role == "body"]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SEED, folder / "seed.txt")
    requote = "別のブログです。\n\n" + f"{ex.headline}(2024/4/8 ロイター)\n" + "\n".join(lines) + "\n\n感想です。\n"
    (folder / "other.txt").write_text(requote, encoding="utf-8")
    assert _quotes(requote)[0] == "headline_source"
    out = tmp_path / "out"
    build([str(folder)], str(out))
    got = rows(out, f"""SELECT d.source_path, q.relation, e.outlet_id FROM excerpts e JOIN documents d USING (doc_id)
                       JOIN article_quotes q USING (excerpt_id)
                       WHERE q.article_id = (SELECT q.article_id FROM excerpts e JOIN article_quotes q USING (excerpt_id)
                                             WHERE e.headline = '{ex.headline}' LIMIT 1)
                       ORDER BY d.source_path""")
    assert [(g["source_path"], g["outlet_id"]) for g in got] == [("other.txt", "reuters"), ("seed.txt", "reuters")]
    assert {g["relation"] for g in got} == {"original", "exact"}
