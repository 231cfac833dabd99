"""Test setup: Prefect state in a throw-away home, set before anything imports prefect."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="kirinuki-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = os.path.join(_PREFECT_HOME, "results")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILES_PATH", None)

from kirinuki.flows.env import configure  # noqa: E402

configure()  # kirinuki's quiet Prefect settings, before any test imports prefect

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed" / "000_b7666d67213713ef.txt"
SAMPLE = ROOT / "input" / "sample"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def seed_text() -> str:
    if not SEED.exists():
        pytest.fail(f"the seed post is missing at {SEED} (shared/ must sit beside the repo)")
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory) -> Path:
    from kirinuki.flows.build import build

    out = tmp_path_factory.mktemp("seed") / "build"
    build([str(SEED.parent)], str(out))
    return out


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory) -> Path:
    from kirinuki.flows.build import build

    out = tmp_path_factory.mktemp("sample") / "build"
    build([str(SAMPLE)], str(out))
    return out


def rows(build_dir: Path, sql: str) -> list[dict]:
    from kirinuki.store.query import open_build, run_query

    rel = run_query(open_build(build_dir), sql)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]
