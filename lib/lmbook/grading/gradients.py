"""Checking a learner's gradients against finite differences or torch autograd."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lmbook.grading.compare import assert_close
from lmbook.grading.failures import CheckFailed, _with_case
from lmbook.grading.values import _shape_str, assert_mapping


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

    tensors = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in inputs.items()}
    out = f(**tensors)
    up = None if upstream is None else torch.as_tensor(np.asarray(upstream, dtype=np.float64))
    loss = _loss_of(out, up)
    loss.backward()
    return {k: (t.grad.numpy().copy() if t.grad is not None else np.zeros(t.shape)) for k, t in tensors.items()}


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
                        "  hint: are the gradients returned in the right order? Each has the shape of its own input.",
                    ],
                )
            )
