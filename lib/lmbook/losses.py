"""Loss functions for binary classification and regression, with their gradients, in numpy.

Introduced in chapter 2, Neurons, forward propagation and backpropagation (binary cross-entropy drives the
first training loop) and studied in depth in chapter 3, Losses and gradient descent.

Shapes: predictions and targets are ``(B,)`` or ``(B, 1)``; the two forms are accepted interchangeably. Any
other mismatch raises a :class:`~lmbook.testing.ShapeError` instead of broadcasting, because
``(B, 1) - (B,)`` would quietly produce a ``(B, B)`` matrix and a meaningless loss.
"""

from __future__ import annotations

import numpy as np

from lmbook.activations import sigmoid
from lmbook.testing import check_shape


def _is_column_or_flat(a: np.ndarray) -> bool:
    return a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)


def _align(pred, y) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred`` and ``y`` as float64 arrays with the shape of ``pred``, accepting ``(B,)`` vs ``(B, 1)``."""
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != pred.shape and _is_column_or_flat(pred) and _is_column_or_flat(y) and y.size == pred.size:
        y = y.reshape(pred.shape)
    check_shape(y, pred.shape, "y")
    return pred, y


def bce(p, y, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy ``-[y log p + (1 - y) log(1 - p)]`` from probabilities.

    Args:
        p: predicted probabilities of class 1, shape ``(B,)`` or ``(B, 1)``.
        y: labels in {0, 1}, same number of elements.
        eps: ``p`` is clipped to ``[eps, 1 - eps]`` so that a confident wrong answer costs a large but finite
            loss instead of ``log(0) = -inf``.
    """
    p, y = _align(p, y)
    p = np.clip(p, eps, 1.0 - eps)
    return float(np.mean(-(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))))


def bce_grad(p, y, eps: float = 1e-12) -> np.ndarray:
    """Gradient of :func:`bce` with respect to ``p``: ``(p - y) / (p (1 - p)) / B``. Shape: like ``p``.

    It blows up as ``p`` approaches 0 or 1; through a sigmoid the ``p (1 - p)`` cancels, which is why
    :func:`bce_with_logits_grad` is so much simpler.
    """
    p, y = _align(p, y)
    p = np.clip(p, eps, 1.0 - eps)
    return (p - y) / (p * (1.0 - p)) / p.shape[0]


def bce_with_logits(z, y) -> float:
    """Mean binary cross-entropy computed from logits ``z`` (the pre-sigmoid outputs), numerically stable.

    With ``p = sigmoid(z)`` the loss per example simplifies to ``log(1 + e^z) - y z``. Written as
    ``max(z, 0) - y z + log(1 + e^{-|z|})`` it never overflows, and it never takes the log of a rounded-off
    probability of exactly 0 or 1, which is why frameworks prefer logits to probabilities.

    Args:
        z: logits, shape ``(B,)`` or ``(B, 1)``.
        y: labels in {0, 1}, same number of elements.
    """
    z, y = _align(z, y)
    per_example = np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))
    return float(np.mean(per_example))


def bce_with_logits_grad(z, y) -> np.ndarray:
    """Gradient of :func:`bce_with_logits` with respect to ``z``: ``(sigmoid(z) - y) / B``. Shape: like ``z``.

    Prediction minus target, not target minus prediction: gradient descent subtracts this, which moves the
    prediction towards the target. The ``1 / B`` comes from taking the mean over the batch.
    """
    z, y = _align(z, y)
    return (sigmoid(z) - y) / z.shape[0]


def mse(yhat, y) -> float:
    """Mean squared error ``mean((yhat - y)^2)`` over all ``N`` elements.

    Args:
        yhat: predictions, any shape (``(B,)`` and ``(B, 1)`` are interchangeable with ``y``).
        y: targets with the same shape.
    """
    yhat, y = _align(yhat, y)
    return float(np.mean((yhat - y) ** 2))


def mse_grad(yhat, y) -> np.ndarray:
    """Gradient of :func:`mse` with respect to ``yhat``: ``2 (yhat - y) / N``, ``N`` = number of elements."""
    yhat, y = _align(yhat, y)
    return 2.0 * (yhat - y) / yhat.size
