"""Tests of lmbook.regularisation's L1 part: penalty and subgradient against torch autograd in float64, soft
thresholding against torch's softshrink, and coordinate descent against scikit-learn's Lasso, ElasticNet and Ridge
and against the optimality (KKT) conditions of the lasso."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from torch.testing import assert_close

from lmbook.regularisation import fit_linear_penalised, l1_penalty, l1_subgradient, soft_threshold
from lmbook.testing import ShapeError


def regression_data(seed: int = 0, n: int = 60, c: int = 8, informative: int = 3):
    """Correlated standardised features, of which only the first ``informative`` matter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, c)) + 0.5 * rng.normal(size=(n, 1))  # a shared component correlates the columns
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    w_true = np.zeros(c)
    w_true[:informative] = [3.0, -2.0, 1.5][:informative]
    return X, X @ w_true + 4.0 + 0.5 * rng.normal(size=n)


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_l1_penalty_and_subgradient_match_torch_autograd(strength):
    w = np.array([[-1.5, 0.0, 2.0], [0.25, -0.0, -3.0]])
    w_t = torch.tensor(w, requires_grad=True)
    penalty_t = strength * w_t.abs().sum()
    penalty_t.backward()
    assert l1_penalty([w, w], strength) == pytest.approx(2 * penalty_t.item(), abs=1e-15)
    assert_close(torch.from_numpy(l1_subgradient(w, strength)), w_t.grad)  # 0 at w = 0, as autograd


def test_soft_threshold_matches_torch_softshrink_and_solves_its_problem():
    v = np.linspace(-3, 3, 61)
    for t in (0.0, 0.5, 1.7):
        assert_close(torch.from_numpy(soft_threshold(v, t)), F.softshrink(torch.from_numpy(v), t))
    # It is the minimiser of (w - v)^2 / 2 + t |w|: check by brute force on a fine grid of w.
    grid = np.linspace(-4, 4, 80_001)
    t = 0.8
    for v_one in (-2.0, -0.5, 0.3, 1.1):
        best = grid[np.argmin(0.5 * (grid - v_one) ** 2 + t * np.abs(grid))]
        assert soft_threshold(v_one, t) == pytest.approx(best, abs=1e-4)
    assert np.all(soft_threshold(np.array([-0.8, 0.2, 0.79]), 0.8) == 0.0)  # exact zeros inside the threshold


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("l1", [0.01, 0.1, 0.5])
def test_lasso_matches_sklearn(seed, l1):
    X, y = regression_data(seed)
    w, b = fit_linear_penalised(X, y, l1=l1, tol=1e-12)
    ref = Lasso(alpha=l1, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(w, ref.coef_, atol=1e-8)
    assert b == pytest.approx(ref.intercept_, abs=1e-8)
    assert np.array_equal(w == 0.0, ref.coef_ == 0.0)  # the same exact zeros


def test_elastic_net_and_ridge_match_sklearn():
    X, y = regression_data(1)
    l1, l2 = 0.1, 0.3
    w, b = fit_linear_penalised(X, y, l1=l1, l2=l2, tol=1e-12)
    ref = ElasticNet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(w, ref.coef_, atol=1e-8)
    assert b == pytest.approx(ref.intercept_, abs=1e-8)
    w, b = fit_linear_penalised(X, y, l2=l2, tol=1e-13)
    ridge = Ridge(alpha=len(y) * l2).fit(X, y)
    np.testing.assert_allclose(w, ridge.coef_, atol=1e-8)
    assert b == pytest.approx(ridge.intercept_, abs=1e-8)
    assert np.all(w != 0.0)  # ridge shrinks, but sets nothing exactly to 0


def test_lasso_solution_satisfies_the_optimality_conditions_and_is_sparse():
    X, y = regression_data(2, c=10)
    l1 = 0.2
    w, b = fit_linear_penalised(X, y, l1=l1, tol=1e-13)
    grad = -X.T @ (y - X @ w - b) / len(y)  # gradient of the squared-error part
    active = w != 0
    np.testing.assert_allclose(grad[active], -l1 * np.sign(w[active]), atol=1e-9)  # balanced by the penalty
    assert np.all(np.abs(grad[~active]) <= l1 + 1e-9)  # too weak to leave 0
    assert active[:3].all() and (~active[3:]).sum() >= 5  # keeps the informative features, drops most others


def test_no_penalty_is_least_squares_and_warm_start_gives_the_same_answer():
    X, y = regression_data(3)
    w, b = fit_linear_penalised(X, y, tol=1e-13)
    design = np.column_stack([X, np.ones(len(y))])
    expected, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(np.append(w, b), expected, atol=1e-8)
    w_warm, _ = fit_linear_penalised(X, y, l1=0.1, w_init=w, tol=1e-13)
    w_cold, _ = fit_linear_penalised(X, y, l1=0.1, tol=1e-13)
    np.testing.assert_allclose(w_warm, w_cold, atol=1e-9)


def test_strong_l1_zeroes_every_weight_and_leaves_the_mean():
    X, y = regression_data(4)
    l1_max = np.max(np.abs(X.T @ (y - y.mean()))) / len(y)  # the smallest strength at which all weights are 0
    w, b = fit_linear_penalised(X, y, l1=l1_max * 1.001)
    assert np.all(w == 0.0) and b == pytest.approx(y.mean())
    w, _ = fit_linear_penalised(X, y, l1=l1_max * 0.9)
    assert np.any(w != 0.0)


def test_fit_linear_penalised_checks_its_arguments():
    X, y = regression_data(0)
    with pytest.raises(ShapeError):
        fit_linear_penalised(X, y[:-1])
    with pytest.raises(ValueError, match="must not be negative"):
        fit_linear_penalised(X, y, l1=-1.0)
    with pytest.raises(RuntimeError, match="did not converge"):
        fit_linear_penalised(X, y, l1=1e-4, max_sweeps=1, tol=0.0)
    with pytest.raises(ValueError, match="must not be negative"):
        soft_threshold([1.0], -0.1)
