import csv
import subprocess
import sys
from collections import defaultdict
from datetime import date

import numpy as np
import pytest

from conftest import SEED, rows
import kirinuki.synth as synth
from kirinuki.dedup import DedupConfig, Excerpt, deduplicate, overlap, shingle_hashes, sketch


def ex(i, body, headline="見出し", published=date(2024, 1, 1)):
    return Excerpt(f"x{i:03d}", f"d{i:03d}", headline, body, published)


def test_shingles_and_overlap_are_exact():
    h, owner = shingle_hashes(["abcdefg", "xyz", "abcdefh"], 5)
    assert list(np.bincount(owner, minlength=3)) == [3, 0, 3]
    a = np.unique(h[owner == 0])
    b = np.unique(h[owner == 2])
    assert overlap(a, b) == (pytest.approx(2 / 4), pytest.approx(2 / 3))


def test_signatures_agree_for_equal_texts_and_differ_for_unrelated():
    g = synth.Generator(1)
    texts = [g._paragraph() * 3 for _ in range(2)]
    sig, _, _ = sketch([texts[0], texts[0], texts[1]], DedupConfig())
    assert (sig[0] == sig[1]).all()
    assert (sig[0] == sig[2]).mean() < 0.3


def test_sample_corpus_re_quotes_cluster_across_posts(sample_build):
    got = rows(sample_build, """
        SELECT headline, count(*) n, count(DISTINCT doc_id) docs, list(relation ORDER BY relation) rel
        FROM excerpts JOIN article_quotes USING (excerpt_id, doc_id)
        GROUP BY article_id, headline HAVING count(*) > 1 ORDER BY headline""")
    by = {r["headline"]: r for r in got}
    assert by["ノルドリア中銀、政策金利を据え置き 通貨安を警戒"]["rel"] == ["exact", "original"]
    assert by["ノルドリア中銀、政策金利を据え置き 通貨安を警戒"]["docs"] == 2
    assert by["ノルドリア、穀物輸出で新協定 港湾使用料を半減"]["rel"] == ["original", "partial"]  # (中略) + a changed word
    assert by["エスタリア、送電網の相互接続を提案"]["rel"] == ["exact", "original"]  # pasted twice
    assert len(got) == 3
    assert rows(sample_build, "SELECT count(*) n FROM article_quotes WHERE canonical") == rows(sample_build, "SELECT count(*) n FROM articles")


def test_article_reconstruction_merges_elided_quotes_and_records_contributors(sample_build):
    (art,) = rows(sample_build, "SELECT * FROM articles WHERE headline LIKE 'ノルドリア、穀物%'")
    paras = rows(sample_build, f"SELECT * FROM article_paragraphs WHERE article_id = '{art['article_id']}' ORDER BY ordinal")
    assert art["n_quotes"] == 2 and art["n_paragraphs"] == len(paras) == 5
    assert [len(p["contributed_by"]) for p in paras] == [2, 1, 2, 1, 2]
    assert art["first_quoted_in"] == rows(sample_build, "SELECT doc_id FROM documents WHERE source_path LIKE '2024-06-12%'")[0]["doc_id"]


def test_paragraphs_match_by_the_3_gram_jaccard_of_their_strings(monkeypatch):
    """Reconstruction compares 3-grams as numbers (articles._grams, made at once per quote by
    _long_grams): each judgement must be the one the 3-character strings give, on texts of every
    length (shorter than a 3-gram too) drawn from a small alphabet so that near pairs are common;
    and the articles of a generated corpus (edited, elided, re-flowed quotes) must be the same
    when reconstruction uses the strings themselves."""
    from kirinuki.dedup import articles

    def string_grams(s: str) -> frozenset[str]:
        return frozenset({s[i : i + 3] for i in range(max(1, len(s) - 2))})

    rnd = np.random.default_rng(9)
    alphabet = list("あぃいう略中a\U0010FFFD")  # (the highest code points take all of 21 bits; あ, ぃ differ in one)
    texts = ["".join(rnd.choice(alphabet, int(n))) for n in rnd.integers(1, 30, 400)]
    long = [t for t in texts if len(t) >= 3]
    assert articles._long_grams(long) == [articles._grams(t) for t in long]
    pairs = list(zip(texts, texts[1:])) + [(t, t[:-1] + "う") for t in long] + [(t, t) for t in texts[:20]]
    near = 0
    for a, b in pairs:
        ga, gb = string_grams(a), string_grams(b)
        want = 10 * len(ga & gb) >= 7 * len(ga | gb)
        assert articles._similar(articles._grams(a), articles._grams(b)) == want, (a, b)
        assert len(articles._grams(a)) == len(ga)
        near += want and a != b
    assert near > 5

    g = synth.Generator(4)
    items = [ex(i, "\n".join(s.lines), headline=s.headline) for i, s in enumerate(g.excerpt() for _ in range(400))]
    made = deduplicate(items, DedupConfig())
    monkeypatch.setattr(articles, "_grams", string_grams)
    monkeypatch.setattr(articles, "_long_grams", lambda keys: [string_grams(k) for k in keys])
    by_strings = deduplicate(items, DedupConfig())
    assert made.stats["multi_quote_clusters"] > 20
    assert made.articles == by_strings.articles and made.article_paragraphs == by_strings.article_paragraphs


def test_seed_tv_asahi_quote_clusters_with_a_clean_requote(tmp_path):
    from kirinuki.flows.build import build

    seed = SEED.read_text(encoding="utf-8")
    lines = seed.split("\n")
    tv = [l for l in lines[17:23]]  # the テレ朝news excerpt, quoted once without its repeats
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "seed.txt").write_text(seed, encoding="utf-8")
    (tmp_path / "in" / "requote.txt").write_text("【再掲】\n解説です。\n" + "\n".join(tv) + "\n" + "*" * 18 + "\n", encoding="utf-8")
    build([str(tmp_path / "in")], str(tmp_path / "out"))
    got = rows(tmp_path / "out", "SELECT relation, n_paragraphs FROM excerpts JOIN article_quotes USING (excerpt_id) "
                                 "WHERE outlet_raw = 'テレ朝news' ORDER BY canonical")
    assert [g["relation"] for g in got] == ["exact", "original"]  # repeats are not part of the body
    assert rows(tmp_path / "out", "SELECT count(DISTINCT article_id) n FROM excerpts JOIN article_quotes USING (excerpt_id) "
                                 "WHERE outlet_raw = 'テレ朝news'") == [{"n": 1}]


def test_boilerplate_only_overlap_does_not_merge_unrelated_articles():
    g = synth.Generator(3)
    stock = "※この記事は配信元の許可を得て転載しています。無断での複製と転載を禁じます。"
    items = []
    for i in range(30):  # 30 unrelated short articles sharing one stock paragraph
        items.append(ex(i, g._sentence(8) + "\n" + stock, headline=f"見出し{i}"))
    # and one pair sharing one long real paragraph but otherwise different
    shared = g._paragraph() + g._paragraph()
    items.append(ex(40, shared + "\n" + "\n".join(g._paragraph() for _ in range(8)), headline="甲"))
    items.append(ex(41, shared + "\n" + "\n".join(g._paragraph() for _ in range(8)), headline="乙"))
    res = deduplicate(items)
    assert len(set(res.cluster_id)) == len(items)
    assert res.links.num_rows == 0 and res.stats["boilerplate_paragraphs"] == 1


def test_an_article_is_named_after_its_quote_in_the_earliest_post_so_later_quotes_never_rename_it():
    """As a blog grows, a later post's quote (here with a smaller excerpt_id) joins an article: the
    article keeps its id. Undated posts come after dated ones; a merge keeps the earlier article's id."""
    import dataclasses

    g = synth.Generator(5)
    a, b = g.new_article(), g.new_article()
    text_a, text_b = "\n".join(a.paragraphs), "\n".join(b.paragraphs)

    def quote(i, body, posted):
        return dataclasses.replace(ex(i, body, headline="見出し"), doc_published=posted)

    old = [quote(50, text_a, date(2024, 3, 1)), quote(60, text_b, date(2024, 5, 1))]
    first = deduplicate(old)
    assert first.cluster_id == ["art-x050", "art-x060"]
    grown = old + [quote(10, text_a, date(2026, 1, 1)), quote(5, text_b, None)]  # smaller ids, later posts
    assert deduplicate(grown).cluster_id == ["art-x050", "art-x060", "art-x050", "art-x060"]
    bridge = quote(1, text_a + "\n" + text_b, date(2026, 2, 1))  # quotes both: the articles merge
    merged = deduplicate(grown + [bridge])
    assert len(set(merged.cluster_id)) == 1 and merged.cluster_id[0] == "art-x050"


@pytest.mark.parametrize("edit", synth.EDITS)
def test_each_kind_of_re_quote_is_clustered(edit):
    g = synth.Generator(7)
    art = g.new_article()
    quotes = [art.paragraphs] + [g._edit(art.paragraphs, edit) for _ in range(3)]
    others = [g.new_article().paragraphs for _ in range(20)]
    items = [ex(i, "\n".join(p), headline=art.headline, published=date(2024, 1, 1 + min(i, 1)))
             for i, p in enumerate(quotes)]  # the first quote is the earliest
    items += [ex(100 + i, "\n".join(p), headline=f"別{i}") for i, p in enumerate(others)]
    res = deduplicate(items)
    assert len({res.cluster_id[i] for i in range(4)}) == 1
    assert len(set(res.cluster_id)) == 21
    assert res.relation[0] == "original" and res.canonical[0]


def test_generated_corpus_precision_and_recall(tmp_path):
    items, truth = [], []
    for i, e in enumerate(synth.excerpts(1500, seed=5)):
        items.append(Excerpt(f"x{i:05d}", f"d{i // 7:04d}", e.headline, "\n".join(e.lines), e.published))
        truth.append(e.article_id)
    res = deduplicate(items)
    same_truth = defaultdict(set)
    for i, a in enumerate(truth):
        same_truth[a].add(i)
    same_found = defaultdict(set)
    for i, c in enumerate(res.cluster_id):
        same_found[c].add(i)
    tp = sum(len(g) * (len(g) - 1) // 2 for g in ({frozenset(a & b) for a in same_truth.values() for b in same_found.values() if a & b}))
    true_pairs = sum(len(g) * (len(g) - 1) // 2 for g in same_truth.values())
    found_pairs = sum(len(g) * (len(g) - 1) // 2 for g in same_found.values())
    assert true_pairs > 100
    assert tp / found_pairs >= 0.99 and tp / true_pairs >= 0.97


def test_synth_cli_writes_posts_and_ground_truth_that_build(tmp_path):
    from kirinuki.flows.build import build

    out = tmp_path / "corpus"
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "synth", "--posts", "12", "--seed", "3", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    truth = list(csv.DictReader((out / "ground_truth.csv").open(encoding="utf-8")))
    assert len(list(out.glob("post_*.txt"))) == 12 and truth
    summary = build([str(out)], str(tmp_path / "b"))
    assert summary["rows"]["excerpts"] == len(truth) and summary["rejects"] == {}
    again = tmp_path / "corpus2"
    subprocess.run([sys.executable, "-m", "kirinuki.cli", "synth", "--posts", "12", "--seed", "3", "--out", str(again)], check=True)
    assert (again / "post_000007.txt").read_bytes() == (out / "post_000007.txt").read_bytes()


def test_synth_in_order_dates_every_post_after_the_one_before_and_a_longer_corpus_extends_it(tmp_path):
    """--in-order models a blog for the append benchmarks: a post that quotes only old articles is
    still dated after the post before it, and the calendar moves on by hours, not days, per article."""
    import re

    short, long = tmp_path / "short", tmp_path / "long"
    synth.write_corpus(short, 150, seed=2, excerpts_per_post=6, in_order=True)
    synth.write_corpus(long, 160, seed=2, excerpts_per_post=6, in_order=True)
    assert [p.read_bytes() for p in sorted(short.glob("post_*.txt"))] == \
        [p.read_bytes() for p in sorted(long.glob("post_*.txt"))][:150]
    newest = [max(date(*map(int, m)) for m in re.findall(r"【(\d+)年(\d+)月(\d+)日", p.read_text(encoding="utf-8")))
              for p in sorted(long.glob("post_*.txt"))]
    assert newest == sorted(newest)
    synth.write_corpus(tmp_path / "daily", 150, seed=2, excerpts_per_post=6)
    daily = [max(date(*map(int, m)) for m in re.findall(r"【(\d+)年(\d+)月(\d+)日", p.read_text(encoding="utf-8")))
             for p in sorted((tmp_path / "daily").glob("post_*.txt"))]
    assert daily != sorted(daily)  # without it, a post re-quoting only old articles takes their date
    span = (newest[-1] - newest[0]).days  # 0 or 2 hours per new article: ~a month for 150 posts, not a year
    assert 0 < span < (daily[-1] - daily[0]).days / 6


def test_chunk_size_does_not_change_the_clusters():
    items = [Excerpt(f"x{i:04d}", f"d{i:04d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(synth.excerpts(400, seed=11))]
    a = deduplicate(items, DedupConfig(chunk=1000))
    b = deduplicate(items, DedupConfig(chunk=7))
    assert a.cluster_id == b.cluster_id and a.links == b.links and a.stats["multi_quote_clusters"] > 20


def test_sketch_sets_and_line_index_equal_their_definitions_text_by_text():
    """The exact sets are each text's distinct 5-gram hashes, sorted (made text by text within a
    chunk), and the line index holds each line's paragraph_key (made a chunk of bodies at a time):
    checked against those definitions on texts that are empty, shorter than a 5-gram, repeated
    side by side, all one character, and lines with whitespace, elision markers and nothing else."""
    from kirinuki.dedup.minhash import dedup_text, has_content, line_index, paragraph_key, stable_hashes

    rnd = np.random.default_rng(5)
    alphabet = list("あいうえお略中後前(（)）aB \u3000\t")
    bodies = ["", "abcde", "abcde", "abcd", "ああああああああ", "abcdefg" * 30, " \n\u3000\n", "(中略)\n( 中 略 )\n前文（後略）"]
    bodies += ["\n".join("".join(rnd.choice(alphabet, int(rnd.integers(0, 40)))) for _ in range(int(rnd.integers(1, 6))))
               for _ in range(300)]
    items = [ex(i, b) for i, b in enumerate(bodies)]
    texts = [dedup_text(e, set()) for e in items]
    assert texts == ["".join(paragraph_key(line) for line in b.split("\n")) for b in bodies]
    every_line = [line for b in bodies for line in b.split("\n")]
    assert [has_content(line) for line in every_line] == [bool(paragraph_key(line)) for line in every_line]
    assert any(has_content(line) for line in every_line) and not all(has_content(line) for line in every_line)
    _, sets, _ = sketch(texts, DedupConfig(chunk=7))
    for i, t in enumerate(texts):
        h, _ = shingle_hashes([t], 5)
        assert np.array_equal(sets[i], np.unique(h)), i
    lines = line_index(items, only=list(range(0, len(items), 3)))
    want = [(i, k) for i in range(0, len(items), 3) for line in bodies[i].split("\n") if (k := paragraph_key(line))]
    assert lines.owner.tolist() == [i for i, _ in want]
    assert lines.length.tolist() == [len(k) for _, k in want]
    assert lines.hash.tolist() == [hash(k) & 0xFFFFFFFFFFFFFFFF for _, k in want]
    assert np.array_equal(lines.stable, stable_hashes([k for _, k in want]))
    sets.close()


def test_stable_hashes_are_each_key_s_own_polynomial_however_the_keys_are_cut_into_runs():
    """stable_hashes works a run of keys at a time (to stay in cache): each key's hash must be its
    definition, made from that key alone, whatever its neighbours and wherever a run ends (keys
    longer than a run, keys that end exactly at a run's end, one key alone)."""
    import kirinuki.dedup.minhash as mh

    mask = (1 << 64) - 1

    def one(k: str) -> int:
        h, p = 0, 1
        for ch in k:
            p = p * 0x100000001B3 & mask
            h = h + ord(ch) * p & mask
        h ^= len(k)
        h ^= h >> 33
        h = h * 0xFF51AFD7ED558CCD & mask
        h ^= h >> 33
        h = h * 0xC4CEB9FE1A85EC53 & mask
        return h ^ (h >> 33)

    rnd = np.random.default_rng(11)
    run = mh._HASHED_AT_ONCE
    lengths = [1, run - 1, 1, run, 2 * run + 5, 3] + rnd.integers(1, 400, 2000).tolist()
    keys = ["".join(chr(c) for c in rnd.integers(0x3041, 0x9FA0, n)) for n in lengths]
    got = mh.stable_hashes(keys)
    assert got.dtype == np.uint64 and len(got) == len(keys)
    assert got.tolist() == [one(k) for k in keys]
    assert mh.stable_hashes(keys[5:6]).tolist() == [one(keys[5])]
    assert len(set(got.tolist())) == len(set(keys))


def _same_result(a, b) -> None:
    assert a.cluster_id == b.cluster_id and a.relation == b.relation and a.similarity == b.similarity
    assert a.canonical == b.canonical and a.links == b.links
    assert a.articles == b.articles and a.article_paragraphs == b.article_paragraphs


@pytest.mark.parametrize("kept", ["first 1,200", "all but every fifth", "all"])
def test_appended_quotes_clustered_on_their_own_give_the_clustering_of_all(kept):
    """Only the quotes new since the last clustering are sketched and compared, and every output
    is the same as clustering all of them; new quotes may sit between old ones (ids sort them
    there), and clusters they do not join keep the last build's relations."""
    items = [Excerpt(f"x{i:05d}", f"d{i // 6:04d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(synth.excerpts(1500, seed=3))]
    cfg = DedupConfig(common_5grams=10**6)  # no 5-gram turns common: here only the boilerplate rule can cross
    earlier = {"first 1,200": items[:1200], "all but every fifth": [e for i, e in enumerate(items) if i % 5],
               "all": items}[kept]
    last = deduplicate(earlier, cfg).sketches
    grown = deduplicate(items, cfg, last=last)
    assert grown.stats["clustering"] == "appended", grown.stats
    assert grown.stats["appended_excerpts"] == len(items) - len(earlier)
    assert grown.stats["kept_clusters"] > 0
    _same_result(grown, deduplicate(items, cfg))
    _same_result(deduplicate(items, cfg, last=grown.sketches), grown)  # and its sketches serve the next build


def test_thresholds_an_earlier_quote_crosses_redo_its_cluster_or_everything():
    """A paragraph of earlier quotes that becomes boilerplate redoes the clusters of the quotes it
    changes; 5-grams that become common with appended quotes change no earlier signature; a new
    quote placed before earlier ones that holds a 5-gram now common, or an edited quote, clusters
    everything again. Always a clean build's result."""
    items = [Excerpt(f"x{i:05d}", f"d{i // 6:04d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(synth.excerpts(3000, seed=3))]
    stock = "この記事は会員限定です。続きは購読してお読みください。"  # under ever more headlines
    tagged = [Excerpt(e.excerpt_id, e.doc_id, e.headline, e.body_norm + "\n" + stock, e.published) if i % 40 == 0 else e
              for i, e in enumerate(items[:600])]
    cfg = DedupConfig(common_5grams=10**6, max_headlines=12)
    grown = deduplicate(tagged, cfg, last=deduplicate(tagged[:400], cfg).sketches)  # 10 headlines carry it, then 15
    assert grown.stats["clustering"] == "appended" and grown.stats["new_boilerplate_in_earlier_quotes"] == 10
    _same_result(grown, deduplicate(tagged, cfg))
    small = DedupConfig(max_headlines=12)  # and with common 5-grams counted: the stock lines are counted in raw text
    grown = deduplicate(tagged, small, last=deduplicate(tagged[:400], small).sketches)
    assert grown.stats["clustering"] == "appended" and grown.stats["new_boilerplate_in_earlier_quotes"] == 10
    _same_result(grown, deduplicate(tagged, small))

    last = deduplicate(items[:2900], DedupConfig()).sketches
    old_sig, old_since, old_boiler = np.array(last.sig), last.common.since.copy(), list(last.boiler_pos)
    grown = deduplicate(items, DedupConfig(), last=last)
    assert grown.stats["clustering"] == "appended"
    since = grown.sketches.common.since
    turned = (since != old_since) & (since != 0xFFFFFFFF)
    assert turned.sum() > 20 and (since[turned] >= 2900).all()  # common from a new quote on
    changed = np.flatnonzero((grown.sketches.sig[:2900] != old_sig).any(axis=1)).tolist()
    regrown = [i for i in range(2900) if grown.sketches.boiler_pos[i] != old_boiler[i]]
    assert changed == regrown and len(regrown) == grown.stats["new_boilerplate_in_earlier_quotes"] > 0
    assert 0 < grown.stats["kept_clusters"] < grown.stats["clusters"]
    _same_result(grown, deduplicate(items, DedupConfig()))

    few_cfg = DedupConfig(common_5grams=6)  # held once before, then by quotes placed among the earlier ones
    phrase = "北方の港湾都市で開かれた見本市には各国から多くの商社が集まった"
    few = [Excerpt(e.excerpt_id, e.doc_id, e.headline, e.body_norm + ("\n" + phrase if i in (0, 100, 101, 102, 300, 301, 302, 303) else ""),
                   e.published) for i, e in enumerate(items[:307])]
    grown = deduplicate(few, few_cfg, last=deduplicate([e for i, e in enumerate(few) if i not in (100, 101, 102)], few_cfg).sketches)
    assert grown.stats["clustering_why"] == "a new quote sits before earlier ones and holds a 5-gram now common"
    _same_result(grown, deduplicate(few, few_cfg))

    edited = list(items[:600])
    edited[5] = Excerpt(items[5].excerpt_id, items[5].doc_id, items[5].headline, items[5].body_norm + "追記", items[5].published)
    again = deduplicate(edited, DedupConfig(), last=deduplicate(items[:600], DedupConfig()).sketches)
    assert again.stats["clustering_why"] == "a quote of the last build was edited"
    _same_result(again, deduplicate(edited, DedupConfig()))
    unread = np.ones(600, bool)
    unread[5] = False  # the others as if read from the parts the last build read: their digests are not made
    again = deduplicate(edited, DedupConfig(), last=deduplicate(items[:600], DedupConfig()).sketches, as_last=unread)
    assert again.stats["clustering_why"] == "a quote of the last build was edited"


def _stored(items: list[Excerpt], unread: int, spill_dir: str, batch: int = 100):
    """The excerpts as dedup reads them from a build's parts: bodies in a BodyStore, the first
    `unread` (whole batches: an append's earlier quotes) left where they lie, the others spilled."""
    import pyarrow as pa

    from kirinuki.dedup.spill import BodyStore, StoredExcerpt

    store = BodyStore(spill_dir)
    for lo in range(0, len(items), batch):
        bodies = pa.array([e.body_norm for e in items[lo: lo + batch]], pa.string())
        if lo + len(bodies) <= unread:
            store.extend_lazy(len(bodies), lambda bodies=bodies: bodies)
        else:
            store.extend(bodies)
    store.done()
    return [StoredExcerpt(e.excerpt_id, e.doc_id, e.headline, store, k, e.body_len, e.content_digest, e.published,
                          e.outlet_id, e.doc_published) for k, e in enumerate(items)], store


def test_an_append_over_earlier_bodies_left_unread_gives_the_clustering_of_all(tmp_path):
    """With the earlier quotes' bodies left in their batches (dedup.parts.read_excerpts after an
    append), a paragraph of theirs that becomes boilerplate is still found (their bodies searched
    a batch at a time, nothing kept), and the result is a clean build's; only some of the earlier
    bodies are read and kept."""
    items = [Excerpt(f"x{i:05d}", f"d{i // 6:04d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(synth.excerpts(600, seed=3))]
    stock = "この記事は会員限定です。続きは購読してお読みください。"
    tagged = [Excerpt(e.excerpt_id, e.doc_id, e.headline, e.body_norm + "\n" + stock, e.published) if i % 40 == 0 else e
              for i, e in enumerate(items)]
    cfg = DedupConfig(common_5grams=10**6, max_headlines=12)
    earlier = tagged[:400]  # 10 headlines carry the stock line, then 15
    as_last = np.arange(len(tagged)) < 400
    stored, store = _stored(tagged, 400, str(tmp_path))
    from kirinuki.dedup.clusters import find_clusters

    cl = find_clusters(stored, cfg, spill_dir=str(tmp_path), last=deduplicate(earlier, cfg).sketches, as_last=as_last)
    assert cl.stats["clustering"] == "appended" and cl.stats["new_boilerplate_in_earlier_quotes"] == 10
    spilled = sum(count for first, count, _ in store.lazy if store.start[first] >= 0)
    assert not spilled and 10 <= len(store.wanted) < 400, (len(store.wanted), spilled)
    # (without an ArticleMemo every article is made again, so every body is read in the end)
    stored, _ = _stored(tagged, 400, str(tmp_path))
    grown = deduplicate(stored, cfg, last=deduplicate(earlier, cfg).sketches, as_last=as_last)
    assert grown.stats["clustering"] == "appended"
    _same_result(grown, deduplicate(tagged, cfg))


def test_dedup_texts_give_the_raw_text_of_exactly_the_quotes_that_lost_boilerplate_lines():
    """Common 5-grams are counted in raw texts: DedupTexts.raw names the quotes whose compared text
    lost a boilerplate line and gives their text with it, whether or not it is told which they are."""
    from kirinuki.dedup.minhash import DedupTexts, boiler_lines, dedup_text, key_hash, line_index

    stock = "この記事は会員限定です。続きは購読してお読みください。"
    items = [ex(i, f"本文その{i}は港の話である。\n" + (stock if i % 3 == 0 else "別の段落が続く。") + "\n(中略)\n結び")
             for i in range(20)]
    boiler = {key_hash(stock)}
    boiled = boiler_lines(line_index(items), boiler)
    assert sorted(boiled) == list(range(0, 20, 3))
    for told in (set(boiled), None):
        texts = DedupTexts(items, boiler, told)
        for s in (slice(0, 20), slice(4, 11), slice(18, 20)):
            raw = texts.raw(s)
            assert raw == {k: dedup_text(items[i], set()) for k, i in enumerate(range(20)[s]) if i % 3 == 0}
            assert all(stock in t and stock not in texts[s][k] for k, t in raw.items())
    assert DedupTexts(items, set(), None).raw(slice(0, 20)) == {}


class _Texts(list):
    """Texts some of whose raw texts (boilerplate kept) differ, as DedupTexts gives them."""

    def __init__(self, texts, raw):
        super().__init__(texts)
        self.raws = raw

    def __getitem__(self, s):
        return _Texts(list.__getitem__(self, s), {k - s.start: t for k, t in self.raws.items()
                                                  if s.start <= k < s.start + len(list.__getitem__(self, s))}) \
            if isinstance(s, slice) else list.__getitem__(self, s)

    def raw(self, s):
        return {k - s.start: t for k, t in self.raws.items() if s.start <= k < s.stop}


@pytest.mark.parametrize("top", [3, 300])
def test_a_5gram_is_left_out_of_a_signature_exactly_when_more_than_common_quotes_before_it_hold_it(top):
    """Checked against that definition quote by quote (counts over each earlier quote's raw text:
    its distinct sampled 5-grams by bucket), for any chunking, and when the corpus is sketched in
    two builds, the second starting from the first's counts as kept (clipped, sparse, loaded)."""
    from kirinuki.dedup.common import CommonGrams, bucket_of
    from kirinuki.dedup.minhash import sample_values, signatures

    rnd = np.random.default_rng(top)
    words = ["港湾", "議会", "予算", "可決", "見本市", "商社", "北方", "開かれた", "各国", "賛成"]
    texts = ["".join(rnd.choice(words, int(rnd.integers(3, 30)))) for _ in range(400)]
    raw = {i: texts[i] + "".join(rnd.choice(words, 5)) for i in range(0, 400, 9)}  # lost a boilerplate line
    cfg = DedupConfig(common_5grams=top, chunk=1000)
    held: dict[int, int] = defaultdict(int)
    want = np.empty((len(texts), cfg.perms), np.uint32)
    for i, t in enumerate(texts):
        h, o = shingle_hashes([t], cfg.shingle)
        vals, vo = sample_values(np.unique(h), np.zeros(len(np.unique(h)), np.int32), cfg)
        keep = np.array([held[b] <= top for b in bucket_of(vals, cfg).tolist()], bool)
        want[i] = signatures(vals[keep], vo[keep], 1, cfg)[0]
        rh, ro = shingle_hashes([raw.get(i, t)], cfg.shingle)
        for b in set(bucket_of(sample_values(rh, ro, cfg)[0], cfg).tolist()):
            held[b] += 1
    assert max(held.values()) > top + 1 or top == 300
    whole, _, common = sketch(_Texts(texts, raw), cfg)
    assert (whole == want).all()
    for chunk in (1, 7, 64):
        assert (sketch(_Texts(texts, raw), DedupConfig(common_5grams=top, chunk=chunk))[0] == want).all()
    part_cfg = DedupConfig(common_5grams=top, chunk=7)
    first, _, kept = sketch(_Texts(texts[:250], {k: v for k, v in raw.items() if k < 250}), part_cfg)
    kept = CommonGrams.from_kept(part_cfg, kept.kept())
    rest = _Texts(texts[250:], {k - 250: v for k, v in raw.items() if k >= 250})
    second, _, both = sketch(rest, part_cfg, common=kept, positions=np.arange(250, 400))
    assert (first == want[:250]).all() and (second == want[250:]).all()
    assert (both.counts == np.minimum(common.counts, top + 1)).all() and (both.since == common.since).all()
    assert both.counts.itemsize == (1 if top < 255 else 2)


def test_article_rows_copied_in_runs_or_made_again_give_a_whole_write_s_bytes(tmp_path):
    """dedup writes `article_paragraphs` as its rows arrive: kept articles as runs of the last
    build's record batches (neighbouring runs joined), made ones as Python values, row groups
    encoded in the writer's thread. Any mix of them gives the bytes of the table written at once;
    the rows made, and only they, are also in the Arrow file kept for validation, in file order."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kirinuki.schema import spec
    from kirinuki.store.files import write_table
    from kirinuki.store.rowgroups import RowGroupWriter

    rng = random.Random(11)
    schema = spec("article_paragraphs").arrow_schema
    n = 300_000  # more than two row groups
    rows = {"article_id": [f"art-{i // 7:07d}" for i in range(n)], "ordinal": [i % 7 + 1 for i in range(n)],
            "text_norm": ["".join(rng.choice("記事本文段落のです") for _ in range(rng.randint(5, 60))) for _ in range(n)],
            "contributed_by": [[f"d{i % 13}-e0001"] for i in range(n)]}
    whole = pa.table(rows, schema=schema)
    write_table(tmp_path / "whole", "article_paragraphs", whole)
    batches = whole.to_batches(max_chunksize=4096)  # as the kept file is read back
    made_file = tmp_path / "made" / "article_paragraphs.arrow"
    with RowGroupWriter(tmp_path / "mixed", "article_paragraphs", lambda: made_file) as w:
        at = 0
        for b in batches:
            i = 0
            while i < b.num_rows:
                k = min(rng.randint(1, 900), b.num_rows - i)
                if rng.random() < 0.3:  # made again: Python values
                    w.add_columns({name: b.column(name).slice(i, k).to_pylist() for name in rows})
                else:  # kept: a run, often split in two that the writer joins again
                    cut = rng.randint(i, i + k)
                    w.add_runs([(b, i, cut), (b, cut, i + k)] if cut > i else [(b, i, i + k)])
                i += k
            at += b.num_rows
    assert w.rows == n == at
    got, want = (tmp_path / "mixed" / "data" / "article_paragraphs.parquet"), (tmp_path / "whole" / "data" / "article_paragraphs.parquet")
    assert pq.ParquetFile(got).metadata.num_row_groups > 2
    assert got.read_bytes() == want.read_bytes()
    copied = np.zeros(n, bool)
    for start, count in w.copied:
        copied[start:start + count] = True
    with pa.OSFile(str(made_file)) as src:
        made = pa.ipc.open_stream(src).read_all()
    assert 0 < made.num_rows == w.made == int((~copied).sum())
    assert made.equals(whole.filter(pa.array(~copied)))


def test_bodies_spilled_a_part_at_a_time_read_back_with_their_lengths_and_digests(tmp_path):
    import pyarrow as pa

    from kirinuki.dedup.model import body_digest
    from kirinuki.dedup.spill import BodyStore

    store = BodyStore(str(tmp_path))
    parts = [["", "本文です", "ABC"], [], ["改行\nを含む本文", "😀 絵文字"]]
    got = []
    for texts in parts:
        arr = pa.array(["前置き"] + texts, pa.string()).slice(1)  # a slice: offsets that do not start at 0
        got.append(store.extend(arr))
    store.done()
    texts = [t for p in parts for t in p]
    assert [first for first, _, _ in got] == [0, 3, 3]
    assert [int(x) for _, lengths, _ in got for x in lengths] == [len(t) for t in texts]
    assert [d for _, _, digests in got for d in digests] == [body_digest(t.encode("utf-8")) for t in texts]
    assert [store.get(i) for i in range(len(texts))] == texts


def test_bodies_left_in_their_batches_are_read_when_asked_for_each_batch_once(tmp_path):
    """Batches of bodies left where they lie (an append's earlier quotes) give the same text as
    spilled ones, in any order: `want` reads a batch once for all the bodies asked for and keeps
    only them; a body asked for without `want` spills its whole batch, read once; `scan` reads a
    batch once and keeps nothing."""
    import random

    import pyarrow as pa
    import pytest

    from kirinuki.dedup.spill import BodyStore

    batches = [["一つ目の本文", "", "二つ目\nの本文"], ["ABC", "😀 絵文字", "最後から二番目", "末尾"], ["遅れて来た本文"]]
    loads: list[int] = []

    def lazily(k: int):
        def load():
            loads.append(k)
            return pa.chunked_array([pa.array(batches[k][:1]), pa.array(batches[k][1:], pa.string())])
        return load

    store = BodyStore(str(tmp_path))
    assert store.extend_lazy(3, lazily(0)) == 0
    first, _, _ = store.extend(pa.array(batches[1]))
    assert first == 3
    assert store.extend_lazy(1, lazily(2)) == 7
    store.done()
    texts = [t for b in batches for t in b]
    store.want([2, 0, 7, 2])
    assert sorted(loads) == [0, 2] and sorted(store.wanted) == [0, 2, 7]
    assert store.spill.size == len("".join(batches[1]).encode())  # nothing of a lazy batch spilled
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    assert [store.get(i) for i in order] == [texts[i] for i in order]
    assert sorted(loads) == [0, 0, 2]  # body 1 was not wanted: batch 0 read once more, spilled whole
    assert [store.get(i) for i in range(len(texts))] == texts and sorted(loads) == [0, 0, 2]
    assert store.unspilled == 1  # batch 0 spilled; batch 2's one body was wanted, so it stays unspilled
    loads.clear()
    fresh = BodyStore(str(tmp_path))
    fresh.extend_lazy(3, lazily(0))
    fresh.extend_lazy(4, lazily(1))
    fresh.done()
    assert list(fresh.scan([6, 0, 2, 6])) == [(0, texts[0]), (2, texts[2]), (6, texts[6])]
    assert loads == [0, 1] and not fresh.wanted and fresh.spill.size == 0  # read once each, nothing kept
    short = BodyStore(str(tmp_path))
    short.extend_lazy(2, lambda: pa.array(["一つだけ"]))
    short.done()
    with pytest.raises(ValueError, match="1 bodies, not 2"):
        short.get(1)


def test_kept_paragraph_headline_pairs_merged_with_new_ones_equal_a_sort_of_them_all(monkeypatch):
    """An append inserts its (paragraph, headline) pairs into the millions kept instead of sorting
    them all again: the result must be the distinct pairs of both, sorted, as the sort gives."""
    import numpy as np

    import kirinuki.dedup.appended as appended
    from kirinuki.dedup.appended import _merged_pairs
    from kirinuki.dedup.minhash import _distinct_pairs

    rng = np.random.default_rng(7)
    for few in (64, 3, 0):  # new pairs left in long runs placed one by one, partly, or never
        monkeypatch.setattr(appended, "_FEW_LEFT", few)
        for _ in range(300):
            n, m = int(rng.integers(0, 60)), int(rng.integers(0, 25))
            key, head = _distinct_pairs(rng.integers(0, 10, n).astype(np.uint64), rng.integers(0, 5, n).astype(np.uint64))
            more = _distinct_pairs(rng.integers(0, 12, m).astype(np.uint64), rng.integers(0, 6, m).astype(np.uint64))
            merged = _merged_pairs(key, head, *more)
            whole = _distinct_pairs(np.concatenate([key, more[0]]), np.concatenate([head, more[1]]))
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(merged, whole))


def test_dedup_reads_its_quotes_with_the_gc_paused_and_turns_it_back_on(sample_build, tmp_path):
    """Reading every quote makes an object per quote that lives to the end of dedup: the cyclic GC
    is paused meanwhile (its rescans of them doubled the read at 100k posts), and is on again after,
    also when the read fails."""
    import gc

    from kirinuki.dedup.parts import read_excerpts

    collections = []
    record = lambda phase, info: collections.append(phase)  # noqa: E731
    threshold = gc.get_threshold()
    gc.callbacks.append(record)
    gc.set_threshold(1)  # while on, the GC runs at nearly every allocation
    try:
        items = read_excerpts(str(sample_build / "cache"), str(tmp_path))
        # on, the GC would have run at nearly every one of the objects made per quote; paused, only
        # around the call (the wrapper's own frames)
        assert items and gc.isenabled() and len(collections) // 2 <= 4 < len(items)
        with pytest.raises(OSError):
            read_excerpts(str(sample_build / "cache"), str(tmp_path / "no such folder"))  # nowhere to spill
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*threshold)


def test_a_connection_dedup_opens_is_closed_once_clustered_and_the_result_is_the_same():
    """Given a function that opens DuckDB, dedup closes it as soon as clustering is done (its joins'
    memory is not held while the articles are made); the articles are those of a connection kept open."""
    import duckdb

    g = synth.Generator(5)
    base = [g._paragraph() for _ in range(6)]
    items = [ex(i, "\n".join(base[i % 3:] + [g._paragraph()]), headline=f"見出し{i % 4}") for i in range(12)]
    opened, made = [], []

    def factory():
        opened.append(duckdb.connect())
        return opened[-1]

    def sink(article, paragraphs):
        made.append((article.get("article_id"), len(made)))  # the articles, in the order they are made
        if len(opened) == 1:
            with pytest.raises(duckdb.ConnectionException):
                opened[0].execute("SELECT 1")  # closed before the first article is made

    res = deduplicate(items, con=factory, sink=sink)
    kept_open = duckdb.connect()
    same = deduplicate(items, con=kept_open)
    assert len(opened) == 1 and made and kept_open.execute("SELECT 1").fetchone() == (1,)
    assert res.cluster_id == same.cluster_id and res.links == same.links
    assert [a for a, _ in made] == [a["article_id"] for a in same.articles]


def test_an_append_with_new_quotes_among_the_earlier_ones_keeps_the_counts_a_clean_build_makes():
    """New quotes placed among the earlier ones (holding no common 5-gram, so clustering them on
    their own is still exact) move the earlier quotes along: where each 5-gram became common moves
    with them, and the counts and positions kept for the next build are a clean build's."""
    rnd = np.random.default_rng(4)
    items = [Excerpt(f"x{i:05d}", f"d{i // 6:04d}", e.headline, "\n".join(e.lines), e.published)
             for i, e in enumerate(synth.excerpts(600, seed=5))]
    for i in (100, 101, 340):  # texts of their own: no 5-gram another quote holds
        items[i] = Excerpt(items[i].excerpt_id, items[i].doc_id, "別の見出し",
                           "".join(rnd.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), 80)), items[i].published)
    cfg = DedupConfig(common_5grams=20)
    last = deduplicate([e for i, e in enumerate(items) if i not in (100, 101, 340)], cfg).sketches
    moved = int((last.common.since != 0xFFFFFFFF).sum())
    grown = deduplicate(items, cfg, last=last)
    clean = deduplicate(items, cfg)
    assert grown.stats["clustering"] == "appended", grown.stats.get("clustering_why")
    assert moved > 100 and (grown.sketches.common.since == clean.sketches.common.since).all()
    assert (grown.sketches.common.counts == clean.sketches.common.counts).all()
    assert (grown.sketches.sig == clean.sketches.sig).all()
    _same_result(grown, clean)


def test_kept_signatures_are_read_into_place_a_block_at_a_time_and_a_damaged_file_is_refused(tmp_path, monkeypatch):
    """An append reads the last build's signatures from its state straight into the rows they take
    in the grown array (not loaded whole beside it): every row lands where it belongs, across
    blocks, and a short or damaged file raises instead of leaving rows unfilled."""
    import zipfile

    from kirinuki.dedup.sketches import StoredRows

    rng = np.random.default_rng(9)
    sig = rng.integers(0, 2**32 - 1, (50, 126), dtype=np.uint32)
    path = tmp_path / "arrays.npz"
    with open(path, "wb") as f:
        np.savez(f, sig=sig, other=np.arange(3))
    monkeypatch.setattr(StoredRows, "BLOCK", 7)  # seven blocks, the last one short
    stored = StoredRows(path, "sig")
    assert len(stored) == 50
    rows = np.sort(rng.choice(80, 50, replace=False))
    dest = np.zeros((80, 126), np.uint32)
    stored.into(dest, rows)
    assert (dest[rows] == sig).all() and not dest[np.setdiff1d(np.arange(80), rows)].any()
    with pytest.raises(ValueError):
        stored.into(np.zeros((80, 125), np.uint32), rows[:50])  # rows of another width
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # cut short
    with pytest.raises((ValueError, OSError, zipfile.BadZipFile, EOFError)):  # what cluster_appended catches
        stored.into(dest, rows)


def test_kept_clusters_are_the_clusters_that_are_exactly_a_last_build_cluster_with_no_fresh_quote():
    """An append keeps the relations of a cluster that is exactly one of the last build's clusters
    (the components of its links) with no fresh quote in it: the arrays give the clusters the plain
    reading of that rule (sets and counts per cluster) gives, on random clusterings."""
    from collections import Counter

    import numpy as np

    from kirinuki.dedup.clusters import UnionFind
    from kirinuki.dedup.kept import KeptRelations, kept_clusters

    rng = np.random.default_rng(11)
    kept_some = 0
    for _ in range(400):
        n = int(rng.integers(1, 40))
        old = np.flatnonzero(rng.random(n) < 0.8)
        is_fresh = np.ones(n, bool)
        is_fresh[old] = rng.random(len(old)) < 0.1
        links = old[rng.integers(0, len(old), (int(rng.integers(0, n + 1)), 2))] if len(old) else np.zeros((0, 2), int)
        a, b = links[:, 0], links[:, 1]
        root = [int(r) for r in rng.integers(0, n, n)]
        root = [root[r] for r in root]  # some clusters share a root
        was = UnionFind(n)
        for x, y in zip(a.tolist(), b.tolist()):
            was.union(x, y)
        old_root = [was.find(i) for i in range(n)]
        whole = Counter(old_root[i] for i in old.tolist())
        members: dict[int, list[int]] = {}
        for i, r in enumerate(root):
            members.setdefault(r, []).append(i)
        plain = sorted(i for group in members.values() if not is_fresh[group].any()
                       and len({old_root[i] for i in group}) == 1 and whole[old_root[group[0]]] == len(group)
                       for i in group)
        got = kept_clusters(n, root, old, is_fresh, a, b)
        assert got.tolist() == plain
        kept_some += len(plain) > 0
        relation = [f"r{k}" for k in range(len(old))]
        rel = KeptRelations(n, got, old, relation, [k / 10 for k in range(len(old))])
        for i in range(n):
            assert (i in rel) == (i in plain)
        for i in plain:
            k = old.tolist().index(i)
            assert rel[i] == (f"r{k}", k / 10)
    assert kept_some > 50


def test_an_append_s_sets_of_earlier_quotes_are_kept_on_disk_and_read_back_equal(tmp_path):
    """An append verifies pairs of earlier quotes with 5-gram sets made from their text; made
    once each, they wait in a spill file (not ~110 MB of arrays at 100k posts) and come back equal."""
    from kirinuki.dedup.appended import _Sets
    from kirinuki.dedup.minhash import dedup_text

    g = synth.Generator(3)
    items = [ex(i, "\n".join(g._paragraph() for _ in range(3))) for i in range(30)]
    cfg = DedupConfig()
    sig, sets_new, _ = sketch([dedup_text(e, set()) for e in items[20:]], cfg, str(tmp_path))
    sets = _Sets(items, np.arange(20, 30), sets_new, set(), cfg, str(tmp_path))
    first = {i: sets[i].copy() for i in range(30)}
    for i in range(20):  # an earlier quote's set is the sketch's definition of it
        h, _ = shingle_hashes([dedup_text(items[i], set())], cfg.shingle)
        assert first[i].tolist() == np.unique(h).astype(np.uint32).tolist()
    assert sorted(sets.made) == list(range(20)) and all(isinstance(v, tuple) for v in sets.made.values())
    assert sets.spill.size == 4 * sum(len(first[i]) for i in range(20))  # each made once
    for i in (5, 0, 19, 25, 5):
        assert sets[i].tolist() == first[i].tolist()
    assert sets.spill.size == 4 * sum(len(first[i]) for i in range(20))
    sets.close()
