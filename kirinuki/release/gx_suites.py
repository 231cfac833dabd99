"""The validation suites a release ships, and the script that re-runs them with GX itself.

In: the release's tables and text profile. Out: `<release>/expectations/<table>.json` (the native
GX 1.x suites of expectations/, less the expectations on columns the profile withholds, whose
values are NULL there) and `<table>.sql.toml` (the DuckDB checks, as documentation), and
`<release>/validate_with_gx.py`, which needs only great_expectations and pandas:

    python validate_with_gx.py          # in the release folder; exit 1 if an expectation fails
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kirinuki.schema import release_columns, spec
from kirinuki.validate.suites import SUITES, _columns_of

SCRIPT = '''"""Re-run this release's Great Expectations suites with GX itself, in a plain FileDataContext
(made in a temporary folder: the release stays as published).

    python validate_with_gx.py              # needs great_expectations 1.x and pandas (with pyarrow)

Prints one line per table and exits 1 when any expectation fails."""

import json
import sys
import tempfile
from pathlib import Path

import great_expectations as gx
import pandas as pd

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as root:
        ctx = gx.get_context(mode="file", project_root_dir=root)
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        source = ctx.data_sources.add_pandas("release")
        for path in sorted((HERE / "expectations").glob("*.json")):
            suite = ctx.suites.add(gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8"))))
            frame = pd.read_parquet(HERE / "data" / f"{path.stem}.parquet")
            batch = source.add_dataframe_asset(path.stem).add_batch_definition_whole_dataframe("all")
            run = ctx.validation_definitions.add(gx.ValidationDefinition(name=path.stem, data=batch, suite=suite))
            result = run.run(batch_parameters={"dataframe": frame})
            bad = [r.expectation_config.type for r in result.results if not r.success]
            failed += len(bad)
            print(f"{path.stem}: {len(result.results) - len(bad)} of {len(result.results)} expectations pass"
                  + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_suites(out: Path, names: list[str], profile: str) -> dict[str, int]:
    """Write the release's suites and script; returns {table: expectations left out} (withheld text)."""
    folder = out / "expectations"
    folder.mkdir()
    left_out = {}
    for name in names:
        path = SUITES / f"{name}.json"
        if not path.exists():
            continue
        suite = json.loads(path.read_text(encoding="utf-8"))
        withheld = {c.name for c in release_columns(spec(name), profile) if c.quoted} if profile == "metadata" else set()
        keep = [e for e in suite["expectations"] if not (set(_columns_of([e])) & withheld)]
        if len(keep) != len(suite["expectations"]):
            left_out[name] = len(suite["expectations"]) - len(keep)
            suite = dict(suite, expectations=keep, meta=dict(suite.get("meta", {}), kirinuki_release=(
                f"{left_out[name]} expectation(s) on text this profile withholds (NULL) are left out")))
        (folder / f"{name}.json").write_text(json.dumps(suite, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                             encoding="utf-8")
        sql = SUITES / f"{name}.sql.toml"
        if sql.exists():
            shutil.copyfile(sql, folder / sql.name)
    (out / "validate_with_gx.py").write_text(SCRIPT, encoding="utf-8")
    return left_out
