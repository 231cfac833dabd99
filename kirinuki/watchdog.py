"""Watchdog: whatever a CLI run started ends with it, however the run ends.

In: nothing (called once, first thing, by the `kirinuki` command). Out: a small forked process
that waits for the CLI to end and then stops every process still carrying this run's marker in
its environment: the temporary Prefect server (which Prefect starts as a plain child and only
stops from an atexit hook, so `kill -9` of the CLI used to leave it running), parse workers and
the dedup process. Children inherit the marker through their environment, so nothing has to be
registered. Linux only (it reads /proc); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import time

MARKER = "KIRINUKI_RUN"


def _marked(tag: bytes) -> list[int]:
    """Pids of this user's processes (not this one) whose environment holds `tag`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:  # gone already
            pass


def _stop(tag: bytes, grace: float = 3.0) -> None:
    """SIGTERM to every marked process, SIGKILL to those still there after `grace` seconds."""
    pids = _marked(tag)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _marked(tag)
    _signal_all(pids, signal.SIGKILL)


def start() -> None:
    """Mark this process's environment and fork the watchdog (once per process)."""
    if MARKER in os.environ or not os.path.isdir("/proc/self"):
        return
    os.environ[MARKER] = f"{os.getpid()}-{time.time_ns()}"
    tag = f"{MARKER}={os.environ[MARKER]}".encode()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:  # the CLI keeps the write end open until it ends, however it ends
        os.close(read_end)
        return
    try:
        os.close(write_end)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: clean up after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.setsid()  # not in the CLI's group, so a group kill does not stop the watchdog before it acts
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # never hold the caller's pipes open
            os.dup2(null, fd)
        os.closerange(3, read_end)
        os.closerange(read_end + 1, 1 << 16)
        while os.read(read_end, 1):
            pass
        _stop(tag)
    finally:
        os._exit(0)
