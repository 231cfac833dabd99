"""Environment Prefect reads at import time: set before the first `import prefect`.

A local run with no PREFECT_API_URL starts a temporary Prefect server; these defaults keep it
quiet (no analytics, warnings only, no server chatter) and give it time to migrate a fresh
database. Anything the user already set wins.
"""

from __future__ import annotations

import os

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
