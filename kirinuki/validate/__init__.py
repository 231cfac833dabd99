"""Validate stage: a build's tables against their Great Expectations suites and cross-table SQL checks.

In: a build folder's data/*.parquet and the shipped expectations/. Out: a `Report`, quarantined rows,
validation/results.json and report.html; a critical failure raises `ValidationFailed`. `suites` reads
what to check, `gx_engine` runs GX, `checks` is the stage, `quarantine` moves failing rows aside,
`report` writes the results.
"""

from kirinuki.validate.checks import Report, run_checks, validate_build
from kirinuki.validate.report import render_html, write_reports
from kirinuki.validate.suites import Check, ValidationFailed, load_suite, needed_columns

__all__ = ["Check", "Report", "ValidationFailed", "load_suite", "needed_columns", "render_html", "run_checks",
           "validate_build", "write_reports"]
