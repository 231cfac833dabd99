"""The loop a person runs: an unchanged build decided before Prefect starts, a background Prefect server
that later builds reuse and `kirinuki server stop` ends, and Ctrl-C (SIGINT to the terminal's process
group) or SIGTERM stopping a build at once with the previous build unchanged and no process left."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLE

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), KIRINUKI_STATE_DIR=str(tmp_path / "kirinuki-state"),
               KIRINUKI_TEST_MARK=f"{tmp_path}", **extra)
    env.pop("PREFECT_API_URL", None)
    return env


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries this test's mark: anything a run left behind."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if f"KIRINUKI_TEST_MARK={mark}".encode() in (d / "environ").read_bytes().split(b"\0"):
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _none_left(mark: str, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := _marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _digest(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _kirinuki(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kirinuki"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_an_unchanged_build_is_reported_without_starting_prefect(tmp_path):
    """The second build of an unchanged corpus never reaches Prefect: pointed at an address where no
    server listens, it still says it is up to date, and nothing was started."""
    env = _env(tmp_path)
    out = tmp_path / "out"
    assert _kirinuki("build", str(SAMPLE), "--out", str(out), "-q", env=env).returncode == 0
    before = _digest(out)
    dead = dict(env, PREFECT_API_URL="http://127.0.0.1:9/api")  # port 9 (discard): nothing answers
    r = _kirinuki("build", str(SAMPLE), "--out", str(out), "--json", env=dead, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["up_to_date"] is True
    assert _digest(out) == before
    assert not _none_left(str(tmp_path))


def test_a_background_server_is_reused_by_builds_and_stopped_by_server_stop(tmp_path):
    env = _env(tmp_path)
    r = _kirinuki("server", "status", env=env)
    assert r.returncode == 1 and "no kirinuki server is running" in r.stdout
    r = _kirinuki("server", "start", "--port", "0", env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("started Prefect server http://127.0.0.1:")
    state = json.loads((tmp_path / "kirinuki-state" / "server.json").read_text())
    url = f"http://127.0.0.1:{state['port']}"
    try:
        assert _kirinuki("server", "start", env=env).stdout.startswith(f"already running: Prefect server {url}")
        r = _kirinuki("server", "status", env=env)
        assert r.returncode == 0 and url in r.stdout
        corpus = tmp_path / "corpus"
        shutil.copytree(SAMPLE, corpus)
        for n in (1, 2):  # the second after an edit: both are flow runs on the background server
            r = _kirinuki("build", str(corpus), "--out", str(tmp_path / "out"), "-q", env=env)
            assert r.returncode == 0, r.stderr
            post = corpus / "2024-06-12_nordria_grain.txt"
            post.write_text(post.read_text(encoding="utf-8") + f"解説を書き足した{n}。\n", encoding="utf-8")
        request = urllib.request.Request(f"{url}/api/flow_runs/filter", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            runs = json.load(resp)
        assert sorted(run["name"] for run in runs) == ["out <- corpus", "out <- corpus"]
        assert {run["state_type"] for run in runs} == {"COMPLETED"}
        # the builds ended and left nothing but the server itself
        assert _none_left(str(tmp_path), within=5) == [state["pid"]]
    finally:
        r = _kirinuki("server", "stop", env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"stopped the Prefect server at {url}"
    assert not _none_left(str(tmp_path))
    assert _kirinuki("server", "status", env=env).returncode == 1
    assert not (tmp_path / "kirinuki-state" / "server.json").exists()


@pytest.fixture(scope="module")
def built_corpus(tmp_path_factory):
    """A 400-post corpus and its build (the previous build the interrupted ones must leave alone)."""
    d = tmp_path_factory.mktemp("interrupt")
    env = _env(d)
    corpus, out = d / "corpus", d / "out"
    r = _kirinuki("synth", "--posts", "400", "--seed", "4", "--out", str(corpus), env=env)
    assert r.returncode == 0, r.stderr
    r = _kirinuki("build", str(corpus), "--out", str(out), "-q", env=env)
    assert r.returncode == 0, r.stderr
    return d, corpus, out


def _started_writing(out: Path, p: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the build has made its unfinished folder (it is past planning, in its stages)."""
    deadline = time.monotonic() + timeout
    while not list(out.parent.glob(f".{out.name}.tmp-*")):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the build never started writing"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_stops_a_build_at_once_and_keeps_the_previous_build(built_corpus, how):
    d, corpus, out = built_corpus
    env = _env(d)
    before = _digest(out)
    p = subprocess.Popen([str(BIN / "kirinuki"), "build", str(corpus), "--out", str(out), "--no-cache"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _started_writing(out, p)
    time.sleep(0.5)  # into the parse
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group
    else:
        p.send_signal(signal.SIGTERM)  # `kill PID`: the CLI alone
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted; the previous build is unchanged"], err
    assert _digest(out) == before
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    assert not _none_left(str(d)), "a worker or the Prefect server outlived the build"


def test_a_build_that_completed_is_not_reported_as_failed_when_prefect_fails_after_it(tmp_path, monkeypatch):
    """The build folder is swapped in, then the run's last call to Prefect fails (its server gone):
    the command says the build completed, with a warning, and exits 0."""
    from typer.testing import CliRunner

    import kirinuki.flows.build as pipeline
    from kirinuki.cli import app

    def server_gone(*args, **kwargs):
        raise ConnectionRefusedError("All connection attempts failed")

    monkeypatch.setattr(pipeline, "_artifacts", server_gone)  # after the swap, as the run's last step
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["build", str(SAMPLE), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning: the build completed, but Prefect then failed (ConnectionRefusedError" in " ".join(r.output.split())
    assert json.loads((out / "build.json").read_text())["validation"]["success"]


def test_a_build_that_fails_says_its_one_line_and_nothing_after_it(tmp_path):
    """A build failing inside the flow ends with its error line alone on stderr: not the noise of
    an interpreter torn down mid-run (DuckDB's leak reports, multiprocessing's warning about the
    semaphores of the worker pools it stopped)."""
    script = tmp_path / "failing_build.py"
    script.write_text(textwrap.dedent("""
        import sys

        if __name__ == "__main__":  # (the build's workers import this file again)
            import kirinuki.flows.build as pipeline
            from kirinuki.cli import main

            def broken(*args, **kwargs):
                import duckdb

                con = duckdb.connect()  # (a DuckDB object the failure's traceback holds)
                con.execute("SELECT * FROM a_table_not_there")

            pipeline.views_sql = broken  # once the tables are validated and the charts drawn
            sys.argv = ["kirinuki", "build", sys.argv[1], "--out", sys.argv[2]]
            main()
    """), encoding="utf-8")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(script), str(SAMPLE), str(out)], capture_output=True, text=True,
                       timeout=300)
    said = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1, r.stderr
    assert len(said) == 1 and said[0].startswith("error: build failed (CatalogException: "), said
    assert not out.exists()


def test_a_failure_names_a_log_only_when_one_was_written(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import kirinuki.flows.build as pipeline
    from kirinuki.cli import app

    out = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in planning")

    monkeypatch.setattr(pipeline, "plan_inputs", broken)  # before the build log exists
    r = CliRunner().invoke(app, ["build", str(SAMPLE), "--out", str(out)])
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "build failed (RuntimeError: a bug in planning)" in said
    assert "Log:" not in said and not pipeline.failed_log(out).exists()
    monkeypatch.undo()

    def broken_parse(*args, **kwargs):
        raise RuntimeError("a bug in parsing")

    monkeypatch.setattr(pipeline, "parse_all", broken_parse)  # inside the build: its log is kept
    r = CliRunner().invoke(app, ["build", str(SAMPLE), "--out", str(out)])
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "build failed (RuntimeError: a bug in parsing)" in said
    log = pipeline.failed_log(out)
    assert f"Log: {log}" in said and log.is_file()


def test_an_out_of_date_build_is_planned_once_and_the_last_build_is_not_read_to_say_so(tmp_path, monkeypatch):
    """The CLI's up-to-date check compares digests before it hashes the last build's files (it hashes
    none when an input changed), and the build it then starts takes its plan instead of listing and
    fingerprinting the inputs again; a plan made for other arguments is not taken."""
    import kirinuki.build.plan as plan_module
    import kirinuki.flows.build as pipeline
    from kirinuki.build.inputs import up_to_date

    corpus, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(SAMPLE, corpus)
    pipeline.build([str(corpus)], str(out))
    post = corpus / "2024-01-05_nordria_power.txt"
    post.write_bytes(post.read_bytes() + "\n追記です。\n".encode("utf-8"))
    hashed: list[Path] = []
    real = plan_module.sha256_file
    monkeypatch.setattr(plan_module, "sha256_file", lambda p: hashed.append(p) or real(p))
    check = up_to_date([str(corpus)], out, 8.0)
    assert check.previous is None and check.plan is not None and hashed == []
    planned = []
    monkeypatch.setattr(pipeline, "plan_inputs", lambda *a, **k: planned.append(a) or check.plan.plan)
    pipeline.prepared = check.plan
    summary = pipeline.build([str(corpus)], str(out), max_file_mb=8.0)
    assert planned == [] and pipeline.prepared is None and not summary.get("up_to_date")
    assert summary["inputs"]["hashed"] == check.plan.plan.hashed
    pipeline.prepared = check.plan  # made for another output folder: planned again
    pipeline.build([str(corpus)], str(tmp_path / "elsewhere"), max_file_mb=8.0)
    assert len(planned) == 1 and pipeline.prepared is None


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has its own nice value on Linux only")
def test_importing_validation_beside_dedup_leaves_the_gc_on_and_the_imported_objects_frozen():
    """Great Expectations' import makes ~500,000 objects that live to the end of the build: it runs
    with the GC paused and freezes them after (later passes skip them), then the GC is on again."""
    code = ("import gc, sys, threading\n"
            "from kirinuki.build.workers import import_validation\n"
            "t = threading.Thread(target=import_validation)\n"
            "t.start(); t.join()\n"
            "print(gc.isenabled(), gc.get_freeze_count(), 'great_expectations' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    enabled, frozen, imported = done.stdout.split()
    assert enabled == imported == "True" and int(frozen) > 100_000, done.stderr


def test_work_beside_dedup_runs_at_a_lower_priority_and_the_build_thread_keeps_its_own():
    """The per-post writers and the Great Expectations import run beside dedup, the build's
    critical path: their threads (and threads they start) are niced, the calling thread is not."""
    import threading

    from kirinuki.build.workers import BACKGROUND_NICE, in_background

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = nice()
    seen = {}

    def background():
        in_background()
        seen["background"] = nice()
        child = threading.Thread(target=lambda: seen.update(child=nice()))
        child.start()
        child.join()

    t = threading.Thread(target=background)
    t.start()
    t.join()
    assert seen["background"] == min(19, mine + BACKGROUND_NICE) == seen["child"] and nice() == mine


def test_the_build_s_workers_start_with_the_stages_imported_and_warmed(tmp_path):
    """The CLI starts the workers' forkserver before it imports Prefect: a worker it forks already
    holds the parsing stages, pandas (pyarrow's from_pylist imports it) and the reference tables
    read, so its first batch is not the one that loads them; a pool started without it does not."""
    code = ("import sys, multiprocessing\n"
            "from kirinuki.build.workers import WorkerPool, start_parse_forkserver\n"
            "def loaded():\n"
            "    from kirinuki.clean.normalize import _compiled, outlet_register\n"
            "    return ['pandas' in sys.modules, 'kirinuki.build.batch' in sys.modules,\n"
            "            _compiled.cache_info().currsize, outlet_register.cache_info().currsize]\n"
            "if __name__ == '__main__':\n"
            "    if sys.argv[1] == 'early':\n"
            "        start_parse_forkserver()\n"
            "    with WorkerPool(1, multiprocessing.get_context('forkserver')) as pool:\n"
            "        print(*pool.submit(loaded).result())\n")
    path = tmp_path / "warm_check.py"  # a file: a forkserver's worker imports the main module by its path
    path.write_text(code, encoding="utf-8")
    seen = {how: subprocess.run([sys.executable, str(path), how], capture_output=True, text=True, timeout=120)
            for how in ("early", "plain")}
    assert seen["early"].stdout.split() == ["True", "True", "1", "1"], seen["early"].stderr
    assert seen["plain"].stdout.split() == ["False", "False", "0", "0"], seen["plain"].stderr


def test_a_build_under_a_gib_validates_in_a_worker_that_imported_great_expectations_at_full_priority(tmp_path):
    """Below VALIDATION_WORKER_BYTES of input (not only for a small build) the CLI starts a
    validation worker before it imports Prefect; the worker imports Great Expectations in a niced
    thread of its own, and the validation it then runs is in its main thread, whose priority is the
    CLI's. Above it, the build validates in its own process."""
    from kirinuki.build.inputs import SMALL_BUILD_FILES, VALIDATION_WORKER_BYTES, sizing
    from kirinuki.ingest.sources import discover

    for i in range(SMALL_BUILD_FILES):
        (tmp_path / "posts").mkdir(exist_ok=True)
        (tmp_path / "posts" / f"post_{i:04d}.txt").write_text("本文\n", encoding="utf-8")
    refs = discover([str(tmp_path / "posts")])[0]
    assert sizing(refs).small is False and sizing(refs).validation_worker is True
    assert sizing(refs[:10]).small is True and sizing(refs[:10]).validation_worker is True
    os.truncate(tmp_path / "posts" / "post_0000.txt", VALIDATION_WORKER_BYTES)  # sparse: no disk used
    assert sizing(refs).validation_worker is False
    code = ("import os, sys, threading\n"
            "from kirinuki.build.workers import start_parse_forkserver, warm_validator\n"
            "def nice():\n"
            "    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())\n"
            "def seen():\n"
            "    return ['great_expectations' in sys.modules, nice()]\n"
            "if __name__ == '__main__':\n"
            "    start_parse_forkserver()\n"
            "    pool = warm_validator()\n"
            "    print(*pool.run(seen), nice())\n"
            "    pool.shutdown()\n")
    path = tmp_path / "validator_check.py"
    path.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    imported, worker_nice, cli_nice = done.stdout.split()
    assert (imported, worker_nice) == ("True", cli_nice), done.stderr


def test_a_stopped_worker_pool_tears_itself_down_and_the_process_exits_quietly(tmp_path):
    """A run that ends while a worker still works (a refused build whose validation worker is still
    importing Great Expectations, or Ctrl-C) stops the pool: its workers are killed and the
    executor's manager thread, which closes the pool's pipes once they are dead, is done before
    `stop` returns, not left to run into the interpreter's exit (where it once printed an OSError
    traceback under a refused build's one-line error). A pool stopped in the middle of its work;
    and one stopped as soon as it is warmed, whose worker may still be being started: that worker
    is killed as soon as it is. Either way the process exits at once and prints nothing."""
    code = ("import json, sys, threading, time, multiprocessing\n"
            "from kirinuki.build.workers import WorkerPool, start_parse_forkserver, warm_validator\n"
            "def busy():\n"
            "    time.sleep(60)\n"
            "if __name__ == '__main__':\n"
            "    start_parse_forkserver()\n"
            "    if sys.argv[1] == 'warming':\n"
            "        pool = warm_validator()\n"
            "    else:\n"
            "        pool = WorkerPool(1, multiprocessing.get_context('forkserver'))\n"
            "        pool.submit(busy)\n"
            "        while not any(p.is_alive() for p in pool._processes.values()):\n"
            "            time.sleep(0.05)\n"
            "    manager = pool._executor_manager_thread\n"
            "    t = time.monotonic()\n"
            "    pool.stop()\n"
            "    took = time.monotonic() - t\n"
            "    left = [th.name for th in threading.enumerate() if th is not threading.main_thread() and th.is_alive()]\n"
            "    pool.warming and pool.warming.join(30)\n"
            "    deadline = time.monotonic() + 5\n"
            "    while multiprocessing.active_children() and time.monotonic() < deadline:\n"
            "        time.sleep(0.05)\n"
            "    print(json.dumps({'manager': manager is not None and manager.is_alive(), 'left': left, 'took': took,\n"
            "                      'workers': len(multiprocessing.active_children())}), flush=True)\n")
    path = tmp_path / "stop_check.py"
    path.write_text(code, encoding="utf-8")
    for how in ("busy", "warming"):
        t = time.monotonic()
        done = subprocess.run([sys.executable, str(path), how], capture_output=True, text=True, timeout=120)
        seen = json.loads(done.stdout)
        assert done.returncode == 0 and done.stderr == "" and seen["workers"] == 0, (how, seen, done.stderr)
        assert seen["took"] < 2, (how, seen)
        if how == "busy":  # (warming: the pool's threads may start after stop, while its worker is asked for)
            assert seen["manager"] is False and seen["left"] == [], (how, seen)
        assert time.monotonic() - t < 30


def test_flow_runs_send_heartbeats_only_when_the_user_set_a_frequency(monkeypatch):
    """The CLI runs its flows inside `without_heartbeats`: no flow-run heartbeat (whose thread's
    join costs up to a second at the end of every run) unless the user set a frequency, from the
    environment, a profile or prefect.toml; then theirs holds."""
    import threading

    from prefect import flow
    from prefect.flow_engine import FlowRunEngine
    from prefect.settings import get_current_settings, temporary_settings

    from kirinuki.flows.env import without_heartbeats

    code = ("from kirinuki.flows.env import without_heartbeats\n"
            "from prefect.settings import get_current_settings as s\n"
            "with without_heartbeats():\n    print(s().flows.heartbeat_frequency)\n"
            "print(s().flows.heartbeat_frequency)\n")
    for set_by_user, want in ((None, ["None", "180"]), ("45", ["45", "45"])):
        env = {k: v for k, v in os.environ.items() if "HEARTBEAT" not in k}
        if set_by_user:
            env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = set_by_user
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.split() == want, (set_by_user, r.stdout, r.stderr[-2000:])

    sent = threading.Event()
    beats = []
    original = FlowRunEngine._emit_flow_run_heartbeat

    def counted(self, *args, **kwargs):
        beats.append(1)
        sent.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FlowRunEngine, "_emit_flow_run_heartbeat", counted)

    @flow(persist_result=False)
    def one_step(wait: bool) -> bool:
        return sent.wait(20) if wait else True  # (a run with heartbeats ends only after its first one)

    with without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
        assert one_step(False) and beats == []
    with temporary_settings(updates={"flows.heartbeat_frequency": 30}), without_heartbeats():
        assert one_step(True) and beats
