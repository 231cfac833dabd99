"""Generated reference sections in docs/*.md, rewritten from the shipped schemas and reference data.

In: the pages of a docs folder (`docs/` of the checkout by default). Out: the same pages with every
`<!-- name:start -->` … `<!-- name:end -->` section regenerated (table reference, normalisation
rules, date rules, the ja-timex peer table, outlet register summary, quoting conventions). `python -m kirinuki.docs [DOCS_DIR]` rewrites them; a
test fails while any page is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from kirinuki.schema import REFERENCE, markdown_reference


def normalization_table() -> str:
    from kirinuki.clean.normalize import normalization_rules

    out = ["| # | rule | from | run | to | why |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(normalization_rules(), 1):
        frm = " ".join(f"`{c}`" if c == "." else f"U+{ord(c):04X} {c}" for c in r.chars)
        if r.name in ("zero-width characters", "tab"):
            frm = " ".join(f"U+{ord(c):04X}" for c in r.chars)
        to = "(removed)" if not r.to else (f"`{r.to}`" if r.to.strip() else "one space")
        run = "1" if r.min_run == 1 else f"{r.min_run}+"
        out.append(f"| {i} | {r.name} | {frm} | {run} | {to} | {r.why.replace('|', '/')} |")
    return "\n".join(out)


def date_rules_table() -> str:
    from kirinuki.clean.date_mentions import lookahead_cues
    from kirinuki.clean.normalize import read_tsv
    out = ["| kind | rule | example | anchor | resolves to | what it does |", "|---|---|---|---|---|---|"]
    for r in read_tsv(REFERENCE / "date_rules.tsv"):
        span = r["date_start"] if r["date_start"] == r["date_end"] else f"{r['date_start']} … {r['date_end']}"
        res = f"{span} ({r['granularity']})" if r["date_start"] else "NULL"
        ex = r["example"].replace(r["raw"], f"**{r['raw']}**", 1)
        out.append(f"| `{r['kind']}` | `{r['rule']}` | {ex} | {r['anchor'] or '—'} | {res} | {r['description']} |")
    out.append("")
    out.append("Look-ahead words (`input/reference/date_lookahead.txt`): " + "、".join(lookahead_cues()) + ".")
    return "\n".join(out)


def date_peers_table() -> str:
    from kirinuki.clean.normalize import read_tsv

    out = ["| class | example | anchor | ja-timex | kirinuki | why |", "|---|---|---|---|---|---|"]
    for r in read_tsv(REFERENCE / "date_peers.tsv"):
        if r["raw"]:
            span = r["date_start"] if r["date_start"] == r["date_end"] else f"{r['date_start']} … {r['date_end']}"
            ours = f"**{r['raw']}** {span} ({r['granularity']})"
        else:
            ours = "no mention"
        out.append(f"| {r['class']} | {r['example']} | {r['anchor']} | {r['timex'] or 'nothing'} | {ours} | "
                   f"{r['why'].replace('|', '/')} |")
    return "\n".join(out)


def outlet_summary() -> str:
    from collections import Counter

    from kirinuki.clean.normalize import outlet_register

    reg = outlet_register()
    kinds = Counter(o["kind"] for o in reg)
    qids = sum(1 for o in reg if o["wikidata"])
    return (f"{len(reg)} outlets ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), "
            f"{sum(len(o['aliases'].split('|')) for o in reg)} aliases, {qids} Wikidata QIDs.")


def gazetteer_summary() -> str:
    from collections import Counter

    from kirinuki.clean.entities import gazetteer

    g = gazetteer()
    kinds = Counter(e.kind for e in g.entities.values())
    return (f"{len(g.entities)} entities ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), "
            f"{len(g.owner)} names and aliases, {len(g.short)} short forms ({' '.join(sorted(g.short))}).")


def conventions_table() -> str:
    from kirinuki.parse.conventions import shipped

    out = ["| # | name | shape | opens a quote | what it looks like |", "|---|---|---|---|---|"]
    for i, c in enumerate(shipped()[0], 1):
        if c.shape == "frame":
            rules = f"frame of {' '.join(c.frame_chars)}" + (" + attribution" if c.needs == "attribution" else "")
        else:
            rules = ", ".join(f"`{r}`" for r in c.open)
            extra = [f"block {c.block}"] if c.block != "paragraph" else []
            extra += [f"script {c.script}"] if c.script != "any" else []
            extra += [f"≥ {c.min_sentences} sentence{'s' * (c.min_sentences > 1)}"] if c.min_sentences else []
            rules += f" ({', '.join(extra)})" if extra else ""
        decisive = " Decisive." if c.decisive else ""
        out.append(f"| {i} | `{c.name}` | {c.shape} | {rules} | {c.description.replace('|', '/')}{decisive} |")
    return "\n".join(out)


def sections() -> dict[str, str]:
    return {"tables": markdown_reference(), "normalization": normalization_table(),
            "date-rules": date_rules_table(), "date-peers": date_peers_table(), "outlets": outlet_summary(), "conventions": conventions_table(),
            "gazetteer": gazetteer_summary()}


def render(text: str) -> str:
    """`text` with every generated section it marks rewritten."""
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)
    return text


def pages(docs: Path) -> dict[Path, str]:
    """Every page of the docs folder with its text; each generated section must stand in exactly one."""
    texts = {p: p.read_text(encoding="utf-8") for p in sorted(docs.glob("*.md"))}
    for name in sections():
        holders = [p.name for p, text in texts.items() if f"<!-- {name}:start -->" in text]
        if len(holders) != 1:
            raise ValueError(f"the generated section {name!r} must be marked in exactly one page of {docs}, "
                             f"found in {holders or 'none'}")
    return texts


def main(argv: list[str]) -> int:
    docs = Path(argv[0]) if argv else Path("docs")
    for path, text in pages(docs).items():
        new = render(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
