"""Assemble: every file of one release, written into an empty folder.

In: a validated build, its summary, the text profile, the previous release. Out: data/*.parquet
(quoted text withheld in the metadata profile), validation results, manifest.json, changes.json,
CHANGELOG.md, croissant.json, datapackage.json, the dataset card, LICENSE.md and SHA256SUMS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki import PIPELINE_VERSION, __version__
from kirinuki.release.changes import article_continuity, changelog_entry, input_changes, table_changes
from kirinuki.release.checks import SUMS
from kirinuki.release.describe import croissant, datapackage, dataset_card, license_text
from kirinuki.release.gx_suites import write_suites
from kirinuki.schema import arrow_schema, release_columns, schema_version, spec, tables
from kirinuki.store.files import DATA_DIR, PARQUET_OPTIONS, ROW_GROUP_ROWS, sha256_file, write_json
from kirinuki.store.layout import has_table, table_files

# ---------------------------------------------------------------- data files


def write_release_table(src: list[Path], dest: Path, name: str, profile: str) -> None:
    """Copy a build table (its one file, or its year files merged into one, in order), or in the
    `metadata` profile withhold its quoted text (NULL, with the text's sha256 and length in
    characters beside it). Streams row groups; deterministic."""
    cols = release_columns(spec(name), profile)
    whole = cols == spec(name).columns
    if whole and len(src) == 1:
        shutil.copyfile(src[0], dest)
        return
    import duckdb

    group = spec(name).row_group_rows if whole else ROW_GROUP_ROWS  # a merged table: as the build writes it
    select = []
    for c in cols:
        if c.derived_from:  # the withheld text's sha256 (a string) or its length (a count)
            base = c.derived_from
            select.append(f'sha256("{base}") AS "{c.name}"' if c.type == "string"
                          else f'length("{base}")::BIGINT AS "{c.name}"')
        elif c.quoted and not whole:
            when = "TRUE" if c.quoted == "always" else c.quoted
            select.append(f'CASE WHEN {when} THEN NULL ELSE "{c.name}" END AS "{c.name}"')
        else:
            select.append(f'"{c.name}"')
    schema = arrow_schema(cols)
    con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})
    try:
        reader = con.sql(f"SELECT {', '.join(select)} FROM read_parquet($src)",
                         params={"src": [str(p) for p in src]}).to_arrow_reader(group)
        with pq.ParquetWriter(dest, schema, **PARQUET_OPTIONS) as w:
            pending: list[pa.RecordBatch] = []
            for batch in reader:  # DuckDB's batches may be shorter: fixed row groups all the same
                pending.append(batch)
                while sum(b.num_rows for b in pending) >= group:
                    t = pa.Table.from_batches(pending).combine_chunks()
                    w.write_table(t.slice(0, group).cast(schema), row_group_size=group)
                    pending = t.slice(group).to_batches()
            rest = [b for b in pending if b.num_rows]
            if rest:
                w.write_table(pa.Table.from_batches(rest).cast(schema), row_group_size=group)
    finally:
        con.close()


# ---------------------------------------------------------------- the release folder


def release_overview(build: Path, out: Path) -> dict | None:
    """The build's overview page, and its charts drawn as images/*.png for the card; None for a
    build made before there were overviews."""
    from kirinuki.overview import PAGE, write_images

    if not (build / PAGE).is_file():
        return None
    shutil.copyfile(build / PAGE, out / PAGE)
    return {"page": PAGE, "images": write_images(build, out)}


def assemble(build: Path, summary: dict, out: Path, dataset: str, version: str, profile: str, date: str,
             previous: tuple[str, Path] | None, homepage: str | None = None,
             about: dict | None = None) -> tuple[dict, dict]:
    """Write every file of a release into `out` (an empty folder). Returns (manifest, changes)."""
    about = about or {}
    home = homepage or about.get("homepage")  # --homepage wins over release.toml's
    (out / DATA_DIR).mkdir(parents=True)
    names = [n for n in tables() if has_table(build / DATA_DIR, n)]
    table_meta = {}
    for name in names:
        rel = f"{DATA_DIR}/{name}.parquet"  # a table a build wrote by year is one file in a release
        write_release_table(table_files(build / DATA_DIR, name), out / rel, name, profile)
        table_meta[name] = {
            "path": rel, "rows": pq.ParquetFile(out / rel).metadata.num_rows, "bytes": (out / rel).stat().st_size,
            "sha256": sha256_file(out / rel), "primary_key": list(spec(name).primary_key),
            "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable, "description": c.description}
                        for c in release_columns(spec(name), profile)]}
    suites_left_out = write_suites(out, names, profile)
    (out / "validation").mkdir()
    for f in ("results.json", "report.html"):
        shutil.copyfile(build / "validation" / f, out / "validation" / f)
    overview = release_overview(build, out)
    prev_data = previous[1] / DATA_DIR if previous else None
    changes = {"previous_version": previous[0] if previous else None, "version": version,
               "inputs": input_changes(prev_data, out / DATA_DIR),
               "tables": {n: table_changes(prev_data / f"{n}.parquet" if prev_data else None, out / DATA_DIR / f"{n}.parquet", n)
                          for n in names},
               "articles_continued": article_continuity(prev_data, out / DATA_DIR)}
    manifest = {
        "dataset": dataset, "version": version, "release_date": date, "text_profile": profile,
        "kirinuki_version": __version__, "pipeline_version": PIPELINE_VERSION, "schema_version": schema_version(),
        "build_kirinuki_version": summary["kirinuki_version"], "previous_version": changes["previous_version"],
        **({"homepage": home} if home else {}),
        "about": {k: v for k, v in about.items() if k != "homepage"},
        "source": {"corpus_sha256": summary["corpus_sha256"], "documents": summary["inputs"]["read"],
                   "bytes": summary["inputs"]["bytes"], "files": summary["inputs"]["files"],
                   "rejects": sum(summary["rejects"].values())},
        "build": {"parameters": summary["parameters"], "dedup": summary["dedup"].get("config", {}),
                  "rejects": summary["rejects"], "flags": summary["flags"],
                  "unknown_outlets": summary["unknown_outlets"], "unresolved_dates": summary["unresolved_dates"],
                  "quarantined": summary["validation"]["quarantined"]},
        "tables": table_meta,
        "personal": _personal_counts(out, names, profile),
        "suites_left_out": suites_left_out,
        **({"overview": overview} if overview else {}),
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


def _personal_counts(out: Path, names: list[str], profile: str) -> dict[str, int]:
    """{table.column: non-empty values} for the columns that name real people (schemas: personal)."""
    import pyarrow.compute as pc

    counts = {}
    for name in names:
        cols = [c.name for c in release_columns(spec(name), profile) if c.personal]
        if cols:
            table = pq.read_table(out / DATA_DIR / f"{name}.parquet", columns=cols)
            for c in cols:
                values = table.column(c)
                counts[f"{name}.{c}"] = int(pc.sum(pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)).as_py() or 0)
    return counts


def write_sums(root: Path) -> None:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != SUMS)
    (root / SUMS).write_text("".join(f"{sha256_file(root / f)}  {f}\n" for f in files), encoding="utf-8")
