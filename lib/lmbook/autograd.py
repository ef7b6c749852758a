"""A tiny reverse-mode automatic differentiation engine on scalars, and a network built from it.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. Hand-deriving the backward pass
of every new network (as :mod:`lmbook.mlp` does) does not scale. Automatic differentiation splits the work:

1. every operation records its inputs and its *local* derivatives (how its output changes with each input),
   computed during the forward pass, right beside the forward formula;
2. :meth:`Value.backward` visits the recorded graph from the output back to the inputs and applies the chain
   rule: ``input.grad += local_derivative * output.grad``.

That is all PyTorch's autograd does, on tensors instead of single numbers. The tests compare every operation
here with PyTorch in float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np


class Value:
    """A scalar that remembers how it was computed, so that gradients can flow back through it.

    Args:
        data: the number.
        _children: the Values this one was computed from (empty for inputs and parameters).
        _op: a short name of the operation, for display.
        _local_grads: ``d self / d child`` for each child, in the same order; filled in by the operations.

    Attributes:
        data: the number.
        grad: ``d output / d self`` after ``output.backward()``; starts at 0.
    """

    # Makes numpy hand `np.float64(2.0) * value` over to Value.__rmul__ instead of building an object array.
    __array_ufunc__ = None

    def __init__(self, data: float, _children: tuple = (), _op: str = "", _local_grads: tuple = ()) -> None:
        self.data = float(data)
        self.grad = 0.0
        self._children = tuple(_children)
        self._op = _op
        self._local_grads = tuple(float(g) for g in _local_grads)

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ----- operations: each one returns a new Value holding its local derivatives -------------------------------

    def __add__(self, other) -> Value:
        other = _as_value(other)
        # d(a + b)/da = 1,  d(a + b)/db = 1
        return Value(self.data + other.data, (self, other), "+", (1.0, 1.0))

    def __sub__(self, other) -> Value:
        other = _as_value(other)
        # d(a - b)/da = 1,  d(a - b)/db = -1
        return Value(self.data - other.data, (self, other), "-", (1.0, -1.0))

    def __mul__(self, other) -> Value:
        other = _as_value(other)
        # d(a b)/da = b,  d(a b)/db = a
        return Value(self.data * other.data, (self, other), "*", (other.data, self.data))

    def __truediv__(self, other) -> Value:
        other = _as_value(other)
        # d(a / b)/da = 1 / b,  d(a / b)/db = -a / b^2
        return Value(self.data / other.data, (self, other), "/", (1.0 / other.data, -self.data / other.data**2))

    def __pow__(self, n: float) -> Value:
        if isinstance(n, Value) or not isinstance(n, numbers.Real):
            raise TypeError("Value ** n supports a constant int or float exponent n only")
        # d(a^n)/da = n a^(n - 1)
        return Value(self.data**n, (self,), f"**{n}", (n * self.data ** (n - 1),))

    def __neg__(self) -> Value:
        # d(-a)/da = -1
        return Value(-self.data, (self,), "neg", (-1.0,))

    def exp(self) -> Value:
        e = math.exp(self.data)
        # d(e^a)/da = e^a: the output is its own derivative
        return Value(e, (self,), "exp", (e,))

    def log(self) -> Value:
        # d(ln a)/da = 1 / a
        return Value(math.log(self.data), (self,), "log", (1.0 / self.data,))

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        # d(tanh a)/da = 1 - tanh(a)^2
        return Value(t, (self,), "tanh", (1.0 - t * t,))

    def sigmoid(self) -> Value:
        # 1 / (1 + e^{-a}) written with e^{-|a|} so that it cannot overflow
        e = math.exp(-abs(self.data))
        s = 1.0 / (1.0 + e) if self.data >= 0 else e / (1.0 + e)
        # d(sigmoid a)/da = s (1 - s)
        return Value(s, (self,), "sigmoid", (s * (1.0 - s),))

    def relu(self) -> Value:
        # d(max(0, a))/da = 1 if a > 0 else 0 (0 at a = 0, as in PyTorch)
        return Value(max(self.data, 0.0), (self,), "relu", (1.0 if self.data > 0 else 0.0,))

    # Python calls these when the plain number is on the left, as in ``2 * v`` or ``1 - v``.
    def __radd__(self, other) -> Value:
        return _as_value(other) + self

    def __rsub__(self, other) -> Value:
        return _as_value(other) - self

    def __rmul__(self, other) -> Value:
        return _as_value(other) * self

    def __rtruediv__(self, other) -> Value:
        return _as_value(other) / self

    # ----- backward ---------------------------------------------------------------------------------------------

    def backward(self) -> None:
        """Fill ``.grad`` of every Value this one depends on with ``d self / d that value``.

        Nodes are visited in reverse topological order: a node passes its gradient to its children only after
        *every* path into it has contributed to its own gradient. Like PyTorch, gradients of the inputs (leaves)
        accumulate across calls, so reset them (``zero_grad``) before a new backward pass; the intermediate
        nodes are reset here, so that calling ``backward`` twice adds the same amount twice to the leaves.
        """
        order = topological_order(self)
        for node in order:
            if node._children:
                node.grad = 0.0
        self.grad = 1.0  # d self / d self
        for node in reversed(order):
            for child, local in zip(node._children, node._local_grads, strict=True):
                child.grad += local * node.grad  # the chain rule, summed over every path into child


def _as_value(x) -> Value:
    """Wrap a plain number as a constant Value, so that ``v + 1`` works."""
    return x if isinstance(x, Value) else Value(x)


def topological_order(root: Value) -> list[Value]:
    """Every Value that ``root`` depends on, each listed after all of its children (inputs first, root last).

    Depth-first search with an explicit stack instead of recursion, so deep graphs cannot hit Python's
    recursion limit.
    """
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))  # revisit after the children, which go on top of the stack
            stack.extend((child, False) for child in reversed(node._children))
    return order


class Step(NamedTuple):
    """One node of a computation, as listed by :func:`trace`."""

    op: str
    data: float
    grad: float


def trace(value: Value) -> list[Step]:
    """The computation behind ``value`` as ``(op, data, grad)`` rows in topological order, for display.

    Inputs and parameters have ``op == ""``. Call ``value.backward()`` first to see gradients.
    """
    return [Step(node._op, node.data, node.grad) for node in topological_order(value)]


# ----- a small network of Values -----------------------------------------------------------------------------------


def _activate(z: Value, activation: str) -> Value:
    if activation in ("identity", "linear"):
        return z
    if activation in ("tanh", "sigmoid", "relu"):
        return getattr(z, activation)()
    raise ValueError(f"unknown activation {activation!r}; choose 'tanh', 'sigmoid', 'relu' or 'identity'")


class Neuron:
    """One neuron: ``f(sum_i w_i x_i + b)`` on Values.

    Args:
        n_in: number of inputs.
        activation: ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"identity"``.
        seed: seed of the initial weights (normal, std ``1 / sqrt(n_in)``); the bias starts at 0.
        rng: a ``numpy.random.Generator`` to draw from instead of ``seed``, so a layer can share one stream.
    """

    def __init__(self, n_in: int, activation: str = "tanh", seed: int = 0, rng: np.random.Generator | None = None):
        _activate(Value(0.0), activation)  # fail early on an unknown name
        rng = np.random.default_rng(seed) if rng is None else rng
        self.w = [Value(w) for w in rng.normal(0.0, 1.0 / math.sqrt(n_in), size=n_in)]
        self.b = Value(0.0)
        self.activation = activation

    def __call__(self, x: Sequence) -> Value:
        """``x``: ``n_in`` numbers or Values. Returns one Value."""
        if len(x) != len(self.w):
            raise ValueError(f"neuron expects {len(self.w)} inputs, got {len(x)}")
        z = sum((w_i * x_i for w_i, x_i in zip(self.w, x, strict=True)), self.b)
        return _activate(z, self.activation)

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]


class Layer:
    """``n_out`` neurons that all read the same ``n_in`` inputs. Calling it always returns a list of Values."""

    def __init__(
        self, n_in: int, n_out: int, activation: str = "tanh", seed: int = 0, rng: np.random.Generator | None = None
    ):
        rng = np.random.default_rng(seed) if rng is None else rng
        self.neurons = [Neuron(n_in, activation, rng=rng) for _ in range(n_out)]

    def __call__(self, x: Sequence) -> list[Value]:
        return [neuron(x) for neuron in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for neuron in self.neurons for p in neuron.parameters()]


class ScalarMLP:
    """A multi-layer perceptron built from Values; the last layer is linear (it outputs logits).

    Slow (one Python object per number) but every gradient is computed by :meth:`Value.backward`, which makes
    it the reference that shows the hand-written :class:`lmbook.mlp.MLP` backward pass is right.

    Args:
        sizes: layer widths from input to output, e.g. ``(2, 3, 1)``.
        activation: hidden activation name.
        seed: seed of the initial weights.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", seed: int = 0) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        rng = np.random.default_rng(seed)
        n_layers = len(self.sizes) - 1
        self.layers = [
            Layer(n_in, n_out, activation if l < n_layers - 1 else "identity", rng=rng)
            for l, (n_in, n_out) in enumerate(pairwise(self.sizes))
        ]

    def __call__(self, x: Sequence) -> list[Value]:
        """``x``: one example, ``sizes[0]`` numbers. Returns the ``sizes[-1]`` output logits as a list."""
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to 0 before a new backward pass (gradients accumulate)."""
        for p in self.parameters():
            p.grad = 0.0

    @classmethod
    def from_mlp(cls, mlp) -> ScalarMLP:
        """A ScalarMLP with exactly the weights of an :class:`lmbook.mlp.MLP`.

        ``mlp.W[l][i, j]`` connects input ``i`` to unit ``j`` of layer ``l``, so it becomes weight ``i`` of
        neuron ``j``.
        """
        net = cls(mlp.sizes, mlp.activation.name)
        for layer, W, b in zip(net.layers, mlp.W, mlp.b, strict=True):
            for j, neuron in enumerate(layer.neurons):
                for i, w in enumerate(neuron.w):
                    w.data = float(W[i, j])
                neuron.b.data = float(b[j])
        return net

    def grads_like_mlp(self) -> dict[str, list[np.ndarray]]:
        """The parameters' ``.grad`` arranged like :meth:`lmbook.mlp.MLP.backward`'s ``{"W": [...], "b": [...]}``."""
        grads: dict[str, list[np.ndarray]] = {"W": [], "b": []}
        for layer in self.layers:
            grads["W"].append(np.array([[w.grad for w in n.w] for n in layer.neurons]).T)  # (C_in, C_out)
            grads["b"].append(np.array([n.b.grad for n in layer.neurons]))
        return grads


def scalar_bce_with_logits(logits: Iterable[Value], y: Iterable[float]) -> Value:
    """Mean binary cross-entropy over a batch of Value logits, one per example.

    Per example ``log(1 + e^z) - y z``, whose derivative is ``sigmoid(z) - y``. (Fine for the moderate logits
    of this engine; :func:`lmbook.losses.bce_with_logits` shows the overflow-proof form.)
    """
    terms = [(1 + z.exp()).log() - float(y_i) * z for z, y_i in zip(logits, y, strict=True)]
    return sum(terms, Value(0.0)) / len(terms)
