"""Dedup's output kept from one build to the next.

In: the digests of what dedup reads of each file, its parameters and code. Out: a key; `keep_dedup`
stores a build's dedup output under that key, and `reuse_dedup` links it into the next build when
the key is unchanged (its files are checked against their sha256 first)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kirinuki.dedup.memo import ARTICLE_KEYS
from kirinuki.dedup.model import DedupConfig
from kirinuki.dedup.sketches import SKETCH_FILES

# ---------------------------------------------------------------- reusing the last build's output

DEDUP_TABLES = ("articles", "article_paragraphs", "article_quotes", "dedup_links")
STATE_FILES = (ARTICLE_KEYS,) + SKETCH_FILES + tuple(f"{name}.parquet" for name in DEDUP_TABLES)  # kept, with their sha256
STATE_FILE = "dedup.json"  # written last: a state folder without it is incomplete


def dedup_key(file_digests: list[str], cfg: DedupConfig, code: str) -> str:
    """Identity of everything dedup's output depends on: the code, its parameters and, in order,
    each file's batch.dedup_digest (what dedup reads of it)."""
    h = hashlib.sha256(json.dumps([code, cfg.as_dict()], sort_keys=True).encode())
    for d in file_digests:
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def keep_dedup(root: str, state: str, key: str, stats: dict) -> None:
    """Keep this build's dedup output in `state` (under the build's cache) for the next build:
    the article keys and sketches move there, its tables are linked there, the key and stats last."""
    from kirinuki.store.files import DATA_DIR, link_file, sha256_files, write_json

    out, st = Path(root), Path(state)
    st.mkdir(parents=True, exist_ok=True)
    for kept in (ARTICLE_KEYS,) + SKETCH_FILES:
        os.replace(out / kept, st / kept)
    for name in DEDUP_TABLES:
        link_file(out / DATA_DIR / f"{name}.parquet", st / f"{name}.parquet")
    write_json(st / STATE_FILE, {"key": key, "stats": stats,
                                 "sha256": dict(zip(STATE_FILES, sha256_files([st / f for f in STATE_FILES])))})


def reuse_dedup(old_state: str, root: str, state: str, key: str) -> dict | None:
    """When the last build's dedup ran on exactly the same input (same key), put its output in
    this build (tables under `root`, state under `state`) and return its stats; else None."""
    from kirinuki.store.files import DATA_DIR, link_file, read_json, write_json

    old, st, data = Path(old_state), Path(state), Path(root) / DATA_DIR
    saved = read_json(old / STATE_FILE)
    if not isinstance(saved, dict) or saved.get("key") != key or not trusted_state(old):
        return None
    st.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    for f in STATE_FILES:
        link_file(old / f, st / f)
    for name in DEDUP_TABLES:
        link_file(st / f"{name}.parquet", data / f"{name}.parquet")
    write_json(st / STATE_FILE, saved)
    return saved["stats"]


def kept_state_digests(state: str | Path) -> dict[str, str]:
    """The sha256 of dedup's tables (by data/… path) as recorded when this build kept its state
    (keep_dedup hashed them; reuse_dedup checked them): the same files as the build's data/."""
    from kirinuki.store.files import DATA_DIR, read_json

    saved = read_json(Path(state) / STATE_FILE)
    sha = saved.get("sha256") if isinstance(saved, dict) else None
    if not isinstance(sha, dict):
        return {}
    return {f"{DATA_DIR}/{name}.parquet": sha[f"{name}.parquet"] for name in DEDUP_TABLES if f"{name}.parquet" in sha}


def trusted_state(state: str | Path) -> bool:
    """Whether a kept dedup state is complete and every file of it still has its recorded sha256
    (a damaged file is not trusted: dedup runs again, and keeps no article)."""
    from kirinuki.store.files import read_json, sha256_files

    saved = read_json(Path(state) / STATE_FILE)
    try:
        return isinstance(saved, dict) and [saved["sha256"][f] for f in STATE_FILES] == sha256_files(
            [Path(state) / f for f in STATE_FILES])
    except (OSError, KeyError, TypeError):
        return False
