"""Generated README sections: `python -m flows.docs` rewrites them from schemas/ (tests check they match)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .schema import PROJECT_ROOT, markdown_reference

README = PROJECT_ROOT / "README.md"


def normalization_table() -> str:
    from .clean import normalization_rules

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
    from .clean import read_tsv
    from .date_mentions import lookahead_cues
    from .schema import REFERENCE

    out = ["| kind | rule | example | anchor | resolves to | what it does |", "|---|---|---|---|---|---|"]
    for r in read_tsv(REFERENCE / "date_rules.tsv"):
        span = r["date_start"] if r["date_start"] == r["date_end"] else f"{r['date_start']} … {r['date_end']}"
        res = f"{span} ({r['granularity']})" if r["date_start"] else "NULL"
        ex = r["example"].replace(r["raw"], f"**{r['raw']}**", 1)
        out.append(f"| `{r['kind']}` | `{r['rule']}` | {ex} | {r['anchor'] or '—'} | {res} | {r['description']} |")
    out.append("")
    out.append("Look-ahead words (`input/reference/date_lookahead.txt`): " + "、".join(lookahead_cues()) + ".")
    return "\n".join(out)


def outlet_summary() -> str:
    from collections import Counter

    from .clean import outlet_register

    reg = outlet_register()
    kinds = Counter(o["kind"] for o in reg)
    qids = sum(1 for o in reg if o["wikidata"])
    return (f"{len(reg)} outlets ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), "
            f"{sum(len(o['aliases'].split('|')) for o in reg)} aliases, {qids} Wikidata QIDs.")


def sections() -> dict[str, str]:
    return {"tables": markdown_reference(), "normalization": normalization_table(),
            "date-rules": date_rules_table(), "outlets": outlet_summary()}


def render(text: str) -> str:
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- {name}:start --> … <!-- {name}:end --> markers")
        text = pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else README
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
