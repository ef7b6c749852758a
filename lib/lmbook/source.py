"""Show the source code of a helper inside a chapter.

Used from chapter 2 on: chapters import code from ``lmbook`` and display it where the reader should read it,
instead of defining it a second time.
"""

from __future__ import annotations

import inspect
import textwrap


class SourceBlock:
    """The source of a Python object, rendered as a highlighted code block in Jupyter and in the book."""

    def __init__(self, obj: object) -> None:
        try:
            self.code = textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n"
        except (TypeError, OSError) as err:
            raise TypeError(f"show() needs a function, class or module defined in Python source, got {obj!r}") from err
        self.name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))

    def _repr_markdown_(self) -> str:
        # Four backticks, so that source which itself contains a triple-backtick docstring still renders.
        return f"````python\n{self.code}````\n"

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"<source of {self.name}, {self.code.count(chr(10))} lines>"


def show(obj: object) -> SourceBlock:
    """Return the source of ``obj`` for display: ``lmbook.show(lmbook.mlp.dense_forward)`` as a cell's last line."""
    return SourceBlock(obj)
