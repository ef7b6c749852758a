"""How large is a transformer of a given shape: the model-size explorer of chapter 1.

The reader chooses the width ``d_model``, the depth ``n_layers``, the vocabulary, the context length, the
architecture (a GPT decoder or a BERT encoder) and a token budget, and sees, all computed by
:func:`lmbook.model_size.size_estimate` with the book's own counters:

- where the parameters sit: embeddings, attention, feed-forward, the rest (:func:`lmbook.model_size.parameter_parts`);
- the bytes to hold the weights in fp32 and bf16, and to train them with Adam in mixed precision
  (:func:`lmbook.cost.training_memory`), beside one 80 GB accelerator;
- the training compute ``6 N D`` for ``D`` tokens per parameter (:func:`lmbook.cost.training_flops`), on a log-log
  chart of parameters against compute beside the landmark models of :data:`lmbook.landmarks.LANDMARKS`.

The number of attention heads is not a control: it splits ``d_model`` into heads without changing a single
parameter or FLOP of the count (each head gets ``d_model / n_heads`` features). The widget uses heads of 64.
"""

from __future__ import annotations

import math
import time

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.cost import ACCELERATORS, PUBLISHED_RUNS
from lmbook.landmarks import LANDMARKS, format_count
from lmbook.model_size import CHINCHILLA_TOKENS_PER_PARAMETER, PARTS, SizeEstimate, size_estimate
from lmbook.testing import check_choice
from lmbook.transformer import KNOWN_MODELS, TransformerConfig
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

D_MODEL_OPTIONS = (64, 128, 256, 384, 512, 768, 1024, 1280, 1600, 2048, 4096, 8192, 12288)
"""Widths on the slider: chapter 7's small GPTs (64, 384), BERT and GPT-2 (768-1600), GPT-3 175B (12,288)."""
N_LAYERS_OPTIONS = (1, 2, 4, 6, 12, 24, 36, 48, 96)
"""Depths on the slider: chapter 7's GPTs (2, 6), BERT and GPT-2 (12-48), GPT-3 175B (96)."""
VOCAB_OPTIONS = (("96 (characters)", 96), ("30,522 (BERT)", 30522), ("50,257 (GPT-2, GPT-3)", 50257),
                 ("100,000", 100_000))  # fmt: skip
"""Vocabularies on the menu: chapter 7's character-level GPT, BERT's WordPiece, GPT-2's byte-level BPE, a larger one."""
CONTEXT_OPTIONS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 32768)
"""Context lengths ``max_len`` on the slider."""
KIND_OPTIONS = (("GPT (decoder)", "gpt"), ("BERT (encoder)", "bert"))
TOKENS_PER_PARAMETER_OPTIONS = (1, 2, 5, CHINCHILLA_TOKENS_PER_PARAMETER, 100, 1000)
"""Token budgets ``D / N``: GPT-3 175B saw under 2 tokens per parameter, Chinchilla 20, BERT-base over 1,000."""
HEAD_SIZE = 64
"""Features per attention head in the widget's configurations (``n_heads = d_model / 64``); it changes no count."""

SIZE_PRESETS: dict[str, tuple[TransformerConfig, str]] = {
    **{name: (m.config, m.kind) for name, m in KNOWN_MODELS.items() if name in ("BERT-base", "BERT-large",
                                                                                 "GPT-2 small", "GPT-2 XL")},
    "GPT-3 175B": (PUBLISHED_RUNS["GPT-3 175B"].config, "gpt"),
}  # fmt: skip
"""Published configurations the explorer can start from (:data:`lmbook.transformer.KNOWN_MODELS`,
:data:`lmbook.cost.PUBLISHED_RUNS`)."""

# What the static book records (with the current values added): 5 widths x 4 depths x 3 contexts = 60 states.
_RECORDED = {
    "d_model": (256, 768, 1024, 4096, 12288),
    "n_layers": (6, 12, 24, 96),
    "max_len": (512, 1024, 8192),
}
MAX_RECORDED_STATES = 100
"""At most this many recorded pictures: the page stays light (a few tens of kB each)."""

MEMORY_ACCELERATOR = "H100"
"""The accelerator whose memory the memory panel marks (:data:`lmbook.cost.ACCELERATORS`)."""

_PART_LABELS = {"embeddings": "embeddings", "attention": "attention", "feed_forward": "feed-forward",
                "other": "other"}  # fmt: skip
_PART_COLOURS = {"embeddings": "#e08214", "attention": "#1f5fa8", "feed_forward": "#c8312b", "other": "0.6"}
_MEMORY_ROWS = (("weights, bf16", "bf16"), ("weights, fp32", "fp32"), ("training, Adam", "training"))
# The landmarks that get a label, and where it goes beside the dot (points right, points up, alignment); the
# others are unlabelled dots, so that the labels do not overlap.
_LABEL_OFFSETS = {"Transformer (big)": (6, -6, "left"), "BERT-large": (-6, 6, "right"), "GPT-3": (6, -8, "left"),
                  "Chinchilla": (-6, 6, "right"), "Llama 3 405B": (-6, 6, "right")}  # fmt: skip
MEMORY_RANGE = (1e4, 1e14)
"""The memory axis in bytes, fixed so that only the changing artists are redrawn."""
PARAMS_RANGE = (1e4, 1e13)
FLOPS_RANGE = (1e8, 1e28)
"""The compute chart's axes (parameters, training FLOPs), fixed for the same reason."""


def landmark_points() -> dict[str, tuple[float, float]]:
    """The landmark models with a training compute, as ``{name: (N, FLOPs)}`` (:data:`lmbook.landmarks.LANDMARKS`).

    A mixture of experts is placed at the parameters each token uses (``active_params``), which set its compute.
    """
    return {m.name: (float(m.active_params or m.params), float(m.flops)) for m in LANDMARKS if m.flops is not None}


def config_from_controls(d_model: int, n_layers: int, vocab_size: int, max_len: int) -> TransformerConfig:
    """The :class:`~lmbook.transformer.TransformerConfig` of the controls' values, with heads of :data:`HEAD_SIZE`
    features (one head when ``d_model`` is smaller)."""
    return TransformerConfig(vocab_size=vocab_size, max_len=max_len, d_model=d_model, n_layers=n_layers,
                             n_heads=max(1, d_model // HEAD_SIZE))  # fmt: skip


def format_bytes(x: float) -> str:
    """Bytes in decimal units: ``'498 MB'``, ``'2.80 TB'`` (three significant digits)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f} B"


def power_of_ten(x: float, digits: int = 2) -> str:
    """``3.15 &times; 10<sup>23</sup>`` for HTML."""
    exponent = math.floor(math.log10(x))
    return f"{x / 10**exponent:.{digits}f} &times; 10<sup>{exponent}</sup>"


_SUPERSCRIPTS = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _unicode_power(x: float) -> str:
    """``'1.86×10¹⁸'`` in plain text (matplotlib's math mode would cost a few milliseconds a title)."""
    exponent = math.floor(math.log10(x))
    return f"{x / 10**exponent:.2f}\u00d710{str(exponent).translate(_SUPERSCRIPTS)}"


class ModelSizeExplorer(InteractiveWidget):
    """Width, depth, vocabulary, context, architecture and token budget -> parameters, memory and compute.

    Top left: the share of the parameters in each part. Bottom left: the bytes of the weights in bf16 and fp32
    and of training with Adam in mixed precision (16 bytes per parameter, activations not included), on a log
    scale, beside one accelerator's memory. Right: parameters against training compute ``6 N D`` on log scales;
    the star is the current configuration, the line every size at the current token budget, and the grey dots
    are the landmark models (:data:`lmbook.landmarks.LANDMARKS`) at their own compute.

    Args:
        preset: a key of :data:`SIZE_PRESETS` to start from (``"GPT-2 small"`` by default), or None for the
            values below.
        d_model, n_layers, vocab_size, max_len, kind: the first settings when ``preset`` is None.
        tokens_per_parameter: the token budget ``D / N``, 20 by default.

    Attributes:
        widget: the ipywidgets container. controls: ``"d_model"``, ``"n_layers"``, ``"vocab_size"``,
        ``"max_len"``, ``"kind"``, ``"tokens_per_parameter"`` -> control. status: the readout.
        current: the latest :class:`lmbook.model_size.SizeEstimate`.
    """

    def __init__(
        self,
        preset: str | None = "GPT-2 small",
        d_model: int = 768,
        n_layers: int = 12,
        vocab_size: int = 50257,
        max_len: int = 1024,
        kind: str = "gpt",
        tokens_per_parameter: float = CHINCHILLA_TOKENS_PER_PARAMETER,
    ) -> None:
        if preset is not None:
            check_choice(preset, SIZE_PRESETS, "preset")
            c, kind = SIZE_PRESETS[preset]
            d_model, n_layers, vocab_size, max_len = c.d_model, c.n_layers, c.vocab_size, c.max_len
        wide = widgets.Layout(width="330px")
        self.controls = {
            "d_model": widgets.SelectionSlider(options=[(f"{d:,}", d) for d in D_MODEL_OPTIONS], value=768,
                                               description="width d_model", continuous_update=False,
                                               style=SLIDER_STYLE, layout=wide),
            "n_layers": widgets.SelectionSlider(options=list(N_LAYERS_OPTIONS), value=12,
                                                description="depth n_layers", continuous_update=False,
                                                style=SLIDER_STYLE, layout=wide),
            "max_len": widgets.SelectionSlider(options=[(f"{t:,}", t) for t in CONTEXT_OPTIONS], value=1024,
                                               description="context max_len", continuous_update=False,
                                               style=SLIDER_STYLE, layout=wide),
            "vocab_size": widgets.Dropdown(options=list(VOCAB_OPTIONS), value=50257, description="vocabulary",
                                           style=SLIDER_STYLE, layout=wide),
            "kind": widgets.Dropdown(options=list(KIND_OPTIONS), value="gpt", description="architecture",
                                     style=SLIDER_STYLE, layout=widgets.Layout(width="250px")),
            "tokens_per_parameter": widgets.Dropdown(options=list(TOKENS_PER_PARAMETER_OPTIONS),
                                                     value=CHINCHILLA_TOKENS_PER_PARAMETER,
                                                     description="training tokens per parameter",
                                                     style=SLIDER_STYLE, layout=widgets.Layout(width="290px")),
        }  # fmt: skip
        start = {"d_model": d_model, "n_layers": n_layers, "vocab_size": vocab_size, "max_len": max_len,
                 "kind": kind, "tokens_per_parameter": tokens_per_parameter}  # fmt: skip
        self._check_settings(start)
        with self.holding():
            for name, value in start.items():
                self.controls[name].value = value
        self.status = widgets.HTML()
        # Blitted: the axes never change their range, so only the bars, texts, line and star are redrawn.
        self.figure_image = BlitFigureImage(plotting.figure(8.0, 3.6, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self.redraw()
        self._connect()

    # ----- settings -----------------------------------------------------------------------------------------

    def _check_settings(self, settings: dict) -> None:
        allowed = {
            "d_model": D_MODEL_OPTIONS,
            "n_layers": N_LAYERS_OPTIONS,
            "max_len": CONTEXT_OPTIONS,
            "vocab_size": [v for _, v in VOCAB_OPTIONS],
            "tokens_per_parameter": TOKENS_PER_PARAMETER_OPTIONS,
        }
        for name, options in allowed.items():
            value = settings[name]
            if isinstance(value, bool) or value not in options:
                raise ValueError(f"{name} must be one of {', '.join(f'{v:,}' for v in options)}; got {value!r}")
        check_choice(settings["kind"], [k for _, k in KIND_OPTIONS], "kind")

    # ----- drawing ------------------------------------------------------------------------------------------

    def _build_figure(self) -> None:
        fig = self.figure
        grid = fig.add_gridspec(2, 2, left=0.135, right=0.98, bottom=0.14, top=0.9, hspace=0.9, wspace=0.3,
                                height_ratios=(1, 2.2), width_ratios=(1, 1.05))  # fmt: skip
        self.ax_parts = fig.add_subplot(grid[0, 0])
        self.ax_memory = fig.add_subplot(grid[1, 0])
        self.ax_compute = fig.add_subplot(grid[:, 1])
        dynamic = []

        ax = self.ax_parts
        self._part_bars = {
            part: ax.barh([0], [0], color=_PART_COLOURS[part], height=0.8, label=_PART_LABELS[part])[0]
            for part in PARTS
        }
        self._part_texts = {
            part: ax.text(0, 0, "", ha="center", va="center", fontsize="x-small", color="white", fontweight="bold")
            for part in PARTS
        }
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        ax.set_xticks([0, 25, 50, 75, 100], ["0", "25", "50", "75", "100%"], fontsize="x-small")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, fontsize="x-small", frameon=False,
                  handlelength=1.0, columnspacing=0.8)  # fmt: skip
        ax.set_title(" ", fontsize="small", pad=16)
        dynamic += [*self._part_bars.values(), *self._part_texts.values(), ax.title]

        ax = self.ax_memory
        rows = np.arange(len(_MEMORY_ROWS))
        colours = ("#6fa8dc", "#1f5fa8", "#c8312b")
        self._memory_bars = list(ax.barh(rows, [1] * len(rows), left=MEMORY_RANGE[0], color=colours, height=0.6))
        self._memory_texts = [ax.text(0, r, "", va="center", ha="left", fontsize="x-small") for r in rows]
        device = ACCELERATORS[MEMORY_ACCELERATOR]
        ax.axvline(device.memory, color="0.2", linestyle="--", linewidth=1.0)
        ax.text(device.memory / 1.3, len(rows) - 0.25, f"one {MEMORY_ACCELERATOR}: {device.memory / 1e9:.0f} GB",
                fontsize="x-small", color="0.2", va="center", ha="right")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlim(*MEMORY_RANGE)
        ax.set_ylim(len(rows) + 0.3, -0.6)
        ax.set_yticks(rows, [label for label, _ in _MEMORY_ROWS], fontsize="x-small")
        ax.set_xticks([1e4, 1e6, 1e9, 1e12], ["10 kB", "1 MB", "1 GB", "1 TB"], fontsize="x-small")
        ax.minorticks_off()
        ax.set_xlabel("bytes (log scale)", fontsize="small")
        dynamic += [*self._memory_bars, *self._memory_texts]

        ax = self.ax_compute
        for name, (n, c) in landmark_points().items():
            ax.plot([n], [c], "o", color="0.45", markersize=5, zorder=2)
            if name not in _LABEL_OFFSETS:
                continue
            dx, dy, ha = _LABEL_OFFSETS[name]
            ax.annotate(name, (n, c), xytext=(dx, dy), textcoords="offset points", ha=ha, va="center",
                        fontsize="x-small", color="0.3")  # fmt: skip
        self._budget_line = ax.plot([], [], color=plotting.CLASS_COLOURS[0], linewidth=1.2, linestyle=":")[0]
        # In the bottom right corner, which no model reaches (a large N at a small compute): never over a dot.
        self._budget_text = ax.text(
            0.97, 0.04, "", fontsize="x-small", color=plotting.CLASS_COLOURS[0], ha="right", transform=ax.transAxes
        )
        self._star = ax.plot([], [], "*", color=plotting.CLASS_COLOURS[1], markersize=14, zorder=3)[0]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*PARAMS_RANGE)
        ax.set_ylim(*FLOPS_RANGE)
        ax.set_xticks([1e4, 1e6, 1e8, 1e10, 1e12], ["10k", "1M", "100M", "10B", "1T"], fontsize="x-small")
        ax.set_yticks([1e8, 1e12, 1e16, 1e20, 1e24, 1e28])
        ax.tick_params(axis="y", labelsize="x-small")
        ax.minorticks_off()
        ax.grid(color="0.9", linewidth=0.6)
        ax.set_xlabel("parameters N", fontsize="small")
        ax.set_ylabel("training compute 6ND (FLOPs)", fontsize="small")
        ax.set_title(" ", fontsize="small")
        dynamic += [self._budget_line, self._budget_text, self._star, ax.title]
        self.figure_image.set_dynamic(dynamic)

    def redraw(self) -> float:
        """Compute and draw the current settings; return the seconds it took."""
        start = time.perf_counter()
        v = self.values
        config = config_from_controls(v["d_model"], v["n_layers"], v["vocab_size"], v["max_len"])
        self.current = e = size_estimate(config, v["kind"], v["tokens_per_parameter"])

        left = 0.0
        for part in PARTS:
            width = 100 * e.shares[part]
            bar = self._part_bars[part]
            bar.set_x(left)
            bar.set_width(width)
            text = self._part_texts[part]
            text.set_position((left + width / 2, 0))
            text.set_text(f"{width:.0f}%" if width >= 9 else "")
            left += width
        self.ax_parts.set_title(f"N = {e.n_params:,} parameters", fontsize="small", pad=16)

        sizes = {"bf16": e.weight_bytes["bf16"], "fp32": e.weight_bytes["fp32"], "training": e.training_bytes["total"]}
        for bar, text, (_, key) in zip(self._memory_bars, self._memory_texts, _MEMORY_ROWS, strict=True):
            bar.set_width(max(sizes[key] - MEMORY_RANGE[0], 0.0))
            text.set_position((sizes[key] * 1.4, bar.get_y() + bar.get_height() / 2))
            text.set_text(format_bytes(sizes[key]))

        n = np.geomspace(*PARAMS_RANGE, 50)
        self._budget_line.set_data(n, 6 * e.tokens_per_parameter * n**2)
        self._budget_text.set_text(f"dotted line: D = {e.tokens_per_parameter:g} N, every N")
        self._star.set_data([e.n_params], [e.training_flops])
        self.ax_compute.set_title(f"D = {format_count(e.n_tokens)} tokens: 6ND = {_unicode_power(e.training_flops)} "
                                  "FLOPs", fontsize="small")  # fmt: skip
        self.status.value = self.readout(e)
        self.figure_image.refresh()
        return time.perf_counter() - start

    @staticmethod
    def readout(e: SizeEstimate) -> str:
        """The status line for one estimate."""
        shares = ", ".join(f"{_PART_LABELS[p]} {100 * s:.1f}%" for p, s in e.shares.items())
        f = e.forward_flops
        return (
            f"<b>N = {e.n_params:,}</b> parameters ({shares}). "
            f"Weights: <b>{format_bytes(e.weight_bytes['fp32'])}</b> in fp32, "
            f"<b>{format_bytes(e.weight_bytes['bf16'])}</b> in bf16; training with Adam (mixed precision, 16 bytes "
            f"per parameter, activations not included): <b>{format_bytes(e.training_bytes['total'])}</b>. "
            f"Forward pass: {power_of_ten(f['forward_per_token'])} FLOPs per token at a context of "
            f"{e.config.max_len:,}, of which attention's own products are {e.attention_share:.1%}. "
            f"Training on {e.tokens_per_parameter:g} tokens per parameter (D = {format_count(e.n_tokens)}): "
            f"<b>6ND = {power_of_ten(e.training_flops)} FLOPs</b>."
        )

    def record_grid(self) -> dict:
        """Recorded for the static book: 5 widths x 4 depths x 3 context lengths, with the current values (at most
        :data:`MAX_RECORDED_STATES` states); the vocabulary, architecture and token budget stay as they are."""
        v = self.values
        grid = {name: [x for x in values if x != v[name]] + [v[name]] for name, values in _RECORDED.items()}
        while math.prod(len(values) for values in grid.values()) > MAX_RECORDED_STATES:
            longest = max(grid, key=lambda name: len(grid[name]))
            grid[longest].pop(0)  # a recorded value other than the current one (which is last)
        return {name: sorted(values) for name, values in grid.items()}
