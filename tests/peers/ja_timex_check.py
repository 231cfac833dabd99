"""Re-check the `timex` column of input/reference/date_peers.tsv against ja-timex itself.

ja-timex pins a pre-release of pendulum that Prefect cannot share an environment with, so this
runs in a virtual environment of its own, not in the test suite:

    python3.11 -m venv /tmp/ja-timex && /tmp/ja-timex/bin/pip install ja-timex==0.2.8
    /tmp/ja-timex/bin/python tests/peers/ja_timex_check.py            # exits 1 on any difference

In: the table. Out: one line per row whose recorded answer differs from what ja-timex returns.
"""

import csv
import sys
from pathlib import Path

from ja_timex import TimexParser

TABLE = Path(__file__).resolve().parents[2] / "input" / "reference" / "date_peers.tsv"


def answer(timexes) -> str:
    parts = []
    for t in timexes:
        words = [t.type, t.value] + ([t.mod] if t.mod else []) + ([f"freq={t.freq}"] if t.freq else [])
        parts.append(" ".join(words) + f" «{t.text}»")
    return "; ".join(parts)


def main() -> int:
    with TABLE.open(encoding="utf-8") as f:
        rows = list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))
    parser = TimexParser()
    wrong = 0
    for r in rows:
        got = answer(parser.parse(r["example"]))
        if got != r["timex"]:
            wrong += 1
            print(f"{r['example']}: table says {r['timex']!r}, ja-timex says {got!r}")
    print(f"{len(rows) - wrong} of {len(rows)} rows agree with ja-timex")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
