"""What clustering keeps between builds, so that appended quotes are clustered on their own.

In: one build's clustering (kirinuki.dedup.clusters): per excerpt its id, a digest of what
clustering reads of it (headline and body), its body's length and digest (`BodyDigests`: by the part
runs the bodies were read from, so the next build does not digest them again), its 5-gram count,
MinHash signature, boilerplate line positions, relation and similarity; the corpus-wide counts
(how many quotes hold each sampled 5-gram and where each became common: kirinuki.dedup.common;
distinct (paragraph, headline) pairs; long paragraphs' hashes), the boilerplate paragraphs and
every verified pair with its scores. Out: three files in the build folder (`SKETCH_FILES`; keep_dedup moves them into
the dedup state with sha256 checks) and `load_sketches`, which reads them back for the same code and
parameters, or gives None.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from kirinuki.dedup.common import CommonGrams
from kirinuki.dedup.model import DedupConfig

SKETCH_EXCERPTS = ".dedup-sketch-excerpts.arrow"  # one row per excerpt, in the build's order
SKETCH_PAIRS = ".dedup-sketch-pairs.arrow"  # every verified pair, with its exact scores
SKETCH_ARRAYS = ".dedup-sketch-arrays.npz"  # signatures, 5-gram counts, paragraph pairs
SKETCH_FILES = (SKETCH_EXCERPTS, SKETCH_PAIRS, SKETCH_ARRAYS)


def clustering_digest(headline: str, content: bytes) -> bytes:
    """What clustering reads of one excerpt: its headline and (the digest of) its body."""
    return hashlib.blake2b(headline.encode() + b"\0" + content, digest_size=16).digest()


def headline_hash(headline: str) -> int:
    """A stable 64-bit hash of a headline."""
    return int.from_bytes(hashlib.blake2b(headline.encode(), digest_size=8).digest(), "little")


def headline_hashes(headlines: list[str]) -> np.ndarray:
    """headline_hash of each headline (each distinct one hashed once)."""
    seen: dict[str, int] = {}
    for h in headlines:
        if h not in seen:
            seen[h] = headline_hash(h)
    return np.fromiter((seen[h] for h in headlines), np.uint64, len(headlines))


@dataclass
class Sketches:
    """One build's clustering, as kept (see the module docstring); excerpt indices are that build's."""

    ids: list[str]
    digests: list[bytes]
    sizes: np.ndarray  # int64: 5-gram count (with repeats) of each excerpt's compared text
    sig: "np.ndarray | StoredRows"  # uint32 [n, perms]; as loaded, left in the state's file until copied
    common: "CommonGrams | None"  # how many quotes hold each sampled 5-gram, where it became common
    pair_key: np.ndarray  # uint64: distinct (paragraph key, headline) pairs, stable hashes
    pair_head: np.ndarray  # uint64
    para_owner: np.ndarray  # int64: long, non-boilerplate paragraphs of excerpts with enough 5-grams
    para_hash: np.ndarray  # uint64 (stable)
    boiler: list[str]  # the boilerplate paragraphs' keys
    boiler_pos: list[tuple[int, ...]]  # per excerpt: positions of its boilerplate lines
    relation: list[str] | pa.Array  # (as load_sketches reads it: an Arrow string array)
    similarity: list[float] | np.ndarray  # (as load_sketches reads it: float64)
    pairs: tuple  # every verified pair, by this build's indices: a, b, jaccard, containment, how found (clusters.Pairs)
    meta: dict = field(default_factory=dict)
    content: list[bytes] = field(default_factory=list)  # per excerpt: Excerpt.content_digest
    lengths: list[int] = field(default_factory=list)  # per excerpt: its body's length in characters


class StoredRows:
    """A 2-D array saved in an .npz (uncompressed, C order), copied into rows of another array a
    block at a time rather than loaded whole: at 100k posts the signatures are ~550 MB, which an
    append would otherwise hold beside the grown copy it makes of them."""

    BLOCK = 16384  # rows a read

    def __init__(self, path: Path, name: str):
        self.path, self.member = path, f"{name}.npy"
        with zipfile.ZipFile(path) as z, z.open(self.member) as f:
            self.shape, self.dtype = self._header(f)

    @staticmethod
    def _header(f) -> tuple[tuple[int, ...], np.dtype]:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"npy format {version}")
        shape, fortran, dtype = read(f)
        if fortran or len(shape) != 2 or dtype.hasobject:
            raise ValueError("not a C-ordered 2-D array of numbers")
        return shape, dtype

    def __len__(self) -> int:
        return self.shape[0]

    def into(self, dest: np.ndarray, rows: np.ndarray) -> None:
        """dest[rows] = the stored array (`rows`: one destination row per stored row)."""
        if len(rows) != self.shape[0] or dest.shape[1:] != self.shape[1:]:
            raise ValueError("the stored rows do not fit where they are to go")
        buf = np.empty((min(self.BLOCK, self.shape[0]), *self.shape[1:]), self.dtype)
        with zipfile.ZipFile(self.path) as z, z.open(self.member) as f:
            self._header(f)
            for lo in range(0, self.shape[0], self.BLOCK):
                part = buf[: min(self.BLOCK, self.shape[0] - lo)]
                if f.readinto(memoryview(part).cast("B")) != part.nbytes:
                    raise ValueError("the stored array is shorter than its header says")
                dest[rows[lo : lo + len(part)]] = part


class BodyDigests:
    """The lengths and content digests of the bodies the last build read, by the part runs it read
    them from (a part never changes: the same run is the same bodies): SKETCH_EXCERPTS's `content`
    and `length` columns, and its `runs` metadata."""

    def __init__(self, runs: list, content: pa.Array, lengths: np.ndarray):
        self.at: dict[tuple, int] = {}
        start = 0
        for part, first, n in runs:
            self.at[(part, first, n)] = start
            start += n
        self.content, self.lengths = content, lengths

    def of(self, runs: list) -> tuple[np.ndarray, list[bytes]] | None:
        """(lengths, digests) of the bodies read from `runs`, when every run is one it knows."""
        at = [self.at.get(tuple(r)) for r in runs]
        if not runs or any(a is None for a in at):
            return None
        lengths = np.concatenate([self.lengths[a: a + r[2]] for a, r in zip(at, runs)])
        digests = [d for a, r in zip(at, runs) for d in self.content.slice(a, r[2]).to_pylist()]
        return lengths, digests

    @staticmethod
    def load(state: str | None, cfg: DedupConfig, code: str) -> "BodyDigests | None":
        """Those of a (trusted) dedup state kept by the same code and parameters; else None."""
        if state is None or not (Path(state) / SKETCH_EXCERPTS).is_file():
            return None
        try:
            with pa.memory_map(str(Path(state) / SKETCH_EXCERPTS)) as src:
                reader = pa.ipc.open_file(src)
                meta = reader.schema.metadata or {}
                if meta.get(b"kirinuki", b"").decode() != _identity(cfg, code) or b"runs" not in meta:
                    return None
                ex = reader.read_all().select(["content", "length"])
            return BodyDigests(json.loads(meta[b"runs"].decode()), ex["content"].combine_chunks(),
                               ex["length"].to_numpy())
        except (OSError, ValueError, KeyError, pa.ArrowInvalid):
            return None


def _identity(cfg: DedupConfig, code: str) -> str:
    return json.dumps({"code": code, "config": cfg.as_dict()}, sort_keys=True)


def write_sketches(root: str, s: Sketches, cfg: DedupConfig, code: str, runs: list | None = None) -> None:
    """`runs`: the part runs the excerpts were read from, in order (dedup.parts.read_excerpts);
    kept with each body's length and digest, so the next build need not digest the same bodies."""
    out = Path(root)
    ident = {"kirinuki": _identity(cfg, code), "boiler": json.dumps(s.boiler, ensure_ascii=False)}
    if runs is not None and sum(n for _, _, n in runs) == len(s.ids):
        ident["runs"] = json.dumps(runs)
    ex = pa.table({
        "excerpt_id": pa.array(s.ids, pa.string()),
        "digest": pa.array(s.digests, pa.binary(16)),
        "content": pa.array(s.content, pa.binary(16)),
        "length": pa.array(s.lengths, pa.int64()),
        "size": pa.array(s.sizes, pa.int64()),
        "boiler_pos": pa.array([list(p) for p in s.boiler_pos], pa.list_(pa.int32())),
        "relation": pa.array(s.relation, pa.string()),
        "similarity": pa.array(s.similarity, pa.float64()),
    }).replace_schema_metadata(ident)
    a, b, j, c, how = s.pairs
    pairs = pa.table({"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64()), "jaccard": pa.array(j, pa.float64()),
                      "containment": pa.array(c, pa.float64()), "how": pa.array(how, pa.int8())})
    for name, table in ((SKETCH_EXCERPTS, ex), (SKETCH_PAIRS, pairs)):
        with pa.OSFile(str(out / name), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    common = s.common.kept() if s.common is not None else {}
    with open(out / SKETCH_ARRAYS, "wb") as f:
        np.savez(f, sig=s.sig, pair_key=s.pair_key, pair_head=s.pair_head, para_owner=s.para_owner,
                 para_hash=s.para_hash, **common)


def load_sketches(state: str | None, cfg: DedupConfig, code: str, checked: bool = False) -> Sketches | None:
    """The sketches a trusted dedup state kept for the same code and parameters; else None.
    `checked`: the caller has just checked the state's files against their sha256."""
    if state is None:
        return None
    from kirinuki.dedup.state import trusted_state

    st = Path(state)
    if not all((st / f).is_file() for f in SKETCH_FILES) or not (checked or trusted_state(st)):
        return None
    try:
        with pa.memory_map(str(st / SKETCH_EXCERPTS)) as src:
            ex = pa.ipc.open_file(src).read_all()
        meta = ex.schema.metadata or {}
        if meta.get(b"kirinuki", b"").decode() != _identity(cfg, code):
            return None
        with pa.memory_map(str(st / SKETCH_PAIRS)) as src:
            pr = pa.ipc.open_file(src).read_all()
        with np.load(st / SKETCH_ARRAYS) as z:
            arrays = {k: z[k] for k in z.files if k != "sig"}
        sig = StoredRows(st / SKETCH_ARRAYS, "sig")  # read into place when the grown signatures are made
        if len(sig) != ex.num_rows:
            return None
        common = CommonGrams.from_kept(cfg, arrays) if cfg.common_5grams else None
        return Sketches(
            ids=ex["excerpt_id"].to_pylist(), digests=ex["digest"].to_pylist(), sizes=ex["size"].to_numpy(),
            sig=sig, common=common, pair_key=arrays["pair_key"], pair_head=arrays["pair_head"],
            para_owner=arrays["para_owner"], para_hash=arrays["para_hash"],
            boiler=json.loads(meta[b"boiler"].decode()), boiler_pos=[tuple(p) for p in ex["boiler_pos"].to_pylist()],
            # held through an append's clustering: as Arrow and numpy, not ~60 MB of Python objects at 100k posts
            relation=ex["relation"].combine_chunks(), similarity=ex["similarity"].to_numpy(),
            pairs=tuple(pr[k].to_numpy() for k in ("a", "b", "jaccard", "containment", "how")))
    except (OSError, ValueError, KeyError, pa.ArrowInvalid, zipfile.BadZipFile):
        return None
