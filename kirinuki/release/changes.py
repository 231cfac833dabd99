"""What changed since the previous release, by primary key.

In: the previous and the new release's data folders. Out: per table the keys added, removed,
changed (with the columns that differ) and moved (only provenance columns differ), the articles
whose id ended and where their quotes went, the inputs added and removed, and the changelog entry
written from them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from kirinuki.release.checks import KEYS_LISTED, KEYS_SHOWN
from kirinuki.schema import spec
from kirinuki.store.files import input_files

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
        if content and any(kind == "changed" for kind, _ in got):
            # which columns the changed rows differ in, and in how many rows each
            per = ", ".join(f'count(*) FILTER (WHERE to_json(a."{c}") IS DISTINCT FROM to_json(b."{c}")) AS "{c}"'
                            for c in content)
            row = con.execute(f"""
                WITH a AS (SELECT {key} AS k, * FROM read_parquet(?)), b AS (SELECT {key} AS k, * FROM read_parquet(?))
                SELECT {per} FROM a JOIN b ON a.k = b.k""", [str(prev), str(new)]).fetchone()
            out["changed_columns"] = {c: n for c, n in zip(content, row) if n}
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


def article_continuity(prev_data: Path | None, new_data: Path) -> list[dict]:
    """Articles whose id ended because their quotes now belong to other articles (a merge, a split,
    or the quote that named the article gone): [{"from": old id, "to": [new ids], "quotes": n}],
    where n counts the old article's quotes that are still in the release. A release made before
    `article_quotes` existed has each quote's article in `excerpts.cluster_id`."""
    old_file, new_file = _quotes_of(prev_data), _quotes_of(new_data)
    if old_file is None or new_file is None:
        return []
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(f"""
            WITH o AS (SELECT excerpt_id, {old_file[1]} AS article FROM read_parquet(?)),
                 n AS (SELECT excerpt_id, {new_file[1]} AS article FROM read_parquet(?)),
                 gone AS (SELECT DISTINCT article FROM o EXCEPT SELECT DISTINCT article FROM n)
            SELECT o.article, list(DISTINCT n.article ORDER BY n.article), count(*)
            FROM o JOIN n USING (excerpt_id) WHERE o.article IN (SELECT article FROM gone)
            GROUP BY o.article ORDER BY o.article""", [str(old_file[0]), str(new_file[0])]).fetchall()
    finally:
        con.close()
    return [{"from": a, "to": list(b), "quotes": int(n)} for a, b, n in rows]


def _quotes_of(data: Path | None) -> tuple[Path, str] | None:
    """The file that says each quote's article in a release's data folder, and its column."""
    if data is None:
        return None
    if (data / "article_quotes.parquet").exists():
        return data / "article_quotes.parquet", "article_id"
    if (data / "excerpts.parquet").exists():
        return data / "excerpts.parquet", "cluster_id"
    return None


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
            if c.get("changed_columns"):
                cols = ", ".join(f"`{col}` ({n:,})" for col, n in c["changed_columns"].items())
                detail.append(f"- {name} changed columns (rows): {cols}")
            if c.get("columns"):
                detail.append(f"- {name} columns added {c['columns']['added']}, removed {c['columns']['removed']}")
        for moved in changes.get("articles_continued", [])[:KEYS_SHOWN]:
            detail.append(f"- article `{moved['from']}` continues as " + ", ".join(f"`{a}`" for a in moved["to"])
                          + f" ({moved['quotes']:,} of its quotes)")
        if detail:
            lines += ["", "Rows by primary key:", ""] + detail
    return "\n".join(lines) + "\n"
