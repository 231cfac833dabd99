"""Reliability: hostile inputs, fuzzed posts, killed and concurrent runs, sandboxed queries, paths.

Each test here is named in README.md's "Guarantees" section (test_docs checks the names exist).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LOOSE_POSTS_ONLY, ROOT, SAMPLE, SEED

from kirinuki.ingest.sources import Reject, Source, SourceRef, read_source
from kirinuki.parse.records import source_rows
from kirinuki.clean.normalize import clean_document

KIRINUKI = str(Path(sys.executable).parent / "kirinuki")
MESSY_POST = """【見出し】
解説の段落です。
****開いたままの記事****
本文の一段落目。
****入れ子の見出し****
入れ子の本文。【2月30日 共同】
*****
****閉じない記事****
最後まで閉じない本文。【13月40日 時事】
"""


def tree_digest(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.parts[-2:-1] != ("logs",)}


def data_digest(d: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((d / "data").glob("*.parquet")) if p.stem not in skip}


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([KIRINUKI, *args], capture_output=True, text=True, cwd=ROOT, **kw)


def _good_files(root: Path) -> None:
    shutil.copytree(SAMPLE, root, ignore=LOOSE_POSTS_ONLY, dirs_exist_ok=True)
    deep = root.joinpath(*[f"d{i:02d}" for i in range(60)])
    deep.mkdir(parents=True)
    (deep / "deep_post.txt").write_bytes(SEED.read_bytes())
    (root / os.fsdecode(b"\xff\xfe_latin1_name.txt")).write_bytes(SEED.read_bytes())
    (root / "messy.txt").write_text(MESSY_POST, encoding="utf-8")


BAD = {  # file -> expected reject code
    "empty.txt": "empty", "blank.txt": "empty", "photo.txt": "binary", "archive.txt": "binary",
    "program.txt": "binary", "nul_bytes.txt": "binary", "bad_utf8.txt": "undecodable",
    "mixed_encodings.txt": "undecodable", "cp932_strays.txt": "undecodable", "huge_line.txt": "too_large",
    "loop": "not_a_file", "fifo.txt": "not_a_file", "leak.txt": "outside_root", "dangling.txt": "unreadable",
}


def _bad_files(root: Path, outside: Path) -> None:
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_bytes(b" \r\n\t\n")
    (root / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (root / "archive.txt").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (root / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    (root / "nul_bytes.txt").write_bytes("本文です。".encode() + b"\x00" * 40 + "続き".encode())
    (root / "bad_utf8.txt").write_bytes("本文です。".encode() * 20 + b"\xe3\x81" + b"\xc0\xaf" * 10)
    (root / "mixed_encodings.txt").write_bytes(("前半は UTF-8 の本文です。" * 20).encode()
                                               + ("後半は CP932 の本文です。" * 20).encode("cp932"))
    (root / "cp932_strays.txt").write_bytes(("本文です。" * 20).encode("cp932") + b"\xfd\xfe\xff")
    with open(root / "huge_line.txt", "wb") as f:  # a 1 GiB single line: refused by size, never read
        block = b"a" * (64 << 20)
        for _ in range(16):
            f.write(block)
    (root / "loop").symlink_to(root, target_is_directory=True)
    os.mkfifo(root / "fifo.txt")
    secret = outside / "secret.txt"
    secret.write_text("外のファイル。" * 10, encoding="utf-8")
    (root / "leak.txt").symlink_to(secret)
    (root / "dangling.txt").symlink_to(root / "no-such-file")


def test_mixed_folder_lists_every_bad_file_and_keeps_good_records_identical(tmp_path):
    mixed, good, outside = tmp_path / "mixed", tmp_path / "good", tmp_path / "outside"
    for d in (mixed, good, outside):
        d.mkdir()
    _good_files(mixed)
    _good_files(good)
    _bad_files(mixed, outside)
    r = run_cli("build", str(mixed), "--out", str(tmp_path / "out-mixed"))
    assert r.returncode == 0, r.stderr
    for name, code in BAD.items():  # the terminal summary names every bad file with its reason
        assert f"rejected {name}: {code} — " in r.stdout, (name, r.stdout)
    summary = json.loads((tmp_path / "out-mixed" / "build.json").read_text())
    assert {f["source_path"]: f["code"] for f in summary["rejected_files"]} == BAD
    assert sum(summary["rejects"].values()) == len(BAD)
    assert summary["flags"].get("unterminated", 0) >= 1 and summary["flags"].get("reopened", 0) >= 1
    rej = pq.read_table(tmp_path / "out-mixed" / "data" / "rejects.parquet").to_pylist()
    assert all(x["reason"] and "\n" not in x["reason"] for x in rej)
    assert next(x for x in rej if x["source_path"] == "huge_line.txt")["source_bytes"] == 1 << 30
    (mixed / "huge_line.txt").unlink()
    from kirinuki.flows.build import build

    build([str(good)], str(tmp_path / "out-good"))
    # the good files' records are byte-identical to a run without the bad ones
    assert data_digest(tmp_path / "out-mixed", ("rejects",)) == data_digest(tmp_path / "out-good", ("rejects",))
    docs = pq.read_table(tmp_path / "out-good" / "data" / "documents.parquet").column("source_path").to_pylist()
    assert "\\xff\\xfe_latin1_name.txt" in docs and any(p.endswith("d59/deep_post.txt") for p in docs)
    ex = pq.read_table(tmp_path / "out-good" / "data" / "excerpts.parquet").to_pylist()
    messy = [e for e in ex if e["doc_id"] == next(
        d["doc_id"] for d in pq.read_table(tmp_path / "out-good" / "data" / "documents.parquet").to_pylist()
        if d["source_path"] == "messy.txt")]
    assert [sorted(e["flags"]) for e in messy][0] == ["no_attribution", "reopened"]
    assert any("impossible_date" in e["flags"] for e in messy) and "unterminated" in messy[-1]["flags"]
    assert all(e["published_date"] is None for e in messy)


def test_unreadable_files_are_rejected_and_the_run_continues(tmp_path, monkeypatch):
    p = tmp_path / "locked.txt"
    p.write_bytes(SEED.read_bytes())
    real_open = os.open

    def deny(path, *a, **k):  # what opening a file without read permission does
        if str(path) == str(p):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    r = read_source(SourceRef(str(p), "locked.txt"))
    assert isinstance(r, Reject) and r.code == "unreadable" and "Permission denied" in r.reason
    monkeypatch.undo()
    if os.geteuid() != 0:  # root reads anything; elsewhere check the real permission bits too
        p.chmod(0)
        r = read_source(SourceRef(str(p), "locked.txt"))
        assert isinstance(r, Reject) and r.code == "unreadable"


# ---------------------------------------------------------------- fuzzing

_JA = "あいうえおかきくけこさしすせそたちつてとなにぬねのアイウエオカキクケコ日本語記事本文解説政府経済市場"
_WORD = st.text(alphabet=_JA + "abcXYZ0123456789、。・ー", min_size=1, max_size=25)
_LINE = st.one_of(
    _WORD,
    _WORD.map(lambda w: f"【{w[:8]}】"),
    st.tuples(st.integers(3, 5), _WORD, st.integers(3, 5)).map(lambda t: "*" * t[0] + t[1][:12] + "*" * t[2]),
    st.integers(3, 30).map(lambda n: "*" * n),
    _WORD.map(lambda w: f"<{w}>"),
    st.sampled_from(["(中略)", "(後略)", "", " ", "　"]),
    st.tuples(_WORD, st.integers(1, 14), st.integers(0, 33), _WORD).map(
        lambda t: f"{t[0]}【{t[1]}月{t[2]}日 {t[3][:6]}】"),
    st.tuples(_WORD, st.integers(2000, 2030), st.integers(1, 12), st.integers(1, 31)).map(
        lambda t: f"{t[0]}({t[1]}年{t[2]}月{t[3]}日 {t[0][:4]}氏 日経“題”)"),
    st.tuples(st.integers(1, 12), st.integers(1, 28), _WORD).map(lambda t: f"(【{t[0]}月{t[1]}日 共同】 {t[2]})"),
)
POSTS = st.lists(_LINE, min_size=1, max_size=30).map("\n".join)


def _records(src: Source) -> dict[str, list[dict]]:
    rows = source_rows(src)
    clean_document(rows)
    return rows


def _comparable(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    drop = {"source_sha256", "source_bytes", "encoding", "newline"}
    return {t: [{k: v for k, v in r.items() if k not in drop} for r in rs] for t, rs in rows.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POSTS, st.data())
def test_fuzzed_posts_parse_with_valid_offsets_unique_stable_ids_and_encoding_independent_records(text, data):
    variants = {
        "utf-8": text.encode("utf-8"),
        "crlf": text.replace("\n", "\r\n").encode("utf-8"),
        "bom": codecs.BOM_UTF8 + text.encode("utf-8"),
        "cp932-crlf": text.replace("\n", "\r\n").encode("cp932"),
        "euc-jp": text.encode("euc_jp"),
    }
    # mutate: drop or duplicate a random slice of characters (malformed frames, cut attributions)
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 20)))
    mutated = data.draw(st.sampled_from([text[:i] + text[j:], text[:j] + text[i:j] + text[j:]]))
    with tempfile.TemporaryDirectory() as d:
        results = {}
        for name, raw in [*variants.items(), ("mutated", mutated.encode("utf-8"))]:
            path = Path(d) / f"{name}.txt"
            path.write_bytes(raw)
            src = read_source(SourceRef(str(path), "post.txt"))  # same relative path: same ids
            if isinstance(src, Reject):
                assert src.code == "empty" and not (mutated if name == "mutated" else text).strip(), src
                results[name] = None
                continue
            rows = _records(src)
            assert rows == _records(src)  # stable
            for table, rs in rows.items():
                key = {"documents": "doc_id", "excerpts": "excerpt_id", "paragraphs": "paragraph_id",
                       "citations": "citation_id", "date_mentions": "mention_id", "mentions": "mention_id"}[table]
                ids = [r[key] for r in rs]
                assert len(ids) == len(set(ids)), table
            t = src.text
            for p in rows["paragraphs"]:
                assert t[p["char_start"]:p["char_end"]] == p["text"]
            spans = {e["excerpt_id"]: (e["char_start"], e["char_end"]) for e in rows["excerpts"]}
            for p in rows["paragraphs"]:
                if p["excerpt_id"]:
                    s, e = spans[p["excerpt_id"]]
                    assert s <= p["char_start"] <= p["char_end"] <= e
            for m in rows["date_mentions"]:
                assert t[m["char_start"]:m["char_end"]] == m["raw"]
            for m in rows["mentions"]:
                assert t[m["char_start"]:m["char_end"]] == m["surface"]
            results[name] = _comparable(rows)
        base = results["utf-8"]
        for name in variants:
            assert results[name] == base, name


# ---------------------------------------------------------------- crashes and concurrent runs


def test_killed_builds_leave_the_previous_build_intact_and_the_next_run_cleans_up(tmp_path):
    from kirinuki.flows.build import build

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=LOOSE_POSTS_ONLY)
    for i in range(30):
        shutil.copy(SEED, corpus / f"seed_{i:02d}.txt")
    out = tmp_path / "out"
    build([str(SAMPLE)], str(out))
    before = data_digest(out)
    states = []
    rng = random.Random(11)
    for wait in (rng.uniform(0.5, 4.0), rng.uniform(4.0, 12.0)):  # early (Prefect start-up) and mid-build
        p = subprocess.Popen([KIRINUKI, "build", str(corpus), "--out", str(out), "--quiet"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(wait)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # out is a whole build (the old one, or the new one if the run had finished), or, killed in
        # the middle of the swap, the old one is waiting in .out.old for the next run to restore
        states.append(data_digest(out) if out.exists() else data_digest(tmp_path / ".out.old"))
        assert verify_build_is_readable(out if out.exists() else tmp_path / ".out.old")
    summary = build([str(corpus)], str(out))  # the next run recovers and succeeds
    assert summary["inputs"]["read"] == 34
    assert not list(tmp_path.glob(".out.tmp-*")) and not (tmp_path / ".out.old").exists()
    after = data_digest(out)
    assert all(s in (before, after) for s in states)


def verify_build_is_readable(d: Path) -> bool:
    for p in (d / "data").glob("*.parquet"):
        pq.read_table(p)
    return json.loads((d / "build.json").read_text())["validation"]["success"]


def test_two_builds_into_one_folder_never_mix(tmp_path, sample_build, seed_build):
    out = tmp_path / "out"
    procs = [subprocess.Popen([KIRINUKI, "build", str(src), "--out", str(out), "--quiet"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in (SAMPLE, SEED.parent)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    for code, err in results:  # each one either finished or was refused in one clear line
        assert code == 0 or (code == 3 and "another kirinuki run is writing" in err and err.count("\n") == 1), err
    assert any(code == 0 for code, _ in results)
    # what is there is one whole build, byte-identical to a clean build of one of the two inputs
    assert data_digest(out) in (data_digest(sample_build), data_digest(seed_build))
    assert not list(tmp_path.glob(".out.tmp-*")) and not (tmp_path / ".out.old").exists()


def test_a_build_fails_at_once_in_one_line_while_another_run_holds_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from kirinuki.store.files import locked\n"
        f"with locked(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(120)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_cli("build", str(SAMPLE), "--out", str(out))
        assert r.returncode == 3 and r.stderr.count("\n") == 1 and "another kirinuki run is writing" in r.stderr
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- queries, paths, limits


@pytest.mark.parametrize("sql,why", [
    ("COPY excerpts TO '/tmp/kirinuki-leak.csv'", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
    ("SELECT * FROM read_text('/etc/hostname')", "Permission Error"),
    ("SELECT * FROM glob('/etc/*')", "Permission Error"),
    ("ATTACH '/tmp/kirinuki.db' AS x", "read-only"),
    ("INSTALL httpfs", "read-only"),
    ("LOAD httpfs", "read-only"),
    ("SELECT * FROM read_parquet('https://example.invalid/x.parquet')", "Permission Error"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "Permission Error"),
    ("SET enable_external_access=true", "read-only"),
    ("SELECT 1; COPY (SELECT 1) TO 'x.csv'", "read-only"),
])
def test_query_sandbox_refuses_writes_outside_reads_extensions_and_network(sample_build, sql, why):
    from kirinuki.store.query import QueryError, open_build, run_query

    con = open_build(sample_build)
    with pytest.raises(QueryError, match=why) as e:
        rel = run_query(con, sql)
        rel.fetchall()
    assert "\n" not in str(e.value)
    assert not Path("/tmp/kirinuki-leak.csv").exists() and not Path("/tmp/kirinuki.db").exists()
    assert run_query(con, "SELECT count(*) FROM documents").fetchall() == [(10,)]


def test_cli_query_refusal_is_one_clear_line(sample_build):
    r = run_cli("query", "SELECT * FROM read_csv('/etc/passwd')", "--out", str(sample_build))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "/etc/passwd" in r.stderr


def test_output_folder_that_holds_inputs_or_is_not_a_build_is_refused(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.md").write_text("mine")
    (tmp_path / "file").write_text("x")
    for out, msg in ((corpus, "would replace the input"), (tmp_path, "would replace the input"),
                     (notes, "not a kirinuki build"), (tmp_path / "file", "not a folder")):
        r = run_cli("build", str(corpus), "--out", str(out))
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, (out, r.stderr)
    assert (notes / "keep.md").read_text() == "mine" and len(list(corpus.glob("*.txt"))) == 4


def test_release_paths_cannot_escape_and_verify_flags_links_and_path_tricks(sample_build, tmp_path):
    from kirinuki.release import ReleaseError, make_release, verify

    with pytest.raises(ReleaseError):
        make_release(sample_build, "1.0.0/../../x", tmp_path / "r")
    with pytest.raises(ReleaseError):
        make_release(sample_build, "1.0.0", tmp_path / "r", dataset="../../etc")
    rel = make_release(sample_build, "1.0.0", tmp_path / "r", date="2026-01-01").path
    assert rel.parent == tmp_path / "r"
    (rel / "data" / "passwd.parquet").symlink_to("/etc/passwd")
    sums = rel / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{'0' * 64}  ../outside.txt\n")
    problems = verify(rel)
    assert any(p.startswith("data/passwd.parquet: is a symlink") for p in problems)
    assert any("is not '<sha256>  <relative path>'" in p for p in problems)


def test_duckdb_runs_with_a_memory_limit_and_spills_inside_the_build(tmp_path):
    from kirinuki.flows.build import build
    from kirinuki.store.files import DUCKDB_TMP, duckdb_for_build

    con = duckdb_for_build(tmp_path, 256)
    limit = con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit[0] in ("256.0 MiB", "244.1 MiB", "256.0 MB") and limit[1] == str(tmp_path / DUCKDB_TMP)
    summary = build([str(SAMPLE)], str(tmp_path / "out"), duckdb_memory_mb=128)
    assert summary["parameters"]["duckdb_memory_mb"] == 128
    assert not (tmp_path / "out" / DUCKDB_TMP).exists()


def test_an_unexpected_error_is_one_line_and_keeps_the_previous_build(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import kirinuki.flows.build as pipeline
    from kirinuki.cli import app

    out = tmp_path / "out"
    pipeline.build([str(SAMPLE)], str(out))
    before = tree_digest(out)

    def boom(*a, **k):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(pipeline, "compact", boom)
    r = CliRunner().invoke(app, ["build", str(SEED.parent), "--out", str(out)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "RuntimeError: disk on fire" in lines[0] and "previous build is unchanged" in lines[0]
    assert tree_digest(out) == before
    log = (tmp_path / "out.failed.log").read_text()
    assert "disk on fire" in log and "Traceback" in log


def test_a_hundred_thousand_tiny_files_are_each_read_or_rejected(tmp_path):
    """Discovery, hashing and the batch worker over 100,000 tiny files (10% empty) in 100 folders:
    every file ends as a document or a reject, nothing raises. (A whole CLI build of the same
    folder takes ~2.5 min here, too long for the suite; see README "Guarantees".)"""
    from kirinuki.build.batch import cache_key, fingerprint, run_batch
    from kirinuki.build.parts import read_parts
    from kirinuki.ingest.sources import discover

    root = tmp_path / "tiny"
    for i in range(100_000):
        if i % 1000 == 0:
            (root / f"{i // 1000:03d}").mkdir(parents=True)
        (root / f"{i // 1000:03d}" / f"p{i:06d}.txt").write_text(
            f"【見出し{i}】\n短い解説 {i}。\n" if i % 10 else "", encoding="utf-8")
    refs, rejected = discover([str(root)])
    assert len(refs) == 100_000 and not rejected
    keys = [cache_key(r.rel, fingerprint(r, 1 << 20), 1 << 20) for r in refs]
    assert len(set(keys)) == 100_000
    read = rejects = 0
    for b in range(0, len(refs), 10_000):
        res = run_batch(refs[b:b + 10_000], str(tmp_path / "out"), b // 10_000, 1 << 20)
        read += res["read"]
        rejects += len(res["rejects"])
        assert {r["code"] for r in res["rejects"]} <= {"empty"}
    assert (read, rejects) == (90_000, 10_000)
    docs = read_parts(tmp_path / "out", "documents", ["source_path"])
    assert docs.num_rows == 90_000 and len(set(docs.column(0).to_pylist())) == 90_000
