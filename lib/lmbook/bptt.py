"""Backpropagation through time for the vanilla RNN, vanishing and exploding gradients, and clipping by norm.

Introduced in chapter 6, Recurrent networks and LSTMs (section 2). The recurrent cell of :mod:`lmbook.rnn`,
``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``, unrolled over ``T`` steps is a deep network whose layers share their
weights. :func:`rnn_backward` back-propagates through it by hand: the error reaching ``h_{t-1}`` is the error at
``h_t`` times the step's Jacobian ``diag(1 - h_t^2) W_h``, and each shared weight adds up its gradient over the
steps (Werbos 1990, "Backpropagation through time: what it does and how to do it"). Over many steps the product
of those Jacobians shrinks or grows geometrically, at a rate set by the spectral radius of ``W_h``
(:func:`with_spectral_radius`, :func:`gradient_per_step`); Pascanu, Mikolov and Bengio (2013, "On the difficulty
of training recurrent neural networks") analysed both cases and proposed clipping the gradient by its global
norm, :func:`clip_grad_norm`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from lmbook.rnn import rnn_forward
from lmbook.testing import check_shape

GRADIENT_KEYS = ("x", "h0", "W_x", "W_h", "b")


def rnn_backward(x, h0, W_x, W_h, b, grad_h) -> dict[str, torch.Tensor]:
    """The gradients of a loss through an unrolled vanilla RNN, by backpropagation through time written by hand.

    The forward pass is :func:`lmbook.rnn.rnn_forward`; the loss is anything whose gradient with respect to every
    output ``h_t`` is ``grad_h``. Going back from ``t = T`` to ``t = 1``, the error at ``h_t`` is the loss's own
    gradient there plus what comes back from step ``t + 1``; through ``tanh`` it becomes
    ``dz_t = dh_t * (1 - h_t^2)``, and from there it reaches the input ``x_t`` (through ``W_x``), the previous state
    ``h_{t-1}`` (through ``W_h``) and the shared weights, which sum their gradients over all steps.

    Args:
        x: inputs ``(B, T, d_in)``. h0: the initial state ``(B, d_hidden)``, or None for zeros.
        W_x: ``(d_hidden, d_in)``. W_h: ``(d_hidden, d_hidden)``. b: ``(d_hidden,)``.
        grad_h: the loss's gradient with respect to every output ``h_t``, ``(B, T, d_hidden)``; a loss on the
            final state only has zeros everywhere but ``grad_h[:, -1]``.

    Returns:
        ``{"x": (B, T, d_in), "h0": (B, d_hidden), "W_x": (d_hidden, d_in), "W_h": (d_hidden, d_hidden),
        "b": (d_hidden,)}``: the gradient of the loss with respect to each, in the inputs' dtype.
    """
    dims: dict[str, int] = {}
    check_shape(x, ("B", "T", "d_in"), "x", dims)
    check_shape(W_x, ("d_hidden", "d_in"), "W_x", dims)
    check_shape(W_h, ("d_hidden", "d_hidden"), "W_h", dims)
    check_shape(b, ("d_hidden",), "b", dims)
    if h0 is None:
        h0 = x.new_zeros(dims["B"], dims["d_hidden"])
    check_shape(h0, ("B", "d_hidden"), "h0", dims)
    check_shape(grad_h, ("B", "T", "d_hidden"), "grad_h", dims)
    T = dims["T"]
    with torch.no_grad():
        h, _ = rnn_forward(x, h0, W_x, W_h, b)  # (B, T, d_hidden): h_1 .. h_T
        h_prev = torch.cat([h0[:, None], h[:, :-1]], dim=1)  # (B, T, d_hidden): h_0 .. h_{T-1}
        dz = torch.empty_like(h)  # (B, T, d_hidden): the error before tanh at each step
        dh_next = torch.zeros_like(h0)  # the error arriving at h_t from step t + 1 (none after the last step)
        for t in reversed(range(T)):
            dh = grad_h[:, t] + dh_next  # the loss reads h_t directly, and through every later step
            dz[:, t] = dh * (1 - h[:, t] ** 2)  # tanh'(z) = 1 - tanh(z)^2
            dh_next = dz[:, t] @ W_h  # (B, d_hidden): back through z_t = ... + h_{t-1} W_h^T
        return {
            "x": dz @ W_x,  # (B, T, d_in)
            "h0": dh_next,
            # The weights are shared by all steps: their gradient is the sum over steps (and examples).
            "W_x": torch.einsum("btj,bti->ji", dz, x),
            "W_h": torch.einsum("btj,bti->ji", dz, h_prev),
            "b": dz.sum(dim=(0, 1)),
        }


def spectral_radius(W) -> float:
    """The largest absolute value of the eigenvalues of the square matrix ``W`` ``(n, n)``."""
    W = torch.as_tensor(W)
    check_shape(W, ("n", "n"), "W")
    return float(torch.linalg.eigvals(W.double()).abs().max())


def with_spectral_radius(W, radius: float) -> torch.Tensor:
    """``W`` ``(n, n)`` multiplied by one number so that its spectral radius is ``radius`` (>= 0); same dtype.

    Scaling a matrix scales all its eigenvalues, so the eigenvectors, and the directions the matrix favours,
    stay the same: only how much repeated multiplication by ``W`` grows or shrinks a vector changes.
    """
    W = torch.as_tensor(W)
    if not radius >= 0:
        raise ValueError(f"the spectral radius must be >= 0, got {radius}")
    current = spectral_radius(W)
    if current == 0:
        raise ValueError("W has spectral radius 0 (it is nilpotent, e.g. all zeros): no scale gives it another radius")
    return W * (radius / current)


def random_rnn_weights(
    d_in: int, d_hidden: int, radius: float, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights ``(W_x, W_h, b)`` of a random vanilla RNN whose ``W_h`` has spectral radius ``radius``.

    ``W_x`` and ``b`` are uniform in ``+-1/sqrt(d_hidden)``, as ``torch.nn.RNN`` initialises them; ``W_h`` has
    Gaussian entries, rescaled by :func:`with_spectral_radius`. The same seed gives the same matrices up to that
    scale, so changing ``radius`` changes nothing else.

    Returns:
        ``W_x (d_hidden, d_in)``, ``W_h (d_hidden, d_hidden)``, ``b (d_hidden,)``.
    """
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(d_hidden)
    W_x = (2 * torch.rand(d_hidden, d_in, generator=g, dtype=dtype) - 1) * bound
    b = (2 * torch.rand(d_hidden, generator=g, dtype=dtype) - 1) * bound
    W_h = with_spectral_radius(torch.randn(d_hidden, d_hidden, generator=g, dtype=dtype), radius)
    return W_x, W_h, b


def gradient_per_step(
    radius: float, T: int, d_in: int = 16, d_hidden: int = 32, batch: int = 16, seed: int = 0
) -> np.ndarray:
    """How large the gradient of a loss on the final state is with respect to each input ``x_t``.

    A random RNN (:func:`random_rnn_weights`, ``W_h`` of spectral radius ``radius``) reads ``batch`` sequences of
    ``T`` standard normal inputs from ``h_0 = 0``; the loss is ``u . h_T`` for a random unit vector ``u`` per
    sequence, so its gradient at ``h_T`` has norm 1. One call of :func:`rnn_backward` gives the gradient for all
    steps at once, in float64 (whose range holds the 1e-80 and the 1e+40 that long sequences reach).

    Args:
        radius: the spectral radius of ``W_h``, >= 0. T: sequence length, >= 1.
        d_in, d_hidden: input and state widths. batch: sequences averaged over. seed: weights, inputs and ``u``.

    Returns:
        float64 array ``(T,)``: element ``t - 1`` is the mean over the batch of ``||dL/dx_t||`` for ``t = 1..T``.
    """
    if T < 1:
        raise ValueError(f"the sequence length T must be at least 1, got {T}")
    W_x, W_h, b = random_rnn_weights(d_in, d_hidden, radius, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, T, d_in, generator=g, dtype=torch.float64)
    u = torch.randn(batch, d_hidden, generator=g, dtype=torch.float64)
    grad_h = torch.zeros(batch, T, d_hidden, dtype=torch.float64)
    grad_h[:, -1] = u / u.norm(dim=1, keepdim=True)
    grads = rnn_backward(x, None, W_x, W_h, b, grad_h)
    return grads["x"].norm(dim=2).mean(dim=0).numpy()


def input_gradient_per_step(model: torch.nn.Module, module: torch.nn.Module, inputs: tuple, labels) -> np.ndarray:
    """How large the gradient of a classifier's loss is with respect to each time step of one layer's output.

    Runs ``model(*inputs)``, takes the mean cross-entropy against ``labels`` and back-propagates; the gradient is
    read at the output of ``module`` (for instance the embedding, whose output at step ``t`` is the input ``x_t``
    of the recurrent layer), which must be ``(B, T, ...)``. The model's parameters get no ``.grad``.

    Args:
        model: maps ``inputs`` to logits ``(B, K)``. module: a submodule of ``model`` with a ``(B, T, ...)`` output.
        inputs: the positional arguments of ``model`` (a tuple). labels: int64 ``(B,)``.

    Returns:
        float64 array ``(T,)``: the mean over the batch of ``||dL/d out[:, t]||``, the norms taken in float64.
    """
    captured = []

    def keep(_module, _inputs, output):
        captured.append(output)

    handle = module.register_forward_hook(keep)
    try:
        logits = model(*inputs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"the module ran {len(captured)} times in one forward pass; expected once")
    (out,) = captured
    check_shape(out, ("B", "T", None), "the module's output")
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels))
    (grad,) = torch.autograd.grad(loss, out)
    # In float64: squaring a float32 gradient of 1e-26 to take its norm would underflow to 0.
    return grad.double().flatten(2).norm(dim=2).mean(dim=0).cpu().numpy()


def _gradients(tensors: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The gradient tensors behind ``tensors``: a parameter's ``.grad`` (skipped when None), or the tensor itself
    when it is a plain tensor that does not require a gradient (a gradient already computed, e.g. by
    :func:`rnn_backward`)."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    grads = []
    for t in tensors:
        if t.grad is not None:
            grads.append(t.grad)
        elif not t.requires_grad:
            grads.append(t)
    return grads


def clip_grad_norm(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Rescale all gradients together, in place, so that their global L2 norm is at most ``max_norm``.

    The global norm treats every gradient of the model as one long vector:
    ``||g|| = sqrt(sum over tensors of sum of squares)``. When it exceeds ``max_norm``, every gradient is
    multiplied by the same factor ``max_norm / (||g|| + 1e-6)``, so the step keeps its direction and only gets
    shorter; otherwise nothing changes. (Clipping each element to ``[-max_norm, max_norm]`` would change the
    direction.) Same rule and same small constant as ``torch.nn.utils.clip_grad_norm_``.

    Args:
        parameters: a parameter or an iterable of them (their ``.grad`` is clipped; parameters without one are
            skipped), or gradient tensors themselves (tensors that do not require a gradient).
        max_norm: the largest global norm allowed, > 0.

    Returns:
        The global norm before clipping, a 0-d tensor (0 when there is no gradient).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = _gradients(parameters)
    if not grads:
        return torch.tensor(0.0)
    with torch.no_grad():
        total = torch.sqrt(sum(g.double().pow(2).sum() for g in grads)).to(grads[0].dtype)
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype))
    return total
