"""Tests of lmbook.gradcheck: finite differences against torch autograd, and the MLP gradient check."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.data import two_moons
from lmbook.gradcheck import gradcheck_mlp, numerical_grad, relative_error
from lmbook.mlp import MLP


def f_numpy(x):
    return float(np.sum(np.sin(x) * x**2) + np.prod(x[:1]) ** 3)


def f_torch(x):
    return torch.sum(torch.sin(x) * x**2) + torch.prod(x[:1]) ** 3


def test_numerical_grad_matches_autograd_and_restores_x():
    x = np.random.default_rng(0).normal(size=(3, 4))
    original = x.copy()
    grad = numerical_grad(f_numpy, x)
    xt = torch.tensor(x, requires_grad=True)
    f_torch(xt).backward()
    assert grad.shape == x.shape
    assert_close(torch.from_numpy(grad), xt.grad, rtol=1e-6, atol=1e-8)
    assert np.array_equal(x, original)


def test_numerical_grad_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])

    def explode(_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        numerical_grad(explode, x)
    assert np.array_equal(x, [1.0, 2.0])


def test_central_differences_beat_one_sided_ones():
    x = np.array([0.7])
    exact = 3 * 0.7**2
    central = numerical_grad(lambda v: float(v[0] ** 3), x, eps=1e-4)[0]
    one_sided = ((0.7 + 1e-4) ** 3 - 0.7**3) / 1e-4
    assert abs(central - exact) < 1e-7 < abs(one_sided - exact)


def test_relative_error():
    a = np.array([1.0, -2.0, 0.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    # max |a - b| = 0.5, max (|a| + |b|) = 2 + 2.5 = 4.5
    assert relative_error(a, np.array([1.0, -2.5, 0.0])) == pytest.approx(0.5 / 4.5)
    assert relative_error(a, -a) == pytest.approx(1.0)
    # scale-free: multiplying both by 1e6 changes nothing
    assert relative_error(1e6 * a, 1e6 * np.array([1.0, -2.5, 0.0])) == pytest.approx(0.5 / 4.5)
    with pytest.raises(ValueError, match="equal shapes"):
        relative_error(np.zeros(2), np.zeros(3))


def test_gradcheck_mlp_passes_for_a_correct_backward_pass():
    model = MLP((2, 5, 3, 1), "tanh", seed=0)
    X, y = two_moons(n=16, seed=0)
    before = [p.copy() for p in model.parameters()]
    errors = gradcheck_mlp(model, X, y)
    assert list(errors) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert max(errors.values()) < 1e-7, errors
    assert all(np.array_equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_gradcheck_mlp_passes_for_other_activations(activation):
    errors = gradcheck_mlp(MLP((2, 4, 1), activation, seed=1), *two_moons(n=10, seed=1))
    assert max(errors.values()) < 1e-6, errors


class MLPMissingDerivative(MLP):
    """Seed-map mistake 1: the backward pass skips the activation derivative of the hidden layers."""

    def backward_from(self, cache, delta):
        # The identity's derivative is 1, so backpropagating as if the activation were the identity is exactly
        # the same as leaving f'(Z) out.
        identity_net = MLP(self.sizes, "identity")
        identity_net.W, identity_net.b = self.W, self.b
        return identity_net.backward_from(cache, delta)


def test_gradcheck_mlp_catches_a_missing_activation_derivative():
    model = MLPMissingDerivative((2, 5, 3, 1), "tanh", seed=0)
    X, y = two_moons(n=16, seed=0)
    errors = gradcheck_mlp(model, X, y)
    assert errors["W3"] < 1e-7  # the output layer needs no activation derivative ...
    assert errors["W1"] > 1e-2 and errors["W2"] > 1e-2  # ... the hidden layers do
