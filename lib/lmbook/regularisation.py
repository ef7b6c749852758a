"""Overfitting and the tools against it: a polynomial-fitting experiment, L2 and L1 penalties, dropout, early stopping.

Introduced in chapter 4, Training well: data, overfitting, evaluation. A model **overfits** when it learns the
noise of its particular training examples as well as the pattern behind them: its training error keeps falling
while its error on held-out data rises. The polynomial experiment makes this visible in one dimension, where
the degree of the polynomial is the model's capacity. The remedies each limit capacity differently:

- **L2 regularisation** (weight decay) adds ``weight_decay / 2 * sum(w ** 2)`` to the loss, pulling weights
  towards 0 so that the model prefers smooth functions;
- **L1 regularisation** adds ``strength * sum(|w|)``, which sets many weights exactly to 0 (a sparse model);
  :func:`fit_linear_penalised` fits linear models with either penalty or both (the lasso, ridge, elastic net);
- **dropout** zeroes a random share ``p`` of activations at every training step, so that no unit can rely on
  any particular other unit being there;
- **early stopping** watches the validation loss and stops training once it has not improved for a while.

All functions are numpy; :func:`dropout` and :func:`l2_grad` give the same numbers as PyTorch's dropout and
``weight_decay`` (the tests check this in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmbook.testing import check_shape

# ----- dropout ------------------------------------------------------------------------------------------------


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the dropout probability p must be in [0, 1], got {p}")
    return float(p)


def dropout(
    x, p: float, rng: np.random.Generator | None, training: bool = True, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout: zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    The scaling keeps the expected value of every element unchanged, ``E[out] = (1 - p) * x / (1 - p) = x``,
    so the next layer sees inputs of the same size in training and at test time, and at test time dropout is
    simply switched off (``training=False``) with nothing to rescale.

    Args:
        x: activations, any shape, e.g. ``(B, C)``.
        p: probability of dropping an element, in ``[0, 1]``. ``p = 0`` changes nothing; ``p = 1`` drops
            everything and returns zeros (as ``torch.nn.functional.dropout`` does), not a division by zero.
        rng: a ``numpy.random.Generator`` that draws the mask (unused when ``mask`` is given or not training).
        training: when False, return ``x`` unchanged (as float64) with an all-True mask.
        mask: optionally, the keep mask to use instead of drawing one: boolean, shape of ``x``, True = kept.
            Handy for checking against another implementation with the same mask.

    Returns:
        out: float64, shape of ``x``. mask: bool, shape of ``x``, True where the element was kept; pass it to
        :func:`dropout_backward`.
    """
    x = np.asarray(x, dtype=np.float64)
    p = _check_p(p)
    if not training:
        return x.copy(), np.ones(x.shape, dtype=bool)
    if mask is None:
        if rng is None:
            raise ValueError("dropout in training mode needs a random generator rng (or a mask)")
        # rng.random() is uniform on [0, 1): it is >= p with probability exactly 1 - p.
        mask = rng.random(x.shape) >= p
    else:
        mask = np.asarray(mask, dtype=bool)
        check_shape(mask, x.shape, "mask")
    if p == 1.0:
        return np.zeros_like(x), mask & False
    return x * mask / (1.0 - p), mask


def dropout_backward(dout, mask, p: float) -> np.ndarray:
    """Gradient of :func:`dropout`'s output with respect to its input, times ``dout``.

    Dropout multiplies each element by a constant, ``mask / (1 - p)``, so the gradient passes through
    the same constant: dropped elements get no gradient, kept ones ``dout / (1 - p)``.

    Args:
        dout: gradient of the loss with respect to dropout's output, any shape.
        mask: the boolean keep mask that :func:`dropout` returned, same shape.
        p: the same dropout probability.

    Returns:
        float64 array, shape of ``dout``.
    """
    dout = np.asarray(dout, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    check_shape(mask, dout.shape, "mask")
    p = _check_p(p)
    if p == 1.0:
        return np.zeros_like(dout)
    return dout * mask / (1.0 - p)


# ----- L2 penalty ---------------------------------------------------------------------------------------------


def _as_list(params) -> list[np.ndarray]:
    if isinstance(params, np.ndarray):
        return [params]
    return [np.asarray(w, dtype=np.float64) for w in params]


def l2_penalty(params, weight_decay: float) -> float:
    """The L2 penalty ``weight_decay / 2 * sum of w ** 2`` over all parameters, to add to the loss.

    The factor 1/2 makes the gradient simply ``weight_decay * w`` (:func:`l2_grad`), which is what PyTorch's
    optimisers add when given ``weight_decay``. Usually only weight matrices are penalised, not biases: a bias
    shifts a unit's output without making the function any less smooth.

    Args:
        params: one array or a list of arrays (any shapes).
        weight_decay: the strength ``lambda >= 0``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must not be negative, got {weight_decay}")
    return 0.5 * weight_decay * float(sum(np.sum(np.square(w)) for w in _as_list(params)))


def l2_grad(param, weight_decay: float) -> np.ndarray:
    """Gradient of :func:`l2_penalty` with respect to one parameter array: ``weight_decay * param``.

    Added to the loss gradient, it makes each gradient-descent step shrink the weights by the factor
    ``1 - lr * weight_decay`` before the usual update: hence the name "weight decay". Shape: like ``param``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must not be negative, got {weight_decay}")
    return weight_decay * np.asarray(param, dtype=np.float64)


# ----- L1 penalty and sparse linear models ----------------------------------------------------------------------


def l1_penalty(params, strength: float) -> float:
    """The L1 penalty ``strength * sum of |w|`` over all parameters, to add to the loss (the lasso's penalty).

    Its pull towards 0 has the same size ``strength`` however small a weight already is, where the L2 pull
    ``weight_decay * w`` fades as ``w`` shrinks; that is why L1 sets weights exactly to 0 and L2 does not.

    Args:
        params: one array or a list of arrays (any shapes). strength: ``lambda >= 0`` (no factor 1/2 here).
    """
    if strength < 0:
        raise ValueError(f"strength must not be negative, got {strength}")
    return strength * float(sum(np.sum(np.abs(w)) for w in _as_list(params)))


def l1_subgradient(param, strength: float) -> np.ndarray:
    """``strength * sign(param)``: a subgradient of :func:`l1_penalty`, the one autograd uses (0 at ``w = 0``).

    ``|w|`` has no derivative at 0; any value in ``[-strength, strength]`` is a valid subgradient there. Plain
    gradient descent with it makes a weight that should be 0 jump back and forth across 0 instead of settling
    on it; :func:`soft_threshold` is the step that lands exactly on 0. Shape: like ``param``.
    """
    if strength < 0:
        raise ValueError(f"strength must not be negative, got {strength}")
    return strength * np.sign(np.asarray(param, dtype=np.float64))


def soft_threshold(v, threshold: float) -> np.ndarray:
    """``sign(v) * max(|v| - threshold, 0)``, elementwise: the proximal operator of ``threshold * |w|``.

    It solves ``min_w (w - v)^2 / 2 + threshold * |w|`` exactly: values within ``threshold`` of 0 become
    exactly 0, the others move ``threshold`` towards 0. (The L2 counterpart, ``min_w (w - v)^2 / 2 + lambda
    w^2 / 2``, gives ``v / (1 + lambda)``, which is never 0 unless ``v`` is.) Equals
    ``torch.nn.functional.softshrink(v, threshold)``. Shape: like ``v``.
    """
    if threshold < 0:
        raise ValueError(f"threshold must not be negative, got {threshold}")
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


def fit_linear_penalised(
    X, y, l1: float = 0.0, l2: float = 0.0, w_init=None, max_sweeps: int = 10_000, tol: float = 1e-10
) -> tuple[np.ndarray, float]:
    """Linear regression with an L1 and/or L2 penalty, by coordinate descent.

    Minimises ``||y - X w - b||^2 / (2 N) + l1 * ||w||_1 + l2 / 2 * ||w||^2`` over ``w`` and the unpenalised
    intercept ``b``. ``l1 > 0, l2 = 0`` is the **lasso** (Tibshirani, 1996), ``l1 = 0`` ridge regression, both
    together the elastic net (Zou and Hastie, 2005). Coordinate descent (Friedman, Hastie and Tibshirani, 2010)
    updates one weight at a time to its exact best value given the others, which for one weight is a
    :func:`soft_threshold` of its least-squares value, so weights land exactly on 0. The same minimiser as
    scikit-learn's ``Lasso(alpha=l1)``, ``ElasticNet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2))`` and
    ``Ridge(alpha=N * l2)``.

    Args:
        X: inputs, shape ``(N, C)``; standardise them first, or the penalty treats features unequally.
        y: targets, shape ``(N,)``. l1, l2: penalty strengths, >= 0.
        w_init: starting weights, shape ``(C,)`` (default zeros); the previous solution is a good start when
            fitting a sequence of strengths (a "warm start").
        max_sweeps: the most passes over all ``C`` weights. tol: stop when no weight moved by more than ``tol``
            in a pass. A RuntimeError says when ``max_sweeps`` was not enough.

    Returns:
        w: float64, shape ``(C,)``. b: the intercept, a float.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_shape(X, (None, None), "X")
    n, c = X.shape
    check_shape(y, (n,), "y")
    if l1 < 0 or l2 < 0:
        raise ValueError(f"l1 and l2 must not be negative, got l1={l1}, l2={l2}")
    x_mean, y_mean = X.mean(axis=0), y.mean()
    Xc = X - x_mean  # centring takes the unpenalised intercept out of the problem
    col_sq = np.sum(Xc**2, axis=0) / n  # (C,): the curvature of the loss along each weight
    w = np.zeros(c) if w_init is None else np.array(w_init, dtype=np.float64)
    check_shape(w, (c,), "w_init")
    residual = (y - y_mean) - Xc @ w  # (N,)
    for _ in range(max_sweeps):
        largest_move = 0.0
        for j in range(c):
            if col_sq[j] + l2 == 0.0:  # a constant feature without L2: its weight stays 0
                new = 0.0
            else:
                # The least-squares value of w_j with the others fixed, then the penalties' effect on it.
                rho = Xc[:, j] @ residual / n + col_sq[j] * w[j]
                new = float(soft_threshold(rho, l1)) / (col_sq[j] + l2)
            if new != w[j]:
                residual -= Xc[:, j] * (new - w[j])
                largest_move = max(largest_move, abs(new - w[j]))
                w[j] = new
        if largest_move <= tol:
            return w, float(y_mean - x_mean @ w)
    raise RuntimeError(f"coordinate descent did not converge in {max_sweeps} sweeps (last move {largest_move:.3g})")


# ----- early stopping -----------------------------------------------------------------------------------------


class EarlyStopping:
    """Decide when to stop training from the validation loss, measured once per epoch (or every few steps).

    Call :meth:`step` with each new validation loss. A loss counts as an improvement when it is lower than the
    best so far by more than ``min_delta``; once ``patience`` losses in a row have not improved, :meth:`step`
    returns True. Keep (a copy of) the model from :attr:`best_step`: that is the one to use, not the last.

    Args:
        patience: how many evaluations without improvement to tolerate, >= 1. Validation losses are noisy, so
            stopping at the first rise would usually stop too early.
        min_delta: the smallest decrease that counts as an improvement, >= 0.

    Attributes:
        best: the lowest loss so far (``inf`` before the first step).
        best_step: 0-based index of the call to :meth:`step` that gave ``best`` (-1 before the first step), so
            ``losses[stopper.best_step] == stopper.best`` when ``losses`` are the values passed in.
        num_steps: number of calls so far. wait: evaluations since the last improvement.
        stopped: whether :meth:`step` has returned True.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must not be negative, got {min_delta}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.best_step = -1
        self.num_steps = 0
        self.wait = 0
        self.stopped = False

    def step(self, val_loss: float) -> bool:
        """Record one validation loss; return True when training should stop. NaN never counts as improving."""
        val_loss = float(val_loss)
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
            self.best_step = self.num_steps
            self.wait = 0
        else:
            self.wait += 1
        self.num_steps += 1
        self.stopped = self.stopped or self.wait >= self.patience
        return self.stopped

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, best={self.best:.4g}, "
            f"best_step={self.best_step}, wait={self.wait})"
        )


# ----- the polynomial experiment ------------------------------------------------------------------------------

X_RANGE = (-1.0, 1.0)  # inputs of the polynomial experiment are drawn uniformly from this interval
N_VAL = 200  # size of the experiment's validation set
GRID_SIZE = 200  # points on which fitted curves are evaluated for drawing


def smooth_target(x) -> np.ndarray:
    """The true function of the polynomial experiment, ``sin(pi x)``: smooth, one full wave on ``[-1, 1]``.

    A polynomial of degree 3 or 5 follows it closely, so any extra degree only adds room to fit the noise.
    Shape: like ``x``.
    """
    return np.sin(np.pi * np.asarray(x, dtype=np.float64))


def polynomial_features(x, degree: int) -> np.ndarray:
    """The powers ``x^0, x^1, ..., x^degree`` as columns: a linear model on them is a polynomial in ``x``.

    Args:
        x: shape ``(n,)``. degree: >= 0.

    Returns:
        float64 array of shape ``(n, degree + 1)``; column ``k`` is ``x ** k`` (increasing powers, the order of
        ``numpy.polynomial`` and scikit-learn's ``PolynomialFeatures``; ``np.polyfit`` lists the highest first).
    """
    x = np.asarray(x, dtype=np.float64)
    check_shape(x, (None,), "x")
    if degree < 0:
        raise ValueError(f"degree must be at least 0, got {degree}")
    return x[:, None] ** np.arange(degree + 1)


def fit_polynomial(x, y, degree: int, l2: float = 0.0) -> np.ndarray:
    """Least-squares polynomial fit, optionally with an L2 penalty (ridge regression).

    Minimises ``sum_i (y_i - sum_k w_k x_i^k)^2 + l2 * sum_{k >= 1} w_k^2``. The constant term ``w_0`` is not
    penalised: shrinking it would pull the whole curve towards 0 instead of making it smoother. The closed form
    is ``w = (Phi^T Phi + l2 D)^{-1} Phi^T y`` with ``Phi`` = :func:`polynomial_features` and ``D`` the identity
    with ``D[0, 0] = 0``; it is solved as the equivalent least-squares problem on ``Phi`` stacked over
    ``sqrt(l2) D``, because forming ``Phi^T Phi`` squares the condition number, which for high powers of ``x``
    is already large. The same coefficients as ``sklearn.linear_model.Ridge(alpha=l2)`` on the columns
    ``x^1 .. x^degree`` (with ``w_0`` as its intercept), and as ``np.polyfit`` when ``l2 = 0``.

    Args:
        x: inputs, shape ``(n,)``. y: targets, shape ``(n,)``.
        degree: >= 0. With ``degree + 1 >= n`` and ``l2 = 0`` the curve passes through every point; of the many
            such polynomials the one with the smallest coefficients is returned.
        l2: penalty strength, >= 0.

    Returns:
        coeffs: shape ``(degree + 1,)``, increasing powers: ``coeffs[k]`` multiplies ``x ** k``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_shape(y, (len(x),), "y")
    if l2 < 0:
        raise ValueError(f"l2 must not be negative, got {l2}")
    phi = polynomial_features(x, degree)
    target = y
    if l2 > 0:
        penalty = np.sqrt(l2) * np.eye(degree + 1)[1:]  # one row per penalised coefficient w_1 .. w_degree
        phi = np.vstack([phi, penalty])
        target = np.concatenate([y, np.zeros(degree)])
    coeffs, *_ = np.linalg.lstsq(phi, target, rcond=None)
    return coeffs


def evaluate_polynomial(coeffs, x) -> np.ndarray:
    """``sum_k coeffs[k] * x ** k`` for ``coeffs`` of shape ``(degree + 1,)`` and ``x`` of shape ``(n,)``."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    check_shape(coeffs, (None,), "coeffs")
    return polynomial_features(x, len(coeffs) - 1) @ coeffs


@dataclass(frozen=True, eq=False)
class PolyResult:
    """One run of :func:`polynomial_experiment`.

    Attributes:
        train_mse, val_mse: mean squared error of the fitted polynomial on the training and validation points.
        coeffs: the fitted coefficients, shape ``(degree + 1,)``, increasing powers.
        x_train, y_train: the training points, shape ``(n_train,)`` each.
        x_val, y_val: the validation points, shape ``(N_VAL,)`` each.
        grid_x: ``GRID_SIZE`` evenly spaced inputs across ``X_RANGE``; grid_y: the fitted polynomial there.
        grid_true: the true function :func:`smooth_target` on ``grid_x``.
        degree, n_train, noise, seed, l2: the settings.
    """

    train_mse: float
    val_mse: float
    coeffs: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray
    grid_true: np.ndarray
    degree: int
    n_train: int
    noise: float
    seed: int
    l2: float


def _noisy_sample(n: int, noise: float, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs uniform on ``X_RANGE`` with targets ``smooth_target(x) + noise``.

    Inputs and noise come from two separate random streams, so the first ``m`` points of a sample of size ``n``
    are the sample of size ``m``: a larger training set adds points to a smaller one instead of replacing it.
    """
    x = np.random.default_rng([seed, stream, 0]).uniform(*X_RANGE, size=n)
    eps = np.random.default_rng([seed, stream, 1]).normal(0.0, noise, size=n)
    return x, smooth_target(x) + eps


def _check_settings(n_train: int, noise: float, l2: float) -> None:
    if n_train < 1:
        raise ValueError(f"n_train must be at least 1, got {n_train}")
    if noise < 0 or l2 < 0:
        raise ValueError(f"noise and l2 must not be negative, got noise={noise}, l2={l2}")


def polynomial_experiment(degree: int, n_train: int, noise: float = 0.3, seed: int = 0, l2: float = 0.0) -> PolyResult:
    """Fit a polynomial to ``n_train`` noisy samples of :func:`smooth_target` and measure it on fresh samples.

    Args:
        degree: the polynomial's degree, the model's capacity, >= 0.
        n_train: number of training points, >= 1. noise: standard deviation of the noise on the targets.
        seed: seeds the training and validation samples (they do not depend on ``degree`` or ``l2``, so runs
            that differ only in those see the same data). l2: ridge penalty, see :func:`fit_polynomial`.

    Returns:
        A :class:`PolyResult`. The validation points are ``N_VAL`` new noisy samples, so even the true function
        has a validation MSE of about ``noise ** 2``; no model can do better on average.
    """
    _check_settings(n_train, noise, l2)
    x_train, y_train = _noisy_sample(n_train, noise, seed, stream=0)
    x_val, y_val = _noisy_sample(N_VAL, noise, seed, stream=1)
    coeffs = fit_polynomial(x_train, y_train, degree, l2=l2)
    grid_x = np.linspace(*X_RANGE, GRID_SIZE)
    return PolyResult(
        train_mse=float(np.mean((evaluate_polynomial(coeffs, x_train) - y_train) ** 2)),
        val_mse=float(np.mean((evaluate_polynomial(coeffs, x_val) - y_val) ** 2)),
        coeffs=coeffs,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        grid_x=grid_x,
        grid_y=evaluate_polynomial(coeffs, grid_x),
        grid_true=smooth_target(grid_x),
        degree=int(degree),
        n_train=int(n_train),
        noise=float(noise),
        seed=int(seed),
        l2=float(l2),
    )


def degree_sweep(
    degrees, n_train: int, noise: float = 0.3, seed: int = 0, l2: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation MSE of :func:`polynomial_experiment` for each degree in ``degrees``.

    Returns:
        train_mse, val_mse: float64 arrays of shape ``(len(degrees),)``. Plotted against the degree they give
        the classic picture: training error falls with every added degree, validation error falls, then rises.
    """
    _check_settings(n_train, noise, l2)
    x_train, y_train = _noisy_sample(n_train, noise, seed, stream=0)
    x_val, y_val = _noisy_sample(N_VAL, noise, seed, stream=1)
    train_mse, val_mse = [], []
    for degree in degrees:
        coeffs = fit_polynomial(x_train, y_train, int(degree), l2=l2)
        train_mse.append(np.mean((evaluate_polynomial(coeffs, x_train) - y_train) ** 2))
        val_mse.append(np.mean((evaluate_polynomial(coeffs, x_val) - y_val) ** 2))
    return np.array(train_mse), np.array(val_mse)
