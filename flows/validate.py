"""The validate flow: re-check a finished build against the shipped suites, writing nothing.

A thin entrypoint over `kirinuki.validate` for a Prefect user (`prefect deploy flows/validate.py:validate`);
the CLI's `kirinuki validate` calls the same function directly.
"""

from __future__ import annotations

from kirinuki.flows.env import configure

configure()  # Prefect reads its settings at import time

from pathlib import Path  # noqa: E402

from prefect import flow  # noqa: E402


@flow(name="kirinuki-validate", persist_result=False)
def validate(build: str) -> dict:
    """Every check of the build in `build`; returns success, the failed checks and the row counts."""
    from kirinuki.validate import validate_build

    report = validate_build(Path(build), quarantine=False)
    return {"success": report.success, "rows": report.rows,
            "failed": [c.line() for c in report.checks if not c.success]}
