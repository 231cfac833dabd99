"""Import Great Expectations without the libraries it imports for expectations kirinuki never runs.

In: nothing. Out: the `great_expectations` module, imported once per process.

`import great_expectations` imports scipy.stats (for its distribution expectations, such as the
KL divergence one) and altair (for its charts) as it loads, a third of its import time (0.9 of
2.6 s here). kirinuki's suites use neither, so both are imported lazily
(importlib.util.LazyLoader): GX binds the names as it always does, and a module is loaded for real
the first time one of its attributes is read, by whatever reads it. Only modules not yet imported
are deferred, and only while GX itself is being imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

DEFERRED = ("scipy.stats", "altair")  # imported by GX at load time, used only by expectations kirinuki has none of


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds DEFERRED modules as every other finder would, with a loader that defers executing them."""

    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        sys.meta_path.remove(self)  # find the module's real spec with the finders after this one
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def import_great_expectations():
    """`great_expectations`, imported with DEFERRED modules lazy (the module docstring says why)."""
    if "great_expectations" in sys.modules:  # (perhaps still importing in another thread: the import
        import great_expectations  # statement waits for it, as sys.modules would not)

        return great_expectations
    finder = _DeferringFinder()
    sys.meta_path.insert(0, finder)
    try:
        import great_expectations
    finally:
        sys.meta_path.remove(finder)
    return great_expectations
