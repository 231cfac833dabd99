"""Spill storage: dedup's large intermediate data in unlinked temporary files, not in memory.

In: excerpt bodies (str, or a way to read a batch of them again) and per-text sorted 5-gram hash
arrays. Out: `BodyStore` / `StoredExcerpt` (bodies read back by index with pread, or out of where
they lie when first asked for) and `ShingleSets` (each text's exact 5-gram set read back by index
or by chunk). At scale these are the corpus again; the page cache holds them, not the process."""

from __future__ import annotations

import bisect
import os
import threading
from datetime import date
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kirinuki.dedup.model import Excerpt, body_digest


class SpillFile:
    """An unlinked temporary file (in `spill_dir`) that data is appended to and read back from by
    offset with pread: thread-safe, and held by the page cache rather than the process."""

    def __init__(self, spill_dir: str | None, prefix: str):
        import tempfile

        self.file = tempfile.TemporaryFile(dir=spill_dir, prefix=prefix)
        self.size = 0

    def append(self, data: bytes) -> int:
        """Write `data` at the end; returns the offset it starts at."""
        start = self.size
        self.file.write(data)
        self.size += len(data)
        return start

    def flush(self) -> None:
        self.file.flush()

    def read(self, start: int, n: int) -> bytes:
        return os.pread(self.file.fileno(), n, start) if n > 0 else b""

    def close(self) -> None:
        self.file.close()


class BodyStore:
    """Excerpt bodies (UTF-8) by index: most in a SpillFile (at scale the bodies are the corpus, too
    much to hold as Python strings); a batch of bodies the caller can read again from where they
    lie (`extend_lazy`: an append's earlier quotes, of which it compares only a few) stays there
    until a body of it is asked for: then the batch is spilled too, unless `want` read that body
    before (it reads many at once, each batch once, and keeps only them)."""

    def __init__(self, spill_dir: str | None = None):
        self.spill = SpillFile(spill_dir, "kirinuki-bodies-")
        self.ends: list[np.ndarray] = []  # per extend: where each body ends in the file (-1: left where it lies)
        self.starts: list[np.ndarray] = []
        self.start = self.end = np.zeros(0, np.int64)  # per body, after done()
        self.count = 0
        self.lazy: list[tuple[int, int, Callable]] = []  # (first, count, load) per batch left
        self.unspilled = 0  # lazy batches not spilled since (a body of theirs may still lie unread)
        self.wanted: dict[int, str] = {}  # bodies read out of lazy batches by `want`
        self._lock = threading.Lock()

    def extend(self, bodies: pa.Array, known: tuple[np.ndarray, list[bytes]] | None = None
               ) -> tuple[int, np.ndarray, list[bytes]]:
        """Store a string array's bodies (none null) with one write of its UTF-8 data; return the
        first one's index, their lengths in characters and their content digests
        (Excerpt.content_digest), made from the bytes without making Python strings, or taken
        from `known` (lengths and digests an earlier build made of the same bodies)."""
        offsets, data = _utf8(bodies)
        base = self.spill.append(bytes(data)) - int(offsets[0])
        self.starts.append(offsets[:-1] + base)
        self.ends.append(offsets[1:] + base)
        first, self.count = self.count, self.count + len(bodies)
        if known is not None:
            return first, known[0], known[1]
        rel = (offsets - offsets[0]).tolist()
        digests = [body_digest(data[rel[k]: rel[k + 1]]) for k in range(len(bodies))]
        return first, pc.utf8_length(bodies).to_numpy(zero_copy_only=False), digests

    def extend_lazy(self, count: int, load: Callable[[], pa.Array | pa.ChunkedArray]) -> int:
        """`count` bodies left where they lie: `load()` returns them (strings, in order) when one
        of them is asked for. Returns the first one's index."""
        self.starts.append(np.full(count, -1, np.int64))
        self.ends.append(np.full(count, -1, np.int64))
        first, self.count = self.count, self.count + count
        self.lazy.append((first, count, load))
        self.unspilled += 1
        return first

    def done(self) -> None:
        self.spill.flush()
        self.start = np.concatenate([np.zeros(0, np.int64)] + self.starts)
        self.end = np.concatenate([np.zeros(0, np.int64)] + self.ends)
        self.starts = self.ends = []

    def get(self, i: int) -> str:
        if self.start[i] < 0:
            body = self.wanted.get(i)
            if body is not None:
                return body
            with self._lock:  # a lazy batch asked for without `want`: spilled whole, read once
                if self.start[i] < 0:
                    self._spill_batch(*self._batch_of(i))
        start = int(self.start[i])
        return self.spill.read(start, int(self.end[i]) - start).decode("utf-8")

    def want(self, indices) -> None:
        """Read the bodies among `indices` that lie in lazy batches now, each batch once (they are
        about to be asked for one by one, in no order), and keep them apart: the rest of each
        batch is not spilled."""
        todo = [i for i in np.unique(np.asarray(indices, np.int64)).tolist()
                if self.start[i] < 0 and i not in self.wanted]
        by_batch: dict[int, list[int]] = {}
        for i in todo:
            by_batch.setdefault(self._batch_of(i)[0], []).append(i)
        for some in by_batch.values():
            self.wanted.update(zip(some, self._read_lazy(some)))

    def scan(self, indices) -> Iterator[tuple[int, str]]:
        """(index, body) for each of `indices`, ascending: a lazy batch is read once for all of
        its bodies asked for, and none of it is kept or spilled (a search through many bodies
        that keeps few)."""
        batch: tuple[int, dict[int, str]] | None = None  # (first, its bodies asked for) of the lazy batch read last
        for i in np.unique(np.asarray(indices, np.int64)).tolist():
            if self.start[i] >= 0 or i in self.wanted:
                yield i, self.get(i)
                continue
            first, count, _ = self._batch_of(i)
            if batch is None or batch[0] != first:
                ahead = np.asarray(indices, np.int64)
                ahead = ahead[(ahead >= first) & (ahead < first + count)].tolist()
                batch = (first, dict(zip(ahead, self._read_lazy(ahead))))
            yield i, batch[1][i]

    def _spill_batch(self, first: int, count: int, load: Callable) -> None:
        bodies = _loaded(count, load)
        offsets, data = _utf8(bodies.combine_chunks() if isinstance(bodies, pa.ChunkedArray) else bodies)
        base = self.spill.append(bytes(data)) - int(offsets[0])
        self.spill.flush()  # (read back with pread, past the file object's buffer)
        self.end[first: first + count] = offsets[1:] + base
        self.start[first: first + count] = offsets[:-1] + base  # (last: readers without the lock test it)
        self.unspilled -= 1

    def _read_lazy(self, some: list[int]) -> list[str]:
        """The bodies `some` (indices in one lazy batch), read out of it."""
        first, count, load = self._batch_of(some[0])
        return _loaded(count, load).take(pa.array(np.asarray(some, np.int64) - first)).to_pylist()

    def _batch_of(self, i: int) -> tuple[int, int, Callable]:
        k = bisect.bisect_right(self.lazy, i, key=lambda b: b[0]) - 1
        return self.lazy[k]


def _loaded(count: int, load: Callable) -> pa.Array | pa.ChunkedArray:
    bodies = load()
    if len(bodies) != count:
        raise ValueError(f"a batch of quotes read again has {len(bodies)} bodies, not {count}")
    return bodies


def _utf8(bodies: pa.Array) -> tuple[np.ndarray, memoryview]:
    """A string array's offsets (int64) and the UTF-8 data they index, without copying it."""
    _, offsets_buf, data_buf = bodies.buffers()
    width = np.int64 if bodies.type == pa.large_string() else np.int32
    offsets = np.frombuffer(offsets_buf, width)[bodies.offset: bodies.offset + len(bodies) + 1].astype(np.int64)
    data = memoryview(data_buf)[int(offsets[0]): int(offsets[-1])] if len(bodies) and data_buf is not None \
        else memoryview(b"")
    return offsets, data


def read_ahead(excerpts: list[Excerpt], indices: Iterable[int]) -> None:
    """The bodies of `excerpts[indices]` that lie in lazy batches (BodyStore.extend_lazy), read
    now, a batch once, before they are asked for one by one in no order. Stops at the first
    excerpt whose store has no lazy batch left unspilled (dedup's excerpts share one store): in a
    build that left none, or once a full clustering has read them all, `indices` is not walked."""
    stores: dict[BodyStore, list[int]] = {}
    for i in indices:
        e = excerpts[i]
        if isinstance(e, StoredExcerpt):
            if not e._store.unspilled:
                break
            stores.setdefault(e._store, []).append(e._index)
    for store, some in stores.items():
        store.want(some)


def scan_bodies(excerpts: list[Excerpt], indices) -> Iterator[tuple[int, str]]:
    """(index, body) of `excerpts[indices]`, ascending, read as BodyStore.scan reads them (a lazy
    batch once, nothing of it kept): for a search through many bodies that keeps few."""
    indices = np.unique(np.asarray(indices, np.int64)).tolist()
    stores = {e._store if isinstance(e, StoredExcerpt) else None for e in map(excerpts.__getitem__, indices)}
    store = stores.pop() if len(stores) == 1 else None
    if store is None or not store.unspilled:
        return ((i, excerpts[i].body_norm) for i in indices)
    at = {excerpts[i]._index: i for i in indices}  # (a StoredExcerpt's index in its store)
    return ((at[k], body) for k, body in store.scan(list(at)))


class StoredExcerpt(Excerpt):
    """An Excerpt whose body stays in a BodyStore until asked for; its length and digest are kept."""

    __slots__ = ("_store", "_index", "_len", "_digest")

    def __init__(self, excerpt_id: str, doc_id: str, headline: str, store: BodyStore, index: int, length: int,
                 digest: bytes, published: date | None, outlet_id: str | None = None, doc_published: date | None = None):
        self.excerpt_id, self.doc_id, self.headline = excerpt_id, doc_id, headline
        self.published, self.outlet_id, self.doc_published = published, outlet_id, doc_published
        self._store, self._index, self._len, self._digest = store, index, length, digest

    @property
    def body_norm(self) -> str:
        return self._store.get(self._index)

    @property
    def body_len(self) -> int:
        return self._len

    @property
    def body_hash(self) -> int:
        return hash(self._digest)

    @property
    def content_digest(self) -> bytes:
        return self._digest

class ShingleSets:
    """Sorted distinct k-gram hashes per text (exact, not sampled), kept in a SpillFile, and each
    text's k-gram count (with repeats)."""

    def __init__(self, chunk: int, spill_dir: str | None = None):
        self.chunk = chunk
        self.spill = SpillFile(spill_dir, "kirinuki-shingles-")
        self.starts: list[int] = []  # per chunk: where its hashes begin in the file (in hashes)
        self.bounds: list[np.ndarray] = []  # per chunk: each text's range in the chunk's hashes
        self.size_parts: list[np.ndarray] = []
        self.sizes = np.zeros(0, np.int64)

    def append(self, sets: np.ndarray, bounds: np.ndarray, sizes: np.ndarray) -> None:
        self.starts.append(self.spill.append(sets.astype("<u4", copy=False).tobytes()) // 4)
        self.bounds.append(bounds)
        self.size_parts.append(sizes)

    def close_appends(self) -> None:
        self.spill.flush()
        self.sizes = np.concatenate(self.size_parts) if self.size_parts else np.zeros(0, np.int64)
        self.size_parts = []

    def _read(self, start: int, n: int) -> np.ndarray:
        return np.frombuffer(self.spill.read(4 * start, 4 * n), dtype="<u4").astype(np.uint32, copy=False)

    def __getitem__(self, i: int) -> np.ndarray:
        c, j = divmod(i, self.chunk)
        b = self.bounds[c]
        return self._read(self.starts[c] + int(b[j]), int(b[j + 1] - b[j]))

    def close(self) -> None:
        self.spill.close()
