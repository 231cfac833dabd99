"""The Prefect server a CLI run talks to: the user's own, kirinuki's background one, or one for this run.

In: the environment (PREFECT_API_URL, KIRINUKI_STATE_DIR). Out: the API address a run should use, and
the processes kirinuki started for it, each in its own session so that a terminal's Ctrl-C reaches
only the CLI, which stops them in order.

- `PREFECT_API_URL` set by the user: used as it is; kirinuki starts nothing.
- `kirinuki server start`: a Prefect server (with its UI) on 127.0.0.1, running in the background
  until `kirinuki server stop`; its address is kept in `<KIRINUKI_STATE_DIR>/server.json`, and
  every later run uses it, so no run pays a server's start-up.
- Otherwise a server for this run only (what Prefect itself would start, without the UI), stopped
  when the run ends, however it ends. Nothing started here outlives the command that started it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4200
STATE = "server.json"


class ServerError(Exception):
    """A server could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class Server:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def home() -> Path:
    """kirinuki's state folder: KIRINUKI_STATE_DIR, else $XDG_STATE_HOME/kirinuki (~/.local/state/kirinuki)."""
    if os.environ.get("KIRINUKI_STATE_DIR"):
        return Path(os.environ["KIRINUKI_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kirinuki"


def healthy(api_url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def background() -> Server | None:
    """kirinuki's background server, if one is running and answers (a stale record is removed)."""
    path = home() / STATE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        server = Server(int(info["pid"]), int(info["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(server.pid) and healthy(server.api_url):
        return server
    if not _alive(server.pid):
        path.unlink(missing_ok=True)
    return None


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ServerError("no free port on 127.0.0.1")


def _environment(ui: bool, keep: bool) -> dict[str, str]:
    from kirinuki.flows.env import DEFAULTS

    env = {**DEFAULTS, **os.environ}
    env.pop("PREFECT_API_URL", None)
    if keep:  # the background server outlives the command that starts it: not one of this run's processes
        from kirinuki.watchdog import MARKER

        env.pop(MARKER, None)
    if not ui:  # as Prefect's own temporary server: no UI, no background services
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    return env


def _spawn(port: int, ui: bool, log_path: Path | None, keep: bool = False) -> subprocess.Popen:
    if ui:
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    else:
        from importlib.util import find_spec  # finds prefect without importing it: Prefect reads its
        # settings (PREFECT_API_URL among them) once, when first imported
        app_dir = str(Path(find_spec("prefect").origin).parent.parent)
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(cmd, env=_environment(ui, keep), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)  # its own process group: Ctrl-C reaches only the CLI
    finally:
        if log_path:
            out.close()


def _wait_healthy(proc: subprocess.Popen, server: Server, timeout: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(server.api_url, timeout=1.0):
        if proc.poll() is not None:
            where = f"; see {log_path}" if log_path else ""
            raise ServerError(f"the Prefect server exited with status {proc.returncode} while starting{where}")
        if time.monotonic() > deadline:
            stop_process(proc.pid)
            raise ServerError(f"the Prefect server did not answer on {server.url} within {timeout:.0f} s")
        time.sleep(0.1)


def start_background(port: int | None = DEFAULT_PORT, timeout: float = 180, ui: bool = True) -> tuple[Server, bool]:
    """(the background server, whether it was started now). Reuses a running one. Without `ui`,
    the API alone (as Prefect's temporary server), which starts faster."""
    running = background()
    if running:
        return running, False
    h = home()
    h.mkdir(parents=True, exist_ok=True)
    log_path = h / "server.log"
    port = _free_port(port)
    proc = _spawn(port, ui=ui, log_path=log_path, keep=True)
    server = Server(proc.pid, port)
    _wait_healthy(proc, server, timeout, log_path)
    tmp = h / f".{STATE}.{os.getpid()}"
    tmp.write_text(json.dumps({"pid": server.pid, "port": server.port}), encoding="utf-8")
    os.replace(tmp, h / STATE)
    return server, True


def stop_background() -> Server | None:
    """Stop the background server (and all it started); the server stopped, or None if none ran."""
    running = background()
    path = home() / STATE
    if running is None:
        path.unlink(missing_ok=True)
        return None
    stop_process(running.pid)
    path.unlink(missing_ok=True)
    return running


def stop_process(pid: int, grace: float = 10.0) -> None:
    """SIGTERM a process group kirinuki started, then SIGKILL what is left after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.05)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def drain_prefect(timeout: float) -> None:
    """Let Prefect's background workers send their queued logs and events (at most `timeout` s each)."""
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001 - a run's records are best effort once it has ended
        pass


class RunServer:
    """A server for one run: started on entry unless the user's or the background server is there
    (then PREFECT_API_URL names that one), stopped on exit. Sets PREFECT_API_URL for this process,
    so it must be entered before Prefect is imported; `ready()` waits until it answers, so the
    CLI's imports overlap the server's start."""

    def __init__(self, timeout: float = 180):
        self.timeout = timeout
        self.started: Server | None = None
        self._proc: subprocess.Popen | None = None
        self.source = ""
        self.start_s = 0.0

    def __enter__(self) -> RunServer:
        if os.environ.get("PREFECT_API_URL"):
            self.source = "yours"
            return self
        running = background()
        if running:
            self.source = "background"
            os.environ["PREFECT_API_URL"] = running.api_url
            return self
        self._t0 = time.monotonic()
        port = _free_port(None)
        self._proc = _spawn(port, ui=False, log_path=None)
        self.started = Server(self._proc.pid, port)
        self.source = "this run"
        os.environ["PREFECT_API_URL"] = self.started.api_url
        return self

    def ready(self) -> None:
        """Wait until the server this run started answers (at once for any other)."""
        if self._proc is None:
            return
        _wait_healthy(self._proc, self.started, self.timeout, None)
        self.start_s = time.monotonic() - self._t0
        self._proc = None

    def __exit__(self, kind, value, tb) -> None:
        self.stop(drain_s=0.5 if kind is KeyboardInterrupt else 5.0)

    def stop(self, drain_s: float = 5.0) -> None:
        if self.started is not None:
            drain_prefect(drain_s)  # what Prefect still has to send goes before its server does
            stop_process(self.started.pid, grace=5.0)
            os.environ.pop("PREFECT_API_URL", None)
            self.started = self._proc = None
