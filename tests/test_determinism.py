"""The check behind `nbval-check-output` cells: equal text passes, a different number fails, a missing build fails."""

from __future__ import annotations

import nbformat
import pytest

from tests.determinism import ROOT, check_cell, text_of


def stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def result(text):
    return nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=1)


@pytest.fixture
def executed(tmp_path):
    """A fake book build holding an executed copy of chapters/xx/page.ipynb."""
    cell = nbformat.v4.new_code_cell("print(0.25)", metadata={"tags": ["nbval-check-output"]})
    nb = nbformat.v4.new_notebook(cells=[cell])
    copy = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell.source)])
    copy.cells[0].id = cell.id
    copy.cells[0].outputs = [stream("0.25\n")]
    target = tmp_path / "chapters" / "xx" / "page.ipynb"
    target.parent.mkdir(parents=True)
    nbformat.write(copy, target)
    return tmp_path, ROOT / "chapters" / "xx" / "page.ipynb", nb.cells[0]


def test_same_text_passes(executed):
    root, notebook, cell = executed
    check_cell(notebook, cell, [stream("0.25\n")], executed_root=root)


def test_a_different_number_fails(executed):
    root, notebook, cell = executed
    with pytest.raises(AssertionError, match="non-deterministic"):
        check_cell(notebook, cell, [stream("0.26\n")], executed_root=root)


def test_missing_book_build_fails(executed, tmp_path):
    _, notebook, cell = executed
    with pytest.raises(AssertionError, match="build the book first"):
        check_cell(notebook, cell, [stream("0.25\n")], executed_root=tmp_path / "nowhere")


def test_text_of_ignores_widget_views_and_keeps_order():
    widget = nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "VBox()"}
    )
    assert text_of([stream("a\n"), widget, result("2")]) == "a\n2"
