from flows.docs import README, render


def test_readme_generated_sections_are_current():
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README is stale: run `python -m flows.docs`"


def test_readme_documents_every_column():
    from flows.schema import tables

    text = README.read_text(encoding="utf-8")
    for spec in tables().values():
        for col in spec.columns:
            assert f"| `{col.name}` |" in text


def test_every_test_named_in_guarantees_exists():
    import re
    from pathlib import Path

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Guarantees"):text.index("## Table reference")]
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    defined = set()
    for f in Path(__file__).parent.glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", f.read_text(encoding="utf-8"), re.M))
    assert len(named) >= 15 and named <= defined, named - defined
