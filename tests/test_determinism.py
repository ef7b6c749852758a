"""The check behind `nbval-check-output` cells: the recorded text passes, a different number fails, gaps are named."""

from __future__ import annotations

import json

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

from tests import determinism
from tests.determinism import check_cell, differences, load_record, record_from_build, text_of


def stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def result(text):
    return nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=1)


@pytest.fixture
def build(tmp_path, monkeypatch):
    """A fake repository with chapters/xx/page.ipynb (one tagged, one untagged cell) and an execution cache of it."""
    monkeypatch.setattr(determinism, "ROOT", tmp_path)
    tagged = nbformat.v4.new_code_cell("print(0.25)", metadata={"tags": ["nbval-check-output"]})
    timing = nbformat.v4.new_code_cell("print(time.time())")
    path = tmp_path / "chapters" / "xx" / "page.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[tagged, timing]), path)
    executed = nbformat.read(path, as_version=4)
    executed.cells[0].outputs = [stream("0.25\n")]
    executed.cells[1].outputs = [stream("1765000000.1\n")]
    cache = tmp_path / "cache"
    get_cache(str(cache)).cache_notebook_bundle(CacheBundleIn(executed, str(path)), check_validity=False)
    return cache, path, tagged


def test_record_holds_only_tagged_cells(build):
    cache, notebook, cell = build
    assert record_from_build([notebook], cache_path=cache) == {"chapters/xx/page.ipynb": {cell.id: "0.25\n"}}


def test_same_text_passes_and_a_different_number_fails(build):
    cache, notebook, cell = build
    record = record_from_build([notebook], cache_path=cache)
    check_cell(notebook, cell, [stream("0.25\n")], record=record)
    diff = r"printed something else(.|\n)*-0.25(.|\n)*\+0.26(.|\n)*make record-outputs"
    with pytest.raises(AssertionError, match=diff):
        check_cell(notebook, cell, [stream("0.26\n")], record=record)


def test_unrecorded_and_stale_cells_are_named():
    problems = differences({"a": "1\n", "gone": "2\n"}, {"a": "1\n", "new": "3\n"}, "page.ipynb")
    assert len(problems) == 2
    assert "gone is in the record but no longer" in problems[0] and "new has no recorded output" in problems[1]
    with pytest.raises(AssertionError, match="has no recorded output"):
        check_cell(determinism.ROOT / "chapters" / "xx" / "page.ipynb", nbformat.v4.new_code_cell("1"), [], record={})


def test_missing_book_build_fails(build, tmp_path):
    _, notebook, _ = build
    with pytest.raises(AssertionError, match="no execution cache"):
        record_from_build([notebook], cache_path=tmp_path / "nowhere")


def test_a_notebook_changed_since_the_build_fails(build):
    cache, notebook, _ = build
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[0].source = "print(0.5)"
    nbformat.write(nb, notebook)
    with pytest.raises(AssertionError, match="not been executed with its current code"):
        record_from_build([notebook], cache_path=cache)


def test_the_committed_record_is_valid_json_of_text(tmp_path):
    record = load_record()
    assert record, "tests/notebook_outputs.json is missing or empty: make record-outputs"
    assert all(isinstance(text, str) for cells in record.values() for text in cells.values())
    assert load_record(tmp_path / "none.json") == {}
    (tmp_path / "r.json").write_text(json.dumps({"x": {"c": "1"}}))
    assert load_record(tmp_path / "r.json") == {"x": {"c": "1"}}


def test_text_of_ignores_widget_views_and_keeps_order():
    widget = nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "VBox()"}
    )
    assert text_of([stream("a\n"), widget, result("2")]) == "a\n2"
