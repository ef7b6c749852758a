"""Recurrent cells from scratch: the plain (Elman) RNN, the LSTM and the GRU, one step and unrolled.

Introduced in chapter 6, Recurrent networks and LSTMs. A recurrent network reads a sequence one element at a time
and keeps a **hidden state** ``h`` that summarises what it has read so far. The same weights are used at every time
step, so one network takes sequences of any length. The plain cell is one line::

    h_t = tanh(W_x x_t + W_h h_{t-1} + b)

Names and shapes are the chapter's: input width ``d_in``, hidden-state size ``d_hidden`` (``H`` in the gate
formulas), batch ``B``, sequence length ``T``; tensors are batch-first, ``x`` is ``(B, T, d_in)``. ``W_x`` is
``(d_hidden, d_in)`` and ``W_h`` is ``(d_hidden, d_hidden)``, as in the formula; the rows of a batch are
multiplied as ``x_t @ W_x.T``.

The LSTM and the GRU stack their gates' weights in PyTorch's order, so that ``torch.nn.LSTM`` and ``torch.nn.GRU``
weights load without reordering: LSTM ``i, f, g, o`` (``W_x`` is ``(4H, d_in)``), GRU ``r, z, n`` (``(3H, d_in)``).

- :func:`rnn_step`, :func:`lstm_step`, :func:`gru_step`: one time step of each cell, written out;
- :func:`rnn_forward`, :func:`lstm_forward`, :func:`gru_forward`: the step repeated over ``T`` time steps (the
  **unrolled** network); autograd then gives backpropagation through time for free;
- :class:`ScratchRNN`, :class:`ScratchLSTM`, :class:`ScratchGRU`: ``nn.Module`` versions with stacked layers that
  take and return the same shapes as ``torch.nn.RNN``, ``LSTM`` and ``GRU`` (with ``batch_first=True``), and
  ``from_torch`` to copy a torch module's weights into them. The tests prove them equal to torch, values and
  gradients, in float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmbook.testing import check_shape

# ----- one time step ------------------------------------------------------------------------------------------


def _check_weights(W_x, W_h, biases: dict, gates: int, dims: dict) -> None:
    """Check ``W_x (gates*H, d_in)``, ``W_h (gates*H, H)`` and each bias ``(gates*H,)``; bind ``d_in``, ``d_hidden``."""
    stacked = "" if gates == 1 else f" ({gates} gates stacked)"
    check_shape(W_h, (None, "d_hidden"), "W_h", dims)
    rows = gates * dims["d_hidden"]
    check_shape(W_h, (rows, "d_hidden"), f"W_h{stacked}", dims)
    check_shape(W_x, (rows, "d_in"), f"W_x{stacked}", dims)
    for name, b in biases.items():
        check_shape(b, (rows,), f"{name}{stacked}", dims)


def _rnn_cell(x_t, h, W_x, W_h, b):
    return torch.tanh(x_t @ W_x.T + h @ W_h.T + b)


def _lstm_cell(x_t, h, c, W_x, W_h, b):
    gates = x_t @ W_x.T + h @ W_h.T + b  # (B, 4H): the four gates' pre-activations side by side
    i, f, g, o = gates.chunk(4, dim=1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    c = f * c + i * torch.tanh(g)  # the cell state changes by addition: keep a share f, write i * g
    h = o * torch.tanh(c)
    return h, c


def _gru_cell(x_t, h, W_x, W_h, b_x, b_h):
    gx = x_t @ W_x.T + b_x  # (B, 3H): r, z, n from the input
    gh = h @ W_h.T + b_h  # (B, 3H): r, z, n from the previous state
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # the reset gate scales the state's contribution, bias b_hn included
    return (1 - z) * n + z * h


def rnn_step(x_t: torch.Tensor, h_prev: torch.Tensor, W_x: torch.Tensor, W_h: torch.Tensor, b: torch.Tensor):
    """One step of the plain recurrent cell: ``h_t = tanh(x_t W_x^T + h_prev W_h^T + b)``.

    Args:
        x_t: the inputs at time ``t``, shape ``(B, d_in)``. h_prev: the previous hidden state, ``(B, d_hidden)``.
        W_x: ``(d_hidden, d_in)``. W_h: ``(d_hidden, d_hidden)``. b: ``(d_hidden,)``.

    Returns:
        ``h_t``, shape ``(B, d_hidden)``.
    """
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b": b}, 1, dims)
    check_shape(x_t, ("B", "d_in"), "x_t", dims)
    check_shape(h_prev, ("B", "d_hidden"), "h_prev", dims)
    return _rnn_cell(x_t, h_prev, W_x, W_h, b)


def lstm_step(x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], W_x, W_h, b):
    """One step of the LSTM cell, gates in PyTorch's order ``i, f, g, o``::

        i = sigmoid(W_xi x + W_hi h + b_i)      input gate: how much of the candidate to write
        f = sigmoid(W_xf x + W_hf h + b_f)      forget gate: how much of the old cell state to keep
        g = tanh(W_xg x + W_hg h + b_g)         candidate values
        o = sigmoid(W_xo x + W_ho h + b_o)      output gate: how much of the cell state to show
        c' = f * c + i * g                      h' = o * tanh(c')

    Args:
        x_t: ``(B, d_in)``. state: ``(h, c)``, each ``(B, H)``.
        W_x: ``(4H, d_in)``, W_h: ``(4H, H)``, b: ``(4H,)``, the four gates stacked in the order ``i, f, g, o``.
            torch keeps two biases, ``bias_ih`` and ``bias_hh``; they are always added, so ``b`` is their sum.

    Returns:
        ``(h', c')``, each ``(B, H)``.
    """
    h, c = state
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b": b}, 4, dims)
    check_shape(x_t, ("B", "d_in"), "x_t", dims)
    check_shape(h, ("B", "d_hidden"), "h", dims)
    check_shape(c, ("B", "d_hidden"), "c", dims)
    return _lstm_cell(x_t, h, c, W_x, W_h, b)


def gru_step(x_t: torch.Tensor, h: torch.Tensor, W_x, W_h, b_x, b_h):
    """One step of the GRU cell, gates in PyTorch's order ``r, z, n``::

        r = sigmoid(W_xr x + b_xr + W_hr h + b_hr)           reset gate
        z = sigmoid(W_xz x + b_xz + W_hz h + b_hz)           update gate: how much of the old state to keep
        n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))        candidate state
        h' = (1 - z) * n + z * h

    The two biases cannot be summed: ``b_hn`` sits inside the product with ``r``.

    Args:
        x_t: ``(B, d_in)``. h: ``(B, H)``. W_x: ``(3H, d_in)``. W_h: ``(3H, H)``. b_x, b_h: ``(3H,)`` each.

    Returns:
        ``h'``, shape ``(B, H)``.
    """
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b_x": b_x, "b_h": b_h}, 3, dims)
    check_shape(x_t, ("B", "d_in"), "x_t", dims)
    check_shape(h, ("B", "d_hidden"), "h", dims)
    return _gru_cell(x_t, h, W_x, W_h, b_x, b_h)


# ----- unrolled over a sequence -------------------------------------------------------------------------------


def _check_sequence(x, dims: dict) -> None:
    check_shape(x, ("B", "T", "d_in"), "x (batch-first: B, T, d_in)", dims)


def _zeros(x, dims: dict) -> torch.Tensor:
    return x.new_zeros(dims["B"], dims["d_hidden"])


def rnn_forward(x: torch.Tensor, h0: torch.Tensor | None, W_x, W_h, b):
    """The plain cell unrolled over a sequence: ``h_t = tanh(x_t W_x^T + h_{t-1} W_h^T + b)`` for ``t = 1..T``.

    Args:
        x: ``(B, T, d_in)``. h0: the initial state ``(B, d_hidden)``; None means zeros.
        W_x: ``(d_hidden, d_in)``. W_h: ``(d_hidden, d_hidden)``. b: ``(d_hidden,)``.

    Returns:
        ``(outputs, h_T)``: every hidden state ``h_1 .. h_T`` as ``(B, T, d_hidden)``, and the last one,
        ``(B, d_hidden)``.
    """
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b": b}, 1, dims)
    _check_sequence(x, dims)
    h = _zeros(x, dims) if h0 is None else check_shape(h0, ("B", "d_hidden"), "h0", dims)
    outputs = []
    for t in range(x.shape[1]):
        h = _rnn_cell(x[:, t], h, W_x, W_h, b)  # the same weights at every step
        outputs.append(h)
    return _stack(outputs, x, dims), h


def lstm_forward(x: torch.Tensor, state, W_x, W_h, b):
    """The LSTM cell (:func:`lstm_step`) unrolled over a sequence.

    Args:
        x: ``(B, T, d_in)``. state: ``(h0, c0)``, each ``(B, H)``; None means zeros for both.
        W_x: ``(4H, d_in)``. W_h: ``(4H, H)``. b: ``(4H,)``.

    Returns:
        ``(outputs, (h_T, c_T))``: the hidden states ``(B, T, H)`` and the last hidden and cell states.
    """
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b": b}, 4, dims)
    _check_sequence(x, dims)
    if state is None:
        h, c = _zeros(x, dims), _zeros(x, dims)
    else:
        h, c = state
        check_shape(h, ("B", "d_hidden"), "h0", dims)
        check_shape(c, ("B", "d_hidden"), "c0", dims)
    outputs = []
    for t in range(x.shape[1]):
        h, c = _lstm_cell(x[:, t], h, c, W_x, W_h, b)
        outputs.append(h)
    return _stack(outputs, x, dims), (h, c)


def gru_forward(x: torch.Tensor, h0: torch.Tensor | None, W_x, W_h, b_x, b_h):
    """The GRU cell (:func:`gru_step`) unrolled over a sequence.

    Args:
        x: ``(B, T, d_in)``. h0: ``(B, H)``; None means zeros. W_x: ``(3H, d_in)``. W_h: ``(3H, H)``.
        b_x, b_h: ``(3H,)`` each.

    Returns:
        ``(outputs, h_T)``: the hidden states ``(B, T, H)`` and the last one ``(B, H)``.
    """
    dims: dict[str, int] = {}
    _check_weights(W_x, W_h, {"b_x": b_x, "b_h": b_h}, 3, dims)
    _check_sequence(x, dims)
    h = _zeros(x, dims) if h0 is None else check_shape(h0, ("B", "d_hidden"), "h0", dims)
    outputs = []
    for t in range(x.shape[1]):
        h = _gru_cell(x[:, t], h, W_x, W_h, b_x, b_h)
        outputs.append(h)
    return _stack(outputs, x, dims), h


def _stack(outputs: list, x, dims: dict) -> torch.Tensor:
    if not outputs:  # T = 0: no steps, no outputs
        return x.new_zeros(dims["B"], 0, dims["d_hidden"])
    return torch.stack(outputs, dim=1)


# ----- modules with stacked layers ----------------------------------------------------------------------------


class _ScratchRecurrent(nn.Module):
    """Shared machinery of the three scratch modules: parameters per layer, state checks, ``from_torch``."""

    gates = 1  # blocks of H rows stacked in W_x, W_h and the biases
    torch_class: type[nn.RNNBase] = nn.RNN
    bias_names: tuple[str, ...] = ("b",)

    def __init__(self, d_in: int, d_hidden: int, num_layers: int = 1, *, dtype=None, device=None):
        super().__init__()
        for name, value in (("d_in", d_in), ("d_hidden", d_hidden), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.d_in, self.d_hidden, self.num_layers = d_in, d_hidden, num_layers
        rows = self.gates * d_hidden
        k = 1 / math.sqrt(d_hidden)  # torch's initialisation: uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter
        kw = {"dtype": dtype, "device": device}

        def init(*shape):
            return nn.Parameter(torch.empty(*shape, **kw).uniform_(-k, k))

        widths = [d_in] + [d_hidden] * (num_layers - 1)  # layer l > 0 reads the hidden states of layer l - 1
        self.W_x = nn.ParameterList([init(rows, w) for w in widths])
        self.W_h = nn.ParameterList([init(rows, d_hidden) for _ in widths])
        for name in self.bias_names:
            setattr(self, name, nn.ParameterList([init(rows) for _ in widths]))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_hidden={self.d_hidden}, num_layers={self.num_layers}"

    def _layer(self, l: int) -> tuple:
        return (self.W_x[l], self.W_h[l], *(getattr(self, n)[l] for n in self.bias_names))

    def _check_input(self, x, state_shapes: dict) -> dict:
        dims = {"d_in": self.d_in}
        _check_sequence(x, dims)
        for name, s in state_shapes.items():
            if s is not None:
                check_shape(s, (self.num_layers, "B", self.d_hidden), f"{name} (num_layers, B, d_hidden)", dims)
        return dims

    def _torch_biases(self, module: nn.RNNBase, l: int) -> dict:
        """The scratch biases of layer ``l`` from torch's ``bias_ih`` and ``bias_hh``: summed where one ``b``."""
        return {"b": getattr(module, f"bias_ih_l{l}") + getattr(module, f"bias_hh_l{l}")}

    @classmethod
    def from_torch(cls, module: nn.RNNBase):
        """A scratch module with a copy of ``module``'s weights (same dtype and device), computing the same function.

        ``module`` is a ``torch.nn.RNN`` (for :class:`ScratchRNN`), ``LSTM`` or ``GRU`` with biases, one
        direction, tanh (RNN), no projection (LSTM) and no dropout between layers. Its ``batch_first`` setting
        does not change its weights, so both are accepted; the scratch module always takes ``(B, T, d_in)``.
        """
        if not isinstance(module, cls.torch_class):
            raise TypeError(
                f"{cls.__name__}.from_torch expects a torch.nn.{cls.torch_class.__name__}, got {type(module).__name__}"
            )
        unsupported = []
        if module.bidirectional:
            unsupported.append("bidirectional=True (the scratch cells read left to right only)")
        if getattr(module, "proj_size", 0):
            unsupported.append(f"proj_size={module.proj_size} (no projection of h in the scratch LSTM)")
        if not module.bias:
            unsupported.append("bias=False (the scratch cells always have biases)")
        if module.dropout:
            unsupported.append(f"dropout={module.dropout} between layers (the scratch modules have none)")
        if getattr(module, "nonlinearity", "tanh") != "tanh":
            unsupported.append(f"nonlinearity={module.nonlinearity!r} (the scratch RNN uses tanh)")
        if unsupported:
            raise ValueError(f"cannot copy this torch.nn.{cls.torch_class.__name__}: " + "; ".join(unsupported))
        ref = module.weight_ih_l0
        new = cls(module.input_size, module.hidden_size, module.num_layers, dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            for l in range(module.num_layers):
                new.W_x[l].copy_(getattr(module, f"weight_ih_l{l}"))
                new.W_h[l].copy_(getattr(module, f"weight_hh_l{l}"))
                for name, value in new._torch_biases(module, l).items():
                    getattr(new, name)[l].copy_(value)
        return new


class ScratchRNN(_ScratchRecurrent):
    """Stacked plain recurrent layers built on :func:`rnn_forward`; the same shapes as
    ``torch.nn.RNN(d_in, d_hidden, num_layers, batch_first=True)``.

    Layer ``l`` has parameters ``W_x[l]``, ``W_h[l]`` and ``b[l]`` (one bias: torch's two are only ever added).

    ``forward(x, state=None)``: ``x`` is ``(B, T, d_in)``, ``state`` the initial ``h_0`` of every layer,
    ``(num_layers, B, d_hidden)`` (None: zeros). Returns ``(output, h_n)``: the last layer's hidden states
    ``(B, T, d_hidden)`` and every layer's last state ``(num_layers, B, d_hidden)``.
    """

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        self._check_input(x, {"state": state})
        last = []
        for l in range(self.num_layers):
            x, h = rnn_forward(x, None if state is None else state[l], *self._layer(l))
            last.append(h)
        return x, torch.stack(last)


class ScratchLSTM(_ScratchRecurrent):
    """Stacked LSTM layers built on :func:`lstm_forward`; the same shapes as
    ``torch.nn.LSTM(d_in, d_hidden, num_layers, batch_first=True)``.

    Layer ``l`` has ``W_x[l]`` ``(4H, d_in or H)``, ``W_h[l]`` ``(4H, H)`` and ``b[l]`` ``(4H,)``, gates ``i, f, g, o``.

    ``forward(x, state=None)``: ``x`` is ``(B, T, d_in)``, ``state`` is ``(h_0, c_0)``, each
    ``(num_layers, B, H)`` (None: zeros). Returns ``(output, (h_n, c_n))`` with ``output`` ``(B, T, H)``.
    """

    gates = 4
    torch_class = nn.LSTM

    def forward(self, x: torch.Tensor, state=None):
        h0, c0 = (None, None) if state is None else state
        self._check_input(x, {"h_0": h0, "c_0": c0})
        last_h, last_c = [], []
        for l in range(self.num_layers):
            x, (h, c) = lstm_forward(x, None if state is None else (h0[l], c0[l]), *self._layer(l))
            last_h.append(h)
            last_c.append(c)
        return x, (torch.stack(last_h), torch.stack(last_c))


class ScratchGRU(_ScratchRecurrent):
    """Stacked GRU layers built on :func:`gru_forward`; the same shapes as
    ``torch.nn.GRU(d_in, d_hidden, num_layers, batch_first=True)``.

    Layer ``l`` has ``W_x[l]`` ``(3H, d_in or H)``, ``W_h[l]`` ``(3H, H)`` and two biases ``b_x[l]`` and
    ``b_h[l]`` ``(3H,)``, gates ``r, z, n`` (the two biases stay apart: ``b_hn`` is multiplied by ``r``).

    ``forward(x, state=None)``: ``state`` is ``h_0``, ``(num_layers, B, H)`` (None: zeros). Returns
    ``(output, h_n)``.
    """

    gates = 3
    torch_class = nn.GRU
    bias_names = ("b_x", "b_h")

    def _torch_biases(self, module: nn.RNNBase, l: int) -> dict:
        return {"b_x": getattr(module, f"bias_ih_l{l}"), "b_h": getattr(module, f"bias_hh_l{l}")}

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        self._check_input(x, {"state": state})
        last = []
        for l in range(self.num_layers):
            x, h = gru_forward(x, None if state is None else state[l], *self._layer(l))
            last.append(h)
        return x, torch.stack(last)
