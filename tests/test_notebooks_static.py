"""Rules for committed notebooks: stored without outputs, no redefinition of lmbook's names, valid set-up."""

from __future__ import annotations

import nbformat
import pytest

from tests.notebook_rules import (
    ROOT,
    all_notebooks,
    chapter_notebooks,
    defined_names,
    lmbook_exports,
    read,
    redefinitions,
    shared_definitions,
    stored_outputs,
)

NOTEBOOKS = all_notebooks()
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def test_there_are_chapter_notebooks():
    assert len(chapter_notebooks()) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_valid_and_stripped(path):
    nb = read(path)
    nbformat.validate(nb)
    assert stored_outputs(nb) == [], f"{path.name}: code cells with stored outputs: {stored_outputs(nb)}"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=[str(p.relative_to(ROOT)) for p in chapter_notebooks()])
def test_chapter_notebook_does_not_redefine_lmbook_names(path):
    problems = redefinitions(read(path), lmbook_exports())
    assert problems == [], f"{path.name}: import these from lmbook instead:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", chapter_notebooks(), ids=[str(p.relative_to(ROOT)) for p in chapter_notebooks()])
def test_chapter_notebook_has_one_title_and_a_python_kernel(path):
    nb = read(path)
    titles = [c for c in nb.cells if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")]
    assert len(titles) == 1, f"{path.name}: expected one '# ' title cell, found {len(titles)}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=[str(p.relative_to(ROOT)) for p in chapter_notebooks()])
def test_figure_cells_have_caption_and_alt_text(path):
    for i, cell in enumerate(read(path).cells):
        meta = cell.get("metadata", {}).get("mystnb", {})
        if "figure" in meta:
            assert meta["figure"].get("caption"), f"{path.name} cell {i}: figure without caption"
            assert meta.get("image", {}).get("alt"), f"{path.name} cell {i}: figure without alt text"


def test_no_two_chapter_notebooks_define_the_same_function():
    shared = shared_definitions({str(p.relative_to(ROOT)): read(p) for p in chapter_notebooks()})
    listing = "\n".join(f"{fn}: {', '.join(where)}" for fn, where in shared.items())
    assert shared == {}, f"functions defined in several notebooks belong in lmbook (write them once there):\n{listing}"


def test_shared_definitions_finds_a_function_copied_into_two_notebooks():
    a, b, c = (nbformat.v4.new_notebook() for _ in range(3))
    a.cells = [nbformat.v4.new_code_cell("def median_seconds(fn):\n    return 1.0")]
    b.cells = [nbformat.v4.new_code_cell("import time\nif True:\n    def median_seconds(fn, repeats=3):\n        pass")]
    c.cells = [nbformat.v4.new_code_cell("class Net:\n    def forward(self):\n        pass")]
    b.cells.append(nbformat.v4.new_code_cell("class Block:\n    def forward(self):\n        pass"))
    assert shared_definitions({"a": a, "b": b, "c": c}) == {"median_seconds": ["a", "b"]}


# The checker itself must be able to fail.
def test_redefinition_checker_catches_def_assignment_and_class():
    exports = {"sigmoid": "lmbook.activations", "MLP": "lmbook.mlp", "dense_forward": "lmbook.mlp"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\ndef sigmoid(z):\n    return z"),
        nbformat.v4.new_code_cell("class MLP:\n    pass"),
        nbformat.v4.new_code_cell("dense_forward = lambda X, W, b: X @ W + b\nsafe = 1"),
        nbformat.v4.new_code_cell("from lmbook.mlp import MLP\nmodel = MLP((2, 3, 1))"),
    ]
    problems = redefinitions(nb, exports)
    assert len(problems) == 3
    assert "sigmoid" in problems[0] and "MLP" in problems[1] and "dense_forward" in problems[2]


def test_defined_names_survives_a_magic_that_is_a_whole_block():
    source = 'import sys\nif "google.colab" in sys.modules:\n    %pip install lmbook\nx = 1'
    assert defined_names(source) == {"x"}


def test_defined_names_sees_nested_and_tuple_targets():
    assert defined_names("for i, (a, b) in enumerate(x):\n    def inner():\n        pass") >= {"i", "a", "b", "inner"}


def test_lmbook_exports_lists_functions_classes_and_constants():
    exports = lmbook_exports()
    assert exports.get("show") == "lmbook.source"
    assert "np" not in exports and "annotations" not in exports


def test_stripped_check_flags_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1")
    cell.execution_count = 1
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    assert stored_outputs(nb) == [1]


def test_repository_root_layout():
    for name in [
        "_config.yml",
        "_toc.yml",
        "intro.md",
        "Makefile",
        "README.md",
        "requirements.txt",
        "package.json",
        "package-lock.json",
        "pyproject.toml",
        ".ci/run",
        "binder/requirements.txt",
    ]:
        assert (ROOT / name).exists(), f"missing {name}"
