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
                    para_owner: np.ndarray, para_hash: np.ndarray, bands_per_join: int = 7
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct pairs (a < b) from band collisions and shared paragraphs, with the method. The
    band self-join runs `bands_per_join` bands at a time (each join's tables and hash tables a
    fraction of the whole, and only those bands' hashes made: all of them were 200 MB at 100k
    posts), collecting pairs in a DuckDB table."""
    ids = np.flatnonzero(sig_ok).astype(np.int32)
    nb = cfg.bands
    con.execute("CREATE OR REPLACE TEMP TABLE lsh_pairs (a INTEGER, b INTEGER)")
    for g in range(0, nb, bands_per_join):
        k = min(bands_per_join, nb - g)
        band_tbl = pa.table({"e": np.repeat(ids, k), "band": np.tile(np.arange(g, g + k, dtype=np.int16), len(ids)),
                             "h": band_hashes(sig, cfg, g, k)[ids].ravel()})
        con.register("band_tbl", band_tbl)
        con.execute("""
            INSERT INTO lsh_pairs SELECT DISTINCT a.e, b.e FROM band_tbl a JOIN band_tbl b
              ON a.band = b.band AND a.h = b.h AND a.e < b.e""")
        con.unregister("band_tbl")
        del band_tbl
    para_tbl = pa.table({"e": para_owner.astype(np.int32), "h": para_hash})
    con.register("para_tbl", para_tbl)
    res = con.sql("""
        WITH lsh AS (SELECT DISTINCT a, b FROM lsh_pairs),
        para AS (
          SELECT DISTINCT a.e AS a, b.e AS b FROM para_tbl a JOIN para_tbl b
            ON a.h = b.h AND a.e < b.e)
        SELECT coalesce(l.a, p.a) AS a, coalesce(l.b, p.b) AS b,
               (l.a IS NOT NULL)::INT + 2 * (p.a IS NOT NULL)::INT AS how
        FROM lsh l FULL OUTER JOIN para p ON l.a = p.a AND l.b = p.b
        ORDER BY a, b""").to_arrow_table()
    con.unregister("para_tbl")
    con.execute("DROP TABLE lsh_pairs")
    return (res["a"].to_numpy().astype(np.int64), res["b"].to_numpy().astype(np.int64),
            res["how"].to_numpy().astype(np.int8))


def paragraph_hashes(lines: LineIndex, boiler: set[int], cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(excerpt, key hash) of every distinct long enough, non-boilerplate paragraph of each excerpt."""
    keep = lines.length >= cfg.paragraph_min_chars
    if boiler:
        keep &= ~np.isin(lines.hash, np.fromiter(boiler, np.uint64, len(boiler)))
    return _distinct_pairs(lines.owner[keep], lines.hash[keep])

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
