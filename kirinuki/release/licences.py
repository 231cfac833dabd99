"""The licence model of a release, declared once and written into every file that states a licence.

In: the table schemas (each column's `owner` and `quoted` in schemas/*.toml) and a text profile.
Out: who owns what in a release of that profile — `third_party(table, profile)` (the columns that
hold publishers' or authors' text, with their owners), `table_licence()` (CC BY 4.0 only for a
table holding nothing but kirinuki's own derived data) — and the licence statements the card,
LICENSE.md, Croissant and the Data Package are built from, so they cannot disagree.

kirinuki's own work (structure, ids, offsets, hashes, lengths, flags, resolved dates, outlet ids,
the outlet register, dedup results, validation results and the metadata) is CC BY 4.0. Text
written by others is not kirinuki's to license: the posts' commentary belongs to their authors,
quoted news text (headlines, leads, bodies, captions, article titles) to its publishers. The
metadata profile withholds the quoted text (NULL) but keeps headlines and the commentary, so no
profile is CC BY as a whole.
"""

from __future__ import annotations

from kirinuki.schema import TableSpec, release_columns, spec

CC_BY = {"id": "CC-BY-4.0", "url": "https://creativecommons.org/licenses/by/4.0/",
         "title": "Creative Commons Attribution 4.0 International"}
MIXED = {"id": "LicenseRef-kirinuki-mixed", "path": "LICENSE.md",
         "title": "Mixed ownership: kirinuki's structure and derived data under CC BY 4.0; the posts' text "
                  "belongs to their authors and quoted news text to its publishers, and no licence is "
                  "granted to either (see LICENSE.md)"}
OWNER_TEXT = {
    "publishers": "quoted news text, the copyright of the outlets that published it",
    "authors": "the posts' own text, the copyright of the posts' authors",
    "mixed": "both: the posts' authors' text and the publishers' text they quote",
}


def column_owners(owner: str, quoted: str, profile: str) -> frozenset[str]:
    """Whose text a column's published values are in `profile`: {"publishers", "authors"}, a part
    of it, or nothing (kirinuki's own data, or text the profile withholds)."""
    own = {"publishers": {"publishers"}, "authors": {"authors"}, "mixed": {"publishers", "authors"}}.get(owner, set())
    if profile == "metadata" and quoted:
        if quoted == "always":
            return frozenset()  # withheld: only its sha256 and length are published
        own -= {"publishers"}  # the quoted rows are withheld; the author's rows stay
    return frozenset(own)


def third_party(table: str | TableSpec, profile: str) -> dict[str, frozenset[str]]:
    """{column: owners} for the columns of a release table that publish someone else's text."""
    t = spec(table) if isinstance(table, str) else table
    out = {}
    for c in release_columns(t, profile):
        if c.derived_from:
            continue  # a hash or a length of withheld text: kirinuki's own data
        owners = column_owners(c.owner, c.quoted, profile)
        if owners:
            out[c.name] = owners
    return out


def table_licence(table: str | TableSpec, profile: str) -> dict:
    """CC BY 4.0 for a table of kirinuki's own data only; the mixed statement otherwise."""
    return MIXED if third_party(table, profile) else CC_BY


def package_licence(tables: list[str], profile: str) -> dict:
    return MIXED if any(third_party(t, profile) for t in tables) else CC_BY


def datapackage_licences(licence: dict) -> list[dict]:
    """Data Package `licenses`: an Open Definition id only where the licence really is one."""
    if licence is CC_BY:
        return [{"name": CC_BY["id"], "path": CC_BY["url"], "title": CC_BY["title"]}]
    return [{"path": MIXED["path"], "title": MIXED["title"]}]


def croissant_licence(licence: dict, homepage: str | None) -> object:
    if licence is CC_BY:
        return CC_BY["url"]
    url = f"{homepage.rstrip('/')}/{MIXED['path']}" if homepage else MIXED["path"]
    return {"@type": "sc:CreativeWork", "name": MIXED["id"], "url": url, "description": MIXED["title"]}


def licence_markdown(dataset: str, version: str, tables: list[str], profile: str, profile_text: str) -> str:
    """LICENSE.md: the model written out, table by table."""
    lines = [f"# Licence of {dataset} {version}", "",
             "This release combines material with different owners.", "",
             f"1. The dataset's structure and everything kirinuki derived — ids, offsets, hashes, lengths, flags, "
             f"resolved dates, outlet ids, the outlet register, dedup clusters and links, validation results and "
             f"the metadata files — is licensed under {CC_BY['title']} ({CC_BY['id']}, {CC_BY['url']}).",
             "2. The text the posts' authors wrote (commentary, titles, categories and tags) remains their "
             "copyright. Nothing in this release licenses it to you.",
             "3. Quoted news text (headlines, leads, bodies, captions, article titles, reconstructed articles) "
             "remains the copyright of the outlets that published it. Nothing in this release licenses it to you.",
             "", f"This release uses the text profile `{profile}`: {profile_text}", "",
             "## Table by table", "", "| table | licence | columns holding others' text |", "|---|---|---|"]
    for t in tables:
        owned = third_party(t, profile)
        cols = "; ".join(f"`{c}` ({OWNER_TEXT['mixed' if len(o) > 1 else next(iter(o))]})" for c, o in owned.items())
        lines.append(f"| `{t}` | {'CC BY 4.0 for every column except those listed' if owned else 'CC BY 4.0'} "
                     f"| {cols or '—'} |")
    return "\n".join(lines) + "\n"
