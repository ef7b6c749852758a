"""Comparing a learner's values with the expected ones, with hints for the usual mistakes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lmbook.grading.failures import CheckFailed, _with_case
from lmbook.grading.values import (
    _PREVIEW_SIZE,
    _fmt,
    _index_str,
    _is_tensor,
    _preview,
    assert_dtype,
    assert_finite,
    assert_shape,
    to_numpy,
)


def _constant_factor(actual: np.ndarray, expected: np.ndarray) -> float | None:
    """The constant ``c`` (other than 1) with ``actual`` almost exactly ``c * expected``, or None."""
    e = expected.astype(np.float64).ravel()
    a = actual.astype(np.float64).ravel()
    norm = float(e @ e)
    if norm == 0.0:
        return None
    c = float(a @ e) / norm
    if not np.isfinite(c) or abs(c - 1.0) < 1e-6 or abs(c) < 1e-12:
        return None
    if a.size == 1 and abs(c + 1.0) > 1e-6:  # one number is a multiple of any other: only a sign flip tells
        return None
    if np.max(np.abs(a - c * e)) <= 1e-6 * max(1e-12, np.max(np.abs(a))):
        return c
    return None


def _factor_hint(c: float) -> str:
    if abs(c + 1.0) < 1e-6:
        return (
            "Every value has the wrong sign. Check the order of a subtraction, e.g. prediction minus "
            "target, and whether a step goes down the gradient (-=) or up (+=)."
        )
    text = f"Every value is {_fmt(c)} times the expected one."
    for k in (c, 1.0 / c):
        if k > 1.5 and abs(k - round(k)) < 1e-6:
            text += (
                f" A factor of {round(k)} often means a sum where a mean belongs (or the other way round) "
                f"over an axis of size {round(k)}."
            )
            break
    return text


def assert_close(
    actual,
    expected,
    *,
    name: str = "result",
    case: str | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dtype: str | Any | None = "floating",
    where: Mapping[str, Any] | None = None,
    mistakes: Mapping[str, Any] | None = None,
) -> None:
    """Compare a learner's array with the expected one, elementwise within ``atol + rtol * |expected|``.

    Checks, in this order, each with its own message: not ``None``; numeric; the shape; the dtype; no NaN or
    infinity (unless ``expected`` has them in the same places); the values. A value mismatch reports the
    largest error and its index, the actual and expected values there, how many elements are off, a preview
    of both arrays when they are small, and a hint when the error has a recognisable pattern (a constant
    factor such as -1 or the batch size, a transpose).

    Args:
        actual: the learner's result: numpy array, torch tensor, number or nested list.
        expected: the reference result, same kind.
        name: what the result is, e.g. ``"dW"``.
        case: the test case, e.g. ``"a batch of 4 examples, 3 inputs, 2 outputs"``.
        rtol, atol: relative and absolute tolerance, as in ``numpy.isclose``.
        dtype: required dtype of ``actual`` (see :func:`assert_dtype`); ``None`` skips the check.
        where: inputs with the same shape as ``expected`` (e.g. ``{"z": z}`` for an elementwise function);
            their values at the worst index are shown, which often explains the mistake (``z = 0``).
        mistakes: known wrong answers, explanation -> the value that mistake produces. When ``actual``
            matches one, its explanation becomes the hint: the most useful message there is.

    Raises:
        CheckFailed: with a message as described above.
    """
    got = to_numpy(actual, name, case)
    want = to_numpy(expected, "the expected value")
    assert_shape(got, want.shape, name, case)
    if dtype is not None:
        assert_dtype(actual if _is_tensor(actual) else got, dtype, name, case)
    if got.dtype.kind == "b":
        got = got.astype(np.float64)
    want_finite = np.isfinite(want) if want.dtype.kind == "f" else np.ones(want.shape, bool)
    if got.dtype.kind == "f":
        # NaN or inf where the expected value is finite gets its own message: it is a different bug.
        assert_finite(np.where(want_finite, got, 0.0), name, case)
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(g - w)
        both_same_nonfinite = ~want_finite & ((g == w) | (np.isnan(g) & np.isnan(w)))
        err = np.where(both_same_nonfinite, 0.0, err)
        off = (err > atol + rtol * np.abs(np.where(want_finite, w, 0.0))) | np.isnan(err)
    if not off.any():
        return
    worst = np.unravel_index(int(np.nanargmax(np.where(off, err, -1.0))), err.shape) if err.ndim else ()
    worst = tuple(int(i) for i in worst)
    lines = [
        f"{name} has wrong values.",
        f"  largest error: {_fmt(err[worst])} at index {_index_str(worst)}: got {_fmt(g[worst])}, "
        f"expected {_fmt(w[worst])}",
    ]
    if where:
        context = ", ".join(f"{k} = {_fmt(np.asarray(v)[worst])}" for k, v in where.items() if np.shape(v) == err.shape)
        if context:
            lines[-1] += f" (where {context})"
    lines.append(f"  elements off: {int(off.sum())} of {off.size} (allowed error: {atol:g} + {rtol:g} * |expected|)")
    if w.size <= _PREVIEW_SIZE:
        lines.append(f"  expected: {_preview(w)}")
        lines.append(f"  got:      {_preview(g)}")
    hint = _matching_mistake(g, mistakes, rtol, atol)
    if not hint and np.all(np.isfinite(g)) and np.all(np.isfinite(w)):
        factor = _constant_factor(g, w)
        if factor is not None:
            hint = _factor_hint(factor)
        elif g.ndim == 2 and g.shape[0] == g.shape[1] and g.shape[0] > 1 and np.allclose(g, w.T, rtol, atol):
            hint = "It equals the transpose of the expected matrix."
    if hint:
        lines.append("  hint: " + hint)
    raise CheckFailed(_with_case(case, lines))


def _matching_mistake(got: np.ndarray, mistakes: Mapping[str, Any] | None, rtol: float, atol: float) -> str:
    for explanation, wrong in (mistakes or {}).items():
        wrong = np.asarray(to_numpy(wrong, "a known mistake"), dtype=np.float64)
        if wrong.shape == got.shape and np.allclose(got, wrong, rtol=rtol, atol=atol):
            return explanation
    return ""


def assert_equal(actual, expected, *, name: str = "result", case: str | None = None) -> None:
    """Exact comparison, for integers, booleans, strings and small structures (e.g. a predicted class)."""
    if isinstance(expected, np.ndarray) or _is_tensor(expected):
        assert_close(actual, expected, name=name, case=case, rtol=0.0, atol=0.0, dtype=None)
        return
    if actual != expected:
        raise CheckFailed(_with_case(case, [f"{name} is wrong: expected {expected!r}, got {actual!r}."]))
