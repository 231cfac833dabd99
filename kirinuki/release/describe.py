"""Describe a release in the formats data tools already read, all generated from schemas/:
a dataset card (README.md with Hugging Face YAML), ML Croissant 1.0 and a Frictionless Data Package.

Pure functions from the release's manifest (tables, columns, checksums, counts) to text or JSON.
"""

from __future__ import annotations

import json

from kirinuki.release import licences as lic
from kirinuki.schema import markdown_reference, spec

CROISSANT_TYPES = {"string": "sc:Text", "int32": "sc:Integer", "int64": "sc:Integer", "float64": "sc:Float",
                   "bool": "sc:Boolean", "date32": "sc:Date", "timestamp": "sc:DateTime", "list<string>": "sc:Text"}
FRICTIONLESS_TYPES = {"string": "string", "int32": "integer", "int64": "integer", "float64": "number",
                      "bool": "boolean", "date32": "date", "timestamp": "datetime", "list<string>": "any"}  # Parquet lists load as arrays no type accepts

PROFILE_TEXT = {
    "metadata": ("Quoted news text is withheld: excerpt bodies and leads, the excerpt paragraphs of `paragraphs`, "
                 "reconstructed `articles` text, `article_paragraphs` text and quarantined row payloads are NULL, "
                 "each with its sha256 and length in characters beside it (`<column>_sha256`, `<column>_chars`). "
                 "Headlines, attributions, outlets, dates, offsets and every id are kept, so quotes can still be "
                 "counted, dated, linked across posts and matched against a copy of the text you hold yourself."),
    "full": ("Quoted news text is included as the posts quote it. It belongs to its publishers: share this "
             "profile only where you have the right to."),
}


PLACEHOLDER_URL = "https://example.invalid/{name}/{version}"  # RFC 2606: never a real address


def identity(m: dict) -> str:
    """The dataset's name as its metadata states it: a full-text release is another dataset than the
    metadata release of the same version, so it carries the suffix `-full`."""
    return m["dataset"] + ("-full" if m["text_profile"] == "full" else "")


def _title(m: dict) -> str:
    kind = "full text" if m["text_profile"] == "full" else "quoted text withheld"
    return f"{identity(m)} {m['version']}: Japanese news-clipping posts as tables ({kind})"


def url(m: dict) -> str:
    return m.get("homepage") or PLACEHOLDER_URL.format(name=identity(m), version=m["version"])


_NO_CREATOR = {"name": "kirinuki maintainers", "organization": True}  # when release.toml names none


def _creators(m: dict) -> list[dict]:
    return m.get("about", {}).get("creator") or [_NO_CREATOR]


def citation(m: dict) -> str:
    key = f"{identity(m).replace('-', '_')}_{m['version'].replace('.', '_').replace('-', '_')}"
    authors = " and ".join(f"{{{c['name']}}}" for c in _creators(m))
    return (f"@misc{{{key},\n  title = {{{_title(m)}}},\n  author = {{{authors}}},\n"
            f"  year = {{{m['release_date'][:4]}}},\n  version = {{{m['version']}}},\n"
            f"  note = {{Source corpus sha256 {m['source']['corpus_sha256']}}}"
            + (f",\n  url = {{{m['homepage']}}}" if m.get("homepage") else "") + "\n}")


def _overview(m: dict) -> str:
    """The card's Overview section: the build's charts, shipped as images/*.png, and its page."""
    charts = m.get("overview", {}).get("images", [])
    if not charts:
        return ""
    shown = "\n\n".join(f"![{c['title']}]({c['path']})\n\n{c['caption']}" for c in charts)
    return (f"## Overview\n\nDrawn from this release's tables by the build (`overview.html` is the whole page, "
            f"self-contained).\n\n{shown}\n\n")


def dataset_card(m: dict, changelog_entry: str) -> str:
    """README.md of a release: Hugging Face YAML front matter, then the human description."""
    names = list(m["tables"])
    yaml = ["---", f"pretty_name: {json.dumps(_title(m), ensure_ascii=False)}", "license: other",
            "license_name: kirinuki-mixed", "license_link: LICENSE.md", "language:", "- ja",
            "task_categories:", "- other", "tags:", "- news", "- quotation",
            "- provenance", "- deduplication", "size_categories:", f"- {_size_category(m)}", "configs:"]
    for name in names:
        if not m["tables"][name]["rows"]:
            continue  # `datasets` cannot load a split with no rows; the file is still in data/
        yaml += [f"- config_name: {name}", "  data_files:", "  - split: train",
                 f"    path: {m['tables'][name]['path']}"]
        if name == "documents":
            yaml.append("  default: true")
    yaml.append("---")
    src, counts = m["source"], m["tables"]
    rows = "\n".join(f"| `{n}` | {t['rows']:,} | {spec(n).description} |" for n, t in counts.items())
    limits = _limitations(m)
    body = f"""
# {_title(m)}

Posts in which a writer's commentary alternates with quoted Japanese news excerpts, turned into
linked tables: every post, paragraph, quoted excerpt, inline citation and date expression, with the
exact character offsets of the decoded post it came from, the outlet register, and the articles
reconstructed from every quote of the same article across posts.

- Version **{m['version']}**, released {m['release_date']}, text profile **{m['text_profile']}**.
- Made by kirinuki {m['kirinuki_version']} (pipeline {m['pipeline_version']}, schema {m['schema_version']})
  from {src['documents']:,} posts ({src['bytes']:,} bytes; {src['rejects']:,} inputs rejected);
  source corpus sha256 `{src['corpus_sha256']}`.
- Every file is listed in `SHA256SUMS` (`sha256sum -c SHA256SUMS`); `manifest.json` holds the
  counts, schemas and build parameters; `croissant.json` and `datapackage.json` describe the same
  tables for ML Croissant and Frictionless tools; `validation/` has the checks this data passed, and
  `expectations/` the Great Expectations suites: `python validate_with_gx.py` re-runs them with GX itself.

## Text profile

{PROFILE_TEXT[m['text_profile']]}

## Identity

This is **`{identity(m)}` {m['version']}**{_twin(m)}. Cite it with the key below; its address is
{url(m)}{'' if m.get('homepage') else ' (a placeholder: the maintainer has not set `--homepage`)'}.
Made by {', '.join(c['name'] for c in _creators(m))}{_publisher(m)}.

## Source data

{_section(m, 'source_data')}

## Uses

{_section(m, 'uses')}

## Out-of-scope use

{_section(m, 'out_of_scope')}

## Personal and sensitive information

{_section(m, 'personal_information')}

{_overview(m)}## Tables

| table | rows | what a row is |
|---|---:|---|
{rows}

## How it was made

1. Inputs were decoded (UTF-8, UTF-8/16 with BOM, CP932, EUC-JP, ISO-2022-JP) and line endings
   normalised to LF; every offset refers to that decoded text. Files that could not be read as a
   post are rows of `rejects` with the reason.
2. Each post was parsed into headings, commentary, excerpts (headline, lead, body, elisions,
   attribution) and inline citations; year-less dates take the post's year, inferred as described
   in `documents.year_rule`.
3. Text was normalised (NFKC plus a small documented rule set) into the `*_norm` columns; outlets
   were resolved against a curated register (`outlets`); every date expression became a row of
   `date_mentions` with the rule that resolved it.
4. Quotes of the same article across posts were found by MinHash candidates verified with exact
   character 5-gram Jaccard and containment (parameters in `manifest.json`), clustered into
   `articles`.
5. The tables were validated with Great Expectations suites; rows failing a warning-level check
   were moved to `quarantine` with the reason, and the published tables passed every check.

## Bias, risks and limitations

{_section(m, 'bias_risks')}

Known limitations of this build:

{limits}

## Query it with DuckDB

```sql
-- from this folder
SELECT o.name_ja, count(*) AS quotes, count(DISTINCT q.article_id) AS articles
FROM 'data/excerpts.parquet' e JOIN 'data/article_quotes.parquet' q USING (excerpt_id)
LEFT JOIN 'data/outlets.parquet' o ON o.id = e.outlet_id
GROUP BY ALL ORDER BY quotes DESC;
```

With Hugging Face `datasets`: `load_dataset("<this folder>", "excerpts", split="train")` (one config
per table that has rows; an empty table is only in `data/`).

## License

{_licence_section(m)}

## How to cite

```bibtex
{citation(m)}
```

## Changes in this version

{changelog_entry}
## Table reference

{markdown_reference(m['text_profile'], names, level='###')}"""
    return "\n".join(yaml) + "\n" + body.rstrip() + "\n"


def _twin(m: dict) -> str:
    other = identity(dict(m, text_profile="metadata" if m["text_profile"] == "full" else "full"))
    return (f", the `{m['text_profile']}` text profile of version {m['version']}; the other profile of the same "
            f"version is a different dataset, `{other}`")


def _publisher(m: dict) -> str:
    pub = m.get("about", {}).get("publisher")
    return f", published by {pub['name']}" if pub else ""


def _section(m: dict, key: str) -> str:
    """A card section: the maintainer's words from release.toml, else what the build itself shows."""
    given = m.get("about", {}).get("card", {}).get(key)
    if given:
        return given
    src, about = m["source"], m.get("about", {})
    unset = "\n\n(Not described by the maintainer: set `[card]` in release.toml.)"
    if key == "source_data":
        what = about.get("description") or "blog posts whose writer comments on quoted news excerpts"
        kind = ("**generated**, not real posts (`synthetic = true` in release.toml)" if about.get("synthetic")
                else "as given to `kirinuki build`; the maintainer has not said whether they are real posts"
                if "synthetic" not in about else "real posts")
        return (f"{what}: {src['documents']:,} posts from {src['files']:,} input files ({src['bytes']:,} bytes), "
                f"{kind}. Quoted excerpts come from the outlets in `outlets`.{'' if about.get('description') else unset}")
    if key == "uses":
        return ("Research on how news is quoted and commented on: which outlets are quoted, how quotes are cut "
                "and repeated across posts, when the quoted articles appeared. Joins across versions use the "
                "ids (`doc_id`, `excerpt_id`, `article_id`), which stay stable across builds." + unset)
    if key == "out_of_scope":
        return ("Republishing the quoted news text or the posts' commentary (they are not licensed here; see "
                "License); judging the outlets or the authors from counts this small corpus cannot support; "
                "training models on the text without the rights holders' permission." + unset)
    if key == "personal_information":
        counts = m.get("personal", {})
        listed = ", ".join(f"`{c}` ({n:,} values)" for c, n in counts.items()) or "none"
        return ("Columns that name real people (journalists named in attributions and citations): "
                f"{listed}. Posts' authors are not named by the tables. Commentary may mention private "
                "persons; it was not screened." + unset)
    return ("The corpus reflects one writer's (or a few writers') choice of news: outlets, topics and "
            "viewpoints are as selective as the blog is. Dates are resolved by rules with known limits." + unset)


def license_text(m: dict) -> str:
    return lic.licence_markdown(m["dataset"], m["version"], list(m["tables"]), m["text_profile"],
                                PROFILE_TEXT[m["text_profile"]])


def _licence_section(m: dict) -> str:
    tables, profile = list(m["tables"]), m["text_profile"]
    cc = [t for t in tables if not lic.third_party(t, profile)]
    mixed = [t for t in tables if t not in cc]
    return "\n".join([
        f"- kirinuki's structure and derived data: {lic.CC_BY['title']} ({lic.CC_BY['url']}). Whole tables "
        f"under it: {', '.join(f'`{t}`' for t in cc) or 'none'}.",
        f"- Tables that also hold others' text ({', '.join(f'`{t}`' for t in mixed) or 'none'}): the posts' own "
        "text is the copyright of their authors, quoted news text of its publishers; this release grants no "
        "licence to either. `LICENSE.md` lists the columns.",
        "- The metadata files say the same: `croissant.json` and `datapackage.json` give CC BY 4.0 only to "
        "the tables above that are wholly kirinuki's, and point at `LICENSE.md` for the rest.",
    ])


def _size_category(m: dict) -> str:
    n = max(t["rows"] for t in m["tables"].values())
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _limitations(m: dict) -> str:
    b = m["build"]
    items = [
        "Post years are inferred when a post has no metadata; `documents.year_rule` says how, and "
        "`year_unknown` flags the posts where no rule applied.",
        "Dedup links quotes whose 5-gram Jaccard or containment is at least the thresholds in "
        "`manifest.json`; heavily rewritten quotes of one article stay separate clusters.",
        f"Outlet names the register does not know keep `outlet_id` NULL "
        f"({b['unknown_outlets']['rows']:,} rows, {b['unknown_outlets']['distinct']:,} distinct names).",
        f"Date expressions that could not be resolved: {_fmt_counts(b['unresolved_dates'])}.",
        f"Parse flags (malformed excerpts and the like): {_fmt_counts(b['flags'])}.",
        f"Rejected inputs: {_fmt_counts(b['rejects'])}; quarantined rows: {_fmt_counts(b['quarantined'])}.",
    ]
    return "\n".join(f"- {i}" for i in items)


def _fmt_counts(c: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in c.items()) if c else "none"


def _agent(a: dict, organization: bool = False) -> dict:
    kind = "sc:Organization" if organization or a.get("organization") else "sc:Person"
    return {"@type": kind, "name": a["name"], **({"url": a["url"]} if a.get("url") else {})}


def croissant(m: dict) -> dict:
    """ML Croissant 1.0 metadata: one FileObject and one RecordSet per table."""
    ctx = {
        "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
        "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
        "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
        "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
        "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
        "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet",
        "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
        "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField",
        "path": "cr:path", "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
        "repeated": "cr:repeated", "replace": "cr:replace", "sc": "https://schema.org/",
        "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
        "equivalentProperty": "cr:equivalentProperty", "samplingRate": "cr:samplingRate",
    }
    dist, record_sets = [], []
    for name, t in m["tables"].items():
        file_id = f"file-{name}"
        dist.append({"@type": "cr:FileObject", "@id": file_id, "name": file_id, "contentUrl": t["path"],
                     "contentSize": f"{t['bytes']} B", "encodingFormat": "application/x-parquet",
                     "sha256": t["sha256"]})
        fields = []
        # a reference names the referenced table's file column: mlcroissant 1.1 joins a reference to
        # another record set eagerly and fails on Parquet sources and on cycles (excerpts ↔ articles)
        refs = {cols[0]: ref for cols, ref in spec(name).foreign_keys if len(cols) == 1}
        for c in t["columns"]:
            f = {"@type": "cr:Field", "@id": f"{name}/{c['name']}", "name": c["name"],
                 "description": c["description"], "dataType": CROISSANT_TYPES[c["type"]],
                 "source": {"fileObject": {"@id": file_id}, "extract": {"column": c["name"]}}}
            if c["type"].startswith("list<"):
                f["repeated"] = True
            ref = refs.get(c["name"])
            if ref and ref.split(".")[0] in m["tables"]:
                f["references"] = {"fileObject": {"@id": f"file-{ref.split('.')[0]}"},
                                   "extract": {"column": ref.split(".")[1]}}
            fields.append(f)
        rs = {"@type": "cr:RecordSet", "@id": name, "name": name, "description": spec(name).description,
              "field": fields}
        rs["key"] = [{"@id": f"{name}/{k}"} for k in spec(name).primary_key]
        record_sets.append(rs)
    return {
        "@context": ctx, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": identity(m), "description": _title(m) + ". " + PROFILE_TEXT[m["text_profile"]],
        "version": m["version"],
        "license": lic.croissant_licence(lic.package_licence(list(m["tables"]), m["text_profile"]), m.get("homepage")),
        "url": url(m), "datePublished": m["release_date"], "inLanguage": "ja", "citeAs": citation(m),
        "creator": [_agent(c) for c in _creators(m)],
        **({"publisher": _agent(m["about"]["publisher"], organization=True)} if m.get("about", {}).get("publisher") else {}),
        "keywords": ["news", "quotation", "Japanese", "provenance", "deduplication"],
        "distribution": dist, "recordSet": record_sets,
    }


def datapackage(m: dict) -> dict:
    """Frictionless Data Package v2: one Parquet resource with a Table Schema per table."""
    resources = []
    for name, t in m["tables"].items():
        s = spec(name)
        fields = []
        for c in t["columns"]:
            f = {"name": c["name"], "type": FRICTIONLESS_TYPES[c["type"]], "description": c["description"]}
            if c["type"].startswith("list<"):
                f["description"] += " (A list of strings.)"
            if not c["nullable"]:
                f["constraints"] = {"required": True}
            fields.append(f)
        # Frictionless reads Parquet through pandas, where a NULL in an integer column becomes NaN
        schema: dict = {"fields": fields, "primaryKey": list(s.primary_key), "missingValues": ["", "nan"]}
        # a reference to the resource itself names no resource (Table Schema's self-reference)
        fks = [{"fields": list(cols), "reference": {"resource": "" if ref.split(".")[0] == name else ref.split(".")[0],
                                                    "fields": [ref.split(".")[1]]}}
               for cols, ref in s.foreign_keys if ref.split(".")[0] in m["tables"]]
        if fks:
            schema["foreignKeys"] = fks
        resources.append({"name": name, "type": "table", "path": t["path"],
                          "format": "parquet", "mediatype": "application/vnd.apache.parquet",
                          # not `bytes`: Frictionless cannot measure a Parquet source and fails it
                          "hash": f"sha256:{t['sha256']}", "description": s.description,
                          "licenses": lic.datapackage_licences(lic.table_licence(name, m["text_profile"])),
                          "schema": schema})
    about = m.get("about", {})
    return {"$schema": "https://datapackage.org/profiles/2.0/datapackage.json", "name": identity(m),
            "id": url(m), "title": _title(m), "version": m["version"],
            "description": PROFILE_TEXT[m["text_profile"]] + (f" {about['description']}" if about.get("description") else ""),
            "created": f"{m['release_date']}T00:00:00Z", "homepage": url(m),
            "contributors": [{"title": c["name"], "roles": ["creator"], **({"path": c["url"]} if c.get("url") else {})}
                             for c in _creators(m)],
            "sources": [{"title": about.get("description") or f"{m['source']['documents']:,} clipping posts",
                         "path": url(m)}],
            "keywords": ["news", "quotation", "Japanese", "provenance", "deduplication"],
            "licenses": lic.datapackage_licences(lic.package_licence(list(m["tables"]), m["text_profile"])),
            "resources": resources}
