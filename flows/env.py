"""Environment Prefect reads at import time: set before the first `import prefect`.

A local run with no PREFECT_API_URL starts a temporary Prefect server; these defaults keep it
quiet (no analytics, warnings only, no server chatter) and give it time to migrate a fresh
database. Anything the user already set wins. `without_heartbeats` (it imports Prefect when
entered) is the one setting that needs a value the environment cannot hold.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # Prefect's console handler prints only what would crash the process; a build's warnings and
    # errors go to <build>/logs/build.log instead, and the CLI prints one line per error.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
}


def configure() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs started inside send no flow-run heartbeats, unless the user set a heartbeat
    frequency (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, a Prefect profile or prefect.toml: then theirs
    holds). Heartbeats feed an automation, which a user sets up, that marks runs that stopped
    answering as crashed; without one nothing reads them.
    Prefect 3.9 sends them every 180 s by default, and its heartbeat thread, which sleeps in
    one-second steps, is joined at the end of every run: on average half a second of waiting."""
    from prefect.settings import get_current_settings, temporary_settings

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        yield
        return
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield
