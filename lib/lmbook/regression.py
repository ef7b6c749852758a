"""Linear regression: the first model trained by gradient descent, and the one whose answer we know exactly.

Introduced in chapter 3, Losses and gradient descent. The model predicts ``y_hat = X @ w + b`` and is fitted by
minimising the mean squared error

    L(w, b) = (1/n) * sum_i (x_i · w + b - y_i)²,

whose gradient is ``dL/dw = (2/n) X^T (X w + b - y)``, a vector shaped like ``w``, and
``dL/db = (2/n) sum_i (x_i · w + b - y_i)``. Because the loss is a quadratic bowl, the minimum also has a closed
form (:func:`least_squares`), which lets us check that :func:`gradient_descent` converges to the right place.

Shapes: ``X`` is ``(n, d)`` (one row per example), ``y`` is ``(n,)``, ``w`` is ``(d,)`` and ``b`` a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmbook.testing import check_shape


def make_linear_data(
    n: int = 100,
    w=(2.0, -1.0),
    b: float = 0.5,
    noise: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic regression data set ``y = X @ w + b + noise * e``, with ``X`` and ``e`` standard normal.

    Args:
        n: number of examples. w: the true weights, length ``d``. b: the true bias.
        noise: standard deviation of the Gaussian noise added to ``y``.
        seed: seeds the generator; the same seed gives the same data.

    Returns:
        X: shape ``(n, d)``. y: shape ``(n,)``.
    """
    w = np.atleast_1d(np.asarray(w, dtype=np.float64))
    check_shape(w, (None,), "w")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(w)))
    y = X @ w + b + noise * rng.normal(size=n)
    return X, y


def _check(X, y=None, w=None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    dims: dict[str, int] = {}
    X = check_shape(np.asarray(X, dtype=np.float64), ("n", "d"), "X", dims)
    if y is not None:
        y = check_shape(np.asarray(y, dtype=np.float64), ("n",), "y", dims)
    if w is not None:
        w = check_shape(np.asarray(w, dtype=np.float64), ("d",), "w", dims)
    return X, y, w


def predict(X, w, b: float) -> np.ndarray:
    """The linear model's predictions ``X @ w + b``: ``X`` ``(n, d)``, ``w`` ``(d,)`` -> shape ``(n,)``."""
    X, _, w = _check(X, w=w)
    return X @ w + b


def mse_loss(X, y, w, b: float) -> float:
    """Mean squared error of the linear model ``(w, b)`` on ``(X, y)``: averaged over the ``n`` examples.

    Averaging (rather than summing) keeps the loss, and so the good learning rates, independent of how many
    examples there are.
    """
    X, y, w = _check(X, y, w)
    r = X @ w + b - y
    return float(np.mean(r * r))


def mse_gradients(X, y, w, b: float) -> tuple[np.ndarray, float]:
    """Gradient of :func:`mse_loss`: ``dw = (2/n) X^T r`` of shape ``(d,)`` and ``db = (2/n) sum(r)``.

    ``r = X @ w + b - y`` is the residual, shape ``(n,)``. ``X^T r`` multiplies ``(d, n)`` by ``(n,)`` and sums
    over the examples, leaving one number per weight, as a gradient must: the same shape as ``w``.
    """
    X, y, w = _check(X, y, w)
    n = X.shape[0]
    r = X @ w + b - y
    return (2.0 / n) * (X.T @ r), float(2.0 / n * np.sum(r))


def least_squares(X, y) -> tuple[np.ndarray, float]:
    """The exact minimiser of :func:`mse_loss`: ``(w, b)`` from ``np.linalg.lstsq`` on ``[X, 1]``.

    Appending a column of ones turns the bias into one more weight; least squares then solves the normal
    equations in a numerically careful way (no explicit matrix inverse).
    """
    X, y, _ = _check(X, y)
    A = np.column_stack([X, np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return coef[:-1], float(coef[-1])


@dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`gradient_descent` returns.

    Attributes:
        w: the final weights, shape ``(d,)``. b: the final bias.
        losses: the full-data loss after each step, shape ``(steps,)``; shorter if the loss overflowed, in which
            case its last entry is that inf or NaN.
        diverged: the loss overflowed to inf/NaN (training stopped there) or ended higher than it started.
        initial_loss: the loss at the starting point ``(w0, b0)``.
        w_history: the weights after each step, shape ``(len(losses), d)``.
        b_history: the bias after each step, shape ``(len(losses),)``.
    """

    w: np.ndarray
    b: float
    losses: np.ndarray
    diverged: bool
    initial_loss: float
    w_history: np.ndarray
    b_history: np.ndarray

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    """Endless mini-batches of indices: each epoch a fresh permutation, cut into pieces of ``batch_size``.

    The last piece of an epoch is smaller when ``batch_size`` does not divide ``n`` (nothing is dropped).
    """
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def gradient_descent(
    X,
    y,
    lr: float,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    w0=None,
    b0: float = 0.0,
) -> FitResult:
    """Fit the linear model by (mini-batch, stochastic or full-batch) gradient descent on the MSE.

    Each step computes :func:`mse_gradients` on a batch of examples and moves ``w -= lr * dw``,
    ``b -= lr * db``.

    Args:
        X: inputs ``(n, d)``. y: targets ``(n,)``.
        lr: learning rate, > 0. steps: number of updates (not epochs), >= 1.
        batch_size: ``None`` (or ``n``) for full-batch gradient descent; ``1`` for stochastic gradient descent;
            ``k`` for mini-batches of ``k`` examples, reshuffled at the start of every epoch.
        seed: seeds the shuffling, so a stochastic run can be repeated exactly.
        w0: starting weights ``(d,)``, zeros by default. b0: starting bias.

    Returns:
        A :class:`FitResult`. The loss it records is always the loss on all ``n`` examples, so runs with
        different batch sizes can be compared step by step.
    """
    X, y, _ = _check(X, y)
    n, d = X.shape
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be None or between 1 and n={n}, got {batch_size}")
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64)
    check_shape(w, (d,), "w0")
    b = float(b0)
    full_batch = batch_size is None or batch_size == n
    batches = None if full_batch else _batches(n, batch_size, np.random.default_rng(seed))
    initial_loss = mse_loss(X, y, w, b)
    losses, w_history, b_history = [], [], []
    # Too large a learning rate is a lesson here, not an error: the overflow shows up in the result instead.
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            if full_batch:
                dw, db = mse_gradients(X, y, w, b)
            else:
                idx = next(batches)
                dw, db = mse_gradients(X[idx], y[idx], w, b)
            w = w - lr * dw
            b = b - lr * db
            loss = mse_loss(X, y, w, b)
            losses.append(loss)
            w_history.append(w)
            b_history.append(b)
            if not np.isfinite(loss):
                break
    losses_arr = np.array(losses)
    diverged = bool(not np.isfinite(losses_arr[-1]) or losses_arr[-1] > initial_loss)
    return FitResult(
        w=w,
        b=b,
        losses=losses_arr,
        diverged=diverged,
        initial_loss=initial_loss,
        w_history=np.array(w_history).reshape(len(losses), d),
        b_history=np.array(b_history),
    )
