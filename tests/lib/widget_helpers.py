"""Helpers shared by the widget tests: reading a PNG's size, counting a matplotlib axes' artists, and executing
widget cells as the book build does."""

import os
import pathlib
import struct

import nbclient
import nbformat

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIB = pathlib.Path(__file__).resolve().parents[2] / "lib"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG image"
    return struct.unpack(">II", data[16:24])


def artist_counts(ax) -> tuple[int, int, int, int, int]:
    """How many lines, collections, patches, texts and images an axes holds: a redraw must not add any."""
    return len(ax.lines), len(ax.collections), len(ax.patches), len(ax.texts), len(ax.images)


def execute_with_widget_state(monkeypatch, *sources: str):
    """Run code cells in a fresh kernel with ``store_widget_state`` (as the book build does), importing this
    checkout's ``lmbook``.

    Returns:
        ``(notebook, state, images)``: the executed notebook, its stored widget state ``{model_id: model}`` and
        the stored ``ImageModel`` models, whose PNGs the HTML book shows without a kernel.
    """
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(LIB), os.environ.get("PYTHONPATH")])))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbclient.NotebookClient(nb, kernel_name="python3", store_widget_state=True, timeout=120).execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return nb, state, [m for m in state.values() if m["model_name"] == "ImageModel"]
