"""Planning a build: what it depends on, whether it is up to date, and its log.

In: the inputs found, their fingerprints, the parameters, the output folder. Out: the build digest
(identity of everything the tables depend on), the last successful build's summary, the last
build's record of file fingerprints, batches of inputs (a large export in shares of its own), and
the build log (kept beside the output as `<out>.failed.log` when a build fails).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator

from kirinuki import __version__
from kirinuki.build.batch import code_digest
from kirinuki.dedup import DedupConfig
from kirinuki.ingest.posts import export_shares
from kirinuki.ingest.sources import SourceRef
from kirinuki.store.layout import PARTITION_MIN_DOCUMENTS, data_files
from kirinuki.store.files import DATA_DIR, read_json, sha256_file

log = logging.getLogger("kirinuki")

CACHE_DIR = "cache"
DEDUP_STATE = "dedup"  # under CACHE_DIR: the last dedup's output and key (dedup.keep_dedup)
FINGERPRINTS = "fingerprints.json"  # under CACHE_DIR: each input's stat state and fingerprint
VALIDATION_KEPT = "validation.json"  # under CACHE_DIR: the GX results of the tables that passed


def failed_log(out: Path) -> Path:
    return out.parent / f"{out.name}.failed.log"


class _QuietFileHandler(logging.FileHandler):
    """The build log's handler: a record it cannot write (a full disk) is dropped, not printed to
    stderr with a traceback as logging does by default; the build's own error says what failed."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            pass


def _prefect_handler() -> logging.Handler | None:
    """Prefect's API log handler at INFO, when a flow run is going on (none in a plain call)."""
    try:
        from prefect.context import FlowRunContext
        from prefect.logging.handlers import APILogHandler
    except ImportError:
        return None
    if FlowRunContext.get() is None:
        return None
    h = APILogHandler()
    h.setLevel(logging.INFO)
    return h


@contextmanager
def api_logs() -> Iterator[None]:
    """While a flow runs: kirinuki's log lines also go to the flow run's logs on the Prefect server."""
    api = _prefect_handler()
    if api is None:
        yield
        return
    log.setLevel(logging.INFO)
    log.addHandler(api)
    try:
        yield
    finally:
        log.removeHandler(api)
        try:  # send what is queued while the run (and a temporary server) is still there
            api.flush()
        except Exception:  # noqa: BLE001 - logging must never fail a run
            pass


@contextmanager
def build_log(path: Path, keep_on_failure: Path) -> Iterator[None]:
    """Send this run's log records (Prefect's warnings and errors, kirinuki's stage lines) to a
    file in the build folder. The folder is renamed into place with the file still open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _QuietFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with api_logs():  # the same stage lines, in the flow run's logs on the Prefect server
            try:
                yield
            except BaseException as e:
                log.error("build failed: %r", e, exc_info=True)
                raise
    except BaseException:
        handler.flush()
        try:  # a rename needs no free space: the log is kept even when the disk is full
            os.replace(path, keep_on_failure)
        except OSError:
            pass
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def share_exports(refs: list[SourceRef], keys: list[str | None], batch_files: int,
                  workers: int) -> tuple[list[SourceRef], list[str | None], list[list[SourceRef]]]:
    """Batches of refs, `batch_files` each, except that an export large enough to be worth it is
    read in shares (runs of its entries, in order), each share a batch of its own, so that all
    workers parse one big export. The rows keep their order, so the tables do not depend on this."""
    out_refs: list[SourceRef] = []
    out_keys: list[str | None] = []
    out_batches: list[list[SourceRef]] = []
    current: list[SourceRef] = []
    for ref, key in zip(refs, keys):
        try:
            size = os.stat(ref.path).st_size
        except OSError:
            size = 0
        n = export_shares(ref.path, size, max(1, workers) * 4)
        if n == 1:
            current.append(ref)
            out_refs.append(ref)
            out_keys.append(key)
            if len(current) == batch_files:
                out_batches.append(current)
                current = []
            continue
        if current:
            out_batches.append(current)
            current = []
        for k in range(n):
            share = replace(ref, share=(k, n))
            out_batches.append([share])
            out_refs.append(share)
            out_keys.append(key)
    if current:
        out_batches.append(current)
    return out_refs, out_keys, out_batches


def build_digest(keys: list[str | None], refs: list[SourceRef], rejected: list, max_bytes: int,
                 dedup: DedupConfig, drafts: bool = False, partition_min_posts: int | None = None) -> str:
    """Identity of everything a build's tables depend on: code, every input, parameters (the
    partitioning threshold only when it is not the default)."""
    h = hashlib.sha256(json.dumps([__version__, code_digest(whole_build=True), max_bytes, asdict(dedup),
                                   [r.source_path + ":" + r.code for r in rejected]]
                                  + (["drafts"] if drafts else [])
                                  + ([f"partition_min_posts={partition_min_posts}"]
                                     if partition_min_posts not in (None, PARTITION_MIN_DOCUMENTS) else [])).encode())
    for ref, key in zip(refs, keys):
        h.update(f"{ref.rel}\0{key or _stat_signature(ref.path)}\n".encode())
    return h.hexdigest()


def _stat_signature(path: str) -> str:
    """For inputs that are not hashed (too large, not regular, unreadable): what stat says."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"error:{e.errno}"
    return f"stat:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}"


def known_fingerprints(parts: Path, max_bytes: int) -> dict[str, list]:
    """The last build's record of file states and fingerprints (batch.fingerprints)."""
    kept = read_json(parts / FINGERPRINTS)
    return kept.get("files", {}) if isinstance(kept, dict) and kept.get("max_bytes") == max_bytes else {}


def previous_summary(out: Path) -> dict | None:
    """The last build's summary, if it passed validation and its data files are still, byte for
    byte, the ones it validated (their sha256 are in build.json): a build whose tables were
    changed, removed or added to since is never taken as up to date."""
    summary = read_json(out / "build.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("validation"), dict):
        return None
    files = summary.get("files")
    if not summary["validation"].get("success") or not isinstance(files, dict) or not files:
        return None
    results = read_json(out / "validation" / "results.json")
    if not isinstance(results, dict) or results.get("success") is not True or not (out / "views.sql").is_file():
        log.warning("the build in %s has no intact validation results: building again", out)
        return None
    on_disk = {f"{DATA_DIR}/{p.relative_to(out / DATA_DIR).as_posix()}" for p in data_files(out / DATA_DIR)}
    if on_disk != set(files):
        log.warning("the build in %s has other data files than it validated: building again", out)
        return None
    for rel, digest in files.items():
        path = out / rel
        try:
            if path.is_symlink() or not path.is_file() or sha256_file(path) != digest:
                log.warning("%s is not the file that was validated: building again", path)
                return None
        except OSError:
            return None
    return summary
