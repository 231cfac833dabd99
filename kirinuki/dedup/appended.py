"""Clustering only the quotes appended since the last build, with the same result as clustering all.

In: this build's excerpts (in build order), the sketches the last build kept (kirinuki.dedup.sketches),
a DuckDB connection. Out: `Clusters` equal to what clustering every excerpt gives, or the reason
(one line) why this build must cluster everything instead.

Why it is the same. Clustering keeps, strongest estimate first, each verified link that joins two
clusters not yet joined: the maximum spanning forest of the verified-link graph under one total
order (estimate, then indices). When every earlier quote is still there, unchanged and in the same
order, an edge between two earlier quotes changes only if what one of them compares or its
signature changed. A signature leaves out the 5-grams held by more than `common_5grams` quotes
before it (kirinuki.dedup.common): quotes appended after the earlier ones change no earlier
signature. A paragraph of earlier quotes becoming boilerplate changes their compared text: the
quotes holding it (found under the headlines the kept (paragraph, headline) pairs name with it)
are sketched again with the new ones, "fresh" like them (their raw text, and so the counts, did
not change). Every cluster of the last build holding a fresh quote is done again. The other
clusters are whole components whose edges are what they were, so their links are still their
forest; the new forest is those links plus the candidate edges that touch a fresh quote (band
collisions and shared paragraphs against every quote), verified as a clean build would. A cluster
with no fresh quote keeps its relations too. A quote edited, removed or moved, more new quotes than
old, or a new quote placed before earlier ones that holds a 5-gram now common (the earlier ones
after it would count it sooner) clusters everything again.
"""

from __future__ import annotations

import threading
import zipfile

import numpy as np

from kirinuki.dedup.candidates import candidate_pairs, paragraph_hashes
from kirinuki.dedup.minhash import (DedupTexts, _distinct_pairs, boiler_lines, dedup_text, distinct_sorted,
                                    key_hash, line_index, paragraph_key, sample_values, shingle_hashes, sketch,
                                    stable_hashes)
from kirinuki.dedup.kept import KeptRelations, kept_clusters
from kirinuki.dedup.model import DedupConfig, Excerpt
from kirinuki.dedup.sketches import Sketches, StoredRows, clustering_digest, headline_hash, headline_hashes
from kirinuki.dedup.spill import SpillFile, read_ahead, scan_bodies



def cluster_appended(excerpts: list[Excerpt], cfg: DedupConfig, con, last: Sketches, spill_dir: str | None,
                     as_last: np.ndarray | None = None):
    """Clusters (see the module docstring), or why everything must be clustered again. `last`'s
    arrays are let go as they are taken into this build's: it is not to be used again. `as_last`:
    per excerpt, whether it was read from part rows the last build read (dedup.parts.read_excerpts):
    such an earlier quote is unedited without its digest being made again."""
    from kirinuki.dedup.clusters import Clusters, links_and_roots, verify

    n = len(excerpts)
    at = {e.excerpt_id: i for i, e in enumerate(excerpts)}
    old = np.fromiter((at.get(x, -1) for x in last.ids), np.int64, len(last.ids))
    del at
    last.ids = None  # (at 100k posts the two are ~70 MB of strings, not needed again)
    if (old < 0).any():
        return "a quote of the last build is gone"
    if len(old) > 1 and (np.diff(old) <= 0).any():
        return "the quotes are in another order than in the last build"
    for k in range(len(old)) if as_last is None else np.flatnonzero(~as_last[old]).tolist():
        e = excerpts[int(old[k])]
        if clustering_digest(e.headline, e.content_digest) != last.digests[k]:
            return "a quote of the last build was edited"
    is_new = np.ones(n, bool)
    is_new[old] = False
    new = np.flatnonzero(is_new)
    if len(new) > len(old):
        return "more new quotes than kept ones"

    # boilerplate: a paragraph under more than max_headlines distinct headlines
    lines = line_index(excerpts, only=new.tolist())
    heads = headline_hashes([excerpts[i].headline for i in new.tolist()])
    line_heads = heads[np.searchsorted(new, lines.owner)] if len(lines.owner) else lines.stable
    nk, nh = _distinct_pairs(lines.stable, line_heads)
    pair_key, pair_head = _merged_pairs(last.pair_key, last.pair_head, nk, nh)
    touched = distinct_sorted(nk)
    now = _counts_of(pair_key, touched)
    before = _counts_of(last.pair_key, touched)
    crossing = touched[(now > cfg.max_headlines) & (before <= cfg.max_headlines)]
    new_boiler = _keys_of(excerpts, new, crossing)
    boiler_keys = list(last.boiler) + new_boiler
    boiler_stable = stable_hashes(boiler_keys)
    boiler = {key_hash(k) for k in boiler_keys}
    # an earlier quote holding a paragraph that became boilerplate has another compared text: it
    # is sketched again with the new ones ("fresh"); it is not counted again (common 5-grams are
    # counted in raw texts, which did not change)
    held = _counts_of(last.pair_key, stable_hashes(new_boiler))
    regrown = _holders(excerpts, old, [k for k, c in zip(new_boiler, held.tolist()) if c], last.pair_key,
                       last.pair_head)
    if len(regrown):
        read_ahead(excerpts, regrown.tolist())  # (sketched again below)
        fresh = np.union1d(new, regrown)
        lines = line_index(excerpts, only=fresh.tolist())
    else:
        fresh = new
    is_fresh = np.zeros(n, bool)
    is_fresh[fresh] = True

    # the fresh quotes' texts, 5-gram sets and signatures; the new ones counted after the earlier
    # ones (a 5-gram common at an earlier quote is common there still, and no new count reaches it)
    boiled = boiler_lines(lines, boiler)  # (the lines are the fresh quotes')
    if cfg.common_5grams and last.common is None:
        return "the kept 5-gram counts are missing"
    if last.common is not None and len(old) and old[-1] != len(old) - 1:  # (new quotes among the earlier ones)
        last.common.moved(old)
    sig_new, sets_new, common = sketch(DedupTexts([excerpts[i] for i in fresh.tolist()], boiler,
                                                  {k for k, i in enumerate(fresh.tolist()) if i in boiled}),
                                       cfg, spill_dir, last.common, positions=fresh, counted=is_new[fresh])
    last.common = None
    if common is not None and _common_out_of_order(excerpts, new[new < old[-1]] if len(old) else new[:0], common, cfg):
        sets_new.close()
        return "a new quote sits before earlier ones and holds a 5-gram now common"
    sig = np.empty((n, cfg.perms), np.uint32)
    if isinstance(last.sig, StoredRows):  # read from the state into place, not held beside `sig`
        try:
            last.sig.into(sig, old)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            sets_new.close()
            return "the kept signatures could not be read"
    else:
        sig[old] = last.sig
    sig[fresh] = sig_new
    last.sig = sig_new = None  # in `sig` now (at 100,000 posts the signatures are hundreds of MB)
    sizes = np.empty(n, np.int64)
    sizes[old], sizes[fresh] = last.sizes, sets_new.sizes
    ok = sizes >= cfg.min_shingles
    # where the earlier quotes' boilerplate lines are: the last build's, unless fresh (it held a new one)
    where = {int(old[k]): p for k, p in enumerate(last.boiler_pos) if p and not is_fresh[old[k]]}
    lsh_ok = ok & (sig != 0xFFFFFFFF).any(axis=1)

    # the pairs touching a fresh quote are found and judged again; the others are the last
    # build's verified pairs, scores and all
    pa_, pb_, pj, pc, phow = last.pairs
    pa_, pb_ = old[pa_], old[pb_]
    last.pairs = None
    stays = ~(is_fresh[pa_] | is_fresh[pb_])

    p_owner, p_hash = paragraph_hashes(lines, np.isin(lines.stable, boiler_stable), ok, cfg)
    kept_paras = ~is_fresh[old[last.para_owner]]
    para_owner = np.concatenate([old[last.para_owner][kept_paras], p_owner])
    para_hash = np.concatenate([last.para_hash[kept_paras], p_hash])
    last.para_owner = last.para_hash = last.pair_key = last.pair_head = None  # taken into this build's
    a, b, how = candidate_pairs(con, lsh_ok, sig, cfg, para_owner, para_hash, only=is_fresh)
    n_candidates = len(a)
    est = _estimates(sig, a, b)
    size_a, size_b = sizes[a].astype(float), sizes[b].astype(float)
    est_c = est * (size_a + size_b) / (1 + est) / np.maximum(np.minimum(size_a, size_b), 1)
    m = cfg.estimate_margin
    promising = (est >= cfg.jaccard - m) | (est_c >= cfg.containment - m) | (how >= 2)
    sel = promising & ok[a] & ok[b]
    a, b, how = a[sel], b[sel], how[sel]
    sets = _Sets(excerpts, fresh, sets_new, boiler, cfg, spill_dir)
    compared = np.union1d(a, b)
    read_ahead(excerpts, compared[~is_fresh[compared]].tolist())  # the earlier quotes' bodies to compare, read at once
    _, _, j, c, _ = verify(sets, a, b, how)
    pairs = tuple(np.concatenate([x[stays], y]) for x, y in zip((pa_, pb_, pj, pc, phow), (a, b, j, c, how)))
    links, root = links_and_roots(n, pairs, cfg)

    # a cluster with the last build's quotes, none of whose text changed, keeps their relations
    linked = (pj >= cfg.jaccard) | (pc >= cfg.containment)
    kept = kept_clusters(n, root, old, is_fresh, pa_[linked], pb_[linked])
    kept_relation = KeptRelations(n, kept, old, last.relation, last.similarity)
    where.update(boiled)
    stats = {"excerpts": n, "characters": int(sum(e.body_len for e in excerpts)), "candidates": n_candidates,
             "promising": int(promising.sum()), "verified": len(a), "links": len(links),
             "boilerplate_paragraphs": len(boiler), "too_short": int((~ok).sum()), "clustering": "appended",
             "appended_excerpts": len(new),
             "new_boilerplate_in_earlier_quotes": len(regrown), "kept_clusters": len(np.unique(np.asarray(root)[kept]))}
    digests: list[bytes | None] = [None] * n  # the earlier quotes' are the last build's (checked above)
    for k, i in enumerate(old.tolist()):
        digests[i] = last.digests[k]
    keep_next = {"digests": digests, "sig": sig, "sizes": sizes, "common": common, "boiler": sorted(boiler_keys),
                 "pair_key": pair_key, "pair_head": pair_head, "para_owner": para_owner, "para_hash": para_hash,
                 "pairs": pairs}
    return Clusters(root, links, sets, boiler, stats, where, keep_next, kept_relation)


def _common_out_of_order(excerpts: list[Excerpt], between: np.ndarray, common, cfg: DedupConfig) -> bool:
    """Whether a new quote placed before earlier ones holds a 5-gram held by more than
    `common_5grams` quotes now: the earlier quotes after it could count it as common sooner than
    the last build did (a 5-gram held by fewer is common nowhere, whatever the order)."""
    from kirinuki.dedup.common import bucket_of

    if not len(between):
        return False
    h, o = shingle_hashes([dedup_text(excerpts[i], set()) for i in between.tolist()], cfg.shingle)
    return bool((common.counts[bucket_of(sample_values(h, o, cfg)[0], cfg)] > cfg.common_5grams).any())


_FEW_LEFT = 64  # new pairs still in their key's run: placed one by one from here (a run may be long)


def _merged_pairs(key: np.ndarray, head: np.ndarray, more_key: np.ndarray, more_head: np.ndarray):
    """The distinct (key, head) pairs of two sets of them, each sorted and distinct, sorted: the
    new ones inserted where they go (not a sort of the millions kept, nor a 64-bit key made of each
    kept pair). A new pair's place among the kept pairs of its key is found by stepping through
    those runs side by side, and, once few are left in longer runs, by a search in each."""
    lo, hi = np.searchsorted(key, more_key, "left"), np.searchsorted(key, more_key, "right")
    at, there = lo.copy(), np.zeros(len(lo), bool)
    run = hi - lo
    meets = np.flatnonzero(run)
    for step in range(int(run.max()) if len(run) else 0):
        meets = meets[run[meets] > step]
        if len(meets) <= _FEW_LEFT:
            for t in meets.tolist():
                k = lo[t] + int(np.searchsorted(head[lo[t] : hi[t]], more_head[t]))
                at[t], there[t] = k, k < hi[t] and head[k] == more_head[t]
            break
        h = head[lo[meets] + step]
        at[meets] += h < more_head[meets]
        there[meets] |= h == more_head[meets]
    return np.insert(key, at[~there], more_key[~there]), np.insert(head, at[~there], more_head[~there])


def _holders(excerpts: list[Excerpt], old: np.ndarray, keys: list[str], pair_key: np.ndarray,
             pair_head: np.ndarray) -> np.ndarray:
    """The earlier excerpts with a line whose key is one of `keys` (ascending indices). Only the
    bodies of those under a headline the kept (paragraph, headline) pairs (sorted by key) name
    with one of the keys are read: a few hundred, not the corpus."""
    if not keys:
        return np.zeros(0, np.int64)
    wanted = set(keys)
    stable = stable_hashes(keys)
    lo, hi = np.searchsorted(pair_key, stable, "left"), np.searchsorted(pair_key, stable, "right")
    heads = set(np.concatenate([pair_head[a:b] for a, b in zip(lo.tolist(), hi.tolist())]).tolist())
    under: dict[str, bool] = {}

    def named(headline: str) -> bool:
        yes = under.get(headline)
        if yes is None:
            yes = under[headline] = headline_hash(headline) in heads
        return yes

    under_named = [i for i in old.tolist() if named(excerpts[i].headline)]
    return np.fromiter((i for i, body in scan_bodies(excerpts, under_named)
                        if any(paragraph_key(line) in wanted for line in body.split("\n"))), np.int64)


def _counts_of(pair_key: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """How many of the (sorted, distinct) pairs have each of `keys` (sorted) as their key."""
    return np.searchsorted(pair_key, keys, side="right") - np.searchsorted(pair_key, keys, side="left")


def _keys_of(excerpts: list[Excerpt], new: np.ndarray, hashes: np.ndarray) -> list[str]:
    """The paragraph keys (text) with these stable hashes, found in the new excerpts."""
    wanted, found = set(hashes.tolist()), {}
    for i in new.tolist() if wanted else []:
        keys = [k for line in excerpts[i].body_norm.split("\n") if (k := paragraph_key(line))]
        for k, h in zip(keys, stable_hashes(keys).tolist()):
            if h in wanted:
                found[h] = k
        if len(found) == len(wanted):
            break
    return sorted(found.values())


def _estimates(sig: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    est = np.zeros(len(a))
    for lo in range(0, len(a), 1 << 16):
        hi = lo + (1 << 16)
        est[lo:hi] = (sig[a[lo:hi]] == sig[b[lo:hi]]).mean(axis=1)
    return est


class _Sets:
    """Exact 5-gram sets by excerpt index: the new excerpts' from their sketch, an earlier one's
    made from its text when first asked for (only candidates' and joined clusters' members are)
    and kept in a spill file, read back when asked for again: at 100k posts a 10 % append makes
    ~50,000 of them (~110 MB), held through the clustering's peak otherwise."""

    def __init__(self, excerpts: list[Excerpt], new: np.ndarray, sets_new, boiler: set[int], cfg: DedupConfig,
                 spill_dir: str | None = None):
        self.excerpts, self.sets_new, self.boiler, self.cfg = excerpts, sets_new, boiler, cfg
        self.where = {int(i): k for k, i in enumerate(new.tolist())}
        self.made: dict[int, tuple[int, int]] = {}  # excerpt -> (offset, hashes) in the spill
        self.spill = SpillFile(spill_dir, "kirinuki-made-sets-")
        self.lock = threading.Lock()

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self.where:
            return self.sets_new[self.where[i]]
        at = self.made.get(i)
        if at is not None:
            return np.frombuffer(self.spill.read(at[0], 4 * at[1]), np.uint32)
        h, _ = shingle_hashes([dedup_text(self.excerpts[i], self.boiler)], self.cfg.shingle)
        s = distinct_sorted(np.sort(h))
        with self.lock:
            if i not in self.made:
                start = self.spill.append(s.tobytes())
                self.spill.flush()  # (read back with pread, past the file object's buffer)
                self.made[i] = (start, len(s))
        return s

    def close(self) -> None:
        self.sets_new.close()
        self.made.clear()
        self.spill.close()
