"""What an append keeps of the last build's clusters: those no new quote joined and no text of
which changed keep each quote's relation to its canonical quote.

In: this build's clusters (each quote's root), the last build's quotes' positions in this build,
which quotes are fresh, and the last build's links. Out: the quotes of the clusters kept whole
(kept_clusters), and their relations by position (KeptRelations), in arrays rather than Python
dicts: at 100k posts these are hundreds of thousands of quotes, at the peak of an append's dedup.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


class KeptRelations:
    """What each quote of a kept cluster was to its canonical quote in the last build (relation,
    similarity), by this build's position: `i in kept`, `kept[i]`. A mask, and the last build's
    relations as codes and similarities as doubles (an Arrow string array or a list, and any
    sequence of floats, are taken): not a dict of tuples (~110 MB at 100k posts), nor lists of
    Python strings and floats (~60 MB)."""

    def __init__(self, n: int, quotes: np.ndarray, old: np.ndarray, relation: pa.Array | Sequence[str],
                 similarity: Sequence[float]):
        self.mask = np.zeros(n, bool)
        self.mask[quotes] = True
        self.at_last = np.full(n, -1, np.int64)
        self.at_last[old] = np.arange(len(old))
        coded = (relation if isinstance(relation, pa.Array) else pa.array(relation, pa.string())).dictionary_encode()
        self.names: list[str] = coded.dictionary.to_pylist()
        self.codes = coded.indices.to_numpy(zero_copy_only=False)
        self.similarity = np.asarray(similarity, np.float64)

    def __contains__(self, i: int) -> bool:
        return bool(self.mask[i])

    def __getitem__(self, i: int) -> tuple[str, float]:
        if not self.mask[i]:
            raise KeyError(i)
        k = int(self.at_last[i])
        return self.names[self.codes[k]], float(self.similarity[k])


def kept_clusters(n: int, root: list[int], old: np.ndarray, is_fresh: np.ndarray, a: np.ndarray,
                  b: np.ndarray) -> np.ndarray:
    """The quotes (ascending) of every cluster (`root`: each quote's) that is exactly a cluster of
    the last build, none of its quotes fresh: the last build's clusters are the components of its
    links (`a`, `b`: its quote pairs judged a link, in this build's positions). In arrays, not a
    dict of lists and sets per cluster (~90 MB more at the peak of a 10 % append at 100k posts)."""
    from kirinuki.dedup.clusters import UnionFind

    was = UnionFind(n)
    for x, y in zip(a.tolist(), b.tolist()):
        was.union(x, y)
    old_root = np.fromiter((was.find(i) for i in range(n)), np.int64, n)
    del was
    now = np.asarray(root, np.int64)
    low, high = np.full(n, n, np.int64), np.full(n, -1, np.int64)
    np.minimum.at(low, now, old_root)  # one old cluster in a cluster: its lowest root is its highest
    np.maximum.at(high, now, old_root)
    whole = np.bincount(old_root[old], minlength=n)  # quotes of the last build in each old cluster
    size, fresh = np.bincount(now, minlength=n), np.bincount(now[is_fresh], minlength=n)
    same = (fresh == 0) & (low == high) & (whole[np.minimum(low, n - 1)] == size)
    return np.flatnonzero(same[now])
