"""Describing a learner's value, and checking its kind, shape, dtype and finiteness before its numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmbook.grading.failures import CheckFailed, _with_case

_PREVIEW_SIZE = 12  # arrays up to this many elements are printed in full in a failure message


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
    text = np.array2string(np.asarray(a), precision=4, suppress_small=False, separator=", ", max_line_width=100)
    return text.replace("\n", "\n    ")


def to_numpy(value, name: str = "result", case: str | None = None) -> np.ndarray:
    """``value`` as a numpy array (a torch tensor is detached and moved to the CPU); fail clearly on ``None``.

    Raises:
        CheckFailed: for ``None`` (usually a missing ``return``) or a value that is not numeric.
    """
    if value is None:
        raise CheckFailed(_with_case(case, [f"{name} is None. Does your function end with a `return` statement?"]))
    if value is Ellipsis:
        raise CheckFailed(_with_case(case, [f"{name} is `...`: replace the `...` placeholder with your code."]))
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
        raise CheckFailed(_with_case(case, [f"{name} should be a numeric array, but it is {describe_value(value)}."]))
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
    ok = len(actual) == len(expected) and all(e is None or e == a for e, a in zip(expected, actual, strict=True))
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
        raise CheckFailed(_with_case(case, [f"{name} should have dtype {want}, but it has dtype {got_name}."]))
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
        raise CheckFailed(_with_case(case, [f"{name} should have {length} items{what}, but it has {len(value)}."]))
    return list(value)


def assert_mapping(value, keys: Sequence[str], name: str = "result", case: str | None = None) -> Mapping:
    """Fail unless ``value`` is a dict (or other mapping) with at least the given keys; return it."""
    if value is None:
        to_numpy(value, name, case)
    if not isinstance(value, Mapping):
        raise CheckFailed(
            _with_case(
                case,
                [f"{name} should be a dict with keys {', '.join(map(repr, keys))}, but it is {describe_value(value)}."],
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
