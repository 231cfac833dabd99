"""Spill storage: dedup's large intermediate data in unlinked temporary files, not in memory.

In: excerpt bodies (str) and per-text sorted 5-gram hash arrays. Out: `BodyStore` / `StoredExcerpt`
(bodies read back by index with pread) and `ShingleSets` (each text's exact 5-gram set read back
by index or by chunk). At scale these are the corpus again; the page cache holds them, not the process."""

from __future__ import annotations

import os
from datetime import date

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
    """Excerpt bodies (UTF-8) in a SpillFile, read back by index: at scale the bodies are the
    corpus, too much to hold as Python strings."""

    def __init__(self, spill_dir: str | None = None):
        self.spill = SpillFile(spill_dir, "kirinuki-bodies-")
        self.ends: list[np.ndarray] = []  # per extend: where each body ends in the file
        self.offsets = np.zeros(1, np.int64)
        self.count = 0

    def extend(self, bodies: pa.Array, known: tuple[np.ndarray, list[bytes]] | None = None
               ) -> tuple[int, np.ndarray, list[bytes]]:
        """Store a string array's bodies (none null) with one write of its UTF-8 data; return the
        first one's index, their lengths in characters and their content digests
        (Excerpt.content_digest), made from the bytes without making Python strings, or taken
        from `known` (lengths and digests an earlier build made of the same bodies)."""
        _, offsets_buf, data_buf = bodies.buffers()
        width = np.int64 if bodies.type == pa.large_string() else np.int32
        offsets = np.frombuffer(offsets_buf, width)[bodies.offset: bodies.offset + len(bodies) + 1].astype(np.int64)
        data = memoryview(data_buf)[int(offsets[0]): int(offsets[-1])] if len(bodies) and data_buf is not None \
            else memoryview(b"")
        base = self.spill.append(bytes(data)) - int(offsets[0])
        self.ends.append(offsets[1:] + base)
        first, self.count = self.count, self.count + len(bodies)
        if known is not None:
            return first, known[0], known[1]
        rel = (offsets - offsets[0]).tolist()
        digests = [body_digest(data[rel[k]: rel[k + 1]]) for k in range(len(bodies))]
        return first, pc.utf8_length(bodies).to_numpy(zero_copy_only=False), digests

    def done(self) -> None:
        self.spill.flush()
        self.offsets = np.concatenate([np.zeros(1, np.int64)] + self.ends)
        self.ends = []

    def get(self, i: int) -> str:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.spill.read(start, end - start).decode("utf-8")


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
