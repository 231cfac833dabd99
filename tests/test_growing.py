"""A growing blog (issue 22): whatever sequence of appends, edits and deletes reaches a corpus, the
build that reused the last build's cache holds the same bytes as a clean build of that corpus.

The corpus is a small generated blog; its next posts come from a longer corpus of the same
generator and seed, so they quote new articles, re-quote old ones and are dated after the others.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kirinuki.synth import write_corpus

BASE_POSTS = 24
OPS = ("append", "append_many", "edit_quote", "edit_comment", "delete", "requote")


def _tables(out: Path) -> dict[str, str]:
    """sha256 of every table file, whole tables and year files alike."""
    data = out / "data"
    return {p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*.parquet"))}


def _posts(corpus: Path) -> list[Path]:
    return sorted(corpus.glob("*.txt"))


def _apply(op: str, rng: random.Random, corpus: Path, longer: Path) -> str:
    """Change the corpus as a blog changes; return what was done (for the failure message)."""
    posts = _posts(corpus)
    if op in ("append", "append_many"):  # the blog's next posts, numbered after the last one
        have = max(int(p.stem.split("_")[1]) for p in corpus.glob("post_*.txt"))
        new = [longer / f"post_{n:06d}.txt" for n in range(have + 1, have + 1 + (1 if op == "append" else 4))]
        for p in new:
            if p.exists():
                shutil.copy(p, corpus / p.name)
        return f"{op} {[p.name for p in new]}"
    victim = rng.choice(posts)
    if op == "delete" and len(posts) > 6:
        victim.unlink()
        return f"delete {victim.name}"
    text = victim.read_text(encoding="utf-8")
    lines = text.split("\n")
    frames = [i for i, line in enumerate(lines) if re.match(r"\*{3,5}[^*]", line)]
    if op == "edit_quote" and frames:  # a quoted article's first paragraph changes: dedup's input
        i = rng.choice(frames) + 1
        lines[i] = "書き換えた記事の一文。" + lines[i]
        victim.write_text("\n".join(lines), encoding="utf-8")
        return f"edit a quote in {victim.name}"
    if op == "requote" and frames:  # a new post quoting one of an old post's excerpts again
        i = rng.choice(frames)
        end = next(k for k in range(i + 1, len(lines)) if re.fullmatch(r"\*{6,}", lines[k]))
        name = f"requote_{rng.randrange(10**6):06d}.txt"
        (corpus / name).write_text("再び引用した解説です。\n" + "\n".join(lines[i:end + 1]) + "\n", encoding="utf-8")
        return f"requote from {victim.name} as {name}"
    victim.write_text(text + "書き足した解説の段落です。\n", encoding="utf-8")  # commentary only
    return f"edit the commentary of {victim.name}"


# whole tables, and (a threshold of one post) every per-post table by year
@pytest.mark.parametrize("partition_min_posts", [None, 1], ids=["whole", "by-year"])
@settings(max_examples=1, deadline=None)  # every change in a drawn order: 13 builds, about a minute
@given(order=st.permutations(OPS), seeds=st.lists(st.integers(0, 2**32 - 1), min_size=len(OPS), max_size=len(OPS)))
def test_any_sequence_of_appends_edits_and_deletes_rebuilds_to_a_clean_build_s_bytes(partition_min_posts, order, seeds):
    from functools import partial

    from kirinuki.flows.build import build

    if partition_min_posts:
        build = partial(build, partition_min_posts=partition_min_posts)

    with tempfile.TemporaryDirectory(prefix="kirinuki-growing-") as tmp:
        tmp = Path(tmp)
        longer, corpus = tmp / "longer", tmp / "corpus"
        write_corpus(longer, BASE_POSTS + 12, seed=11, excerpts_per_post=4)
        corpus.mkdir()
        for n in range(1, BASE_POSTS + 1):
            shutil.copy(longer / f"post_{n:06d}.txt", corpus)
        out = tmp / "out"
        build([str(corpus)], str(out))
        done, kept = [], []
        for k, (op, seed) in enumerate(zip(order, seeds)):
            done.append(_apply(op, random.Random(seed), corpus, longer))
            inc = build([str(corpus)], str(out))
            clean = tmp / f"clean{k}"
            build([str(corpus)], str(clean), cache=False)
            assert _tables(out) == _tables(clean), f"after {done}"
            assert inc["rows"] == _summary_rows(clean), f"after {done}"
            dedup = inc["dedup"]
            if not dedup["reused"]:  # dedup ran: the articles whose quotes are unchanged were kept
                kept.append(dedup["articles_kept"])  # (all of them when a deleted post's quotes stood alone)
                assert 0 < dedup["articles_kept"] <= dedup["clusters"], f"after {done}: {dedup}"
            shutil.rmtree(clean)
        assert kept, f"dedup never ran again after {done}"


def _summary_rows(out: Path) -> dict:
    import json

    return json.loads((out / "build.json").read_text(encoding="utf-8"))["rows"]


def _dedup_state(tmp_path: Path) -> tuple[Path, str]:
    """A build of 12 generated posts: its dedup state folder, and the code digest it was kept by."""
    from kirinuki.build.batch import code_digest
    from kirinuki.flows.build import build

    corpus = tmp_path / "corpus"
    write_corpus(corpus, 12, seed=5, excerpts_per_post=4)
    (corpus / "ground_truth.csv").unlink()
    build([str(corpus)], str(tmp_path / "out"))
    return tmp_path / "out" / "cache" / "dedup", code_digest(whole_build=True)


def test_articles_are_kept_only_from_an_intact_state_made_by_the_same_code(tmp_path):
    from kirinuki.dedup.memo import ArticleMemo

    state, code = _dedup_state(tmp_path)
    assert ArticleMemo(str(state), code).keys  # every article of the build, by key
    assert not ArticleMemo(str(state), "other code").keys
    with (state / "articles.parquet").open("ab") as f:
        f.write(b"\0")
    assert not ArticleMemo(str(state), code).keys


def test_a_kept_article_is_its_row_of_the_last_build_and_its_paragraphs_follow_it(tmp_path):
    """The memo names a kept article by its row in the last build's `articles` and copies runs of
    rows by position: every article's row and paragraphs come back as they are in the files, and a
    keys file that does not list the table's articles in its order keeps nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kirinuki.dedup.memo import ARTICLE_KEYS, ArticleMemo

    state, code = _dedup_state(tmp_path)
    articles = pq.read_table(state / "articles.parquet")
    paragraphs = pq.read_table(state / "article_paragraphs.parquet")
    keys = pa.ipc.open_file(pa.memory_map(str(state / ARTICLE_KEYS))).read_all()
    memo = ArticleMemo(str(state), code)
    ids = articles["article_id"].to_pylist()
    assert len(ids) > 3
    rows = [memo.kept(aid, key) for aid, key in zip(keys["article_id"].to_pylist(), keys["key"].to_pylist())]
    assert rows == list(range(len(ids)))
    assert memo.kept(ids[0], "another key") is None
    for start, stop in ((0, 1), (1, 3), (3, len(ids))):  # in increasing order, as deduplicate asks
        got_articles, got_paragraphs = memo.rows(start, stop)
        assert pa.Table.from_batches([b.slice(i, j - i) for b, i, j in got_articles]).equals(
            articles.slice(start, stop - start))
        got = pa.Table.from_batches([b.slice(i, j - i) for b, i, j in got_paragraphs])
        assert set(got["article_id"].to_pylist()) == set(ids[start:stop])
        assert got.num_rows == sum(articles["n_paragraphs"].to_pylist()[start:stop])
        assert got.equals(paragraphs.filter(pa.compute.is_in(paragraphs["article_id"], pa.array(ids[start:stop]))))

    shuffled = keys.take(pa.array(list(range(1, keys.num_rows)) + [0]))
    with pa.OSFile(str(state / ARTICLE_KEYS), "wb") as f, pa.ipc.new_file(f, keys.schema) as w:
        w.write_table(shuffled)
    assert not ArticleMemo(str(state), code, checked=True).keys


def test_kept_article_rows_are_read_holding_about_one_row_group_not_every_one_read(tmp_path):
    """The last build's article rows are read a batch at a time as the copy moves on: the Arrow
    memory held stays near one row group's, not the whole file's (pyarrow's pre-buffering kept every
    row group read until the end: 877 MB by the end of a 100k-post append)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kirinuki.dedup.memo import _Rows

    text = "長い記事の本文。" * 4000  # ~96 KB a row in UTF-8
    path = tmp_path / "articles.parquet"
    pq.write_table(pa.table({"article_id": [f"a{i:04d}" for i in range(400)], "text": [text + str(i) for i in range(400)]}),
                   path, row_group_size=20, compression="none")
    group = pq.ParquetFile(path).metadata.row_group(0).total_byte_size
    rows, held = _Rows(path, 10), []
    for start in range(0, 400, 10):
        runs = rows.take(start, start + 10)
        assert [b.column(0)[i].as_py() for b, i, j in runs for i in range(i, j)] == [f"a{k:04d}" for k in range(start, start + 10)]
        held.append(pa.total_allocated_bytes())
        del runs
    assert max(held) < 4 * group  # of a file of 20 row groups


def _built_then_grown(tmp_path: Path, seed: int, **options) -> Path:
    """A corpus of BASE_POSTS generated posts built into tmp_path/out (with the build's `options`),
    then its next four posts added (as a blog grows): the corpus folder, not built again yet."""
    from kirinuki.flows.build import build

    longer, corpus = tmp_path / "longer", tmp_path / "corpus"
    write_corpus(longer, BASE_POSTS + 4, seed=seed, excerpts_per_post=4)
    corpus.mkdir()
    for n in range(1, BASE_POSTS + 1):
        shutil.copy(longer / f"post_{n:06d}.txt", corpus)
    build([str(corpus)], str(tmp_path / "out"), **options)
    for n in range(BASE_POSTS + 1, BASE_POSTS + 5):
        shutil.copy(longer / f"post_{n:06d}.txt", corpus)
    return corpus


def test_article_rows_copied_from_the_last_build_are_not_judged_again_with_the_same_results(tmp_path, monkeypatch):
    """After an append, the article tables' rows that dedup copied from the last build's files (which
    passed) are not handed to Great Expectations' row-local checks again; the results (every
    expectation's success and counts) are those of a clean build."""
    import json

    import kirinuki.validate.gx_files as gx_files
    from kirinuki.flows.build import build
    from kirinuki.store.files import MADE_ROWS

    corpus = _built_then_grown(tmp_path, seed=11)
    judged: dict[str, int] = {}
    real = gx_files._run

    def counting(gx, name, df, exps, indices):
        if any(exps[i]["type"] in gx_files.ROW_LOCAL for i in indices):
            judged[name] = judged.get(name, 0) + len(df)
        return real(gx, name, df, exps, indices)

    monkeypatch.setattr(gx_files, "_run", counting)
    read_from: dict[int, str | None] = {}  # rows of a file sliced for GX -> the Arrow file its made rows came from
    real_batches = gx_files._batches

    def batches(pf, size, columns, skip, made=None):
        read_from[pf.metadata.num_rows] = made
        yield from real_batches(pf, size, columns, skip, made)

    monkeypatch.setattr(gx_files, "_batches", batches)
    inc = build([str(corpus)], str(tmp_path / "out"))
    monkeypatch.setattr(gx_files, "_run", real)
    monkeypatch.setattr(gx_files, "_batches", real_batches)
    build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert inc["dedup"]["articles_kept"] > 0
    for name in ("articles", "article_paragraphs"):
        assert 0 < judged[name] < inc["rows"][name], (name, judged, inc["rows"])
        # the rows judged are those dedup made, read from the file it kept of them, not the whole table again
        assert Path(read_from[inc["rows"][name]]).name == f"{name}.arrow"
    assert not any(p.name == MADE_ROWS for p in (tmp_path / "out").rglob("*"))  # only for validation: gone

    def results(out: Path) -> list:
        doc = json.loads((out / "validation" / "results.json").read_text(encoding="utf-8"))
        return sorted((c["table"], c["name"], c["success"], c["unexpected"], c["elements"]) for c in doc["checks"])

    assert results(tmp_path / "out") == results(tmp_path / "clean")
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")


def test_an_append_digests_only_the_bodies_of_batches_the_last_build_did_not_read(tmp_path, monkeypatch):
    """Dedup keeps each body's length and digest with its sketches, by the part runs it read them
    from: after an append, a batch whose runs are the last build's is not digested again, and the
    tables are still a clean build's."""
    import kirinuki.dedup.spill as spill
    from kirinuki.flows.build import build

    corpus = _built_then_grown(tmp_path, seed=13, batch_files=8)
    digested = []
    real = spill.body_digest
    monkeypatch.setattr(spill, "body_digest", lambda data: digested.append(1) or real(data))
    inc = build([str(corpus)], str(tmp_path / "out"), batch_files=8)
    monkeypatch.setattr(spill, "body_digest", real)
    assert inc["dedup"]["clustering"] == "appended"
    assert 0 < len(digested) < inc["rows"]["excerpts"] / 2, (len(digested), inc["rows"]["excerpts"])
    build([str(corpus)], str(tmp_path / "clean"), cache=False, batch_files=8)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")


def test_an_append_reads_only_the_earlier_bodies_it_compares_or_makes_again(tmp_path, monkeypatch):
    """After an append, the bodies of the batches the last build read stay in their parts: dedup
    reads only those of earlier quotes it compares with new ones or whose articles it makes again,
    a batch at a time, and the tables are still a clean build's."""
    import kirinuki.dedup.spill as spill
    from kirinuki.flows.build import build

    corpus = _built_then_grown(tmp_path, seed=13, batch_files=8)
    stores, loads = [], []
    real_init, real_loaded = spill.BodyStore.__init__, spill._loaded

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        stores.append(self)

    monkeypatch.setattr(spill.BodyStore, "__init__", init)
    monkeypatch.setattr(spill, "_loaded", lambda count, load: loads.append(count) or real_loaded(count, load))
    inc = build([str(corpus)], str(tmp_path / "out"), batch_files=8)
    monkeypatch.undo()
    assert inc["dedup"]["clustering"] == "appended"
    (store,) = stores
    left = sum(count for _, count, _ in store.lazy)
    spilled = sum(count for first, count, _ in store.lazy if store.start[first] >= 0)
    read = len(store.wanted) + spilled
    assert left >= inc["rows"]["excerpts"] // 2, (left, inc["rows"]["excerpts"])  # the earlier batches
    assert 0 < read < left / 2, (read, left)
    assert len(loads) <= 2 * len(store.lazy)
    build([str(corpus)], str(tmp_path / "clean"), cache=False, batch_files=8)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")


def test_kept_articles_are_copied_in_runs_of_a_bounded_length_with_a_clean_build_s_bytes(tmp_path, monkeypatch):
    """Articles kept one after another are copied in runs of at most KEPT_RUN rows: an append that
    changed few articles once asked for the whole article tables as one run, decoded before any of it
    was written (at 100k posts, an append that made no article again peaked at 5.8 GB, against 1.8 GB
    in runs). The tables are a clean build's."""
    import kirinuki.dedup.clusters as clusters
    from kirinuki.dedup.memo import ArticleMemo
    from kirinuki.flows.build import build

    corpus = _built_then_grown(tmp_path, seed=13)
    asked: list[int] = []
    real = ArticleMemo.rows
    monkeypatch.setattr(clusters, "KEPT_RUN", 5)
    monkeypatch.setattr(ArticleMemo, "rows", lambda self, start, stop: asked.append(stop - start) or real(self, start, stop))
    inc = build([str(corpus)], str(tmp_path / "out"))
    monkeypatch.undo()
    assert inc["dedup"]["articles_kept"] == sum(asked) > 5
    assert max(asked) == 5  # runs longer than that were there, and were cut
    build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")


def test_an_append_makes_article_keys_only_for_articles_not_kept_whole_and_unread_again(tmp_path, monkeypatch):
    """An article whose cluster the append kept whole, all of whose quotes come from part rows the
    last build read, is the last build's: its key is not made again. An old post whose date changed
    (its sidecar) is read again, so its articles are made again with the new date. Either way the
    tables, and the keys kept for the next build, are a clean build's."""
    import datetime
    import json

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import kirinuki.dedup.clusters as clusters
    from kirinuki.dedup.memo import ARTICLE_KEYS
    from kirinuki.flows.build import build
    from kirinuki.store.layout import read_table

    corpus = _built_then_grown(tmp_path, seed=17, batch_files=4)
    first = read_table(tmp_path / "out" / "data", "documents", columns=["source_path", "n_excerpts", "published_date"])
    old = sorted((d["source_path"], d["published_date"]) for d in first.to_pylist() if d["n_excerpts"])[3]
    dated, when = corpus / old[0], str(old[1] + datetime.timedelta(days=1))  # an old post with quotes, a day later
    (corpus / (dated.stem + ".meta.json")).write_text(json.dumps({"published_date": when}), encoding="utf-8")
    made: list[str] = []
    real = clusters.article_key
    monkeypatch.setattr(clusters, "article_key", lambda aid, *a: made.append(aid) or real(aid, *a))
    inc = build([str(corpus)], str(tmp_path / "out"), batch_files=4)
    monkeypatch.setattr(clusters, "article_key", real)
    assert inc["dedup"]["clustering"] == "appended"
    assert 0 < len(made) < inc["rows"]["articles"] / 2, (len(made), inc["rows"]["articles"])
    docs = read_table(tmp_path / "out" / "data", "documents", columns=["doc_id", "source_path", "published_date"])
    doc = docs.filter(pc.equal(docs["source_path"], dated.name))
    assert str(doc["published_date"][0]) == when
    quotes = pq.read_table(tmp_path / "out" / "data" / "article_quotes.parquet")
    of_dated = set(quotes.filter(pc.equal(quotes["doc_id"], doc["doc_id"][0]))["article_id"].to_pylist())
    assert of_dated and of_dated <= set(made)  # (the re-dated post's articles: made again)
    build([str(corpus)], str(tmp_path / "clean"), batch_files=4, cache=False)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")
    build([str(corpus)], str(tmp_path / "fresh"), batch_files=4)  # a first build: every key made

    def keys(out: Path) -> pa.Table:
        with pa.OSFile(str(out / "cache" / "dedup" / ARTICLE_KEYS)) as f:
            return pa.ipc.open_file(f).read_all()

    assert keys(tmp_path / "out").equals(keys(tmp_path / "fresh"))


def test_an_append_reads_the_last_article_keys_only_after_clustering(tmp_path, monkeypatch):
    """Dedup's memory peaks while it clusters: an append reads the last build's article keys (~110 MB
    at 100k posts) only when the articles are made; the tables are still a clean build's."""
    import kirinuki.dedup.clusters as clusters
    from kirinuki.dedup.memo import ArticleMemo
    from kirinuki.flows.build import build

    corpus = _built_then_grown(tmp_path, seed=11)
    events: list = []
    real_find, real_open = clusters.find_clusters, ArticleMemo._open

    def finding(*args, **kwargs):
        events.append("cluster")
        found = real_find(*args, **kwargs)
        events.append("clustered")
        return found

    def opening(self, *args):
        events.append("article keys")
        return real_open(self, *args)

    monkeypatch.setattr(clusters, "find_clusters", finding)
    monkeypatch.setattr(ArticleMemo, "_open", opening)
    inc = build([str(corpus)], str(tmp_path / "out"))
    monkeypatch.undo()
    assert inc["dedup"]["clustering"] == "appended" and inc["dedup"]["articles_kept"] > 0
    assert events == ["cluster", "clustered", "article keys"]
    build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert _tables(tmp_path / "out") == _tables(tmp_path / "clean")
