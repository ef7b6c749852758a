"""Reference tests of lmbook.losses against torch.nn.functional in float64: values and gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.losses import bce, bce_grad, bce_with_logits, bce_with_logits_grad, mse, mse_grad
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
