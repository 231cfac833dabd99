"""Integrity and security, written as the attacks: queries that try to write or read outside the
build, a build whose tables were tampered with, runaway and failing queries, terminal markup."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE, rows

CLI = [sys.executable, "-m", "kirinuki.cli"]


def query(sql: str, build, *extra: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "query", sql, "--out", str(build), *extra], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: "), r.stderr
    return r.stderr


def test_explain_analyze_cannot_write_into_the_build(sample_build):
    target = sample_build / "data" / "documents.parquet"
    before = target.read_bytes()
    for sql in (f"EXPLAIN ANALYZE COPY (SELECT 'pwned' AS doc_id) TO '{target}' (FORMAT parquet, USE_TMP_FILE false)",
                f"EXPLAIN ANALYZE COPY (SELECT 'pwned' AS doc_id) TO '{sample_build}/x.csv'",
                f"COPY (SELECT 'pwned' AS doc_id) TO '{target}' (FORMAT parquet)"):
        assert "refused" in one_error_line(query(sql, sample_build))
    assert target.read_bytes() == before
    assert not (sample_build / "x.csv").exists()
    assert "analyzed_plan" in query("EXPLAIN ANALYZE SELECT count(*) FROM documents", sample_build,
                                    "--format", "csv").stdout


def test_a_tmp_link_in_the_working_folder_opens_nothing_outside_the_build(sample_build, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / ".tmp").symlink_to("/")
    for sql in (f"SELECT * FROM read_csv('{cwd}/.tmp/etc/passwd')",
                f"COPY (SELECT 1 AS a) TO '{cwd}/.tmp/tmp/kirinuki-pwned.csv'",
                f"SELECT * FROM read_parquet('{sample_build}/data/documents.parquet')",
                "SELECT * FROM glob('/*')"):
        said = one_error_line(query(sql, sample_build, cwd=cwd))
        assert "disabled by configuration" in said or "refused" in said, sql
    assert not os.path.exists("/tmp/kirinuki-pwned.csv")
    assert [p.name for p in cwd.iterdir()] == [".tmp"]  # nothing but the link is here


def test_the_query_connection_itself_can_open_no_file(sample_build, tmp_path):
    """Below the statement allow-list: DuckDB was given no path, so even a statement that got past
    it could not read or write a file, nor unlock its configuration."""
    import duckdb

    from kirinuki.store.query import open_build

    con = open_build(sample_build)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] > 0
    for sql in (f"COPY (SELECT 1 AS a) TO '{tmp_path}/x.parquet' (FORMAT parquet)",
                f"COPY documents TO '{sample_build}/data/documents.parquet' (FORMAT parquet)",
                f"SELECT * FROM read_parquet('{sample_build}/data/documents.parquet')",
                f"ATTACH '{tmp_path}/x.db'", "SET enable_external_access = true", "INSTALL httpfs"):
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    con.close()
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_table_is_built_again_not_trusted_as_up_to_date(tmp_path):
    from kirinuki.flows.build import build

    out = tmp_path / "out"
    build([str(SAMPLE)], str(out))
    target = out / "data" / "documents.parquet"
    good = target.read_bytes()
    pq.write_table(pa.table({"doc_id": ["pwned"]}), target)
    again = build([str(SAMPLE)], str(out))
    assert not again.get("up_to_date")
    assert target.read_bytes() == good
    (out / "data" / "extra.parquet").write_bytes(good)  # a table the build never made
    assert not build([str(SAMPLE)], str(out)).get("up_to_date")
    assert not (out / "data" / "extra.parquet").exists()
    assert build([str(SAMPLE)], str(out)).get("up_to_date")  # and an intact build still is


def test_a_runaway_query_stops_at_its_time_limit(sample_build):
    t = time.monotonic()
    r = query("SELECT count(*) FROM range(100000000) a, range(100000000) b", sample_build, "--timeout", "2")
    assert "stopped after 2 s" in one_error_line(r)
    assert time.monotonic() - t < 60


# the command's peak RSS, from a small wrapper that runs it as its child: not pytest's child (a
# child's ru_maxrss starts at the high-water mark of the process it was forked from), and not the
# command's own VmHWM printed as it ends (the command ends with os._exit, kirinuki.cli.main)
PEAK_RSS = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "kirinuki.cli", *sys.argv[1:]])
_, status, usage = os.wait4(child.pid, 0)  # the command's own peak, however it ends
sys.stderr.write(f"peak_kb={usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_results_stream_instead_of_being_fetched_whole(sample_build):
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, "query", "SELECT range AS n, 'x' || range AS s FROM range(8000000)",
                        "--out", str(sample_build), "--format", "csv"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    assert r.returncode == 0 and r.stdout.count(b"\n") == 8_000_001, r.stderr[-500:]
    peak_mb = int(r.stderr.decode().rsplit("peak_kb=", 1)[1]) / 1024
    # the 8M rows as Python tuples alone would be well over a gigabyte
    assert peak_mb < 700, peak_mb
    shown = query("SELECT * FROM range(8000000)", sample_build, "--limit", "3")
    assert shown.returncode == 0 and "more rows not shown" in shown.stdout


def test_query_errors_are_duckdbs_whole_message_without_a_traceback(sample_build):
    assert "Could not convert string 'abc'" in one_error_line(query("SELECT CAST('abc' AS INTEGER)", sample_build))
    assert "boom" in one_error_line(query("SELECT error('boom')", sample_build))
    assert 'Did you mean "excerpts"' in one_error_line(query("SELECT * FROM excerpt", sample_build))


def test_values_and_names_with_markup_or_control_characters_print_as_text(sample_build):
    r = query("SELECT '[bold red]x[/]' AS \"[/]\", chr(27) || '[31mred' AS c", sample_build)
    assert r.returncode == 0, r.stderr
    assert "[bold red]x[/]" in r.stdout and "[/]" in r.stdout and "\\x1b[31mred" in r.stdout
    assert "\x1b" not in r.stdout
    missing = subprocess.run([*CLI, "query", "SELECT 1", "--out", "nob[/]uild"], capture_output=True, text=True)
    assert "nob[/]uild" in one_error_line(missing)


def test_the_query_helpers_leave_no_private_folder_behind(sample_build, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([*CLI, "query", "SELECT count(*) FROM excerpts", "--out", str(sample_build)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("kirinuki-query-")]
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_releases_and_queries_during_alternating_builds_are_each_one_build_or_refused(tmp_path):
    """A build swaps a new folder in while releases and queries read the old one: each reader
    sees every table of one build (never documents of one and paragraphs of the other) or refuses."""
    import threading

    from kirinuki.release import ReleaseError, make_release
    from kirinuki.store.query import QueryError, open_build

    from conftest import SEED

    out, dest = tmp_path / "out", tmp_path / "releases"
    corpora = [SAMPLE, SEED.parent]
    docs = []
    for i, corpus in enumerate(corpora):
        r = subprocess.run([*CLI, "build", str(corpus), "--out", str(tmp_path / f"ref{i}"), "--quiet"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        docs.append(frozenset(pq.read_table(tmp_path / f"ref{i}" / "data" / "documents.parquet")["doc_id"].to_pylist()))
    assert not docs[0] & docs[1]
    shutil.copytree(tmp_path / "ref0", out)
    stop = threading.Event()
    built: list[int] = []

    def alternate() -> None:
        for k in range(4):
            subprocess.run([*CLI, "build", str(corpora[(k + 1) % 2]), "--out", str(out), "--quiet", "--no-cache"],
                           capture_output=True, text=True)
            built.append(k)
        stop.set()

    worker = threading.Thread(target=alternate)
    worker.start()
    seen = {"query": 0, "release": 0, "refused": 0}
    version = 0
    try:
        while not stop.is_set():
            try:
                con = open_build(out)
                ids = [frozenset(r[0] for r in con.execute(f"SELECT DISTINCT doc_id FROM {t}").fetchall())
                       for t in ("documents", "paragraphs", "excerpts", "date_mentions")]
                con.close()
                assert ids[0] in docs and all(i <= ids[0] for i in ids[1:]) and ids[1] == ids[0], ids
                seen["query"] += 1
            except QueryError as e:
                assert "is writing" in str(e) or "not a kirinuki build" in str(e), e
                seen["refused"] += 1
            version += 1
            try:
                rel = make_release(out, f"1.0.{version}", dest, date="2026-12-01")
                ids = [frozenset(pq.read_table(rel.path / "data" / f"{t}.parquet")["doc_id"].to_pylist())
                       for t in ("documents", "paragraphs", "excerpts")]
                assert ids[0] in docs and ids[1] == ids[0] and ids[2] <= ids[0], ids
                seen["release"] += 1
            except ReleaseError as e:
                assert "is writing" in str(e) or "not a finished kirinuki build" in str(e), e
                seen["refused"] += 1
    finally:
        worker.join()
    print(seen)
    assert len(built) == 4 and seen["query"] and seen["release"], seen


def _post(path, body="本文です。"):
    path.write_text(f"****見出し****\n{body}【2024年1月2日 共同通信】\n*****\n", encoding="utf-8")


def test_a_file_changed_between_hashing_and_reading_is_cached_under_the_bytes_read(tmp_path):
    from kirinuki.build.batch import cache_key, fingerprint, fingerprints, run_batch
    from kirinuki.ingest.sources import discover

    (tmp_path / "in").mkdir()
    post = tmp_path / "in" / "a.txt"
    _post(post, "古い本文。")
    refs, _ = discover([str(tmp_path / "in")])
    fps, _, _ = fingerprints(refs, 1 << 20, {})
    stale = [cache_key(r.rel, fp, 1 << 20) for r, fp in zip(refs, fps)]
    _post(post, "新しい本文。")  # written after hashing, before the batch reads it
    run_batch(refs, str(tmp_path / "parts"), 0, 1 << 20, stale)
    index = json.loads((tmp_path / "parts" / "index" / "part-000000.json").read_text())
    (entry,) = index["files"]
    assert entry["key"] != stale[0]
    assert entry["key"] == cache_key(refs[0].rel, fingerprint(refs[0], 1 << 20), 1 << 20)


def test_an_input_swapped_for_a_link_out_of_the_folder_after_listing_is_not_read(tmp_path):
    from kirinuki.ingest.sources import Reject, discover, read_source

    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n", encoding="utf-8")
    (tmp_path / "in").mkdir()
    post = tmp_path / "in" / "a.txt"
    _post(post)
    (ref,), _ = discover([str(tmp_path / "in")])
    post.unlink()
    post.symlink_to(secret)
    r = read_source(ref)
    assert isinstance(r, Reject) and r.code == "outside_root", r


def test_sidecars_are_read_only_as_small_plain_files_in_place(tmp_path):
    import threading

    from kirinuki.build.batch import fingerprint
    from kirinuki.ingest.sources import SourceRef, discover, read_source

    (tmp_path / "in").mkdir()
    outside = tmp_path / "outside.meta.json"
    outside.write_text(json.dumps({"title": "秘密の題"}), encoding="utf-8")
    cases = {"link": lambda side: side.symlink_to(outside),
             "fifo": lambda side: os.mkfifo(side),
             "huge": lambda side: side.write_text(json.dumps({"title": "長" * (2 << 20)}), encoding="utf-8"),
             "deep": lambda side: side.write_text("[" * 100_000, encoding="utf-8")}
    for name, make in cases.items():
        post = tmp_path / "in" / f"{name}.txt"
        _post(post)
        make(tmp_path / "in" / f"{name}.meta.json")
    refs, _ = discover([str(tmp_path / "in")])
    done: dict[str, object] = {}

    def read_all() -> None:
        for ref in refs:
            done[ref.rel] = (read_source(ref), fingerprint(ref, 1 << 20))

    t = threading.Thread(target=read_all, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "reading a post with a FIFO sidecar hung"
    for ref in refs:
        src, fp = done[ref.rel]
        assert isinstance(src, type(read_source(SourceRef(str(refs[0].path), "x.txt")))) and fp, ref.rel
        assert src.meta.title is None and src.meta.error, (ref.rel, src.meta)


def test_builds_delete_nothing_they_did_not_make(tmp_path):
    from kirinuki.flows.build import build
    from kirinuki.release import ReleaseError, make_release
    from kirinuki.store.files import UnsafeOutput

    out = tmp_path / "out"
    build([str(SAMPLE)], str(out))
    # a release inside the build folder would go with the next build: refused
    with pytest.raises(ReleaseError, match="inside the build folder"):
        make_release(out, "1.0.0", out / "releases", date="2026-12-01")
    # a user's file put into a build folder is not deleted by the next build
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match="notes.txt"):
        build([str(SAMPLE)], str(out), cache=False)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    # a folder whose build.json is not a build summary is not a build
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "build.json").write_text("{}")
    (fake / "thesis.tex").write_text("mine")
    with pytest.raises(UnsafeOutput):
        build([str(SAMPLE)], str(fake))
    assert (fake / "thesis.tex").exists()
    # siblings that merely look like a build's temporary folders are left alone
    lookalike = tmp_path / ".out.tmp-mine"
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    build([str(SAMPLE)], str(out), cache=False)
    assert (lookalike / "keep.txt").exists()
    old = tmp_path / ".out.old"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match=r"\.out\.old"):
        build([str(SAMPLE)], str(out), cache=False)
    assert (old / "keep.txt").exists() and (out / "build.json").exists()


def test_truncated_state_files_give_one_line_and_are_not_trusted(tmp_path):
    from kirinuki.flows.build import build

    out, dest = tmp_path / "out", tmp_path / "releases"
    build([str(SAMPLE)], str(out))
    assert subprocess.run([*CLI, "release", "1.0.0", "--from", str(out), "--to", str(dest), "--date", "2026-12-01"],
                          capture_output=True, text=True).returncode == 0
    versions = dest / "versions.json"
    versions.write_text(versions.read_text()[:20])
    r = subprocess.run([*CLI, "release", "1.0.1", "--from", str(out), "--to", str(dest)], capture_output=True, text=True)
    assert "versions.json" in one_error_line_code(r) and "unreadable" in r.stderr
    for name in ("build.json", "validation/results.json"):
        path = out / name
        good = path.read_text()
        path.write_text(good[: len(good) // 2])
        r = subprocess.run([*CLI, "release", "2.0.0", "--from", str(out), "--to", str(tmp_path / "r2")],
                           capture_output=True, text=True)
        assert name.split("/")[-1] in one_error_line_code(r), r.stderr
        assert not build([str(SAMPLE)], str(out)).get("up_to_date")  # the next build does not trust it
        assert path.read_text() != good[: len(good) // 2]


def one_error_line_code(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.startswith("error: "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_out_naming_the_current_folder_is_refused_in_one_line(sample_build, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(sample_build, out)
    r = subprocess.run([*CLI, "build", str(SAMPLE), "--out", "."], cwd=out, capture_output=True, text=True)
    assert r.returncode == 2 and "the folder you are in" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not list(tmp_path.glob(".b.tmp-*")) and (out / "build.json").is_file()


DISK_FULL_SCRIPT = """
set -e
mount -t tmpfs -o size=3m tmpfs "$DISK"
cp -r "$PREVIOUS" "$DISK/out"
set +e
"$@" > "$RESULT/stdout" 2> "$RESULT/stderr"
echo $? > "$RESULT/rc"
ls -A "$DISK" > "$RESULT/listing"
sha256sum "$DISK/out/data/"*.parquet | sed "s#$DISK/##" > "$RESULT/sums"
"""


def test_a_full_disk_is_one_line_keeps_the_log_and_the_previous_build(sample_build, tmp_path):
    """The build folder's file system fills up halfway through a 6 MB build (a 3 MB tmpfs in a
    private mount namespace): one line naming the problem and the log, no traceback, the
    previous build untouched, no temporary folder left."""
    # root needs only a mount namespace; anyone else maps themselves to root in a user namespace
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    if not shutil.which("unshare") or subprocess.run([*namespace, "true"]).returncode != 0:
        pytest.skip(f"cannot make a private mount namespace ({' '.join(namespace)}) for a small file system")
    from kirinuki.synth import write_corpus

    write_corpus(tmp_path / "posts", 150, 3, 7)
    disk, result = tmp_path / "disk", tmp_path / "result"
    disk.mkdir()
    result.mkdir()
    env = dict(os.environ, DISK=str(disk), PREVIOUS=str(sample_build), RESULT=str(result))
    subprocess.run([*namespace, "sh", "-c", DISK_FULL_SCRIPT, "sh", *CLI, "build", str(tmp_path / "posts"),
                    "--out", str(disk / "out")], env=env, check=True, timeout=600)
    stderr = (result / "stderr").read_text()
    assert (result / "rc").read_text().strip() == "1" and stderr.count("\n") == 1, stderr
    assert "No space left on device" in stderr and "previous build is unchanged" in stderr
    assert f"Log: {disk / 'out.failed.log'}" in stderr and "Traceback" not in stderr
    assert sorted((result / "listing").read_text().split()) == ["out", "out.failed.log"]
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (sample_build / "data").glob("*.parquet")}
    after = dict(line.split()[::-1] for line in (result / "sums").read_text().splitlines())
    assert {Path(k).name: v for k, v in after.items()} == before


def test_a_successful_build_leaves_no_lock_file_or_stale_failure_log(tmp_path):
    from kirinuki.flows.build import build

    out = tmp_path / "b"
    stale = tmp_path / "b.failed.log"
    stale.write_text("an earlier failure\n")
    build([str(SAMPLE)], str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert rows(out, "SELECT count(*) AS n FROM documents") == [{"n": 10}]  # a reader under the shared lock
    stale.write_text("an earlier failure\n")
    assert build([str(SAMPLE)], str(out)).get("up_to_date")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _carrying(tag: bytes) -> list[int]:
    from kirinuki.watchdog import _marked

    return _marked(tag)


def test_killing_only_the_cli_stops_the_prefect_server_and_workers_it_started(tmp_path):
    from kirinuki.synth import write_corpus

    write_corpus(tmp_path / "posts", 300, 4, 7)
    env = dict(os.environ, KIRINUKI_STATE_DIR=str(tmp_path / "state"))  # no server running: the run starts one
    env.pop("PREFECT_API_URL", None)
    cli = subprocess.Popen([*CLI, "build", str(tmp_path / "posts"), "--out", str(tmp_path / "out")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        tag = None
        while time.monotonic() < deadline and cli.poll() is None:
            try:  # the CLI marks the environment its children get (its own /proc entry shows the one it got)
                for kid in open(f"/proc/{cli.pid}/task/{cli.pid}/children").read().split():
                    env = open(f"/proc/{kid}/environ", "rb").read().split(b"\0")
                    tag = tag or next((e for e in env if e.startswith(b"KIRINUKI_RUN=")), None)
            except OSError:
                pass
            # the watchdog, the server and the forkserver at least
            if tag and len(_carrying(tag)) >= 3:
                break
            time.sleep(0.2)
        assert tag and cli.poll() is None, "the build ended before its server started"
        started = _carrying(tag)
        cli.kill()
        cli.wait()
        deadline = time.monotonic() + 15
        while _carrying(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _carrying(tag), f"left running after kill -9 of the CLI: {_carrying(tag)} of {started}"
    finally:
        if cli.poll() is None:
            cli.kill()
