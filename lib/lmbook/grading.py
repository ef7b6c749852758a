"""Checks for auto-graded exercises that understand arrays, tensors, gradients and runaway code.

Introduced with the exercises of chapter 2, Neurons, forward propagation and backpropagation, and used by
the exercise set of every later chapter. The tests of an exercise (run by otter-grader when a learner calls
``grader.check("q1")``) call these helpers instead of bare ``assert`` statements, so that a wrong answer
fails with a message the learner can act on:

* which case failed (the inputs it used),
* the expected and the actual value, the largest error and the index where it occurs,
* a wrong shape or dtype, named as such (with a guess at the usual cause: a transpose, an extra axis, a sum
  over the wrong axis),
* NaN or infinite values, and where the first one is,
* an exception raised by the learner's code, with the line of *their* code that raised it,
* a function that never returns: every call runs under a time limit (:func:`run_with_timeout`), so an
  infinite loop fails that one check instead of freezing the notebook or the grader.

Every failure is a :class:`CheckFailed`, a subclass of ``AssertionError``.

The tests of each exercise set ship inside this package (``lmbook/exercise_tests/<set>/``), so that
:func:`tests_dir` finds them wherever ``lmbook`` is installed, including on Google Colab, where the
notebook's own folder is not on disk.
"""

from __future__ import annotations

import ctypes
import inspect
import math
import os
import pathlib
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: Seconds a single call of a learner's function may take before it counts as "never returns".
DEFAULT_SECONDS = 5.0

_PREVIEW_SIZE = 12  # arrays up to this many elements are printed in full in a failure message


class CheckFailed(AssertionError):
    """A check on a learner's answer failed. The message says what was expected and what came instead."""


class TimeLimitExceeded(CheckFailed):
    """A learner's function ran longer than its time limit and was stopped."""


class _Deadline(BaseException):
    """Raised inside code that ran past its time limit.

    A ``BaseException`` rather than an ``Exception`` so that a learner's ``except Exception:`` does not
    swallow it; :func:`run_with_timeout` turns it into a :class:`CheckFailed`.
    """


# ----- where the tests live ---------------------------------------------------------------------------------


def _tests_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parent / "exercise_tests"


def exercise_sets() -> list[str]:
    """Names of the exercise sets whose tests ship with this copy of lmbook, e.g. ``["backprop"]``."""
    root = _tests_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("q*.py")))


def tests_dir(exercise_set: str) -> str:
    """Folder of the public tests of ``exercise_set``: ``otter.Notebook(tests_dir=tests_dir("backprop"))``.

    Raises:
        FileNotFoundError: if this copy of lmbook has no tests for that set (usually an old lmbook).
    """
    path = _tests_root() / exercise_set
    if not path.is_dir():
        known = ", ".join(exercise_sets()) or "none"
        raise FileNotFoundError(
            f"this lmbook has no tests for the exercise set {exercise_set!r} (it has: {known}); "
            "install a newer lmbook, e.g. %pip install --upgrade lmbook from the book's repository"
        )
    return str(path)


# ----- describing values -----------------------------------------------------------------------------------


def _is_tensor(value) -> bool:
    # Checked by name, so that numpy-only exercises never import torch.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _shape_str(shape: Sequence[int | None]) -> str:
    parts = ["*" if d is None else str(int(d)) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def describe_value(value) -> str:
    """A short description of any value, for messages: ``"a float64 array of shape (4, 3)"``, ``"None"``."""
    if value is None:
        return "None"
    if _is_tensor(value):
        return f"a {str(value.dtype).replace('torch.', 'torch ')} tensor of shape {_shape_str(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {_shape_str(value.shape)}"
    if isinstance(value, bool | int | float | np.number):
        return f"the number {value!r}" if not isinstance(value, np.number) else f"the number {value.item()!r}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6])
        return f"a dict with keys {keys}" if value else "an empty dict"
    return f"a {type(value).__name__}"


def _fmt(x: float) -> str:
    if isinstance(x, float | np.floating) and not np.isfinite(x):
        return str(x)
    return f"{float(x):.6g}"


def _index_str(index: tuple[int, ...]) -> str:
    return _shape_str(index) if index else "()"


def _preview(a: np.ndarray) -> str:
    text = np.array2string(
        np.asarray(a), precision=4, suppress_small=False, separator=", ", max_line_width=100
    )
    return text.replace("\n", "\n    ")


def to_numpy(value, name: str = "result", case: str | None = None) -> np.ndarray:
    """``value`` as a numpy array (a torch tensor is detached and moved to the CPU); fail clearly on ``None``.

    Raises:
        CheckFailed: for ``None`` (usually a missing ``return``) or a value that is not numeric.
    """
    if value is None:
        raise CheckFailed(
            _with_case(case, [f"{name} is None. Does your function end with a `return` statement?"])
        )
    if value is Ellipsis:
        raise CheckFailed(
            _with_case(case, [f"{name} is `...`: replace the `...` placeholder with your code."])
        )
    if _is_tensor(value):
        return value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged lists and the like
        raise CheckFailed(
            _with_case(
                case,
                [
                    f"{name} should be an array, but it is {describe_value(value)}, which "
                    f"numpy cannot read as one ({err})"
                ],
            )
        ) from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise CheckFailed(
            _with_case(case, [f"{name} should be a numeric array, but it is {describe_value(value)}."])
        )
    return array


# ----- shape, dtype and finiteness --------------------------------------------------------------------------


def _shape_hint(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> str:
    if None in expected:
        return ""
    if len(actual) == len(expected) == 2 and actual == expected[::-1]:
        return "It looks transposed: check the order of a matrix product, or a missing/extra `.T`."
    if len(actual) == len(expected) + 1 and 1 in actual:
        squeezed = list(actual)
        squeezed.remove(1)
        if tuple(squeezed) == expected:
            return (
                "There is an extra axis of size 1. A (B, 1) column and a (B,) vector broadcast into a "
                "(B, B) matrix, so keep them apart (`.reshape(-1)` or `[:, 0]`)."
            )
    if len(actual) + 1 == len(expected) and 1 in expected:
        squeezed = list(expected)
        squeezed.remove(1)
        if tuple(squeezed) == actual:
            return "An axis of size 1 is missing (e.g. `keepdims=True`, or `.reshape(-1, 1)`)."
    if len(actual) == len(expected) - 1 and len(expected) >= 1:
        for axis in range(len(expected)):
            if tuple(d for i, d in enumerate(expected) if i != axis) == actual:
                return (
                    f"It lost axis {axis} (of size {expected[axis]}): a sum or mean over that axis, or an "
                    "index that picked one row or column?"
                )
    if len(actual) == len(expected) == 1:
        return "For a vector the length must match: was a sum or mean taken over the wrong axis?"
    if math.prod(actual) == math.prod(expected):
        return "The number of elements is right but the arrangement is not: a reshape or transpose?"
    return ""


def assert_shape(value, expected: Sequence[int | None], name: str = "result", case: str | None = None):
    """Fail unless ``value`` has shape ``expected`` (``None`` entries match any size). Returns ``value``.

    Args:
        value: an array, tensor, nested list or number.
        expected: the shape, e.g. ``(4, 3)``; ``None`` for "any size" along that axis.
        name: what ``value`` is, in the message (e.g. ``"dW"``).
        case: which test case this is, in the message.
    """
    array = to_numpy(value, name, case)
    actual = tuple(int(d) for d in array.shape)
    expected = tuple(expected)
    ok = len(actual) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, actual, strict=True)
    )
    if not ok:
        lines = [f"{name} has the wrong shape: expected {_shape_str(expected)}, got {_shape_str(actual)}."]
        hint = _shape_hint(actual, expected)
        if hint:
            lines.append("  hint: " + hint)
        raise CheckFailed(_with_case(case, lines))
    return value


def _dtype_kind(value) -> tuple[str, str]:
    """(kind letter as numpy uses it: b i u f c, readable dtype name) for an array or tensor."""
    if _is_tensor(value):
        import torch  # only reached when a tensor was passed, so torch is already loaded

        dtype = value.dtype
        if dtype == torch.bool:
            kind = "b"
        elif dtype.is_floating_point:
            kind = "f"
        elif dtype.is_complex:
            kind = "c"
        else:
            kind = "i"
        return kind, str(dtype)
    array = np.asarray(value)
    return array.dtype.kind, str(array.dtype)


def assert_dtype(value, expected: str | Any = "floating", name: str = "result", case: str | None = None):
    """Fail unless ``value`` has the expected dtype. Returns ``value``.

    Args:
        value: an array or tensor.
        expected: ``"floating"`` (any float type), ``"integer"``, ``"bool"``, or an exact dtype such as
            ``np.float64``, ``"float32"`` or ``torch.float32``.
    """
    if value is None:
        to_numpy(value, name, case)
    kind, got = _dtype_kind(value)
    if isinstance(expected, str) and expected in ("floating", "integer", "bool"):
        wanted = {"floating": "f", "integer": "iu", "bool": "b"}[expected]
        if kind not in wanted:
            hint = ""
            if expected == "floating" and kind == "b":
                hint = " A comparison like `z > 0` gives booleans; convert with `.astype(float)`."
            elif expected == "floating" and kind in "iu":
                hint = " Integer arithmetic truncates; make the array float (e.g. `.astype(float)`)."
            raise CheckFailed(
                _with_case(case, [f"{name} should hold {expected} values, but its dtype is {got}." + hint])
            )
        return value
    want = str(expected).replace("torch.", "")
    if _is_tensor(value):
        got_name = got.replace("torch.", "")
    else:
        got_name = got
        want = str(np.dtype(expected)) if not _is_torch_dtype(expected) else want
    if got_name != want:
        raise CheckFailed(
            _with_case(case, [f"{name} should have dtype {want}, but it has dtype {got_name}."])
        )
    return value


def _is_torch_dtype(value) -> bool:
    return type(value).__module__.startswith("torch")


def assert_finite(value, name: str = "result", case: str | None = None):
    """Fail if ``value`` contains NaN or infinity; the message counts them and gives the first index."""
    array = to_numpy(value, name, case)
    if array.dtype.kind != "f":
        return value
    bad = ~np.isfinite(array)
    if bad.any():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(bad.sum()) - n_nan
        first = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
        what = "NaN" if np.isnan(array[first]) else "inf"
        lines = [
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s) out of {array.size}; the first "
            f"({what}) is at index {_index_str(first)}.",
            "  hint: NaN usually comes from 0/0, log(0) or inf - inf; infinity from exp() of a large "
            "number or a learning rate that is too large.",
        ]
        raise CheckFailed(_with_case(case, lines))
    return value


def _with_case(case: str | None, lines: list[str]) -> str:
    if case:
        return f"In the case {case}:\n" + "\n".join(lines)
    return "\n".join(lines)


def assert_sequence(
    value, length: int, name: str = "result", case: str | None = None, items: Sequence[str] | None = None
) -> list:
    """Fail unless ``value`` is a tuple or list of ``length`` items; return it as a list.

    Args:
        items: names of the items, for the message, e.g. ``("dX", "dW", "db")``.
    """
    what = f" ({', '.join(items)})" if items else ""
    if value is None:
        to_numpy(value, name, case)
    if not isinstance(value, tuple | list):
        raise CheckFailed(
            _with_case(
                case,
                [f"{name} should be a tuple of {length} items{what}, but it is {describe_value(value)}."],
            )
        )
    if len(value) != length:
        raise CheckFailed(
            _with_case(case, [f"{name} should have {length} items{what}, but it has {len(value)}."])
        )
    return list(value)


def assert_mapping(value, keys: Sequence[str], name: str = "result", case: str | None = None) -> Mapping:
    """Fail unless ``value`` is a dict (or other mapping) with at least the given keys; return it."""
    if value is None:
        to_numpy(value, name, case)
    if not isinstance(value, Mapping):
        raise CheckFailed(
            _with_case(
                case,
                [
                    f"{name} should be a dict with keys {', '.join(map(repr, keys))}, "
                    f"but it is {describe_value(value)}."
                ],
            )
        )
    missing = [k for k in keys if k not in value]
    if missing:
        raise CheckFailed(
            _with_case(
                case,
                [
                    f"{name} lacks the key(s) {', '.join(map(repr, missing))}; "
                    f"it has {', '.join(map(repr, value)) or 'none'}."
                ],
            )
        )
    return value


# ----- comparing values -------------------------------------------------------------------------------------


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
        context = ", ".join(
            f"{k} = {_fmt(np.asarray(v)[worst])}" for k, v in where.items() if np.shape(v) == err.shape
        )
        if context:
            lines[-1] += f" (where {context})"
    lines.append(
        f"  elements off: {int(off.sum())} of {off.size} (allowed error: {atol:g} + {rtol:g} * |expected|)"
    )
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


# ----- gradients --------------------------------------------------------------------------------------------


def _loss_of(outputs, upstream) -> Any:
    if upstream is None:
        return outputs.sum()
    return (outputs * upstream).sum()


def numerical_gradients(
    f: Callable[..., Any],
    inputs: Mapping[str, np.ndarray],
    upstream: np.ndarray | None = None,
    eps: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Central-difference gradients of ``L = sum(upstream * f(**inputs))`` with respect to every input.

    ``f`` takes numpy float64 arrays as keyword arguments. With ``upstream = dL/dY`` for ``Y = f(...)`` this
    is exactly what a layer's backward pass must return for each input. Costs two calls of ``f`` per element.
    """
    from lmbook.gradcheck import numerical_grad

    arrays = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}
    up = None if upstream is None else np.asarray(upstream, dtype=np.float64)
    grads = {}
    for key, x in arrays.items():
        grads[key] = numerical_grad(lambda _x: float(_loss_of(np.asarray(f(**arrays)), up)), x, eps)
    return grads


def autograd_gradients(
    f: Callable[..., Any],
    inputs: Mapping[str, np.ndarray],
    upstream: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of ``L = sum(upstream * f(**inputs))`` from torch's autograd, in float64.

    ``f`` takes torch tensors as keyword arguments (numpy-style operators such as ``@``, ``+`` and ``*`` work
    on both), so the reference is computed by a different mechanism than the learner's hand-written one.
    """
    import torch

    tensors = {
        k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in inputs.items()
    }
    out = f(**tensors)
    up = None if upstream is None else torch.as_tensor(np.asarray(upstream, dtype=np.float64))
    loss = _loss_of(out, up)
    loss.backward()
    return {
        k: (t.grad.numpy().copy() if t.grad is not None else np.zeros(t.shape)) for k, t in tensors.items()
    }


def assert_gradients(
    f: Callable[..., Any],
    inputs: Mapping[str, np.ndarray],
    grads: Mapping[str, Any],
    *,
    upstream: np.ndarray | None = None,
    method: str = "finite",
    case: str | None = None,
    prefix: str = "d",
    rtol: float = 1e-5,
    atol: float = 1e-7,
    mistakes: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Check a learner's gradients against finite differences or torch autograd.

    Args:
        f: the forward computation, taking the inputs as keyword arguments and returning an array (or a
            scalar loss). For ``method="autograd"`` it must work on torch tensors.
        inputs: the point at which to differentiate, name -> float64 array.
        grads: the learner's gradients, name -> array, for the same names (a missing one fails).
        upstream: ``dL/dY`` for ``Y = f(...)``; the loss is ``sum(upstream * Y)`` (``sum(Y)`` when None).
        method: ``"finite"`` (central differences, numpy only) or ``"autograd"`` (torch, float64).
        case: the test case, for the message.
        prefix: gradient names in messages are ``prefix + input name``, e.g. ``dW``.
        rtol, atol: tolerance per element.
        mistakes: known wrong answers, explanation -> {input name: the gradient that mistake produces}; the
            explanation of the one the learner's gradients match is added to the message.

    Raises:
        CheckFailed: a gradient is missing, has the wrong shape or dtype, contains NaN, or is wrong; the
            message names the gradient, the largest error and its index.
    """
    if method == "finite":
        reference = numerical_gradients(f, inputs, upstream)
        source = "finite differences"
    elif method == "autograd":
        reference = autograd_gradients(f, inputs, upstream)
        source = "torch autograd"
    else:
        raise ValueError(f"method must be 'finite' or 'autograd', got {method!r}")
    assert_mapping(grads, list(reference), "the gradients", case)
    _check_gradient_order(grads, reference, prefix, case)
    for key, want in reference.items():
        label = f"{prefix}{key}"
        known = {why: wrong[key] for why, wrong in (mistakes or {}).items() if key in wrong}
        try:
            assert_close(
                grads[key],
                want,
                name=f"the gradient {label}",
                case=case,
                rtol=rtol,
                atol=atol,
                mistakes=known,
            )
        except CheckFailed as err:
            raise CheckFailed(f"{err}\n  (the expected gradient comes from {source})") from None


def _check_gradient_order(
    grads: Mapping[str, Any], reference: Mapping[str, np.ndarray], prefix: str, case: str | None
) -> None:
    """Fail early when a gradient has the shape of *another* input: the results come in the wrong order."""
    shapes = {key: tuple(np.shape(want)) for key, want in reference.items()}
    for key, want_shape in shapes.items():
        try:
            got_shape = tuple(np.shape(grads[key]))
        except (ValueError, TypeError):  # not array-like: assert_close explains that
            continue
        if got_shape == want_shape:
            continue
        others = [other for other, shape in shapes.items() if other != key and shape == got_shape]
        if others:
            raise CheckFailed(
                _with_case(
                    case,
                    [
                        f"the gradient {prefix}{key} has shape {_shape_str(got_shape)}, which is the shape "
                        "of "
                        f"{prefix}{others[0]}; expected {_shape_str(want_shape)}.",
                        "  hint: are the gradients returned in the right order? Each has the shape of its "
                        "own input.",
                    ],
                )
            )


# ----- calling the learner's code: exceptions and time limits -----------------------------------------------


def _alarm_usable() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    # Never take SIGALRM away from someone else (pytest-timeout, for one, may be using it).
    current = signal.getsignal(signal.SIGALRM)
    return current in (signal.SIG_DFL, signal.SIG_IGN, None)


def _raise_at_every_line(frame, stop_code) -> None:
    """From now on, raise :class:`_Deadline` at every line of ``frame``, its callers up to ``stop_code``, and
    every function they call.

    Used when the learner's code caught the first :class:`_Deadline` (with a bare ``except:``) and looped on:
    a line event inside the ``except`` clause itself raises again, outside the ``try`` that swallowed the
    first one, so the exception cannot be kept in.
    """

    def tracer(_frame, event, _arg):
        if event in ("call", "line"):
            raise _Deadline()
        return tracer

    while frame is not None and frame.f_code is not stop_code:
        frame.f_trace_lines = True
        frame.f_trace = tracer
        frame = frame.f_back
    sys.settrace(tracer)


def _run_with_alarm(fn, args, kwargs, seconds):
    alarms = []

    def on_alarm(signum, frame):
        alarms.append(signum)
        if len(alarms) > 1:
            _raise_at_every_line(frame, _run_with_alarm.__code__)
        raise _Deadline()

    previous_trace = sys.gettrace()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            # The interval raises again every 50 ms, in case the learner's code catches the first one.
            signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
            result = fn(*args, **kwargs)
        finally:
            sys.settrace(previous_trace)
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return False, None, False
    finally:
        sys.settrace(previous_trace)
        signal.signal(signal.SIGALRM, previous)
    if alarms:
        return False, None, False
    return True, result, False


def _run_in_thread(fn, args, kwargs, seconds):
    box: dict[str, Any] = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except _Deadline:
            box["deadline"] = True
        except BaseException as err:  # handed back to the caller's thread below
            box["error"] = err

    worker = threading.Thread(target=target, name="lmbook-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        # Raise _Deadline inside the worker at its next bytecode; repeat in case it is caught and ignored.
        for _ in range(40):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(worker.ident), ctypes.py_object(_Deadline)
            )
            worker.join(0.05)
            if not worker.is_alive():
                break
        return False, None, worker.is_alive()
    if "error" in box:
        raise box["error"]
    if "deadline" in box:
        return False, None, False
    return True, box.get("result"), False


def run_with_timeout(
    fn: Callable,
    *args,
    seconds: float = DEFAULT_SECONDS,
    name: str | None = None,
    method: str = "auto",
    **kwargs,
):
    """Call ``fn(*args, **kwargs)`` and return its result, or fail if it takes longer than ``seconds``.

    Two mechanisms, because a test must stop an infinite loop without stopping the grader:

    * ``"signal"``: a ``SIGALRM`` timer raises an exception inside ``fn`` when time is up. This interrupts any
      Python loop (also ``time.sleep``) and leaves nothing running. Should ``fn`` catch that exception and
      loop on, the next alarm makes every further line of ``fn`` raise, which no ``except`` clause can
      absorb. It needs the main thread of a Unix process, which is where Jupyter runs cells and where
      otter-grader runs tests, locally, on Binder and on Colab.
    * ``"thread"``: elsewhere (Windows, or a caller that is not the main thread) ``fn`` runs in a helper
      thread; when time is up an exception is injected into that thread, which stops ordinary Python loops
      within milliseconds. Code that swallows every exception, or is stuck in one long C call, cannot be
      stopped this way: the check still fails on time, and the message says that the code runs on.

    ``"auto"`` picks the signal when it is usable and not already taken by someone else.

    Args:
        fn: the function to call.
        *args, **kwargs: its arguments.
        seconds: the time limit.
        name: how to call ``fn`` in the message (default: its ``__name__``).
        method: ``"auto"``, ``"signal"`` or ``"thread"``.

    Raises:
        TimeLimitExceeded: (a :class:`CheckFailed`) if the time limit is exceeded. Exceptions raised by ``fn``
            propagate unchanged.
    """
    return _run_limited(fn, args, kwargs, seconds, name or getattr(fn, "__name__", "the function"), method)


def _run_limited(fn, args, kwargs, seconds, label, method="auto"):
    if method == "auto":
        method = "signal" if _alarm_usable() else "thread"
    if method == "signal":
        finished, result, still_running = _run_with_alarm(fn, args, kwargs, seconds)
    elif method == "thread":
        finished, result, still_running = _run_in_thread(fn, args, kwargs, seconds)
    else:
        raise ValueError(f"method must be 'auto', 'signal' or 'thread', got {method!r}")
    if finished:
        return result
    message = (
        f"{label} did not finish within {seconds:g} s, so it was stopped. Look for a loop that never "
        "ends (a `while` whose condition never becomes false) or far more iterations than needed."
    )
    if still_running:
        message += (
            " It could not be stopped and keeps running in the background; restart the kernel "
            "(Kernel > Restart) to stop it."
        )
    raise TimeLimitExceeded(message)


# Functions that already ran out of time: a second call would only make the learner wait again.
_TIMED_OUT: weakref.WeakSet = weakref.WeakSet()


def _own_frame(tb) -> traceback.FrameSummary | None:
    """The innermost frame of a traceback that belongs to the learner's code (not numpy, torch or lmbook)."""
    here = str(pathlib.Path(__file__).resolve().parent)
    library_dirs = {os.path.dirname(os.__file__), here}
    frames = traceback.extract_tb(tb)
    for frame in reversed(frames):
        filename = frame.filename or ""
        if "site-packages" in filename or "dist-packages" in filename:
            continue
        if any(filename.startswith(d) for d in library_dirs):
            continue
        return frame
    return None


def _args_text(fn, args, kwargs) -> str:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        items = list(bound.arguments.items())
    except (TypeError, ValueError):
        items = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    parts = []
    for key, value in items:
        if isinstance(value, np.ndarray) or _is_tensor(value):
            parts.append(f"{key} of shape {_shape_str(value.shape)}")
        elif isinstance(value, bool | int | float | str):
            parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}: {describe_value(value)}")
    return ", ".join(parts)


def call_answer(
    fn, *args, name: str | None = None, seconds: float = DEFAULT_SECONDS, case: str | None = None, **kwargs
):
    """Call a learner's function with a time limit, turning every way it can go wrong into a clear failure.

    Args:
        fn: the learner's function (``None`` when the name is undefined in the notebook).
        *args, **kwargs: the arguments.
        name: the function's name as the exercise asks for it, e.g. ``"layer_forward"``.
        seconds: time limit of this call.
        case: the test case, for the message.

    Returns:
        Whatever ``fn`` returns (checking it is the caller's job, e.g. with :func:`assert_close`).

    Raises:
        CheckFailed: ``fn`` is undefined or not callable, still the ``...`` placeholder, raised an exception
            (the message quotes the line of the learner's code), or ran out of time.
    """
    label = name or getattr(fn, "__name__", "your function")
    if fn is None:
        raise CheckFailed(
            f"`{label}` is not defined. Run the cell that defines it (and the cells above it), "
            "then check again."
        )
    if fn is Ellipsis:
        raise CheckFailed(f"`{label}` is still the `...` placeholder: write the function.")
    if not callable(fn):
        raise CheckFailed(f"`{label}` should be a function, but it is {describe_value(fn)}.")
    try:
        if fn in _TIMED_OUT:
            raise CheckFailed(
                f"{label} did not finish within the time limit in an earlier check, so it was not "
                "called again. Look for a loop that never ends, fix it and re-run its cell."
            )
    except TypeError:  # not weak-referenceable: no memory of earlier timeouts
        pass
    try:
        return _run_limited(fn, args, kwargs, seconds, label)
    except TimeLimitExceeded as err:
        try:
            _TIMED_OUT.add(fn)
        except TypeError:
            pass
        raise TimeLimitExceeded(_with_case(case, [str(err)])) from None
    except Exception as err:  # the learner's code raised: report it, never let it crash the grader
        lines = [f"calling {label}({_args_text(fn, args, kwargs)}) raised {type(err).__name__}: {err}"]
        frame = _own_frame(err.__traceback__)
        if frame is not None and frame.line:
            lines.append(f"  at line {frame.lineno} of your code: {frame.line.strip()}")
        raise CheckFailed(_with_case(case, lines)) from None
