"""The package as a user installs it: a wheel with one top-level package that works outside the
checkout, and Prefect entrypoints in flows/ that load and import from kirinuki."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SEED


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (found,) = out.glob("kirinuki-*.whl")
    return found


def test_the_wheel_holds_kirinuki_only_with_its_data_and_flows(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"kirinuki"}
    for table in ("documents", "excerpts", "articles"):
        assert f"kirinuki/schemas/{table}.toml" in names
        assert f"kirinuki/expectations/{table}.json" in names
    assert "kirinuki/reference/outlets.tsv" in names
    assert "kirinuki/flows/build.py" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "kirinuki = kirinuki.cli:main" in entry


def test_an_installed_wheel_builds_outside_the_checkout_exactly_as_the_checkout_does(wheel, seed_build, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    # the dependencies come from this environment's site-packages as a plain path entry: its .pth
    # files (the editable install of the checkout among them) are not run, so the checkout stays out
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import kirinuki, importlib.util; print(kirinuki.__file__); "
                            "print(importlib.util.find_spec('flows'))"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    assert where[0].startswith(site), where  # the installed copy, not the checkout
    assert where[1] == "None", "the wheel must not install a top-level `flows` module"
    out = tmp_path / "out"
    r = subprocess.run([str(venv / "bin" / "kirinuki"), "build", str(SEED.parent), "--out", str(out), "--quiet"],
                       cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    mine = sorted(p.name for p in (out / "data").glob("*.parquet"))
    assert mine == sorted(p.name for p in (seed_build / "data").glob("*.parquet")) and "documents.parquet" in mine
    for name in mine:
        assert (out / "data" / name).read_bytes() == (seed_build / "data" / name).read_bytes(), name


def test_every_deployment_in_prefect_yaml_loads_a_flow_from_flows():
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    assert {d["entrypoint"] for d in deployments} >= {"flows/build.py:build", "flows/release.py:release",
                                                     "flows/validate.py:validate"}
    cwd = os.getcwd()
    os.chdir(ROOT)  # entrypoints are relative to the project folder, as `prefect deploy` reads them
    try:
        for d in deployments:
            fl = load_flow_from_entrypoint(d["entrypoint"])
            assert fl.name.startswith("kirinuki-"), d
            assert set(d["parameters"]) <= set(fl.parameters.properties), d
    finally:
        os.chdir(cwd)
    for f in (ROOT / "flows").glob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "from ." not in text, f"{f.name}: flows import kirinuki by absolute name"
