"""Names a Prefect user sees: artifact keys derived from the folder a run writes.

In: a folder and what the artifact shows. Out: a key in Prefect's alphabet (lowercase letters, digits,
dashes) that stays the same for the same folder and differs between folders, so two deployments that
build or release into different places keep their own artifacts.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def artifact_key(out: Path | str, what: str) -> str:
    """`kirinuki-<what>-<folder name>-<8 hex of the whole path>` for a local folder or an s3:// URL."""
    where = out if isinstance(out, str) and "://" in out else str(Path(out).resolve())
    name = re.sub(r"[^a-z0-9]+", "-", where.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-") or "build"
    return f"kirinuki-{what}-{name[:40]}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
