"""The build's validate stage, with the last build's results reused for unchanged tables.

In: the unfinished build folder, its parts folder (where the results are kept for the next build) and
the last build's parts. Out: the report's summary and the sha256 of each table as validated; a
critical failure raises ValidationFailed. A table whose file is byte for byte one the last build (same
code) validated keeps that build's results, so Great Expectations is imported only when some table
must be checked again; the document-scoped SQL checks (those relating only rows of one post, the
costliest being every paragraph against its document's text) run only over the documents that build
did not check with the same inputs (kirinuki.validate.checks.DOCUMENT_INPUTS).
"""

from __future__ import annotations

from pathlib import Path

from kirinuki.build.batch import code_digest
from kirinuki.build.plan import VALIDATION_KEPT
from kirinuki.store.files import DATA_DIR, read_json, write_json

CHECKED_DOCUMENTS = "validated-documents.parquet"  # beside VALIDATION_KEPT: the checked documents' DOCUMENT_INPUTS


def validate_files(root: str, parts: str, old_parts: str | None, known: dict[str, str] | None = None,
                   copied: dict | None = None) -> tuple[dict, dict[str, str]]:
    """Run every suite; quarantine warning failures; raise on a critical one (see the module
    docstring). `known`: files' sha256 (by data/… path) their writers computed, not hashed again;
    `copied`: per file (by data/… path), {"from": sha256, "rows": [[start, count], …]}, its rows that
    are rows of that earlier file, as they were (their row-local checks are kept when it passed)."""
    from kirinuki.validate import validate_build, write_reports

    code = code_digest(whole_build=True)
    kept = read_json(Path(old_parts) / VALIDATION_KEPT) if old_parts else None
    same_code = isinstance(kept, dict) and kept.get("code") == code
    previous = kept.get("tables") if same_code else None
    checked = _checked_documents(Path(old_parts)) if same_code and kept.get("documents") else None
    report = validate_build(Path(root), previous=previous, checked=checked, known=known, copied=copied)
    write_reports(Path(root), report)
    if Path(parts).is_dir():
        tables = report.kept_results()
        if tables:  # passed, nothing quarantined: its documents need no document-scoped check again
            _keep_checked_documents(Path(root), Path(parts))
        write_json(Path(parts) / VALIDATION_KEPT, {"code": code, "tables": tables, "documents": bool(tables)})
    return ({"success": report.success, "checks": len(report.checks), "quarantined": report.quarantined,
             "reused": report.reused, "documents_checked_before": checked.num_rows if checked is not None else 0,
             "files_checked_before": _files_checked_before(report, previous or {})},
            report.digests)


def _checked_documents(old_parts: Path):
    import pyarrow.parquet as pq

    from kirinuki.validate.checks import DOCUMENT_INPUTS

    try:
        return pq.read_table(old_parts / CHECKED_DOCUMENTS, columns=list(DOCUMENT_INPUTS))
    except (OSError, ValueError, KeyError):  # missing, unreadable or short of a column: check every document again
        return None


def _keep_checked_documents(root: Path, parts: Path) -> None:
    import pyarrow.parquet as pq

    from kirinuki.store.layout import has_table, read_table
    from kirinuki.validate.checks import DOCUMENT_INPUTS

    if has_table(root / DATA_DIR, "documents"):
        pq.write_table(read_table(root / DATA_DIR, "documents", columns=list(DOCUMENT_INPUTS)),
                       parts / CHECKED_DOCUMENTS)



def _files_checked_before(report, previous: dict) -> int:
    """Year files of tables checked again whose row-local checks were kept (kirinuki.validate.gx_files)."""
    return sum(len(set(files.values()) & set((previous.get(name) or {}).get("local") or {}))
               for name, files in report.table_files.items() if name not in report.reused)
