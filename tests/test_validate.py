import hashlib
import json
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE, needs_chromium, page_requests, rows
from kirinuki.schema import spec
from kirinuki.validate import ValidationFailed, validate_build


@pytest.fixture
def build_copy(sample_build, tmp_path) -> Path:
    dst = tmp_path / "build"
    shutil.copytree(sample_build, dst)
    return dst


def corrupt(root: Path, table: str, index: int, **changes) -> str:
    path = root / "data" / f"{table}.parquet"
    t = pq.read_table(path).to_pylist()
    t[index].update(changes)
    # written like a file from elsewhere: declared types, but nothing enforced as non-null
    schema = pa.schema([f.with_nullable(True) for f in spec(table).arrow_schema])
    pq.write_table(pa.Table.from_pylist(t, schema=schema), path)
    key = {"paragraphs": "paragraph_id", "excerpts": "excerpt_id", "citations": "citation_id", "documents": "doc_id",
           "article_paragraphs": "article_id"}[table]
    return t[index][key]


def quarantined(root: Path) -> list[dict]:
    return pq.read_table(root / "data" / "quarantine.parquet").to_pylist()


WARNINGS = [
    ("paragraphs", dict(role="bogus"), "expect_column_values_to_be_in_set(role)"),
    ("paragraphs", dict(text=""), "expect_column_value_lengths_to_be_between(text)"),
    ("paragraphs", dict(char_end=10**9), "paragraphs_offsets_within_document"),
    ("excerpts", dict(published_date=date(2999, 1, 1)), "expect_column_values_to_be_between(published_date)"),
    ("citations", dict(paragraph_id="nowhere-p00001"), "citations_paragraph_id_resolves"),
]


@pytest.mark.parametrize("table,change,expectation", WARNINGS, ids=[w[2] for w in WARNINGS])
def test_warning_rows_are_quarantined_and_the_rest_passes(build_copy, table, change, expectation):
    key = corrupt(build_copy, table, 1 if table != "citations" else 0, **change)
    report = validate_build(build_copy)
    q = quarantined(build_copy)
    mine = [r for r in q if r["table_name"] == table and r["row_key"] == key]
    assert mine and mine[0]["expectation"] == expectation and mine[0]["severity"] == "warning"
    assert json.loads(mine[0]["row_json"])[list(change)[0]] is not None or change == {}
    published = pq.read_table(build_copy / "data" / f"{table}.parquet").to_pylist()
    assert key not in {r[next(iter(r))] for r in published}  # the row is gone from the table
    assert report.success  # re-validation of the published tables is 100% green
    again = validate_build(build_copy, quarantine=False)
    assert again.success and all(c.success for c in again.checks)


def test_quarantining_an_excerpt_cascades_to_rows_that_point_at_it(build_copy):
    key = corrupt(build_copy, "excerpts", 3, published_date=date(2999, 1, 1))
    validate_build(build_copy)
    q = quarantined(build_copy)
    cascaded = {r["table_name"] for r in q if r["expectation"] == "cascade:excerpts"}
    assert "paragraphs" in cascaded
    assert not rows(build_copy, f"SELECT * FROM paragraphs WHERE excerpt_id = '{key}'")


def test_a_paragraph_repeating_a_quarantined_one_follows_it_and_the_build_passes(tmp_path):
    """The commentary repeats a line of an excerpt that is quarantined (its article is dated after
    the post): the repeat points at the quarantined paragraph (duplicate_of), so it goes with it,
    with its reason, and the build passes instead of failing on the dangling reference."""
    from kirinuki.flows.build import build

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.txt").write_text("解説です。\n****記事A****\n同じ文の段落です。\n次の段落です。【2024年5月1日 共同通信】\n"
                                          "*****\n同じ文の段落です。\n", encoding="utf-8")
    (tmp_path / "in" / "p.meta.json").write_text('{"published_date": "2024-01-01"}', encoding="utf-8")
    summary = build([str(tmp_path / "in")], str(tmp_path / "out"))
    assert summary["validation"]["success"]
    q = quarantined(tmp_path / "out")
    by = {(r["table_name"], r["expectation"]) for r in q}
    assert ("excerpts", "excerpts_not_after_post") in by and ("paragraphs", "cascade:paragraphs") in by
    assert [r["text"] for r in rows(tmp_path / "out", "SELECT text FROM paragraphs ORDER BY ordinal")] == ["解説です。"]


@pytest.mark.parametrize("table,index,change,expectation", [
    ("documents", 0, dict(doc_id=None), "expect_column_values_to_not_be_null(doc_id)"),
    ("paragraphs", 1, dict(paragraph_id="PLACEHOLDER"), "expect_column_values_to_be_unique(paragraph_id)"),
    ("article_paragraphs", 1, dict(article_id="PLACEHOLDER"), "article_paragraphs_key_unique"),  # an SQL check
])
def test_critical_failures_stop_with_one_clear_line(build_copy, table, index, change, expectation):
    if change.get("paragraph_id") == "PLACEHOLDER":  # duplicate the first paragraph's key
        change = dict(paragraph_id=pq.read_table(build_copy / "data" / "paragraphs.parquet").column("paragraph_id")[0].as_py())
    if change.get("article_id") == "PLACEHOLDER":  # the first article paragraph's (article_id, ordinal) again
        first = pq.read_table(build_copy / "data" / "article_paragraphs.parquet").slice(0, 1).to_pylist()[0]
        change = dict(article_id=first["article_id"], ordinal=first["ordinal"])
    corrupt(build_copy, table, index, **change)
    with pytest.raises(ValidationFailed) as e:
        validate_build(build_copy)
    msg = str(e.value)
    assert msg.startswith(f"{table}: {expectation} failed for 1") or msg.startswith(f"{table}: {expectation} failed for 2")
    assert "\n" not in msg


def test_critical_failure_in_a_build_leaves_the_previous_build_intact(tmp_path, monkeypatch):
    import kirinuki.flows.build as pipeline
    from kirinuki.validate import checks, suites

    out = tmp_path / "out"
    pipeline.build([str(SAMPLE)], str(out))
    before = {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")}
    real = suites.load_suite

    def strict(name):
        suite = real(name)
        if name == "documents":
            suite = dict(suite, expectations=suite["expectations"] + [{
                "type": "expect_column_values_to_be_in_set", "kwargs": {"column": "encoding", "value_set": ["none"]},
                "severity": "critical", "meta": {"notes": "injected"}}])
        return suite

    for module in (suites, checks):  # where the stage looks its suites up
        monkeypatch.setattr(module, "load_suite", strict)
    with pytest.raises(ValidationFailed, match=r"documents: expect_column_values_to_be_in_set\(encoding\)"):
        pipeline.build([str(SAMPLE)], str(out), cache=False)  # same inputs: rebuild anyway
    assert {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")} == before


def test_sample_and_seed_build_with_nothing_quarantined(sample_build, seed_build):
    for b in (sample_build, seed_build):
        assert rows(b, "SELECT count(*) n FROM quarantine") == [{"n": 0}]
        res = json.loads((b / "validation" / "results.json").read_text())
        assert res["success"] and len(res["checks"]) > 50
        summary = json.loads((b / "build.json").read_text())
        assert summary["validation"]["success"] and summary["rows"]["quarantine"] == 0


def test_suites_are_native_gx_suites_and_sql_checks_are_their_own_files():
    import tomllib

    import great_expectations as gx

    from kirinuki.resources import folder
    from kirinuki.schema import tables

    root = folder("expectations")
    files = sorted(root.rglob("*"))
    assert {p.suffix for p in files} == {".json", ".toml"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            suite = gx.ExpectationSuite(**json.loads(text))  # a native GX 1.x suite, as GX reads it
            assert suite.name == path.stem and suite.expectations
            assert {e.severity.value for e in suite.expectations} <= {"critical", "warning"}
            assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            assert not re.search(r'"id"\s*:', text)  # no generated ids
        else:
            assert path.name.endswith(".sql.toml") and (root / f"{path.name[:-9]}.json").exists()
            for s in tomllib.loads(text)["check"]:
                assert {"name", "severity", "notes", "sql"} <= set(s) <= {"name", "severity", "notes", "sql", "scope",
                                                                          "by_partition"}
                assert s["severity"] in ("critical", "warning") and s["sql"].lstrip().upper().startswith("SELECT")
                assert s.get("scope", "document") == "document"  # the one scope there is (validate.checks)
                if "by_partition" in s:  # run file by file: only rows of one post relate (validate.partitionwise)
                    assert s["by_partition"][0] == path.name[:-9] and s.get("scope") == "document"
                    assert all("doc_id" in {c.name for c in spec(t).columns} for t in s["by_partition"])
    assert {p.stem for p in files if p.suffix == ".json"} == set(tables()) - {"quarantine"}


def test_report_is_self_contained_and_shows_counts(sample_build):
    html = (sample_build / "validation" / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=|https?://|<script|@import|url\(""", html)
    assert "default-src 'none'" in html
    assert ">paragraphs</td><td>107</td>" in html


@needs_chromium
def test_report_opens_in_a_headless_browser_without_network_requests(sample_build, tmp_path):
    dom, urls = page_requests(sample_build / "validation" / "report.html", tmp_path)
    assert "all checks pass" in dom and ">paragraphs</td><td>107</td>" in dom
    assert urls == []


@needs_chromium
def test_the_request_detector_does_see_a_page_that_calls_out(tmp_path):
    page = tmp_path / "control.html"
    page.write_text("<!doctype html><html><body><img src='http://127.0.0.1:9/x.png'>hi</body></html>")
    _, urls = page_requests(page, tmp_path)
    assert urls == ["http://127.0.0.1:9/x.png"]


def test_cli_validate_reads_a_build_and_reports(sample_build, build_copy):
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "validate", str(sample_build)], capture_output=True, text=True)
    assert r.returncode == 0 and "all pass" in r.stdout, r.stderr
    corrupt(build_copy, "paragraphs", 2, role="bogus")
    r = subprocess.run([sys.executable, "-m", "kirinuki.cli", "validate", str(build_copy)], capture_output=True, text=True)
    assert r.returncode == 1 and "expect_column_values_to_be_in_set(role)" in r.stderr


def test_validating_the_same_build_again_writes_the_same_results_byte_for_byte(build_copy):
    """The validation results say nothing of when they were made (Great Expectations stamps each
    batch with its load time; that stamp is dropped), so the same tables give the same
    results.json, which a release ships."""
    from kirinuki.validate import write_reports

    written = []
    for _ in range(2):
        write_reports(build_copy, validate_build(build_copy, quarantine=False))
        written.append((build_copy / "validation" / "results.json").read_bytes())
    assert written[0] == written[1] and b"ge_load_time" not in written[0]
    assert b'"batch_markers"' in written[0]  # the tables validated whole keep GX's own result document


def test_document_scoped_checks_read_only_the_files_no_passing_build_checked(build_copy, monkeypatch):
    """A file whose sha256 the passing build that `previous` and `checked` come from validated holds
    only documents that build checked, so the document-scoped checks do not read it; changed files
    are read. When a document that build checked is read again with another convention (or
    sidecar), its rows in other tables may be in files checked before: then every file is read."""
    import kirinuki.validate.checks as checks
    from kirinuki.validate.checks import DOCUMENT_INPUTS

    kept = validate_build(build_copy).kept_results()  # a passing build's results
    key = corrupt(build_copy, "paragraphs", 2, text="どこにも無い段落")
    data = build_copy / "data"
    doc = next(r for r in pq.read_table(data / "paragraphs.parquet").to_pylist() if r["paragraph_id"] == key)
    docs = pq.read_table(data / "documents.parquet", columns=list(DOCUMENT_INPUTS))
    others = docs.filter(pa.compute.not_equal(docs["doc_id"], doc["doc_id"]))
    slice_check = "paragraphs_text_is_the_documents_slice"
    views: dict[str, str] = {}  # what each `fresh` view reads
    real = checks._fresh_views

    def spied(con, *args):
        real(con, *args)
        views.update(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'fresh'").fetchall())

    monkeypatch.setattr(checks, "_fresh_views", spied)
    per_post = ["documents", "excerpts", "paragraphs", "mentions", "citations", "date_mentions"]

    def failing(files: dict[str, str], checked) -> set[str]:
        views.clear()
        previous = dict(kept, **{name: dict(kept[name], files={f"data/{name}.parquet": sha}) for name, sha in files.items()})
        report = validate_build(build_copy, quarantine=False, checked=checked, previous=previous)
        return {c.name for c in report.checks if not c.success}

    now = hashlib.sha256((data / "paragraphs.parquet").read_bytes()).hexdigest()
    new = {name: "0" * 64 for name in per_post}
    assert slice_check in failing(new, others) and "main.paragraphs" in views["paragraphs"]  # new files: read
    assert slice_check not in failing(dict(new, paragraphs=now), docs)
    assert "WHERE false" in views["paragraphs"] and "main.documents" in views["documents"]  # checked before: not read
    i = DOCUMENT_INPUTS.index("convention")
    mine = pa.compute.equal(docs["doc_id"], doc["doc_id"])
    repinned = docs.set_column(i, "convention", pa.compute.if_else(mine, pa.scalar("other"), docs["convention"]))
    assert failing({"documents": "0" * 64}, repinned) == {slice_check}  # read again with its other tables


def test_document_scoped_checks_skip_only_documents_checked_before_with_the_same_inputs(build_copy):
    """A paragraph whose text is not its document's slice, or whose line span runs backwards, is
    caught, unless an earlier passing build checked that very document made of the same inputs
    (doc_id, source sha256, sidecar, convention and its rule); a document whose bytes changed, or
    whose convention was pinned since, is checked again."""
    from kirinuki.validate.checks import DOCUMENT_INPUTS

    key = corrupt(build_copy, "paragraphs", 2, text="どこにも無い段落")
    rows = pq.read_table(build_copy / "data" / "paragraphs.parquet").to_pylist()
    doc = next(r for r in rows if r["paragraph_id"] == key)
    other = next(r for r in rows if r["doc_id"] != doc["doc_id"] and r["line_end"] > 1)
    corrupt(build_copy, "paragraphs", rows.index(other), line_end=0)
    docs = pq.read_table(build_copy / "data" / "documents.parquet", columns=list(DOCUMENT_INPUTS))
    others = docs.filter(pa.compute.not_equal(docs["doc_id"], doc["doc_id"]))
    slice_check, span_check = "paragraphs_text_is_the_documents_slice", "paragraphs_line_span"

    def failing(checked):
        report = validate_build(build_copy, quarantine=False, checked=checked)
        return {c.name for c in report.checks if not c.success}

    assert {slice_check, span_check} <= failing(None)
    assert slice_check in failing(others) and span_check not in failing(others)  # only the first was not checked
    assert not {slice_check, span_check} & failing(docs)  # both were: neither is read again
    stale = docs.set_column(1, "source_sha256", pa.array(["0" * 64] * docs.num_rows))
    assert {slice_check, span_check} <= failing(stale)  # the same doc_id with other bytes is checked again
    i = DOCUMENT_INPUTS.index("convention_rule")
    pinned = docs.set_column(i, "convention_rule", pa.array(["pinned"] * docs.num_rows))
    assert {slice_check, span_check} <= failing(pinned)  # the same bytes read by another convention rule: again
    assert slice_check in failing(docs.drop_columns(["doc_id"]).append_column("doc_id", docs["doc_id"]).filter(
        pa.compute.not_equal(docs["doc_id"], doc["doc_id"])))  # the columns' order does not matter


def test_wide_rows_are_checked_in_fewer_rows_a_slice_with_the_same_results(sample_build, monkeypatch):
    """A table of long texts (documents hold whole posts) is checked in slices of fewer rows, so a
    slice's frame stays near SLICE_BYTES (at 100k posts one slice of documents was every post's text:
    8.4 GB); the checks' outcome and counts are those of the table checked at once."""
    import kirinuki.validate.gx_files as gx_files
    from kirinuki.validate.gx_engine import _GX
    from kirinuki.validate.suites import load_suite

    files = [sample_build / "data" / "paragraphs.parquet"]
    exps = load_suite("paragraphs")["expectations"]
    n = pq.ParquetFile(files[0]).metadata.num_rows
    gx = _GX()
    whole, _, _ = gx_files.validate_files(gx, "paragraphs", files, ["x"], exps)
    assert gx_files.slice_rows(files, ["text"]) == gx_files.SLICE_ROWS  # short rows: the usual slices
    monkeypatch.setattr(gx_files, "SLICE_BYTES", 2_000)
    rows = gx_files.slice_rows(files, ["text", "text_norm"])
    assert 1 <= rows < n / 5 and gx_files.slice_rows(files, ["ordinal"]) > rows  # wide columns: fewer rows
    sliced, _, _ = gx_files.validate_files(gx, "paragraphs", files, ["x"], exps)
    assert [(c.name, c.success, c.unexpected, c.elements) for c in sliced] == \
        [(c.name, c.success, c.unexpected, c.elements) for c in whole]


def test_a_null_checked_column_whose_statistics_show_no_null_is_not_read(sample_build, tmp_path, monkeypatch):
    """When every row group of every file says in its statistics that documents.text holds no
    null, the column is not read at all (it is most of a build's bytes) and Great Expectations
    gets its stand-in of empty strings, with the real column's results; one file with a null in it
    (or a row group without a null count) has the column read, and the null found."""
    import kirinuki.validate.gx_files as gx_files
    from kirinuki.validate.gx_engine import _GX
    from kirinuki.validate.suites import load_suite

    table = pq.read_table(sample_build / "data" / "documents.parquet")
    i = table.schema.get_field_index("text")
    table = table.set_column(i, pa.field("text", pa.string()), table.column(i))  # (nullable here)
    half = table.num_rows // 2
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    exps = load_suite("documents")["expectations"]
    gx = _GX()
    read: list[list[str]] = []
    batches = gx_files._batches
    monkeypatch.setattr(gx_files, "_batches", lambda pf, size, columns, skip, made=None: (
        read.append(list(columns)), batches(pf, size, columns, skip, made))[1])
    monkeypatch.setattr(gx_files, "SLICE_BYTES", 1)  # sliced, whatever the files' size

    def check(second: pa.Table, statistics: bool = True):
        pq.write_table(table.slice(0, half), files[0])
        pq.write_table(second, files[1], write_statistics=statistics)
        read.clear()
        got = gx_files.validate_files(gx, "documents", files, ["a", "b"], exps)
        columns = list(read)
        with monkeypatch.context() as m:
            m.setattr(gx_files, "nullness_only", lambda exps: frozenset())  # the real column, read
            want = gx_files.validate_files(gx, "documents", files, ["a", "b"], exps)
        assert [(c.name, c.success, c.unexpected, c.elements) for c in got[0]] == \
            [(c.name, c.success, c.unexpected, c.elements) for c in want[0]]
        return [c.unexpected for c, e in zip(got[0], exps) if e["kwargs"].get("column") == "text"], columns

    unexpected, columns = check(table.slice(half))
    assert unexpected == [0] and columns and all("text" not in c for c in columns)
    text = table.column(i).to_pylist()
    text[-1] = None
    with_null = table.set_column(i, table.schema.field(i), pa.array(text, pa.string())).slice(half)
    unexpected, columns = check(with_null)
    assert unexpected == [1] and all("text" in c for c in columns)
    unexpected, columns = check(table.slice(half), statistics=False)  # no null count to go by
    assert unexpected == [0] and all("text" in c for c in columns)


def test_uniqueness_over_files_checked_before_judges_the_new_values_and_the_old_ones_equal_to_them(
        sample_build, tmp_path, monkeypatch):
    """When an earlier passing build found the values of some files distinct, Great Expectations is
    handed only the new files' values and the old values equal to one of them: the results equal
    a check of every file, and a new value that repeats an old one still fails, counted as a
    check of every file counts it."""
    import kirinuki.validate.gx_files as gx_files
    from kirinuki.validate.gx_engine import _GX
    from kirinuki.validate.suites import load_suite

    table = pq.read_table(sample_build / "data" / "paragraphs.parquet")
    third = table.num_rows // 3
    files = [tmp_path / f"{k}.parquet" for k in "abc"]
    for k, f in enumerate(files):
        pq.write_table(table.slice(k * third, third if k < 2 else None), f)
    exps = load_suite("paragraphs")["expectations"]
    unique = next(i for i, e in enumerate(exps) if e["type"] == "expect_column_values_to_be_unique")
    gx = _GX()
    checks, res, _ = gx_files.validate_files(gx, "paragraphs", files[:2], ["a", "b"], exps)
    before = {"files": {"data/a": "a", "data/b": "b"}, "checks": [c.__dict__ for c in checks], "gx": res}
    handed = []
    real = gx_files._run

    def counting(gx, name, df, exps, indices):
        if unique in indices:
            handed.append(len(df))
        return real(gx, name, df, exps, indices)

    def outcome(checks):
        return [(c.name, c.success, c.unexpected, c.elements) for c in checks]

    monkeypatch.setattr(gx_files, "_run", counting)
    grown, _, _ = gx_files.validate_files(gx, "paragraphs", files, ["a", "b", "c"], exps, None, before)
    assert sum(handed) == table.num_rows - 2 * third  # the new file's values only: none repeats an old one
    monkeypatch.setattr(gx_files, "_run", real)
    assert outcome(grown) == outcome(gx_files.validate_files(gx, "paragraphs", files, ["a", "b", "c"], exps)[0])

    repeated = pa.concat_tables([table.slice(2 * third), table.slice(5, 1)])  # a row of file a again
    pq.write_table(repeated, files[2])
    grown, _, _ = gx_files.validate_files(gx, "paragraphs", files, ["a", "b", "d"], exps, None, before)
    clean, _, _ = gx_files.validate_files(gx, "paragraphs", files, ["a", "b", "d"], exps)
    assert not grown[unique].success and grown[unique].unexpected == 2
    assert outcome(grown) == outcome(clean)


def test_a_small_first_build_runs_its_sql_checks_beside_great_expectations_with_the_same_results(
        sample_build, monkeypatch):
    """Below SQL_BESIDE_GX_BYTES of data a first build's SQL checks run in a thread of their own
    while Great Expectations runs (above it, after GX: the two at once need more memory); the
    report is the same either way."""
    import threading

    import kirinuki.validate.checks as checks

    where = []
    sql_checks = checks._sql_checks

    def recorded(*args, **kwargs):
        where.append(threading.current_thread() is threading.main_thread())
        return sql_checks(*args, **kwargs)

    monkeypatch.setattr(checks, "_sql_checks", recorded)
    reports = {}
    for limit in (0, 1 << 40):
        monkeypatch.setattr(checks, "SQL_BESIDE_GX_BYTES", limit)
        report = validate_build(sample_build, quarantine=False)
        reports[limit] = json.dumps([c.__dict__ for c in report.checks], sort_keys=True, default=str)
    assert checks.data_bytes(sample_build / "data") > 0
    assert where == [True, False]  # after GX in this thread, then beside it in another
    assert reports[0] == reports[1 << 40] and '"kind": "sql"' in reports[0]


# paragraphs_text_is_the_documents_slice in its plain form: every slice taken from the whole text
PLAIN_SLICE_CHECK = r'''SELECT p.paragraph_id AS key FROM paragraphs p JOIN documents d USING (doc_id) WHERE CASE
WHEN p.line_end = p.line_no THEN substr(d.text, p.char_start + 1, p.char_end - p.char_start) <> p.text ELSE
regexp_replace(regexp_replace(substr(d.text, p.char_start + 1, p.char_end - p.char_start), '\n[\s>＞]*', '', 'g'),
'\s+', '', 'g') <> regexp_replace(p.text, '\s+', '', 'g') END'''


def test_the_paragraph_slice_check_taken_from_each_line_agrees_with_its_plain_form(build_copy):
    """The slice check reads a paragraph from its own line when it lies on it (substr from the start
    of a long post is slow); on paragraphs whose text, offsets, line numbers or line span are wrong
    in every way it fails exactly the paragraphs the plain form (slices of the whole text) fails."""
    from kirinuki.validate.suites import load_suite

    data = build_copy / "data"
    paragraphs = pq.read_table(data / "paragraphs.parquet").to_pylist()
    docs = {d["doc_id"]: d["text"] for d in pq.read_table(data / "documents.parquet", columns=["doc_id", "text"]).to_pylist()}
    single = [i for i, p in enumerate(paragraphs) if p["line_end"] == p["line_no"] and len(p["text"]) > 3]
    assert len(single) > 14
    on_other_line = next(i for i in single[1:] if paragraphs[i]["line_no"] > 1)

    def shifted(i, by):
        return dict(char_start=paragraphs[i]["char_start"] + by, char_end=paragraphs[i]["char_end"] + by)

    changes = {
        single[0]: dict(text="どこにも無い段落"),  # not the slice
        single[1]: shifted(single[1], 1),  # one character late
        single[2]: dict(char_end=paragraphs[single[2]]["char_end"] - 1),  # one short
        single[3]: dict(line_no=paragraphs[single[3]]["line_no"] + 1, line_end=paragraphs[single[3]]["line_no"] + 1),
        single[4]: dict(line_no=-1, line_end=-1),  # (a list index from the end, in DuckDB)
        single[5]: dict(line_no=0, line_end=0),
        single[6]: dict(line_no=10**6, line_end=10**6),
        single[7]: dict(char_start=paragraphs[single[7]]["char_end"] + 2),  # ends before it starts
        single[8]: dict(char_end=paragraphs[single[8]]["char_end"] + 1),  # runs into the line break
        single[9]: dict(doc_id="nowhere"),
        single[10]: dict(char_start=0, char_end=len(paragraphs[single[10]]["text"])),  # the post's start
        on_other_line: dict(line_no=1, line_end=1),  # right offsets, wrong line: still the slice
        # read as hard-wrapped (line_end past line_no): compared without whitespace and line breaks
        single[11]: dict(line_end=paragraphs[single[11]]["line_no"] + 1),
        single[12]: dict(line_end=paragraphs[single[12]]["line_no"] + 1, text=paragraphs[single[12]]["text"] + "余分"),
        single[13]: dict(line_end=paragraphs[single[13]]["line_no"] + 1, char_end=paragraphs[single[13]]["char_end"] + 1),
    }
    for i, change in changes.items():
        paragraphs[i].update(change)
    schema = pa.schema([f.with_nullable(True) for f in spec("paragraphs").arrow_schema])
    pq.write_table(pa.Table.from_pylist(paragraphs, schema=schema), data / "paragraphs.parquet")

    fast = next(c["sql"] for c in load_suite("paragraphs")["sql_checks"] if c["name"] == "paragraphs_text_is_the_documents_slice")
    plain = {r["key"] for r in rows(build_copy, PLAIN_SLICE_CHECK)}
    assert {r["key"] for r in rows(build_copy, fast)} == plain
    expected = set()
    for i in changes:
        p = paragraphs[i]
        text = docs.get(p["doc_id"])
        if text is not None and p["line_end"] == p["line_no"] and text[p["char_start"]:p["char_end"]] != p["text"]:
            expected.add(p["paragraph_id"])
    assert expected <= plain and len(expected) >= 5
    assert paragraphs[single[12]]["paragraph_id"] in plain and paragraphs[single[11]]["paragraph_id"] not in plain
    assert paragraphs[on_other_line]["paragraph_id"] not in plain


def test_a_column_checked_only_for_nulls_reaches_great_expectations_as_a_stand_in_with_the_same_results(sample_build):
    """documents.text is read by its suite only to ask whether it is null: GX gets an empty string
    or a null in its place, not the posts' text, and its results are those of the real column,
    nulls (reported as null) and all."""
    from kirinuki.validate.gx_engine import _GX
    from kirinuki.validate.gx_files import _frame, nullness_only
    from kirinuki.validate.suites import load_suite

    exps = load_suite("documents")["expectations"]
    assert nullness_only(exps) == {"text"}
    table = pq.read_table(sample_build / "data" / "documents.parquet")
    text = table.column("text").to_pylist()
    text[0] = text[2] = None  # two posts with no text: what the expectation is there to find
    i = table.schema.get_field_index("text")
    table = table.set_column(i, table.schema.field(i), pa.array(text, pa.string()))
    stand_in = _frame(table, nullness_only(exps))
    whole = table.to_pandas()
    assert stand_in["text"].isna().tolist() == whole["text"].isna().tolist() and stand_in["text"].isna().sum() == 2
    assert set(stand_in["text"].dropna()) == {""}
    gx = _GX()
    got, want = gx.validate("documents", stand_in, exps), gx.validate("documents", whole, exps)
    assert [(c.name, c.success, c.unexpected) for c in got[0]] == [(c.name, c.success, c.unexpected) for c in want[0]]
    assert [c.unexpected for c, e in zip(got[0], exps) if e["kwargs"].get("column") == "text"] == [2]
    strip = lambda r: [{k: v for k, v in x.items() if k != "expectation_config"} for x in r["results"]]  # noqa: E731
    assert json.dumps(strip(got[1]), sort_keys=True, default=str) == json.dumps(strip(want[1]), sort_keys=True, default=str)


def test_a_sliced_table_s_null_checked_column_is_stood_in_as_it_is_read(sample_build, tmp_path, monkeypatch):
    """Sliced, the documents' text is stood in for batch by batch as it is read, before a slice is
    made contiguous (a copy of every post's text, 640 MB more at 10k posts): Great Expectations
    sees only empty strings and nulls, and its results are those of the real column."""
    import pandas as pd

    import kirinuki.validate.gx_files as gx_files
    from kirinuki.store.files import sha256_file
    from kirinuki.validate.gx_engine import _GX
    from kirinuki.validate.suites import load_suite

    table = pq.read_table(sample_build / "data" / "documents.parquet")
    text = table.column("text").to_pylist()
    text[1] = text[-1] = None
    i = table.schema.get_field_index("text")
    table = table.set_column(i, pa.field("text", pa.string()), pa.array(text, pa.string()))  # (nullable here)
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]  # two files, sliced a few rows at a time
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), files[0])
    pq.write_table(table.slice(half), files[1])
    monkeypatch.setattr(gx_files, "SLICE_BYTES", 1)  # a row a slice
    exps = load_suite("documents")["expectations"]
    shas = [sha256_file(f) for f in files]
    seen, joined = [], []
    run, join = gx_files._run, gx_files._joined
    monkeypatch.setattr(gx_files, "_joined", lambda batches: (joined.extend(
        v for b in batches for v in b.column(b.schema.get_field_index("text")).to_pylist()), join(batches))[1])
    monkeypatch.setattr(gx_files, "_run", lambda gx, name, df, *a: (seen.append(df["text"].tolist() if "text" in df else []),
                                                                    run(gx, name, df, *a))[1])
    gx = _GX()
    checks, results, _ = gx_files.validate_files(gx, "documents", files, shas, exps)
    values = [v for frame in seen for v in frame]
    assert len(seen) >= table.num_rows and len(values) == table.num_rows
    assert sum(1 for v in values if pd.isna(v)) == 2 and {v for v in values if not pd.isna(v)} == {""}
    assert joined and set(joined) == {"", None}  # what a slice is made of: no post's text
    monkeypatch.setattr(gx_files, "_run", run)
    monkeypatch.setattr(gx_files, "_joined", join)
    monkeypatch.setattr(gx_files, "nullness_only", lambda exps: frozenset())  # the real column
    real_checks, real_results, _ = gx_files.validate_files(gx, "documents", files, shas, exps)
    assert [(c.name, c.success, c.unexpected, c.elements) for c in checks] == \
        [(c.name, c.success, c.unexpected, c.elements) for c in real_checks]
    assert [c.unexpected for c, e in zip(checks, exps) if e["kwargs"].get("column") == "text"] == [2]
    strip = lambda r: [{k: v for k, v in x.items() if k != "expectation_config"} for x in r["results"]]  # noqa: E731
    assert json.dumps(strip(results), sort_keys=True, default=str) == json.dumps(strip(real_results), sort_keys=True, default=str)


def test_great_expectations_is_imported_without_loading_what_no_suite_uses(sample_build):
    """scipy.stats and altair stay unexecuted through a whole validation (GX imports them for
    expectations kirinuki has none of), and a deferred module still works once something reads it."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kirinuki.validate import validate_build\n"
        "from kirinuki.validate.gx_import import DEFERRED\n"
        f"report = validate_build(Path({str(sample_build)!r}), quarantine=False)\n"
        "assert report.gx_results, 'GX did not run'\n"
        "print(sorted(n for n in DEFERRED if type(sys.modules[n]).__name__ == '_LazyModule'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('scipy.stats.', 'altair.'))))\n"
        "import scipy.stats\n"
        "print(scipy.stats.norm.cdf(0.0))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lazy, loaded, cdf = out.stdout.splitlines()[-3:]
    assert lazy == "['altair', 'scipy.stats']"  # still waiting to be executed after validating
    assert loaded == "[]"  # none of their submodules was imported either
    assert float(cdf) == 0.5  # read: loaded for real, and it works
