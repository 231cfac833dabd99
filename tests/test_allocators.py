"""The command's allocators: Arrow's buffers from malloc with two arenas, unless the user chose."""

import os
import subprocess
import sys

from kirinuki.allocators import LEAN

SHOW = ("import kirinuki.cli, os, pyarrow as pa; "
        "print(pa.default_memory_pool().backend_name, os.environ['MALLOC_ARENA_MAX'])")


def _shown(**env) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in LEAN}
    r = subprocess.run([sys.executable, "-c", SHOW], env=dict(clean, **env), capture_output=True, text=True, check=True)
    return r.stdout.split()


def test_the_command_allocates_arrow_buffers_with_malloc_in_two_arenas_and_its_children_inherit_it():
    assert _shown() == ["system", "2"]  # the command's process; its environment is its children's


def test_a_user_s_own_allocator_settings_win():
    assert _shown(ARROW_DEFAULT_MEMORY_POOL="mimalloc", MALLOC_ARENA_MAX="4") == ["mimalloc", "4"]
