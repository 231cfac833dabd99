"""Articles kept from the last dedup: a cluster whose quotes did not change gets its article row
and paragraphs back from the last build instead of being reconstructed.

In: the last build's dedup state (its `articles` and `article_paragraphs` tables, checked against
their sha256, and the key of each article), the code's digest, and this build's clusters in article
order. Out: for each cluster, the last build's rows when its key is the same, else None; and this
build's keys (`ARTICLE_KEYS`), kept with the state for the next build.

A key covers everything an article's rows are made of: its id, its canonical quote, and each
quote's ids, headline, dates, outlet and body, in the cluster's order; for a cluster of several
quotes also which of each quote's lines are boilerplate (reconstruction leaves them out), so a
paragraph that becomes boilerplate (or stops being it) redoes exactly the clusters of several
quotes that carry it. Different code keeps nothing.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kirinuki.dedup.model import Excerpt

ARTICLE_KEYS = ".dedup-article-keys.arrow"  # in the build folder until keep_dedup moves it to the state
_BATCH = 1024  # articles: each row holds a whole article's text
_PARAGRAPH_BATCH = 8192  # a paragraph row is short; per-batch costs dominate below this


def article_key(aid: str, canon: Excerpt, quotes: list[Excerpt], boiler: list[tuple[int, ...]]) -> str:
    """The key of an article made of `quotes` (in the cluster's order) with `canon` canonical;
    `boiler`: for a cluster of several quotes, the positions of each quote's boilerplate lines
    (minhash.boiler_lines), which reconstruction leaves out; empty for a single quote."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{aid}\0{canon.excerpt_id}".encode())
    for k, e in enumerate(quotes):
        h.update(f"\n{e.excerpt_id}\0{e.doc_id}\0{e.headline}\0{e.published}\0{e.outlet_id}\0{e.doc_published}\0".encode())
        h.update(e.content_digest)
        if boiler and boiler[k]:
            h.update(("\0b" + ",".join(map(str, boiler[k]))).encode())
    return h.hexdigest()


Run = tuple[pa.RecordBatch, int, int]  # rows start..stop of a record batch


class _Cursor:
    """The rows of a Parquet file sorted by `column`, read `batch` rows at a time as `take` moves
    on; rows stay Arrow (only each distinct value of the sort column becomes a Python value, with
    the row it starts at)."""

    def __init__(self, path: Path, column: str, batch: int = _BATCH):
        self.batches = pq.ParquetFile(path).iter_batches(batch_size=batch)
        self.column = column
        self.batch: pa.RecordBatch | None = None
        self.keys: list[str] = []  # the batch's distinct values, in order
        self.starts: list[int] = []  # the row each starts at, and the batch's row count last
        self.i = 0

    def _next(self) -> bool:
        batch = next(self.batches, None)
        if batch is None:
            return False
        col = batch.column(self.column)
        starts = np.zeros(0, np.int64)
        if len(col):
            changed = pc.not_equal(col.slice(1), col.slice(0, len(col) - 1)).to_numpy(zero_copy_only=False)
            starts = np.flatnonzero(np.concatenate(([True], changed)))
        self.batch, self.keys, self.i = batch, col.take(pa.array(starts)).to_pylist(), 0
        self.starts = starts.tolist() + [len(col)]
        return True

    def take(self, value: str) -> list[Run]:
        """The rows whose column equals `value`, as runs of record batches (a writer copies
        neighbouring runs as one); rows before them are passed over."""
        runs = []
        while True:
            if self.i >= len(self.keys):
                if not self._next():
                    break
                continue
            j = bisect_left(self.keys, value, self.i)
            found = j < len(self.keys) and self.keys[j] == value
            if found:
                runs.append((self.batch, self.starts[j], self.starts[j + 1]))
                j += 1
            self.i = j
            if j < len(self.keys):  # a greater value follows in this batch: none of `value` after it
                break
        return runs


class ArticleMemo:
    """The last build's articles by key (see the module docstring), and this build's keys."""

    def __init__(self, state: str | None, code: str, checked: bool = False):
        self.code = code
        self.keys: dict[str, str] = {}
        self.new_ids: list[str] = []
        self.new_keys: list[str] = []
        self.reused = 0
        self.articles = self.paragraphs = None
        self.state = Path(state) if state is not None else None
        if state is not None:
            self._open(Path(state), checked)

    def _open(self, state: Path, checked: bool) -> None:
        from kirinuki.dedup.state import trusted_state

        if not (checked or trusted_state(state)) or not (state / ARTICLE_KEYS).is_file():
            return
        try:
            with pa.memory_map(str(state / ARTICLE_KEYS)) as src:
                table = pa.ipc.open_file(src).read_all()
            if (table.schema.metadata or {}).get(b"code") != self.code.encode():
                return
            self.keys = dict(zip(table["article_id"].to_pylist(), table["key"].to_pylist()))
            self.articles = _Cursor(state / "articles.parquet", "article_id")
            self.paragraphs = _Cursor(state / "article_paragraphs.parquet", "article_id", _PARAGRAPH_BATCH)
        except (OSError, pa.ArrowInvalid, KeyError):
            self.keys, self.articles, self.paragraphs = {}, None, None

    def kept(self, aid: str, key: str) -> tuple[list[Run], list[Run]] | None:
        """The last build's article row and paragraph rows (runs of Arrow record batches) for `aid`
        when its key is `key`."""
        self.new_ids.append(aid)
        self.new_keys.append(key)
        if self.articles is None or self.keys.get(aid) != key:
            return None
        row = self.articles.take(aid)
        paras = self.paragraphs.take(aid)
        if sum(stop - start for _, start, stop in row) != 1:
            return None
        self.reused += 1
        return row, paras

    def kept_from(self) -> dict[str, str]:
        """The sha256 (as the state recorded it) of the last build's article tables the kept rows
        are read from; empty when none were opened."""
        from kirinuki.dedup.state import kept_state_digests
        from kirinuki.store.files import DATA_DIR

        if self.articles is None or self.state is None:
            return {}
        saved = kept_state_digests(self.state)
        return {name: saved[f"{DATA_DIR}/{name}.parquet"] for name in ("articles", "article_paragraphs")
                if f"{DATA_DIR}/{name}.parquet" in saved}

    def write(self, root: str) -> None:
        """This build's keys, for the next build (keep_dedup moves the file into the state)."""
        table = pa.table({"article_id": pa.array(self.new_ids, pa.string()), "key": pa.array(self.new_keys, pa.string())})
        table = table.replace_schema_metadata({"code": self.code})
        with pa.OSFile(str(Path(root) / ARTICLE_KEYS), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
