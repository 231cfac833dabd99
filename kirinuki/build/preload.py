"""What the build's forkserver loads before it forks a worker: the parsing stages, warmed.

In: nothing (imported by multiprocessing's forkserver, as its preload). Out: the modules a parse
worker runs, imported, and what their first batch would otherwise make in every worker: pandas
(pyarrow's `Table.from_pylist` imports it: 0.36 s), pyarrow.compute, the reference tables read and
their patterns compiled (a parse and clean of one small made-up post). Workers are forked from the
forkserver, so they start with all of it; the CLI starts the forkserver before it imports Prefect,
so this runs on the other core meanwhile. A failure here costs only the warming: each worker then
makes what it needs as before.
"""

from __future__ import annotations

import kirinuki.build.batch  # noqa: F401  (the stages a worker runs)

# a post in the seed's convention: a headline frame, a body, an attribution with a date and an outlet
_POST = "今日の切り抜き。\n****架空の町で祭り****\n町の広場で秋の祭りが開かれた。\n【2024年4月9日 朝日新聞】\n終わり。\n"


def warm() -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401

        from kirinuki.build.parts import PART_TABLES
        from kirinuki.clean.normalize import clean_document
        from kirinuki.ingest.model import Source
        from kirinuki.parse.records import source_rows
        from kirinuki.store.files import to_table

        rows = source_rows(Source("warm.txt", _POST, "0" * 64, len(_POST.encode()), "utf-8", "\n"))
        clean_document(rows)
        for name in PART_TABLES:
            to_table(name, rows[name], final=False)
    except Exception:  # noqa: BLE001 - only an optimisation: the workers make what they need
        pass


warm()
