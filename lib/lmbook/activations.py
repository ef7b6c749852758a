"""Activation functions and their derivatives, written with numpy.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. A neuron computes a weighted sum
``z = x @ w + b`` (the pre-activation) and then an activation ``a = f(z)``. Backpropagation needs the local
derivative ``f'(z)``, so every activation here comes with its derivative, and both take the *pre-activation*
``z``: the derivative is evaluated where the forward pass evaluated ``f``.

Chapter 3, Losses and gradient descent, adds :func:`softmax` and :func:`log_softmax`, which act along one
axis (a vector of class scores) rather than elementwise.

All other functions work elementwise on arrays of any shape (or on plain floats) and return float64 arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lmbook.testing import check_choice


def _as_float(z) -> np.ndarray:
    return np.asarray(z, dtype=np.float64)


def sigmoid(z):
    """Logistic sigmoid ``1 / (1 + e^{-z})``, squashing any real number into (0, 1). Shape: like ``z``.

    The textbook formula overflows for large negative ``z`` (``e^{1000}``). Rewriting it with ``e^{-|z|}``,
    which is always in (0, 1], gives the same value without any overflow.
    """
    z = _as_float(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(z):
    """Derivative of the sigmoid at ``z``: ``s (1 - s)`` with ``s = sigmoid(z)``. At most 1/4, at ``z = 0``."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z):
    """Hyperbolic tangent, in (-1, 1): a sigmoid stretched and centred on zero, ``2 sigmoid(2z) - 1``."""
    return np.tanh(_as_float(z))


def tanh_grad(z):
    """Derivative of tanh at ``z``: ``1 - tanh(z)^2``. Equal to 1 at ``z = 0``, four times the sigmoid's."""
    t = np.tanh(_as_float(z))
    return 1.0 - t**2


def relu(z):
    """Rectified linear unit ``max(0, z)``."""
    return np.maximum(_as_float(z), 0.0)


def relu_grad(z):
    """Derivative of ReLU: 1 where ``z > 0``, else 0.

    ReLU has no derivative at exactly ``z = 0``; we use 0 there, the same choice as PyTorch, so that
    gradients agree with ``torch.relu`` everywhere.
    """
    return (_as_float(z) > 0).astype(np.float64)


def identity(z):
    """The identity ``f(z) = z``: a "linear" layer, used for the output logits."""
    return _as_float(z).copy()


def identity_grad(z):
    """Derivative of the identity: 1 everywhere."""
    return np.ones_like(_as_float(z))


@dataclass(frozen=True)
class Activation:
    """An activation function ``f`` bundled with its derivative ``df`` (both take the pre-activation ``z``)."""

    name: str
    f: Callable
    df: Callable

    def __call__(self, z):
        return self.f(z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_grad),
    "tanh": Activation("tanh", tanh, tanh_grad),
    "relu": Activation("relu", relu, relu_grad),
    "identity": Activation("identity", identity, identity_grad),
}


def get_activation(name_or_activation: str | Activation) -> Activation:
    """Look up an activation by name (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"identity"``) or pass one through.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    if isinstance(name_or_activation, Activation):
        return name_or_activation
    check_choice(name_or_activation, ACTIVATIONS, "activation")
    return ACTIVATIONS[name_or_activation]


# ---------------------------------------------------------------------------------------------------------
# Softmax: from K scores to a probability distribution (chapter 3, Losses and gradient descent)


def softmax(z, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``: ``exp(z_k) / sum_j exp(z_j)``, turning ``K`` scores into ``K`` probabilities.

    Shape: like ``z`` (any shape); the entries along ``axis`` are positive and sum to 1.

    Adding the same number to every score leaves the softmax unchanged (the factor ``e^c`` cancels), so we
    subtract the largest score first. Then the largest exponent is ``e^0 = 1`` and nothing overflows, whereas
    the textbook formula turns a score of 1000 into ``inf / inf = nan``.

    A softmax over a single score is always exactly 1, whatever the score: it carries no information and its
    gradient is zero. Two classes need either one sigmoid output or a softmax over two scores, which equals
    ``sigmoid(z_1 - z_0)``.
    """
    z = _as_float(z)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(z, axis: int = -1) -> np.ndarray:
    """Logarithm of :func:`softmax`, computed without ever forming the (possibly rounded-to-zero) probabilities.

    ``log softmax(z)_k = z_k - m - log(sum_j exp(z_j - m))`` with ``m = max_j z_j``. Taking ``log(softmax(z))``
    instead gives ``log(0) = -inf`` as soon as a probability underflows (a score 800 below the largest one),
    while this form returns the exact, finite ``-800``. Shape: like ``z``.
    """
    z = _as_float(z)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
