"""Reference tests of lmbook.activations against torch in float64: values and derivatives."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.activations import (
    ACTIVATIONS,
    Activation,
    get_activation,
    log_softmax,
    sigmoid,
    sigmoid_grad,
    softmax,
)
from lmbook.gradcheck import numerical_grad

TORCH_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}

# Exact zeros test the kink of ReLU; large values test saturation.
Z = np.concatenate([np.array([-30.0, -5.0, -1.0, 0.0, 1.0, 5.0, 30.0]), np.random.default_rng(0).normal(0, 3, 50)])


def torch_value_and_derivative(name, z):
    """f(z) and df/dz from torch autograd. Summing is fine: each output depends only on its own input."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    a = TORCH_FUNCTIONS[name](zt)
    (grad,) = torch.autograd.grad(a.sum(), zt)
    return a.detach(), grad


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_value_and_derivative_match_torch(name):
    act = ACTIVATIONS[name]
    a_ref, da_ref = torch_value_and_derivative(name, Z)
    assert_close(torch.from_numpy(act.f(Z)), a_ref)
    assert_close(torch.from_numpy(act.df(Z)), da_ref)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_shapes_are_kept_and_results_are_float64(name):
    act = ACTIVATIONS[name]
    z = np.arange(-6, 6).reshape(3, 4)  # integers in, float64 out
    for out in (act.f(z), act.df(z)):
        assert out.shape == (3, 4)
        assert out.dtype == np.float64


def test_input_is_not_modified():
    z = np.array([-1.0, 2.0])
    ACTIVATIONS["identity"].f(z)[0] = 99.0
    assert z[0] == -1.0


def test_sigmoid_is_stable_for_huge_inputs():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    # Overflow or nan would raise FloatingPointError; underflow to exactly 0 is harmless.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(z)
        ds = sigmoid_grad(z)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(ds))
    assert_close(torch.from_numpy(s), torch.sigmoid(torch.tensor(z, dtype=torch.float64)))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5


def test_sigmoid_derivative_applied_to_an_activation_is_rejected():
    """Seed-map mistake 2: feeding a = sigmoid(z) instead of z into the derivative applies sigmoid twice."""
    _, da_ref = torch_value_and_derivative("sigmoid", Z)
    wrong = sigmoid_grad(sigmoid(Z))
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(wrong), da_ref)


def test_the_scalar_path_works():
    assert float(sigmoid(0.0)) == 0.5
    assert float(ACTIVATIONS["relu"].df(-2.0)) == 0.0


def test_get_activation_by_name_and_pass_through():
    for name, act in ACTIVATIONS.items():
        assert get_activation(name) is act
        assert act.name == name
        assert get_activation(act) is act
    assert get_activation("tanh")(np.array([0.0]))[0] == 0.0  # an Activation is callable


def test_get_activation_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        get_activation("swish")
    message = str(info.value)
    assert "'swish'" in message
    for name in ("sigmoid", "tanh", "relu", "identity"):
        assert name in message


def test_activation_is_frozen():
    act = get_activation("tanh")
    with pytest.raises(dataclasses.FrozenInstanceError):
        act.name = "relu"
    assert isinstance(act, Activation)


# ----- softmax and log-softmax (chapter 3) -----------------------------------------------------------------

SCORES = np.random.default_rng(1).normal(0, 4, size=(6, 5))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax_match_torch(axis):
    zt = torch.tensor(SCORES)
    assert_close(torch.from_numpy(softmax(SCORES, axis=axis)), torch.softmax(zt, dim=axis))
    assert_close(torch.from_numpy(log_softmax(SCORES, axis=axis)), torch.log_softmax(zt, dim=axis))
    np.testing.assert_allclose(softmax(SCORES, axis=axis).sum(axis=axis), 1.0)


def test_softmax_of_any_shape_and_of_integers():
    z = np.arange(24).reshape(2, 3, 4)
    p = softmax(z, axis=1)
    assert p.shape == (2, 3, 4) and p.dtype == np.float64
    assert_close(torch.from_numpy(p), torch.softmax(torch.tensor(z, dtype=torch.float64), dim=1))


def test_softmax_derivatives_match_torch_autograd():
    """Finite differences of our softmax and log-softmax agree with torch's Jacobians (diag(p) - p p^T for softmax)."""
    z = SCORES[0].copy()
    for ours, theirs in ((softmax, torch.softmax), (log_softmax, torch.log_softmax)):
        jacobian = torch.autograd.functional.jacobian(lambda t, f=theirs: f(t, dim=0), torch.tensor(z))
        rows = np.array([numerical_grad(lambda v, k=k, f=ours: f(v)[k], z) for k in range(len(z))])
        assert_close(torch.from_numpy(rows), jacobian, rtol=1e-6, atol=1e-8)
    p = softmax(z)
    softmax_jacobian = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, dim=0), torch.tensor(z))
    assert_close(torch.from_numpy(np.diag(p) - np.outer(p, p)), softmax_jacobian)


def test_softmax_ignores_a_shift_of_all_scores():
    np.testing.assert_allclose(softmax(SCORES + 1000.0), softmax(SCORES), rtol=1e-12)


def test_naive_softmax_overflows_but_ours_does_not():
    z = np.array([[1000.0, 999.0, -1000.0], [-800.0, 0.0, 1.0]])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        naive = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        naive_log = np.log(naive)
    assert np.isnan(naive[0]).any()  # inf / inf
    assert np.isneginf(naive_log[1, 0])  # e^-800 rounds to 0, and log(0) = -inf
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(z)
        logp = log_softmax(z)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp))
    zt = torch.tensor(z)
    assert_close(torch.from_numpy(p), torch.softmax(zt, dim=-1))
    assert_close(torch.from_numpy(logp), torch.log_softmax(zt, dim=-1))
    assert logp[1, 0] == pytest.approx(-801.0 - np.log1p(np.exp(-1.0)), rel=1e-12)


def test_softmax_over_a_single_output_is_always_one():
    """Seed-map mistake 12: one softmax output is constantly 1, so its gradient is zero and nothing is learned."""
    z = np.linspace(-20, 20, 9)[:, None]  # (B, 1): one score per example
    np.testing.assert_array_equal(softmax(z), np.ones_like(z))
    for b in range(len(z)):
        row = z[b].copy()
        np.testing.assert_array_equal(numerical_grad(lambda v: softmax(v)[0], row), [0.0])
    zt = torch.tensor(z, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.softmax(zt, dim=-1).sum(), zt)
    assert torch.all(grad == 0)


def test_two_way_softmax_is_the_sigmoid_of_the_score_difference():
    """A binary classifier needs one sigmoid unit or a softmax over two scores: the two are the same model."""
    z = SCORES[:, :2]
    p = softmax(z)
    np.testing.assert_allclose(p[:, 1], sigmoid(z[:, 1] - z[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(p[:, 0], sigmoid(z[:, 0] - z[:, 1]), rtol=1e-12)
