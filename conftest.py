"""Repository-wide pytest hooks.

Deterministic notebook cells. Notebooks are stored without outputs, so nbval has no stored reference to compare
a cell tagged ``nbval-check-output`` with (it silently skips the comparison for unrun cells). Instead, such a
cell's text output from the nbval run is compared with the same cell's output from the independent execution made
by the book build (``_build/jupyter_execute``): two separate kernels must print exactly the same thing, which is
what seeding every random generator promises. ``make test`` builds the book before it runs the notebooks.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.determinism import TAG, check_cell


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    cell = getattr(item, "cell", None)
    if cell is not None and TAG in cell.get("metadata", {}).get("tags", []):
        check_cell(pathlib.Path(str(item.fspath)), cell, item.test_outputs)
    return result
