"""Reference tests of lmbook.activations against torch in float64: values and derivatives."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.activations import ACTIVATIONS, Activation, get_activation, sigmoid, sigmoid_grad

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
