"""Test setup: Prefect state in a throw-away home, set before anything imports prefect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Hypothesis draws the same examples here as in CI (its "ci" profile: derandomized, no example
# database), so a run that passes here passes there: a random draw once passed here and hung CI.
hypothesis_settings.load_profile("ci")

_PREFECT_HOME = tempfile.mkdtemp(prefix="kirinuki-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = os.path.join(_PREFECT_HOME, "results")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILES_PATH", None)

from kirinuki.flows.env import configure  # noqa: E402

configure()  # kirinuki's quiet Prefect settings, before any test imports prefect

os.environ["KIRINUKI_STATE_DIR"] = os.path.join(_PREFECT_HOME, "kirinuki-state")


def pytest_configure(config):
    """One Prefect server for each process that runs tests, as `kirinuki server start` keeps one:
    the flows it runs and every `kirinuki` command a test starts (they inherit KIRINUKI_STATE_DIR)
    record their runs there instead of starting a server each. Tests of the other cases set their
    own environment. The suite runs in two worker processes (pytest-xdist, pyproject.toml); the
    process that only hands them tests starts none."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    from kirinuki.server import start_background

    server, _ = start_background(port=None, ui=False)
    os.environ["PREFECT_API_URL"] = server.api_url  # before any test imports prefect
    from kirinuki.flows.env import without_heartbeats

    # the flows the tests run in this process, as the CLI runs its own: without flow-run heartbeats
    # (their thread's join costs half a second a run); left entered until the process ends
    config._kirinuki_quiet = without_heartbeats()
    config._kirinuki_quiet.__enter__()


ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed" / "000_b7666d67213713ef.txt"
SAMPLE = ROOT / "input" / "sample"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# the sample's four loose .txt posts (and sidecar), without its exports, saved page and other blog's post
LOOSE_POSTS_ONLY = shutil.ignore_patterns("README.md", "exports", "pages", "other-blogs")


def _stray_processes(marks: list[bytes]) -> list[int]:
    """Processes other than this one whose environment names one of `marks` (the Prefect homes the
    tests gave them): temporary Prefect servers that a killed build left behind."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if any(m in env for m in marks):
            found.append(int(d.name))
    return found


def pytest_sessionfinish(session, exitstatus):
    """The suite must leave no process running: Prefect's temporary server (started by the flows
    this process ran) is stopped, then any other process a test started and left is a failure of
    the session, named here, and stopped."""
    import signal
    import sys
    import time

    from kirinuki.server import drain_prefect, stop_background

    drain_prefect(5.0)  # what this process's flows still have to send, before their server stops
    stop_background()  # the session's server
    from kirinuki.build.workers import kill_all_workers

    kill_all_workers()  # a pool a failed test left open would keep the forkserver below from ending
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker

    for helper in (multiprocessing.forkserver._forkserver, multiprocessing.resource_tracker._resource_tracker):
        try:  # this process's own multiprocessing helpers (they would end with it): stopped now
            helper._stop()
        except Exception:  # noqa: BLE001 - not started, or a Python without _stop: they end with the process
            pass
    if "prefect.server.api.server" in sys.modules:  # a temporary server a test made Prefect start
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
    marks = [f"PREFECT_HOME={_PREFECT_HOME}".encode()]
    base = getattr(session.config, "_tmp_path_factory", None)
    if base is not None:
        marks.append(f"PREFECT_HOME={base.getbasetemp()}".encode())
    deadline = time.monotonic() + 5  # a process that is ending by itself has a moment to do so
    while (strays := _stray_processes(marks) if Path("/proc").is_dir() else []) and time.monotonic() < deadline:
        time.sleep(0.2)
    if strays:
        names = [_command(pid) for pid in strays]
        print(f"\nerror: the suite left {len(strays)} process(es) running: " + "; ".join(names), file=sys.stderr)
        session.exitstatus = 1
    for pid in strays:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while strays and time.monotonic() < deadline:
        strays = [pid for pid in strays if Path(f"/proc/{pid}").exists()]
        time.sleep(0.2)
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def _command(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return str(pid)


@pytest.fixture(scope="session")
def seed_text() -> str:
    if not SEED.exists():
        pytest.fail(f"the seed post is missing at {SEED} (shared/ must sit beside the repo)")
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory) -> Path:
    from kirinuki.flows.build import build

    out = tmp_path_factory.mktemp("seed") / "build"
    build([str(SEED.parent)], str(out))
    return out


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory) -> Path:
    from kirinuki.flows.build import build

    out = tmp_path_factory.mktemp("sample") / "build"
    build([str(SAMPLE)], str(out))
    return out


def rows(build_dir: Path, sql: str) -> list[dict]:
    from kirinuki.store.query import open_build, run_query

    rel = run_query(open_build(build_dir), sql)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def page_requests(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """Open a page in headless Chromium; return its DOM and the URLs the page itself requested
    (the browser's own background traffic has no page initiator and is not counted)."""
    netlog = tmp_path / f"{page.stem}-net.json"
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={netlog}", "--dump-dom",
                        page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    raw = netlog.read_text(errors="replace").rstrip()
    log = json.loads(raw if raw.endswith("}") else raw.rstrip(",") + "]}")
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = [e["params"]["url"] for e in log["events"] if "url" in e.get("params", {})
            and types.get(e["type"]) == "URL_REQUEST_START_JOB" and e["params"].get("initiator") != "not an origin"]
    return r.stdout, urls


needs_chromium = pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (.ci/run installs it)")
