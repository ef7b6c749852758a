"""Reference tests of lmbook.mlp against the same network in torch (float64): forward, backward, training.

The tests named ``test_*_is_rejected`` compute a known mistake from the seed map inline and check that the
torch comparison catches it; they prove that the reference tests can fail.
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.activations import sigmoid
from lmbook.losses import mse, mse_grad
from lmbook.mlp import MLP, MLPConfig, accuracy, dense_backward, dense_forward, init_scale, train
from lmbook.testing import ShapeError

ACTIVATIONS = ["tanh", "sigmoid", "relu", "identity"]
SIZES = [(2, 1), (2, 3, 1), (3, 8, 4, 1), (5, 16, 16, 8, 1)]


def batch(sizes, B=12, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, sizes[0])), rng.integers(0, 2, B)


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def torch_loss_and_grads(model, X, y):
    """Loss and parameter gradients of model.to_torch(), mapped back to our (C_in, C_out) layout."""
    net = model.to_torch()
    loss = F.binary_cross_entropy_with_logits(net(t(X))[:, 0], t(y))
    loss.backward()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return loss.detach(), [m.weight.grad.T for m in linears], [m.bias.grad for m in linears]


def assert_grads_match(grads, ref_W, ref_b):
    assert len(grads["W"]) == len(ref_W) and len(grads["b"]) == len(ref_b)
    for dW, ref in zip(grads["W"], ref_W, strict=True):
        assert_close(torch.from_numpy(dW), ref)
    for db, ref in zip(grads["b"], ref_b, strict=True):
        assert_close(torch.from_numpy(db), ref)


# ----- the dense layer ------------------------------------------------------------------------------------------


def dense_case(B=4, C_in=3, C_out=5, seed=0):
    rng = np.random.default_rng(seed)
    X, W, b = rng.normal(size=(B, C_in)), rng.normal(size=(C_in, C_out)), rng.normal(size=C_out)
    dZ = rng.normal(size=(B, C_out))  # an upstream gradient dL/dZ
    return X, W, b, dZ


def test_dense_forward_matches_torch_linear():
    X, W, b, _ = dense_case()
    assert_close(torch.from_numpy(dense_forward(X, W, b)), F.linear(t(X), t(W).T, t(b)))


def test_dense_backward_matches_autograd():
    X, W, b, dZ = dense_case()
    Xt, Wt, bt = t(X, True), t(W, True), t(b, True)
    # Backpropagating an upstream gradient dZ is the same as differentiating sum(Z * dZ).
    (Xt @ Wt + bt).mul(t(dZ)).sum().backward()
    dX, dW, db = dense_backward(dZ, X, W)
    assert_close(torch.from_numpy(dX), Xt.grad)
    assert_close(torch.from_numpy(dW), Wt.grad)
    assert_close(torch.from_numpy(db), bt.grad)


def test_bias_gradient_summed_over_the_wrong_axis_is_rejected():
    """Seed-map mistake 2: the bias gradient sums over the batch axis (0), not the unit axis (1)."""
    X, W, b, dZ = dense_case(B=5, C_in=3, C_out=5)  # square dZ, so the wrong sum even has the right shape
    bt = t(b, True)
    (t(X) @ t(W) + bt).mul(t(dZ)).sum().backward()
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(dZ.sum(axis=1)), bt.grad)
    assert_close(torch.from_numpy(dense_backward(dZ, X, W)[2]), bt.grad)


def test_dense_forward_rejects_a_column_bias():
    """Seed-map mistake 2: a (C_out, 1) bias would broadcast against (B, C_out) into nonsense."""
    X, W, b, _ = dense_case(B=4, C_in=2, C_out=3)
    with pytest.raises(ShapeError, match=r"b: expected shape \(C_out,\), got \(3, 1\) \[C_out=3\]"):
        dense_forward(X, W, b[:, None])


def test_dense_shape_errors_name_the_array_and_both_shapes():
    X, W, b, dZ = dense_case(B=4, C_in=3, C_out=5)
    with pytest.raises(ShapeError) as info:
        dense_forward(X[:, :2], W, b)
    assert str(info.value) == "X: expected shape (B, C_in), got (4, 2) [C_in=3]"
    with pytest.raises(ShapeError, match=r"dZ: expected shape \(B, C_out\), got \(4, 4\)"):
        dense_backward(dZ[:, :4], X, W)
    with pytest.raises(ShapeError, match=r"W: expected shape \(C_in, C_out\), got \(5,\)"):
        dense_forward(X, b, b)


# ----- the network: forward and backward against torch -----------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", SIZES)
def test_forward_loss_and_backward_match_torch(sizes, activation):
    model = MLP(sizes, activation, seed=3)
    X, y = batch(sizes)
    logits, cache = model.forward(X)
    net = model.to_torch()
    assert_close(torch.from_numpy(logits), net(t(X)).detach())
    ref_loss, ref_W, ref_b = torch_loss_and_grads(model, X, y)
    loss, grads = model.loss_and_grads(X, y)
    assert_close(t(loss), ref_loss)
    assert_close(t(model.loss(X, y)), ref_loss)
    assert_grads_match(grads, ref_W, ref_b)
    assert_grads_match(model.backward(cache, y), ref_W, ref_b)


def test_forward_with_several_outputs_matches_torch():
    model = MLP((3, 6, 4), "relu", seed=0)
    X, _ = batch(model.sizes)
    logits, _ = model.forward(X)
    assert logits.shape == (12, 4)
    assert_close(torch.from_numpy(logits), model.to_torch()(t(X)).detach())


def test_backward_from_handles_other_losses():
    """backward_from takes dL/dlogits from any loss; here mean squared error on a regression target."""
    model = MLP((3, 5, 2), "tanh", seed=0)
    rng = np.random.default_rng(0)
    X, target = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    logits, cache = model.forward(X)
    grads = model.backward_from(cache, mse_grad(logits, target))
    net = model.to_torch()
    loss = F.mse_loss(net(t(X)), t(target))
    loss.backward()
    assert_close(t(mse(logits, target)), loss.detach())
    assert_grads_match(grads, [net[0].weight.grad.T, net[2].weight.grad.T], [net[0].bias.grad, net[2].bias.grad])


def backward_missing_derivative(model, cache, y):
    """Seed-map mistake 1, written out: delta is passed down without multiplying by f'(Z)."""
    delta = (sigmoid(cache["Zs"][-1]) - np.asarray(y, float)[:, None]) / len(y)
    grads = {"W": [], "b": []}
    for l in reversed(range(len(model.W))):
        dX, dW, db = dense_backward(delta, cache["As"][l], model.W[l])
        grads["W"].insert(0, dW)
        grads["b"].insert(0, db)
        delta = dX  # the mistake: no "* model.activation.df(cache['Zs'][l - 1])"
    return grads


def backward_target_minus_prediction(model, cache, y):
    """Seed-map mistake 12, written out: the output error is (target - prediction)."""
    delta = (np.asarray(y, float)[:, None] - sigmoid(cache["Zs"][-1])) / len(y)
    return model.backward_from(cache, delta)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("wrong_backward", [backward_missing_derivative, backward_target_minus_prediction])
def test_known_backward_mistakes_are_rejected(wrong_backward, activation):
    model = MLP((2, 4, 3, 1), activation, seed=0)
    X, y = batch(model.sizes)
    _, cache = model.forward(X)
    _, ref_W, ref_b = torch_loss_and_grads(model, X, y)
    assert_grads_match(model.backward(cache, y), ref_W, ref_b)
    with pytest.raises(AssertionError):
        assert_grads_match(wrong_backward(model, cache, y), ref_W, ref_b)


# ----- the network: construction, parameters, prediction ---------------------------------------------------------


def test_cache_layout():
    model = MLP((2, 4, 3, 1), "tanh")
    X, _ = batch(model.sizes, B=5)
    logits, cache = model.forward(X)
    assert [a.shape for a in cache["As"]] == [(5, 2), (5, 4), (5, 3)]
    assert [z.shape for z in cache["Zs"]] == [(5, 4), (5, 3), (5, 1)]
    assert np.array_equal(cache["As"][0], X)
    assert np.array_equal(cache["As"][1], np.tanh(cache["Zs"][0]))
    assert np.array_equal(cache["Zs"][-1], logits)


def test_forward_rejects_the_wrong_number_of_features():
    with pytest.raises(ShapeError, match=r"X: expected shape \(\*, 2\), got \(5, 3\)"):
        MLP((2, 3, 1)).forward(np.zeros((5, 3)))


def test_initialisation_is_seeded_scaled_and_has_zero_biases():
    a, b, c = MLP((2, 50, 1), seed=0), MLP((2, 50, 1), seed=0), MLP((2, 50, 1), seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not np.array_equal(a.W[0], c.W[0])
    assert all(np.all(bias == 0) for bias in a.b)
    assert [W.shape for W in a.W] == [(2, 50), (50, 1)]
    assert init_scale(100, 100, "relu") == pytest.approx(np.sqrt(2 / 100))
    assert init_scale(100, 50, "tanh") == pytest.approx(np.sqrt(2 / 150))
    big = MLP((400, 400), "relu", seed=0).W[0]
    assert big.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)


def test_parameters_are_live_views_in_order_and_counted():
    model = MLP((2, 3, 1))
    params = model.parameters()
    assert [p.shape for p in params] == [(2, 3), (3,), (3, 1), (1,)]
    assert params[0] is model.W[0] and params[1] is model.b[0] and params[2] is model.W[1]
    assert model.num_parameters() == 2 * 3 + 3 + 3 * 1 + 1


def test_step_is_in_place_gradient_descent():
    model = MLP((2, 3, 1), seed=0)
    X, y = batch(model.sizes)
    before = [p.copy() for p in model.parameters()]
    params = model.parameters()
    _, grads = model.loss_and_grads(X, y)
    model.step(grads, lr=0.1)
    flat = [g for pair in zip(grads["W"], grads["b"], strict=True) for g in pair]
    for p, p0, g in zip(params, before, flat, strict=True):
        assert_close(p, p0 - 0.1 * g)
    assert params[0] is model.W[0]


def test_predictions_have_the_right_shape_and_range():
    model = MLP((2, 3, 1), seed=0)
    X, _ = batch(model.sizes, B=9)
    proba = model.predict_proba(X)
    assert proba.shape == (9,) and np.all((proba > 0) & (proba < 1))
    assert np.array_equal(model.predict(X), (proba >= 0.5).astype(int))
    assert set(np.unique(model.predict(X))) <= {0, 1}


def test_labels_may_be_a_column():
    model = MLP((2, 3, 1), seed=0)
    X, y = batch(model.sizes)
    loss, grads = model.loss_and_grads(X, y)
    loss_col, grads_col = model.loss_and_grads(X, y[:, None])
    assert loss == loss_col
    assert all(np.array_equal(g, h) for g, h in zip(grads["W"], grads_col["W"], strict=True))


def test_several_outputs_are_refused_for_the_binary_loss():
    model = MLP((2, 3, 2))
    with pytest.raises(ValueError, match="2 output units"):
        model.predict_proba(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="2 output units"):
        model.loss(np.zeros((1, 2)), np.zeros(1))


def test_bad_sizes_and_activation_are_refused():
    with pytest.raises(ValueError, match="sizes"):
        MLP((2,))
    with pytest.raises(ValueError, match="unknown activation"):
        MLP((2, 1), activation="swish")


def test_config_is_frozen_and_round_trips():
    model = MLP((2, 4, 1), "relu", seed=7)
    config = model.config
    assert config == MLPConfig((2, 4, 1), "relu", 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    clone = MLP.from_config(config)
    assert all(np.array_equal(p, q) for p, q in zip(model.parameters(), clone.parameters(), strict=True))
    assert "relu" in repr(model)


def test_to_torch_copies_weights_transposed_in_float64():
    model = MLP((2, 3, 1), "sigmoid", seed=0)
    net = model.to_torch()
    assert isinstance(net[1], torch.nn.Sigmoid) and len(net) == 3
    assert net[0].weight.dtype == torch.float64
    assert_close(net[0].weight.detach(), t(model.W[0]).T)
    assert model.to_torch(torch.float32)[0].weight.dtype == torch.float32
    net[0].weight.data.zero_()  # a copy: changing torch's weights leaves ours alone
    assert np.any(model.W[0] != 0)


# ----- training --------------------------------------------------------------------------------------------------


def test_full_batch_training_lowers_the_loss_and_reports_every_step():
    model = MLP((2, 8, 1), seed=0)
    X, y = batch(model.sizes, B=40)
    seen = []
    losses = train(model, X, y, lr=0.5, steps=50, callback=lambda step, loss, m: seen.append((step, loss, m)))
    assert len(losses) == 50
    assert losses[-1] < losses[0]
    assert [s for s, _, _ in seen] == list(range(50)) and seen[-1][1] == losses[-1] and seen[0][2] is model
    assert losses[0] == pytest.approx(MLP((2, 8, 1), seed=0).loss(X, y))  # loss before the first update


def test_minibatch_training_is_deterministic_given_the_seed():
    X, y = batch((2,), B=40)
    runs = []
    for seed in (0, 0, 1):
        model = MLP((2, 8, 1), seed=0)
        runs.append(train(model, X, y, lr=0.5, steps=20, batch_size=8, seed=seed))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_accuracy_counts_correct_predictions():
    model = MLP((1, 1), seed=0)
    model.W[0][:] = 1.0
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    assert accuracy(model, X, np.array([0, 0, 1, 1])) == 1.0
    assert accuracy(model, X, np.array([0, 1, 1, 1])) == 0.75
    assert accuracy(model, X, np.array([[1], [1], [0], [0]])) == 0.0
