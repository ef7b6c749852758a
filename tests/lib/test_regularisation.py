"""Tests of lmbook.regularisation: dropout and the L2 penalty against torch in float64, early stopping on a
scripted loss sequence, ridge polynomial fits against numpy and scikit-learn, and the overfitting experiment."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import Ridge
from torch.testing import assert_close

from lmbook.regularisation import (
    GRID_SIZE,
    N_VAL,
    X_RANGE,
    EarlyStopping,
    PolyResult,
    degree_sweep,
    dropout,
    dropout_backward,
    evaluate_polynomial,
    fit_polynomial,
    l2_grad,
    l2_penalty,
    polynomial_experiment,
    polynomial_features,
    smooth_target,
)
from lmbook.testing import ShapeError

RNG = np.random.default_rng(0)
X = RNG.normal(0, 1, (16, 10))
DOUT = RNG.normal(0, 1, (16, 10))


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# ----- dropout ------------------------------------------------------------------------------------------------


def torch_dropout(x, dout, p, seed=0):
    """torch's dropout output, the mask it drew, and the gradient it passes back for upstream gradient dout."""
    torch.manual_seed(seed)
    x_t = t(x, grad=True)
    out = F.dropout(x_t, p=p, training=True)
    (grad,) = torch.autograd.grad(out, x_t, t(dout))
    # x has no zeros, so an output of 0 marks a dropped element.
    return out.detach(), out.detach() != 0, grad


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_with_torchs_mask_matches_torch_values_and_gradient(p):
    ref_out, ref_mask, ref_grad = torch_dropout(X, DOUT, p)
    out, mask = dropout(X, p, rng=None, mask=ref_mask.numpy())
    assert_close(torch.from_numpy(out), ref_out)
    assert_close(torch.from_numpy(dropout_backward(DOUT, mask, p)), ref_grad)
    assert mask.dtype == bool and np.array_equal(mask, ref_mask.numpy())


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_draws_its_own_mask_and_scales_the_kept_elements(p):
    out, mask = dropout(X, p, np.random.default_rng(1))
    assert out.shape == mask.shape == X.shape
    np.testing.assert_allclose(out[mask], X[mask] / (1 - p))  # inverted dropout: survivors are scaled up
    assert np.all(out[~mask] == 0.0)
    # torch gives the same output and gradient once it is given the same mask, i.e. same function.
    x_t = t(X, grad=True)
    ref = x_t * t(mask.astype(np.float64)) / (1 - p)
    (ref_grad,) = torch.autograd.grad(ref, x_t, t(DOUT))
    assert_close(torch.from_numpy(out), ref.detach())
    assert_close(torch.from_numpy(dropout_backward(DOUT, mask, p)), ref_grad)


def test_dropout_keeps_the_expected_value_and_drops_a_share_p():
    p = 0.3
    x = np.linspace(-2, 2, 50)
    rng = np.random.default_rng(2)
    draws = [dropout(x, p, rng) for _ in range(4000)]
    outs = np.array([out for out, _ in draws])
    kept = np.array([mask for _, mask in draws])
    assert kept.mean() == pytest.approx(1 - p, abs=0.01)
    # The mean over many masks approaches x itself; without the 1/(1-p) it would approach 0.7 x.
    np.testing.assert_allclose(outs.mean(axis=0), x, atol=0.05)
    assert np.abs(outs.mean(axis=0) - (1 - p) * x).max() > 0.3


def test_dropout_is_seeded_by_its_generator():
    a, _ = dropout(X, 0.5, np.random.default_rng(7))
    b, _ = dropout(X, 0.5, np.random.default_rng(7))
    c, _ = dropout(X, 0.5, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_with_p_zero_or_not_training_is_the_identity():
    out, mask = dropout(X, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, X)
    assert mask.all()
    np.testing.assert_array_equal(dropout_backward(DOUT, mask, 0.0), DOUT)
    out, mask = dropout(X, 0.9, rng=None, training=False)
    np.testing.assert_array_equal(out, X)
    assert mask.all() and out is not X
    assert_close(torch.from_numpy(out), F.dropout(t(X), p=0.9, training=False))


def test_dropout_with_p_one_drops_everything_like_torch():
    ref_out, _, ref_grad = torch_dropout(X, DOUT, 1.0)
    out, mask = dropout(X, 1.0, np.random.default_rng(0))
    assert not mask.any()
    assert_close(torch.from_numpy(out), ref_out)
    assert_close(torch.from_numpy(dropout_backward(DOUT, mask, 1.0)), ref_grad)
    assert np.all(np.isfinite(out))


def test_dropout_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout(X, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_backward(DOUT, np.ones(X.shape, bool), -0.1)
    with pytest.raises(ValueError, match="rng"):
        dropout(X, 0.5, rng=None)
    with pytest.raises(ShapeError, match="mask"):
        dropout(X, 0.5, rng=None, mask=np.ones((16, 9), bool))
    with pytest.raises(ShapeError, match="mask"):
        dropout_backward(DOUT, np.ones(10, bool), 0.5)


# ----- L2 penalty ---------------------------------------------------------------------------------------------

PARAMS = [RNG.normal(0, 1, (4, 3)), RNG.normal(0, 1, (3,)), RNG.normal(0, 1, (3, 1))]


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3, 0.5])
def test_l2_penalty_and_grad_match_torch_autograd(weight_decay):
    tensors = [t(w, grad=True) for w in PARAMS]
    ref = weight_decay / 2 * sum((w**2).sum() for w in tensors)
    ref_grads = torch.autograd.grad(ref, tensors)
    assert_close(t(l2_penalty(PARAMS, weight_decay)), ref.detach())
    for w, ref_grad in zip(PARAMS, ref_grads, strict=True):
        assert_close(torch.from_numpy(l2_grad(w, weight_decay)), ref_grad)


def test_l2_grad_is_the_derivative_of_l2_penalty():
    """A central difference of the penalty agrees with the gradient (a factor-2 mistake would not)."""
    w, wd, h = PARAMS[0].copy(), 0.3, 1e-6
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (l2_penalty(up, wd) - l2_penalty(down, wd)) / (2 * h)
    np.testing.assert_allclose(l2_grad(w, wd), numeric, rtol=1e-6)


def test_l2_grad_is_torch_sgd_weight_decay():
    lr, wd = 0.1, 0.05
    w_t = t(PARAMS[0], grad=True)
    optimiser = torch.optim.SGD([w_t], lr=lr, weight_decay=wd)
    w_t.grad = torch.zeros_like(w_t)  # no loss gradient: only the decay acts
    optimiser.step()
    assert_close(torch.from_numpy(PARAMS[0] - lr * l2_grad(PARAMS[0], wd)), w_t.detach())
    # ... which shrinks every weight by the same factor 1 - lr * wd.
    np.testing.assert_allclose(w_t.detach().numpy(), (1 - lr * wd) * PARAMS[0])


def test_l2_penalty_accepts_one_array_and_rejects_negative_strength():
    assert l2_penalty(np.array([3.0, 4.0]), 2.0) == pytest.approx(25.0)
    assert l2_penalty([], 1.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        l2_penalty(PARAMS, -1.0)
    with pytest.raises(ValueError, match="negative"):
        l2_grad(PARAMS[0], -1.0)


# ----- early stopping -----------------------------------------------------------------------------------------


def run(stopper: EarlyStopping, losses) -> list[bool]:
    return [stopper.step(loss) for loss in losses]


def test_early_stopping_on_a_scripted_loss_sequence():
    losses = [1.0, 0.8, 0.85, 0.7, 0.72, 0.71, 0.75, 0.69]
    stopper = EarlyStopping(patience=3)
    assert stopper.best == math.inf and stopper.best_step == -1
    decisions = run(stopper, losses[:7])
    # Best 0.7 at index 3; indices 4, 5, 6 do not improve on it, so the third of them says stop.
    assert decisions == [False, False, False, False, False, False, True]
    assert stopper.best == 0.7 and stopper.best_step == 3 and losses[stopper.best_step] == stopper.best
    assert stopper.num_steps == 7 and stopper.wait == 3 and stopper.stopped


def test_early_stopping_resets_its_patience_on_improvement():
    stopper = EarlyStopping(patience=2)
    assert run(stopper, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85]) == [False] * 6
    assert stopper.best_step == 4 and stopper.wait == 1
    assert stopper.step(0.81) is True


def test_early_stopping_min_delta_ignores_tiny_improvements():
    stopper = EarlyStopping(patience=2, min_delta=0.05)
    assert run(stopper, [1.0, 0.97, 0.96]) == [False, False, True]
    assert stopper.best == 1.0 and stopper.best_step == 0
    plain = EarlyStopping(patience=2)
    assert run(plain, [1.0, 0.97, 0.96]) == [False, False, False]
    assert plain.best == 0.96


def test_early_stopping_treats_nan_as_no_improvement_and_validates():
    stopper = EarlyStopping(patience=1)
    assert stopper.step(0.5) is False
    assert stopper.step(float("nan")) is True and stopper.best == 0.5
    assert "best_step=0" in repr(stopper)
    tie = EarlyStopping(patience=1)
    assert run(tie, [0.5, 0.5]) == [False, True]  # an equal loss is not an improvement
    assert tie.best_step == 0
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(patience=2, min_delta=-0.1)


# ----- polynomial fits ----------------------------------------------------------------------------------------

XS = np.random.default_rng(3).uniform(-1, 1, 30)
YS = smooth_target(XS) + np.random.default_rng(4).normal(0, 0.3, 30)


def test_polynomial_features_are_increasing_powers():
    phi = polynomial_features(np.array([2.0, -1.0, 0.5]), 3)
    np.testing.assert_allclose(phi, [[1, 2, 4, 8], [1, -1, 1, -1], [1, 0.5, 0.25, 0.125]])
    assert polynomial_features(XS, 0).shape == (30, 1)
    with pytest.raises(ShapeError):
        polynomial_features(np.zeros((3, 1)), 2)
    with pytest.raises(ValueError, match="degree"):
        polynomial_features(XS, -1)


@pytest.mark.parametrize("degree", [0, 1, 3, 7])
def test_least_squares_fit_matches_np_polyfit(degree):
    coeffs = fit_polynomial(XS, YS, degree)
    assert coeffs.shape == (degree + 1,)
    np.testing.assert_allclose(coeffs, np.polyfit(XS, YS, degree)[::-1], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(evaluate_polynomial(coeffs, XS), np.polyval(np.polyfit(XS, YS, degree), XS))


@pytest.mark.parametrize(("degree", "l2"), [(3, 0.1), (6, 1e-3), (9, 1.0)])
def test_ridge_fit_matches_sklearn_ridge_with_an_unpenalised_intercept(degree, l2):
    coeffs = fit_polynomial(XS, YS, degree, l2=l2)
    ref = Ridge(alpha=l2, solver="svd").fit(polynomial_features(XS, degree)[:, 1:], YS)
    np.testing.assert_allclose(coeffs[0], ref.intercept_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(coeffs[1:], ref.coef_, rtol=1e-7, atol=1e-9)
    # The closed form (Phi^T Phi + l2 D)^-1 Phi^T y, with D the identity except D[0, 0] = 0.
    phi = polynomial_features(XS, degree)
    D = np.eye(degree + 1)
    D[0, 0] = 0.0
    np.testing.assert_allclose(coeffs, np.linalg.solve(phi.T @ phi + l2 * D, phi.T @ YS), rtol=1e-6, atol=1e-8)


def test_ridge_shrinks_the_coefficients_but_not_the_mean():
    free = fit_polynomial(XS, YS, 9)
    norms = [np.linalg.norm(fit_polynomial(XS, YS, 9, l2=l2)[1:]) for l2 in (1e-4, 1e-2, 1.0, 100.0)]
    assert norms[0] < np.linalg.norm(free[1:]) and np.all(np.diff(norms) < 0)
    # A huge penalty leaves only the constant term, which is then the mean of y.
    coeffs = fit_polynomial(XS, YS, 5, l2=1e12)
    assert coeffs[0] == pytest.approx(YS.mean()) and np.abs(coeffs[1:]).max() < 1e-9


def test_fit_polynomial_checks_its_arguments():
    with pytest.raises(ShapeError, match="y"):
        fit_polynomial(XS, YS[:-1], 2)
    with pytest.raises(ValueError, match="l2"):
        fit_polynomial(XS, YS, 2, l2=-1.0)


# ----- the overfitting experiment -----------------------------------------------------------------------------


def test_polynomial_experiment_returns_consistent_numbers():
    r = polynomial_experiment(4, 15, noise=0.2, seed=1, l2=1e-3)
    assert isinstance(r, PolyResult)
    assert (r.degree, r.n_train, r.noise, r.seed, r.l2) == (4, 15, 0.2, 1, 1e-3)
    assert r.x_train.shape == r.y_train.shape == (15,)
    assert r.x_val.shape == r.y_val.shape == (N_VAL,)
    assert r.grid_x.shape == r.grid_y.shape == r.grid_true.shape == (GRID_SIZE,)
    assert X_RANGE[0] <= r.x_train.min() and r.x_train.max() <= X_RANGE[1]
    np.testing.assert_allclose(r.coeffs, fit_polynomial(r.x_train, r.y_train, 4, l2=1e-3))
    np.testing.assert_allclose(r.grid_y, evaluate_polynomial(r.coeffs, r.grid_x))
    np.testing.assert_allclose(r.grid_true, smooth_target(r.grid_x))
    assert r.train_mse == pytest.approx(np.mean((evaluate_polynomial(r.coeffs, r.x_train) - r.y_train) ** 2))
    assert r.val_mse == pytest.approx(np.mean((evaluate_polynomial(r.coeffs, r.x_val) - r.y_val) ** 2))


def test_polynomial_experiment_data_depend_only_on_seed_and_grow_by_adding_points():
    a, b = polynomial_experiment(2, 10, seed=5), polynomial_experiment(9, 10, seed=5, l2=0.1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    bigger = polynomial_experiment(2, 25, seed=5)
    np.testing.assert_array_equal(bigger.x_train[:10], a.x_train)  # the 10 points are among the 25
    np.testing.assert_array_equal(bigger.y_train[:10], a.y_train)
    np.testing.assert_array_equal(bigger.x_val, a.x_val)
    assert not np.array_equal(polynomial_experiment(2, 10, seed=6).x_train, a.x_train)


def test_training_error_falls_with_degree_while_validation_error_rises_at_small_n():
    degrees = np.arange(10)
    train_mse, val_mse = degree_sweep(degrees, n_train=10, noise=0.3, seed=0)
    # More capacity never fits the training points worse: the models are nested.
    assert np.all(np.diff(train_mse) <= 1e-12)
    assert train_mse[9] < 1e-20  # 10 coefficients through 10 points: an exact fit
    best = int(np.argmin(val_mse))
    assert 2 <= best <= 6
    assert val_mse[9] > 10 * val_mse[best]  # the exact fit is far worse on new data
    assert np.all(np.diff(val_mse[best:]) > 0)
    for degree in (0, 3, 9):
        r = polynomial_experiment(degree, 10, noise=0.3, seed=0)
        assert (r.train_mse, r.val_mse) == pytest.approx((train_mse[degree], val_mse[degree]))


def test_more_data_or_an_l2_penalty_tames_the_high_degree_fit():
    _, small = degree_sweep([9], n_train=10)
    _, large = degree_sweep([9], n_train=200)
    _, penalised = degree_sweep([9], n_train=10, l2=1e-2)
    assert large[0] < 0.15 and small[0] > 10 * large[0]  # noise 0.3: the best possible is about 0.09
    assert penalised[0] < small[0] / 10


def test_experiment_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_train"):
        polynomial_experiment(3, 0)
    with pytest.raises(ValueError, match="noise"):
        degree_sweep([1], 10, noise=-0.1)
