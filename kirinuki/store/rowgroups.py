"""Writing a table a row group at a time, as its rows arrive in final order.

In: rows as Python values (a dict per row, or columns) and rows already in Arrow (runs of record batches
copied from another file). Out: `data/<name>.parquet` under a build folder, byte-identical to writing
the whole table at once, and, when asked for, the rows that were not copied (those made as Python
values) in an Arrow file beside it, in file order: validation judges those and need not read the
copied ones back out of the Parquet file. The row groups are encoded in a thread of the writer's own
(Parquet encoding releases the GIL) while the caller makes the next rows.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from kirinuki.schema import spec
from kirinuki.store.files import DATA_DIR, PARQUET_OPTIONS


class RowGroupWriter:
    """A table written as its rows arrive (in final order): Python values are buffered per column,
    Arrow tables (rows copied from another file) as they are, and written one full row group at a
    time, so only about one row group is ever held. The row groups are the same as a whole-table
    write's, so the file is byte-identical to it."""

    def __init__(self, root: Path, name: str, made_rows: Callable[[], Path | None] | None = None):
        """`made_rows`: where to write the rows not copied (an uncompressed Arrow IPC stream), asked
        when the first row group is written (None: nowhere)."""
        dest = root / DATA_DIR / f"{name}.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.schema = spec(name).arrow_schema
        self.group = spec(name).row_group_rows
        self.writer = pq.ParquetWriter(dest, self.schema, **PARQUET_OPTIONS)
        self.buffer: dict[str, list] = {f.name: [] for f in self.schema}
        self.buffered = 0  # rows in `buffer`
        self.marked = 0  # how many of them (the first ones) `pieces` already holds
        # in row order: batches, runs [batch, start, stop] of kept rows, and (start, stop) of `buffer`
        self.pieces: list[pa.RecordBatch | list | tuple[int, int]] = []
        self.pending = 0
        self.rows = 0
        self.copied: list[list[int]] = []  # [start, count] of the rows add_runs copied, in this file's rows
        self.encoder = ThreadPoolExecutor(1)  # one thread: the row groups are written in order
        self.encoding: list[Future] = []  # one row group at a time is encoded while the next is gathered
        self.made_rows: Path | None = None
        self._made_where = made_rows
        self.made_writer: pa.ipc.RecordBatchStreamWriter | None = None
        self.made = 0  # rows written to `made_rows`

    def add_row(self, row: dict) -> None:
        for name, col in self.buffer.items():
            col.append(row[name])
        self._added(1)

    def add_columns(self, columns: dict[str, list]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        for name, col in self.buffer.items():
            col += columns[name]
        self._added(n)

    def add_runs(self, runs: list[tuple[pa.RecordBatch, int, int]]) -> None:
        """Rows that are already Arrow: runs (batch, start, stop) of record batches of the schema's
        columns, copied without Python values; a run that continues the last one in the same batch
        joins it, so kept rows are copied in long runs, not one slice per row."""
        self._mark()
        for batch, start, stop in runs:
            if self.copied and sum(self.copied[-1]) == self.rows:
                self.copied[-1][1] += stop - start
            else:
                self.copied.append([self.rows, stop - start])
            last = self.pieces[-1] if self.pieces else None
            if isinstance(last, list) and last[0] is batch and last[2] == start:
                last[2] = stop
            else:
                self.pieces.append([batch, start, stop])
            self.pending += stop - start
            self.rows += stop - start
        while self.pending >= self.group:
            self._flush()

    def _added(self, n: int) -> None:
        self.buffered += n
        self.pending += n
        self.rows += n
        while self.pending >= self.group:
            self._flush()

    def _mark(self) -> None:
        """The buffered rows not yet placed, as the next piece: they stay Python values until the
        row group is written, then all of the buffer is converted at once (an append interleaves
        thousands of made articles with kept runs: an Arrow batch each cost more than the rows)."""
        if self.buffered > self.marked:
            self.pieces.append((self.marked, self.buffered))
            self.marked = self.buffered

    def _flush(self) -> None:
        n = min(self.pending, self.group)
        if not n:
            return
        if not self.pieces and self.buffered == self.pending:  # Python values only: the first n of them
            table = pa.table({f.name: pa.array(self.buffer[f.name][:n], type=f.type) for f in self.schema},
                             schema=self.schema)
            for col in self.buffer.values():
                del col[:n]
            self.buffered -= n
            self._made(table)
        else:
            self._mark()
            made = pa.record_batch([pa.array(self.buffer[f.name], type=f.type) for f in self.schema],
                                   schema=self.schema) if self.buffered else None
            if made is not None:
                self._made(made)
            for col in self.buffer.values():
                col.clear()
            self.buffered = self.marked = 0
            batches = [p[0].slice(p[1], p[2] - p[1]) if isinstance(p, list) else
                       made.slice(p[0], p[1] - p[0]) if isinstance(p, tuple) else p for p in self.pieces]
            # (made contiguous in the encoder's thread, not here: the copy releases the GIL)
            whole = pa.Table.from_batches([b.cast(self.schema) if b.schema != self.schema else b for b in batches],
                                          schema=self.schema)
            table, rest = whole.slice(0, n), whole.slice(n)
            self.pieces = rest.to_batches() if rest.num_rows else []
        self.pending -= n
        while self.encoding:
            self.encoding.pop(0).result()  # raises what the encoder raised
        self.encoding.append(self.encoder.submit(self._write, [table]))
        del table

    def _write(self, handed: list[pa.Table]) -> None:
        # one chunk: how the rows reach the writer changes its pages (and the file's bytes); the
        # chunks are let go before encoding (taken from the list the caller no longer holds), so a
        # row group is not held twice while it is encoded (an append of 1,000 posts at 10k: Arrow
        # memory at the peak of the article tables 269 -> 215 MB)
        table = handed.pop().combine_chunks()
        self.writer.write_table(table, row_group_size=self.group)

    def _made(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Rows made from Python values, in the order they take in the file (each made row is
        converted once, the first time a row group needs it)."""
        if self._made_where is not None:
            self.made_rows, self._made_where = self._made_where(), None
        if self.made_rows is None:
            return
        if self.made_writer is None:
            self.made_rows.parent.mkdir(parents=True, exist_ok=True)
            self.made_writer = pa.ipc.new_stream(str(self.made_rows), self.schema)
        self.made_writer.write(rows)
        self.made += rows.num_rows

    def _drain(self) -> None:
        try:
            for f in self.encoding:
                f.result()
        finally:
            self.encoding.clear()
            self.encoder.shutdown(wait=True)

    def close(self) -> None:
        self._flush()
        self._drain()
        self.writer.close()
        self._close_made()

    def _close_made(self) -> None:
        if self.made_writer is not None:
            self.made_writer.close()
            self.made_writer = None

    def __enter__(self) -> "RowGroupWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            for f in self.encoding:
                f.cancel()
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - the error that is already unwinding is the one to see
                pass
            self.writer.close()
            self._close_made()
