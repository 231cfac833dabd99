"""How kirinuki's processes allocate memory: Arrow's buffers from the C library's malloc, which keeps
at most two arenas; and freed heap given back to the system when a stage lets go of a lot.

In: the environment (a value the user set wins). Out: the environment the command's child
processes (parse workers, dedup) start with, and the running process set the same way.

Why (docs/measurements.md, "Where the builds stand (ab6ec77)"): Arrow's default allocator (mimalloc) keeps
the pages it frees for itself, and glibc gives each thread that allocates an arena of its own (up to
eight per core), each keeping what was freed in it. A stage that frees Python objects and numpy
arrays and then allocates Arrow buffers (dedup copying the last build's articles) therefore grows by
both. Arrow's buffers from malloc, with two arenas, reuse that memory: an append of 10 % at 10k
posts peaked at 1.35 GB instead of 1.5 GB, no slower; either setting alone did not help.
"""

from __future__ import annotations

import os
import sys

LEAN = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"}
_M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def _libc():
    import ctypes

    return ctypes.CDLL(None)  # the process's own symbols: the C library's, where it is glibc


def use_lean_allocators() -> None:
    """Set LEAN's variables where the user has not, for this process's children; and this process
    likewise (glibc read MALLOC_ARENA_MAX when it started; Arrow reads its variable when first used)."""
    for key, value in LEAN.items():
        os.environ.setdefault(key, value)
    arenas = os.environ["MALLOC_ARENA_MAX"]
    if arenas.isdigit() and int(arenas) > 0:
        try:
            _libc().mallopt(_M_ARENA_MAX, int(arenas))
        except (OSError, AttributeError, TypeError):  # not glibc: the variable means nothing there
            pass
    if "pyarrow" in sys.modules and os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system":
        import pyarrow as pa

        if pa.default_memory_pool().backend_name != "system":  # imported (and its pool chosen) already
            pa.set_memory_pool(pa.system_memory_pool())


def give_back_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass
