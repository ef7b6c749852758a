"""Shape checks that fail with a message a learner can act on.

Introduced in chapter 2, Neurons, forward propagation and backpropagation, and used by every later chapter:
most bugs in a neural network first show up as an array with the wrong shape, and numpy's broadcasting often
hides them (a ``(B, 1)`` column minus a ``(B,)`` row silently becomes a ``(B, B)`` matrix). Checking shapes at
the boundary of each function turns such a silent error into a loud, readable one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

Dim = int | str | None


class ShapeError(ValueError):
    """An array does not have the shape a function expects."""


def _format(shape: Sequence[Dim]) -> str:
    """Write a shape the way a reader writes it: ``(B, 2)``, ``(4,)``, ``(B, *)`` for "any size"."""
    parts = ["*" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _tracing() -> bool:
    """True while torch traces code into a graph (``torch.export``, ``torch.compile``, ``torch.onnx.export``).

    Sizes are then symbols that stand for every size the graph will accept, not numbers, so a check of them
    belongs to the eager run (it has already run on the example inputs) and not to the graph.
    """
    torch = sys.modules.get("torch")  # never import torch here: numpy-only chapters use these checks too
    return torch is not None and (torch.compiler.is_compiling() or torch.compiler.is_exporting())


def check_choice(value, options, kind: str) -> None:
    """Raise a ValueError naming the valid options unless ``value`` is one of ``options`` (a mapping's keys, or
    a sequence of names), e.g. ``unknown surface 'bowl'; choose one of 'rosenbrock', 'saddle'``.

    Args:
        value: the name given. options: the valid names. kind: what a name names (``"surface"``).
    """
    try:
        known = value in options
    except TypeError:  # an unhashable value (a list, a dict) is no valid name either
        known = False
    if not known:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(map(repr, options))}")


def check_shape(x, expected: Sequence[Dim], name: str = "x", dims: dict[str, int] | None = None):
    """Check that ``x`` has shape ``expected`` and return ``x`` unchanged, so a check can wrap an expression.

    Args:
        x: a numpy array or torch tensor (anything with a ``.shape``).
        expected: one entry per axis. An ``int`` must match exactly; ``None`` matches any size; a ``str`` such
            as ``"B"`` is a symbol: every axis with the same symbol must have the same size.
        name: the name of ``x`` in the error message, e.g. ``"X"``.
        dims: optional symbol sizes known from elsewhere, e.g. ``{"C_in": W.shape[0]}``. Symbols that this call
            binds for the first time are added to it, so one dict can carry sizes across several checks.

    Raises:
        ShapeError: wrong number of axes or a wrong size; the message names ``x``, the expected shape in
            symbols, the sizes the symbols stood for, and the actual shape.

    Example:
        >>> import numpy as np
        >>> W = np.zeros((2, 3))
        >>> sizes = {}
        >>> _ = check_shape(W, ("C_in", "C_out"), "W", sizes)
        >>> check_shape(np.zeros((4, 3)), ("B", "C_in"), "X", sizes)
        Traceback (most recent call last):
        ...
        lmbook.testing.ShapeError: X: expected shape (B, C_in), got (4, 3) [C_in=2]
    """
    if not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected an array or tensor with a .shape, got {type(x).__name__}")
    if _tracing():
        return x  # symbolic sizes; reading them as numbers would fix the graph to the example's shape
    actual = tuple(int(d) for d in x.shape)
    expected = tuple(expected)
    # Work on a copy so that a failed check leaves the caller's ``dims`` untouched.
    bound_before = {} if dims is None else dict(dims)
    known = dict(bound_before)

    def fail() -> ShapeError:
        symbols = [d for d in expected if isinstance(d, str)]
        context = ", ".join(f"{s}={known[s]}" for s in dict.fromkeys(symbols) if s in bound_before)
        suffix = f" [{context}]" if context else ""
        return ShapeError(f"{name}: expected shape {_format(expected)}, got {_format(actual)}{suffix}")

    if len(actual) != len(expected):
        raise fail()
    for want, got in zip(expected, actual, strict=True):
        if want is None:
            continue
        if isinstance(want, str):
            # The first axis with a symbol fixes its size; later axes with that symbol must agree.
            if known.setdefault(want, got) != got:
                raise fail()
        elif isinstance(want, int):
            if want != got:
                raise fail()
        else:
            raise TypeError(f"shape entries must be int, str or None, got {want!r}")
    if dims is not None:
        dims.update(known)
    return x
