"""Articles kept from the last dedup: a cluster whose quotes did not change gets its article row
and paragraphs back from the last build instead of being reconstructed.

In: the last build's dedup state (its `articles` and `article_paragraphs` tables, checked against
their sha256, and the key of each article), the code's digest, and this build's clusters in article
order. Out: for each cluster, its row in the last build's `articles` when its key is the same, else
None; runs of those rows (and their paragraphs) as Arrow record batches; and this build's keys
(`ARTICLE_KEYS`), kept with the state for the next build.

A key covers everything an article's rows are made of: its id, its canonical quote, and each
quote's ids, headline, dates, outlet and body, in the cluster's order; for a cluster of several
quotes also which of each quote's lines are boilerplate (reconstruction leaves them out), so a
paragraph that becomes boilerplate (or stops being it) redoes exactly the clusters of several
quotes that carry it. Different code keeps nothing.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
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


class ReadAhead:
    """The items of an iterable (none of them None), each next one made in a thread while the
    caller uses the one before (reading and decoding Arrow release the GIL): one ahead, no more,
    the first started at once. `close()` ends the thread."""

    def __init__(self, items: Iterable):
        self._items = iter(items)
        self._thread = ThreadPoolExecutor(1)
        self._coming: Future = self._thread.submit(next, self._items, None)

    def next(self):
        """The next item; None after the last."""
        item = self._coming.result()
        if item is not None:
            self._coming = self._thread.submit(next, self._items, None)
        return item

    def close(self) -> None:
        self._coming.cancel()
        self._thread.shutdown(wait=True)


class _Rows:
    """The rows of a Parquet file by position, read `batch` rows at a time as `take` moves on
    (positions asked for only grow); rows stay Arrow, and rows passed over are not kept."""

    def __init__(self, path: Path, batch: int):
        # not pre-buffered: pyarrow's read cache would keep every row group read until the end
        # (877 MB of Arrow memory by the end of a 100k-post append's articles)
        # the next batch is decoded in a thread while the caller makes articles
        self.batches = ReadAhead(pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch))
        self.batch: pa.RecordBatch | None = None
        self.first = 0  # the file position of the batch's first row
        self.end = 0  # and of the row after its last

    def close(self) -> None:
        self.batches.close()

    def take(self, start: int, stop: int) -> list[Run]:
        """Rows start..stop, as runs of record batches (a writer copies neighbouring runs as one)."""
        if start < self.first:
            raise ValueError("kept article rows were asked for out of order")
        runs: list[Run] = []
        while start < stop:
            while start >= self.end:
                batch = self.batches.next()
                if batch is None:
                    raise ValueError("the kept article table has fewer rows than its keys say")
                self.batch, self.first, self.end = batch, self.end, self.end + batch.num_rows
            upto = min(stop, self.end)
            runs.append((self.batch, start - self.first, upto - self.first))
            start = upto
        return runs


class ArticleMemo:
    """The last build's articles by key (see the module docstring), and this build's keys.

    The keys file lists the articles in the order of the last build's `articles` table, one row
    each, and each article's `n_paragraphs` rows follow one another in `article_paragraphs`: so an
    article kept is a row number, and a run of articles kept one after another is copied as one
    range of rows of each table (checked when the state is opened: the ids are the table's, and
    the paragraph counts add up to its rows)."""

    def __init__(self, state: str | None, code: str, checked: bool = False):
        self.code = code
        self._keys: dict[str, tuple[str, int]] = {}  # article id -> (key, its row in the last build's articles)
        self.new_ids: list[str] = []
        self.new_keys: list[str] = []
        self.reused = 0
        self.articles = self.paragraphs = None
        self.usable = False  # the last build's articles opened (same code, checked): rows may be kept
        self.para_start = np.zeros(1, np.int64)  # the first paragraph row of each last article, and the count last
        self.state = Path(state) if state is not None else None
        # opened when first asked: its keys (~110 MB of strings at 100k posts) are not held while
        # the quotes are clustered, the peak of dedup's memory
        self._unopened = (Path(state), checked) if state is not None else None

    def _open_once(self) -> None:
        if self._unopened is not None:
            state, checked = self._unopened
            self._unopened = None
            self._open(state, checked)

    def _open(self, state: Path, checked: bool) -> None:
        from kirinuki.dedup.state import trusted_state

        if not (checked or trusted_state(state)) or not (state / ARTICLE_KEYS).is_file():
            return
        try:
            with pa.memory_map(str(state / ARTICLE_KEYS)) as src:
                table = pa.ipc.open_file(src).read_all()
            if (table.schema.metadata or {}).get(b"code") != self.code.encode():
                return
            last = pq.read_table(state / "articles.parquet", columns=["article_id", "n_paragraphs"])
            paragraph_rows = pq.ParquetFile(state / "article_paragraphs.parquet").metadata.num_rows
            counts = last["n_paragraphs"].to_numpy(zero_copy_only=False).astype(np.int64)
            if last.num_rows != table.num_rows or not last["article_id"].equals(table["article_id"]) \
                    or int(counts.sum()) != paragraph_rows:
                return
            self.para_start = np.concatenate(([0], np.cumsum(counts)))
            ids, keys = table["article_id"].to_pylist(), table["key"].to_pylist()
            self._keys = {aid: (key, row) for row, (aid, key) in enumerate(zip(ids, keys))}
            self.articles = _Rows(state / "articles.parquet", _BATCH)
            self.paragraphs = _Rows(state / "article_paragraphs.parquet", _PARAGRAPH_BATCH)
            self.usable = True
        except (OSError, pa.ArrowInvalid, KeyError):
            self.close()
            self._keys, self.usable = {}, False

    def close(self) -> None:
        """Stop reading the last build's article tables (their reading threads end)."""
        for rows in (self.articles, self.paragraphs):
            if rows is not None:
                rows.close()
        self.articles = self.paragraphs = None

    @property
    def keys(self) -> dict[str, tuple[str, int]]:
        """The last build's articles: id -> (key, row); empty when none may be kept."""
        self._open_once()
        return self._keys

    def can_keep(self) -> bool:
        """Whether the last build's articles can be kept at all (its state opened, same code)."""
        self._open_once()
        return self.usable

    def kept(self, aid: str, key: str) -> int | None:
        """The row of the last build's `articles` that `aid` is when its key there was `key`
        (its rows are then taken with `rows`), else None."""
        self._open_once()
        self.new_ids.append(aid)
        self.new_keys.append(key)
        last = self._keys.get(aid)
        if self.articles is None or last is None or last[0] != key:
            return None
        self.reused += 1
        return last[1]

    def last_key(self, aid: str) -> str | None:
        """The key the last build's article `aid` had (None: there was none), for an article the
        caller knows to be made of what that article was made of: its key is the same, unmade."""
        last = self.keys.get(aid)
        return last[0] if last is not None else None

    def rows(self, start: int, stop: int) -> tuple[list[Run], list[Run]]:
        """The last build's article rows start..stop (as `kept` numbers them) and their paragraph
        rows, as runs of Arrow record batches; asked for in increasing order."""
        return (self.articles.take(start, stop),
                self.paragraphs.take(int(self.para_start[start]), int(self.para_start[stop])))

    def kept_from(self) -> dict[str, str]:
        """The sha256 (as the state recorded it) of the last build's article tables the kept rows
        are read from; empty when none were opened."""
        from kirinuki.dedup.state import kept_state_digests
        from kirinuki.store.files import DATA_DIR

        self._open_once()
        if not self.usable or self.state is None:
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
