"""A build's parts: Arrow IPC files of rows, and the index saying whose rows lie where.

A batch writes `<parts>/index/part-NNNNNN.json` (written last: a batch with an index is complete)
and, per per-file table, `<parts>/<table>/<part>.arrow` (LZ4). The index lists every document of
the batch (its cache key, size, dedup digest, stats, the part that holds its rows and its row range
there per table) and every reject; documents of an export also name the export (`in`), the
export's cache key (`container`) and the entry's position in the export as read this time. Parts are never changed once written, so a later build links
them instead of copying.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from kirinuki.schema import spec
from kirinuki.store.files import link_file

PART_TABLES = ("documents", "excerpts", "paragraphs", "citations", "date_mentions", "mentions")
INDEX = "index"
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def part_path(parts: str | Path, table: str, part: str) -> Path:
    return Path(parts) / table / f"{part}.arrow"


def index_path(parts: str | Path, batch_no: int) -> Path:
    return Path(parts) / INDEX / f"part-{batch_no:06d}.json"


def part_numbers(parts: str | Path) -> list[int]:
    """The batches whose parts are complete (a batch writes its index last)."""
    return sorted(int(p.stem.split("-")[1]) for p in (Path(parts) / INDEX).glob("part-*.json"))


def empty_part(table: str, columns: list[str] | None = None) -> pa.Table:
    schema = spec(table).part_schema
    return (pa.schema([schema.field(c) for c in columns]) if columns else schema).empty_table()


def open_part(parts: str | Path, table: str, part: str, columns: list[str] | None = None) -> pa.Table:
    """A part file's rows (memory-mapped), all columns or `columns` in that order: the others are
    not even decompressed."""
    with pa.memory_map(str(part_path(parts, table, part))) as src:
        if not columns:
            return pa.ipc.open_file(src).read_all()
        schema = pa.ipc.open_file(src).schema
        fields = sorted(schema.get_field_index(c) for c in columns)
        if fields[0] < 0:  # a column the part lacks: Arrow's own error names it
            return pa.ipc.open_file(src).read_all().select(columns)
        return pa.ipc.open_file(src, options=pa.ipc.IpcReadOptions(included_fields=fields)).read_all().select(columns)


def _runs(files: list[dict], t: int) -> list[tuple[str, int, int]]:
    """A batch's rows of table number `t` as (part, start, length) runs: its files' rows in order,
    adjacent ranges of one part merged."""
    runs: list[tuple[str, int, int]] = []
    for f in files:
        start, n = f["rows"][t]
        if not n:
            continue
        if runs and runs[-1][0] == f["part"] and runs[-1][1] + runs[-1][2] == start:
            runs[-1] = (f["part"], runs[-1][1], runs[-1][2] + n)
        else:
            runs.append((f["part"], start, n))
    return runs


def read_index(parts: str | Path, batch_no: int) -> dict:
    """Batch `batch_no`'s index (see the module docstring)."""
    return json.loads(index_path(parts, batch_no).read_text(encoding="utf-8"))


def read_part(parts: str | Path, table: str, batch_no: int, columns: list[str] | None = None,
              runs: list | None = None, index: dict | None = None) -> pa.Table:
    """Batch `batch_no`'s rows of `table`, in file order: memory-mapped slices of the part files
    its index names (its own, or parts an earlier build wrote and this one linked). `runs`, when
    given, is filled with the (part, start, length) runs the rows are read from: a part never
    changes, so equal runs are equal rows. `index`: the batch's index, when already read."""
    idx = index if index is not None else read_index(parts, batch_no)
    mine = part_runs(idx, table)
    if runs is not None:
        runs += mine
    out = read_runs(parts, table, mine, columns)
    if table == "documents" and "entry_position" in out.column_names:
        out = _current_positions(out, idx["files"])
    return out


def part_runs(index: dict, table: str) -> list[tuple[str, int, int]]:
    """A batch's rows of `table` as (part, start, length) runs, from its index (nothing read)."""
    return _runs(index["files"], PART_TABLES.index(table))


def read_runs(parts: str | Path, table: str, runs: list[tuple[str, int, int]], columns: list[str] | None = None
              ) -> pa.Table:
    """The rows of `table` in `runs` ((part, start, length), as read_part gives them), in order:
    memory-mapped slices of the part files, each opened once. Not for documents' entry positions,
    which only the index knows (read_part)."""
    opened: dict[str, pa.Table] = {}
    pieces = []
    for part, start, n in runs:
        if part not in opened:
            opened[part] = open_part(parts, table, part, columns)
        pieces.append(opened[part].slice(start, n))
    return pa.concat_tables(pieces) if pieces else empty_part(table, columns)


def _current_positions(docs: pa.Table, files: list[dict]) -> pa.Table:
    """An export's entry keeps its rows while entries are added before it, but not its position:
    the index holds each entry's position in the export as read by this build, and it wins."""
    if not any("position" in f for f in files):
        return docs
    positions = [f.get("position") for f in files for _ in range(f["rows"][0][1])]
    i = docs.column_names.index("entry_position")
    return docs.set_column(i, docs.schema.field(i), pa.array(positions, pa.int32()))


def read_parts(parts: str | Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """A table's rows from every part, in batch order."""
    pieces = [read_part(parts, table, n, columns) for n in part_numbers(parts)]
    return pa.concat_tables(pieces) if pieces else empty_part(table, columns)


ROWS_KEY = b"kirinuki_rows"  # a part's row count, in its schema's metadata: known without reading its rows


def write_ipc(path: Path, table: pa.Table) -> None:
    """Write a part under a temporary name, then rename it into place: a name already there may be
    a link to an earlier build's part, which must not be written into."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = table.schema.with_metadata({ROWS_KEY: str(table.num_rows).encode()})
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema, options=IPC_OPTIONS) as w:
        w.write_table(table.replace_schema_metadata(schema.metadata))
    os.replace(tmp, path)


def part_rows(parts: str, table: str, part: str, schema: pa.Schema) -> int | None:
    """A part's row count from its footer (its rows stay unread), or None when the part is missing,
    damaged or of another schema."""
    try:
        with pa.memory_map(str(part_path(parts, table, part))) as src:
            found = pa.ipc.open_file(src).schema
        return int(found.metadata[ROWS_KEY]) if found.equals(schema) else None
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError):
        return None


def link_part(old_parts: str, parts: str, table: str, part: str) -> None:
    """Make an earlier build's part one of this build's (parts are never changed once written);
    another batch of this build may have linked it already."""
    link_file(part_path(old_parts, table, part), part_path(parts, table, part))
