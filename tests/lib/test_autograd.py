"""Reference tests of lmbook.autograd against torch in float64, and of ScalarMLP against lmbook.mlp.MLP.

Value and torch tensors share the method names exp, log, tanh, sigmoid and relu, so each expression below is
written once and evaluated with both.
"""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.autograd import Layer, Neuron, ScalarMLP, Value, scalar_bce_with_logits, topological_order, trace
from lmbook.data import two_moons
from lmbook.mlp import MLP

INPUTS = (0.7, -1.3, 2.1)


def run_both(expression, inputs=INPUTS):
    """Evaluate expression on Values and on float64 torch scalars; return (ours, torch's) values and grads."""
    values = [Value(x) for x in inputs]
    out = expression(*values)
    out.backward()
    tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    ref = expression(*tensors)
    ref.backward()
    ours = torch.tensor([out.data] + [v.grad for v in values], dtype=torch.float64)
    # torch leaves .grad as None for an input the expression does not use; its gradient is 0.
    theirs = torch.stack([ref.detach()] + [torch.zeros_like(t) if t.grad is None else t.grad for t in tensors])
    return ours, theirs


SINGLE_OPS = {
    "add": lambda a, b, c: a + b,
    "sub": lambda a, b, c: a - b,
    "mul": lambda a, b, c: a * b,
    "truediv": lambda a, b, c: a / b,
    "pow_int": lambda a, b, c: b**3,
    "pow_float": lambda a, b, c: c**1.5,
    "pow_negative": lambda a, b, c: a**-2,
    "neg": lambda a, b, c: -a,
    "radd": lambda a, b, c: 2.5 + a,
    "rsub": lambda a, b, c: 2.5 - a,
    "rmul": lambda a, b, c: 2.5 * a,
    "rtruediv": lambda a, b, c: 2.5 / b,
    "add_constant": lambda a, b, c: a + 4,
    "exp": lambda a, b, c: b.exp(),
    "log": lambda a, b, c: c.log(),
    "tanh": lambda a, b, c: b.tanh(),
    "sigmoid": lambda a, b, c: b.sigmoid(),
    "relu_positive": lambda a, b, c: a.relu(),
    "relu_negative": lambda a, b, c: b.relu(),
}


@pytest.mark.parametrize("name", sorted(SINGLE_OPS))
def test_each_operation_matches_torch(name):
    assert_close(*run_both(SINGLE_OPS[name]))


def every_op(a, b, c):
    """One expression that uses every operation, reuses nodes, and mixes Values with plain numbers."""
    d = a * b + c - a / b
    e = d**2 + (-c) ** 3 * 0.1
    f = (2.0 + e).log() + (1 - a).tanh() * (3 * b).sigmoid()
    g = (c * 0.5).exp() / (1.0 + f.relu()) + (a - 2).relu() + 1 / (c + 4)
    return g * d + f**-1


@pytest.mark.parametrize("inputs", [INPUTS, (-0.4, 0.9, 1.3), (1.5, 2.0, -0.5)])
def test_an_expression_with_every_operation_matches_torch(inputs):
    assert_close(*run_both(every_op, inputs))


def test_reused_nodes_accumulate_gradient_from_every_path():
    assert_close(*run_both(lambda a, b, c: a * a + a))  # d/da = 2a + 1
    # A diamond: b feeds two branches that meet again.
    assert_close(*run_both(lambda a, b, c: (b * 2).tanh() * (b + 1).exp()))


def test_relu_at_zero_has_gradient_zero_like_torch():
    assert_close(*run_both(lambda a, b, c: a.relu(), inputs=(0.0, 0.0, 0.0)))


def test_sigmoid_does_not_overflow():
    assert Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).sigmoid().data == 1.0


def test_wrong_local_derivative_would_be_caught():
    """The comparison has teeth: a tanh whose local derivative is 1 - t (instead of 1 - t^2) fails."""
    x = Value(0.8)
    t = math.tanh(0.8)
    y = Value(t, (x,), "tanh", (1.0 - t,))
    y.backward()
    xt = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    torch.tanh(xt).backward()
    with pytest.raises(AssertionError):
        assert_close(torch.tensor(x.grad, dtype=torch.float64), xt.grad)


def test_leaf_gradients_accumulate_across_backward_calls_like_torch():
    a = Value(1.5)
    out = (a * a).tanh() + a
    out.backward()
    first = a.grad
    out.backward()
    at = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    ref = (at * at).tanh() + at
    ref.backward(retain_graph=True)
    ref.backward()
    assert_close(torch.tensor(a.grad, dtype=torch.float64), at.grad)
    assert a.grad == pytest.approx(2 * first)


def test_backward_handles_deep_graphs_without_recursion():
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y + x * 0.001
    y.backward()
    assert x.grad == pytest.approx(1 + 5000 * 0.001)


def test_numpy_numbers_on_the_left_give_values():
    x = np.float64(2.0)
    for out in (x * Value(3.0), x + Value(3.0), x - Value(3.0), x / Value(4.0)):
        assert isinstance(out, Value)
    assert (x / Value(4.0)).data == 0.5


def test_power_must_be_a_constant():
    with pytest.raises(TypeError, match="constant"):
        Value(2.0) ** Value(3.0)


def test_repr_shows_data_and_grad():
    v = Value(3.0)
    (v * 2).backward()
    assert repr(v) == "Value(data=3, grad=2)"


def test_trace_lists_nodes_in_topological_order():
    a, b = Value(2.0), Value(-3.0)
    out = (a * b + a).tanh()
    out.backward()
    rows = trace(out)
    assert [row.op for row in rows] == ["", "", "*", "+", "tanh"]
    op, data, grad = rows[-1]
    assert (op, data, grad) == ("tanh", out.data, 1.0)
    assert rows[0] == ("", 2.0, a.grad)
    nodes = topological_order(out)
    position = {id(n): i for i, n in enumerate(nodes)}
    for node in nodes:  # every node comes after all of its children
        assert all(position[id(child)] < position[id(node)] for child in node._children)


# ----- networks of Values --------------------------------------------------------------------------------------


def test_neuron_and_layer_shapes_and_return_types():
    neuron = Neuron(3, "relu", seed=0)
    assert len(neuron.parameters()) == 4
    assert isinstance(neuron([1.0, 2.0, 3.0]), Value)
    layer = Layer(3, 1, "tanh", seed=0)
    out = layer([1.0, 2.0, 3.0])
    assert isinstance(out, list) and len(out) == 1  # a list even when the layer has one unit
    with pytest.raises(ValueError, match="expects 3 inputs, got 2"):
        neuron([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown activation"):
        Neuron(2, "swish")


def test_scalar_mlp_is_seeded_and_its_last_layer_is_linear():
    a, b, c = ScalarMLP((2, 4, 1), seed=0), ScalarMLP((2, 4, 1), seed=0), ScalarMLP((2, 4, 1), seed=1)
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]
    assert [p.data for p in a.parameters()] != [p.data for p in c.parameters()]
    assert [n.activation for n in a.layers[0].neurons] == ["tanh"] * 4
    assert a.layers[-1].neurons[0].activation == "identity"
    assert len(a.parameters()) == MLP((2, 4, 1)).num_parameters()


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
def test_scalar_mlp_from_mlp_gives_the_same_logits_loss_and_gradients(activation):
    mlp = MLP((2, 4, 3, 1), activation, seed=2)
    X, y = two_moons(n=6, seed=0)
    net = ScalarMLP.from_mlp(mlp)
    logits = [net(list(x))[0] for x in X]
    loss = scalar_bce_with_logits(logits, y)
    net.zero_grad()
    loss.backward()
    ref_logits, _ = mlp.forward(X)
    ref_loss, ref_grads = mlp.loss_and_grads(X, y)
    assert_close(np.array([z.data for z in logits]), ref_logits[:, 0])
    assert_close(loss.data, ref_loss)
    grads = net.grads_like_mlp()
    for key in ("W", "b"):
        for ours, ref in zip(grads[key], ref_grads[key], strict=True):
            assert ours.shape == ref.shape
            assert_close(ours, ref)


def test_zero_grad_resets_parameter_gradients():
    net = ScalarMLP((2, 3, 1), seed=0)
    net([1.0, -1.0])[0].backward()
    assert any(p.grad != 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad == 0 for p in net.parameters())


def test_scalar_bce_with_logits_matches_torch():
    z = [0.3, -2.0, 4.0]
    y = [1, 0, 0]
    values = [Value(v) for v in z]
    loss = scalar_bce_with_logits(values, y)
    loss.backward()
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(y, dtype=torch.float64))
    ref.backward()
    assert_close(torch.tensor(loss.data, dtype=torch.float64), ref.detach())
    assert_close(torch.tensor([v.grad for v in values], dtype=torch.float64), zt.grad)
