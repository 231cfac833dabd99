"""Pins: the quoting convention a user chose for a folder of posts or for one file.

In: a folder's `conventions.toml` (optional, in any folder under an input root), and the build's
`--convention` option. Out: for each input file, the name of its pinned convention, or None (then
the convention is detected post by post).

    # input/my-blog/conventions.toml
    convention = "source_before"        # every post in this folder and the folders under it
    [files]
    "old/goo-export.txt" = "star_frame" # one file (of an export: all its entries), relative to this folder

The nearest folder's file decides; a [files] entry beats a folder's `convention`; `--convention`
beats every file. A pin file that names no known convention, or holds anything else, stops the
build with one line naming the file: a pin is the user's instruction, so it is never ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

from kirinuki.parse.conventions import ConventionError, by_name

PIN_FILE = "conventions.toml"


class PinError(ValueError):
    pass


def check_name(name: str, where: str) -> str:
    try:
        return by_name(name).name
    except ConventionError as e:
        raise PinError(f"{where}: {e}") from None


def read_pin_file(path: Path, shown: str) -> tuple[str | None, dict[str, str]]:
    """(folder's convention, {relative file path: convention}) from one pin file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise PinError(f"{shown}: cannot read this pin file ({e}); fix it or remove it") from None
    unknown = set(raw) - {"convention", "files"}
    if unknown:
        raise PinError(f"{shown}: unknown key {min(unknown)!r}; a pin file holds convention = \"name\" and [files]")
    folder = check_name(raw["convention"], shown) if "convention" in raw else None
    files = raw.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise PinError(f"{shown}: [files] maps file paths to convention names")
    return folder, {PurePosixPath(k).as_posix(): check_name(v, f"{shown} [files] {k!r}") for k, v in files.items()}


class Pins:
    """The pin files met while walking one input root, and the pin of each file under it."""

    def __init__(self, override: str | None = None):
        self.override = check_name(override, "--convention") if override else None
        self.folders: dict[str, tuple[str | None, dict[str, str]]] = {}  # folder rel path -> pins

    def add_folder(self, rel_dir: str, path: Path, shown: str) -> None:
        self.folders[rel_dir] = read_pin_file(path, shown)

    def for_file(self, rel: str) -> str | None:
        if self.override:
            return self.override
        if not self.folders:
            return None
        parts = PurePosixPath(rel).parts
        for depth in range(len(parts) - 1, -1, -1):  # the nearest folder first
            folder = "/".join(parts[:depth])
            if folder not in self.folders:
                continue
            default, files = self.folders[folder]
            inside = "/".join(parts[depth:])
            if inside in files:
                return files[inside]
            if default:
                return default
        return None
