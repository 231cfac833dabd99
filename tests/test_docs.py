import re

from conftest import ROOT
from kirinuki.docs import pages, render

DOCS = ROOT / "docs"
README = ROOT / "README.md"


def test_generated_reference_pages_are_current():
    for path, text in pages(DOCS).items():
        assert render(text) == text, f"{path.name} is stale: run `python -m kirinuki.docs`"


def test_table_reference_documents_every_column():
    from kirinuki.schema import tables

    text = (DOCS / "tables.md").read_text(encoding="utf-8")
    for spec in tables().values():
        for col in spec.columns:
            assert f"| `{col.name}` |" in text


def test_every_test_named_in_guarantees_exists():
    section = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    defined = set()
    for f in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", f.read_text(encoding="utf-8"), re.M))
    assert len(named) >= 15 and named <= defined, named - defined


def test_readme_is_short_links_every_page_and_holds_both_commands_verbatim():
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(line for line in ci.splitlines() if "pytest" in line)
    assert test_command in readme, "the README must show .ci/run's test command verbatim"
    assert "pip install -e . &&" in readme, "the README's first command installs the light set"
