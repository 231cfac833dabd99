"""Candidate pairs and their exact comparison.

In: signatures, band parameters, each excerpt's long paragraphs' hashes, a DuckDB connection.
Out: distinct pairs (a < b) whose signatures collide in an LSH band or that share a paragraph, with
how they were found; and `overlap`, the exact Jaccard and containment of two sorted 5-gram sets."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from kirinuki.dedup.minhash import LineIndex, _distinct_pairs, band_hashes
from kirinuki.dedup.model import DedupConfig

# ---------------------------------------------------------------- candidates


def candidate_pairs(con: duckdb.DuckDBPyConnection, sig_ok: np.ndarray, sig: np.ndarray, cfg: DedupConfig,
                    para_owner: np.ndarray, para_hash: np.ndarray, bands_per_join: int = 7,
                    only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct pairs (a < b) from band collisions and shared paragraphs, with the method; with
    `only` (a mask over the excerpts), just the pairs with at least one of those in them (the
    quotes an appended build compares again). The band self-join runs `bands_per_join` bands at a
    time (each join's tables and hash tables a fraction of the whole, and only those bands' hashes
    made: all of them were 200 MB at 100k posts), collecting pairs in a DuckDB table."""
    ids = np.flatnonzero(sig_ok).astype(np.int32)
    some = ids if only is None else np.flatnonzero(sig_ok & only).astype(np.int32)
    pairs = ("SELECT DISTINCT x.e AS a, y.e AS b FROM {x} x JOIN {y} y ON {on} AND x.e < y.e" if only is None else
             "SELECT DISTINCT least(x.e, y.e) AS a, greatest(x.e, y.e) AS b FROM {x} x JOIN {y} y ON {on} AND x.e <> y.e")
    nb = cfg.bands
    con.execute("CREATE OR REPLACE TEMP TABLE lsh_pairs (a INTEGER, b INTEGER)")
    for g in range(0, nb, bands_per_join):
        k = min(bands_per_join, nb - g)
        h = band_hashes(sig, cfg, g, k)
        for name, e in (("band_all", ids), ("band_some", some)) if only is not None else (("band_all", ids),):
            con.register(name, pa.table({"e": np.repeat(e, k), "band": np.tile(np.arange(g, g + k, dtype=np.int16), len(e)),
                                         "h": h[e].ravel()}))
        con.execute("INSERT INTO lsh_pairs " + pairs.format(x="band_all" if only is None else "band_some", y="band_all",
                                                            on="x.band = y.band AND x.h = y.h"))
        con.unregister("band_all")
        if only is not None:
            con.unregister("band_some")
        del h
    con.register("para_all", pa.table({"e": para_owner.astype(np.int32), "h": para_hash}))
    if only is not None:
        mine = only[para_owner]
        con.register("para_some", pa.table({"e": para_owner[mine].astype(np.int32), "h": para_hash[mine]}))
    res = con.sql(f"""
        WITH lsh AS (SELECT DISTINCT a, b FROM lsh_pairs),
        para AS ({pairs.format(x="para_all" if only is None else "para_some", y="para_all", on="x.h = y.h")})
        SELECT coalesce(l.a, p.a) AS a, coalesce(l.b, p.b) AS b,
               (l.a IS NOT NULL)::INT + 2 * (p.a IS NOT NULL)::INT AS how
        FROM lsh l FULL OUTER JOIN para p ON l.a = p.a AND l.b = p.b
        ORDER BY a, b""").to_arrow_table()
    con.unregister("para_all")
    if only is not None:
        con.unregister("para_some")
    con.execute("DROP TABLE lsh_pairs")
    return (res["a"].to_numpy().astype(np.int64), res["b"].to_numpy().astype(np.int64),
            res["how"].to_numpy().astype(np.int8))


def paragraph_hashes(lines: LineIndex, boiler_line: np.ndarray, ok: np.ndarray, cfg: DedupConfig
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(excerpt, stable key hash) of every distinct long enough paragraph that is not boilerplate
    (`boiler_line`, a mask over the lines) in an excerpt with enough 5-grams (`ok`): the keys of
    shared-paragraph candidates, kept for the next build too."""
    keep = (lines.length >= cfg.paragraph_min_chars) & ~boiler_line
    if len(lines.owner):
        keep &= ok[lines.owner]
    return _distinct_pairs(lines.owner[keep], lines.stable[keep])


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Jaccard, containment) of two sorted distinct arrays."""
    if len(a) > len(b):
        a, b = b, a
    if not len(a):
        return 0.0, 0.0
    idx = np.searchsorted(b, a)
    idx[idx == len(b)] = 0
    inter = int(np.count_nonzero(b[idx] == a))
    return inter / (len(a) + len(b) - inter), inter / len(a)
