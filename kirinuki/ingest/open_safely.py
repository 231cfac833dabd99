"""Opening input files safely: what is read is what is there when it is opened.

In: a path (an input or its sidecar), a size limit and the input folder. Out: the file's bytes, or
`Unsafe` saying why it is not read (a link out of the folder, not a regular file, too large); the
sidecar's bytes or error; and the fingerprint of exactly those bytes, which keys the cache.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

META_SUFFIX = ".meta.json"


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


SIDECAR_MAX_BYTES = 1 << 20  # a sidecar holds a date and a title


class Unsafe(OSError):
    """What is at a path cannot be read as a plain file (a link, a FIFO, too large, moved away)."""

    def __init__(self, code: str, reason: str, size: int | None = None):
        super().__init__(reason)
        self.code, self.reason, self.size = code, reason, size


def read_plain_file(path: str, max_bytes: int, root: str = "", resolve: bool = True) -> bytes:
    """The bytes of the regular file at `path`, checked where it is opened, not where it was
    listed: the last component is opened without following a link, it must be a regular file (a
    FIFO is never waited on) no larger than `max_bytes`, and, with `root`, its real path must still
    lie inside that folder. Raises Unsafe (or OSError) instead."""
    if resolve:  # an input: links inside the input folder (or a file named itself) are fine
        real = os.path.realpath(path)
        if root and not _inside(real, root):
            raise Unsafe("outside_root", "now a link to a file outside the input folder (changed after it was listed)")
        path = real
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Unsafe("outside_root", "is a link (or became one after it was listed); not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe("not_a_file", "not a regular file")
        if st.st_size > max_bytes:
            raise Unsafe("too_large", f"file is {st.st_size} bytes, over the {max_bytes}-byte limit "
                                      "(raise --max-file-mb to read it)", st.st_size)
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 8 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def sidecar_name(name: str) -> str:
    """The file name of a post's sidecar: its name's stem (as pathlib takes it) + META_SUFFIX."""
    dot = name.rfind(".")
    return (name[:dot] if 0 < dot < len(name) - 1 else name) + META_SUFFIX


def sidecar_str(path: str) -> str:
    """The path of a post's sidecar, beside it; made without pathlib (a build stats it for every
    post whose folder listing did not settle it)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, sidecar_name(name))


def sidecar_path(path: str) -> Path:
    return Path(sidecar_str(path))


def read_sidecar(path: str, max_bytes: int = SIDECAR_MAX_BYTES) -> bytes | None | Unsafe | OSError:
    """The sidecar's bytes; None when there is none; the error when it cannot be read safely."""
    side = sidecar_path(path)
    if not os.path.lexists(side):
        return None
    try:
        return read_plain_file(str(side), min(max_bytes, SIDECAR_MAX_BYTES), resolve=False)  # never a link
    except OSError as e:
        return e


def fingerprint_of(data: bytes, sidecar: bytes | None | OSError) -> str:
    """sha256 of a file's bytes and its sidecar's (what the cache keys rows by)."""
    h = hashlib.sha256(data)
    h.update(b"\0sidecar\0")
    if isinstance(sidecar, bytes):
        h.update(sidecar)
    elif isinstance(sidecar, OSError):
        h.update(b"\0unreadable\0" + str(sidecar).encode())
    return h.hexdigest()
