"""Per-post tables by year (issue 22): a large build writes data/<table>/<year>.parquet, and a rebuild
links the years whose posts did not change, holding a clean build's exact bytes. The threshold is
lowered to one post so the sample's loose posts and the seed (posts of 2024 and 2025) are partitioned."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import LOOSE_POSTS_ONLY, SAMPLE, SEED

PER_POST = ("documents", "excerpts", "paragraphs", "citations", "date_mentions", "mentions")


def _files(out: Path) -> dict[str, str]:
    data = out / "data"
    return {p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*.parquet"))}


def _build(corpus: Path, out: Path, **kw) -> dict:
    from kirinuki.flows.build import build

    return build([str(corpus)], str(out), partition_min_posts=1, **kw)


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> dict:
    """The sample's loose posts and the seed built by year; then a post of 2026 added and built again
    with the cache, and the same grown corpus built clean."""
    tmp = tmp_path_factory.mktemp("partitions")
    corpus = tmp / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus)
    first = _build(corpus, tmp / "out")
    before = {p.relative_to(tmp / "out").as_posix(): p.stat().st_ino for p in (tmp / "out" / "data").rglob("*.parquet")}
    src = corpus / "2025-01-21_nordria_election.txt"
    (corpus / "2026-03-02_nordria_rerun.txt").write_text(src.read_text(encoding="utf-8").replace("選挙", "再選挙"),
                                                         encoding="utf-8")
    (corpus / "2026-03-02_nordria_rerun.meta.json").write_text(json.dumps({"published_date": "2026-03-02"}),
                                                               encoding="utf-8")
    again = _build(corpus, tmp / "out")
    clean = _build(corpus, tmp / "clean", cache=False)
    return {"tmp": tmp, "corpus": corpus, "first": first, "again": again, "clean": clean, "before": before}


def test_a_large_build_writes_each_per_post_table_one_file_per_post_year(grown):
    data = grown["tmp"] / "out" / "data"
    years = {}
    for name in PER_POST:
        assert not (data / f"{name}.parquet").exists(), name
        years[name] = sorted(p.stem for p in (data / name).glob("*.parquet"))
    con = duckdb.connect()
    # every row sits in the file of its post's year
    docs = {r[0]: r[1] for r in con.execute(
        f"SELECT doc_id, coalesce(CAST(year(published_date) AS VARCHAR), 'undated') FROM read_parquet('{data}/documents/*.parquet')").fetchall()}
    assert set(docs.values()) == set(years["documents"]) and {"2024", "2025", "2026"} <= set(docs.values())
    for name in PER_POST:
        for f in (data / name).glob("*.parquet"):
            ids = set(pq.read_table(f, columns=["doc_id"]).column(0).to_pylist())
            assert ids and {docs[d] for d in ids} == {f.stem}, (name, f.name)
    for name in ("articles", "outlets", "rejects", "quarantine"):  # the others stay whole
        assert (data / f"{name}.parquet").is_file(), name
    # the views and `kirinuki query` read every year
    from kirinuki.store.query import open_build

    q = open_build(grown["tmp"] / "out")
    assert q.execute("SELECT count(*) FROM excerpts").fetchone()[0] == grown["again"]["rows"]["excerpts"] > 0
    q.close()
    views = (grown["tmp"] / "out" / "views.sql").read_text(encoding="utf-8")
    assert "read_parquet('data/excerpts/*.parquet')" in views and "read_parquet('data/articles.parquet')" in views


def test_adding_a_post_of_a_new_year_links_the_other_years_and_holds_a_clean_build_s_bytes(grown):
    out, clean = grown["tmp"] / "out", grown["tmp"] / "clean"
    assert _files(out) == _files(clean)
    assert grown["again"]["rows"] == grown["clean"]["rows"]
    linked = [rel for rel, ino in grown["before"].items()
              if (out / rel).exists() and (out / rel).stat().st_ino == ino]
    # every earlier year of every per-post table is the last build's file, not a rewrite
    earlier = [rel for rel in grown["before"] if rel.split("/")[1] in PER_POST]
    assert earlier and sorted(linked) == sorted(earlier)
    assert grown["again"]["layout"]["files_linked"] == len(earlier)
    assert grown["clean"]["layout"]["files_linked"] == 0
    # the linked years' rows were not checked again by the row-local expectations
    assert grown["again"]["validation"]["files_checked_before"] > 0
    assert grown["clean"]["validation"]["files_checked_before"] == 0
    assert sorted(grown["again"]["layout"]["by_year"]) == sorted(PER_POST)
    # and the build says the files it validated: the release check takes it
    from kirinuki.release.checks import check_build

    check_build(out)


def test_an_edited_old_post_rewrites_its_year_only(grown, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grown["tmp"] / "out", out)  # a copy: the module's build stays as it is
    corpus = tmp_path / "corpus"
    shutil.copytree(grown["corpus"], corpus)
    before = _files(out)
    post = corpus / "2024-06-22_nordria_currency.txt"
    post.write_bytes(post.read_bytes() + "\n追記した解説の段落です。\n".encode("cp932"))  # a CP932 post
    summary = _build(corpus, out)
    after = _files(out)
    changed = {rel.split("/")[1] if "/" in rel else rel for rel in before if before[rel] != after.get(rel)}
    rewritten_years = {rel.split("/")[1] for rel in before if "/" in rel and before[rel] != after.get(rel)}
    assert rewritten_years <= {"2024.parquet"}, changed
    assert after["documents/2024.parquet"] != before["documents/2024.parquet"]
    assert summary["layout"]["files_linked"] >= 3 * len(PER_POST) - len(PER_POST) - 2
    _build(corpus, tmp_path / "clean", cache=False)
    assert after == _files(tmp_path / "clean")


def test_a_new_quote_that_takes_over_an_old_article_changes_article_quotes_not_the_old_year(grown, tmp_path):
    """A 2026 post quotes a 2024 article at greater length: its quote becomes the article's canonical
    one, so the 2024 quote's relation and canonical flag change. Those live in `article_quotes`, so
    the 2024 `excerpts` file is linked, not written; and the result is a clean build's."""
    out, corpus = tmp_path / "out", tmp_path / "corpus"
    shutil.copytree(grown["tmp"] / "out", out)
    shutil.copytree(grown["corpus"], corpus)
    con = duckdb.connect()
    old_id, body = con.execute(f"""SELECT excerpt_id, body FROM read_parquet('{out}/data/excerpts/*.parquet')
                                   WHERE headline = '国境の町で続く人手不足'""").fetchone()
    before = {rel: (out / "data" / rel).stat().st_ino for rel in ("excerpts/2024.parquet", "article_quotes.parquet")}
    (corpus / "2026-04-01_border_town.txt").write_text(
        "春になって町を再訪した。\n****国境の町で続く人手不足****\n" + body
        + "\n町は春から新たに求人を始め、隣国からの通勤者も増えている。\n【2024年6月8日 NHK】\n感想です。\n", encoding="utf-8")
    (corpus / "2026-04-01_border_town.meta.json").write_text(json.dumps({"published_date": "2026-04-01"}), encoding="utf-8")
    summary = _build(corpus, out)
    quotes = {r[0]: r[1:] for r in con.execute(f"""SELECT q.excerpt_id, q.article_id, q.relation, q.canonical, d.published_date
        FROM read_parquet('{out}/data/article_quotes.parquet') q JOIN read_parquet('{out}/data/documents/*.parquet') d
        USING (doc_id) WHERE q.article_id = (SELECT article_id FROM read_parquet('{out}/data/article_quotes.parquet')
                                            WHERE excerpt_id = '{old_id}')""").fetchall()}
    assert len(quotes) == 2 and quotes[old_id][1:3] == ("partial", False)  # it was the article's original
    (new_id,) = set(quotes) - {old_id}
    assert quotes[new_id][1:3] == ("original", True) and str(quotes[new_id][3]) == "2026-04-01"
    assert (out / "data" / "excerpts/2024.parquet").stat().st_ino == before["excerpts/2024.parquet"]  # linked
    assert (out / "data" / "article_quotes.parquet").stat().st_ino != before["article_quotes.parquet"]
    assert summary["dedup"]["clustering"] == "appended"
    _build(corpus, tmp_path / "clean", cache=False)
    assert _files(out) == _files(tmp_path / "clean")


def test_a_release_of_a_partitioned_build_holds_each_table_as_one_file_with_every_row(grown, tmp_path):
    from kirinuki.release import make_release, verify

    out = grown["tmp"] / "out"
    rel = Path(make_release(out, "1.0.0", tmp_path / "releases", "full", date="2026-12-05").path)
    assert verify(rel) == []
    con = duckdb.connect()
    for name in PER_POST:
        assert (rel / "data" / f"{name}.parquet").is_file() and not (rel / "data" / name).exists()
        want = con.execute(f"SELECT * FROM read_parquet('{out}/data/{name}/*.parquet')").fetchall()
        got = con.execute(f"SELECT * FROM read_parquet('{rel}/data/{name}.parquet')").fetchall()
        assert got == want, name
    # the default profile withholds the quoted text of every year's rows, and keeps their count
    meta = Path(make_release(out, "1.1.0", tmp_path / "releases", date="2026-12-05").path)
    assert verify(meta) == []
    bodies = con.execute(f"SELECT count(*), count(body), count(body_sha256) FROM read_parquet('{meta}/data/excerpts.parquet')").fetchone()
    assert bodies == (grown["again"]["rows"]["excerpts"], 0, grown["again"]["rows"]["excerpts"])


def test_a_quarantined_row_leaves_its_year_file_and_the_other_years_stay_as_they_were(grown, tmp_path):
    import pyarrow as pa

    from kirinuki.schema import spec
    from kirinuki.store.files import link_data
    from kirinuki.validate import validate_build

    out = tmp_path / "out"
    shutil.copytree(grown["tmp"] / "out", out)
    year = out / "data" / "paragraphs" / "2024.parquet"
    rows = pq.read_table(year).to_pylist()
    rows[1]["role"] = "bogus"  # a warning-level failure
    year.unlink()  # the file may be a link to the module's build: replace it, do not write into it
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([f.with_nullable(True) for f in spec("paragraphs").arrow_schema])), year)
    before = _files(out)
    still = link_data(out, tmp_path / "still")  # what a build's charts are drawn from while it is validated
    report = validate_build(out)
    assert report.success and report.quarantined
    assert _files(still) == before  # quarantine replaced the files it rewrote: the links hold the old bytes
    assert not [p for p in (out / "data").rglob("*") if p.name.startswith(".")]  # no half-written file left
    q = pq.read_table(out / "data" / "quarantine.parquet").to_pylist()
    assert rows[1]["paragraph_id"] in {r["row_key"] for r in q if r["table_name"] == "paragraphs"}
    left = pq.read_table(year, columns=["paragraph_id"]).column(0).to_pylist()
    assert rows[1]["paragraph_id"] not in left and len(left) < len(rows)
    after = _files(out)
    untouched = [rel for rel in before if rel.startswith(("documents/", "excerpts/")) and rel in after]
    assert untouched and all(before[r] == after[r] for r in untouched if not r.endswith("2024.parquet"))
    assert validate_build(out, quarantine=False).success


def test_a_busy_year_is_one_file_per_month_and_a_post_added_to_a_month_rewrites_that_month_only(tmp_path):
    """A year of at least MONTHS_FROM_POSTS posts is split by month (lowered to 3 here: the sample's
    three posts of 2024 make 2024-01 and 2024-06, the seed's year stays whole); a post added in June
    rewrites June's files, links the others, and the result is a clean build's bytes."""
    import kirinuki.store.layout as layout

    assert f"a year of at least {layout.MONTHS_FROM_POSTS:,} posts" in (Path(__file__).parents[1] / "docs" / "tables.md").read_text(encoding="utf-8")
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layout, "MONTHS_FROM_POSTS", 3)
        _build(corpus, tmp_path / "out")
        data = tmp_path / "out" / "data"
        labels = sorted(p.stem for p in (data / "documents").glob("*.parquet"))
        assert "2024-01" in labels and "2024-06" in labels and "2024" not in labels, labels
        assert any(len(x) == 4 for x in labels), labels  # a quieter year keeps one file
        con = duckdb.connect()
        for f in (data / "excerpts").glob("*.parquet"):  # every row sits in its post's month or year
            stamps = {r[0] for r in con.execute(
                f"""SELECT CASE WHEN strftime(d.published_date, '%Y') = '2024' THEN strftime(d.published_date, '%Y-%m')
                    ELSE strftime(d.published_date, '%Y') END
                    FROM read_parquet('{f}') e JOIN read_parquet('{data}/documents/*.parquet') d USING (doc_id)""").fetchall()}
            assert stamps == {f.stem}, (f.name, stamps)
        before = {p.relative_to(data).as_posix(): p.stat().st_ino for p in data.rglob("*.parquet")}
        src = corpus / "2024-06-22_nordria_currency.txt"
        (corpus / "2024-06-29_nordria_currency_again.txt").write_bytes(
            src.read_bytes() + "\n月末にもう一度書いた解説です。\n".encode("cp932"))
        (corpus / "2024-06-29_nordria_currency_again.meta.json").write_text(
            json.dumps({"published_date": "2024-06-29"}), encoding="utf-8")
        summary = _build(corpus, tmp_path / "out")
        rewritten = {rel for rel, ino in before.items() if "/" in rel and rel.split("/")[0] in PER_POST
                     and (data / rel).exists() and (data / rel).stat().st_ino != ino}
        assert rewritten and {rel.split("/")[1] for rel in rewritten} == {"2024-06.parquet"}, rewritten
        assert summary["layout"]["files_linked"] > 0
        _build(corpus, tmp_path / "clean", cache=False)
    assert _files(tmp_path / "out") == _files(tmp_path / "clean")


def test_partitions_written_straight_from_batches_in_date_order_are_the_spill_s_bytes(tmp_path, monkeypatch):
    """A batch a post (the sample's file names sort in date order, so each year's posts are batches
    in a row): every partition is written from slices of its batches' rows, a few batches held at a
    time, and each file is byte for byte the one the spill path writes from the same parts; posts
    in no date order, whose batches each hold rows of every partition, take the spill path."""
    import numpy as np

    import kirinuki.store.partitions as partitions
    from kirinuki.build.parts import part_numbers

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus)
    _build(corpus, tmp_path / "out", batch_files=1)
    parts = tmp_path / "out" / "cache"
    assert len(part_numbers(parts)) > 4  # more batches than MAX_OPEN_BATCHES
    plan = partitions.plan_partitions(parts, list(PER_POST), "code")
    paths = {}
    real = partitions._write_in_order
    for way in ("in order", "spill"):
        calls = []
        monkeypatch.setattr(partitions, "MAX_OPEN_BATCHES", 4 if way == "in order" else 0)
        monkeypatch.setattr(partitions, "_write_in_order", lambda *a: calls.append(a[2]) or real(*a))
        root = tmp_path / way
        (root / "data").mkdir(parents=True)
        for name in PER_POST:
            partitions.write_partitioned(root, parts, name, plan, None, {})
        assert (len(calls) == len(PER_POST)) == (way == "in order"), (way, calls)
        paths[way] = _files(root)
    assert len(paths["spill"]) > len(PER_POST) and paths["in order"] == paths["spill"]
    # the same files as the build's own: the build took the path in order
    assert {rel: h for rel, h in _files(tmp_path / "out").items() if rel.split("/")[0] in PER_POST} == paths["spill"]

    # two partitions, each in every one of six batches: six batches would be held at once
    scrambled = partitions.Plan(batches=list(range(6)), years=["2024", "2025"])
    scrambled.labels["excerpts"] = {n: np.array([0, 1, 0], dtype=np.int32) for n in range(6)}
    monkeypatch.setattr(partitions, "MAX_OPEN_BATCHES", 4)
    assert partitions._batches_in_order(scrambled, "excerpts", {"2024", "2025"}) is None
    assert partitions._batches_in_order(scrambled, "excerpts", {"2025"}) is None
    scrambled.labels["excerpts"] = {n: np.array([n // 3] * 2, dtype=np.int32) for n in range(6)}  # in date order
    assert partitions._batches_in_order(scrambled, "excerpts", {"2024", "2025"}) == {"2024": [0, 1, 2], "2025": [3, 4, 5]}


def test_the_slice_check_runs_partition_by_partition_and_fails_the_rows_it_fails_whole(grown, tmp_path, monkeypatch):
    """paragraphs_text_is_the_documents_slice joins each paragraph to its post's text: on a
    partitioned build it runs one batch of year files at a time (here one year a batch), and fails
    exactly the paragraphs its whole run fails. A paragraph moved into another year's file than its
    post's would make the batches miss a pair, so then the check runs whole."""
    import pyarrow as pa

    import kirinuki.validate.partitionwise as partitionwise
    from kirinuki.schema import spec
    from kirinuki.store.layout import duckdb_source
    from kirinuki.validate import validate_build
    from kirinuki.validate.suites import load_suite

    out = tmp_path / "out"
    shutil.copytree(grown["tmp"] / "out", out)
    data = out / "data"
    schema = pa.schema([f.with_nullable(True) for f in spec("paragraphs").arrow_schema])

    def rewrite(path: Path, rows: list[dict]) -> None:
        path.unlink()  # the file may be a link to the module's build: replace it, do not write into it
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)

    y2024, y2025 = data / "paragraphs" / "2024.parquet", data / "paragraphs" / "2025.parquet"
    rows24, rows25 = pq.read_table(y2024).to_pylist(), pq.read_table(y2025).to_pylist()
    rows24[2]["text"] = "どこにも無い段落"
    rows25[1]["text"] = rows25[1]["text"][:-1]
    rewrite(y2024, rows24)
    rewrite(y2025, rows25)
    check = next(s for s in load_suite("paragraphs")["sql_checks"]
                 if s["name"] == "paragraphs_text_is_the_documents_slice")
    con = duckdb.connect()
    for name in ("paragraphs", "documents"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {duckdb_source(data, name)}")
    whole = {r[0] for r in con.execute(check["sql"]).fetchall()}
    assert whole == {rows24[2]["paragraph_id"], rows25[1]["paragraph_id"]}

    ran: list[object] = []
    real = partitionwise.batched_keys
    monkeypatch.setattr(partitionwise, "PARTITION_BATCH_BYTES", 1)  # every year a batch of its own
    monkeypatch.setattr("kirinuki.validate.checks.batched_keys", lambda *a: ran.append(real(*a)) or ran[-1])

    def failing() -> set[str]:
        ran.clear()
        report = validate_build(out, quarantine=False)
        return set(next(c for c in report.checks if c.name == check["name"]).sample)

    assert failing() == whole
    batched = [keys for keys in ran if keys is not None]
    assert len(batched) == 1 and set(batched[0]) == whole  # the slice check, and only it, ran by partition

    # a rebuild checks only the posts no passing build checked (validate.checks' `fresh` views):
    # here every post but the one of the 2025 paragraph, partition by partition still
    from kirinuki.validate.checks import DOCUMENT_INPUTS

    docs = pa.concat_tables([pq.read_table(p, columns=list(DOCUMENT_INPUTS))
                             for p in sorted((data / "documents").glob("*.parquet"))])
    others = docs.filter(pa.compute.not_equal(docs["doc_id"], rows25[1]["doc_id"]))
    ran.clear()
    report = validate_build(out, quarantine=False, checked=others)
    assert set(next(c for c in report.checks if c.name == check["name"]).sample) == {rows25[1]["paragraph_id"]}
    assert [keys for keys in ran if keys is not None] == [[rows25[1]["paragraph_id"]]]

    moved = dict(rows25[0], text="別の年に置かれた段落")
    rewrite(y2024, rows24 + [moved])  # a 2025 post's paragraph moved into the 2024 file
    rewrite(y2025, rows25[1:])
    assert failing() == whole | {moved["paragraph_id"]}
    assert ran and all(keys is None for keys in ran)  # the years do not hold their posts' rows alone: run whole
