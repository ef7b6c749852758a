"""Every tagged cell of the book build printed exactly its recorded text (see tests/determinism.py)."""

from __future__ import annotations

import pytest

from tests.determinism import HOW_TO_RECORD, ROOT, differences, load_record, record_from_build
from tests.notebook_rules import chapter_notebooks

RECORD = load_record()


@pytest.mark.parametrize("notebook", chapter_notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_tagged_cells_print_what_is_recorded(notebook):
    name = notebook.relative_to(ROOT).as_posix()
    built = record_from_build([notebook]).get(name, {})
    problems = differences(RECORD.get(name, {}), built, name)
    assert not problems, "\n\n".join(problems) + f"\n\n{HOW_TO_RECORD}"


def test_the_record_names_no_missing_notebook():
    names = {p.relative_to(ROOT).as_posix() for p in chapter_notebooks()}
    assert set(RECORD) <= names, f"recorded notebooks that no longer exist: {sorted(set(RECORD) - names)}"
