"""Releases: immutable, versioned, self-describing copies of a validated build.

`make_release` assembles `<dest>/<dataset>-<version>/` in a hidden sibling folder, verifies it from its
own files, renames it into place (never over an existing version) and only then records it in
`versions.json` and points `latest.json` at it. `verify` re-checks a release from its own files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from . import PIPELINE_VERSION, __version__
from .describe import croissant, datapackage, dataset_card, license_text
from .schema import ARROW_TYPES, TEXT_PROFILES, arrow_schema, release_columns, schema_version, spec, tables
from .store import (DATA_DIR, PARQUET_OPTIONS, ROW_GROUP_ROWS, fsync_tree, input_files, locked, sha256_file,
                    write_json)

SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SUMS = "SHA256SUMS"
KEYS_LISTED = 1000  # changed keys listed per table and kind in changes.json
KEYS_SHOWN = 20  # ... and in CHANGELOG.md


class ReleaseError(Exception):
    """A release was refused or failed; the message is one line saying what to do."""


@dataclass(frozen=True)
class Release:
    path: Path | str  # a local folder, or an s3:// URL
    version: str
    manifest: dict
    changes: dict


# ---------------------------------------------------------------- names and checks


def check_version(version: str) -> tuple:
    if not SEMVER.fullmatch(version or ""):
        raise ReleaseError(f"release version {version!r} is not a semantic version like 1.0.0 or 1.1.0-rc.1")
    major, minor, patch, pre = SEMVER.fullmatch(version).group(1, 2, 3, 4)
    # a pre-release sorts before its release; compare pre-release identifiers as text
    return int(major), int(minor), int(patch), (0, pre) if pre else (1, "")


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.fullmatch(name or ""):
        raise ReleaseError(f"dataset name {name!r} must be 1-64 lowercase letters, digits, '-' or '_'")
    return name


def check_build(build: Path) -> dict:
    """The build's summary, if the build passed validation and its data is what was validated."""
    summary_path = build / "build.json"
    if not (build / DATA_DIR).is_dir() or not summary_path.is_file():
        raise ReleaseError(f"{build} is not a finished kirinuki build (no build.json or {DATA_DIR}/); run kirinuki build first")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    results = build / "validation" / "results.json"
    if not results.is_file():
        raise ReleaseError(f"{build} has no validation results; rebuild it with kirinuki build")
    if not json.loads(results.read_text(encoding="utf-8")).get("success") or not summary["validation"]["success"]:
        raise ReleaseError(f"{build} did not pass validation (see {build / 'validation' / 'report.html'}); fix and rebuild")
    files = summary.get("files")
    if not files:
        raise ReleaseError(f"{build} was made by an older kirinuki without data checksums; rebuild it")
    on_disk = {f"{DATA_DIR}/{p.name}" for p in (build / DATA_DIR).glob("*.parquet")}
    for rel in sorted(on_disk | set(files)):
        if rel not in files or rel not in on_disk or sha256_file(build / rel) != files[rel]:
            raise ReleaseError(f"{build / rel} is not the file that was validated; rebuild before releasing")
    if summary.get("schema_version") != schema_version():
        raise ReleaseError(f"{build} was built with another schema version ({summary.get('schema_version')}); rebuild it")
    return summary


# ---------------------------------------------------------------- data files


def write_release_table(src: Path, dest: Path, name: str, profile: str) -> None:
    """Copy a build table, or in the `metadata` profile withhold its quoted text (NULL, with the
    text's sha256 and length in characters beside it). Streams row groups; deterministic."""
    cols = release_columns(spec(name), profile)
    if cols == spec(name).columns:
        shutil.copyfile(src, dest)
        return
    import duckdb

    select = []
    for c in cols:
        if c.derived_from:  # the withheld text's sha256 (a string) or its length (a count)
            base = c.derived_from
            select.append(f'sha256("{base}") AS "{c.name}"' if c.type == "string"
                          else f'length("{base}")::BIGINT AS "{c.name}"')
        elif c.quoted:
            when = "TRUE" if c.quoted == "always" else c.quoted
            select.append(f'CASE WHEN {when} THEN NULL ELSE "{c.name}" END AS "{c.name}"')
        else:
            select.append(f'"{c.name}"')
    schema = arrow_schema(cols)
    con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})
    try:
        reader = con.sql(f"SELECT {', '.join(select)} FROM read_parquet($src)",
                         params={"src": str(src)}).to_arrow_reader(ROW_GROUP_ROWS)
        with pq.ParquetWriter(dest, schema, **PARQUET_OPTIONS) as w:
            for batch in reader:
                if batch.num_rows:
                    w.write_batch(batch.cast(schema), row_group_size=ROW_GROUP_ROWS)
    finally:
        con.close()


# ---------------------------------------------------------------- changes between releases


def _key_sql(pk: tuple[str, ...]) -> str:
    return f'CAST("{pk[0]}" AS VARCHAR)' if len(pk) == 1 else "concat_ws('|', " + ", ".join(f'"{k}"' for k in pk) + ")"


def table_changes(prev: Path | None, new: Path, name: str) -> dict:
    """Rows added, removed, changed (same primary key, other content) and moved (only provenance
    columns such as offsets and source hashes differ) between two files of one table."""
    import duckdb

    new_cols = pq.read_schema(new).names
    n_new = pq.ParquetFile(new).metadata.num_rows
    out: dict = {"added": n_new, "removed": 0, "changed": 0, "moved": 0, "rows": n_new, "keys": {}}
    if prev is None or not prev.exists():
        return out
    prev_cols = pq.read_schema(prev).names
    provenance = {c.name for c in spec(name).columns if c.provenance}
    common = [c for c in new_cols if c in prev_cols]
    content = [c for c in common if c not in provenance]

    def digest(cols: list[str]) -> str:
        return "md5(to_json(struct_pack(" + ", ".join(f'"{c}"' for c in cols) + ")))" if cols else "''"

    key = _key_sql(spec(name).primary_key)
    con = duckdb.connect()
    try:
        got = con.execute(f"""
            WITH a AS (SELECT {key} AS k, {digest(content)} AS c, {digest(common)} AS h FROM read_parquet(?)),
                 b AS (SELECT {key} AS k, {digest(content)} AS c, {digest(common)} AS h FROM read_parquet(?))
            SELECT CASE WHEN a.k IS NULL THEN 'added' WHEN b.k IS NULL THEN 'removed'
                        WHEN a.c <> b.c THEN 'changed' ELSE 'moved' END AS kind,
                   coalesce(a.k, b.k) AS k
            FROM a FULL OUTER JOIN b ON a.k = b.k
            WHERE a.k IS NULL OR b.k IS NULL OR a.h <> b.h ORDER BY kind, k""", [str(prev), str(new)]).fetchall()
    finally:
        con.close()
    out["added"] = 0
    for kind, k in got:
        out[kind] += 1
        keys = out["keys"].setdefault(kind, [])
        if len(keys) < KEYS_LISTED:
            keys.append(k)
    added_cols = [c for c in new_cols if c not in prev_cols]
    removed_cols = [c for c in prev_cols if c not in new_cols]
    if added_cols or removed_cols:
        out["columns"] = {"added": added_cols, "removed": removed_cols}
    return out


def input_changes(prev_data: Path | None, new_data: Path) -> dict:
    """Input files added, removed and changed (by source_sha256), from documents and rejects."""
    new = input_files(new_data)
    if prev_data is None:
        return {"added": sorted(new)[:KEYS_LISTED], "n_added": len(new), "removed": [], "n_removed": 0,
                "changed": [], "n_changed": 0}
    old = input_files(prev_data)
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(p for p in set(new) & set(old) if new[p] != old[p])
    return {"added": added[:KEYS_LISTED], "n_added": len(added), "removed": removed[:KEYS_LISTED],
            "n_removed": len(removed), "changed": changed[:KEYS_LISTED], "n_changed": len(changed)}


def changelog_entry(version: str, date: str, changes: dict) -> str:
    prev = changes["previous_version"]
    i = changes["inputs"]
    lines = [f"## {version} — {date}", ""]
    if prev is None:
        lines.append(f"First release: {i['n_added']:,} input files; every row is new.")
    else:
        lines.append(f"Compared with {prev}. Input files: {i['n_added']:,} added, {i['n_removed']:,} removed, "
                     f"{i['n_changed']:,} changed.")
        for kind in ("added", "removed", "changed"):
            shown = i[kind][:KEYS_SHOWN]
            if shown:
                more = f" and {i['n_' + kind] - len(shown):,} more" if i["n_" + kind] > len(shown) else ""
                lines.append(f"- {kind}: " + ", ".join(f"`{p}`" for p in shown) + more)
    lines += ["", "| table | rows | added | removed | changed | moved |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in changes["tables"].items():
        lines.append(f"| {name} | {c['rows']:,} | {c['added']:,} | {c['removed']:,} | {c['changed']:,} | {c['moved']:,} |")
    lines += ["", "Changed: same key, other content. Moved: only provenance differs (offsets, source hashes "
                  "and sizes), e.g. paragraphs after an edit in the same post."]
    if prev is not None:
        detail = []
        for name, c in changes["tables"].items():
            for kind in ("added", "removed", "changed"):
                keys = c["keys"].get(kind, [])[:KEYS_SHOWN]
                if keys:
                    more = f" and {c[kind] - len(keys):,} more" if c[kind] > len(keys) else ""
                    detail.append(f"- {name} {kind}: " + ", ".join(f"`{k}`" for k in keys) + more)
            if c.get("columns"):
                detail.append(f"- {name} columns added {c['columns']['added']}, removed {c['columns']['removed']}")
        if detail:
            lines += ["", "Rows by primary key:", ""] + detail
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the release folder


def release_date(given: str | None) -> str:
    if given:
        if not DATE.fullmatch(given):
            raise ReleaseError(f"release date {given!r} is not YYYY-MM-DD")
        return given
    import datetime as dt

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return now.date().isoformat()


def assemble(build: Path, summary: dict, out: Path, dataset: str, version: str, profile: str, date: str,
             previous: tuple[str, Path] | None, homepage: str | None = None) -> tuple[dict, dict]:
    """Write every file of a release into `out` (an empty folder). Returns (manifest, changes)."""
    (out / DATA_DIR).mkdir(parents=True)
    names = [n for n in tables() if (build / DATA_DIR / f"{n}.parquet").exists()]
    table_meta = {}
    for name in names:
        rel = f"{DATA_DIR}/{name}.parquet"
        write_release_table(build / rel, out / rel, name, profile)
        table_meta[name] = {
            "path": rel, "rows": pq.ParquetFile(out / rel).metadata.num_rows, "bytes": (out / rel).stat().st_size,
            "sha256": sha256_file(out / rel), "primary_key": list(spec(name).primary_key),
            "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable, "description": c.description}
                        for c in release_columns(spec(name), profile)]}
    (out / "validation").mkdir()
    for f in ("results.json", "report.html"):
        shutil.copyfile(build / "validation" / f, out / "validation" / f)
    prev_data = previous[1] / DATA_DIR if previous else None
    changes = {"previous_version": previous[0] if previous else None, "version": version,
               "inputs": input_changes(prev_data, out / DATA_DIR),
               "tables": {n: table_changes(prev_data / f"{n}.parquet" if prev_data else None, out / DATA_DIR / f"{n}.parquet", n)
                          for n in names}}
    manifest = {
        "dataset": dataset, "version": version, "release_date": date, "text_profile": profile,
        "kirinuki_version": __version__, "pipeline_version": PIPELINE_VERSION, "schema_version": schema_version(),
        "build_kirinuki_version": summary["kirinuki_version"], "previous_version": changes["previous_version"],
        **({"homepage": homepage} if homepage else {}),
        "source": {"corpus_sha256": summary["corpus_sha256"], "documents": summary["inputs"]["read"],
                   "bytes": summary["inputs"]["bytes"], "files": summary["inputs"]["files"],
                   "rejects": sum(summary["rejects"].values())},
        "build": {"parameters": summary["parameters"], "dedup": summary["dedup"].get("config", {}),
                  "rejects": summary["rejects"], "flags": summary["flags"],
                  "unknown_outlets": summary["unknown_outlets"], "unresolved_dates": summary["unresolved_dates"],
                  "quarantined": summary["validation"]["quarantined"]},
        "tables": table_meta,
    }
    entry = changelog_entry(version, date, changes)
    old_log = ""
    if previous and (previous[1] / "CHANGELOG.md").exists():
        old_log = (previous[1] / "CHANGELOG.md").read_text(encoding="utf-8").split("\n", 2)[2].lstrip("\n")
    (out / "CHANGELOG.md").write_text(f"# Changelog of {dataset}\n\n{entry}\n{old_log}".rstrip("\n") + "\n",
                                      encoding="utf-8")
    write_json(out / "changes.json", changes)
    write_json(out / "manifest.json", manifest)
    write_json(out / "croissant.json", croissant(manifest))
    write_json(out / "datapackage.json", datapackage(manifest))
    (out / "README.md").write_text(dataset_card(manifest, entry), encoding="utf-8")
    (out / "LICENSE.md").write_text(license_text(manifest), encoding="utf-8")
    write_sums(out)
    return manifest, changes


def write_sums(root: Path) -> None:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != SUMS)
    (root / SUMS).write_text("".join(f"{sha256_file(root / f)}  {f}\n" for f in files), encoding="utf-8")


# ---------------------------------------------------------------- verify


def verify(root: Path) -> list[str]:
    """Every problem found re-checking a release from its own files, one line each naming the file
    (an empty list means the release is intact)."""
    problems: list[str] = []
    sums = root / SUMS
    if not sums.is_file():
        return [f"{SUMS}: missing (not a kirinuki release, or an unfinished one)"]
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = re.fullmatch(r"([0-9a-f]{64})  (\S.*)", line)
        if not m or not _safe_relpath(m.group(2)):
            problems.append(f"{SUMS}: line {n} is not '<sha256>  <relative path>'")
            continue
        listed[m.group(2)] = m.group(1)
    on_disk = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            problems.append(f"{rel}: is a symlink (a release holds only plain files)")
        elif p.is_file() and rel != SUMS:
            on_disk.add(rel)
    for rel in sorted(set(listed) - on_disk):
        problems.append(f"{rel}: listed in {SUMS} but missing")
    for rel in sorted(on_disk - set(listed)):
        problems.append(f"{rel}: not listed in {SUMS} (added after the release was made)")
    for rel in sorted(set(listed) & on_disk):
        if sha256_file(root / rel) != listed[rel]:
            problems.append(f"{rel}: sha256 does not match {SUMS} (the file was changed)")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        declared = manifest["tables"]
    except (OSError, ValueError, KeyError):
        return problems + ["manifest.json: missing or unreadable"]
    for name, t in declared.items():
        path = root / t["path"]
        if not _safe_relpath(t["path"]) or not path.is_file():
            problems.append(f"{t['path']}: table {name} is missing")
            continue
        try:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            problems.append(f"{t['path']}: not readable as Parquet ({type(e).__name__})")
            continue
        want = [(c["name"], ARROW_TYPES.get(c["type"]), c["nullable"]) for c in t["columns"]]
        got = [(f.name, f.type, f.nullable) for f in schema]
        if want != got:
            problems.append(f"{t['path']}: schema differs from manifest.json ({_schema_diff(want, got)})")
        if pf.metadata.num_rows != t["rows"]:
            problems.append(f"{t['path']}: {pf.metadata.num_rows:,} rows, manifest.json says {t['rows']:,}")
        if listed.get(t["path"]) not in (None, t["sha256"]):
            problems.append(f"{t['path']}: sha256 in manifest.json differs from {SUMS}")
    return problems


def _schema_diff(want: list, got: list) -> str:
    for w, g in zip(want, got):
        if w != g:
            return f"column {g[0]}: {g[1]}{'' if g[2] else ' not null'}, expected {w[0]}: {w[1]}{'' if w[2] else ' not null'}"
    return f"{len(got)} columns, expected {len(want)}"


def _safe_relpath(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)


# ---------------------------------------------------------------- history: versions.json and latest.json


def read_history(dest: Path) -> list[dict]:
    path = dest / "versions.json"
    return json.loads(path.read_text(encoding="utf-8"))["releases"] if path.exists() else []


def _write_atomic_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_json(tmp, obj)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def record(dest: Path, entry: dict) -> None:
    """Add a verified release to versions.json, then point latest.json at it."""
    history = [h for h in read_history(dest) if h["name"] != entry["name"]] + [entry]
    history.sort(key=lambda h: (h["dataset"], check_version(h["version"])))
    _write_atomic_json(dest / "versions.json", {"releases": history})
    _write_atomic_json(dest / "latest.json", entry)


def _entry(path: Path, manifest: dict) -> dict:
    return {"dataset": manifest["dataset"], "version": manifest["version"], "name": path.name,
            "path": path.name, "release_date": manifest["release_date"], "text_profile": manifest["text_profile"],
            "sha256sums": sha256_file(path / SUMS)}


def recover(dest: Path, dataset: str) -> None:
    """Under the lock: drop unfinished release folders; record a complete release whose run died
    between the rename and the history update (it was verified before the rename)."""
    for tmp in dest.glob(f".{dataset}-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    known = {h["name"] for h in read_history(dest)}
    for d in sorted(dest.glob(f"{dataset}-*"), key=lambda p: _version_key(p.name, dataset)):
        if d.is_dir() and d.name not in known and SEMVER.fullmatch(d.name[len(dataset) + 1:]) and not verify(d):
            record(dest, _entry(d, json.loads((d / "manifest.json").read_text(encoding="utf-8"))))


def _version_key(name: str, dataset: str) -> tuple:
    try:
        return check_version(name[len(dataset) + 1:])
    except ReleaseError:
        return (-1,)


def latest(dest: Path, dataset: str) -> dict | None:
    same = [h for h in read_history(dest) if h["dataset"] == dataset]
    return max(same, key=lambda h: check_version(h["version"])) if same else None


def make_release(build: Path, version: str, dest: Path, profile: str = "metadata", dataset: str = "kirinuki",
                 date: str | None = None, homepage: str | None = None) -> Release:
    """Release a validated build as `<dest>/<dataset>-<version>/` (see the module docstring)."""
    key = check_version(version)
    check_dataset_name(dataset)
    if profile not in TEXT_PROFILES:
        raise ReleaseError(f"unknown text profile {profile!r}; use {' or '.join(TEXT_PROFILES)}")
    date = release_date(date)
    summary = check_build(build)
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-{version}"
    final = dest / name
    with locked(dest / dataset):
        recover(dest, dataset)
        if final.exists():
            raise ReleaseError(f"{final} already exists; releases are immutable, choose a new version")
        prev = latest(dest, dataset)
        if prev and check_version(prev["version"]) >= key:
            raise ReleaseError(f"version {version} is not newer than the latest release {prev['version']}")
        tmp = dest / f".{name}.tmp-{os.getpid()}"
        try:
            manifest, changes = assemble(build, summary, tmp, dataset, version, profile, date,
                                         (prev["version"], dest / prev["path"]) if prev else None, homepage)
            problems = verify(tmp)
            if problems:
                raise ReleaseError(f"the assembled release does not verify: {problems[0]}")
            fsync_tree(tmp)
            os.rename(tmp, final)  # an existing `final` (impossible under the lock) would make this fail
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        record(dest, _entry(final, manifest))
    return Release(final, version, manifest, changes)

