"""Releases of the sample corpus: checked with the tools that data users run (sha256sum, frictionless,
mlcroissant, datasets, DuckDB) and by reading every record ourselves."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import LOOSE_POSTS_ONLY, SAMPLE

from kirinuki.release import ReleaseError, make_release, verify

BIN = Path(sys.executable).parent
DATE = "2026-01-15"
EDITED = "2024-06-12_nordria_grain.txt"
OLD_LINE = "隣国エスタリアとの関係改善が、ようやく具体的な形になってきたようです。"
NEW_LINE = "隣国エスタリアとの関係改善が、少しずつ形になってきたようです。"


def _corpus(dest: Path, edited: bool) -> Path:
    shutil.copytree(SAMPLE, dest, ignore=LOOSE_POSTS_ONLY)
    (dest / "unreadable_notes.txt").write_bytes(b"")  # a reject, so `rejects` has a row
    if edited:
        p = dest / EDITED
        text = p.read_text(encoding="utf-8")
        assert OLD_LINE in text
        p.write_text(text.replace(OLD_LINE, NEW_LINE), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    from kirinuki.flows.build import build

    root = tmp_path_factory.mktemp("release-builds")
    out = {}
    for name, edited in (("v1", False), ("v2", True)):
        out[name] = root / f"build-{name}"
        build([str(_corpus(root / f"corpus-{name}", edited))], str(out[name]))
    return out


@pytest.fixture(scope="module")
def releases(builds, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("releases")
    make_release(builds["v1"], "1.0.0", dest, "full", date=DATE)
    make_release(builds["v2"], "1.1.0", dest, "full", date=DATE)
    return dest


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_release_layout_checksums_and_history(releases):
    rel = releases / "kirinuki-1.0.0"
    expected = {"README.md", "LICENSE.md", "CHANGELOG.md", "changes.json", "croissant.json", "datapackage.json",
                "manifest.json", "SHA256SUMS", "data", "validation", "expectations", "validate_with_gx.py", "overview.html",
                "images"}
    assert {p.name for p in rel.iterdir()} == expected
    manifest = json.loads((rel / "manifest.json").read_text())
    assert set(manifest["tables"]) == {p.stem for p in (rel / "data").glob("*.parquet")}
    assert {p.name for p in (rel / "validation").iterdir()} == {"results.json", "report.html"}
    r = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=rel, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    listed = {line.split("  ", 1)[1] for line in (rel / "SHA256SUMS").read_text().splitlines()}
    on_disk = {p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == on_disk
    assert verify(rel) == []
    history = json.loads((releases / "versions.json").read_text())["releases"]
    assert [h["version"] for h in history] == ["1.0.0", "1.1.0"]
    latest = json.loads((releases / "latest.json").read_text())
    assert latest["version"] == "1.1.0" and latest["sha256sums"] == _sha256(releases / "kirinuki-1.1.0" / "SHA256SUMS")


def test_manifest_records_provenance_and_no_clock_time_in_data(releases, builds):
    rel = releases / "kirinuki-1.0.0"
    m = json.loads((rel / "manifest.json").read_text())
    summary = json.loads((builds["v1"] / "build.json").read_text())
    lines = sorted(f"{_sha256(p)}  {p.name}" for p in (builds["v1"].parent / "corpus-v1").glob("*.txt"))
    assert m["source"]["corpus_sha256"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert m["source"]["corpus_sha256"] == summary["corpus_sha256"]
    assert m["schema_version"] and m["kirinuki_version"] and m["build"]["dedup"]["shingle"] == 5
    for name, t in m["tables"].items():
        assert pq.ParquetFile(rel / t["path"]).metadata.num_rows == t["rows"]
        assert _sha256(rel / t["path"]) == t["sha256"]
        # the full profile publishes the validated build files byte for byte
        assert t["sha256"] == summary["files"][f"data/{name}.parquet"]
    assert m["release_date"] == DATE
    for p in (rel / "data").glob("*.parquet"):
        assert DATE.encode() not in p.read_bytes() and b"2026-" not in p.read_bytes()


def test_frictionless_validates_the_data_package(releases):
    rel = releases / "kirinuki-1.0.0"
    r = subprocess.run([str(BIN / "frictionless"), "validate", "--json", "datapackage.json"], cwd=rel,
                       capture_output=True, text=True)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["valid"], json.dumps(report)[:2000]
    # Frictionless does not check hashes of Parquet resources: check them here
    dp = json.loads((rel / "datapackage.json").read_text())
    assert len(dp["resources"]) == len(list((rel / "data").glob("*.parquet")))
    for res in dp["resources"]:
        assert "sha256:" + _sha256(rel / res["path"]) == res["hash"]
        assert [f["name"] for f in res["schema"]["fields"]] == pq.read_schema(rel / res["path"]).names


def test_croissant_validates_and_every_record_loads(releases):
    rel = releases / "kirinuki-1.0.0"
    r = subprocess.run([str(BIN / "mlcroissant"), "validate", "--jsonld", "croissant.json"], cwd=rel,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    import mlcroissant as mlc

    ds = mlc.Dataset(jsonld=str(rel / "croissant.json"))
    crois = json.loads((rel / "croissant.json").read_text())
    for fo in crois["distribution"]:
        assert _sha256(rel / fo["contentUrl"]) == fo["sha256"]
    assert {rs.name for rs in ds.metadata.record_sets} == {p.stem for p in (rel / "data").glob("*.parquet")}
    for rs in ds.metadata.record_sets:
        table = pq.read_table(rel / "data" / f"{rs.name}.parquet")
        records = list(ds.records(record_set=rs.uuid))
        assert len(records) == table.num_rows, rs.name
        key = table.column_names[0]
        got = [r[f"{rs.name}/{key}"] for r in records]
        got = [g.decode() if isinstance(g, bytes) else g for g in got]
        assert got == table.column(key).to_pylist(), rs.name


def test_datasets_loads_each_table_offline_with_the_expected_features(releases, tmp_path):
    rel = releases / "kirinuki-1.0.0"
    script = f"""
import json, os, sys
import datasets, pyarrow.parquet as pq
rel = {str(rel)!r}
card = open(os.path.join(rel, "README.md"), encoding="utf-8").read()
out = {{}}
for name in json.load(open(os.path.join(rel, "manifest.json")))["tables"]:
    path = os.path.join(rel, "data", name + ".parquet")
    if pq.ParquetFile(path).metadata.num_rows == 0:
        out[name] = "empty"
        continue
    ds = datasets.load_dataset(rel, name, split="train", cache_dir={str(tmp_path / 'cache')!r})
    want = datasets.Features.from_arrow_schema(pq.read_schema(path))
    first = pq.read_table(path).slice(0, 1).to_pylist()[0]
    out[name] = [ds.num_rows, ds.features == want, ds[0] == first]
print(json.dumps(out))
"""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    m = json.loads((rel / "manifest.json").read_text())
    for name, t in m["tables"].items():
        if t["rows"] == 0:
            assert got[name] == "empty"
        else:
            assert got[name] == [t["rows"], True, True], name
    assert got["rejects"] == [1, True, True]


def test_duckdb_queries_the_release_parquet_directly(releases):
    import duckdb

    rel = releases / "kirinuki-1.1.0"
    con = duckdb.connect()
    n = con.execute(f"""SELECT count(*) FROM read_parquet('{rel}/data/excerpts.parquet') e
                        JOIN read_parquet('{rel}/data/documents.parquet') d USING (doc_id)
                        JOIN read_parquet('{rel}/data/article_quotes.parquet') q USING (excerpt_id)
                        JOIN read_parquet('{rel}/data/articles.parquet') a USING (article_id)""").fetchone()[0]
    m = json.loads((rel / "manifest.json").read_text())
    assert n == m["tables"]["excerpts"]["rows"] > 0


def test_second_release_changelog_names_exactly_the_changed_file_and_paragraph(releases, builds):
    rel = releases / "kirinuki-1.1.0"
    changes = json.loads((rel / "changes.json").read_text())
    assert changes["previous_version"] == "1.0.0"
    assert changes["inputs"]["changed"] == [EDITED]
    assert changes["inputs"]["n_added"] == changes["inputs"]["n_removed"] == 0
    para = pq.read_table(builds["v2"] / "data" / "paragraphs.parquet").to_pylist()
    edited = [p["paragraph_id"] for p in para if p["text"] == NEW_LINE]
    assert len(edited) == 1
    changed = {name: c["keys"].get("changed", []) for name, c in changes["tables"].items()}
    doc_of_edit = edited[0].split("-")[0]  # its document changed too: documents.text holds the post's text
    assert changed == {name: (edited if name == "paragraphs" else [doc_of_edit] if name == "documents" else [])
                       for name in changes["tables"]}
    assert all(c["added"] == c["removed"] == 0 for c in changes["tables"].values())
    # rows after the edit moved (offsets), and only rows of the edited post did
    doc = edited[0].split("-")[0]
    for c in changes["tables"].values():
        assert all(k.startswith(doc) for k in c["keys"].get("moved", []))
    log = (rel / "CHANGELOG.md").read_text()
    assert f"`{EDITED}`" in log and f"paragraphs changed: `{edited[0]}`" in log
    assert log.index("## 1.1.0") < log.index("## 1.0.0")  # the history is kept, newest first
    card = (rel / "README.md").read_text()
    assert card.startswith("---\n") and "## 1.1.0" in card


def test_refusals_overwrite_bad_names_older_versions_and_unvalidated_builds(releases, builds, tmp_path):
    with pytest.raises(ReleaseError, match="already exists"):
        make_release(builds["v2"], "1.1.0", releases, "full", date=DATE)
    with pytest.raises(ReleaseError, match="not newer"):
        make_release(builds["v2"], "1.0.1", releases, "full", date=DATE)
    for bad in ("1.0", "v1.0.0", "01.0.0", "1.0.0/../x", "../1.0.0", "1.0.0 ", ""):
        with pytest.raises(ReleaseError, match="semantic version"):
            make_release(builds["v2"], bad, tmp_path / "r", date=DATE)
    for bad in ("../up", "a/b", "UPPER", "/abs"):
        with pytest.raises(ReleaseError, match="dataset name"):
            make_release(builds["v2"], "1.0.0", tmp_path / "r", dataset=bad, date=DATE)
    # a build whose validation failed, and one whose data changed after validation
    failed = tmp_path / "failed"
    shutil.copytree(builds["v1"], failed)
    res = json.loads((failed / "validation" / "results.json").read_text())
    res["success"] = False
    (failed / "validation" / "results.json").write_text(json.dumps(res))
    with pytest.raises(ReleaseError, match="did not pass validation"):
        make_release(failed, "1.0.0", tmp_path / "r", date=DATE)
    changed = tmp_path / "changed"
    shutil.copytree(builds["v1"], changed)
    with open(changed / "data" / "excerpts.parquet", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ReleaseError, match="excerpts.parquet is not the file that was validated"):
        make_release(changed, "1.0.0", tmp_path / "r", date=DATE)
    with pytest.raises(ReleaseError, match="not a finished kirinuki build"):
        make_release(tmp_path, "1.0.0", tmp_path / "r", date=DATE)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("kirinuki-*"))


def test_cli_release_errors_are_one_line(builds, tmp_path):
    r = subprocess.run([str(BIN / "kirinuki"), "release", "v1", "--from", str(builds["v1"]), "--to", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "semantic version" in r.stderr
    r = subprocess.run([str(BIN / "kirinuki"), "release", "1.0.0", "--from", str(builds["v1"]), "--to", str(tmp_path),
                        "--date", "2026-13-01"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a calendar date" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written: no card, manifest or latest.json with that date


def test_release_is_deterministic(builds, tmp_path):
    a = make_release(builds["v1"], "1.0.0", tmp_path / "a", "metadata", date=DATE)
    b = make_release(builds["v1"], "1.0.0", tmp_path / "b", "metadata", date=DATE)
    assert (a.path / "SHA256SUMS").read_bytes() == (b.path / "SHA256SUMS").read_bytes()


def test_metadata_profile_withholds_quoted_text_and_keeps_its_hashes(releases, builds, tmp_path):
    meta = make_release(builds["v1"], "1.0.0", tmp_path, "metadata", date=DATE).path
    full = releases / "kirinuki-1.0.0"
    ex_full = pq.read_table(full / "data" / "excerpts.parquet").to_pylist()
    quoted = {line for e in ex_full for line in e["body"].split("\n") if len(line) > 15}
    assert quoted
    # no quoted paragraph appears in any string value of any table of the metadata release
    for p in (meta / "data").glob("*.parquet"):
        t = pq.read_table(p)
        for col in t.column_names:
            for v in t.column(col).to_pylist():
                if isinstance(v, str):
                    assert not any(q in v for q in quoted), (p.name, col)
    ex_meta = pq.read_table(meta / "data" / "excerpts.parquet").to_pylist()
    for f, m in zip(ex_full, ex_meta):
        assert m["body"] is None and m["body_norm"] is None and m["headline"] == f["headline"]
        assert m["body_sha256"] == hashlib.sha256(f["body"].encode()).hexdigest()
        assert m["body_chars"] == len(f["body"]) and m["char_start"] == f["char_start"]
    pf = pq.read_table(full / "data" / "paragraphs.parquet").to_pylist()
    pm = pq.read_table(meta / "data" / "paragraphs.parquet").to_pylist()
    for f, m in zip(pf, pm):
        assert m["text"] == (None if f["excerpt_id"] else f["text"])  # commentary is kept
        assert m["text_chars"] == len(f["text"])
    card = (meta / "README.md").read_text()
    assert "text profile **metadata**" in card and "withheld" in card
    assert verify(meta) == []


def test_verify_names_every_tampered_file(releases, tmp_path):
    rel = tmp_path / "rel"
    shutil.copytree(releases / "kirinuki-1.0.0", rel)
    data = bytearray((rel / "data" / "documents.parquet").read_bytes())
    data[100] ^= 1
    (rel / "data" / "documents.parquet").write_bytes(bytes(data))
    (rel / "data" / "extra.parquet").write_bytes(b"x")
    (rel / "croissant.json").unlink()
    problems = verify(rel)
    assert any(p.startswith("data/documents.parquet: sha256 does not match") for p in problems)
    assert any(p.startswith("data/extra.parquet: not listed") for p in problems)
    assert any(p.startswith("croissant.json: listed in SHA256SUMS but missing") for p in problems)
    r = subprocess.run([str(BIN / "kirinuki"), "verify", str(rel)], capture_output=True, text=True)
    assert r.returncode == 1 and "documents.parquet" in r.stderr
    r = subprocess.run([str(BIN / "kirinuki"), "verify", str(releases / "kirinuki-1.1.0")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_verify_reports_a_schema_or_row_count_that_disagrees_with_the_manifest(releases, tmp_path):
    rel = tmp_path / "rel"
    shutil.copytree(releases / "kirinuki-1.0.0", rel)
    m = json.loads((rel / "manifest.json").read_text())
    m["tables"]["outlets"]["rows"] += 1
    m["tables"]["documents"]["columns"][0]["type"] = "int64"
    (rel / "manifest.json").write_text(json.dumps(m))
    problems = verify(rel)
    assert any(p.startswith("manifest.json: sha256 does not match") for p in problems)
    assert any(p.startswith("data/outlets.parquet:") and "rows" in p for p in problems)
    assert any(p.startswith("data/documents.parquet: schema differs") for p in problems)


def test_interrupted_release_leaves_no_partial_version_and_latest_unchanged(releases, builds, tmp_path):
    dest = tmp_path / "dest"
    shutil.copytree(releases, dest)
    before = (dest / "latest.json").read_bytes()
    rng = random.Random(7)
    cmd = [str(BIN / "kirinuki"), "release", "2.0.0", "--from", str(builds["v2"]), "--to", str(dest),
           "--text", "metadata", "--date", DATE]
    t0 = time.perf_counter()
    probe = [*cmd[:6], str(tmp_path / "probe"), *cmd[7:]]
    subprocess.run(probe, capture_output=True, check=True)  # how long a whole release takes here
    full_run = time.perf_counter() - t0
    for _ in range(4):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, full_run * 0.95))
        p.send_signal(signal.SIGKILL)
        p.wait()
        done = dest / "kirinuki-2.0.0"
        if done.exists():  # killed after the rename: complete and verified, but not yet latest
            assert verify(done) == []
            break
        assert (dest / "latest.json").read_bytes() == before
        assert verify(dest / "kirinuki-1.1.0") == [] and verify(dest / "kirinuki-1.0.0") == []
    r = subprocess.run(cmd, capture_output=True, text=True)
    if (dest / "kirinuki-2.0.0").exists() and r.returncode != 0:
        assert "already exists" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
    # a version killed after its rename was complete: the next run records it before anything else
    assert json.loads((dest / "latest.json").read_text())["version"] == "2.0.0"
    assert not list(dest.glob(".kirinuki-*.tmp-*"))
    assert verify(dest / "kirinuki-2.0.0") == []


@pytest.fixture
def s3_endpoint(monkeypatch):
    """moto's S3 server on 127.0.0.1 (a free port), with the AWS variables pointing at it."""
    import socket

    from moto.server import ThreadedMotoServer

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    try:
        yield endpoint
    finally:
        server.stop()


def test_publish_to_s3_stages_confirms_and_promotes(builds, tmp_path, s3_endpoint):
    import boto3

    from kirinuki.release.remote import publish_s3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="open-data")
    first = publish_s3(builds["v1"], "1.0.0", "s3://open-data/kirinuki", "full", date=DATE)
    second = publish_s3(builds["v2"], "1.1.0", "s3://open-data/kirinuki", "full", date=DATE)
    assert second.changes["previous_version"] == "1.0.0"
    assert second.changes["inputs"]["changed"] == [EDITED]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="open-data")["Contents"]]
    assert not [k for k in keys if "/.staging/" in k]
    # download the published release and check it like any other
    local = tmp_path / "download"
    for k in keys:
        if k.startswith("kirinuki/kirinuki-1.1.0/"):
            dest = local / k[len("kirinuki/kirinuki-1.1.0/"):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("open-data", k, str(dest))
    assert verify(local) == []
    latest = json.loads(s3.get_object(Bucket="open-data", Key="kirinuki/latest.json")["Body"].read())
    assert latest["version"] == "1.1.0"
    with pytest.raises(ReleaseError, match="already exists"):
        publish_s3(builds["v2"], "1.1.0", "s3://open-data/kirinuki", "full", date=DATE)
    assert first.path == "s3://open-data/kirinuki/kirinuki-1.0.0"


class _FlakyStore:
    """An s3fs file system whose first `failures` uploads fail with `error`: a dropped connection
    (to be retried) or an answer a retry cannot change (to be reported at once)."""

    def __init__(self, fs, error: OSError, failures: int):
        self.fs, self.error, self.failures, self.uploads = fs, error, failures, 0

    def put_file(self, *args, **kwargs):
        self.uploads += 1
        if self.uploads <= self.failures:
            raise self.error
        return self.fs.put_file(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fs, name)


def test_the_release_flow_retries_a_dropped_upload_and_not_a_refusal(builds, tmp_path, monkeypatch, s3_endpoint):
    import boto3

    import kirinuki.release.remote as remote
    from kirinuki.flows.release import release

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="flaky-data")
    real_fs = remote._fs
    stores = []

    def flaky(error, failures):
        def make(endpoint_url):
            stores.append(_FlakyStore(real_fs(endpoint_url), error, failures))
            return stores[-1]
        return make

    monkeypatch.setattr(remote, "_fs", flaky(ConnectionResetError("connection reset by peer"), 1))
    rel = release(str(builds["v1"]), "1.0.0", "s3://flaky-data/kirinuki", "full", date=DATE)
    assert rel.path == "s3://flaky-data/kirinuki/kirinuki-1.0.0"
    assert stores[-1].uploads > 1  # the first upload failed; the step ran again and completed
    with remote._fs(None).fs.open("flaky-data/kirinuki/latest.json") as f:
        assert json.load(f)["version"] == "1.0.0"
    monkeypatch.setattr(remote, "_fs", flaky(PermissionError("access denied"), 10))
    with pytest.raises(ReleaseError, match="access denied"):
        release(str(builds["v2"]), "1.1.0", "s3://flaky-data/kirinuki", "full", date=DATE)
    assert stores[-1].uploads == 1  # refused: not tried again


def _forge_sums(rel: Path) -> None:
    """What a forger does after changing files: recompute SHA256SUMS so `sha256sum -c` passes."""
    lines = sorted(f"{_sha256(p)}  {p.relative_to(rel).as_posix()}" for p in rel.rglob("*")
                   if p.is_file() and p.name != "SHA256SUMS")
    (rel / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_verify_catches_a_second_sums_line_and_a_forgery_its_history_contradicts(releases, tmp_path):
    dest = tmp_path / "releases"
    shutil.copytree(releases, dest)
    rel = dest / "kirinuki-1.0.0"
    # an edited card with its new hash appended: `sha256sum -c` fails the first line, so must verify
    (rel / "README.md").write_text("edited\n")
    with open(rel / "SHA256SUMS", "a") as f:
        f.write(f"{_sha256(rel / 'README.md')}  README.md\n")
    assert any("lists README.md again" in p for p in verify(rel))
    # a forged table with a recomputed manifest and SHA256SUMS: versions.json still has the truth
    pq.write_table(pq.read_table(rel / "data" / "documents.parquet").slice(0, 1), rel / "data" / "documents.parquet")
    m = json.loads((rel / "manifest.json").read_text())
    m["tables"]["documents"].update(rows=1, sha256=_sha256(rel / "data" / "documents.parquet"),
                                    bytes=(rel / "data" / "documents.parquet").stat().st_size)
    (rel / "manifest.json").write_text(json.dumps(m))
    _forge_sums(rel)
    assert any("differs from the one versions.json recorded" in p for p in verify(rel))
    assert verify(dest / "kirinuki-1.1.0") == []


def test_verify_flags_fifos_empty_folders_and_malformed_manifests_without_a_traceback(releases, tmp_path):
    rel = tmp_path / "rel"
    shutil.copytree(releases / "kirinuki-1.0.0", rel)
    os.mkfifo(rel / "data" / "pipe")
    (rel / "empty").mkdir()
    problems = verify(rel)
    assert any(p.startswith("data/pipe: is not a regular file") for p in problems)
    assert any(p.startswith("empty: an empty folder") for p in problems)
    (rel / "data" / "pipe").unlink()
    (rel / "empty").rmdir()
    good = json.loads((rel / "manifest.json").read_text())
    shapes = [[], {"tables": []}, {"tables": {"documents": []}}, {"tables": {"documents": {"path": 3}}},
              {"tables": {"documents": dict(good["tables"]["documents"], rows="many")}},
              {"tables": {"documents": dict(good["tables"]["documents"], columns=[1])}}, "null"]
    for shape in shapes:
        (rel / "manifest.json").write_text(json.dumps(shape))
        problems = verify(rel)
        assert any(p.startswith("manifest.json") for p in problems), shape
        r = subprocess.run([str(BIN / "kirinuki"), "verify", str(rel)], capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr and "manifest.json" in r.stderr, r.stderr


def test_verify_on_a_releases_folder_points_at_a_release_inside(releases):
    r = subprocess.run([str(BIN / "kirinuki"), "verify", str(releases)], capture_output=True, text=True)
    assert r.returncode == 2 and "is a releases folder" in r.stderr and "kirinuki-1.1.0" in r.stderr, r.stderr


def test_versions_and_dates_are_ascii_semver_and_calendar_dates():
    from kirinuki.release import ReleaseError, check_version
    from kirinuki.release.checks import release_date

    assert check_version("1.0.0-rc.10") > check_version("1.0.0-rc.9")  # numbers compare as numbers
    assert check_version("1.0.0") > check_version("1.0.0-rc.10") > check_version("1.0.0-beta")
    assert check_version("1.0.0-alpha") > check_version("1.0.0-1")  # numeric identifiers sort first
    for bad in ("1\u0660.0.0", "\uff11.0.0", "01.0.0", "1.0"):
        with pytest.raises(ReleaseError, match="not a semantic version"):
            check_version(bad)
    for bad in ("2026-13-45", "2026-W05-1", "2026-02-30", "\uff12\uff10\uff12\uff16-01-01", "20260101"):
        with pytest.raises(ReleaseError, match="not a calendar date"):
            release_date(bad)
    assert release_date("2024-02-29") == "2024-02-29"


def _front_matter(card: str) -> str:
    return card.split("---\n")[1]


def test_every_licence_statement_agrees_with_the_licence_model(releases, builds, tmp_path):
    from kirinuki.release import licences as lic

    meta = make_release(builds["v1"], "1.0.0", tmp_path, "metadata", date=DATE).path
    for profile, rel in (("full", releases / "kirinuki-1.0.0"), ("metadata", meta)):
        tables = sorted(p.stem for p in (rel / "data").glob("*.parquet"))
        dp = json.loads((rel / "datapackage.json").read_text())
        crois = json.loads((rel / "croissant.json").read_text())
        card = (rel / "README.md").read_text()
        licence_md = (rel / "LICENSE.md").read_text()
        # the package holds the authors' commentary in both profiles: nothing may call it CC BY as a whole
        assert lic.package_licence(tables, profile) is lic.MIXED
        assert dp["licenses"] == lic.datapackage_licences(lic.MIXED)
        assert all(x.get("name") != "CC-BY-4.0" for x in dp["licenses"])
        assert crois["license"] != lic.CC_BY["url"] and crois["license"]["url"].endswith("LICENSE.md")
        yaml = _front_matter(card)
        assert "license: other" in yaml and "cc-by" not in yaml.lower()
        for res in dp["resources"]:
            owned = lic.third_party(res["name"], profile)
            assert res["licenses"] == lic.datapackage_licences(lic.table_licence(res["name"], profile))
            if owned:  # a table with others' text never claims CC BY, and LICENSE.md names each such column
                assert all(x.get("name") != "CC-BY-4.0" for x in res["licenses"]), res["name"]
                row = next(line for line in licence_md.splitlines() if line.startswith(f"| `{res['name']}` |"))
                assert all(f"`{c}`" in row for c in owned), (res["name"], row)
        by_name = {r["name"]: r for r in dp["resources"]}
        assert by_name["outlets"]["licenses"][0]["name"] == "CC-BY-4.0"  # the register is kirinuki's own
        assert by_name["excerpts"]["licenses"][0].get("name") != "CC-BY-4.0"
    # the quoted bodies are published (and so listed as the publishers') only in the full profile
    assert "body" in lic.third_party("excerpts", "full") and "body" not in lic.third_party("excerpts", "metadata")
    assert lic.third_party("paragraphs", "metadata")["text"] == {"authors"}


ABOUT = """homepage = "https://example.org/minato-clippings"
description = "The fictional sample posts kirinuki ships in input/sample"
synthetic = true
[[creator]]
name = "Sample Maintainer"
url = "https://example.org/~maintainer"
[publisher]
name = "Example Archive"
[card]
uses = "Trying kirinuki out."
"""


def test_both_profiles_are_distinct_datasets_with_complete_metadata(builds, tmp_path):
    import mlcroissant as mlc

    about_file = tmp_path / "release.toml"
    about_file.write_text(ABOUT, encoding="utf-8")
    from kirinuki.release.about import read_about

    about = read_about(about_file)
    made = {p: make_release(builds["v1"], "1.0.0", tmp_path / p, p, date=DATE, about=about).path
            for p in ("metadata", "full")}
    ids = set()
    for profile, rel in made.items():
        crois = json.loads((rel / "croissant.json").read_text())
        dp = json.loads((rel / "datapackage.json").read_text())
        card = (rel / "README.md").read_text()
        key = crois["citeAs"].split("{", 1)[1].split(",", 1)[0]
        ids.add((crois["name"], dp["name"], dp["id"], key))
        assert crois["url"] == "https://example.org/minato-clippings" and crois["datePublished"] == DATE
        assert crois["creator"] == [{"@type": "sc:Person", "name": "Sample Maintainer", "url": "https://example.org/~maintainer"}]
        assert crois["publisher"]["name"] == "Example Archive"
        r = subprocess.run([str(BIN / "mlcroissant"), "validate", "--jsonld", "croissant.json"], cwd=rel,
                           capture_output=True, text=True)
        assert r.returncode == 0 and "recommended" not in r.stderr and "required" not in r.stderr, r.stderr[-1500:]
        refs = {f["@id"]: f["references"]["extract"]["column"] for rs in crois["recordSet"] for f in rs["field"]
                if "references" in f}
        assert refs["excerpts/outlet_id"] == "id" and refs["article_quotes/article_id"] == "article_id"
        ds = mlc.Dataset(jsonld=str(rel / "croissant.json"))  # references do not stop records from loading
        assert sum(1 for _ in ds.records(record_set="excerpts")) == pq.read_metadata(rel / "data/excerpts.parquet").num_rows
        assert dp["created"] == f"{DATE}T00:00:00Z" and dp["sources"] and dp["description"]
        assert all(res["hash"].startswith("sha256:") and "sha256" not in res for res in dp["resources"])
        fks = {(res["name"], fk["fields"][0]): fk["reference"] for res in dp["resources"]
               for fk in res["schema"].get("foreignKeys", [])}
        assert fks[("excerpts", "outlet_id")] == {"resource": "outlets", "fields": ["id"]}
        assert fks[("article_quotes", "article_id")] == {"resource": "articles", "fields": ["article_id"]}
        assert fks[("excerpts", "duplicate_of")] == {"resource": "", "fields": ["excerpt_id"]}
        for section in ("## Source data", "## Uses", "## Out-of-scope use", "## Personal and sensitive information",
                        "## Bias, risks and limitations", "## Identity"):
            assert section in card, section
        assert "**generated**" in card and "Trying kirinuki out." in card and "excerpts.author" in card
        assert "text-classification" not in card
    assert len(ids) == 2 and len({i[0] for i in ids}) == 2 and len({i[3] for i in ids}) == 2
    # a foreign key that points nowhere fails frictionless
    broken = tmp_path / "broken"
    shutil.copytree(made["full"], broken)
    table = pq.read_table(broken / "data" / "excerpts.parquet")
    i = table.column_names.index("outlet_id")
    values = table.column("outlet_id").to_pylist()
    values[0] = "no_such_outlet"
    import pyarrow as pa

    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(values, pa.string())), broken / "data" / "excerpts.parquet")
    for rel, valid in ((made["full"], True), (broken, False)):
        r = subprocess.run([str(BIN / "frictionless"), "validate", "--json", "datapackage.json"], cwd=rel,
                           capture_output=True, text=True)
        report = json.loads(r.stdout)
        assert report["valid"] is valid, json.dumps(report)[:1500]
    errors = [e for task in report["tasks"] for e in task["errors"]]
    assert errors and all(e["type"] == "foreign-key" for e in errors) and "no_such_outlet" in errors[0]["message"]


def test_release_toml_mistakes_are_one_line(builds, tmp_path):
    (tmp_path / "release.toml").write_text("[[creator]]\nurl = 'x'\n", encoding="utf-8")
    r = subprocess.run([str(BIN / "kirinuki"), "release", "1.0.0", "--from", str(builds["v1"]), "--to",
                        str(tmp_path / "out"), "--about", str(tmp_path / "release.toml")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "needs a name" in r.stderr, r.stderr


_QUOTED = ["北方港の再開発計画について、市は来月にも住民説明会を開くと発表した。",
           "計画では旧倉庫街を公園と住宅に作り替え、総事業費はおよそ二百億円を見込む。",
           "一方で漁業関係者からは、荷揚げ場が狭くなることへの懸念の声が上がっている。",
           "市の担当者は、漁業者との協議の場を年内に設けたいと話している。"]


def _post(title: str, paragraphs: list[str]) -> str:
    body = "\n".join(paragraphs)
    return f"{title}の記事を読んで。\n\n****北方港の再開発、住民説明会へ****\n{body}\n【2024年5月10日 北方新聞】\n****************\n"


def test_an_edited_quote_that_becomes_canonical_keeps_its_article_id_and_shows_as_changed(tmp_path):
    from kirinuki.flows.build import build

    ids, built = [], {}
    for v, second in (("v1", _QUOTED[:2]), ("v2", _QUOTED)):  # v2: the second post quotes it all, the longest
        corpus = tmp_path / f"corpus-{v}"
        corpus.mkdir()
        (corpus / "a.txt").write_text(_post("一つ目", _QUOTED[:3]), encoding="utf-8")
        (corpus / "b.txt").write_text(_post("二つ目", second), encoding="utf-8")
        built[v] = tmp_path / f"build-{v}"
        build([str(corpus)], str(built[v]))
        ids.append(pq.read_table(built[v] / "data" / "articles.parquet",
                                 columns=["article_id", "canonical_excerpt_id", "n_quotes"]).to_pylist())
    (before,), (after,) = ids
    assert before["n_quotes"] == after["n_quotes"] == 2
    assert before["canonical_excerpt_id"] != after["canonical_excerpt_id"]  # the edit moved the canonical quote
    assert before["article_id"] == after["article_id"]  # … and not the article
    make_release(built["v1"], "1.0.0", tmp_path / "rel", "full", date=DATE)
    second = make_release(built["v2"], "1.1.0", tmp_path / "rel", "full", date=DATE)
    arts = second.changes["tables"]["articles"]
    assert (arts["added"], arts["removed"], arts["changed"]) == (0, 0, 1)
    assert arts["keys"]["changed"] == [after["article_id"]]
    assert "canonical_excerpt_id" in arts["changed_columns"] and "text" in arts["changed_columns"]
    quotes = second.changes["tables"]["article_quotes"]
    assert "article_id" not in quotes.get("changed_columns", {}) and quotes["removed"] == quotes["added"] == 0
    assert second.changes["articles_continued"] == []
    log = (second.path / "CHANGELOG.md").read_text()
    assert f"articles changed: `{after['article_id']}`" in log and "`canonical_excerpt_id` (1)" in log
    # the quote that named the article goes: the article continues under its other quote's id, and says so
    corpus = tmp_path / "corpus-v3"
    shutil.copytree(tmp_path / "corpus-v2", corpus)
    docs = {r["doc_id"]: r["source_path"] for r in pq.read_table(
        built["v2"] / "data" / "documents.parquet", columns=["doc_id", "source_path"]).to_pylist()}
    namer = after["article_id"].removeprefix("art-")  # the quote whose id the article carries
    (corpus / docs[namer.rsplit("-e", 1)[0]]).unlink()
    build([str(corpus)], str(tmp_path / "build-v3"))
    third = make_release(tmp_path / "build-v3", "1.2.0", tmp_path / "rel", "full", date=DATE)
    (now,) = pq.read_table(tmp_path / "build-v3" / "data" / "articles.parquet", columns=["article_id"]).to_pylist()
    assert third.changes["articles_continued"] == [{"from": after["article_id"], "to": [now["article_id"]], "quotes": 1}]
    assert f"article `{after['article_id']}` continues as `{now['article_id']}`" in (third.path / "CHANGELOG.md").read_text()


def test_the_shipped_suites_pass_when_gx_itself_runs_them_on_each_profile(releases, builds, tmp_path):
    meta = make_release(builds["v1"], "1.0.0", tmp_path, "metadata", date=DATE).path
    for rel in (releases / "kirinuki-1.0.0", meta):
        shipped = sorted(p.stem for p in (rel / "expectations").glob("*.json"))
        assert shipped and set(shipped) <= {p.stem for p in (rel / "data").glob("*.parquet")}
        r = subprocess.run([sys.executable, "validate_with_gx.py"], cwd=rel, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr[-2000:]
        lines = dict(line.split(": ", 1) for line in r.stdout.splitlines())
        assert sorted(lines) == shipped
        for table, said in lines.items():
            n, _, total = said.split(" expectations")[0].partition(" of ")
            assert n == total and int(n) > 0, (table, said)
    # in the metadata profile the expectations on withheld text are left out, and the manifest says so
    manifest = json.loads((meta / "manifest.json").read_text())
    assert manifest["suites_left_out"] and all(v > 0 for v in manifest["suites_left_out"].values())
