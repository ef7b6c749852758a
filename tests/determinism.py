"""Determinism of notebook cells tagged ``nbval-check-output`` (see the repository's conftest.py)."""

from __future__ import annotations

import pathlib

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "jupyter_execute"
TAG = "nbval-check-output"


def text_of(outputs) -> str:
    """The text a reader sees: streams and text/plain results, in order (images and widgets are not compared)."""
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" not in data:
                parts.append(data.get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


def reference_outputs(notebook: pathlib.Path, cell, executed_root: pathlib.Path = EXECUTED) -> list:
    executed = executed_root / notebook.relative_to(ROOT)
    assert executed.exists(), (
        f"{TAG}: no executed copy of {notebook.relative_to(ROOT)} in {executed_root}; build the book "
        "first (make book), whose execution is the reference"
    )
    nb = nbformat.read(executed, as_version=4)
    for ref in nb.cells:
        if ref.get("id") == cell.get("id") or (ref.cell_type == "code" and ref.source == cell.source):
            return ref.get("outputs", [])
    raise AssertionError(f"{TAG}: cell not found in the book's executed copy (is the build stale? run make book)")


def check_cell(notebook: pathlib.Path, cell, outputs, executed_root: pathlib.Path = EXECUTED) -> None:
    """Raise AssertionError unless ``outputs`` print the same text as the book build's run of ``cell``."""
    got = text_of(outputs or [])
    expected = text_of(reference_outputs(notebook, cell, executed_root))
    assert got == expected, f"non-deterministic cell: this run printed\n{got}\nbut the book build printed\n{expected}"
