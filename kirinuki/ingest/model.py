"""The ingest stage's records: what was found, what was read, what was refused.

`SourceRef` names an input file; reading it gives one `Source` per post (a loose text file is one
post; an export holds many, each with its `Entry`) or a `Reject` with the reason. Plain frozen
dataclasses: they cross process boundaries by pickling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class SourceRef:
    """An input file: where to read it and the relative path recorded in the data."""

    path: str  # filesystem path to open (never written to the data)
    rel: str  # POSIX path relative to the input root, printable
    root: str = ""  # the real path of the input folder it was found in ("" for a file named itself)
    share: tuple[int, int] = (0, 1)  # (k, n): of an export, the k-th of n runs of its entries, in order
    convention: str | None = None  # the quoting convention pinned for it (None: detected per post)
    sidecar: bool | None = None  # whether its folder listed its sidecar when found (None: not known, look)


def share_range(total: int, share: tuple[int, int]) -> range:
    """The entry indices (0-based) of share k of n: contiguous runs, in order, covering all."""
    k, n = share
    return range(total * k // n, total * (k + 1) // n)


@dataclass(frozen=True)
class Reject:
    source_path: str  # for an entry of an export: <export>#<entry id>
    code: str
    reason: str
    source_sha256: str | None = None
    source_bytes: int | None = None
    entry_position: int | None = None  # 1-based number of the entry in its export


@dataclass(frozen=True)
class Metadata:
    published_date: date | None = None
    title: str | None = None
    sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Entry:
    """Which post of a container a Source is: an entry of an export, or a saved page."""

    format: str  # mtif, wxr or html
    entry_id: str | None  # the entry's identity across exports (BASENAME, post id); None for a page
    position: int | None  # 1-based number in the export; None for a page
    url: str | None = None
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    published_at: datetime | None = None  # local time as the export writes it
    utc_offset_minutes: int | None = None  # of published_at, when the export says (WXR does, MTIF not)


@dataclass(frozen=True)
class Source:
    """A decoded post: `text` is what every character offset refers to."""

    rel: str  # the input file (for an export: the export)
    text: str
    sha256: str  # of the file's raw bytes; of the entry for an export's entry (see Entry readers)
    size: int
    encoding: str
    newline: str
    meta: Metadata = field(default_factory=Metadata)
    notes: tuple[str, ...] = ()  # repairs made while decoding, e.g. truncated_character
    fingerprint: str = ""  # sha256 over the bytes read and the sidecar's: the cache key of exactly these rows
    entry: Entry | None = None

    @property
    def key(self) -> str:
        """What names this post in ids and cache keys: the file, or <export>#<entry id>."""
        return f"{self.rel}#{self.entry.entry_id}" if self.entry and self.entry.entry_id else self.rel

    @property
    def source_format(self) -> str:
        return self.entry.format if self.entry else "text"
