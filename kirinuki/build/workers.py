"""The build's worker processes: started so that they end with the build, and killed at once on a stop.

In: a worker count and a multiprocessing context. Out: a ProcessPoolExecutor whose workers ignore
the terminal's Ctrl-C (the CLI decides what a stop means), exit by themselves when the build's
process is gone, and are listed so that `kill_all_workers` (the CLI's SIGINT/SIGTERM handler) can
end every one of them in an instant: a task waiting on a killed worker's batch fails at once
instead of waiting for the batch to finish.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading
import time
import weakref
from concurrent.futures import Future, ProcessPoolExecutor

_LIVE: list[ProcessPoolExecutor] = []
_LOCK = threading.Lock()


class Stopped(Exception):
    """The build was told to stop (SIGINT/SIGTERM) while this work waited for a worker."""


_UNFREEZE_AT_EXIT = threading.Event()


def freeze_lasting() -> None:
    """Move every object alive now out of the cyclic GC's passes (for what imports made, which lives
    as long as the process: the GC would only scan it again and again). They go back at exit, so
    the interpreter's last collection still finalizes them (DuckDB's bindings report leaks else)."""
    gc.freeze()
    if not _UNFREEZE_AT_EXIT.is_set():
        _UNFREEZE_AT_EXIT.set()
        atexit.register(gc.unfreeze)


def exit_with(pid: int) -> None:
    """Initializer of the build's worker processes: ignore SIGINT, and exit as soon as process
    `pid` (the build) is gone, so a killed build does not leave workers writing into its temporary
    folder. (Their parent is the forkserver, which can outlive the build, so the parent-death
    signal is no use here.) What the forkserver imported is frozen out of the GC's passes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    freeze_lasting()  # the modules the forkserver imported live as long as the worker

    def watch() -> None:
        while True:
            time.sleep(0.2)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True, name="exit-with-build").start()


def _start_forkserver() -> None:
    """Start multiprocessing's forkserver with SIGINT ignored, a disposition it and the workers it
    forks inherit: a Ctrl-C while it imports its preload modules would print a traceback."""
    from multiprocessing import forkserver

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the server starts as it would anyway
        return
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


PARSE_PRELOAD = ["kirinuki.build.preload"]  # what the forkserver loads before forking workers


def start_parse_forkserver() -> None:
    """Start the forkserver the build's workers are forked from, with PARSE_PRELOAD: the CLI calls
    this before importing Prefect, so the stages are imported and warmed on the other core
    meanwhile (a no-op when the forkserver runs already)."""
    import multiprocessing

    multiprocessing.get_context("forkserver").set_forkserver_preload(PARSE_PRELOAD)
    _start_forkserver()


STOP_JOIN_SECONDS = 0.5  # how long WorkerPool.stop waits for each of the pool's threads to end
_MANAGERS: "weakref.WeakKeyDictionary[threading.Thread, threading.Event]" = weakref.WeakKeyDictionary()
_HOOKED = threading.Lock()


def _quiet_teardown(previous):
    """A threading.excepthook that leaves out an OSError raised in the manager thread of a pool
    that was stopped (its work abandoned, its workers killed: the thread is only closing their
    pipes, and CPython's teardown of a killed pool can close one twice); anything else goes to
    `previous`."""

    def hook(args) -> None:
        stopping = _MANAGERS.get(args.thread) if args.thread is not None else None
        if stopping is not None and stopping.is_set() and issubclass(args.exc_type, OSError):
            return
        previous(args)

    hook.kirinuki = True
    return hook


class WorkerPool(ProcessPoolExecutor):
    """A process pool of the build's workers (see the module docstring)."""

    def __init__(self, workers: int, mp_context):
        if mp_context.get_start_method() == "forkserver":
            _start_forkserver()
        super().__init__(workers, mp_context=mp_context, initializer=exit_with, initargs=(os.getpid(),))
        self.stopping = threading.Event()
        self.warming: threading.Thread | None = None  # submits the pool's first work (warm_validator)
        self.last: Future | None = None  # the work submitted last (in a pool of one worker, what it runs)
        with _LOCK:
            _LIVE.append(self)

    def run(self, fn, *args):
        """fn(*args) in a worker, waited for in short steps: once the pool is killed, a worker that
        was still being started when it was (and so escaped the kill) is killed too, and this
        raises Stopped instead of waiting for the work to end. Submitted after the pool's warming work,
        so it runs after it."""
        if self.warming is not None:
            self.warming.join()
        future = self.submit(fn, *args)
        while True:
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                if self.stopping.is_set():
                    self.kill()
                    raise Stopped("stopped") from None

    def kill(self) -> None:
        """Kill every worker now; the futures they held fail (BrokenProcessPool)."""
        self.stopping.set()
        for process in list((getattr(self, "_processes", None) or {}).values()):
            try:
                process.kill()
            except (OSError, AttributeError, ValueError):
                pass

    def stop(self) -> None:
        """Kill the workers and close the pool without waiting for its work, which is abandoned. The
        pool's own threads are given a moment (STOP_JOIN_SECONDS each) to finish first: the warming
        thread, if it is still asking for a worker (one it started meanwhile is killed too), and the
        executor's manager thread, which closes the pool's pipes once it sees the workers dead.
        Left to run on into the interpreter's exit, that teardown once printed a traceback
        (`OSError: [Errno 9] Bad file descriptor` in `terminate_broken`, closing a pipe another
        thread had closed) under a refused build's one-line error, in a CI run of the suite."""
        self.kill()
        if self.warming is not None and self.warming is not threading.current_thread():
            self.warming.join(STOP_JOIN_SECONDS)
            self.kill()
        manager = getattr(self, "_executor_manager_thread", None)
        self.shutdown(wait=False, cancel_futures=True)
        if manager is not None and manager is not threading.current_thread():
            manager.join(STOP_JOIN_SECONDS)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.last = super().submit(fn, *args, **kwargs)
        return self.last

    def _start_executor_manager_thread(self) -> None:
        super()._start_executor_manager_thread()
        with _HOOKED:
            if not getattr(threading.excepthook, "kirinuki", False):
                threading.excepthook = _quiet_teardown(threading.excepthook)
            _MANAGERS[self._executor_manager_thread] = self.stopping

    def finish(self) -> None:
        """Close a pool of one worker at the end of a run that failed: when its work is done, it exits
        as it would after a build (a worker killed leaves its semaphores for the resource tracker
        to report at exit, two lines of noise after the error); when the run was told to stop, or
        work is still running (the failure need not wait for it), it is killed."""
        if self.stopping.is_set() or (self.last is not None and not self.last.done()):
            self.stop()
        else:
            self.shutdown(wait=True, cancel_futures=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with _LOCK:
            if self in _LIVE:
                _LIVE.remove(self)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def kill_all_workers() -> None:
    """Kill the workers of every pool still open (safe from a signal handler: no lock is waited on)."""
    for pool in list(_LIVE):
        pool.kill()


BACKGROUND_NICE = 10  # added to the nice value of a thread that works beside the critical path


def in_background() -> None:
    """Lower this thread's CPU priority (BACKGROUND_NICE more niceness; threads it starts inherit
    it): work done beside the build's critical path (dedup) takes the cores dedup leaves idle
    instead of slowing it. Linux, where a thread has its own nice value; elsewhere a no-op."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except (AttributeError, OSError):
        pass


def import_validation() -> None:
    """Import what validation needs (Great Expectations takes seconds); errors surface when it runs.
    In the background (see in_background): it runs beside dedup."""
    in_background()
    if "great_expectations" in sys.modules:  # (imported by an earlier build of this process)
        return
    enabled = gc.isenabled()
    gc.disable()  # ~500,000 objects that all live: the GC's rescans as they grow cost a second
    try:
        from kirinuki.validate.gx_import import import_great_expectations

        import_great_expectations()
        import kirinuki.build.validation  # noqa: F401
    except Exception:  # noqa: BLE001 - the validate stage imports it again and reports any problem
        pass
    finally:
        freeze_lasting()  # nor need it scan them later
        if enabled:
            gc.enable()


def _import_beside() -> None:
    """import_validation in a thread of its own, waited for: only that thread is lowered in
    priority (in_background), not the worker's main thread, which then validates on the critical
    path."""
    side = threading.Thread(target=import_validation, name="import-validation")
    side.start()
    side.join()


def warm_validator() -> WorkerPool:
    """A worker that starts importing validation's libraries now, for the build's validate stage:
    started by the CLI before it imports Prefect, those seconds run on the core the CLI leaves
    idle. The worker is asked for from a thread: the forkserver forks it only once its own
    preload is imported (0.4 s), which the CLI does not wait for."""
    import multiprocessing

    pool = WorkerPool(1, multiprocessing.get_context("forkserver"))

    def ask() -> None:
        try:
            pool.submit(_import_beside)
        except Exception:  # noqa: BLE001 - stopped first (the run ended at once), or the worker could not
            pass  # be started: the validate stage's own call then says so, in one line
        if pool.stopping.is_set():  # stopped while its worker was being started: that worker goes too
            pool.kill()

    pool.warming = threading.Thread(target=ask, daemon=True, name="warm-validator")
    pool.warming.start()
    return pool
