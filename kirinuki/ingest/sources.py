"""Ingest: find input files, read their bytes, decode them to LF-normalised text.

Pure functions over paths and bytes. Every input ends as a `Source` or a `Reject` with a reason;
nothing raises for a bad file.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import json
import os
import re
from datetime import date
from pathlib import Path

from kirinuki.ingest.model import Entry, Metadata, Reject, Source, SourceRef  # noqa: F401
from kirinuki.ingest.open_safely import (  # noqa: F401
    META_SUFFIX,
    SIDECAR_MAX_BYTES,
    Unsafe,
    _inside,
    fingerprint_of,
    read_plain_file,
    read_sidecar,
    sidecar_name,
    sidecar_path,
)
from kirinuki.ingest.pins import PIN_FILE, Pins

SUPPORTED_ENCODINGS = ("utf-8", "utf-8-bom", "utf-16le", "utf-16be", "cp932", "euc-jp", "iso-2022-jp")
DEFAULT_PATTERNS = ("*.txt", "*.xml", "*.html", "*.htm")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# The work budget of one post. Parsing is linear in the text, but every line becomes a paragraph row
# (about 1 KB in memory while the post is built) and every paragraph is hashed for dedup, so a
# post of millions of lines (a log, a word list) is rejected with the reason instead of taking the
# machine's memory. The limits count lines and characters, never seconds, so the same file gets
# the same verdict on any machine.
MAX_LINES = 100_000
MAX_LINE_CHARS = 100_000

# Leading bytes of common binary formats, named in the reject reason.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O/Java class"),
    (b"PAR1", "Parquet file"),
    (b"SQLite format 3\x00", "SQLite database"),
)
# C0 controls other than tab, LF, VT, FF, CR and ESC (ISO-2022-JP uses ESC).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
# Python's cp932 decodes the unassigned single bytes 0x80, 0xA0, 0xFD-0xFF to these.
_CP932_STRAYS = frozenset("\x80\uf8f0\uf8f1\uf8f2\uf8f3")
_UTF8_3BYTE = re.compile(rb"[\xe0-\xef][\x80-\xbf]{2}")
# Share of high bytes that form valid 3-byte UTF-8 sequences: ~0.05-0.09 in genuine CP932/EUC-JP
# Japanese text (measured on the seed), ~0.66 when half a file is UTF-8 and half CP932.
MIXED_UTF8_SHARE = 0.3
MIXED_MIN_SEQUENCES = 8
_ISO2022_DESIGNATION = re.compile(rb"\x1b(\$[@B]|\([BJ])")


class DecodeError(ValueError):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def printable_path(p: str) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 become \\xNN escapes."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- discovery


def discover(
    inputs: list[str], patterns: tuple[str, ...] = DEFAULT_PATTERNS, convention: str | None = None
) -> tuple[list[SourceRef], list[Reject]]:
    """List input files under each input (a file or a folder), sorted by relative path.

    Folders are walked without following directory symlinks (so loops cannot happen); a symlinked
    folder is reported, not silently skipped. Files matching `patterns` are inputs. Each carries
    the quoting convention pinned for it (`convention`, else the pin files met, see ingest.pins).
    """
    found: dict[str, SourceRef] = {}
    rejects: list[Reject] = []
    is_input = name_matcher(patterns)
    for raw in inputs:
        root = Path(raw)
        pins = Pins(convention)
        if root.is_file():
            if (root.parent / PIN_FILE).is_file():  # the pin file of the folder it is in speaks for it too
                pins.add_folder("", root.parent / PIN_FILE, printable_path(str(root.parent / PIN_FILE)))
            if any(root.match(p) for p in patterns):
                _add(found, rejects, SourceRef(str(root), printable_path(root.name),
                                               convention=pins.for_file(printable_path(root.name))))
            else:  # named on purpose, so said, not skipped in silence as in a folder
                rejects.append(Reject(printable_path(root.name), "not_a_post",
                                      f"not a post file: kirinuki reads {', '.join(patterns)}"))
            continue
        if not root.is_dir():
            rejects.append(Reject(printable_path(raw), "unreadable", "input path does not exist"))
            continue
        real_root = os.path.realpath(root)
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: rejects.append(
            Reject(printable_path(os.path.relpath(e.filename, root)) if e.filename else printable_path(raw),
                   "unreadable", f"cannot list folder: {e.strerror}"))):
            dirnames.sort()
            rel_dir = Path(os.path.relpath(dirpath, root)).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"  # of each file's path relative to the root
            if PIN_FILE in filenames:
                pins.add_folder("" if rel_dir == "." else rel_dir, Path(dirpath) / PIN_FILE,
                                printable_path(os.path.join(raw, os.path.relpath(dirpath, root), PIN_FILE)))
            for d in list(dirnames):
                full = os.path.join(dirpath, d)
                if d.endswith("_files") and any(f"{d[:-6]}{ext}" in filenames for ext in (".html", ".htm")):
                    dirnames.remove(d)  # a saved page's images and scripts, beside the page itself
                    continue
                if os.path.islink(full):
                    dirnames.remove(d)
                    rel = printable_path(Path(os.path.relpath(full, root)).as_posix())
                    rejects.append(Reject(rel, "not_a_file", "symlinked folder not followed (avoids loops); pass its target as an input instead"))
            listed = set(filenames)  # which posts have a sidecar: no stat per post to find out
            base = dirpath if dirpath.endswith(os.sep) else dirpath + os.sep  # (os.path.join, per folder)
            for name in sorted(filenames):
                if not is_input(name):
                    continue
                full = base + name
                rel = printable_path(prefix + name)
                if os.path.islink(full) and not _inside(os.path.realpath(full), real_root):
                    rejects.append(Reject(rel, "outside_root", "symlink to a file outside the input folder; "
                                                               "copy the file in or pass it as an input itself"))
                    continue
                _add(found, rejects, SourceRef(full, rel, real_root, convention=pins.for_file(rel),
                                               sidecar=sidecar_name(name) in listed))
    refs = sorted(found.values(), key=lambda r: r.rel)
    rejects.sort(key=lambda r: r.source_path)
    return refs, rejects


def name_matcher(patterns: tuple[str, ...]):
    """A test of a file name against glob `patterns`, as Path(name).match would answer it (a
    pattern with a folder in it never matches a bare name), compiled once for a whole walk."""
    plain = [p for p in patterns if "/" not in p]
    if not plain:
        return lambda name: False
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in plain)).match


def _add(found: dict[str, SourceRef], rejects: list[Reject], ref: SourceRef) -> None:
    if ref.rel in found:
        rejects.append(Reject(ref.rel, "duplicate_path",
                              "another input root has a file at the same relative path; build them separately"))
    else:
        found[ref.rel] = ref


# ---------------------------------------------------------------- reading


def read_source(ref: SourceRef, max_bytes: int = DEFAULT_MAX_BYTES) -> Source | Reject:
    """Read, hash and decode one input. Never raises for a bad file."""
    try:
        data = read_plain_file(ref.path, max_bytes, ref.root)
    except Unsafe as e:
        return Reject(ref.rel, e.code, e.reason, None, e.size)
    except OSError as e:
        return Reject(ref.rel, "unreadable", f"cannot read file: {e.strerror or e}")
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > max_bytes:  # grew while we looked
        return Reject(ref.rel, "too_large", f"file is over the {max_bytes}-byte limit", digest, len(data))
    try:
        text, encoding, notes = decode_with_notes(data)
    except DecodeError as e:
        from kirinuki.ingest.mtif import decode_by_entry  # an export with bad bytes in some entries

        if e.code != "undecodable" or (by_entry := decode_by_entry(data)) is None:
            return Reject(ref.rel, e.code, e.reason, digest, len(data))
        text, encoding, notes = by_entry
    text, newline = normalise_newlines(text)
    if not text.strip():
        return Reject(ref.rel, "empty", "file has no text (only whitespace)", digest, len(data))
    side = read_sidecar(ref.path)
    return Source(ref.rel, text, digest, len(data), encoding, newline, parse_metadata(ref.path, side), notes,
                  fingerprint_of(data, side))


def over_budget(text: str) -> str | None:
    """Why one post's text is beyond what one post may cost (MAX_LINES, MAX_LINE_CHARS), or None."""
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        return f"{lines:,} lines, over the {MAX_LINES:,}-line limit of one post (split it into posts)"
    if len(text) <= MAX_LINE_CHARS:  # no line can be longer (most posts: a walk over their lines spared)
        return None
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if end - pos > MAX_LINE_CHARS:
            line_no = text.count("\n", 0, pos) + 1
            return (f"line {line_no:,} has {end - pos:,} characters, over the {MAX_LINE_CHARS:,}-character "
                    "limit of one line (break it into paragraphs)")
        pos = end + 1
    return None


def normalise_newlines(text: str) -> tuple[str, str]:
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    kinds = [k for k, n in (("crlf", crlf), ("cr", cr), ("lf", lf)) if n]
    label = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none")
    if crlf or cr:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, label


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes with a strict cascade; raise DecodeError(code, reason) when nothing fits.

    Order: empty -> BOM -> binary signatures/NUL -> ISO-2022-JP (7-bit with ESC) -> UTF-8 ->
    CP932 / EUC-JP (when both decode strictly, chardet breaks the tie). A file cut off inside its
    last multi-byte character decodes with U+FFFD in its place (see `decode_with_notes`).
    """
    text, label, _ = decode_with_notes(data)
    return text, label


def _truncated(data: bytes, codec: str) -> str | None:
    """The text of `data` when its only fault is an incomplete last character: the complete part
    plus U+FFFD. None when the bytes are wrong elsewhere."""
    try:
        data.decode(codec)
        return None
    except UnicodeDecodeError as e:
        if e.end != len(data) or len(data) - e.start > 3 or e.start == 0:
            return None
        try:
            return data[: e.start].decode(codec) + "\ufffd"
        except UnicodeDecodeError:
            return None


def decode_with_notes(data: bytes) -> tuple[str, str, tuple[str, ...]]:
    """decode(), plus notes about what was repaired ("truncated_character")."""
    if not data:
        raise DecodeError("empty", "file is empty (0 bytes)")
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data[3:], "utf-8", "utf-8-bom"), "utf-8-bom", ()
    if data.startswith(codecs.BOM_UTF16_LE):
        return _strict(data[2:], "utf-16-le", "utf-16le"), "utf-16le", ()
    if data.startswith(codecs.BOM_UTF16_BE):
        return _strict(data[2:], "utf-16-be", "utf-16be"), "utf-16be", ()
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise DecodeError("binary", f"binary file ({kind}), not a text post")
    if b"\x00" in data:
        raise DecodeError("binary", f"binary data: NUL byte at offset {data.index(0)}")
    candidates: list[tuple[str, str]] = []
    if b"\x1b" in data and max(data) < 0x80:
        try:
            candidates.append((data.decode("iso2022_jp"), "iso-2022-jp"))
        except UnicodeDecodeError as e:
            if _ISO2022_DESIGNATION.search(data):
                raise DecodeError("undecodable", f"invalid ISO-2022-JP at offset {e.start}") from None
    if not candidates:
        try:
            candidates.append((data.decode("utf-8"), "utf-8"))
        except UnicodeDecodeError as e:
            utf8_error = e
        else:
            utf8_error = None
            legacy = _japanese_instead(data, candidates[0][0])
            if legacy is not None:
                candidates = [legacy]
        if utf8_error is not None and (text := _truncated(data, "utf-8")) is not None \
                and text.count("\ufffd") == 1 and len(_UTF8_3BYTE.findall(data)) >= MIXED_MIN_SEQUENCES:
            return text, "utf-8", ("truncated_character",)
        if utf8_error is not None:
            _reject_mixed_utf8(data, utf8_error.start)
            notes: dict[str, tuple[str, ...]] = {}
            for codec, label in (("cp932", "cp932"), ("euc_jp", "euc-jp")):
                try:
                    text = data.decode(codec)
                except UnicodeDecodeError:
                    text = _truncated(data, codec)
                    if text is None:
                        continue
                    notes[label] = ("truncated_character",)
                if label == "cp932" and any(ch in _CP932_STRAYS for ch in text):
                    continue  # bytes CP932 leaves unassigned, which Python maps to private-use code points
                candidates.append((text, label))
            if not candidates:
                raise DecodeError(
                    "undecodable",
                    f"not valid in any supported encoding (invalid UTF-8 byte 0x{data[utf8_error.start]:02x} "
                    f"at offset {utf8_error.start}; not CP932 or EUC-JP either; mixed encodings?)",
                )
            if len(candidates) > 1:
                candidates = [_tie_break(data, candidates)]
            text, label = candidates[0]
            _reject_control_heavy(text)
            return text, label, notes.get(label, ())
    text, label = candidates[0]
    _reject_control_heavy(text)
    return text, label, ()


_JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
_EUROPEAN = re.compile(r"[\u00a0-\u024f\u2000-\u206f\u20ac]")


def _japanese_instead(data: bytes, utf8_text: str) -> tuple[str, str] | None:
    """A short legacy-encoded text can also be valid UTF-8 by chance (EUC-JP 文 = CA B8 = UTF-8 ʸ).
    When the UTF-8 reading has non-ASCII characters but none Japanese nor European, and a CP932 or
    EUC-JP reading is all Japanese, that reading is the text."""
    if utf8_text.isascii() or _JAPANESE.search(utf8_text) or _EUROPEAN.search(utf8_text):
        return None
    readings = []
    for codec, label in (("euc_jp", "euc-jp"), ("cp932", "cp932")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if all(ch.isascii() or _JAPANESE.match(ch) for ch in text):
            readings.append((text, label))
    if not readings:
        return None
    return readings[0] if len(readings) == 1 else _tie_break(data, readings)


def _reject_mixed_utf8(data: bytes, error_at: int) -> None:
    high = sum(1 for b in data if b >= 0x80) if len(data) < 1 << 20 else len(re.findall(rb"[\x80-\xff]", data))
    utf8_like = len(_UTF8_3BYTE.findall(data))
    share = 3 * utf8_like / max(high, 1)
    # a few UTF-8-shaped byte triples occur by chance in short CP932/EUC-JP text: ask for real evidence
    if utf8_like >= MIXED_MIN_SEQUENCES and share > MIXED_UTF8_SHARE:
        raise DecodeError("undecodable", f"mixed encodings: mostly UTF-8, but byte 0x{data[error_at]:02x} at offset "
                                         f"{error_at} is not UTF-8 (re-save the file in one encoding)")


def _strict(data: bytes, codec: str, label: str) -> str:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        raise DecodeError("undecodable", f"has a {label} byte-order mark but invalid {label} at offset {e.start}") from None
    _reject_control_heavy(text)
    return text


def _tie_break(data: bytes, candidates: list[tuple[str, str]]) -> tuple[str, str]:
    """Both CP932 and EUC-JP decode. EUC-JP read as CP932 turns into half-width katakana, which
    Japanese text written in CP932 rarely uses: when that reading is mostly half-width katakana and
    the EUC-JP one has none, it is EUC-JP. Otherwise ask chardet, restricted to those two."""
    import chardet

    by_label = {label: text for text, label in candidates}
    wide = sum(1 for ch in by_label["cp932"] if ord(ch) > 0x7F)
    if not _halfwidth(by_label["euc-jp"]) and wide and _halfwidth(by_label["cp932"]) * 2 > wide:
        return by_label["euc-jp"], "euc-jp"

    try:
        guess = chardet.detect(data, include_encodings=["cp932", "euc-jp"], max_bytes=64 * 1024,
                               no_match_encoding="cp932", empty_input_encoding="cp932")
        name = (guess.get("encoding") or "").lower().replace("_", "-")
    except Exception:  # noqa: BLE001 - a detector failure must not fail the file: fall through
        name = ""
    family = "euc-jp" if name.startswith("euc") else "cp932" if name.startswith(("cp932", "shift", "sjis")) else ""
    if family:
        return by_label[family], family
    # chardet had no opinion: EUC-JP read as CP932 turns into half-width katakana; pick the fewer.
    return min(candidates, key=lambda c: _halfwidth(c[0]))


def _halfwidth(text: str) -> int:
    """Half-width katakana characters in `text`."""
    return sum(1 for ch in text if "\uff61" <= ch <= "\uff9f")


def _reject_control_heavy(text: str) -> None:
    sample = text[:65536]
    controls = len(_CONTROL_RE.findall(sample))
    if controls and controls * 100 > len(sample):
        raise DecodeError("binary", f"binary data: {controls} control characters in the first {len(sample)} characters")


def read_metadata(path: str) -> Metadata:
    """Optional sidecar `<stem>.meta.json`: {"published_date": "YYYY-MM-DD", "title": "..."}."""
    return parse_metadata(path, read_sidecar(path))


def parse_metadata(path: str, raw: bytes | None | OSError) -> Metadata:
    """The sidecar's metadata from its bytes (read_sidecar); a sidecar that is a link, not a plain
    file, too large or not the JSON it should be gives an error the document is flagged with."""
    side = sidecar_path(path)
    if raw is None:
        return Metadata()
    if isinstance(raw, Unsafe):
        return Metadata(error=f"{side.name}: {raw.reason}; sidecars must be plain files under {SIDECAR_MAX_BYTES} bytes")
    if isinstance(raw, OSError):
        return Metadata(error=f"cannot read {side.name}: {raw.strerror or raw}")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        d = obj.get("published_date")
        published = date.fromisoformat(d) if d else None
        title = obj.get("title")
        if title is not None and not isinstance(title, str):
            raise ValueError("title is not a string")
    except (ValueError, UnicodeDecodeError, TypeError, RecursionError) as e:
        return Metadata(sha256=digest, error=f"{side.name}: {type(e).__name__ if isinstance(e, RecursionError) else e}")
    return Metadata(published, title.strip() if title else None, digest)
