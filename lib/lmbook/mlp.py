"""A multi-layer perceptron written from scratch in numpy: forward pass, backpropagation and training.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. Every piece is checked against the
same network built in PyTorch (:meth:`MLP.to_torch`), in float64, by the tests.

Conventions (the book's notation page lists them):

* a batch ``X`` has shape ``(B, C_in)``: one row per example;
* a dense layer has weights ``W`` of shape ``(C_in, C_out)`` and bias ``b`` of shape ``(C_out,)`` and computes
  ``Z = X @ W + b`` (PyTorch's ``nn.Linear`` stores the transpose, ``W.T``);
* hidden layers apply an activation ``A = f(Z)``; the last layer is linear and outputs logits;
* binary labels ``y`` have shape ``(B,)`` (``(B, 1)`` is accepted too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from lmbook.activations import Activation, get_activation, sigmoid
from lmbook.losses import bce_with_logits, bce_with_logits_grad
from lmbook.testing import check_shape


def dense_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One dense layer: ``Z = X @ W + b``.

    Args:
        X: inputs, shape ``(B, C_in)``.
        W: weights, shape ``(C_in, C_out)``.
        b: biases, shape ``(C_out,)``; broadcasting adds the same bias to every row (example).

    Returns:
        Z: pre-activations, shape ``(B, C_out)``.
    """
    dims: dict[str, int] = {}
    check_shape(W, ("C_in", "C_out"), "W", dims)
    check_shape(X, ("B", "C_in"), "X", dims)
    check_shape(b, ("C_out",), "b", dims)
    return X @ W + b


def dense_backward(dZ: np.ndarray, X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`dense_forward`: given ``dZ = dL/dZ``, return ``(dX, dW, db)``.

    Args:
        dZ: gradient of the loss with respect to ``Z``, shape ``(B, C_out)``.
        X: the layer's input from the forward pass, shape ``(B, C_in)``.
        W: the layer's weights, shape ``(C_in, C_out)``.

    Returns:
        dX: shape ``(B, C_in)``, passed on to the previous layer.
        dW: shape ``(C_in, C_out)``, like ``W``.
        db: shape ``(C_out,)``, like ``b``.
    """
    dims: dict[str, int] = {}
    check_shape(W, ("C_in", "C_out"), "W", dims)
    check_shape(X, ("B", "C_in"), "X", dims)
    check_shape(dZ, ("B", "C_out"), "dZ", dims)
    dW = X.T @ dZ  # each weight's gradient sums its contributions over the examples in the batch
    db = dZ.sum(axis=0)  # the bias was added to every example, so sum over the BATCH axis (axis 0)
    dX = dZ @ W.T  # each input fed every output unit, so its gradient sums over the output units
    return dX, dW, db


@dataclass(frozen=True)
class MLPConfig:
    """Everything needed to rebuild an :class:`MLP`: layer sizes, hidden activation and initialisation seed."""

    sizes: tuple[int, ...]
    activation: str = "tanh"
    seed: int = 0


def init_scale(fan_in: int, fan_out: int, activation: str) -> float:
    """Standard deviation of the initial weights of a layer.

    The aim is to keep the variance of the signal roughly constant from layer to layer, so that it neither
    dies out nor blows up. He et al. (2015) use ``sqrt(2 / fan_in)`` for ReLU, which zeroes half its inputs;
    Glorot and Bengio (2010) use ``sqrt(2 / (fan_in + fan_out))`` for tanh-like activations.
    """
    if activation == "relu":
        return float(np.sqrt(2.0 / fan_in))
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


class MLP:
    """A fully connected network for binary classification, with a hand-written backward pass.

    Args:
        sizes: layer widths from input to output, e.g. ``(2, 3, 1)``: 2 inputs, one hidden layer of 3 units,
            one output unit. The last layer is linear: it outputs a logit, and the sigmoid lives in the loss.
        activation: name of the hidden activation, ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"identity"``.
        seed: seed of the random initialisation (weights scaled normal, biases zero).

    Attributes:
        W: list of weight matrices, ``W[l]`` of shape ``(sizes[l], sizes[l + 1])``.
        b: list of bias vectors, ``b[l]`` of shape ``(sizes[l + 1],)``.
        activation: the hidden :class:`~lmbook.activations.Activation`.
        sizes: the layer widths, as a tuple.
    """

    def __init__(self, sizes, activation: str | Activation = "tanh", seed: int = 0) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError(f"sizes needs at least an input and an output width, all >= 1; got {self.sizes}")
        self.activation = get_activation(activation)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for fan_in, fan_out in pairwise(self.sizes):
            std = init_scale(fan_in, fan_out, self.activation.name)
            self.W.append(rng.normal(0.0, std, size=(fan_in, fan_out)))
            self.b.append(np.zeros(fan_out))

    @classmethod
    def from_config(cls, config: MLPConfig) -> MLP:
        return cls(config.sizes, config.activation, config.seed)

    @property
    def config(self) -> MLPConfig:
        return MLPConfig(self.sizes, self.activation.name, self.seed)

    def __repr__(self) -> str:
        return f"MLP(sizes={self.sizes}, activation={self.activation.name!r}, parameters={self.num_parameters()})"

    # ----- forward ---------------------------------------------------------------------------------------------

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
        """Run the network on a batch.

        Args:
            X: inputs, shape ``(B, sizes[0])``.

        Returns:
            logits: shape ``(B, sizes[-1])``.
            cache: what the backward pass needs. ``cache["As"][l]`` is the input of layer ``l`` (``As[0]`` is
                ``X``, then the hidden activations ``A1, A2, ...``) and ``cache["Zs"][l]`` is its
                pre-activation (``Zs[-1]`` are the logits). Both lists have one entry per layer.
        """
        X = np.asarray(X, dtype=np.float64)
        check_shape(X, (None, self.sizes[0]), "X")
        As, Zs = [], []
        A = X
        last = len(self.W) - 1
        for l, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            As.append(A)
            Z = dense_forward(A, W, b)
            Zs.append(Z)
            A = Z if l == last else self.activation.f(Z)  # the output layer stays linear (logits)
        return A, {"As": As, "Zs": Zs}

    def _single_output(self) -> None:
        if self.sizes[-1] != 1:
            raise ValueError(
                f"this MLP has {self.sizes[-1]} output units; probabilities, loss and backward here are for binary "
                "classification with one output unit (a softmax over several classes comes in chapter 3)"
            )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of class 1 for each example, shape ``(B,)``."""
        self._single_output()
        logits, _ = self.forward(X)
        return sigmoid(logits)[:, 0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class (0 or 1) for each example, shape ``(B,)``: 1 where the probability is at least 0.5."""
        return (self.predict_proba(X) >= 0.5).astype(int)

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean binary cross-entropy of the network on ``(X, y)``; ``X`` is ``(B, C_in)``, ``y`` is ``(B,)``."""
        self._single_output()
        logits, _ = self.forward(X)
        return bce_with_logits(logits, y)

    # ----- backward --------------------------------------------------------------------------------------------

    def backward(self, cache: dict[str, list[np.ndarray]], y: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Gradients of the mean binary cross-entropy with respect to every parameter.

        Args:
            cache: the cache returned by :meth:`forward` for the same batch.
            y: labels, shape ``(B,)`` or ``(B, 1)``.

        Returns:
            ``{"W": [dW1, dW2, ...], "b": [db1, db2, ...]}``, each with the shape of its parameter.
        """
        self._single_output()
        logits = cache["Zs"][-1]
        # Sigmoid and cross-entropy together have the simple derivative (prediction - target) / B.
        delta = bce_with_logits_grad(logits, y)  # (B, 1)
        return self.backward_from(cache, delta)

    def backward_from(self, cache: dict[str, list[np.ndarray]], delta: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Backpropagate ``delta = dL/dlogits`` (shape ``(B, sizes[-1])``) through every layer.

        Separate from :meth:`backward` so that any loss can reuse it: pass the gradient of that loss with
        respect to the logits (for example :func:`lmbook.losses.mse_grad`).
        """
        As, Zs = cache["As"], cache["Zs"]
        grads_W: list[np.ndarray] = []
        grads_b: list[np.ndarray] = []
        for l in reversed(range(len(self.W))):  # from the output layer back to the first
            dA_prev, dW, db = dense_backward(delta, As[l], self.W[l])
            grads_W.insert(0, dW)
            grads_b.insert(0, db)
            if l > 0:
                # delta_{l-1} = (delta_l @ W_l^T) * f'(Z_{l-1}): the chain rule passes through the activation of
                # the layer below, so its derivative must multiply in (leaving it out is a classic mistake).
                delta = dA_prev * self.activation.df(Zs[l - 1])
        return {"W": grads_W, "b": grads_b}

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, list[np.ndarray]]]:
        """One forward and one backward pass: the loss on ``(X, y)`` and the gradients of every parameter."""
        self._single_output()
        logits, cache = self.forward(X)
        return bce_with_logits(logits, y), self.backward(cache, y)

    # ----- parameters ------------------------------------------------------------------------------------------

    def step(self, grads: dict[str, list[np.ndarray]], lr: float) -> None:
        """One step of gradient descent, in place: ``theta <- theta - lr * dL/dtheta`` for every parameter."""
        for W, dW in zip(self.W, grads["W"], strict=True):
            W -= lr * dW  # in place, so arrays returned by parameters() stay the live parameters
        for b, db in zip(self.b, grads["b"], strict=True):
            b -= lr * db

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays themselves (not copies), in the order ``[W1, b1, W2, b2, ...]``."""
        return [p for W, b in zip(self.W, self.b, strict=True) for p in (W, b)]

    def num_parameters(self) -> int:
        """Total number of weights and biases: the "size" of the model."""
        return sum(p.size for p in self.parameters())

    def to_torch(self, dtype=None):
        """The same network as a ``torch.nn.Sequential`` with the same weights (float64 by default).

        ``nn.Linear`` stores its weight as ``(C_out, C_in)`` and computes ``x @ weight.T + bias``, so our
        ``W`` of shape ``(C_in, C_out)`` goes in transposed.
        """
        import torch  # imported here so that the numpy-only parts of lmbook do not need torch

        dtype = torch.float64 if dtype is None else dtype
        modules = {
            "tanh": torch.nn.Tanh,
            "sigmoid": torch.nn.Sigmoid,
            "relu": torch.nn.ReLU,
            "identity": torch.nn.Identity,
        }
        if self.activation.name not in modules:
            raise ValueError(f"no torch module for activation {self.activation.name!r}")
        layers: list[torch.nn.Module] = []
        for l, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            linear = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.as_tensor(W.T, dtype=dtype))  # (C_out, C_in)
                linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
            layers.append(linear)
            if l < len(self.W) - 1:
                layers.append(modules[self.activation.name]())
        return torch.nn.Sequential(*layers)


def train(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    lr: float = 0.5,
    steps: int = 1000,
    batch_size: int | None = None,
    seed: int = 0,
    callback: Callable[[int, float, MLP], None] | None = None,
) -> list[float]:
    """Train ``model`` in place by gradient descent and return the loss at every step.

    Args:
        model: the network to train.
        X: inputs, shape ``(B, C_in)``.
        y: labels in {0, 1}, shape ``(B,)``.
        lr: learning rate.
        steps: number of gradient steps.
        batch_size: ``None`` for full-batch gradient descent; otherwise each step uses ``batch_size`` examples
            drawn at random without replacement (mini-batch stochastic gradient descent).
        seed: seed for drawing the mini-batches (unused for full batches).
        callback: called as ``callback(step, loss, model)`` after every step, e.g. to record or plot progress.

    Returns:
        The loss of each step, measured on that step's batch before the update; length ``steps``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        if batch_size is None:
            X_batch, y_batch = X, y
        else:
            idx = rng.choice(len(X), size=min(batch_size, len(X)), replace=False)
            X_batch, y_batch = X[idx], y[idx]
        loss, grads = model.loss_and_grads(X_batch, y_batch)
        model.step(grads, lr)
        losses.append(loss)
        if callback is not None:
            callback(step, loss, model)
    return losses


def accuracy(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples in ``(X, y)`` that ``model`` classifies correctly, in [0, 1]."""
    y = np.asarray(y).reshape(-1)
    return float(np.mean(model.predict(X) == y))
