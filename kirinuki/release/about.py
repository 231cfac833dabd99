"""What the maintainer says about a corpus: release.toml, read and checked.

In: the path of a release.toml (`kirinuki release --about FILE`, else ./release.toml when it
exists). Out: a plain dict with the keys below, every one optional; anything else, or a value of
the wrong kind, is a ReleaseError of one line. The card, Croissant and the Data Package use it for
who made and publishes the dataset, where it lives and the card's descriptive sections.

    homepage = "https://example.org/my-clippings"      # Croissant url, Data Package homepage
    description = "Posts of the blog …, 2019–2024."    # what the corpus is
    synthetic = false                                  # true: generated posts, not a real blog
    [[creator]]                                        # one or more
    name = "…"
    url = "…"                                          # optional
    [publisher]
    name = "…"
    [card]                                             # the dataset card's sections, in Markdown
    source_data = "…"
    uses = "…"
    out_of_scope = "…"
    personal_information = "…"
    bias_risks = "…"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from kirinuki.release.checks import ReleaseError

CARD_SECTIONS = ("source_data", "uses", "out_of_scope", "personal_information", "bias_risks")
_AGENT_KEYS = {"name", "url", "email"}


def _agent(value: object, where: str) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"].strip():
        raise ReleaseError(f"{where} needs a name (name = \"…\")")
    extra = set(value) - _AGENT_KEYS
    if extra or not all(isinstance(v, str) for v in value.values()):
        raise ReleaseError(f"{where} takes only text values for {', '.join(sorted(_AGENT_KEYS))}")
    return {k: value[k].strip() for k in sorted(value)}


def read_about(path: Path | None) -> dict:
    """The checked contents of release.toml; {} when there is none."""
    if path is None:
        default = Path("release.toml")
        if not default.is_file():
            return {}
        path = default
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"--about {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{path} is not valid TOML ({str(e).splitlines()[0]}); fix it or leave --about out") from None
    known = {"homepage", "description", "synthetic", "creator", "publisher", "card"}
    if set(raw) - known:
        raise ReleaseError(f"{path}: unknown keys {', '.join(sorted(set(raw) - known))}; known: {', '.join(sorted(known))}")
    out: dict = {}
    for key in ("homepage", "description"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise ReleaseError(f"{path}: {key} must be non-empty text")
            out[key] = raw[key].strip()
    if "synthetic" in raw:
        if not isinstance(raw["synthetic"], bool):
            raise ReleaseError(f"{path}: synthetic must be true or false")
        out["synthetic"] = raw["synthetic"]
    if "creator" in raw:
        creators = raw["creator"] if isinstance(raw["creator"], list) else [raw["creator"]]
        out["creator"] = [_agent(c, f"{path}: [[creator]]") for c in creators]
    if "publisher" in raw:
        out["publisher"] = _agent(raw["publisher"], f"{path}: [publisher]")
    if "card" in raw:
        card = raw["card"]
        if not isinstance(card, dict) or set(card) - set(CARD_SECTIONS) or not all(
                isinstance(v, str) for v in card.values()):
            raise ReleaseError(f"{path}: [card] takes text for {', '.join(CARD_SECTIONS)}")
        out["card"] = {k: card[k].strip() for k in CARD_SECTIONS if k in card}
    return out
