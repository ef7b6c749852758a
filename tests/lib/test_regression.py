"""Reference tests of lmbook.regression: losses and gradients against torch, the fit against least squares."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression
from torch.testing import assert_close

from lmbook.regression import (
    FitResult,
    gradient_descent,
    least_squares,
    make_linear_data,
    mse_gradients,
    mse_loss,
    predict,
)
from lmbook.testing import ShapeError

X, Y = make_linear_data(n=100, w=(2.0, -1.0, 0.5), b=0.5, noise=0.3, seed=0)
W = np.array([0.3, -0.2, 0.1])
B = 0.7


def torch_loss_and_grads(X, y, w, b):
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = F.mse_loss(torch.from_numpy(X) @ wt + bt, torch.from_numpy(y))
    dw, db = torch.autograd.grad(loss, (wt, bt))
    return loss.detach(), dw, db


def test_make_linear_data_shapes_and_reproducibility():
    X1, y1 = make_linear_data(n=50, seed=3)
    X2, y2 = make_linear_data(n=50, seed=3)
    assert X1.shape == (50, 2) and y1.shape == (50,)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(make_linear_data(n=50, seed=4)[0], X1)
    X0, y0 = make_linear_data(n=20, w=(3.0,), b=-1.0, noise=0.0)
    np.testing.assert_allclose(y0, 3.0 * X0[:, 0] - 1.0)


def test_predict_and_loss_match_torch():
    ref_loss, _, _ = torch_loss_and_grads(X, Y, W, B)
    np.testing.assert_allclose(predict(X, W, B), X @ W + B)
    assert predict(X, W, B).shape == (100,)
    assert_close(torch.tensor(mse_loss(X, Y, W, B), dtype=torch.float64), ref_loss)


def test_gradients_match_autograd():
    _, ref_dw, ref_db = torch_loss_and_grads(X, Y, W, B)
    dw, db = mse_gradients(X, Y, W, B)
    assert dw.shape == W.shape and isinstance(db, float)
    assert_close(torch.from_numpy(dw), ref_dw)
    assert_close(torch.tensor(db, dtype=torch.float64), ref_db)


def test_the_transposed_gradient_of_seed_map_mistake_3_is_rejected():
    """Mistake 3: (y_pred - y) @ X.T is not a gradient; X.T @ (y_pred - y) * 2 / n is."""
    X1, y1 = make_linear_data(n=8, w=(1.5,), seed=2)  # one feature, so the wrong product even runs
    w1 = np.array([0.2])
    residual = (predict(X1, w1, 0.0) - y1)[:, None]  # a column, as in the article
    wrong = residual @ X1.T
    assert wrong.shape == (8, 8)  # an (n, n) matrix, not one number per weight
    dw, _ = mse_gradients(X1, y1, w1, 0.0)
    assert dw.shape == w1.shape == (1,)
    _, ref_dw, _ = torch_loss_and_grads(X1, y1, w1, 0.0)
    assert_close(torch.from_numpy(dw), ref_dw)
    # With the shapes made to fit, the un-averaged gradient is still n times too large.
    unaveraged = 2 * X1.T @ residual[:, 0]
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(unaveraged), ref_dw)
    np.testing.assert_allclose(unaveraged, len(X1) * dw)


def test_a_summed_loss_makes_a_good_learning_rate_diverge():
    """Mistake 3, second half: never averaging the loss multiplies the gradient, and so each step, by n."""
    lr = 0.1
    w, b = np.zeros(3), 0.0
    for _ in range(20):
        dw, db = mse_gradients(X, Y, w, b)
        w, b = w - lr * len(X) * dw, b - lr * len(X) * db  # the gradient of the summed loss
    with np.errstate(over="ignore", invalid="ignore"):
        summed = mse_loss(X, Y, w, b)
    averaged = gradient_descent(X, Y, lr=lr, steps=20)
    assert not summed < 1e6  # exploded (or overflowed)
    assert averaged.final_loss < 0.2 and not averaged.diverged


def test_least_squares_matches_lstsq_and_sklearn():
    w, b = least_squares(X, Y)
    A = np.column_stack([X, np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    np.testing.assert_allclose(w, coef[:3], rtol=1e-12)
    assert b == pytest.approx(coef[3], rel=1e-12)
    ref = LinearRegression().fit(X, Y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-10)
    assert b == pytest.approx(ref.intercept_, rel=1e-10)
    # And it is a minimum: the gradient vanishes there.
    dw, db = mse_gradients(X, Y, w, b)
    np.testing.assert_allclose(dw, 0.0, atol=1e-12)
    assert db == pytest.approx(0.0, abs=1e-12)


def test_gradient_descent_converges_to_least_squares():
    fit = gradient_descent(X, Y, lr=0.1, steps=500)
    w, b = least_squares(X, Y)
    np.testing.assert_allclose(fit.w, w, atol=1e-8)
    assert fit.b == pytest.approx(b, abs=1e-8)
    assert fit.final_loss == pytest.approx(mse_loss(X, Y, w, b), rel=1e-10)
    assert fit.losses.shape == (500,) and np.all(np.diff(fit.losses) <= 1e-15)  # full batch: never goes up
    assert fit.initial_loss == mse_loss(X, Y, np.zeros(3), 0.0)
    assert fit.w_history.shape == (500, 3) and fit.b_history.shape == (500,)
    np.testing.assert_array_equal(fit.w_history[-1], fit.w)
    assert fit.b_history[-1] == fit.b


def test_full_batch_gradient_descent_matches_torch_sgd():
    fit = gradient_descent(X, Y, lr=0.05, steps=50, w0=W, b0=B)
    wt = torch.tensor(W, requires_grad=True)
    bt = torch.tensor(B, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([wt, bt], lr=0.05)
    for step in range(50):
        opt.zero_grad()
        F.mse_loss(torch.from_numpy(X) @ wt + bt, torch.from_numpy(Y)).backward()
        opt.step()
        assert_close(torch.from_numpy(fit.w_history[step]), wt.detach())
    assert_close(torch.tensor(fit.b, dtype=torch.float64), bt.detach())


def test_batch_size_n_is_full_batch():
    full = gradient_descent(X, Y, lr=0.1, steps=30)
    same = gradient_descent(X, Y, lr=0.1, steps=30, batch_size=len(X), seed=7)
    np.testing.assert_array_equal(full.losses, same.losses)
    np.testing.assert_array_equal(full.w, same.w)


def test_minibatches_follow_a_fresh_permutation_each_epoch():
    """Reference loop: each epoch shuffles with the seeded generator and walks through it in pieces."""
    n, k, steps, lr = 10, 4, 9, 0.05
    Xs, ys = X[:n], Y[:n]
    fit = gradient_descent(Xs, ys, lr=lr, steps=steps, batch_size=k, seed=5)
    rng = np.random.default_rng(5)
    w, b, done = np.zeros(3), 0.0, 0
    while done < steps:
        order = rng.permutation(n)
        for start in range(0, n, k):  # batches of 4, 4 and 2: the last one is smaller, not dropped
            if done == steps:
                break
            idx = order[start : start + k]
            dw, db = mse_gradients(Xs[idx], ys[idx], w, b)
            w, b = w - lr * dw, b - lr * db
            np.testing.assert_allclose(fit.w_history[done], w, rtol=1e-14)
            done += 1


def test_stochastic_gradient_descent_is_seeded_and_noisy():
    a = gradient_descent(X, Y, lr=0.02, steps=300, batch_size=1, seed=1)
    b = gradient_descent(X, Y, lr=0.02, steps=300, batch_size=1, seed=1)
    c = gradient_descent(X, Y, lr=0.02, steps=300, batch_size=1, seed=2)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)
    assert np.any(np.diff(a.losses) > 0)  # single examples sometimes push the full-data loss up
    w, b_ls = least_squares(X, Y)
    assert a.final_loss < 1.2 * mse_loss(X, Y, w, b_ls)  # but on the whole it gets there


def test_too_large_a_learning_rate_is_reported_as_diverged():
    fit = gradient_descent(X, Y, lr=1.2, steps=50)
    assert fit.diverged and fit.final_loss > fit.initial_loss and len(fit.losses) == 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow is reported, not warned about
        blown = gradient_descent(X, Y, lr=5.0, steps=2000)
    assert blown.diverged and len(blown.losses) < 2000 and not np.isfinite(blown.final_loss)
    assert np.all(np.isfinite(blown.losses[:-1]))
    assert not gradient_descent(X, Y, lr=0.01, steps=50).diverged


def test_fit_result_is_frozen():
    fit = gradient_descent(X, Y, lr=0.1, steps=2)
    assert isinstance(fit, FitResult)
    with pytest.raises(AttributeError):
        fit.b = 1.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: predict(X, np.zeros(2), 0.0), ShapeError, r"w: expected shape \(d,\), got \(2,\) \[d=3\]"),
        (lambda: mse_loss(X, Y[:50], W, B), ShapeError, r"y: expected shape \(n,\), got \(50,\) \[n=100\]"),
        (lambda: mse_gradients(X[:, 0], Y, W, B), ShapeError, r"X: expected shape \(n, d\), got \(100,\)"),
        (lambda: least_squares(X, Y[:, None]), ShapeError, "y: expected shape"),
        (lambda: gradient_descent(X, Y, lr=0.0, steps=5), ValueError, "learning rate"),
        (lambda: gradient_descent(X, Y, lr=0.1, steps=0), ValueError, "steps"),
        (lambda: gradient_descent(X, Y, lr=0.1, steps=5, batch_size=0), ValueError, "batch_size"),
        (lambda: gradient_descent(X, Y, lr=0.1, steps=5, batch_size=101), ValueError, "batch_size"),
        (lambda: gradient_descent(X, Y, lr=0.1, steps=5, w0=np.zeros(2)), ShapeError, "w0"),
    ],
)
def test_bad_arguments_are_rejected(call, error, message):
    with pytest.raises(error, match=message):
        call()
