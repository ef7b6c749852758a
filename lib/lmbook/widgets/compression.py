"""The compression explorer: a bit width and a sparsity applied to a real BERT encoder's weights (chapter 10).

The reader chooses how many bits each weight keeps (2 to 8 as integers; 16 and 32 as the float16 and float32
formats), the fraction of weights pruned, the quantisation scheme (affine or symmetric) and its granularity (one
scale per tensor or one per output channel), and sees for one ``nn.Linear`` of the all-MiniLM-L6-v2 encoder:

- its weights as a histogram, with the values that the quantisation grid can represent;
- the error of the compressed weights, and of the layer's output on real sentences, at every bit width;
- the size of the whole model when every ``Linear`` weight of the encoder is stored that way, as a dense matrix
  and in two sparse formats.

The compression is simulated, as in the chapter: magnitude pruning first (:func:`lmbook.prune.magnitude_mask`),
then quantisation and dequantisation of what is left (:func:`lmbook.quantize.fake_quantize`). Both schemes
represent zero exactly, so a pruned weight stays zero after quantisation.

The sizes are computed from counts, not measured (:func:`storage_bytes`): ``MB`` is 10^6 bytes; scales are stored
as float32 (4 bytes), one per tensor or one per output channel, and the affine scheme adds one int32 zero point
(4 bytes) for each scale. Everything that is not a ``Linear`` weight of the encoder (the embeddings, which hold
about half of MiniLM's bytes, biases, LayerNorms, the pooler and any head) stays float32.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from torch import nn

from lmbook import plotting
from lmbook.loop import cpu_threads
from lmbook.memory import parameter_bytes
from lmbook.prune import magnitude_mask, prunable_layers
from lmbook.quantize import SCHEMES, fake_quantize, quant_params, quant_range
from lmbook.testing import check_choice
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

BIT_WIDTHS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
"""The bit widths on the slider: integers from 2 to 8 bits, and the float16 and float32 formats."""
FLOAT_FORMATS = {16: torch.float16, 32: torch.float32}
"""The bit widths that mean a float format rather than an integer grid."""
SPARSITIES = tuple(i / 10 for i in range(10))
"""The sparsities on the slider: 0.0 to 0.9, the fraction of each weight matrix set to zero."""
GRANULARITIES = {"per tensor": None, "per channel": 0}
"""The granularity menu's labels and the ``axis`` each means for :func:`lmbook.quantize.quant_params`."""
STORAGE_FORMATS = ("dense", "bitmask", "CSR")
DEFAULT_LAYER = "encoder.blocks.0.ffn.fc2"
"""The layer shown first: its largest weight is about 175 standard deviations out, so a per-tensor grid is
stretched by one weight, and a per-channel grid is not."""
N_SENTENCES = 16
"""How many validation sentences feed the layer for its output error (never test sentences)."""

SCALE_BYTES = 4  # a float32 scale
ZERO_POINT_BYTES = 4  # an int32 zero point (affine scheme only)
ROW_POINTER_BYTES = 4  # CSR: an int32 offset per row, plus one
_MB = 1e6
_HISTOGRAM_BINS = 120
_SNR_CEILING = 95.0  # where an exact copy (infinite SNR) is drawn
_RECORDED_BITS = (2, 3, 4, 8, 16, 32)  # the static page's bit widths (the middle panel shows them all)


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or bits not in BIT_WIDTHS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BIT_WIDTHS))}; got {bits!r}")


def _check_axis(axis) -> None:
    if axis not in (None, 0):
        raise ValueError(f"axis must be None (per tensor) or 0 (per output channel); got {axis!r}")


def prune_weight(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``weight`` with the fraction ``sparsity`` of its entries, those of smallest magnitude, set to zero
    (:func:`lmbook.prune.magnitude_mask`)."""
    return weight * magnitude_mask(weight, sparsity)


def quantize_weight(weight: torch.Tensor, bits: int, scheme: str = "affine", axis: int | None = None) -> torch.Tensor:
    """``weight`` as stored at ``bits`` and read back: quantised and dequantised on the integer grid of ``bits``
    (2 to 8, :func:`lmbook.quantize.fake_quantize`), or rounded to float16 or float32 (16, 32; ``scheme`` and
    ``axis`` then play no part)."""
    _check_bits(bits)
    check_choice(scheme, SCHEMES, "scheme")
    _check_axis(axis)
    if bits in FLOAT_FORMATS:
        return weight.to(FLOAT_FORMATS[bits]).to(weight.dtype)
    return fake_quantize(weight, bits=bits, scheme=scheme, axis=axis)


def compress_weight(
    weight: torch.Tensor, bits: int, sparsity: float = 0.0, scheme: str = "affine", axis: int | None = None
) -> torch.Tensor:
    """A ``(C_out, C_in)`` weight pruned to ``sparsity`` by magnitude, then stored at ``bits`` and read back."""
    return quantize_weight(prune_weight(weight, sparsity), bits, scheme, axis)


def relative_error(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """``||approximation - reference|| / ||reference||`` (Frobenius norms, summed in float64)."""
    error = torch.linalg.vector_norm(approximation - reference, dtype=torch.float64)
    return float(error / torch.linalg.vector_norm(reference, dtype=torch.float64))


def _db(error: float) -> float:
    """A relative error as a signal-to-noise ratio in dB: ``-20 log10(error)``, infinite for no error."""
    return math.inf if error == 0 else -20.0 * math.log10(error)


def snr_db(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Signal-to-noise ratio in decibels, ``10 log10(sum r^2 / sum (a - r)^2)``; infinite for an exact copy."""
    return _db(relative_error(reference, approximation))


@dataclass(frozen=True)
class LayerError:
    """How far one compressed ``Linear`` is from the original (:func:`layer_errors`).

    Attributes:
        bits, sparsity, scheme, axis: the setting.
        weight_error: relative error of the weight matrix, ``||W_hat - W|| / ||W||``.
        weight_snr_db: the same as a signal-to-noise ratio in dB (infinite when exact).
        output_error: relative error of the layer's output ``X W^T + b`` on the given inputs.
        zeros: fraction of the compressed weight's entries that are zero.
    """

    bits: int
    sparsity: float
    scheme: str
    axis: int | None
    weight_error: float
    weight_snr_db: float
    output_error: float
    zeros: float


def layer_errors(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    inputs: torch.Tensor,
    sparsity: float,
    scheme: str = "affine",
    axis: int | None = None,
    bit_widths=BIT_WIDTHS,
) -> list[LayerError]:
    """The error of a ``Linear`` compressed at each of ``bit_widths`` after pruning to ``sparsity`` (pruned once).

    Args:
        weight: ``(C_out, C_in)``. bias: ``(C_out,)`` or None. inputs: ``(N, C_in)``, what the layer reads.
    """
    pruned = prune_weight(weight, sparsity)
    output = nn.functional.linear(inputs, weight, bias)
    errors = []
    for bits in bit_widths:
        compressed = quantize_weight(pruned, bits, scheme, axis)
        errors.append(
            LayerError(
                bits=bits,
                sparsity=float(sparsity),
                scheme=scheme,
                axis=axis,
                weight_error=relative_error(weight, compressed),
                weight_snr_db=snr_db(weight, compressed),
                output_error=relative_error(output, nn.functional.linear(inputs, compressed, bias)),
                zeros=float((compressed == 0).double().mean()),
            )
        )
    return errors


def storage_bytes(
    shape: tuple[int, int],
    n_kept: int,
    bits: int,
    scheme: str = "affine",
    axis: int | None = None,
    storage: str = "dense",
) -> int:
    """Bytes to store a ``(rows, cols)`` weight matrix with ``n_kept`` non-zero entries at ``bits`` per value.

    ``"dense"`` stores every entry, zeros included. ``"bitmask"`` stores one bit per entry saying whether it is
    kept, then the kept values. ``"CSR"`` (compressed sparse row) stores the kept values, a column index for
    each (2 bytes while a row has at most 65,536 columns, else 4) and a 4-byte offset per row plus one. Integer
    bit widths add their scales (4 bytes each, one per tensor or per row) and, for ``"affine"``, as many 4-byte
    zero points; the float formats need neither. Packed values are rounded up to whole bytes.
    """
    _check_bits(bits)
    check_choice(scheme, SCHEMES, "scheme")
    _check_axis(axis)
    check_choice(storage, STORAGE_FORMATS, "storage")
    rows, cols = shape
    n = rows * cols
    if not 0 <= n_kept <= n:
        raise ValueError(f"n_kept must be between 0 and the {n:,} entries of a {rows} x {cols} matrix; got {n_kept}")
    params = 0
    if bits not in FLOAT_FORMATS:
        n_scales = 1 if axis is None else rows
        params = n_scales * (SCALE_BYTES + (ZERO_POINT_BYTES if scheme == "affine" else 0))
    if storage == "dense":
        return math.ceil(n * bits / 8) + params
    values = math.ceil(n_kept * bits / 8)
    if storage == "bitmask":
        return math.ceil(n / 8) + values + params
    index_bytes = 2 if cols <= 2**16 else 4
    return values + n_kept * index_bytes + (rows + 1) * ROW_POINTER_BYTES + params


def compressed_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers whose weights the widget compresses, ``{name: layer}``: those that
    :func:`lmbook.prune.prunable_layers` prunes (in a BERT, every ``Linear`` of the encoder)."""
    modules = dict(model.named_modules())
    layers = {name: modules[name] for name in prunable_layers(model) if isinstance(modules[name], nn.Linear)}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to compress")
    return layers


@torch.no_grad()
def kept_entries(layers: dict[str, nn.Linear], sparsity: float) -> dict[str, int]:
    """``{name: non-zero entries of the weight}`` of each layer after :func:`prune_weight` at ``sparsity``.

    Counted without pruning: :func:`lmbook.prune.magnitude_mask` removes the ``round(sparsity * n)`` entries of
    smallest magnitude, and the weights that are already zero are among them.
    """
    kept = {}
    for name, m in layers.items():
        n = m.weight.numel()
        zeros = n - int(m.weight.count_nonzero())
        kept[name] = n - max(round(sparsity * n), zeros)
    return kept


@dataclass(frozen=True)
class ModelSize:
    """The bytes of a model whose ``Linear`` weights are compressed (:func:`model_size`).

    Attributes:
        float32: the model's parameters as they are (:func:`lmbook.memory.parameter_bytes`).
        other: the parameters left at float32: everything but the compressed ``Linear`` weights.
        linear: ``{storage format: bytes of the compressed Linear weights}`` for each of :data:`STORAGE_FORMATS`.
    """

    float32: int
    other: int
    linear: dict

    def total(self, storage: str) -> int:
        """The whole model's bytes with the ``Linear`` weights in ``storage``."""
        check_choice(storage, STORAGE_FORMATS, "storage")
        return self.other + self.linear[storage]

    @property
    def smallest(self) -> str:
        """The storage format that gives the fewest bytes."""
        return min(STORAGE_FORMATS, key=self.total)


def model_size(
    model: nn.Module,
    bits: int,
    sparsity: float = 0.0,
    scheme: str = "affine",
    axis: int | None = None,
    kept: dict[str, int] | None = None,
) -> ModelSize:
    """The bytes of ``model`` with the weight of every layer of :func:`compressed_layers` pruned to ``sparsity``
    and stored at ``bits`` (:func:`storage_bytes`), and every other parameter at float32.

    Args:
        kept: ``{layer name: non-zero entries}`` if already known; by default the non-zero entries that
            :func:`prune_weight` leaves at ``sparsity``. A sparse format stores every entry that pruning kept, also
            one that quantisation then rounds to zero.
    """
    layers = compressed_layers(model)
    kept = kept_entries(layers, sparsity) if kept is None else kept
    total = parameter_bytes(model)
    linear_float32 = sum(m.weight.numel() * m.weight.element_size() for m in layers.values())
    linear = {
        storage: sum(
            storage_bytes(tuple(m.weight.shape), kept[name], bits, scheme, axis, storage) for name, m in layers.items()
        )
        for storage in STORAGE_FORMATS
    }
    return ModelSize(float32=total, other=total - linear_float32, linear=linear)


@torch.no_grad()
def layer_inputs(model: nn.Module, tokenizer, texts: list[str], names) -> dict[str, torch.Tensor]:
    """What each named ``Linear`` reads when ``model`` encodes ``texts``: ``{name: (N, C_in)}``, with ``N`` the
    real (not padding) tokens of all the texts."""
    modules = dict(model.named_modules())
    batch = tokenizer.batch_encode(list(texts))
    real = batch["attention_mask"].bool()  # (B, T)
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        modules[name].register_forward_hook(lambda m, args, out, name=name: captured.__setitem__(name, args[0]))
        for name in names
    ]
    try:
        model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: captured[name][real] for name in names}  # (B, T, C_in) -> (N, C_in)


def _short(name: str) -> str:
    return name.split("encoder.", 1)[-1]


def _bits_label(bits: int) -> str:
    return f"{bits} (float{bits})" if bits in FLOAT_FORMATS else str(bits)


class CompressionExplorer(InteractiveWidget):
    """Bit width, sparsity, scheme and granularity applied to a BERT encoder: error and size.

    Left: the chosen layer's weights (grey) and the same weights compressed (outline), counts on a log scale,
    with the values the quantisation grid can represent as ticks (for one scale per channel, the grid of the
    channel whose range is the median). Middle: the signal-to-noise ratio of the compressed weights and of the
    layer's output on real sentences at every bit width, for the current sparsity, scheme and granularity; the
    dots are the current bit width. Right: the whole model's megabytes with the encoder's ``Linear`` weights
    stored dense, as a bitmask and values, or in CSR, beside float32.

    Args:
        model: a BERT whose encoder has ``nn.Linear`` layers (:func:`lmbook.bert.load_pretrained`'s model, or
            chapter 8's :func:`lmbook.finetune.sentiment_classifier`), put in evaluation mode; by default the
            offline all-MiniLM-L6-v2.
        tokenizer: its tokenizer (needed with ``model``).
        texts: the sentences fed to the layer for its output error; by default the first
            :data:`N_SENTENCES` validation sentences of :func:`lmbook.sentiment.load_sentiment`.
        layer: the layer shown first (a name from :func:`compressed_layers`).
        bits, sparsity, scheme, granularity: the first settings (see the controls).

    Attributes:
        widget: the ipywidgets container. controls: ``"bits"``, ``"sparsity"``, ``"scheme"``, ``"granularity"``,
        ``"layer"`` -> control. status: the readout. error: the current :class:`LayerError`. size: the current
        :class:`ModelSize`. layers: ``{name: nn.Linear}`` of the encoder.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        tokenizer=None,
        texts: list[str] | None = None,
        layer: str = DEFAULT_LAYER,
        bits: int = 4,
        sparsity: float = 0.0,
        scheme: str = "affine",
        granularity: str = "per tensor",
    ) -> None:
        if model is None:
            from lmbook.bert import load_pretrained

            model, tokenizer, _ = load_pretrained("minilm")
        elif tokenizer is None:
            raise ValueError("give the model's tokenizer with the model (tokenizer=...)")
        if texts is None:
            from lmbook.sentiment import load_sentiment

            texts = load_sentiment("val")[0][:N_SENTENCES]
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError(f"texts must be a non-empty list of sentences; got {texts!r}")
        self.model = model.eval()
        self.layers = compressed_layers(model)
        # A classifier names its encoder "bert.encoder...": accept the short name too.
        by_short = {_short(name): name for name in self.layers}
        layer = by_short.get(_short(layer), layer)
        check_choice(layer, self.layers, "layer")
        self._curves: dict[tuple, list[LayerError]] = {}  # (layer, sparsity, scheme, axis) -> errors at every width
        self._pruned: dict[tuple, torch.Tensor] = {}  # (layer, sparsity) -> the pruned weight (the latest four)
        self._kept: dict[float, dict[str, int]] = {}  # sparsity -> non-zero entries of every layer
        wide = widgets.Layout(width="330px")
        self.controls = {
            "bits": widgets.SelectionSlider(options=[(_bits_label(b), b) for b in BIT_WIDTHS], value=4,
                                            description="bits per weight", continuous_update=False,
                                            style=SLIDER_STYLE, layout=wide),
            "sparsity": widgets.SelectionSlider(options=[(f"{s:.0%}", s) for s in SPARSITIES], value=0.0,
                                                description="sparsity (pruned)", continuous_update=False,
                                                style=SLIDER_STYLE, layout=wide),
            "scheme": widgets.Dropdown(options=list(SCHEMES), value="affine", description="scheme",
                                       style=SLIDER_STYLE, layout=widgets.Layout(width="200px")),
            "granularity": widgets.Dropdown(options=list(GRANULARITIES), value="per tensor",
                                            description="scales", style=SLIDER_STYLE,
                                            layout=widgets.Layout(width="200px")),
            "layer": widgets.Dropdown(options=[(f"{_short(n)} ({m.out_features}x{m.in_features})", n)
                                               for n, m in self.layers.items()],
                                      value=layer, description="layer", style=SLIDER_STYLE,
                                      layout=widgets.Layout(width="330px")),
        }  # fmt: skip
        start = {"bits": bits, "sparsity": sparsity, "scheme": scheme, "granularity": granularity, "layer": layer}
        self._check_settings(start)
        with cpu_threads(1):
            self.inputs = layer_inputs(model, tokenizer, texts, list(self.layers))
        self.n_sentences = len(texts)
        with self.holding():
            for name, value in start.items():
                self.controls[name].value = self._option(name, value)
        self.status = widgets.HTML()
        self.figure_image = BlitFigureImage(plotting.figure(8.0, 3.5, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self._shown_layer = None
        self.redraw()
        self._connect()

    # ----- settings -----------------------------------------------------------------------------------------

    def _option(self, name: str, value):
        """The slider's own option for ``value`` (a sparsity given as 0.30000000000000004 is the slider's 0.3)."""
        if name == "sparsity":
            return next(s for s in SPARSITIES if math.isclose(s, value, abs_tol=1e-9))
        return value

    def _check_settings(self, settings: dict) -> None:
        _check_bits(settings["bits"])
        s = settings["sparsity"]
        if isinstance(s, bool) or not isinstance(s, int | float) or not any(math.isclose(s, x, abs_tol=1e-9)
                                                                            for x in SPARSITIES):  # fmt: skip
            raise ValueError(f"sparsity must be one of {', '.join(f'{x:g}' for x in SPARSITIES)}; got {s!r}")
        check_choice(settings["scheme"], SCHEMES, "scheme")
        check_choice(settings["granularity"], GRANULARITIES, "granularity")
        check_choice(settings["layer"], self.layers, "layer")

    def update(self, **values) -> float:
        """Set any of the controls by name and redraw once (see :meth:`InteractiveWidget.update`); a sparsity
        may be given as any float equal to a slider step, e.g. ``0.1 * 3``."""
        if "sparsity" in values and not isinstance(values["sparsity"], bool):
            try:
                values["sparsity"] = self._option("sparsity", values["sparsity"])
            except (StopIteration, TypeError):
                pass  # _check_settings names the allowed values
        return super().update(**values)

    @property
    def axis(self) -> int | None:
        """The granularity as ``quant_params``'s ``axis``: None per tensor, 0 per output channel."""
        return GRANULARITIES[self.controls["granularity"].value]

    # ----- the numbers --------------------------------------------------------------------------------------

    def errors(self) -> list[LayerError]:
        """The current layer's :class:`LayerError` at every bit width, for the current sparsity, scheme and
        granularity (computed once per setting, then kept)."""
        v = self.values
        key = (v["layer"], v["sparsity"], v["scheme"], self.axis)
        if key not in self._curves:
            layer = self.layers[v["layer"]]
            weight = layer.weight.detach()
            bias = None if layer.bias is None else layer.bias.detach()
            with torch.no_grad():
                self._curves[key] = layer_errors(weight, bias, self.inputs[v["layer"]], *key[1:])
        return self._curves[key]

    def kept(self, sparsity: float) -> dict[str, int]:
        """``{layer name: non-zero entries}`` of every compressed layer pruned to ``sparsity`` (counted once)."""
        if sparsity not in self._kept:
            self._kept[sparsity] = kept_entries(self.layers, sparsity)
        return self._kept[sparsity]

    def compressed(self) -> tuple[torch.Tensor, tuple | None]:
        """The current layer's weight compressed at the current settings, and the ``(scale, zero_point)`` of
        its integer grid (None for the float formats)."""
        v = self.values
        key = (v["layer"], v["sparsity"])
        if key not in self._pruned:
            if len(self._pruned) >= 4:
                self._pruned.pop(next(iter(self._pruned)))
            with torch.no_grad():
                self._pruned[key] = prune_weight(self.layers[v["layer"]].weight.detach(), v["sparsity"])
        pruned = self._pruned[key]
        if v["bits"] in FLOAT_FORMATS:
            return quantize_weight(pruned, v["bits"]), None
        with torch.no_grad():
            # The grid's parameters once, for the picture's ticks as well (fake_quantize would choose the same).
            params = quant_params(pruned, bits=v["bits"], scheme=v["scheme"], axis=self.axis)
            compressed = fake_quantize(pruned, v["bits"], v["scheme"], self.axis, scale=params[0], zero_point=params[1])
        return compressed, params

    def levels(self, params: tuple | None) -> np.ndarray | None:
        """The values that the integer grid of ``params`` (``(scale, zero_point)`` from :meth:`compressed`)
        represents; per channel, the grid of the channel of median scale. None for the float formats."""
        if params is None:
            return None
        scale, zero_point = params[0].reshape(-1), params[1].reshape(-1)
        row = int(torch.argsort(scale)[len(scale) // 2]) if self.axis == 0 else 0
        q_min, q_max = quant_range(self.values["bits"])
        q = torch.arange(q_min, q_max + 1, dtype=torch.float64)
        return ((q - float(zero_point[row])) * float(scale[row])).numpy()

    # ----- the drawing --------------------------------------------------------------------------------------

    def _build_figure(self) -> None:
        fig = self.figure
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.15, top=0.9, wspace=0.4)
        self.ax_weights, self.ax_error, self.ax_size = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.0, 1.0]})
        blue, red = plotting.CLASS_COLOURS

        ax = self.ax_weights
        self._original = ax.stairs([1], [0, 1], color="0.75", fill=True, label="float32")
        self._compressed = ax.stairs([1], [0, 1], color=blue, linewidth=1.2, label="compressed")
        # The grid's values as ticks along the bottom (x in data units, y in axes units).
        self._levels = LineCollection([], colors=red, linewidths=0.8, transform=ax.get_xaxis_transform(),
                                      label="grid values")  # fmt: skip
        ax.add_collection(self._levels)
        self._grid_note = ax.text(0.02, 0.97, "", transform=ax.transAxes, ha="left", va="top", fontsize="x-small")
        ax.set_yscale("log")
        ax.set_xlabel("weight value")
        ax.set_ylabel("weights per bin")
        ax.legend(loc="upper right", fontsize="x-small", frameon=False, bbox_to_anchor=(1.0, 0.83))
        ax.set_title(" ", fontsize="medium")

        ax = self.ax_error
        x = np.arange(len(BIT_WIDTHS))
        (self._weight_curve,) = ax.plot(x, np.zeros(len(x)), "-", color=blue, label="weights")
        (self._output_curve,) = ax.plot(x, np.zeros(len(x)), "--", color=red, label="layer output")
        (self._weight_dot,) = ax.plot([0], [0], "o", color=blue, markersize=7)
        (self._output_dot,) = ax.plot([0], [0], "s", color=red, markersize=6)
        ax.axhline(_SNR_CEILING, color="0.8", linewidth=0.8, zorder=0)
        ax.text(0, _SNR_CEILING + 1.5, "exact (no error)", fontsize="x-small", color="0.4", va="bottom")
        ax.set_xticks(x, [str(b) for b in BIT_WIDTHS])
        ax.set_xlim(-0.5, len(BIT_WIDTHS) - 0.5)
        ax.set_ylim(-2, _SNR_CEILING + 10)
        ax.set_xlabel("bits per weight")
        ax.set_ylabel("signal-to-noise ratio (dB)")
        ax.legend(loc="upper left", fontsize="x-small", frameon=False, bbox_to_anchor=(0.0, 0.88))
        ax.set_title("error of the compressed layer", fontsize="medium")

        ax = self.ax_size
        rows = ["float32", *STORAGE_FORMATS]
        y = np.arange(len(rows))
        self._bars_linear = ax.barh(y, np.zeros(len(rows)), color=blue, height=0.6, label="compressed Linear weights")
        self._bars_other = ax.barh(y, np.zeros(len(rows)), color="0.7", height=0.6, label="the rest, float32")
        self._size_texts = [ax.text(0, i, "", va="center", ha="left", fontsize="x-small") for i in y]
        ax.set_yticks(y, rows, fontsize="small")
        ax.set_ylim(len(rows) - 0.4, -1.4)
        ax.set_xlabel("MB (whole model)")
        ax.legend(loc="upper right", fontsize="x-small", frameon=False)
        ax.set_title("model size", fontsize="medium")

        self.figure_image.set_dynamic(
            [self._compressed, self._levels, self._grid_note, self._weight_curve, self._output_curve,
             self._weight_dot, self._output_dot, *self._bars_linear.patches,
             *self._bars_other.patches, *self._size_texts]
        )  # fmt: skip

    def _draw_layer(self, name: str) -> None:
        """What changes only with the layer: the float32 histogram, its window, the title and the size axis.

        The window holds all but the 0.01% largest magnitudes (with a margin): a few outliers would otherwise
        squeeze every other weight into one bin. Those outside are counted in a note.
        """
        weight = self.layers[name].weight.detach().float().flatten()
        magnitude = weight.abs()
        k = max(1, math.ceil(0.9999 * len(magnitude)))
        half = 1.2 * float(torch.kthvalue(magnitude, k).values)
        self._window = (-half, half)
        self._edges = np.linspace(-half, half, _HISTOGRAM_BINS + 1)
        self._original.set_data(values=self._histogram(weight), edges=self._edges)
        self._compressed.set_data(values=np.ones(_HISTOGRAM_BINS), edges=self._edges)
        outside = int((magnitude > half).sum())
        ax = self.ax_weights
        ax.set_xlabel(f"weight value ({outside} beyond ±{half:.2f}, up to {float(magnitude.max()):.2f})"
                      if outside else "weight value", fontsize="small")  # fmt: skip
        ax.set_xlim(-half, half)
        ax.set_ylim(0.7, len(weight) * 40)  # two decades of head room for the notes and the legend
        ax.set_title(f"weights of {_short(name)}", fontsize="medium")
        self.ax_size.set_xlim(0, parameter_bytes(self.model) / _MB * 1.45)
        self._shown_layer = name
        self.figure_image.invalidate()

    def _histogram(self, values: torch.Tensor) -> np.ndarray:
        """Counts of ``values`` in the window's bins (those outside the window are left out)."""
        low, high = self._window
        return torch.histc(values.float(), bins=_HISTOGRAM_BINS, min=low, max=high).numpy()

    def redraw(self) -> float:
        """Compute and draw the current settings; return the seconds it took."""
        start = time.perf_counter()
        # One thread: these sums are small, and on a busy machine waking a second thread costs more than it saves.
        with cpu_threads(1):
            self._draw()
        return time.perf_counter() - start

    def _draw(self) -> None:
        v = self.values
        if v["layer"] != self._shown_layer:
            self._draw_layer(v["layer"])
        curve = self.errors()
        i = BIT_WIDTHS.index(v["bits"])
        self.error = curve[i]
        self.size = size = model_size(self.model, v["bits"], v["sparsity"], v["scheme"], self.axis,
                                      kept=self.kept(v["sparsity"]))  # fmt: skip
        compressed, params = self.compressed()

        self._compressed.set_data(values=self._histogram(compressed.flatten()))
        levels = self.levels(params)
        if levels is None:
            self._levels.set_segments([])
            self._grid_note.set_text(f"float{v['bits']}: no integer grid")
        else:
            low, high = self._window
            shown = levels[(levels >= low) & (levels <= high)]
            self._levels.set_segments([[(x, 0.0), (x, 0.08)] for x in shown])
            which = "median channel" if self.axis == 0 else "whole tensor"
            self._grid_note.set_text(
                f"{v['bits']}-bit {v['scheme']} grid ({which}):\n{len(levels)} values, "
                f"{levels[1] - levels[0]:.3g} apart, {len(shown)} in view"
            )

        x = np.arange(len(BIT_WIDTHS))
        weight_snr = np.minimum([e.weight_snr_db for e in curve], _SNR_CEILING)
        output_snr = np.minimum([_db(e.output_error) for e in curve], _SNR_CEILING)
        self._weight_curve.set_data(x, weight_snr)
        self._output_curve.set_data(x, output_snr)
        self._weight_dot.set_data([i], [weight_snr[i]])
        self._output_dot.set_data([i], [output_snr[i]])

        linear = [size.float32 - size.other] + [size.linear[s] for s in STORAGE_FORMATS]
        for k, (bar_linear, bar_other) in enumerate(zip(self._bars_linear.patches, self._bars_other.patches,
                                                        strict=True)):  # fmt: skip
            bar_linear.set_width(linear[k] / _MB)
            bar_other.set_x(linear[k] / _MB)
            bar_other.set_width(size.other / _MB)
            total = (linear[k] + size.other) / _MB
            self._size_texts[k].set_position((total + size.float32 / _MB * 0.02, k))
            self._size_texts[k].set_text(f"{total:.1f}")
        self.status.value = self.readout()
        self.figure_image.refresh()

    def readout(self) -> str:
        """The status line for the current settings."""
        v, e, size = self.values, self.error, self.size
        layer = self.layers[v["layer"]]
        how = (
            f"float{v['bits']}"
            if v["bits"] in FLOAT_FORMATS
            else f"{v['bits']}-bit {v['scheme']} integers, {v['granularity']} scales"
        )
        best = size.smallest
        return (
            f"<b>{_short(v['layer'])}</b> ({layer.out_features} x {layer.in_features}) pruned to sparsity "
            f"{v['sparsity']:.0%} and stored as {how}: weight error <b>{e.weight_error:.2%}</b> (SNR "
            f"{e.weight_snr_db:.1f} dB), output error <b>{e.output_error:.2%}</b> on the "
            f"{len(self.inputs[v['layer']])} tokens of {self.n_sentences} validation sentences. Whole model: "
            f"{size.float32 / _MB:.1f} MB in float32, <b>{size.total(best) / _MB:.1f} MB</b> stored {best} "
            f"(dense {size.total('dense') / _MB:.1f}, bitmask {size.total('bitmask') / _MB:.1f}, CSR "
            f"{size.total('CSR') / _MB:.1f} MB; {size.other / _MB:.1f} MB of it stays float32)."
        )

    def record_grid(self) -> dict:
        """Recorded for the static book: 2, 3, 4, 8, 16 and 32 bits x sparsity 0, 50% and 90% x both schemes x
        both granularities (72 states, about 6 s to record), with the current values; the layer stays fixed."""
        v = self.values
        bits = sorted({*_RECORDED_BITS, v["bits"]})
        sparsities = sorted({0.0, 0.5, 0.9, v["sparsity"]})
        grid = {"bits": bits, "sparsity": sparsities, "scheme": list(SCHEMES),
                "granularity": list(GRANULARITIES)}  # fmt: skip
        return grid
