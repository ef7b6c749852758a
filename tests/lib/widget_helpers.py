"""Helpers shared by the widget tests: reading a PNG's size and counting a matplotlib axes' artists."""

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG image"
    return struct.unpack(">II", data[16:24])


def artist_counts(ax) -> tuple[int, int, int, int, int]:
    """How many lines, collections, patches, texts and images an axes holds: a redraw must not add any."""
    return len(ax.lines), len(ax.collections), len(ax.patches), len(ax.texts), len(ax.images)
