"""Reference tests of lmbook.rnn against torch.nn.RNN, LSTM and GRU in float64: values and gradients.

Every scratch module is loaded with a torch module's weights (``from_torch``) and must give the same outputs and
final states, and the same gradients for the inputs, the initial states and every weight, for one and two layers,
batches of 1 and 3, several lengths and a non-zero initial state. A cell with its gates in the wrong order is
caught by the same comparison.
"""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from lmbook import rnn
from lmbook.rnn import (
    ScratchGRU,
    ScratchLSTM,
    ScratchRNN,
    gru_forward,
    gru_step,
    lstm_forward,
    lstm_step,
    rnn_forward,
    rnn_step,
)
from lmbook.testing import ShapeError

DT = torch.float64
D_IN, H = 3, 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KINDS = {"rnn": (nn.RNN, ScratchRNN), "lstm": (nn.LSTM, ScratchLSTM), "gru": (nn.GRU, ScratchGRU)}


def randn(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


def make_pair(kind, num_layers, seed=0):
    torch_cls, scratch_cls = KINDS[kind]
    torch.manual_seed(seed)
    ref = torch_cls(D_IN, H, num_layers, batch_first=True, dtype=DT)
    return ref, scratch_cls.from_torch(ref)


def initial_state(kind, num_layers, B, seed):
    if kind == "lstm":
        return (
            randn(num_layers, B, H, seed=seed).requires_grad_(),
            randn(num_layers, B, H, seed=seed + 1).requires_grad_(),
        )
    return randn(num_layers, B, H, seed=seed).requires_grad_()


def leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


def run(module, x, state):
    """Outputs, final states and the gradients of a random linear function of both w.r.t. everything."""
    out, last = module(x, state)
    last = leaves(last)
    loss = (out * randn(*out.shape, seed=11)).sum() + sum(
        (s * randn(*s.shape, seed=12 + i)).sum() for i, s in enumerate(last)
    )
    wrt = [x, *leaves(state), *module.parameters()]
    return [out, *last], torch.autograd.grad(loss, wrt)


def scratch_grads_as_torch(kind, scratch_grads, num_layers):
    """Scratch parameter gradients in the order of torch's parameters (w_ih, w_hh, b_ih, b_hh per layer).

    A summed bias ``b = b_ih + b_hh`` has one gradient, which is the gradient of each of torch's two biases.
    """
    by_name = dict(scratch_grads)
    out = []
    for layer in range(num_layers):
        out += [by_name[f"W_x.{layer}"], by_name[f"W_h.{layer}"]]
        if kind == "gru":
            out += [by_name[f"b_x.{layer}"], by_name[f"b_h.{layer}"]]
        else:
            out += [by_name[f"b.{layer}"]] * 2
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("num_layers", "B", "T"), [(1, 1, 1), (1, 3, 5), (2, 1, 4), (2, 3, 6)])
def test_module_matches_torch_values_and_gradients(kind, num_layers, B, T):
    ref, scratch = make_pair(kind, num_layers, seed=num_layers * 10 + B)
    x = randn(B, T, D_IN, seed=T).requires_grad_()
    state = initial_state(kind, num_layers, B, seed=5)
    ref_values, ref_grads = run(ref, x, state)
    values, grads = run(scratch, x, state)
    for a, b in zip(values, ref_values, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)
    n_in = 1 + len(leaves(state))
    for a, b in zip(grads[:n_in], ref_grads[:n_in], strict=True):  # input and initial states
        assert_close(a, b, rtol=1e-12, atol=1e-12)
    names = [n for n, _ in scratch.named_parameters()]
    scratch_param_grads = scratch_grads_as_torch(kind, zip(names, grads[n_in:], strict=True), num_layers)
    for a, b in zip(scratch_param_grads, ref_grads[n_in:], strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_state_is_the_default(kind):
    ref, scratch = make_pair(kind, 2)
    x = randn(2, 3, D_IN, seed=1)
    out, _ = scratch(x)
    assert_close(out, ref(x)[0], rtol=1e-12, atol=1e-12)


def test_step_functions_match_torch_cells():
    x, h, c = randn(3, D_IN, seed=1), randn(3, H, seed=2), randn(3, H, seed=3)
    torch.manual_seed(0)
    cell = nn.RNNCell(D_IN, H, dtype=DT)
    assert_close(rnn_step(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh), cell(x, h))
    cell = nn.LSTMCell(D_IN, H, dtype=DT)
    got = lstm_step(x, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh)
    for a, b in zip(got, cell(x, (h, c)), strict=True):
        assert_close(a, b)
    cell = nn.GRUCell(D_IN, H, dtype=DT)
    assert_close(gru_step(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), cell(x, h))


def test_unrolled_forward_is_the_step_repeated():
    W_x, W_h, b = randn(H, D_IN, seed=1), randn(H, H, seed=2) * 0.5, randn(H, seed=3)
    x, h = randn(2, 4, D_IN, seed=4), randn(2, H, seed=5)
    outputs, h_T = rnn_forward(x, h, W_x, W_h, b)
    for t in range(4):
        h = rnn_step(x[:, t], h, W_x, W_h, b)
        assert_close(outputs[:, t], h)
    assert_close(h_T, h)
    assert rnn_forward(x[:, :0], None, W_x, W_h, b)[0].shape == (2, 0, H)  # T = 0: no steps, h_T = h_0 = 0


def test_wrong_gate_order_is_caught(monkeypatch):
    """An LSTM that reads its gates as i, g, f, o (input and forget blocks swapped with the candidate) must fail."""

    def swapped(x_t, h, c, W_x, W_h, b):
        i, f, g, o = (x_t @ W_x.T + h @ W_h.T + b).chunk(4, dim=1)
        i, g, f, o = i, f, g, o  # the mistake: the second block taken as the candidate, the third as forget
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    ref, scratch = make_pair("lstm", 1)
    x = randn(2, 3, D_IN, seed=1)
    monkeypatch.setattr(rnn, "_lstm_cell", swapped)
    with pytest.raises(AssertionError):
        assert_close(scratch(x)[0], ref(x)[0])


def test_shape_errors_name_expected_and_actual():
    W_x, W_h, b = randn(H, D_IN, seed=1), randn(H, H, seed=2), randn(H, seed=3)
    with pytest.raises(ShapeError, match=r"x_t: expected shape \(B, d_in\), got \(2, 5\) \[d_in=3\]"):
        rnn_step(randn(2, 5, seed=0), randn(2, H, seed=0), W_x, W_h, b)
    with pytest.raises(ShapeError, match=r"W_x \(4 gates stacked\): expected shape \(16, d_in\), got \(4, 3\)"):
        lstm_forward(randn(2, 3, D_IN, seed=0), None, W_x, randn(4 * H, H, seed=2), randn(4 * H, seed=3))
    with pytest.raises(ShapeError, match=r"b_h \(3 gates stacked\): expected shape \(12,\), got \(4,\)"):
        gru_forward(
            randn(2, 3, D_IN, seed=0),
            None,
            randn(3 * H, D_IN, seed=1),
            randn(3 * H, H, seed=2),
            randn(3 * H, seed=3),
            b,
        )
    with pytest.raises(
        ShapeError, match=r"x \(batch-first: B, T, d_in\): expected shape \(B, T, d_in\), got \(2, 3\) \[d_in=3\]"
    ):
        ScratchRNN(D_IN, H)(randn(2, 3, seed=0))
    with pytest.raises(
        ShapeError, match=r"state \(num_layers, B, d_hidden\): expected shape \(2, B, 4\), got \(1, 5, 4\)"
    ):
        ScratchGRU(D_IN, H, num_layers=2)(randn(5, 3, D_IN, seed=0), randn(1, 5, H, seed=0))


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.LSTM(3, 4, bidirectional=True), "bidirectional=True"),
        (nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
        (nn.GRU(3, 4, bias=False), "bias=False"),
        (nn.RNN(3, 4, num_layers=2, dropout=0.5), "dropout=0.5"),
        (nn.RNN(3, 4, nonlinearity="relu"), "nonlinearity='relu'"),
    ],
)
def test_from_torch_rejects_unsupported_options(module, message):
    cls = {nn.RNN: ScratchRNN, nn.LSTM: ScratchLSTM, nn.GRU: ScratchGRU}[type(module)]
    with pytest.raises(ValueError, match=message):
        cls.from_torch(module)
    with pytest.raises(TypeError, match="expects a torch.nn.GRU, got LSTM"):
        ScratchGRU.from_torch(nn.LSTM(3, 4))


def test_time_first_torch_module_has_the_same_weights():
    torch.manual_seed(0)
    ref = nn.GRU(D_IN, H, num_layers=2, dtype=DT)  # batch_first=False: inputs (T, B, d_in)
    x = randn(2, 5, D_IN, seed=1)
    assert_close(ScratchGRU.from_torch(ref)(x)[0], ref(x.transpose(0, 1))[0].transpose(0, 1))


def test_parameters_are_initialised_like_torch():
    model = ScratchLSTM(D_IN, 16, num_layers=2)
    assert [tuple(p.shape) for p in model.parameters()] == [(64, 3), (64, 16), (64, 16), (64, 16), (64,), (64,)]
    bound = 1 / 16**0.5
    assert all(p.abs().max() <= bound for p in model.parameters())
    assert all(p.abs().max() > 0.8 * bound for p in model.parameters())  # spread over the range, not all tiny
