"""Generated README sections: `python -m flows.docs` rewrites them from schemas/ (tests check they match)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .schema import PROJECT_ROOT, markdown_reference

README = PROJECT_ROOT / "README.md"


def sections() -> dict[str, str]:
    return {"tables": markdown_reference()}


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
