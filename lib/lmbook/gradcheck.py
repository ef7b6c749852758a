"""Gradient checking: compare a hand-derived gradient with finite differences.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. A backward pass can be wrong in
ways that still let the loss go down for a while, so we test it against the definition of the derivative:
nudge one parameter by ``+eps`` and ``-eps``, measure how the loss changes, and divide by ``2 eps``. This costs
two forward passes per parameter, far too slow for training but perfect as a test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference estimate of the gradient of the scalar function ``f`` at ``x``.

    ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every element ``i``. The central difference is accurate
    to order ``eps^2``, the one-sided ``(f(x + eps) - f(x)) / eps`` only to order ``eps``.

    Args:
        f: maps an array shaped like ``x`` to a float. It may also ignore its argument and read ``x`` from
            elsewhere (e.g. a model's weight array, passed as ``x``), since ``x`` is changed in place.
        x: float64 array of any shape. Elements are nudged in place one at a time and always restored, so
            ``x`` holds its original values after the call.
        eps: the step.

    Returns:
        An array with the shape of ``x``.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        original = x[i]
        try:
            x[i] = original + eps
            f_plus = f(x)
            x[i] = original - eps
            f_minus = f(x)
        finally:
            x[i] = original  # restore even if f raises, so a failed check never corrupts a model
        grad[i] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(a, b) -> float:
    """How far apart two arrays of the same shape are, relative to their size: ``max|a - b| / max(|a| + |b|)``.

    Both maxima run over the elements. Relative, so that gradients of very different magnitudes are judged
    alike. The scale is that of the whole array rather than of each element because finite differences carry
    a small *absolute* rounding error (about 1e-10 here): divided by a gradient element that happens to be
    nearly zero, it would look like a large relative error although the backward pass is right. The
    denominator is at least ``1e-12``, so two all-zero arrays count as agreeing.

    In float64, a correct backward pass gives about 1e-9 or less against :func:`numerical_grad`; a wrong one
    gives 1e-2 or more.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error needs equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(a) + np.abs(b))))


def gradcheck_mlp(model, X: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    """Check :meth:`lmbook.mlp.MLP.backward` against finite differences of :meth:`lmbook.mlp.MLP.loss`.

    Args:
        model: an :class:`lmbook.mlp.MLP` (its parameters are nudged and restored).
        X: inputs, shape ``(B, C_in)``.
        y: labels, shape ``(B,)``.
        eps: finite-difference step.

    Returns:
        The relative error per parameter, named as in the chapter: ``{"W1": ..., "b1": ..., "W2": ...}``.
    """
    X = np.asarray(X, dtype=np.float64)
    _, grads = model.loss_and_grads(X, y)
    errors = {}
    for l, (W, b) in enumerate(zip(model.W, model.b, strict=True), start=1):
        for name, param, analytic in ((f"W{l}", W, grads["W"][l - 1]), (f"b{l}", b, grads["b"][l - 1])):
            numeric = numerical_grad(lambda _: model.loss(X, y), param, eps)
            errors[name] = relative_error(analytic, numeric)
    return errors
