"""The data files kirinuki ships: table schemas, Great Expectations suites, curated reference data.

In: a name (`schemas`, `expectations`, `reference`, `flows`). Out: that folder as a path, found through
`importlib.resources` inside the installed `kirinuki` package. The repository keeps one copy of each at
its top level (`schemas/`, `expectations/`, `input/reference/`, `flows/`); the package holds links to
them, which the wheel build resolves into real files, so an installed wheel and a checkout read the
same bytes and nothing is looked up relative to the current folder or the checkout.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

FOLDERS = ("schemas", "expectations", "reference", "flows")


def folder(name: str) -> Path:
    """The shipped folder `name` as a file-system path (the package is installed unzipped)."""
    if name not in FOLDERS:
        raise KeyError(f"no shipped folder {name!r}; known: {', '.join(FOLDERS)}")
    with as_file(files("kirinuki") / name) as path:
        return Path(path)


def package_root() -> Path:
    """The installed `kirinuki` package folder."""
    with as_file(files("kirinuki")) as path:
        return Path(path)


def package_files(*, suffixes: tuple[str, ...] = (".py",), under: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """(path relative to the package, path) of every file with one of `suffixes` in the package,
    following the shipped links, in a fixed order; `under` limits it to those top-level entries."""
    import os

    root = package_root()
    out: list[tuple[str, Path]] = []
    for top in sorted(under or os.listdir(root)):
        start = root / top
        if start.is_file():
            if start.suffix in suffixes:
                out.append((top, start))
            continue
        for d, dirs, names in os.walk(start, followlinks=True):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for n in sorted(names):
                if n.endswith(suffixes):
                    p = Path(d) / n
                    out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)
