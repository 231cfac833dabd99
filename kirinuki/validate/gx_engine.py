"""Great Expectations, run quietly: one ephemeral context for a whole validation.

In: a table's rows as a pandas frame and its expectations. Out: a `Check` per expectation and GX's
own result document. Import only where validation runs: `import great_expectations` takes seconds."""

from __future__ import annotations

import logging
import warnings

import pandas as pd

from kirinuki.validate.suites import Check, ValidationFailed, _columns_of, expectation_name

# ---------------------------------------------------------------- Great Expectations


class _GX:
    """One ephemeral GX context for a whole run, quiet, made (and GX imported) on first use: a
    rebuild whose tables are all the ones the last build validated never imports GX."""

    def __init__(self):
        self.gx = None

    def _start(self) -> None:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="great_expectations")
        from kirinuki.validate.gx_import import import_great_expectations

        gx = import_great_expectations()
        for name in list(logging.root.manager.loggerDict):  # GX sets up its own loggers on import
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.ERROR)
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints each pandas batch by hashing the whole frame when it is under this size;
        # the fingerprint is only a batch marker, never part of a result, and on pandas' Arrow
        # string columns it cost more than all the checks together (15 of 24 s at 10k posts)
        pandas_execution_engine.HASH_THRESHOLD = 0
        self.gx = gx
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.source = self.ctx.data_sources.add_pandas("kirinuki")
        # one asset per table, named after it, made on its first batch and kept for the run: adding
        # or deleting an asset saves the context's whole configuration (three saves a batch were
        # about a fifth of each call's time); a table kept from the last build (not handed to GX)
        # shifts no other table's names, so results do not depend on what was checked before
        self.batches: dict[str, object] = {}  # table -> its asset's whole-dataframe batch definition

    def validate(self, name: str, df: pd.DataFrame, expectations: list[dict]) -> tuple[list[Check], dict]:
        if not expectations:
            return [], {"success": True, "results": []}
        if self.gx is None:
            self._start()
        # only the columns the suite names: GX fingerprints every batch by hashing the whole frame
        # (pickling it when a column holds lists), which cost more than the checks themselves
        used = set(_columns_of(expectations))
        df = df[[c for c in df.columns if c in used]]
        if name not in self.batches:
            self.batches[name] = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("all")
        batch = self.batches[name].get_batch(batch_parameters={"dataframe": df})
        # GX reports results in its own order: tag each expectation to map its result back.
        suite = self.gx.ExpectationSuite(name=name, expectations=[
            dict(e, meta=dict(e.get("meta", {}), kirinuki_index=i)) for i, e in enumerate(expectations)])
        res = batch.validate(suite, result_format="SUMMARY").to_json_dict()
        markers = (res.get("meta") or {}).get("batch_markers")
        if isinstance(markers, dict):  # GX stamps a batch with the wall-clock time it was loaded:
            markers.pop("ge_load_time", None)  # a build's results must not depend on when it ran
        # GX's execution engine keeps every batch's data (the frame) and every metric it computed
        # (whole columns of conditions) for the rest of the run: drop them, the run is done with them
        # (GX has no public call for the metric cache; without this a 100k-post build held ~2 GB)
        engine = batch.data.execution_engine
        engine.batch_manager.batch_data_cache.clear()
        engine.batch_manager.reset_batch_cache()
        cache = getattr(engine, "_metric_cache", None)
        if isinstance(cache, dict):
            cache.clear()
        del batch
        by_index = {r["expectation_config"]["meta"]["kirinuki_index"]: r for r in res["results"]}
        checks = []
        for i, e in enumerate(expectations):
            r = by_index[i]
            if r.get("exception_info", {}).get("raised_exception"):
                raise ValidationFailed(f"{name}: {expectation_name(e)} could not run: "
                                       f"{r['exception_info'].get('exception_message', '').splitlines()[0]}")
            out = r.get("result", {})
            checks.append(Check(name, expectation_name(e), e["severity"], e.get("meta", {}).get("notes", ""),
                                bool(r["success"]), int(out.get("unexpected_count") or 0),
                                int(out.get("element_count") or len(df)), list(out.get("partial_unexpected_list") or [])))
        return checks, res
