"""Loss functions for classification and regression, with their gradients, in numpy.

Introduced in chapter 2, Neurons, forward propagation and backpropagation (binary cross-entropy drives the
first training loop) and studied in depth in chapter 3, Losses and gradient descent.

Binary losses and the MSE: predictions and targets are ``(B,)`` or ``(B, 1)``; the two forms are accepted
interchangeably. Any
other mismatch raises a :class:`~lmbook.testing.ShapeError` instead of broadcasting, because
``(B, 1) - (B,)`` would quietly produce a ``(B, B)`` matrix and a meaningless loss.

Multi-class cross-entropy (chapter 3) takes logits ``(B, K)`` and either integer labels ``(B,)`` or target
probabilities ``(B, K)``.
"""

from __future__ import annotations

import numpy as np

from lmbook.activations import log_softmax, sigmoid, softmax
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


# ---------------------------------------------------------------------------------------------------------
# Multi-class cross-entropy (chapter 3, Losses and gradient descent)


def one_hot(y, num_classes: int) -> np.ndarray:
    """Integer class labels ``(B,)`` -> one-hot rows ``(B, K)`` of float64, with a 1 in column ``y[i]`` of row ``i``.

    Raises:
        ValueError: a label that is not a whole number, or lies outside ``0 .. num_classes - 1``.
    """
    y = np.asarray(y)
    check_shape(y, (None,), "y")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = _as_labels(y)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"labels must lie in 0 .. {num_classes - 1} for num_classes={num_classes}; "
            f"got {labels[bad][0]} at position {int(np.flatnonzero(bad)[0])}"
        )
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from an int array or a float array holding whole numbers; anything else is an error."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise ValueError(f"class labels must be whole numbers, got an array of dtype {y.dtype} with values {y[:5]}")


def _targets(logits, y) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(B, K)`` and the targets as a ``(B, K)`` float array (one-hot rows for integer labels)."""
    logits = np.asarray(logits, dtype=np.float64)
    dims: dict[str, int] = {}
    check_shape(logits, ("B", "K"), "logits", dims)
    y = np.asarray(y)
    if y.ndim == 1:
        check_shape(y, ("B",), "y", dims)
        return logits, one_hot(y, logits.shape[1])
    check_shape(y, ("B", "K"), "y", dims)
    return logits, y.astype(np.float64)


def cross_entropy(logits, y) -> float:
    """Mean cross-entropy of a softmax classifier, computed from its logits: ``torch.nn.functional.cross_entropy``.

    For one example with logits ``z`` and target distribution ``t`` the loss is ``-sum_k t_k log softmax(z)_k``;
    for an integer label ``c`` that is ``-log p_c``, the negative log-probability of the correct class (0.105
    for ``p_c = 0.9``, 0.0513 for ``p_c = 0.95``, and 2.303 for ``p_c = 0.1``).

    Args:
        logits: unnormalised scores, shape ``(B, K)``.
        y: integer class labels, shape ``(B,)``; or target probabilities (one-hot or soft), shape ``(B, K)``.

    Returns:
        The loss averaged over the ``B`` examples, as a float. It uses :func:`~lmbook.activations.log_softmax`,
        so huge logits give a finite loss.
    """
    logits, t = _targets(logits, y)
    return float(-np.sum(t * log_softmax(logits)) / logits.shape[0])


def cross_entropy_grad(logits, y) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to the logits: ``(softmax(logits) - y) / B``, shape ``(B, K)``.

    Softmax followed by cross-entropy has the simplest possible gradient: predicted probabilities minus
    target probabilities. The ``1 / p`` of the log and the Jacobian of the softmax cancel exactly, which is
    why frameworks fuse the two. (For soft targets whose rows do not sum to 1 the exact gradient is
    ``(softmax(logits) * sum_k y_k - y) / B``, which is what is computed; for labels it is the same thing.)

    Args:
        logits: shape ``(B, K)``. y: labels ``(B,)`` or target probabilities ``(B, K)``.
    """
    logits, t = _targets(logits, y)
    return (softmax(logits) * t.sum(axis=1, keepdims=True) - t) / logits.shape[0]
