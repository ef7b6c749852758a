"""Reference tests of lmbook.losses against torch.nn.functional in float64: values and gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.activations import softmax
from lmbook.losses import (
    bce,
    bce_grad,
    bce_with_logits,
    bce_with_logits_grad,
    cross_entropy,
    cross_entropy_grad,
    mse,
    mse_grad,
    one_hot,
)
from lmbook.testing import ShapeError

RNG = np.random.default_rng(0)
B = 16
LOGITS = RNG.normal(0, 3, B)
LABELS = RNG.integers(0, 2, B).astype(np.float64)
PROBS = 1 / (1 + np.exp(-LOGITS))


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def torch_loss_and_grad(loss_fn, pred, target):
    pred_t = t(pred, grad=True)
    loss = loss_fn(pred_t, t(target))
    (grad,) = torch.autograd.grad(loss, pred_t)
    return loss.detach(), grad


def test_bce_matches_torch():
    ref, ref_grad = torch_loss_and_grad(F.binary_cross_entropy, PROBS, LABELS)
    assert_close(t(bce(PROBS, LABELS)), ref)
    assert_close(torch.from_numpy(bce_grad(PROBS, LABELS)), ref_grad)


def test_bce_with_logits_matches_torch():
    ref, ref_grad = torch_loss_and_grad(F.binary_cross_entropy_with_logits, LOGITS, LABELS)
    assert_close(t(bce_with_logits(LOGITS, LABELS)), ref)
    assert_close(torch.from_numpy(bce_with_logits_grad(LOGITS, LABELS)), ref_grad)


def test_bce_with_logits_is_stable_for_extreme_logits():
    z = np.array([-1000.0, -40.0, 40.0, 1000.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = bce_with_logits(z, y)
        grad = bce_with_logits_grad(z, y)
    ref, ref_grad = torch_loss_and_grad(F.binary_cross_entropy_with_logits, z, y)
    assert math.isfinite(loss)
    assert_close(t(loss), ref)
    assert_close(torch.from_numpy(grad), ref_grad)


def test_bce_from_probabilities_and_from_logits_agree():
    assert_close(bce(PROBS, LABELS), bce_with_logits(LOGITS, LABELS))


def test_bce_clips_instead_of_returning_infinity():
    assert math.isfinite(bce(np.array([0.0, 1.0]), np.array([1.0, 0.0])))


def test_cross_entropy_of_confident_correct_predictions():
    """Seed-map mistake 15: -ln 0.9 = 0.1054 and -ln 0.95 = 0.0513 (not 0.0612)."""
    assert bce(np.array([0.9]), np.array([1.0])) == pytest.approx(0.1054, abs=1e-4)
    assert bce(np.array([0.95]), np.array([1.0])) == pytest.approx(0.0513, abs=1e-4)


def test_target_minus_prediction_has_the_wrong_sign():
    """Seed-map mistake 12: the output error is (prediction - target); the reversed sign is rejected."""
    _, ref_grad = torch_loss_and_grad(F.binary_cross_entropy_with_logits, LOGITS, LABELS)
    wrong = (LABELS - PROBS) / B
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(wrong), ref_grad)
    assert_close(torch.from_numpy(bce_with_logits_grad(LOGITS, LABELS)), ref_grad)


def test_mse_matches_torch():
    yhat = RNG.normal(size=(8, 3))
    y = RNG.normal(size=(8, 3))
    ref, ref_grad = torch_loss_and_grad(F.mse_loss, yhat, y)
    assert_close(t(mse(yhat, y)), ref)
    assert_close(torch.from_numpy(mse_grad(yhat, y)), ref_grad)


def test_mse_without_averaging_is_rejected():
    """Seed-map mistake 3: a loss that is never averaged has a gradient N times too large."""
    yhat, y = RNG.normal(size=8), RNG.normal(size=8)
    _, ref_grad = torch_loss_and_grad(F.mse_loss, yhat, y)
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(2 * (yhat - y)), ref_grad)


def test_column_and_flat_shapes_are_interchangeable_and_the_gradient_keeps_the_prediction_shape():
    z_col = LOGITS[:, None]
    assert bce_with_logits(z_col, LABELS) == bce_with_logits(LOGITS, LABELS)
    assert bce_with_logits(LOGITS, LABELS[:, None]) == bce_with_logits(LOGITS, LABELS)
    assert bce_with_logits_grad(z_col, LABELS).shape == (B, 1)
    assert bce_with_logits_grad(LOGITS, LABELS[:, None]).shape == (B,)
    assert mse(LOGITS[:, None], LABELS) == mse(LOGITS, LABELS)
    assert mse_grad(LOGITS[:, None], LABELS).shape == (B, 1)


def test_mse_of_a_column_against_a_row_does_not_broadcast():
    # Plain numpy would silently compute a (B, B) matrix here; the loss must equal the flat version.
    naive = float(np.mean((LOGITS[:, None] - LABELS) ** 2))
    assert mse(LOGITS[:, None], LABELS) != pytest.approx(naive)


@pytest.mark.parametrize("fn", [bce, bce_with_logits, bce_with_logits_grad, mse, mse_grad])
def test_mismatched_shapes_raise_shape_error(fn):
    with pytest.raises(ShapeError, match=r"y: expected shape \(4,\), got \(5,\)"):
        fn(np.full(4, 0.5), np.zeros(5))
    with pytest.raises(ShapeError, match=r"y: expected shape \(4,\), got \(4, 2\)"):
        fn(np.full(4, 0.5), np.zeros((4, 2)))


# ----- multi-class cross-entropy (chapter 3) ---------------------------------------------------------------

K = 5
CE_LOGITS = RNG.normal(0, 3, size=(B, K))
CE_LABELS = RNG.integers(0, K, B)
SOFT = softmax(RNG.normal(size=(B, K)))  # soft target distributions, rows summing to 1


def torch_ce_and_grad(logits, target):
    z = t(logits, grad=True)
    target_t = torch.tensor(target) if np.issubdtype(np.asarray(target).dtype, np.integer) else t(target)
    loss = F.cross_entropy(z, target_t)
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


def test_one_hot_matches_torch():
    ref = F.one_hot(torch.tensor(CE_LABELS), K).to(torch.float64)
    assert_close(torch.from_numpy(one_hot(CE_LABELS, K)), ref)
    np.testing.assert_array_equal(one_hot(np.array([2.0, 0.0]), 3), [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 3]), r"labels must lie in 0 \.\. 2 .*got 3 at position 1"),
        (np.array([-1, 0]), "got -1 at position 0"),
        (np.array([0.5, 1.0]), "whole numbers"),
    ],
)
def test_one_hot_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        one_hot(labels, 3)


@pytest.mark.parametrize("target", ["labels", "one-hot", "soft"])
def test_cross_entropy_and_its_gradient_match_torch(target):
    y = {"labels": CE_LABELS, "one-hot": one_hot(CE_LABELS, K), "soft": SOFT}[target]
    ref, ref_grad = torch_ce_and_grad(CE_LOGITS, y)
    assert_close(t(cross_entropy(CE_LOGITS, y)), ref)
    assert_close(torch.from_numpy(cross_entropy_grad(CE_LOGITS, y)), ref_grad)
    assert cross_entropy_grad(CE_LOGITS, y).shape == (B, K)


def test_cross_entropy_gradient_is_probabilities_minus_targets_over_b():
    expected = (softmax(CE_LOGITS) - one_hot(CE_LABELS, K)) / B
    np.testing.assert_allclose(cross_entropy_grad(CE_LOGITS, CE_LABELS), expected, rtol=1e-14)
    assert isinstance(cross_entropy(CE_LOGITS, CE_LABELS), float)


def test_the_derivative_y_minus_p_over_p_is_rejected():
    """Seed-map mistake 14: the gradient of softmax + cross-entropy is p - y, not (y - p) / p."""
    _, ref_grad = torch_ce_and_grad(CE_LOGITS, CE_LABELS)
    p, y = softmax(CE_LOGITS), one_hot(CE_LABELS, K)
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy((y - p) / p / B), ref_grad)
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy((y - p) / B), ref_grad)  # right size, wrong sign


def test_cross_entropy_numbers_of_seed_map_mistake_15():
    """-ln 0.9 = 0.1054 and -ln 0.95 = 0.0513 (not 0.0612), from logits whose softmax gives those probabilities."""
    for p_correct, expected in ((0.9, 0.1054), (0.95, 0.0513)):
        logits = np.log([[p_correct, 1.0 - p_correct]])
        assert cross_entropy(logits, np.array([0])) == pytest.approx(expected, abs=5e-5)
    assert cross_entropy(np.log([[0.95, 0.05]]), np.array([0])) != pytest.approx(0.0612, abs=1e-3)
    assert cross_entropy(np.log([[0.1, 0.9]]), np.array([0])) == pytest.approx(2.3026, abs=1e-4)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-500.0, 500.0, 499.0]])
    y = np.array([1, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = cross_entropy(logits, y)
        grad = cross_entropy_grad(logits, y)
    ref, ref_grad = torch_ce_and_grad(logits, y)
    assert math.isfinite(loss) and loss == pytest.approx((2000.0 + math.log1p(math.exp(-1.0))) / 2, rel=1e-12)
    assert_close(t(loss), ref)
    assert_close(torch.from_numpy(grad), ref_grad)


@pytest.mark.parametrize("fn", [cross_entropy, cross_entropy_grad])
def test_cross_entropy_rejects_mismatched_shapes(fn):
    with pytest.raises(ShapeError, match=r"logits: expected shape \(B, K\), got \(5,\)"):
        fn(np.zeros(5), np.array([1]))
    with pytest.raises(ShapeError, match=r"y: expected shape \(B,\), got \(3,\) \[B=4\]"):
        fn(np.zeros((4, 5)), np.array([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"y: expected shape \(B, K\), got \(4, 3\) \[B=4, K=5\]"):
        fn(np.zeros((4, 5)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="labels must lie in 0 .. 4"):
        fn(np.zeros((2, 5)), np.array([0, 5]))
