"""What a training run costs: a calculator of FLOPs, memory per device and days (chapter 9).

The callback, :func:`compute_estimate`, draws nothing: from a model size ``N``, a number of training tokens ``D``,
a number of accelerators, their utilisation, a precision and an accelerator it computes, with :mod:`lmbook.cost`,
the training compute ``6 N D``, the memory of the training state on each device without sharding and under each
ZeRO stage, and the days of training. :class:`ComputeCalculator` draws the memory as bars beside the accelerator's
memory, and the days against the number of accelerators.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.cost import ACCELERATORS, PUBLISHED_RUNS, ZERO_STAGES, training_days, training_flops, zero_memory_per_device
from lmbook.testing import check_choice
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage
from lmbook.widgets.recorded import MAX_STATES

# The sizes and token counts on the sliders, with their labels; they include the published runs' own numbers.
PARAMETER_OPTIONS = (("110M", 110e6), ("340M", 340e6), ("1.5B", 1.5e9), ("7B", 7e9), ("70B", 70e9),
                     ("175B", 175e9), ("540B", 540e9))  # fmt: skip
TOKEN_OPTIONS = (("10B", 10e9), ("131B", float(PUBLISHED_RUNS["BERT-base"].n_tokens)), ("300B", 300e9),
                 ("1.4T", 1.4e12), ("15T", 15e12))  # fmt: skip
DEVICE_OPTIONS = (1, 8, 64, 256, 1024, 4096, 16384)
CALCULATOR_PRECISIONS = ("fp32", "bf16", "mixed")

CALCULATOR_PRESETS = {
    "GPT-3 175B": (175e9, 300e9),
    "Chinchilla 70B": (70e9, 1.4e12),
    "BERT-large": (340e6, PUBLISHED_RUNS["BERT-large"].n_tokens),
    "BERT-base": (110e6, PUBLISHED_RUNS["BERT-base"].n_tokens),
}
"""Published runs at their published sizes (N as the paper rounds it, D as in :data:`lmbook.cost.PUBLISHED_RUNS`)."""

# What the static book records (with the current values added): 4 x 3 x 4 x 2 = 96 states.
_RECORDED = {
    "n_params": (110e6, 340e6, 70e9, 175e9),
    "precision": ("fp32", "mixed"),
    "n_tokens": (PUBLISHED_RUNS["BERT-base"].n_tokens, 300e9, 1.4e12),
    "n_devices": (8, 64, 1024, 4096),
}

_STAGE_NAMES = {0: "no sharding", 1: "ZeRO-1", 2: "ZeRO-2", 3: "ZeRO-3 / FSDP"}
_PARTS = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer states", "master_weights": "master"}
_PART_COLOURS = {"weights": "#1f5fa8", "gradients": "#6fa8dc", "optimizer": "#c8312b", "master_weights": "#e08214"}
_GB = 1e9
DAYS_RANGE = (1e-4, 1e8)
"""The days axis, fixed so that only the changing artists are redrawn (a longer or shorter run leaves the plot)."""


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``x`` (axis limits that change seldom)."""
    decade = 10.0 ** math.floor(math.log10(x))
    return next(m * decade for m in (1, 2, 5, 10) if m * decade >= x)


@dataclass(frozen=True)
class ComputeEstimate:
    """What :func:`compute_estimate` computed for one setting.

    Attributes:
        n_params, n_tokens, n_devices, utilisation, precision, accelerator: the setting (``accelerator`` is a key
            of :data:`lmbook.cost.ACCELERATORS`).
        flops: ``6 N D``. memory: ``{stage: bytes per device by part}`` for ZeRO stages 0-3 over ``n_devices``
            processes (:func:`lmbook.cost.zero_memory_per_device`; stage 0 is plain data parallelism).
        peak: the accelerator's dense peak FLOP/s for the precision. days: days of training.
        fits: ``{stage: whether the training state fits in one accelerator's memory}`` (activations not included).
    """

    n_params: float
    n_tokens: float
    n_devices: int
    utilisation: float
    precision: str
    accelerator: str
    flops: float
    memory: dict
    peak: float
    days: float
    fits: dict


def compute_estimate(
    n_params: float,
    n_tokens: float,
    n_devices: int,
    utilisation: float,
    precision: str = "mixed",
    accelerator: str = "A100",
) -> ComputeEstimate:
    """FLOPs, memory per device (each ZeRO stage, Adam) and days of a training run, from :mod:`lmbook.cost`."""
    check_choice(accelerator, ACCELERATORS, "accelerator")
    device = ACCELERATORS[accelerator]
    flops = training_flops(n_params, n_tokens)
    memory = {stage: zero_memory_per_device(n_params, n_devices, stage, precision) for stage in ZERO_STAGES}
    peak = device.peak(precision)
    days = training_days(flops, n_devices, peak, utilisation)
    fits = {stage: memory[stage]["total"] <= device.memory for stage in ZERO_STAGES}
    return ComputeEstimate(float(n_params), float(n_tokens), int(n_devices), float(utilisation), precision,
                           accelerator, flops, memory, peak, days, fits)  # fmt: skip


def _power_of_ten(x: float, digits: int = 2) -> str:
    """``3.15 x 10<sup>23</sup>`` for HTML."""
    exponent = math.floor(math.log10(x))
    return f"{x / 10**exponent:.{digits}f} &times; 10<sup>{exponent}</sup>"


def _gigabytes(x: float) -> str:
    return f"{x / _GB:,.0f} GB" if x >= 10 * _GB else f"{x / _GB:.2g} GB"


def _label(options, value) -> str:
    return next(label for label, v in options if v == value)


def published_match(n_params: float, n_tokens: float) -> str | None:
    """The name of the preset whose ``N`` and ``D`` these are, if any."""
    return next((name for name, nd in CALCULATOR_PRESETS.items() if nd == (n_params, n_tokens)), None)


class ComputeCalculator(InteractiveWidget):
    """A training-cost calculator: model size, tokens, accelerators, utilisation and precision -> FLOPs, memory
    per device and days of training.

    The left panel shows the training state's bytes on each device (weights, gradients, Adam's m and v, and the
    fp32 master weights in mixed precision) without sharding and under ZeRO stages 1-3 over all the
    accelerators, beside one accelerator's memory. The right panel shows the days of training against the
    number of accelerators at the chosen utilisation; the dot is the current number. The status line gives
    ``6 N D`` and, for a published run's ``N`` and ``D``, the paper's own figure where it states one.

    Args:
        preset: a key of :data:`CALCULATOR_PRESETS` that sets ``N`` and ``D`` (``"GPT-3 175B"`` by default).
        n_devices, utilisation, precision, accelerator: the other settings (see the controls).

    Attributes:
        widget: the ipywidgets container. controls: ``"n_params"``, ``"n_tokens"``, ``"n_devices"``,
        ``"utilisation"``, ``"precision"``, ``"accelerator"`` -> control. status: the readout.
        current: the latest :class:`ComputeEstimate`.
    """

    def __init__(
        self,
        preset: str = "GPT-3 175B",
        n_devices: int = 1024,
        utilisation: float = 0.5,
        precision: str = "mixed",
        accelerator: str = "A100",
    ) -> None:
        check_choice(preset, CALCULATOR_PRESETS, "preset")
        n_params, n_tokens = CALCULATOR_PRESETS[preset]
        wide = widgets.Layout(width="330px")
        self.controls = {
            "n_params": widgets.SelectionSlider(options=list(PARAMETER_OPTIONS), value=PARAMETER_OPTIONS[0][1],
                                                description="parameters N", continuous_update=False,
                                                style=SLIDER_STYLE, layout=wide),
            "n_tokens": widgets.SelectionSlider(options=list(TOKEN_OPTIONS), value=TOKEN_OPTIONS[0][1],
                                                description="training tokens D", continuous_update=False,
                                                style=SLIDER_STYLE, layout=wide),
            "n_devices": widgets.SelectionSlider(options=[(f"{n:,}", n) for n in DEVICE_OPTIONS], value=1,
                                                 description="accelerators", continuous_update=False,
                                                 style=SLIDER_STYLE, layout=wide),
            "utilisation": widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, readout_format=".2f",
                                               description="utilisation (MFU)", continuous_update=False,
                                               style=SLIDER_STYLE, layout=wide),
            "precision": widgets.Dropdown(options=list(CALCULATOR_PRECISIONS), value="mixed",
                                          description="precision", style=SLIDER_STYLE),
            "accelerator": widgets.Dropdown(options=[(a.name, key) for key, a in ACCELERATORS.items()],
                                            value="A100", description="accelerator", style=SLIDER_STYLE),
        }  # fmt: skip
        start = {"n_params": n_params, "n_tokens": n_tokens, "n_devices": n_devices, "utilisation": utilisation,
                 "precision": precision, "accelerator": accelerator}  # fmt: skip
        self._check_settings(start)
        with self.holding():
            for name, value in start.items():
                self.controls[name].value = value
        self.status = widgets.HTML()
        # Blitted: the axes, ticks and legend are drawn again only when the memory axis changes its range.
        self.figure_image = BlitFigureImage(plotting.figure(8.0, 3.6, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self.redraw()
        self._connect()

    def _check_settings(self, settings: dict) -> None:
        allowed = {
            "n_params": PARAMETER_OPTIONS,
            "n_tokens": TOKEN_OPTIONS,
            "n_devices": [(f"{n:,}", n) for n in DEVICE_OPTIONS],
        }
        for name, options in allowed.items():
            if settings[name] not in [v for _, v in options]:
                labels = ", ".join(f"{v:g}" for _, v in options)
                raise ValueError(f"{name} must be one of {labels}; got {settings[name]!r}")
        u = settings["utilisation"]
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0.05 <= u <= 1.0:
            raise ValueError(f"utilisation must be between 0.05 and 1.0, got {u!r}")
        check_choice(settings["precision"], CALCULATOR_PRECISIONS, "precision")
        check_choice(settings["accelerator"], ACCELERATORS, "accelerator")

    def _build_figure(self) -> None:
        fig = self.figure
        fig.subplots_adjust(left=0.13, right=0.98, bottom=0.16, top=0.88, wspace=0.32)
        self.ax_memory, self.ax_days = fig.subplots(1, 2)
        ax = self.ax_memory
        stages = list(ZERO_STAGES)
        self._bars = {
            part: ax.barh(stages, [0] * len(stages), color=_PART_COLOURS[part], label=label, height=0.6)
            for part, label in _PARTS.items()
        }
        self._totals = [
            ax.text(0, s, "", va="center", ha="left", fontsize="small",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            for s in stages
        ]  # fmt: skip
        self._device_line = ax.axvline(0, color="0.2", linestyle="--", linewidth=1.2)
        self._device_text = ax.text(0, -0.42, "", ha="left", va="center", fontsize="x-small", color="0.2")
        ax.set_yticks(stages, [_STAGE_NAMES[s] for s in stages], fontsize="small")
        ax.set_ylim(3.7, -0.55)
        ax.set_xlabel("GB per device (training state, Adam)")
        ax.legend(loc="lower right", fontsize="x-small", ncols=2, frameon=True)
        ax = self.ax_days
        (self._days_curve,) = ax.plot([], [], color=plotting.CLASS_COLOURS[0], linewidth=2)
        (self._days_dot,) = ax.plot([], [], "o", color=plotting.CLASS_COLOURS[1], markersize=8)
        for days, label in ((1, "1 day"), (30, "1 month"), (365, "1 year")):
            ax.axhline(days, color="0.75", linewidth=0.8, zorder=0)
            ax.text(DEVICE_OPTIONS[-1], days, label, ha="right", va="bottom", fontsize="x-small", color="0.4")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.7, DEVICE_OPTIONS[-1] * 1.4)
        ax.set_ylim(*DAYS_RANGE)
        ax.set_xticks([1, 10, 100, 1000, 10000], ["1", "10", "100", "1,000", "10,000"])
        ax.set_yticks([1e-4, 1e-2, 1, 1e2, 1e4, 1e6, 1e8])
        ax.minorticks_off()
        ax.set_xlabel("accelerators")
        ax.set_ylabel("days of training")
        self.ax_memory.set_title(" ", fontsize="medium")
        ax.set_title(" ", fontsize="medium")
        dynamic = [*(p for bars in self._bars.values() for p in bars.patches), *self._totals, self._device_line,
                   self._device_text, self._days_curve, self._days_dot, self.ax_memory.title, ax.title]  # fmt: skip
        self.figure_image.set_dynamic(dynamic)

    def redraw(self) -> float:
        """Compute and draw the current settings; return the seconds it took."""
        start = time.perf_counter()
        v = self.values
        self.current = e = compute_estimate(**v)
        device = ACCELERATORS[e.accelerator]
        largest = max(e.memory[0]["total"], device.memory)
        for stage in ZERO_STAGES:
            left = 0.0
            for part, bars in self._bars.items():
                width = e.memory[stage][part] / _GB
                bars.patches[stage].set_x(left)
                bars.patches[stage].set_width(width)
                left += width
            total = self._totals[stage]
            total.set_position((left + largest / _GB * 0.015, stage))
            total.set_text(_gigabytes(e.memory[stage]["total"]) + ("" if e.fits[stage] else " (does not fit)"))
        self._device_line.set_xdata([device.memory / _GB] * 2)
        self._device_text.set_position((device.memory / _GB + largest / _GB * 0.01, -0.42))
        self._device_text.set_text(f"one {e.accelerator}: {device.memory / _GB:.0f} GB")
        xlim = (0.0, _nice_ceiling(largest / _GB * 1.45))
        if self.ax_memory.get_xlim() != xlim:
            self.ax_memory.set_xlim(*xlim)
            self.figure_image.invalidate()  # new tick labels: draw everything once
        self.ax_memory.set_title(f"memory per device, {e.n_devices:,} devices, {e.precision}", fontsize="medium")
        n = np.asarray(DEVICE_OPTIONS, dtype=float)
        curve = e.flops / (n * e.peak * e.utilisation) / 86_400
        self._days_curve.set_data(n, curve)
        self._days_dot.set_data([e.n_devices], [e.days])
        self.ax_days.set_title(f"6ND = {e.flops:.3g} FLOPs, {e.accelerator} at {e.utilisation:.0%}",
                               fontsize="medium")  # fmt: skip
        self.status.value = self.readout(e)
        self.figure_image.refresh()
        return time.perf_counter() - start

    @staticmethod
    def readout(e: ComputeEstimate) -> str:
        """The status line for one estimate."""
        n_label, d_label = _label(PARAMETER_OPTIONS, e.n_params), _label(TOKEN_OPTIONS, e.n_tokens)
        text = f"&#x1D49E; = 6ND = 6 &times; {n_label} &times; {d_label} = <b>{_power_of_ten(e.flops)} FLOPs</b>"
        name = published_match(e.n_params, e.n_tokens)
        if name is not None:
            published = PUBLISHED_RUNS[name].published_flops
            paper = f"; the paper states {_power_of_ten(published)}" if published else ""
            text += f" ({name}{paper})"
        device = ACCELERATORS[e.accelerator]
        per_param = e.memory[0]["total"] / e.n_params
        text += (
            f". Training state with Adam in {e.precision}: <b>{_gigabytes(e.memory[0]['total'])}</b> per device "
            f"without sharding ({per_param:.0f} bytes per parameter), <b>{_gigabytes(e.memory[3]['total'])}</b> "
            f"with ZeRO-3 over {e.n_devices:,}; one {e.accelerator} holds {device.memory / _GB:.0f} GB. "
            f"<b>{e.days:,.1f} days</b> on {e.n_devices:,} {device.name} at {e.utilisation:.0%} of "
            f"{e.peak / 1e12:g} TFLOP/s ({'fp32' if e.precision == 'fp32' else 'bf16'} peak)."
        )
        return text

    def record_grid(self) -> dict:
        """Recorded for the static book: 4 sizes x 3 token counts x 4 device counts x 2 precisions, with the
        current values (at most :data:`~lmbook.widgets.recorded.MAX_STATES` states)."""
        v = self.values
        # Size and precision first: the memory axis changes only with them, so most states are quick blits.
        grid = {name: [x for x in values if x != v[name]] + [v[name]] for name, values in _RECORDED.items()}
        while math.prod(len(values) for values in grid.values()) > MAX_STATES:
            longest = max(grid, key=lambda name: len(grid[name]))
            grid[longest].pop(0)  # a recorded value other than the current one (which is last)
        sort_keys = {"precision": list(CALCULATOR_PRECISIONS).index}
        return {name: sorted(values, key=sort_keys.get(name)) for name, values in grid.items()}
