"""One batch of input files -> Arrow parts, which are also the cache of the next build. Knows nothing
of Prefect, so a worker process imports only this and the stages it runs.

In: refs of input files (and what the last build's cache knows of them). Out: the batch's parts
and index (kirinuki.build.parts): for every post its cache key (pipeline code digest + the post's
name + sha256 of its bytes and sidecar, or of its entry in an export), its size, its dedup digest,
the part that holds its rows and its row range there in each per-file table; every reject's row.
A build keeps its parts under `<out>/cache`; the next build looks each post's key up there and,
on a hit, neither parses the post nor copies its rows: it links the part that holds them into its
own parts and points at them (a part is never changed once written). Only the posts parsed again
go into a new part, so a rebuild after a small change writes little, and a new download of an
export re-parses only its new and changed entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache

import pyarrow as pa

from kirinuki import PIPELINE_VERSION
from kirinuki.clean.normalize import clean_document
from kirinuki.build.parts import PART_TABLES, empty_part, index_path, link_part, open_part, part_path, write_ipc
from kirinuki.build.reuse import Hit, PartCheck, container_key
from kirinuki.ingest.posts import EXPORTS, posts_of
from kirinuki.ingest.open_safely import sidecar_str
from kirinuki.ingest.sources import Reject, SourceRef, fingerprint_of, read_plain_file, read_sidecar, read_source
from kirinuki.parse.records import reject_row, source_rows
from kirinuki.resources import package_files
from kirinuki.schema import spec
from kirinuki.store.files import to_table

# What can change a file's rows: any edit to these parts of the package invalidates the cache.
ROW_SOURCES = ("__init__.py", "resources.py", "schema.py", "ingest", "parse", "clean", "store", "build",
               "schemas", "reference")
MAX_PARTS = 4  # a batch's rows lie in at most this many parts (its own, and earlier builds' it links)
SHIPPED_DATA = (".toml", ".tsv", ".txt", ".json")


@cache
def code_digest(whole_build: bool = False) -> str:
    """sha256 over everything that shapes a file's rows: code, schemas, reference data. With
    `whole_build`, over everything that shapes any table: the whole package (every module, the
    flows and the validation suites)."""
    h = hashlib.sha256(f"pipeline {PIPELINE_VERSION}\n".encode())
    for rel, p in package_files(suffixes=(".py",) + SHIPPED_DATA, under=() if whole_build else ROW_SOURCES):
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(ref: SourceRef, max_bytes: int) -> str | None:
    """sha256 of a file's bytes and its sidecar's; None for what is not cached (not a regular
    file, too large, unreadable: read_source rejects those again, cheaply). Read the way
    read_source reads: no link followed at open time, no FIFO waited on."""
    try:
        return fingerprint_of(read_plain_file(ref.path, max_bytes, ref.root), read_sidecar(ref.path))
    except OSError:
        return None


# A file changed this recently may change again within the file system's timestamp granularity
# without its stat changing: its state is not recorded, so it is hashed again next time.
RACY_NS = 2_000_000_000


def file_state(ref: SourceRef) -> list[int] | None:
    """What stat says of a regular file and its sidecar: device, inode, size, mtime and ctime (ns).
    Any write to a file sets its ctime to the time of the write, so an unchanged state means
    unchanged bytes (git trusts the same fields)."""
    try:
        st = os.stat(ref.path)
        if not stat.S_ISREG(st.st_mode):
            return None
        side = []
        if ref.sidecar is not False:  # (False: its folder's listing had none)
            try:
                sc = os.stat(sidecar_str(ref.path))
                side = [sc.st_ino, sc.st_size, sc.st_mtime_ns, sc.st_ctime_ns]
            except FileNotFoundError:
                pass
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns] + side


def fingerprints(refs: list[SourceRef], max_bytes: int, known: dict[str, list]) -> tuple[list[str | None], dict, int]:
    """The fingerprint of every file, the record for the next build, and how many files were read.
    A file whose state is the one `known` (the last build's record) holds for its path keeps the
    fingerprint recorded with it, unread; a file changed in the last RACY_NS before this call is
    not recorded."""
    fps: list[str | None] = []
    record: dict[str, list] = {}
    read = 0
    racy = time.time_ns() - RACY_NS
    for ref in refs:
        state = file_state(ref)
        prev = known.get(ref.rel)
        if state is not None and prev is not None and prev[0] == state:
            fp = prev[1]
        else:
            fp = fingerprint(ref, max_bytes)
            read += 1
        fps.append(fp)
        if fp is not None and state is not None and max(state[3:5] + state[7:9]) < racy:  # mtimes, ctimes
            record[ref.rel] = [state, fp]
    return fps, record, read


def cache_key(rel: str, fp: str | None, max_bytes: int, convention: str | None = None) -> str | None:
    """The key a file's (or an entry's) rows are cached under: the code, its path, its bytes, the
    file limit and the convention pinned for it."""
    if fp is None:
        return None
    pin = f"\0convention={convention}" if convention else ""
    return hashlib.sha256(f"{code_digest()}\0{rel}\0{fp}\0{max_bytes}{pin}".encode()).hexdigest()


# What the dedup stage reads of a file's rows: if these are unchanged for every file, so is its output.
DEDUP_FIELDS = ("excerpt_id", "doc_id", "headline", "body_norm", "published_date", "outlet_id")


_SHORT_DEDUP_FIELDS = tuple(f for f in DEDUP_FIELDS if f != "body_norm")


def dedup_digest(doc_rows: dict[str, list[dict]]) -> str:
    """sha256 of what dedup reads of one parsed file: its excerpts' DEDUP_FIELDS and its
    documents' publication dates (an edit to the commentary alone leaves it unchanged). The body
    goes in as its UTF-8 bytes after their length, not through repr, which checks every
    character of it for printability (half the time of this digest)."""
    h = hashlib.sha256(repr([(d["doc_id"], d["published_date"]) for d in doc_rows["documents"]]).encode())
    for e in doc_rows["excerpts"]:
        h.update(repr(tuple(e[f] for f in _SHORT_DEDUP_FIELDS)).encode())
        body = e["body_norm"]
        if body is None:
            h.update(b"N")
        else:
            data = body.encode()
            h.update(b"B%d:" % len(data))
            h.update(data)
    return h.hexdigest()


def file_stats(doc_rows: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """What the build summary counts of one parsed file: its flags, outlet names not in the
    reference table, date mentions left unresolved (kept in the index for when it is not parsed)."""
    flags = Counter(f for name in ("documents", "excerpts") for r in doc_rows[name] for f in r["flags"] or ())
    unknown = Counter(r["outlet_raw"] for name in ("excerpts", "citations") for r in doc_rows[name]
                      if r["outlet_raw"] and r["outlet_id"] is None)
    unresolved = Counter(r["rule"] for r in doc_rows["date_mentions"] if r["date_start"] is None)
    return {k: dict(c) for k, c in (("flags", flags), ("unknown_outlets", unknown),
                                    ("unresolved_dates", unresolved)) if c}


@dataclass(slots=True)
class Post:
    """One post of a batch: parsed now (`rows`) or found in the old parts (`hit`)."""

    key: str | None
    name: str  # what names it when it has no key
    size: int
    dedup: str
    stats: dict
    rows: dict | None = None
    hit: Hit | None = None
    container: str | None = None  # the export's container_key, for an entry of an export
    export: str | None = None  # the export's relative path
    position: int | None = None  # the entry's number in the export, as read now


def _parse(src, seconds: Counter, convention: str | None = None) -> dict:
    t = time.perf_counter()
    doc_rows = source_rows(src, convention)
    seconds["parse"] += time.perf_counter() - t
    t = time.perf_counter()
    clean_document(doc_rows)
    seconds["clean"] += time.perf_counter() - t
    return doc_rows


def run_batch(refs: list[SourceRef], parts: str, batch_no: int, max_bytes: int,
              keys: list[str | None] | None = None, hits: list[Hit | None] | None = None,
              old_parts: str | None = None, entry_hits: list[dict | None] | None = None,
              keep_drafts: bool = False) -> dict:
    """Read, decode, parse and clean one batch of files, or find their rows in `old_parts`; write
    the batch's index under `parts`, and a part with the rows of the posts parsed. An export is
    one file of many posts: unchanged, all its posts are hits; changed, each entry is looked up in
    `entry_hits` (that export's entries in the old parts) and only new or changed ones are parsed.
    Posts found in the old parts keep their rows where they are, unread: those parts are linked
    into `parts`, unless the batch's rows would then lie in more than MAX_PARTS parts (then every
    row is written into one new part). Returns small stats, never the rows."""
    keys = list(keys) if keys else [None] * len(refs)
    hits = hits or [None] * len(refs)
    entry_hits = entry_hits or [None] * len(refs)
    schemas = {name: spec(name).part_schema for name in PART_TABLES}
    seconds: Counter = Counter()
    check = PartCheck(old_parts, schemas)
    posts: list[Post] = []
    rejects: list[tuple[str | None, dict, str | None, str | None]] = []  # key, row, container, export
    cached = 0
    for ref, key, hit, known in zip(refs, keys, hits, entry_hits):
        t = time.perf_counter()
        usable = check.ok(hit)
        seconds["cache"] += time.perf_counter() - t
        if usable and hit.members:  # an export unchanged since the last build: all of it as it was
            for m in hit.members:
                cached += 1
                if m.reject is not None:
                    rejects.append((m.key, m.reject, hit.key, ref.rel))
                else:
                    posts.append(Post(m.key, m.key, m.size, m.dedup, m.stats, hit=m, container=hit.key,
                                      export=ref.rel, position=m.position))
            continue
        if usable:
            cached += 1
            if hit.reject is not None:
                rejects.append((key, hit.reject, None, None))
            else:
                posts.append(Post(key, ref.rel, hit.size, hit.dedup, hit.stats, hit=hit))
            continue
        t = time.perf_counter()
        src = read_source(ref, max_bytes)
        seconds["read"] += time.perf_counter() - t
        if isinstance(src, Reject):
            rejects.append((key, reject_row(src), None, None))
            continue
        # rows are kept under the key of the bytes that were read: a file that changed after it
        # was fingerprinted is not cached under its old bytes' key with its new bytes' rows
        file_key = cache_key(ref.rel, src.fingerprint, max_bytes, ref.convention) if src.fingerprint else None
        t = time.perf_counter()
        fmt, found = posts_of(src, keep_drafts, ref.share)
        seconds["read"] += time.perf_counter() - t
        if fmt not in EXPORTS and ref.share[0]:
            continue  # not an export after all: its first share holds the whole file
        if fmt not in EXPORTS:
            one = found[0]
            if isinstance(one, Reject):
                rejects.append((file_key, reject_row(one), None, None))
            else:
                rows = _parse(one, seconds, ref.convention)
                posts.append(Post(file_key, ref.rel, one.size, dedup_digest(rows), file_stats(rows), rows))
            continue
        ck = container_key(file_key, keep_drafts, ref.share) if file_key else None
        for one in found:
            if isinstance(one, Reject):
                rkey = cache_key(one.source_path, one.source_sha256, max_bytes) if ck else None
                rejects.append((rkey, reject_row(one), ck, ref.rel))
                continue
            ekey = cache_key(one.key, one.fingerprint, max_bytes, ref.convention) if ck else None
            old = (known or {}).get(ekey)
            if old is not None and check.ok(old):
                cached += 1
                posts.append(Post(ekey, one.key, old.size, old.dedup, old.stats, hit=old, container=ck,
                                  export=ref.rel, position=one.entry.position))
                continue
            rows = _parse(one, seconds, ref.convention)
            posts.append(Post(ekey, one.key, one.size, dedup_digest(rows), file_stats(rows), rows, container=ck,
                              export=ref.rel, position=one.entry.position))
    t = time.perf_counter()
    old_used = {p.hit.part for p in posts if p.hit is not None}
    parsed = [p for p in posts if p.rows is not None]
    rewrite = not old_used or len(old_used) + bool(parsed) > MAX_PARTS  # every row into one new part
    mine = "part-{:06d}-{}".format(batch_no, hashlib.sha256("\0".join(
        p.key or p.name for p in posts if rewrite or p.rows is not None).encode()).hexdigest()[:12])
    # the parsed posts' rows become Arrow in one conversion per table
    fresh = {name: to_table(name, [r for p in parsed for r in p.rows[name]], final=False) for name in PART_TABLES}
    only_fresh = bool(parsed) and len(parsed) == len(posts)  # (then `mine` holds `fresh` as it is: no slices)
    opened: dict[tuple[str, str], pa.Table] = {}
    pieces: dict[str, list[pa.Table]] = {name: [] for name in PART_TABLES}  # what goes into `mine`
    offsets = dict.fromkeys(PART_TABLES, 0)  # into fresh
    filled = dict.fromkeys(PART_TABLES, 0)  # into mine
    files = []
    for p in posts:
        entry = {"key": p.key, "size": p.size, "dedup": p.dedup, "stats": p.stats, "part": mine, "rows": []}
        if p.container:
            entry.update(container=p.container, position=p.position, **{"in": p.export})
        if p.rows is None and not rewrite:  # a hit stays where it is
            entry.update(part=p.hit.part, rows=list(p.hit.rows))
        else:
            for k, name in enumerate(PART_TABLES):
                if p.rows is None:  # a hit copied into the new part (compaction)
                    if (name, p.hit.part) not in opened:
                        opened[name, p.hit.part] = open_part(old_parts, name, p.hit.part)
                    piece = opened[name, p.hit.part].slice(*p.hit.rows[k])
                    pieces[name].append(piece)
                    count = len(piece)
                else:
                    count = len(p.rows[name])
                    if not only_fresh:
                        pieces[name].append(fresh[name].slice(offsets[name], count))
                        offsets[name] += count
                entry["rows"].append((filled[name], count))
                filled[name] += count
        files.append(entry)
    seconds["to_arrow"] += time.perf_counter() - t
    t = time.perf_counter()
    for name in PART_TABLES:
        if rewrite or parsed:
            # one record batch per part: many small ones (a slice per file) make LZ4 and IPC slow
            new = fresh[name].combine_chunks() if only_fresh else \
                pa.concat_tables(pieces[name]).combine_chunks() if pieces[name] else empty_part(name)
            write_ipc(part_path(parts, name, mine), new)
        if not rewrite:
            for part in sorted(old_used):
                link_part(old_parts, parts, name, part)
    index = {"files": files, "rejects": [{"key": k, "row": r, **({"container": c, "in": e} if c else {})}
                                         for k, r, c, e in rejects if k]}
    idx = index_path(parts, batch_no)
    idx.parent.mkdir(parents=True, exist_ok=True)
    idx.write_text(json.dumps(index, default=str), encoding="utf-8")  # last: the batch is complete
    seconds["write_parts"] += time.perf_counter() - t
    totals: dict[str, Counter] = {k: Counter() for k in ("flags", "unknown_outlets", "unresolved_dates")}
    for p in posts:
        for k, c in p.stats.items():
            totals[k].update(c)
    return {"files": sum(1 for r in refs if not r.share[0]), "read": len(posts), "parsed": len(parsed), "bytes": sum(p.size for p in posts),
            "dedup_digests": [p.dedup for p in posts], "cache_hits": cached,
            "rejects": [r for _, r, *_ in rejects], **{k: dict(c) for k, c in totals.items()}, "seconds": dict(seconds)}
