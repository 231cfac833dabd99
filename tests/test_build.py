import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import LOOSE_POSTS_ONLY, ROOT, SAMPLE, SEED, rows
from kirinuki.schema import tables


def digest_tree(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "data").glob("*.parquet"))}


def test_every_table_is_written_with_its_declared_schema(seed_build):
    for name, spec in tables().items():
        f = seed_build / "data" / f"{name}.parquet"
        assert pq.read_schema(f).remove_metadata() == spec.arrow_schema, name


def test_seed_build_has_the_expected_records(seed_build):
    ex = rows(seed_build, "SELECT * FROM excerpts ORDER BY ordinal")
    assert [e["outlet_raw"] for e in ex] == ["AFP", "テレ朝news", "産経", "Newsweek", "ロイター", "MAG2NEWS", "現代ビジネス"]
    assert [e["published_date"] for e in ex] == [
        date(2023, 10, 21), date(2023, 11, 2), date(2023, 11, 10), date(2024, 4, 9),
        date(2024, 4, 8), date(2024, 4, 6), date(2024, 3, 20)]
    assert [e["date_inferred"] for e in ex] == [False, False, False, True, True, True, True]
    assert [e["elided"] for e in ex] == [False, False, True, True, False, True, True]
    assert ex[5]["author"] == "島田久仁彦"
    assert ex[6]["article_title"].startswith("実は「ウクライナの次」")
    (doc,) = rows(seed_build, "SELECT * FROM documents")
    assert doc["published_date"] == date(2024, 4, 9) and doc["date_inferred"] is True
    assert doc["n_excerpts"] == 7 and doc["source_path"] == SEED.name
    assert doc["source_sha256"] == hashlib.sha256(SEED.read_bytes()).hexdigest()
    roles = dict((r["role"], r["n"]) for r in rows(seed_build, "SELECT role, count(*) n FROM paragraphs GROUP BY role"))
    assert (roles["heading"], roles["caption"], roles["commentary"]) == (4, 1, 19)
    (cit,) = rows(seed_build, "SELECT * FROM citations")
    assert cit["published_date"] == date(2024, 4, 2) and cit["date_inferred"] is True
    dups = rows(seed_build, "SELECT count(*) n FROM paragraphs WHERE duplicate_of IS NOT NULL")
    assert dups == [{"n": 4}]


def test_paragraph_offsets_slice_the_decoded_source(seed_build, sample_build):
    """The post text is reproducible from the input (read_source, then posts_of for an export or a
    page), equals documents.text, and every paragraph is its slice."""
    from kirinuki.ingest.posts import posts_of
    from kirinuki.ingest.sources import Source, discover, read_source

    for build_dir, root in ((seed_build, SEED.parent), (sample_build, SAMPLE)):
        refs, _ = discover([str(root)])
        texts = {(p.rel, p.entry.entry_id if p.entry else None): p.text
                 for r in refs for p in posts_of(read_source(r))[1] if isinstance(p, Source)}
        docs = rows(build_dir, "SELECT source_path, entry_id, text FROM documents")
        assert {(d["source_path"], d["entry_id"]): d["text"] for d in docs} == texts
        paras = rows(build_dir, "SELECT d.source_path, d.entry_id, p.text, p.char_start, p.char_end "
                                "FROM paragraphs p JOIN documents d USING (doc_id)")
        assert paras
        for p in paras:
            assert texts[p["source_path"], p["entry_id"]][p["char_start"]:p["char_end"]] == p["text"]


def test_sample_corpus_covers_encodings_metadata_and_duplicates(sample_build):
    docs = {d["source_path"]: d for d in rows(sample_build, "SELECT * FROM documents WHERE source_format = 'text' "
                                                            "AND convention = 'star_frame'")}
    assert {d["encoding"] for d in docs.values()} == {"utf-8", "utf-8-bom", "cp932", "euc-jp"}
    grain = docs["2024-06-12_nordria_grain.txt"]
    assert (grain["published_date"], grain["date_inferred"], grain["title_source"]) == (date(2024, 6, 12), False, "metadata")
    election = docs["2025-01-21_nordria_election.txt"]
    assert election["newline"] == "crlf" and election["published_date"] == date(2025, 1, 20)
    assert docs["2024-01-05_nordria_power.txt"]["published_date"] == date(2024, 1, 4)
    pasted = rows(sample_build, "SELECT excerpt_id, duplicate_of FROM excerpts WHERE duplicate_of IS NOT NULL")
    assert len(pasted) == 1 and pasted[0]["duplicate_of"] < pasted[0]["excerpt_id"]
    # the exports' drafts, page and attachment (tests/test_exports.py checks them one by one)
    assert rows(sample_build, "SELECT code, count(*) n FROM rejects GROUP BY code ORDER BY code") == [
        {"code": "draft", "n": 2}, {"code": "not_a_post", "n": 2}]


def test_ids_are_stable_and_output_is_byte_identical(tmp_path, sample_build):
    from kirinuki.flows.build import build

    out = tmp_path / "again"
    build([str(SAMPLE)], str(out), batch_files=1)  # other batching, same bytes
    assert digest_tree(out) == digest_tree(sample_build)


def test_bad_inputs_are_rejected_with_reasons_and_good_ones_kept(tmp_path):
    from kirinuki.flows.build import build

    src = tmp_path / "in"
    src.mkdir()
    (src / "good.txt").write_bytes(SEED.read_bytes())
    (src / "empty.txt").write_bytes(b"")
    (src / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (src / "mixed.txt").write_bytes("本文".encode() + "本文".encode("cp932") + b"\xff")
    summary = build([str(src)], str(tmp_path / "out"))
    rej = {r["source_path"]: r["code"] for r in rows(tmp_path / "out", "SELECT * FROM rejects")}
    assert rej == {"empty.txt": "empty", "image.txt": "binary", "mixed.txt": "undecodable"}
    assert summary["rejects"] == {"binary": 1, "empty": 1, "undecodable": 1}
    assert rows(tmp_path / "out", "SELECT source_path FROM documents") == [{"source_path": "good.txt"}]


def test_failed_build_leaves_the_previous_build_intact(tmp_path, monkeypatch):
    import kirinuki.flows.build as pipeline

    out = tmp_path / "out"
    pipeline.build([str(SAMPLE)], str(out))
    before = digest_tree(out)

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "compact", boom)
    with pytest.raises(Exception):
        pipeline.build([str(SEED.parent)], str(out))
    assert digest_tree(out) == before
    assert not list(tmp_path.glob(".out.tmp-*")) and not list(tmp_path.glob(".out.old"))


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    from kirinuki.store.files import BuildLocked, locked

    out = tmp_path / "out"
    with locked(out):
        with pytest.raises(BuildLocked, match="another kirinuki run"):
            with locked(out):
                pass


def test_recover_restores_a_build_left_mid_swap(tmp_path):
    from kirinuki.store.files import TMP_MARK, recover

    old = tmp_path / ".out.old"  # what a build killed mid-swap leaves: the previous build set aside
    (old / "data").mkdir(parents=True)
    (old / "build.json").write_text('{"kirinuki_version": "0.1.0"}')
    (tmp_path / ".out.tmp-123").mkdir()  # and its unfinished new build, marked as such
    (tmp_path / ".out.tmp-123" / TMP_MARK).touch()
    recover(tmp_path / "out")
    assert (tmp_path / "out" / "data").is_dir() and not old.exists()
    assert not (tmp_path / ".out.tmp-123").exists()


def test_views_sql_works_from_the_build_folder(sample_build):
    import duckdb

    con = duckdb.connect()
    cwd = os.getcwd()
    try:
        os.chdir(sample_build)
        con.execute((sample_build / "views.sql").read_text())
        assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == 10  # 5 loose posts, 4 entries, 1 page
    finally:
        os.chdir(cwd)


def test_query_refuses_writes_and_outside_reads(sample_build):
    from kirinuki.store.query import QueryError, open_build, run_query

    con = open_build(sample_build)
    assert run_query(con, "SELECT count(*) FROM excerpts").fetchall() == [(19,)]
    for sql in ["COPY excerpts TO 'x.csv'", "SELECT * FROM read_csv('/etc/passwd')", "ATTACH 'x.db'",
                "INSTALL httpfs", "CREATE TABLE t AS SELECT 1", "SET enable_external_access=true"]:
        with pytest.raises(QueryError):
            run_query(con, sql)


def test_cli_build_and_query_end_to_end(tmp_path):
    env = dict(os.environ)
    exe = [sys.executable, "-m", "kirinuki.cli"]
    out = tmp_path / "b"
    r = subprocess.run(exe + ["build", str(SAMPLE), "--out", str(out), "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["rows"]["documents"] == 10
    r = subprocess.run(exe + ["query", "SELECT outlet_raw, count(*) n FROM excerpts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
                              "--out", str(out), "--format", "json"], capture_output=True, text=True, env=env, cwd=ROOT)
    # two loose posts, the other blog's post and the WordPress export quote ロイター
    assert r.returncode == 0 and json.loads(r.stdout) == [{"outlet_raw": "ロイター", "n": 4}]
    r = subprocess.run(exe + ["query", "DROP VIEW documents", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "read-only" in r.stderr
    r = subprocess.run(exe + ["build", str(tmp_path / "missing"), "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and "input not found" in r.stderr and r.stderr.count("\n") == 1


def test_build_publishes_prefect_artifacts_with_the_summary(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from kirinuki.flows.build import artifact_key, build

    summary = build([str(SAMPLE)], str(tmp_path / "out"))
    key = artifact_key(tmp_path / "out", "summary")
    assert key != artifact_key(tmp_path / "other", "summary")  # each output folder has its own
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert arts, f"no {key} artifact"
    md = max(arts, key=lambda a: a.created).data
    assert f"| paragraphs | {summary['rows']['paragraphs']:,} |" in md and "Validation:" in md


def test_incremental_rebuild_after_adding_changing_and_deleting_files_equals_a_clean_build(tmp_path):
    from kirinuki.flows.build import build

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus / "seed.txt")
    # a post the summary counts things in: a quote with no attribution, an outlet not in the reference table
    (corpus / "flagged.txt").write_text("【見出し】\n解説の段落です。\n****出典のない記事****\n出典の書かれていない本文の段落です。\n"
                                        "*****\n****架空の新聞の記事****\n本文の段落です。【5月1日 架空新報】\n*****\n", encoding="utf-8")
    out = tmp_path / "out"
    first = build([str(corpus)], str(out))
    assert first["inputs"]["from_cache"] == 0 and (out / "cache").is_dir()
    again = build([str(corpus)], str(out))
    assert again.get("up_to_date") and again["build_digest"] == first["build_digest"]
    # change one post, delete one, add one (a second copy of the seed under a new name)
    edited = corpus / "2024-06-12_nordria_grain.txt"
    edited.write_text(edited.read_text(encoding="utf-8") + "書き足した解説の段落です。\n", encoding="utf-8")
    (corpus / "2024-01-05_nordria_power.txt").unlink()
    shutil.copy(SEED, corpus / "seed_copy.txt")
    inc = build([str(corpus)], str(out))
    assert not inc.get("up_to_date")
    assert inc["inputs"]["from_cache"] == 4  # the two untouched sample posts, seed.txt and flagged.txt
    clean = build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert clean["inputs"]["from_cache"] == 0
    assert digest_tree(out) == digest_tree(tmp_path / "clean")
    for counted in ("flags", "unknown_outlets", "unresolved_dates", "rows", "rejects"):  # kept per file in the cache
        assert inc[counted] == clean[counted], counted
    assert inc["flags"]["no_attribution"] == 1 and inc["unknown_outlets"] == {"distinct": 1, "rows": 1}
    # damaged cached parts are parsed again, not trusted: one cut short, the others overwritten
    damaged = sorted((out / "cache").rglob("part-*.arrow"))
    assert damaged
    damaged[0].write_bytes(damaged[0].read_bytes()[:100])
    for entry in damaged[1:]:
        entry.write_bytes(b"not an Arrow file")
    edited.write_text(edited.read_text(encoding="utf-8") + "もう一段落。\n", encoding="utf-8")
    rebuilt = build([str(corpus)], str(out))
    assert rebuilt["inputs"]["from_cache"] == 0
    assert digest_tree(out) == digest_tree(build_clean(corpus, tmp_path / "clean2"))


def test_a_rebatch_writes_only_the_rows_of_files_parsed_again(tmp_path):
    """run_batch over files found in an earlier build's parts links those parts and writes a new one
    holding only what it parsed; the batch reads back exactly as a batch parsed from scratch. A
    batch whose rows would lie in more than MAX_PARTS parts is written into one part instead."""
    from kirinuki.build.batch import MAX_PARTS, cache_key, fingerprint, run_batch
    from kirinuki.build.parts import PART_TABLES, read_part
    from kirinuki.build.reuse import cache_lookup
    from kirinuki.ingest.sources import discover

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus / "seed.txt")

    def batch(parts: Path, old: Path | None) -> dict:
        refs, _ = discover([str(corpus)])
        keys = [cache_key(r.rel, fingerprint(r, 1 << 20), 1 << 20) for r in refs]
        found = cache_lookup(old)
        return run_batch(refs, str(parts), 0, 1 << 20, keys, [found.get(k) for k in keys], str(old) if old else None)

    def tables(parts: Path) -> dict:
        return {name: read_part(parts, name, 0).to_pylist() for name in PART_TABLES}

    assert batch(tmp_path / "gen0", None)["cache_hits"] == 0
    posts = sorted(corpus.glob("*.txt"))
    assert len(posts) == MAX_PARTS + 1
    for gen, post in enumerate(posts[:MAX_PARTS], 1):  # a different post each time: the rows spread over parts
        post.write_bytes(post.read_bytes() + b"\nAn added paragraph (ASCII: valid in every encoding of the sample).\n")
        res = batch(tmp_path / f"gen{gen}", tmp_path / f"gen{gen - 1}")
        assert res["cache_hits"] == 4 and res["read"] == 5
        batch(tmp_path / f"clean{gen}", None)
        assert tables(tmp_path / f"gen{gen}") == tables(tmp_path / f"clean{gen}")
        documents = sorted((tmp_path / f"gen{gen}" / "documents").glob("*.arrow"))
        if gen < MAX_PARTS:  # the earlier parts are linked, the new one holds the one file parsed
            assert len(documents) == gen + 1
            newest = [p for p in documents if p.stat().st_nlink == 1]
            assert len(newest) == 1 and pa_rows(newest[0]) == 1
        else:  # one more part would be too many: one new part with every row
            assert len(documents) == 1 and pa_rows(documents[0]) == 5 and documents[0].stat().st_nlink == 1


def pa_rows(path: Path) -> int:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all().num_rows


def test_unchanged_files_are_not_read_again_but_any_write_is_seen(tmp_path, monkeypatch):
    """A rebuild trusts the recorded fingerprint of a file whose stat (inode, size, mtime, ctime)
    is unchanged; a write that keeps the size and puts the old mtime back still changes the ctime."""
    import kirinuki.build.batch as batch
    from kirinuki.flows.build import build

    monkeypatch.setattr(batch, "RACY_NS", 0)  # the files here were all written just now
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    out = tmp_path / "out"
    first = build([str(corpus)], str(out))
    assert first["inputs"]["hashed"] == 4
    again = build([str(corpus)], str(out))
    assert again["up_to_date"] and again["inputs"]["hashed"] == 4  # the summary is the last build's
    post = corpus / "2024-06-12_nordria_grain.txt"
    st = post.stat()
    text = post.read_text(encoding="utf-8")
    changed = text.replace("使用料は今後3年間", "使用料は今後5年間")
    assert len(changed.encode()) == st.st_size and changed != text
    post.write_text(changed, encoding="utf-8")
    os.utime(post, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert post.stat().st_mtime_ns == st.st_mtime_ns
    rebuilt = build([str(corpus)], str(out))
    assert rebuilt["inputs"]["hashed"] == 1 and rebuilt["inputs"]["from_cache"] == 3
    assert digest_tree(out) == digest_tree(build_clean(corpus, tmp_path / "clean"))
    assert build([str(corpus)], str(out))["up_to_date"]


def test_the_dedup_digest_follows_every_field_dedup_reads_and_no_other():
    """A file's dedup digest changes with each of DEDUP_FIELDS and a document's date, not with
    the commentary, and bodies split differently between two excerpts give different digests."""
    from datetime import date

    from kirinuki.build.batch import DEDUP_FIELDS, dedup_digest

    def rows(bodies=("第一段落\n第二段落", "別の記事"), **change):
        excerpts = [dict(excerpt_id=f"e{i}", doc_id="d1", headline="見出し", body_norm=b, published_date=date(2024, 5, 1),
                         outlet_id="nhk", body="原文") for i, b in enumerate(bodies)]
        excerpts[0].update(change)
        return {"documents": [{"doc_id": "d1", "published_date": date(2024, 5, 2), "text": "全文"}], "excerpts": excerpts}

    base = dedup_digest(rows())
    assert dedup_digest(rows(body="書き換えた原文")) == base  # a column dedup does not read
    changed = {f: dedup_digest(rows(**{f: None if f != "body_norm" else "第一段落"})) for f in DEDUP_FIELDS}
    assert base not in changed.values() and len(set(changed.values())) == len(DEDUP_FIELDS)
    assert dedup_digest(rows(("ab", "c"))) != dedup_digest(rows(("a", "bc")))
    later = rows()
    later["documents"][0]["published_date"] = date(2024, 5, 3)
    assert dedup_digest(later) != base


def test_dedup_output_is_reused_only_while_no_quote_changed(tmp_path):
    from kirinuki.flows.build import build

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    shutil.copy(SEED, corpus / "seed.txt")
    out = tmp_path / "out"
    assert build([str(corpus)], str(out))["dedup"]["reused"] is False
    # the writer's commentary changes: every table but dedup's changes, dedup's output is reused
    post = corpus / "2024-06-12_nordria_grain.txt"
    text = post.read_text(encoding="utf-8")
    post.write_text(text.replace("しばらく見守る必要がありそうです。", "しばらく見守りたいと思います。"), encoding="utf-8")
    commentary = build([str(corpus)], str(out))
    assert commentary["dedup"]["reused"] is True and commentary["inputs"]["from_cache"] == 4
    # so are the GX results of the tables whose files did not change (dedup's, the reference tables, and
    # mentions: the edited post names no place or person of the gazetteer)
    assert commentary["validation"]["reused"] == ["article_paragraphs", "article_quotes", "articles", "dedup_links",
                                                    "entities", "mentions", "outlets", "rejects"]
    clean = build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert clean["dedup"]["reused"] is False and clean["validation"]["reused"] == []
    assert commentary["files"] == clean["files"] and commentary["validation"]["checks"] == clean["validation"]["checks"]
    checks = [json.loads((d / "validation" / "results.json").read_text())["checks"] for d in (out, tmp_path / "clean")]
    assert checks[0] == checks[1]
    # and so are the results as written, byte for byte: GX's too, the kept ones among them
    assert (out / "validation" / "results.json").read_bytes() == (tmp_path / "clean" / "validation" / "results.json").read_bytes()
    assert {k: v for k, v in commentary["dedup"].items() if k != "reused"} == \
        {k: v for k, v in clean["dedup"].items() if k != "reused"}
    assert digest_tree(out) == digest_tree(tmp_path / "clean")
    # one character of a quoted article changes: dedup runs again
    post.write_text(text.replace("使用料は今後3年間", "使用料は今後5年間"), encoding="utf-8")
    quote = build([str(corpus)], str(out))
    assert quote["dedup"]["reused"] is False
    assert digest_tree(out) == digest_tree(build_clean(corpus, tmp_path / "clean2"))
    # a kept dedup table damaged since is not trusted: dedup runs again
    post.write_text(text, encoding="utf-8")
    build([str(corpus)], str(out))
    kept = out / "cache" / "dedup" / "articles.parquet"
    kept.write_bytes(kept.read_bytes()[:-10] + b"0123456789")
    post.write_text(text + "追記です。\n", encoding="utf-8")
    damaged = build([str(corpus)], str(out))
    assert damaged["dedup"]["reused"] is False
    assert digest_tree(out) == digest_tree(build_clean(corpus, tmp_path / "clean3"))


def build_clean(corpus: Path, out: Path) -> Path:
    from kirinuki.flows.build import build

    build([str(corpus)], str(out), cache=False)
    return out


def test_dask_runner_gives_the_same_tables_as_the_local_one(tmp_path, sample_build):
    from distributed import LocalCluster

    from kirinuki.flows.build import build_flow

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        flow = build_flow("dask", cluster.scheduler_address)
        summary = flow([str(SAMPLE)], str(tmp_path / "dask"), batch_files=1, runner="dask")
    assert summary["parameters"]["runner"] == "dask"
    assert digest_tree(tmp_path / "dask") == digest_tree(sample_build)


def test_served_deployment_runs_on_a_prefect_server(tmp_path):
    """`kirinuki serve` registers the build flow with a Prefect server (started here on 127.0.0.1)
    and a run triggered through the server builds the corpus."""
    import socket
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = None
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(bin_dir / "prefect"), "config", "view"], env=env, capture_output=True).returncode != 0 \
                or _health(port) is False:
            assert time.monotonic() < deadline, "the Prefect server did not start"
            time.sleep(1)
        out = tmp_path / "served"
        served = subprocess.Popen([str(bin_dir / "kirinuki"), "serve", str(SAMPLE), "--out", str(out), "--name", "sample"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while True:  # the deployment appears once `serve` has registered it
            r = subprocess.run([str(bin_dir / "prefect"), "deployment", "run", "kirinuki-build/sample"],
                               env=env, capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert served.poll() is None, served.stderr.read()
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(1)
        while not (out / "build.json").exists():
            assert time.monotonic() < deadline + 120, "the triggered run did not finish"
            time.sleep(1)
        assert json.loads((out / "build.json").read_text())["rows"]["documents"] == 10
    finally:
        for p in (served, server):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def _health(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_a_table_s_bytes_do_not_depend_on_how_its_rows_arrive(tmp_path):
    """The writer is given the same rows in one piece, in the cache's part-sized pieces and in
    uneven ones (a rebatch, an edit, an append give such pieces): the files are identical. The
    strings are unique and long, so a row group's dictionary outgrows its page limit: where the
    writer falls back to plain pages used to follow the pieces."""
    import random

    import pyarrow as pa

    from kirinuki.store.files import compact

    rng = random.Random(4)
    schema = tables()["paragraphs"].part_schema
    n = 6_000
    texts = ["".join(rng.choice("あいうえおかきくけこさしすせそ本文記事") for _ in range(rng.randint(80, 400))) for _ in range(n)]
    columns = {f.name: [None] * n for f in schema}
    columns |= {"paragraph_id": [f"d-p{i:05d}" for i in range(n)], "doc_id": ["d"] * n, "source_sha256": ["0" * 64] * n,
                "role": ["body"] * n, "ordinal": list(range(1, n + 1)), "line_no": list(range(1, n + 1)),
                "line_end": list(range(1, n + 1)), "text": texts,
                "text_norm": texts, "char_start": list(range(n)), "char_end": list(range(1, n + 1)), "elision": [False] * n}
    whole = pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
    cuts = {"whole": [n], "parts": [256] * (n // 256) + [n % 256],
            "uneven": [1, 999, 7, 3000, 13, n - 4020]}
    digests = {}
    for name, sizes in cuts.items():
        pieces, at = [], 0
        for size in sizes:
            pieces.append(whole.slice(at, size))
            at += size
        compact(tmp_path / name, "paragraphs", iter(pieces))
        digests[name] = hashlib.sha256((tmp_path / name / "data" / "paragraphs.parquet").read_bytes()).hexdigest()
    assert len(set(digests.values())) == 1, digests


def test_every_cache_path_gives_a_clean_build_s_bytes(tmp_path):
    """Edit a post, append posts, kill a build half-way, rebatch: each rebuild's files are byte for
    byte a clean build's. The corpus is large enough (3.6 MB of text) that the paragraphs' and
    excerpts' dictionaries outgrow a page, which is where the bytes used to drift."""
    import signal
    import time

    from kirinuki.flows.build import build
    from kirinuki.synth import write_corpus

    corpus = tmp_path / "corpus"
    write_corpus(corpus, 150, 9, 7)
    (corpus / "ground_truth.csv").unlink()
    out = tmp_path / "out"
    build([str(corpus)], str(out), batch_files=16)
    posts = sorted(corpus.glob("post_*.txt"))
    posts[40].write_text(posts[40].read_text(encoding="utf-8") + "書き足した解説の段落です。\n", encoding="utf-8")
    for i in (3, 77):
        shutil.copy(posts[i], corpus / f"zz_appended_{i}.txt")
    killed = subprocess.Popen([sys.executable, "-m", "kirinuki.cli", "build", str(corpus), "--out", str(out),
                               "--batch-files", "16", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tmp-*/cache/*/*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the killed run has written parts of its own
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    inc = build([str(corpus)], str(out), batch_files=16)
    assert inc["inputs"]["from_cache"] == 149  # all but the edited post (and the two new ones)
    build([str(corpus)], str(tmp_path / "clean"), cache=False)
    assert digest_tree(out) == digest_tree(tmp_path / "clean")
    posts[90].write_text(posts[90].read_text(encoding="utf-8") + "もう一つの解説です。\n", encoding="utf-8")
    rebatched = build([str(corpus)], str(out), batch_files=7)  # cached parts of 16 files, new batches of 7
    assert rebatched["inputs"]["from_cache"] == 151
    build([str(corpus)], str(tmp_path / "clean2"), cache=False)
    assert digest_tree(out) == digest_tree(tmp_path / "clean2")


def test_a_build_on_a_prefect_server_shows_its_stage_logs_named_tasks_reuse_and_linked_artifacts(tmp_path):
    """Three CLI builds, a release and a verify against a Prefect server started here on 127.0.0.1,
    read back through the Prefect client: the flow run is named after its output, tasks after their
    work, kirinuki's stage lines are the run's logs, the second build (a commentary line added)
    shows dedup reused, the third says it is up to date, the artifacts, keyed by the output folder,
    link the validation report, and release and verify are flow runs of their own with a linked
    release artifact."""
    import socket
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api)
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _health(port) is not True:
            assert time.monotonic() < deadline and server.poll() is None, "the Prefect server did not start"
            time.sleep(1)
        corpus, out = tmp_path / "corpus", tmp_path / "site-build"
        shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
        for round_ in (1, 2):
            if round_ == 2:  # commentary only: the quotes are unchanged, so dedup is reused
                post = corpus / "2024-06-12_nordria_grain.txt"  # UTF-8
                post.write_text(post.read_text(encoding="utf-8") + "解説を一行書き足した。\n", encoding="utf-8")
            r = subprocess.run([str(bin_dir / "kirinuki"), "build", str(corpus), "--out", str(out)], env=env,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
        # nothing changed: the CLI says so before Prefect starts (no run); the flow, run as a deployment
        # runs it, ends Completed with an "up to date" message
        r = subprocess.run([str(bin_dir / "kirinuki"), "build", str(corpus), "--out", str(out)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "is up to date" in " ".join(r.stdout.split()), r.stderr[-2000:]
        r = subprocess.run([sys.executable, "-c", "import sys; from kirinuki.flows.build import build; "
                            "build([sys.argv[1]], sys.argv[2])", str(corpus), str(out)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        releases = tmp_path / "releases"
        for cmd in (["release", "1.0.0", "--from", str(out), "--to", str(releases), "--date", "2026-01-15"],
                    ["verify", str(releases / "kirinuki-1.0.0")]):
            r = subprocess.run([str(bin_dir / "kirinuki"), *cmd], env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
        code = f"""
import json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
with get_client(sync_client=True) as c:
    runs = sorted(c.read_flow_runs(), key=lambda r: r.start_time)
    out = []
    for run in runs:
        tasks = c.read_task_runs(flow_run_filter=None)
        tasks = [t for t in tasks if t.flow_run_id == run.id]
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        out.append({{"name": run.name, "state": run.state.type.value, "message": run.state.message or "",
                     "tasks": sorted((t.name, t.state.type.value, t.state.message or "") for t in tasks),
                     "logs": [l.message for l in logs]}})
    arts = [{{"key": a.key, "data": a.data if isinstance(a.data, str) else json.dumps(a.data)}}
            for a in c.read_artifacts()]
print(json.dumps({{"runs": out, "artifacts": arts}}))
"""
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    first, second, third, release, verify = got["runs"]
    assert first["name"] == second["name"] == "site-build <- corpus"
    assert third["state"] == "COMPLETED" and third["message"].startswith("up to date: nothing changed")
    assert first["state"] == second["state"] == "COMPLETED"
    names = [t[0] for t in first["tasks"]]
    assert "parse batch 1/1" in names and "dedup" in names and "validate" in names
    assert any(line.startswith("parse: ") for line in first["logs"]) and any(line.startswith("validate: ") for line in first["logs"])
    reused = [t for t in second["tasks"] if t[0].startswith("dedup")]
    assert reused == [["dedup (reused: no quote changed since the last build)", "COMPLETED",
                       "reused the last build's dedup output: the excerpts and post dates are unchanged"]]
    assert any("the last build's output" in line for line in second["logs"])
    summary = [a for a in got["artifacts"] if a["key"].startswith("kirinuki-summary-site-build-")]
    assert summary and all(a["key"] == summary[0]["key"] for a in summary)
    assert f"file://{(out / 'validation' / 'report.html').resolve()}" in summary[0]["data"]
    assert any(a["key"].startswith("kirinuki-rows-site-build-") for a in got["artifacts"])
    assert release["name"] == "kirinuki-1.0.0 <- site-build" and release["state"] == "COMPLETED"
    assert [t[:2] for t in release["tasks"]] == [["make release", "COMPLETED"]]
    assert any(line.startswith("released kirinuki-1.0.0 (metadata text) -> ") for line in release["logs"])
    card = [a for a in got["artifacts"] if a["key"].startswith("kirinuki-release-kirinuki-releases-")]
    assert card and f"file://{(releases / 'kirinuki-1.0.0').resolve()}/README.md" in card[0]["data"]
    assert verify["name"] == "verify kirinuki-1.0.0" and verify["state"] == "COMPLETED"
    assert any(line.endswith(": intact") for line in verify["logs"])


def test_a_build_syncs_its_files_but_the_sha256_checked_dedup_state(tmp_path, monkeypatch):
    """Before a build replaces the last one its files are synced to disk, except the dedup state's
    (every file of which is checked against its sha256 before a later build uses it)."""
    import kirinuki.store.files as files
    from kirinuki.flows.build import build

    corpus = tmp_path / "in"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    build([str(corpus)], str(tmp_path / "out"))
    tmp = str(tmp_path / f".out.tmp-{os.getpid()}")  # synced there, before it replaces the last build
    names = {p.removeprefix(tmp) for p in synced if p.startswith(tmp)}
    assert "/build.json" in names and "/data/articles.parquet" in names and "/cache/fingerprints.json" in names
    assert any(n.startswith("/cache/index/") for n in names)
    assert not [n for n in names if n.startswith("/cache/dedup/")]
    assert (tmp_path / "out" / "cache" / "dedup" / "dedup.json").is_file()
