"""What a network's layers see and cost: receptive fields, output shapes, parameters and FLOPs per layer.

Introduced in chapter 5, Convolutional networks (section "Pooling and the classic architecture"), and reused in
chapter 9, Compute, memory and scale, for any ``torch.nn.Module``.

Receptive field. For a stack of convolution and pooling layers along one axis, three numbers describe where an
output unit of layer ``l`` looks in the input (Araujo, Norris and Sim, 2019, "Computing receptive fields of
convolutional neural networks", Distill):

- ``size`` r: how many input pixels it depends on;
- ``jump`` j: how far apart in the input two neighbouring units of the layer are centred (the product of the
  strides so far);
- ``start``: the input coordinate of the centre of the first unit's field (negative when padding lets it hang
  over the border).

A layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` covers ``k' = d (k - 1) + 1`` of its
input units, so ``j_l = j_{l-1} s``, ``r_l = r_{l-1} + (k' - 1) j_{l-1}`` and
``start_l = start_{l-1} + ((k' - 1) / 2 - p) j_{l-1}``, from ``r = j = 1`` and ``start = 0`` at the input.

Cost. :func:`layer_table` runs the model once on a zero input of the given shape with a forward hook on every
layer and records, per call: output shape, parameter count and the multiply-adds (MACs) of convolutions and
linear layers. **FLOPs are counted as 2 x MACs** (one multiply and one add per weight use), the convention of
``torch.utils.flop_counter.FlopCounterMode`` and of :func:`lmbook.transformer.count_flops`; biases are not
counted. Cheap element-wise work (activations, pooling comparisons and sums, normalisation) is listed apart,
as ``other_ops``, one per element touched, and is not part of the FLOPs. Only work done inside modules is
seen: a ``torch`` function called directly in a ``forward`` (an attention product, say) is not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from lmbook.loop import evaluation_mode

# ----- receptive fields ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldLayer:
    """One convolution or pooling layer along one axis, as far as the receptive field is concerned."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where the units after a layer look in the input: field ``size``, ``jump`` between units, ``start`` centre."""

    name: str
    size: int
    jump: int
    start: float


def receptive_field(layers: Sequence[FieldLayer]) -> list[ReceptiveField]:
    """The receptive field after each layer of a stack (one axis), the input itself first.

    Args:
        layers: the stack, first layer first (e.g. from :func:`field_layers`).

    Returns:
        ``len(layers) + 1`` rows: ``ReceptiveField("input", 1, 1, 0.0)``, then one per layer.
    """
    rows = [ReceptiveField("input", 1, 1, 0.0)]
    for layer in layers:
        if min(layer.kernel, layer.stride, layer.dilation) < 1 or layer.padding < 0:
            raise ValueError(f"{layer.name}: need kernel, stride, dilation >= 1 and padding >= 0, got {layer}")
        prev = rows[-1]
        span = layer.dilation * (layer.kernel - 1) + 1  # input units one output unit covers
        rows.append(
            ReceptiveField(
                layer.name,
                size=prev.size + (span - 1) * prev.jump,
                jump=prev.jump * layer.stride,
                start=prev.start + ((span - 1) / 2 - layer.padding) * prev.jump,
            )
        )
    return rows


def _axis(value, axis: int) -> int:
    return value[axis] if isinstance(value, tuple | list) else value


def field_layers(model: nn.Module, axis: int = 0) -> list[FieldLayer]:
    """The convolution and pooling layers of ``model``, in registration order, along ``axis`` (0 height, 1 width).

    Layers that do not change the geometry (activations, batch norm, dropout) are skipped. The order of
    registration is the order of the forward pass for an ``nn.Sequential``; for other models check it.

    Raises:
        ValueError: on an adaptive pooling layer, whose kernel depends on the input size.
    """
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
            if isinstance(p, str):
                raise ValueError(f"{name}: padding={p!r}; give the padding as numbers to compute the field")
        elif isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d):
            k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
        elif isinstance(m, nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d):
            k, s, p, d = m.kernel_size, m.stride, m.padding, 1
        elif isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d | nn.AdaptiveAvgPool1d | nn.AdaptiveMaxPool1d):
            raise ValueError(f"{name}: adaptive pooling has no fixed kernel; compute the field up to the layer before")
        else:
            continue
        found.append(FieldLayer(name or type(m).__name__, *(_axis(v, axis) for v in (k, s, p, d))))
    return found


# ----- output shapes, parameters and FLOPs ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One call of one layer: its output shape, the parameters it owns (counted at its first call only), its
    multiply-adds, its FLOPs (2 x MACs) and its element-wise operations."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    other_ops: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclasses.dataclass(frozen=True)
class LayerTable:
    """Per-layer costs of one forward pass (see :func:`layer_table`), with totals and a printable table."""

    input_shape: tuple[int, ...]
    rows: tuple[LayerCost, ...]
    uncounted: tuple[str, ...]  # layers of a kind this module does not know how to cost
    model_params: int  # all the model's parameters, to compare with the rows' sum

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def other_ops(self) -> int:
        return sum(r.other_ops for r in self.rows)

    def __str__(self) -> str:
        header = f"{'layer':<14} {'type':<12} {'output shape':<18} {'parameters':>11} {'MACs':>13} {'FLOPs':>13}"
        lines = [f"input shape {self.input_shape}", header, "-" * len(header)]
        for r in self.rows:
            shape = "(" + ", ".join(map(str, r.output_shape)) + ")"
            lines.append(f"{r.name:<14} {r.kind:<12} {shape:<18} {r.params:>11,} {r.macs:>13,} {r.flops:>13,}")
        lines.append("-" * len(header))
        lines.append(f"{'total':<14} {'':<12} {'':<18} {self.params:>11,} {self.macs:>13,} {self.flops:>13,}")
        lines.append("FLOPs = 2 x multiply-adds of convolutions and linear layers (biases and element-wise work not")
        lines.append(f"counted; element-wise operations, e.g. pooling and activations: {self.other_ops:,})")
        if self.model_params != self.params:
            lines.append(f"the model has {self.model_params:,} parameters; layers own {self.params:,} of them")
        if self.uncounted:
            lines.append("not costed (unknown layer types): " + ", ".join(self.uncounted))
        return "\n".join(lines)


_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.ELU, nn.Softmax, nn.LogSoftmax)
_FREE = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Embedding)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


def _cost(m: nn.Module, inputs: tuple, output: torch.Tensor) -> tuple[int, int] | None:
    """(MACs, other element-wise ops) of one call of a leaf module, or None for a kind we cannot cost."""
    out_elements = output.numel()
    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        # Each output element is a dot product over C_in / groups input channels and the kernel's positions.
        return out_elements * (m.in_channels // m.groups) * math.prod(m.kernel_size), 0
    if isinstance(m, nn.Linear):
        return out_elements * m.in_features, 0  # each output feature: in_features multiply-adds
    if isinstance(m, _POOLS):
        k = m.kernel_size
        window = math.prod(k) if isinstance(k, tuple) else k ** (output.dim() - 2)
        return 0, out_elements * window  # one comparison (max) or addition (average) per window entry
    if isinstance(m, _ADAPTIVE):
        return 0, inputs[0].numel()  # every input element is read once
    if isinstance(m, _NORMS):
        return 0, 2 * out_elements  # at inference: y = a x + b per element, statistics folded into a and b
    if isinstance(m, _ELEMENTWISE):
        return 0, out_elements
    if isinstance(m, _FREE):
        return 0, 0
    return None


def layer_table(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype | None = None) -> LayerTable:
    """Output shape, parameters, MACs and FLOPs of every layer of ``model``, from one forward pass.

    The model is run once in eval mode (then put back in the mode it was in) on zeros of ``input_shape``,
    batch axis included; the MACs and FLOPs are for that whole batch. A layer called twice gives two rows, and
    its parameters are counted at its first call only. Parameters that no layer owns directly are not seen.

    Args:
        model: any ``nn.Module``; costs are known for convolutions, linear layers, pooling, normalisation,
            common activations, dropout, flatten and embeddings (others are listed in ``uncounted``).
        input_shape: e.g. ``(1, 1, 28, 28)``.
        dtype: of the zero input; by default that of the model's first parameter (float32 if it has none).
    """
    rows: list[LayerCost] = []
    uncounted: list[str] = []
    seen: set[int] = set()
    names = {m: name for name, m in model.named_modules()}

    def hook(m: nn.Module, inputs: tuple, output) -> None:
        name = names[m] or type(m).__name__
        own = 0 if id(m) in seen else sum(p.numel() for p in m.parameters(recurse=False))
        seen.add(id(m))
        cost = _cost(m, inputs, output) if isinstance(output, torch.Tensor) else None
        if cost is None:
            uncounted.append(f"{name} ({type(m).__name__})")
            cost = (0, 0)
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
        rows.append(LayerCost(name, type(m).__name__, shape, own, *cost))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with evaluation_mode(model), torch.no_grad():
            first = next(model.parameters(), None)  # run where the model lives (a GPU in chapter 9), in its dtype
            device = None if first is None else first.device
            dtype = dtype or (torch.float32 if first is None else first.dtype)
            model(torch.zeros(tuple(input_shape), dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    return LayerTable(tuple(input_shape), tuple(rows), tuple(dict.fromkeys(uncounted)), total)
