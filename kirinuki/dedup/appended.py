"""Clustering only the quotes appended since the last build, with the same result as clustering all.

In: this build's excerpts (in build order), the sketches the last build kept (kirinuki.dedup.sketches),
a DuckDB connection. Out: `Clusters` equal to what clustering every excerpt gives, or the reason
(one line) why this build must cluster everything instead.

Why it is the same. Clustering keeps, strongest estimate first, each verified link that joins two
clusters not yet joined: the maximum spanning forest of the verified-link graph under one total
order (estimate, then indices). When every earlier quote is still there, unchanged and in the same
order, an edge between two earlier quotes changes only if a count crossed a threshold for one of
them. A paragraph of an earlier quote becoming boilerplate changes its compared text: the quotes
holding it (found under the headlines the kept (paragraph, headline) pairs name with it) are
sketched again with the new ones, their old 5-grams taken off the counts. A sampled 5-gram becoming
common leaves the signatures that held it: the watch list (which quotes hold each 5-gram within a
factor two of common) names those quotes, their signatures are made again, and every cluster of the
last build holding one whose signature changed is done again, all its quotes "active" like the new
ones. The other clusters are whole components whose edges are what they were, so their links are
still their forest; the new forest is those links plus the candidate edges that touch an active
quote (band collisions and shared paragraphs against every quote), verified as a clean build would.
A cluster with no active quote keeps its relations too. A quote edited, removed or moved, more new
quotes than old, or a 5-gram that became common before its holders were watched, clusters everything
again.
"""

from __future__ import annotations

import threading
import zipfile

import numpy as np

from kirinuki.dedup.candidates import candidate_pairs, paragraph_hashes
from kirinuki.dedup.minhash import (DedupTexts, _distinct_pairs, boiler_lines, dedup_text, key_hash,
                                    line_index, paragraph_key, sample_values, shingle_hashes, signatures, sketch,
                                    stable_hashes, watch_from)
from kirinuki.dedup.kept import KeptRelations, kept_clusters
from kirinuki.dedup.model import DedupConfig, Excerpt
from kirinuki.dedup.sketches import Sketches, StoredRows, clustering_digest, headline_hash, headline_hashes
from kirinuki.dedup.spill import SpillFile



def cluster_appended(excerpts: list[Excerpt], cfg: DedupConfig, con, last: Sketches, spill_dir: str | None):
    """Clusters (see the module docstring), or why everything must be clustered again. `last`'s
    arrays are let go as they are taken into this build's: it is not to be used again."""
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
    for k, i in enumerate(old.tolist()):
        e = excerpts[i]
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
    touched = np.unique(nk)
    now = _counts_of(pair_key, touched)
    before = _counts_of(last.pair_key, touched)
    crossing = touched[(now > cfg.max_headlines) & (before <= cfg.max_headlines)]
    new_boiler = _keys_of(excerpts, new, crossing)
    boiler_keys = list(last.boiler) + new_boiler
    boiler_stable = stable_hashes(boiler_keys)
    boiler = {key_hash(k) for k in boiler_keys}
    # the kept 5-gram counts become this build's in place; of the old ones, the thresholds need only
    # which side of them each bucket was on: kept clipped, a byte a bucket (not a second 64 MB table)
    base = last.counts if len(last.counts) else None
    was = _clipped(base, cfg) if base is not None else None

    # an earlier quote holding a paragraph that became boilerplate has another compared text: it
    # is sketched again with the new ones ("fresh"), its old text's 5-grams taken off the counts
    held = _counts_of(last.pair_key, stable_hashes(new_boiler))
    regrown = _holders(excerpts, old, [k for k, c in zip(new_boiler, held.tolist()) if c], last.pair_key,
                       last.pair_head)
    if len(regrown):
        if base is not None:
            if not _take_off(base, [dedup_text(excerpts[i], {key_hash(k) for k in last.boiler})
                                    for i in regrown.tolist()], cfg):
                return "the kept 5-gram counts do not hold the earlier quotes to take back"
        fresh = np.union1d(new, regrown)
        lines = line_index(excerpts, only=fresh.tolist())
    else:
        fresh = new

    # the fresh quotes' texts, 5-gram sets and counts, signatures
    boiled = boiler_lines(lines, boiler)  # (the lines are the fresh quotes')
    sig_new, sets_new, counts = sketch(DedupTexts([excerpts[i] for i in fresh.tolist()], boiler,
                                                  {k for k, i in enumerate(fresh.tolist()) if i in boiled}),
                                       cfg, spill_dir, base)
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
    is_fresh = np.zeros(n, bool)
    is_fresh[fresh] = True
    watch = _watch_now(last, old, is_fresh)
    # where the earlier quotes' boilerplate lines are: the last build's, unless fresh (it held a new one)
    where = {int(old[k]): p for k, p in enumerate(last.boiler_pos) if p and not is_fresh[old[k]]}
    dirty = np.zeros(0, np.int64)
    if counts is not None and base is not None:
        done = _commoner(excerpts, cfg, sig, boiler, was, counts, watch, sets_new.watch, fresh, where)
        if isinstance(done, str):
            sets_new.close()
            return done
        dirty, watch = done
    lsh_ok = ok & (sig != 0xFFFFFFFF).any(axis=1)

    # the pairs touching a fresh quote or one whose signature changed are found and judged again;
    # the others are the last build's verified pairs, scores and all
    moved = np.zeros(n, bool)
    moved[fresh] = True
    moved[dirty] = True
    pa_, pb_, pj, pc, phow = last.pairs
    pa_, pb_ = old[pa_], old[pb_]
    last.pairs = None
    stays = ~(moved[pa_] | moved[pb_])

    p_owner, p_hash = paragraph_hashes(lines, np.isin(lines.stable, boiler_stable), ok, cfg)
    kept_paras = ~is_fresh[old[last.para_owner]]
    para_owner = np.concatenate([old[last.para_owner][kept_paras], p_owner])
    para_hash = np.concatenate([last.para_hash[kept_paras], p_hash])
    last.para_owner = last.para_hash = last.pair_key = last.pair_head = None  # taken into this build's
    a, b, how = candidate_pairs(con, lsh_ok, sig, cfg, para_owner, para_hash, only=moved)
    n_candidates = len(a)
    est = _estimates(sig, a, b)
    size_a, size_b = sizes[a].astype(float), sizes[b].astype(float)
    est_c = est * (size_a + size_b) / (1 + est) / np.maximum(np.minimum(size_a, size_b), 1)
    m = cfg.estimate_margin
    promising = (est >= cfg.jaccard - m) | (est_c >= cfg.containment - m) | (how >= 2)
    sel = promising & ok[a] & ok[b]
    a, b, how = a[sel], b[sel], how[sel]

    # a pair of two unchanged texts keeps its exact scores; the others are compared
    known = np.flatnonzero(~stays & ~(is_fresh[pa_] | is_fresh[pb_]))
    known_key = pa_[known] * n + pb_[known]
    order = np.argsort(known_key)
    known, known_key = known[order], known_key[order]
    asked = a * n + b
    found = np.zeros(len(a), bool)
    j, c = np.zeros(len(a)), np.zeros(len(a))
    if len(known_key):
        at_known = np.minimum(np.searchsorted(known_key, asked), len(known_key) - 1)
        found = known_key[at_known] == asked
        src = known[at_known[found]]
        j[found], c[found] = pj[src], pc[src]
    sets = _Sets(excerpts, fresh, sets_new, boiler, cfg, spill_dir)
    fa, fb = a[~found], b[~found]
    _, _, j[~found], c[~found], _ = verify(sets, fa, fb, how[~found])
    pairs = tuple(np.concatenate([x[stays], y]) for x, y in zip((pa_, pb_, pj, pc, phow), (a, b, j, c, how)))
    links, root = links_and_roots(n, pairs, cfg)

    # a cluster with the last build's quotes, none of whose text changed, keeps their relations
    linked = (pj >= cfg.jaccard) | (pc >= cfg.containment)
    kept = kept_clusters(n, root, old, is_fresh, pa_[linked], pb_[linked])
    kept_relation = KeptRelations(n, kept, old, last.relation, last.similarity)
    where.update(boiled)
    stats = {"excerpts": n, "characters": int(sum(e.body_len for e in excerpts)), "candidates": n_candidates,
             "promising": int(promising.sum()), "verified": int((~found).sum()), "links": len(links),
             "boilerplate_paragraphs": len(boiler), "too_short": int((~ok).sum()), "clustering": "appended",
             "appended_excerpts": len(new), "changed_signatures": len(dirty),
             "new_boilerplate_in_earlier_quotes": len(regrown), "kept_clusters": len(np.unique(np.asarray(root)[kept]))}
    digests: list[bytes | None] = [None] * n  # the earlier quotes' are the last build's (checked above)
    for k, i in enumerate(old.tolist()):
        digests[i] = last.digests[k]
    keep_next = {"digests": digests, "sig": sig, "sizes": sizes, "counts": counts if counts is not None else last.counts,
                 "boiler": sorted(boiler_keys), "pair_key": pair_key, "pair_head": pair_head,
                 "para_owner": para_owner, "para_hash": para_hash, "pairs": pairs,
                 "watch_value": watch[0], "watch_owner": watch[1], "unwatched": watch[2]}
    return Clusters(root, links, sets, boiler, stats, where, keep_next, kept_relation)


def _commoner(excerpts: list[Excerpt], cfg: DedupConfig, sig: np.ndarray, boiler: set[int],
              base: np.ndarray, counts: np.ndarray, watch: list, watch_new, new: np.ndarray,
              boiled: dict[int, tuple[int, ...]]):
    """The sampled 5-grams that became common with the new quotes leave the signatures of the
    earlier quotes that hold them (the watch list says which). A signature can change only where
    such a value was its bin's minimum (a bin holding the value is never one that borrowed; one
    that borrowed from it changes only if its minimum does): those are made again in `sig`, a
    chunk at a time in threads as sketch does (`boiled`: the earlier quotes with a boilerplate
    line, by index; the others' texts are their bodies). `base`: the last build's counts, clipped
    (_clipped), `counts` this build's. Returns the quotes whose signature changed and the next watch
    list, or why everything must be clustered again (a 5-gram became common whose earlier holders
    were not watched)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from kirinuki.dedup.minhash import frequency_buckets

    common, low = cfg.common_5grams, watch_from(cfg)
    value, owner, unwatched = watch
    watch.clear()  # (the caller's list: the old list is let go as the new one is made)
    if ((base > common) & (counts <= common)).any():  # (texts lost 5-grams to new boilerplate)
        return "a 5-gram of earlier quotes stopped being common"
    crossed = np.flatnonzero((base > 0) & (base <= common) & (counts > common)).astype(np.uint32)
    if ((base[crossed] < low) | np.isin(crossed, unwatched)).any():
        return "a 5-gram of earlier quotes became common before they were watched"
    hit = np.zeros(len(counts), bool)
    hit[crossed] = True
    gone = np.empty(len(value), bool)
    for lo in range(0, len(value), 1 << 20):  # (a bucket array of the whole list would be its size again)
        gone[lo : lo + (1 << 20)] = hit[frequency_buckets(value[lo : lo + (1 << 20)], cfg)]
    v, o = value[gone], owner[gone]
    bins = ((v.astype(np.uint64) * np.uint64(cfg.perms)) >> np.uint64(32)).astype(np.int64)
    holders = np.unique(o[sig[o, bins] == v])
    dirty = np.zeros(0, np.int64)

    def signed_again(some: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (quotes, their new signatures)
        h, ho = shingle_hashes([dedup_text(excerpts[i], boiler, i not in boiled) for i in some.tolist()], cfg.shingle)
        vals, vowner = sample_values(h, ho, cfg)
        again = signatures(vals, vowner, len(some), cfg, counts)
        differs = (again != sig[some]).any(axis=1)  # (rows no other chunk writes)
        return some[differs], again[differs]

    changed = []
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        chunks = [holders[lo : lo + cfg.chunk] for lo in range(0, len(holders), cfg.chunk)]
        for some, again in pool.map(signed_again, chunks):
            sig[some] = again
            changed.append(some)
    if changed:
        dirty = np.concatenate(changed)
    nv, no = watch_new
    if gone.any():
        value, owner = value[~gone], owner[~gone]
    value, owner = _merged_pairs(value, owner, *_distinct_pairs(nv.astype(np.uint32), new[no].astype(np.uint32)))
    # buckets that came close only now: their earlier holders are not in the list
    near_now = np.flatnonzero((base > 0) & (base < low) & (counts >= low) & (counts <= common)).astype(np.uint32)
    return dirty, (value, owner, np.union1d(unwatched[counts[unwatched] <= common], near_now).astype(np.uint32))


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


def _watch_now(last: Sketches, old: np.ndarray, is_fresh: np.ndarray) -> list[np.ndarray]:
    """The last build's watch list (value, quote) in this build's quote positions, less the fresh
    quotes' entries (theirs come from their sketch), and its unwatched buckets: a list, which
    _commoner empties as it makes the next one. Made in place in
    `last`'s arrays, which it lets go: at 100k posts the list holds 23 million pairs."""
    value, owner = last.watch_value, last.watch_owner.astype(np.uint32, copy=False)
    last.watch_value = last.watch_owner = None
    at = old.astype(np.uint32)
    for lo in range(0, len(owner), 1 << 20):
        owner[lo : lo + (1 << 20)] = at[owner[lo : lo + (1 << 20)]]
    keep = ~is_fresh[owner]
    if not keep.all():
        value, owner = value[keep], owner[keep]
    return [value, owner, last.unwatched]


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

    return np.fromiter((i for i in old.tolist() if named(excerpts[i].headline) and any(
        paragraph_key(line) in wanted for line in excerpts[i].body_norm.split("\n"))), np.int64)


def _take_off(counts: np.ndarray, texts: list[str], cfg: DedupConfig) -> bool:
    """Take the sampled 5-grams of `texts` off `counts`, in place; False (`counts` untouched) if a
    count it would lower is not there: counts kept by another build than the one these texts were
    counted in."""
    from kirinuki.dedup.minhash import frequency_buckets

    parts = []
    for lo in range(0, len(texts), cfg.chunk):
        h, o = shingle_hashes(texts[lo : lo + cfg.chunk], cfg.shingle)
        parts.append(frequency_buckets(sample_values(h, o, cfg)[0], cfg))
    buckets, amounts = np.unique(np.concatenate(parts) if parts else np.zeros(0, np.uint32), return_counts=True)
    if (counts[buckets] < amounts).any():
        return False
    counts[buckets] -= amounts.astype(counts.dtype)
    return True


def _clipped(counts: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """`counts` clipped to one past "common", in the narrowest unsigned type that holds that: the
    same as the counts for every comparison with the thresholds (0, watch_from, common)."""
    top = cfg.common_5grams + 1
    out = np.empty(len(counts), np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32)
    np.minimum(counts, top, out=out, casting="unsafe")
    return out


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
        s = np.unique(h).astype(np.uint32)
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
