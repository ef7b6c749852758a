"""Quantisation: storing and computing with small integers instead of 32-bit floats.

Introduced in chapter 10, Small and fast models. A float tensor ``x`` is stored as integers ``q`` of ``bits`` bits
and one or a few floats that map them back:

    q = clamp(round(x / s) + z, q_min, q_max)        x_hat = (q - z) * s

with the **scale** ``s`` (a positive float) and the **zero point** ``z`` (an integer inside ``q_min..q_max``, so that
the float 0 is stored exactly as ``q = z``). The order matters: divide by the scale first, round, then shift by the
zero point, and clamp last. Inside the range the rounding error ``|x - x_hat|`` is at most ``s / 2``.

Two schemes choose ``s`` and ``z`` from the values (:func:`quant_params`):

- ``"affine"`` (asymmetric) maps ``[min(x, 0), max(x, 0)]`` onto the whole integer range: ``z`` can be any
  integer in the range, and no code is wasted when the values are mostly of one sign (after a ReLU).
- ``"symmetric"`` fixes ``z = 0`` and maps ``[-max|x|, max|x|]``: the integer arithmetic of a matrix product then
  needs no zero-point corrections, which is why weights are almost always quantised this way.

Both use one scale for the whole tensor (``axis=None``, per tensor) or one per slice along an axis (``axis=0``:
per output channel, one row of a ``Linear`` weight each). An outlier in one channel then spoils only that channel.
The scales follow the same formulas as PyTorch's observers and torchao's ``choose_qparams_affine`` (the symmetric
scale divides by ``(q_max - q_min) / 2``), so :func:`quantize` returns the same integers as
``torch.quantize_per_tensor`` and ``torch.quantize_per_channel``; the tests check it.

:class:`QuantizedLinear` computes a ``Linear`` layer in integers: int8 weights times int8 activations, summed
exactly in int32 (:func:`integer_matmul`), then rescaled by the two scales; its output equals torchao's, bit for
bit. :func:`quantize_model` hands a whole model to torchao (PyTorch's maintained quantisation library,
https://github.com/pytorch/ao) with one of :data:`QUANT_METHODS`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import nn

from lmbook.testing import check_choice, check_shape

SCHEMES = ("affine", "symmetric")
"""How :func:`quant_params` chooses the scale and zero point: ``"affine"`` (any zero point, the range fits
``[min, max]``) or ``"symmetric"`` (zero point 0, the range fits ``[-max|x|, max|x|]``)."""

_EPS = torch.finfo(torch.float32).eps
"""Smallest scale: an all-zero tensor (or channel) would otherwise give a scale of 0 and a division by zero. The
same floor as PyTorch's observers and torchao."""


def _check_bits(bits) -> int:
    """Return ``bits`` if it is an integer from 2 to 16, else raise a ValueError naming the allowed values."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 2 to 16, got {bits!r}")
    return bits


def _int_dtype(bits: int) -> torch.dtype:
    """The smallest signed torch integer type that holds ``bits``-bit signed integers."""
    return torch.int8 if bits <= 8 else torch.int16


def quant_range(bits: int = 8, signed: bool = True) -> tuple[int, int]:
    """The integers ``(q_min, q_max)`` that ``bits`` bits store: ``-2^(b-1)..2^(b-1)-1`` signed (``-128..127`` for
    int8), ``0..2^b-1`` unsigned (``0..255`` for uint8).

    Example:
        >>> quant_range(8), quant_range(4), quant_range(8, signed=False)
        ((-128, 127), (-8, 7), (0, 255))
    """
    b = _check_bits(bits)
    if signed:
        return -(2 ** (b - 1)), 2 ** (b - 1) - 1
    return 0, 2**b - 1


def _reduce_dims(x: torch.Tensor, axis: int | None) -> tuple[int, ...]:
    """The dimensions to take the min/max over: all of them per tensor, all but ``axis`` per channel."""
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"axis must be None (per tensor) or a dimension of x (shape {tuple(x.shape)}), got {axis!r}")
    axis = axis % x.ndim
    return tuple(d for d in range(x.ndim) if d != axis)


def quant_params(
    x: torch.Tensor, bits: int = 8, scheme: str = "affine", axis: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose the scale ``s`` and zero point ``z`` that map the values of ``x`` onto ``bits``-bit signed integers.

    ``"affine"``: ``s = (max(x, 0) - min(x, 0)) / (q_max - q_min)`` and ``z = q_min - round(min(x, 0) / s)``
    (clamped into the range). ``"symmetric"``: ``s = max|x| / ((q_max - q_min) / 2)`` and ``z = 0``. Including 0 in
    the range keeps the float 0 exact (padding and ReLU outputs stay exactly 0). The scale never goes below the
    float32 epsilon, so a tensor of zeros quantises without dividing by zero.

    Args:
        x: a float tensor of any shape (detached: the parameters are not differentiated).
        bits: ``b``, from 2 to 16. scheme: one of :data:`SCHEMES`.
        axis: ``None`` for one scale for the whole tensor, or a dimension (``0``: one per output channel of a
            ``Linear`` weight of shape ``(C_out, C_in)``) for one scale per slice along it.

    Returns:
        ``(scale, zero_point)``: float tensors of ``x``'s dtype and int32 tensors, 0-dimensional per tensor, or
        shaped to broadcast against ``x`` per channel (``(C_out, 1)`` for a 2-D weight with ``axis=0``).
    """
    check_choice(scheme, SCHEMES, "scheme")
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    q_min, q_max = quant_range(bits)
    x = x.detach()
    dims = _reduce_dims(x, axis)
    keep = axis is not None
    # Extend the range to include 0 so that the float 0 is stored exactly (as q = z).
    lo = torch.clamp(torch.amin(x, dim=dims, keepdim=keep), max=0.0)
    hi = torch.clamp(torch.amax(x, dim=dims, keepdim=keep), min=0.0)
    if scheme == "symmetric":
        scale = torch.maximum(-lo, hi) / ((q_max - q_min) / 2)
        scale = torch.clamp(scale, min=_EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((hi - lo) / (q_max - q_min), min=_EPS)
        zero_point = torch.clamp(q_min - torch.round(lo / scale), q_min, q_max).to(torch.int32)
    return scale, zero_point


def quantize(x: torch.Tensor, scale, zero_point, bits: int = 8) -> torch.Tensor:
    """Store ``x`` as ``bits``-bit signed integers: ``q = clamp(round(x / scale) + zero_point, q_min, q_max)``.

    Rounding is to the nearest integer, ties to even (``torch.round``, as PyTorch's quantisers do). The zero point
    is added after rounding (it is an integer already) and the clamp comes last, so values outside the range
    saturate at ``q_min`` or ``q_max`` instead of wrapping around. The division is computed as ``x * (1 / scale)``,
    as PyTorch's and torchao's kernels do: the symmetric scale puts ``-max|x|`` exactly on a tie
    (``-127.5``), and the two ways of dividing can round it to different sides.

    Args:
        x: a float tensor. scale, zero_point: from :func:`quant_params` (or numbers), broadcastable against ``x``.
        bits: ``b``, from 2 to 16.

    Returns:
        an integer tensor of ``x``'s shape: ``torch.int8`` for up to 8 bits, ``torch.int16`` above.
    """
    q_min, q_max = quant_range(bits)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    zero_point = torch.as_tensor(zero_point, device=x.device)
    if torch.is_floating_point(zero_point) and not torch.equal(zero_point, torch.round(zero_point)):
        raise ValueError("zero_point must hold integers")
    if ((zero_point < q_min) | (zero_point > q_max)).any():
        raise ValueError(f"zero_point must lie in q_min..q_max = {q_min}..{q_max} for {bits} bits")
    if not (scale > 0).all():
        raise ValueError("scale must be positive")
    q = torch.round(x * (1.0 / scale)) + zero_point.to(x.dtype)
    return torch.clamp(q, q_min, q_max).to(_int_dtype(bits))


def dequantize(q: torch.Tensor, scale, zero_point) -> torch.Tensor:
    """Map the integers back to floats: ``x_hat = (q - zero_point) * scale``.

    The subtraction is done in floats: in int8 it would overflow (``127 - (-128)`` is 255). The result has the
    scale's dtype (float32 for a number).
    """
    scale = torch.as_tensor(scale, device=q.device)
    if not torch.is_floating_point(scale):
        scale = scale.to(torch.float32)
    zero_point = torch.as_tensor(zero_point, device=q.device)
    return (q.to(scale.dtype) - zero_point.to(scale.dtype)) * scale


class _FakeQuantize(torch.autograd.Function):
    """Quantise then dequantise; backward is the straight-through estimator.

    ``round`` has a zero derivative almost everywhere, which would stop all learning through it. The
    straight-through estimator (Bengio, Leonard and Courville 2013, *Estimating or Propagating Gradients Through
    Stochastic Neurons for Conditional Computation*, arXiv:1308.3432) treats the rounding as the identity in the
    backward pass; only values clamped to ``q_min`` or ``q_max`` get a zero gradient, as in
    ``torch.fake_quantize_per_tensor_affine``.
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, bits):
        q_min, q_max = quant_range(bits)
        unclamped = torch.round(x * (1.0 / scale)) + zero_point.to(x.dtype)
        ctx.save_for_backward((unclamped >= q_min) & (unclamped <= q_max))
        return dequantize(quantize(x, scale, zero_point, bits), scale, zero_point).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None, None, None


def fake_quantize(
    x: torch.Tensor,
    bits: int = 8,
    scheme: str = "affine",
    axis: int | None = None,
    *,
    scale=None,
    zero_point=None,
) -> torch.Tensor:
    """Quantise and dequantise ``x`` in one step: the float values that ``bits``-bit integers can represent.

    The result has ``x``'s shape and dtype, so it can replace ``x`` anywhere to show what quantisation does to a
    computation. Its gradient is the straight-through estimator: the identity, except zero where a value was
    clamped (the same as ``torch.fake_quantize_per_tensor_affine``).

    Args:
        x: a float tensor. bits, scheme, axis: as in :func:`quant_params`.
        scale, zero_point: give both to use parameters calibrated elsewhere (values of ``x`` outside their
            range are then clamped); by default they are chosen from ``x`` itself.
    """
    if (scale is None) != (zero_point is None):
        raise ValueError("give both scale and zero_point, or neither")
    if scale is None:
        scale, zero_point = quant_params(x, bits, scheme, axis)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    zero_point = torch.as_tensor(zero_point, device=x.device)
    return _FakeQuantize.apply(x, scale, zero_point, _check_bits(bits))


def integer_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for int8 matrices ``(M, K)`` and ``(K, N)``, accumulated exactly in int32: ``(M, N)`` int32.

    One product of two int8 numbers fits in 16 bits and a sum of ``K`` of them in ``16 + log2(K)`` bits, so int32
    holds any sum up to ``K = 2^15`` exactly. ``torch._int_mm`` is PyTorch's int8 x int8 -> int32 kernel (the one
    torchao calls); where it refuses a shape, the product is done in int32 by the general integer matmul.
    """
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"a and b must be int8 tensors, got {a.dtype} and {b.dtype}")
    check_shape(a, ("M", "K"), "a", dims := {})
    check_shape(b, ("K", "N"), "b", dims)
    try:
        return torch._int_mm(a, b)
    except RuntimeError:
        return a.to(torch.int32) @ b.to(torch.int32)


class QuantizedLinear(nn.Module):
    """A ``Linear`` layer that multiplies int8 activations by int8 weights and accumulates in int32.

    The weight ``W`` ``(C_out, C_in)`` is quantised once, symmetric per output channel: ``W ~ s_w * W_q`` with one
    scale per row. Each input ``x`` is quantised when it arrives (dynamic quantisation), symmetric with one scale
    for the whole tensor: ``x ~ s_x * x_q``. Then

        y = x W^T + b  ~  s_x * (x_q W_q^T) * s_w^T + b

    where ``x_q W_q^T`` is a product of integers, exact in int32 (:func:`integer_matmul`); the floats only rescale
    its result. Symmetric scales (zero points 0) are what keep the integer product free of correction terms. The
    same arithmetic, in the same order, as torchao's ``Int8DynamicActivationInt8WeightConfig`` with per-tensor
    activation scales (``granularity=[PerTensor(), PerRow()]``).

    Args:
        linear: the float layer to quantise (left unchanged).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach().float()  # (C_out, C_in)
        scale, zero_point = quant_params(W, 8, "symmetric", axis=0)  # (C_out, 1) each; zero points all 0
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_q", quantize(W, scale, zero_point))  # (C_out, C_in) int8
        self.register_buffer("weight_scale", scale)  # (C_out, 1)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, (*[None] * (x.ndim - 1), "C_in"), "x", {"C_in": self.in_features})  # (*, C_in)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float()  # (B, C_in), all leading axes flattened
        s_x, _ = quant_params(x2, 8, "symmetric")  # one scale for the whole input, zero point 0
        x_q = quantize(x2, s_x, 0)  # (B, C_in) int8
        acc = integer_matmul(x_q, self.weight_q.t())  # (B, C_out) int32, exact
        y = (acc.float() * s_x) * self.weight_scale.t()  # rescale: s_x, then s_w per output column
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 x int8 -> int32"


QUANT_METHODS = ("int8-dynamic", "int8-weight", "int4-weight")
"""What :func:`quantize_model` does with torchao: ``"int8-dynamic"`` int8 weights (per output channel) times int8
activations quantised at run time (per token), int32 accumulation (``Int8DynamicActivationInt8WeightConfig``);
``"int8-weight"`` int8 weights dequantised into a float matrix product (``Int8WeightOnlyConfig``);
``"int4-weight"`` 4-bit weights, one scale and zero point per group of 32 (``IntxWeightOnlyConfig`` with
``torch.int4``, the int4 path that runs on the CPU; it keeps each 4-bit value in an int8 byte)."""

VARIANT_NAMES = {
    "int8-dynamic": "int8 dynamic (torchao)",
    "int8-weight": "int8 weight-only (torchao)",
    "int4-weight": "int4 weight-only (torchao)",
}
"""The name of each of :data:`QUANT_METHODS` in the chapter's tables (the float model is ``"float32"``)."""

DEFAULT_SKIP = ("classifier",)
"""Modules :func:`quantize_model` leaves in float unless told otherwise: the classification head of
:class:`lmbook.finetune.BertClassifier` (a tiny layer whose errors go straight into the logits)."""


def load_torchao():
    """``torchao.quantization``, imported without the noise of torchao's import: torchao logs a warning for each
    optional compiled extension it cannot load (the MX-fp8 and CUTLASS GPU kernels, absent on a CPU), and
    registering its enums logs a torch.compile deprecation notice. Both are harmless; they are silenced here,
    only while torchao is imported."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        import torchao.quantization as tq
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    return tq


def torchao_config(method: str):
    """The torchao configuration object behind ``method`` (one of :data:`QUANT_METHODS`)."""
    check_choice(method, QUANT_METHODS, "method")
    tq = load_torchao()
    if method == "int8-dynamic":
        # set_inductor_config=False: the book runs eagerly, and tuning torch.compile's settings costs seconds.
        return tq.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if method == "int8-weight":
        return tq.Int8WeightOnlyConfig()
    return tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=tq.PerGroup(32))


def quantize_model(model: nn.Module, method: str, skip: Iterable[str] | None = None) -> nn.Module:
    """A quantised deep copy of ``model``: every ``nn.Linear`` quantised by torchao with ``method``.

    Embeddings and layer norms are not ``Linear`` layers and stay in float; so do the modules named in ``skip``
    (a name covers the module and everything inside it, e.g. ``"bert.encoder.layers.0"``). ``model`` itself is not
    changed.

    Args:
        model: a float model on the CPU. method: one of :data:`QUANT_METHODS`.
        skip: qualified module names (as in ``model.named_modules()``) to leave in float; ``None`` (the default)
            skips those of :data:`DEFAULT_SKIP` that the model has (the classifier head); ``()`` quantises every
            ``Linear`` layer.
    """
    config = torchao_config(method)
    names = {name for name, _ in model.named_modules()}
    skip = tuple(s for s in DEFAULT_SKIP if s in names) if skip is None else tuple(skip)
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ValueError(f"skip names no module of the model: {', '.join(map(repr, unknown))}")

    def chosen(module: nn.Module, name: str) -> bool:
        skipped = any(name == s or name.startswith(s + ".") for s in skip)
        return isinstance(module, nn.Linear) and not skipped

    quantized = copy.deepcopy(model)
    load_torchao().quantize_(quantized, config, filter_fn=chosen)
    return quantized
