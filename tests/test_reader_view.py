"""What the reader sees: the hidden Colab set-up cell, a cell's printed lines merged into one block, glued numbers."""

from __future__ import annotations

import pathlib

import nbformat
import numpy as np

from book_assets import lmbook_sphinx
from tools import setup_cell

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _notebook(tmp_path, tags):
    path = tmp_path / "chapter.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup_cell.expected_for(path).rstrip("\n"), metadata={"tags": tags})]
    nbformat.write(nb, path)
    return path


def test_setup_cell_is_removed_from_the_html():
    assert setup_cell.TAGS == ["setup", "remove-cell"]


def test_check_flags_a_setup_cell_without_the_remove_cell_tag(tmp_path):
    assert setup_cell.stale(_notebook(tmp_path, ["setup"]))
    assert not setup_cell.stale(_notebook(tmp_path, ["setup", "remove-cell"]))


def test_write_adds_the_tags_to_an_existing_setup_cell(tmp_path):
    path = _notebook(tmp_path, ["setup"])
    setup_cell.write(path)
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) == 1 and nb.cells[0].metadata["tags"] == ["setup", "remove-cell"]


def test_merged_streams_leave_the_notebook_outputs_unchanged():
    # print, a warning on stderr, print again: the page shows one stdout block, the notebook keeps three outputs.
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="alpha\n"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n"),
        nbformat.v4.new_output("stream", name="stdout", text="beta\n"),
    ]
    before = [dict(o) for o in outputs]
    merged = lmbook_sphinx.coalesce_streams_copy(outputs)
    assert [(o["name"], o["text"]) for o in merged] == [
        ("stdout", "alpha\nbeta\n"),
        ("stderr", "UserWarning: careful\n"),
    ]
    assert [dict(o) for o in outputs] == before  # myst-nb's own merge would leave "alpha\nbeta\n" in outputs[0]


def test_glued_numpy_numbers_are_formatted_as_numbers():
    # numpy 2 writes a scalar's text form as "np.float64(0.98)"; myst-nb's own formatter raised on ":.2f".
    assert lmbook_sphinx.format_plain_text(repr(np.float64(0.98765)), ".2f") == "0.99"
    assert lmbook_sphinx.format_plain_text(repr(np.float32(0.25)), ".0%") == "25%"
    assert lmbook_sphinx.format_plain_text(repr(np.int64(225034)), ",") == "225,034"
    assert lmbook_sphinx.format_plain_text(repr(np.float64(0.5)), "") == "0.5"  # not "np.float64(0.5)" in the prose
    assert lmbook_sphinx.format_plain_text(repr(np.True_), "") == "True"
    assert lmbook_sphinx.format_plain_text("'conv2'", "") == "conv2"  # everything else as myst-nb formats it
    assert lmbook_sphinx.format_plain_text("1234.5", ",.1f") == "1,234.5"
