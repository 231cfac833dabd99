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
