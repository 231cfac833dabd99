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
    """While `active`: finds DEFERRED modules as the finders after it would, with a loader that
    defers executing them. Installed once and then switched, not added and removed around each
    import: another thread's import may be walking sys.meta_path meanwhile."""

    active = False

    def find_spec(self, name, path, target=None):
        if not self.active or name not in DEFERRED:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is None:
                    return None
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


_FINDER = _DeferringFinder()


def import_great_expectations():
    """`great_expectations`, imported with DEFERRED modules lazy (the module docstring says why)."""
    if "great_expectations" not in sys.modules:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        _FINDER.active = True
        try:
            import great_expectations  # noqa: F401
        finally:
            _FINDER.active = False
    # (when another thread is still importing it, this waits for it: sys.modules would not)
    import great_expectations

    return great_expectations
