"""Repository-wide pytest hooks.

Deterministic notebook cells. A cell tagged ``nbval-check-output`` must print exactly the text recorded for it in
tests/notebook_outputs.json (see tests/determinism.py). The book build's execution is compared with the record by
tests/site/test_executed_outputs.py; this hook makes ``pytest --nbval-lax chapters/...`` (``make test-notebooks``), a
second execution in a fresh kernel, compare with the same record.
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
