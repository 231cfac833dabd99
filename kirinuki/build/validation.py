"""The build's validate stage, with the last build's results reused for unchanged tables.

In: the unfinished build folder, its parts folder (where the results are kept for the next build) and
the last build's parts. Out: the report's summary and the sha256 of each table as validated; a
critical failure raises ValidationFailed. A table whose file is byte for byte one the last build (same
code) validated keeps that build's results, so Great Expectations is imported only when some table
must be checked again.
"""

from __future__ import annotations

from pathlib import Path

from kirinuki.build.batch import code_digest
from kirinuki.build.plan import VALIDATION_KEPT
from kirinuki.store.files import read_json, write_json


def validate_files(root: str, parts: str, old_parts: str | None) -> tuple[dict, dict[str, str]]:
    """Run every suite; quarantine warning failures; raise on a critical one (see the module docstring)."""
    from kirinuki.validate import validate_build, write_reports

    code = code_digest(whole_build=True)
    kept = read_json(Path(old_parts) / VALIDATION_KEPT) if old_parts else None
    previous = kept.get("tables") if isinstance(kept, dict) and kept.get("code") == code else None
    report = validate_build(Path(root), previous=previous)
    write_reports(Path(root), report)
    if Path(parts).is_dir():
        write_json(Path(parts) / VALIDATION_KEPT, {"code": code, "tables": report.kept_results()})
    return ({"success": report.success, "checks": len(report.checks), "quarantined": report.quarantined,
             "reused": report.reused}, report.digests)

