"""Sketching: the text dedup compares, its 5-grams, and one-permutation MinHash signatures.

In: excerpts and a `DedupConfig`. Out: each content line as numbers (`LineIndex`), the hashes of
boilerplate paragraphs, per-text signatures (`uint32[n, bands*rows]`) and exact shingle sets
(`ShingleSets`), and LSH band hashes. Pure numpy; no I/O beyond the spill file."""

from __future__ import annotations

import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from kirinuki.dedup.common import CommonGrams, bucket_of
from kirinuki.dedup.model import DedupConfig, Excerpt
from kirinuki.dedup.spill import ShingleSets

_ELISION = re.compile(r"[(（](?:中略|後略|前略)[)）]")
_U64 = np.uint64
# ---------------------------------------------------------------- text and shingles


def paragraph_key(line: str) -> str:
    """A line without whitespace or elision markers: what two quotes of a paragraph share."""
    key = "".join(line.split())
    return _ELISION.sub("", key) if "略" in key else key


def has_content(line: str) -> bool:
    """Whether the line has a paragraph key (`bool(paragraph_key(line))`), without making the key
    unless it may hold an elision marker: whitespace alone is no content."""
    return bool(line.strip() if "略" not in line else paragraph_key(line))


def key_hash(k: str) -> int:
    """A paragraph key's 64-bit hash (Python's, so it is only compared within one run)."""
    return hash(k) & 0xFFFFFFFFFFFFFFFF


_POWERS = np.ones(1, np.uint64)


def stable_hashes(keys: list[str]) -> np.ndarray:
    """64-bit hashes of non-empty strings that are the same in every process (unlike `key_hash`),
    for what dedup keeps between builds: a polynomial over the code points (mod 2**64), mixed with
    the length. Vectorised, a run of keys of about _HASHED_AT_ONCE code points at a time, so that
    its arrays stay in the CPU's cache: 0.34-0.38 s for the 786,266 keys of the 10k benchmark corpus,
    against 1.25 s for all of a chunk's keys at once and 0.70 s for blake2b each."""
    if not keys:
        return np.zeros(0, np.uint64)
    lengths = np.fromiter(map(len, keys), np.int64, len(keys))
    _powers_upto(int(lengths.max()))
    ends = np.cumsum(lengths)
    # cut where the running total passes each multiple of _HASHED_AT_ONCE (a key is never split)
    cuts = np.unique(np.searchsorted(ends, np.arange(_HASHED_AT_ONCE, int(ends[-1]), _HASHED_AT_ONCE), side="left") + 1)
    bounds = [0, *cuts[cuts < len(keys)].tolist(), len(keys)]
    return np.concatenate([_polynomial(keys[lo:hi], lengths[lo:hi]) for lo, hi in zip(bounds, bounds[1:])])


_HASHED_AT_ONCE = 1 << 16  # code points: ~0.5 MB per uint64 array


def _powers_upto(longest: int) -> None:
    global _POWERS
    if len(_POWERS) < longest:
        n = max(longest, 2 * len(_POWERS))
        _POWERS = np.cumprod(np.full(n, 0x100000001B3, np.uint64), dtype=np.uint64)  # wraps mod 2**64


def _polynomial(keys: list[str], lengths: np.ndarray) -> np.ndarray:
    cps = np.frombuffer("".join(keys).encode("utf-32-le"), np.uint32).astype(np.uint64)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(len(cps), dtype=np.int64) - np.repeat(starts, lengths)
    h = np.add.reduceat(cps * _POWERS[pos], starts) ^ lengths.astype(np.uint64)
    h ^= h >> _U64(33)  # splitmix64's finaliser
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


@dataclass
class LineIndex:
    """Every content line of every excerpt as numbers, not strings (the strings are most of the
    corpus again): its excerpt, its key's hash and its key's length, in body order."""

    owner: np.ndarray  # int64
    hash: np.ndarray  # uint64
    length: np.ndarray  # int64
    stable: np.ndarray  # uint64: the key's stable_hashes, for what is kept between builds


_LINES_AT_ONCE = 4096  # bodies whose lines are keyed together: array passes, bounded memory


def line_keys(bodies: list[str]) -> tuple[list[str], list[int]]:
    """Every line's paragraph_key, in order ("" for a line with no content), and how many lines
    each body has."""
    lines = "\n".join(bodies).split("\n")
    return [paragraph_key(line) for line in lines], [b.count("\n") + 1 for b in bodies]


def line_index(excerpts: list[Excerpt], only: list[int] | None = None) -> LineIndex:
    """The lines of every excerpt (or of those at the indices `only`, ascending)."""
    at = range(len(excerpts)) if only is None else only
    owner, hashes, lengths, stable = [], [], [], []
    for lo in range(0, len(at), _LINES_AT_ONCE):
        some = at[lo : lo + _LINES_AT_ONCE]
        keys, per_body = line_keys([excerpts[i].body_norm for i in some])
        size = np.fromiter(map(len, keys), np.int64, len(keys))
        has = size > 0
        keys = [k for k in keys if k]
        owner.append(np.repeat(np.asarray(some, np.int64), per_body)[has])
        lengths.append(size[has])
        hashes.append(np.fromiter(map(hash, keys), np.int64, len(keys)).view(np.uint64))  # key_hash, at once
        stable.append(stable_hashes(keys))
    if not owner:
        return LineIndex(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
    return LineIndex(np.concatenate(owner), np.concatenate(hashes), np.concatenate(lengths), np.concatenate(stable))


def boilerplate_keys(excerpts: list[Excerpt], lines: LineIndex, cfg: DedupConfig) -> set[int]:
    """Hashes of the keys found under more than `max_headlines` distinct headlines."""
    headline_ids: dict[str, int] = {}
    hid = np.array([headline_ids.setdefault(e.headline, len(headline_ids)) for e in excerpts], np.int64)
    h, heads = _distinct_pairs(lines.hash, hid[lines.owner])
    if not len(h):
        return set()
    starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
    counts = np.diff(np.append(starts, len(h)))
    return set(h[starts[counts > cfg.max_headlines]].tolist())


def boiler_strings(excerpts: list[Excerpt], boiler: set[int], where: dict[int, tuple[int, ...]]) -> list[str]:
    """The keys (text) of the boilerplate hashes `boiler`, found at their positions `where`
    (boiler_lines), sorted: hashes are per process, the keys are what a later build can use."""
    found: set[str] = set()
    for i, positions in where.items():
        keys = [k for line in excerpts[i].body_norm.split("\n") if (k := paragraph_key(line))]
        found.update(keys[p] for p in positions)
        if len(found) >= len(boiler):
            break
    return sorted(found)


def boiler_lines(lines: LineIndex, boiler: set[int]) -> dict[int, tuple[int, ...]]:
    """Excerpt index -> the positions, among its content lines, of those that are boilerplate;
    only for excerpts that have any. Unlike the hashes, positions mean the same in every process."""
    if not boiler or not len(lines.hash):
        return {}
    at = np.flatnonzero(np.isin(lines.hash, np.fromiter(boiler, np.uint64, len(boiler))))
    if not len(at):
        return {}
    owners = lines.owner[at]
    positions = at - np.searchsorted(lines.owner, owners, side="left")  # owner is ascending
    out: dict[int, list[int]] = {}
    for o, p in zip(owners.tolist(), positions.tolist()):
        out.setdefault(o, []).append(p)
    return {o: tuple(p) for o, p in out.items()}


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs, sorted by a then b (a sort, not np.unique: much faster here)."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def distinct_sorted(a: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique without its sort: in numpy 2.4 it hashes,
    and is 5-60 times slower on these arrays than a sort and this)."""
    return a[np.append(True, a[1:] != a[:-1])] if len(a) > 1 else a


def holdings(buckets: np.ndarray, owners: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's holdings (owners 0..n-1, in build order): its distinct buckets (sorted), how
    many owners hold each, where each bucket's owners start in the last array, and that array:
    each bucket's distinct owners, ascending."""
    key = distinct_sorted(np.sort(buckets.astype(np.int64) * n + owners))
    b, o = (key // n).astype(np.uint32), (key % n).astype(np.int32)
    start = np.ones(len(b), bool)
    start[1:] = b[1:] != b[:-1]
    first = np.flatnonzero(start)
    held = np.diff(np.append(first, len(b))).astype(np.int32)
    return b[first], held, first, o


class DedupTexts:
    """The texts compared, built a slice at a time when sketch asks (never all held at once).
    `boiled`, when given, holds the positions of the excerpts with a boilerplate line: the others'
    texts are their bodies without whitespace (dedup_text's `plain`)."""

    def __init__(self, excerpts: list[Excerpt], boiler: set[int], boiled: set[int] | None = None):
        self.excerpts, self.boiler, self.boiled = excerpts, boiler, boiled

    def __len__(self) -> int:
        return len(self.excerpts)

    def __getitem__(self, s: slice) -> list[str]:
        if self.boiled is None:
            return [dedup_text(e, self.boiler) for e in self.excerpts[s]]
        return [dedup_text(e, self.boiler, i not in self.boiled)
                for i, e in zip(range(len(self.excerpts))[s], self.excerpts[s])]

    def raw(self, s: slice) -> dict[int, str]:
        """The raw texts (boilerplate kept: what common 5-grams are counted in) of the texts in the
        slice that lost boilerplate lines, by their place in the slice."""
        if not self.boiler:
            return {}
        at = range(len(self.excerpts))[s]
        if self.boiled is not None:
            return {k: dedup_text(self.excerpts[i], set()) for k, i in enumerate(at) if i in self.boiled}
        raw = {k: dedup_text(self.excerpts[i], set()) for k, i in enumerate(at)}
        return {k: t for k, t in raw.items() if t != dedup_text(self.excerpts[at[k]], self.boiler)}


def dedup_text(e: Excerpt, boiler: set[int], plain: bool = False) -> str:
    """The text compared: the body's keys without boilerplate, joined. `plain`: the body has no
    boilerplate line, so without elision markers its text is the body with no whitespace."""
    body = e.body_norm
    if (plain or not boiler) and "略" not in body:
        return "".join(body.split())
    return "".join(k for line in body.split("\n") if (k := paragraph_key(line)) and key_hash(k) not in boiler)


_U32 = np.uint32


def _mix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x7FEB352D)
    h = h ^ (h >> _U32(15))
    h = h * _U32(0x846CA68B)
    return h ^ (h >> _U32(16))


def shingle_hashes(texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit polynomial hashes of every character k-gram (uint32 arithmetic), and the index of the
    text each belongs to. Collisions inside one compared pair are ~1e-4 per pair: negligible."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    n = len(cps)
    if n < k:
        return np.empty(0, np.uint32), np.empty(0, np.int32)
    m = n - k + 1
    h = cps[:m].copy()
    for j in range(1, k):
        h *= _U32(0x01000193)
        h += cps[j : m + j]
    owner = np.repeat(np.arange(len(texts), dtype=np.int32), lengths)[:m]
    # a k-gram is valid when it ends inside its own text: drop the k-1 starts before each end
    ends = np.cumsum(lengths)
    bad = (ends[:, None] - np.arange(1, k)).ravel()
    valid = np.ones(m, dtype=bool)
    valid[bad[(bad >= 0) & (bad < m)]] = False
    return h[valid], owner[valid]


def sample_values(h: np.ndarray, owner: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mix every k-gram hash once; keep a consistent 1/2**sample_bits of them (decided by the
    lowest bits, the same way in every text, so the sample's Jaccard estimates the full one)."""
    vals = _mix32(h ^ _U32(cfg.seed & 0xFFFFFFFF))
    if cfg.sample_bits:
        keep = (vals & _U32((1 << cfg.sample_bits) - 1)) == 0
        vals, owner = vals[keep], owner[keep]
    return vals, owner


def signatures(vals: np.ndarray, owner: np.ndarray, n: int, cfg: DedupConfig) -> np.ndarray:
    """One-permutation MinHash: the top bits of a value pick one of `perms` bins and each bin keeps
    its minimum (the values given: sketch leaves out the 5-grams common at each text, which make
    unrelated texts collide in LSH bands). Empty bins borrow from the next non-empty bin (rotation
    densification)."""
    K = cfg.perms
    bins = ((vals.astype(np.uint64) * _U64(K)) >> _U64(32)).astype(np.int64)
    sig = np.full(n * K, 0xFFFFFFFF, dtype=np.uint32)
    np.minimum.at(sig, owner.astype(np.int64) * K + bins, vals)
    sig = sig.reshape(n, K)
    empty = sig == 0xFFFFFFFF
    rows = np.flatnonzero(empty.any(axis=1))
    if len(rows):
        sub, hole = sig[rows], empty[rows]
        pos = np.where(np.tile(~hole, 2), np.arange(2 * K, dtype=np.int16), np.int16(2 * K))
        nxt = np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1][:, :K]  # next filled bin, wrapping
        has = nxt < 2 * K
        borrowed = np.take_along_axis(sub, np.where(has, nxt % K, 0), axis=1)
        shift = (nxt - np.arange(K, dtype=np.int16)).astype(np.uint32) * _U32(0x9E3779B1)
        sig[rows] = np.where(hole & has, borrowed + shift, sub)
    return sig


def sketch(texts, cfg: DedupConfig, spill_dir: str | None = None, common: CommonGrams | None = None,
           positions: np.ndarray | None = None, counted: np.ndarray | None = None
           ) -> tuple[np.ndarray, "ShingleSets", CommonGrams | None]:
    """Signatures and exact shingle sets for all texts (a sequence whose slices are lists of str),
    in chunks of `chunk` texts: small numpy temporaries are much faster here than corpus-sized
    ones, and memory stays bounded. Chunks run in threads (numpy releases the GIL in its loops):
    each makes its texts' distinct 5-gram hashes (the exact sets verification compares; written to
    a file in `spill_dir`, ~4 bytes per character of the corpus: on disk, not in memory), their
    sampled values, and what the counts of common 5-grams need (kirinuki.dedup.common). In build
    order, this thread then counts each chunk, and a thread signs its texts without the 5-grams
    common at them. `positions`: the texts' positions in the build (default 0, 1, ...); `counted`: which of
    them are counted (default all: an append counts its new quotes, not earlier ones it signs
    again); `common`: the counts so far (an earlier corpus's, added to in place). A text that
    `texts.raw` gives a raw text for (it lost boilerplate lines) is counted by that raw text.
    Returns the signatures, the sets and the counts (None when `common_5grams` is 0)."""
    if not cfg.common_5grams:
        common = None
    elif common is None:
        common = CommonGrams(cfg)
    n_all = len(texts)
    at = np.arange(n_all, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    raw_of = getattr(texts, "raw", None)

    def first(s: int):
        part = texts[s : s + cfg.chunk]
        n = len(part)
        h, owner = shingle_hashes(part, cfg.shingle)
        starts = np.searchsorted(owner, np.arange(n + 1))
        sizes = np.diff(starts)
        # each text's distinct hashes, sorted (text by text: small sorts in cache take a quarter of
        # the time of one sort of (text, hash) pairs)
        cut = starts.tolist()
        u = np.concatenate([np.sort(h[cut[t] : cut[t + 1]]) for t in range(n)]) if n else h
        del h, owner
        first_of_text = np.ones(len(u), bool)
        first_of_text[1:] = u[1:] != u[:-1]
        first_of_text[starts[:-1][starts[:-1] < len(u)]] = True  # a text's first hash, even if the last one's
        sets = u[first_of_text]
        bounds = np.concatenate(([0], np.cumsum(first_of_text)))[starts].astype(np.int64)
        vals, vowner = sample_values(sets, np.repeat(np.arange(n, dtype=np.int32), np.diff(bounds)), cfg)
        held = vb = None
        if common is not None:
            vb = bucket_of(vals, cfg)
            cb, co = vb, vowner
            raw = raw_of(slice(s, s + n)) if raw_of is not None else {}
            counts_here = None if counted is None else counted[s : s + n]
            if raw or counts_here is not None:
                skip = np.zeros(n, bool) if counts_here is None else ~counts_here
                raw = {k: t for k, t in raw.items() if not skip[k]}
                skip[list(raw)] = True
                keep = ~skip[co]
                cb, co = cb[keep], co[keep]
                if raw:
                    rh, ro = shingle_hashes(list(raw.values()), cfg.shingle)
                    rv, ro = sample_values(rh, ro, cfg)
                    cb = np.concatenate([cb, bucket_of(rv, cfg)])
                    co = np.concatenate([co, np.fromiter(raw, np.int32, len(raw))[ro]])
            held = holdings(cb, co, max(n, 1))
        return sets, bounds, sizes, vals, vowner, vb, held

    def second(s: int, n: int, vals: np.ndarray, vowner: np.ndarray, vb: np.ndarray | None) -> None:
        if common is not None:  # (once the chunk is counted: later chunks only mark later positions)
            keep = ~common.common_at(vb, at[s : s + n][vowner])
            vals, vowner = vals[keep], vowner[keep]
        sig[s : s + n] = signatures(vals, vowner, n, cfg)

    store = ShingleSets(cfg.chunk, spill_dir)
    sig = np.empty((n_all, cfg.perms), dtype=np.uint32)
    threads = os.cpu_count() or 1
    starts = range(0, n_all, cfg.chunk)
    with ThreadPoolExecutor(threads) as pool:  # a few chunks ahead, not all (their values are held)
        ahead = deque(pool.submit(first, s) for s in starts[: 2 * threads])
        signing: deque = deque()
        for k, s in enumerate(starts):
            sets, bounds, sizes, vals, vowner, vb, held = ahead.popleft().result()
            if k + 2 * threads < len(starts):
                ahead.append(pool.submit(first, starts[k + 2 * threads]))
            n = len(bounds) - 1
            store.append(sets, bounds, sizes)
            if common is not None:
                hb, count, first_owner, owners = held
                common.add(hb, count, first_owner, at[s : s + n][owners])
            signing.append(pool.submit(second, s, n, vals, vowner, vb))
            while signing and signing[0].done():
                signing.popleft().result()
        for f in signing:
            f.result()
        store.close_appends()
    return sig, store, common


def band_hashes(sig: np.ndarray, cfg: DedupConfig, first: int, count: int) -> np.ndarray:
    """64-bit hashes of bands first .. first+count-1 of every signature."""
    b = sig[:, first * cfg.rows : (first + count) * cfg.rows].reshape(len(sig), count, cfg.rows)
    h = np.zeros(b.shape[:2], dtype=np.uint64)
    for r in range(cfg.rows):  # widened one row at a time, not every row at once
        h = (h * _U64(0x100000001B3)) ^ b[:, :, r].astype(np.uint64)
    return h
