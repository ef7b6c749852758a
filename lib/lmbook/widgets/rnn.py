"""How far back a recurrent network's gradient reaches: vanishing and exploding gradients (chapter 6).

The callback, :func:`gradient_flow`, draws nothing: for a spectral radius of ``W_h`` and a sequence length it
measures, with :func:`lmbook.bptt.gradient_per_step`, how large the gradient of a loss on the last state is with
respect to every input, relative to the last input's. :class:`GradientFlowViewer` plots that curve on a log scale,
beside the ``radius^(T - t)`` that a linear RNN (no tanh) would give.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.bptt import gradient_per_step
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, WIDGET_SIZE, FigureImage, InteractiveWidget

# A contribution smaller than float32's relative precision (2^-23, about 1.2e-7) next to the last step's is lost
# when the steps' contributions to a shared weight's gradient are added up in float32.
FLOAT32_EPS = float(np.finfo(np.float32).eps)
RECORDED_RADII = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0)  # 9 x 5 = 45 recorded states
RECORDED_LENGTHS = (10, 25, 50, 100, 200)
VANISHED, EXPLODED = 1e-3, 1e3  # first-step / last-step ratios called vanishing and exploding in the readout


@dataclass(frozen=True)
class GradientFlow:
    """What :func:`gradient_flow` measured for one spectral radius and one length.

    Attributes:
        radius: the spectral radius of ``W_h``. T: the sequence length.
        norms: ``(T,)``, the mean ``||dL/dx_t||`` for ``t = 1..T``. relative: ``norms / norms[-1]``.
        ratio: ``relative[0]``, the first input's gradient over the last input's.
        factor: the mean change per step going back, ``ratio ** (1 / (T - 1))`` (1.0 when ``T == 1``).
        lost: how many inputs have a relative gradient below float32's precision.
        verdict: ``"vanishing"``, ``"exploding"`` or ``"kept"``.
    """

    radius: float
    T: int
    norms: np.ndarray
    relative: np.ndarray
    ratio: float
    factor: float
    lost: int
    verdict: str


def gradient_flow(radius: float, T: int, seed: int = 0) -> GradientFlow:
    """Measure the gradient per input of a random RNN with ``W_h`` of spectral radius ``radius`` over ``T`` steps."""
    norms = gradient_per_step(radius, T, seed=seed)
    relative = norms / norms[-1]
    ratio = float(relative[0])
    factor = ratio ** (1 / (T - 1)) if T > 1 else 1.0
    verdict = "vanishing" if ratio < VANISHED else "exploding" if ratio > EXPLODED else "kept"
    lost = int((relative < FLOAT32_EPS).sum())
    return GradientFlow(float(radius), int(T), norms, relative, ratio, float(factor), lost, verdict)


def _decade(x: float) -> int:
    return math.floor(math.log10(x))


class GradientFlowViewer(InteractiveWidget):
    """Sliders for the spectral radius of ``W_h`` and the sequence length; a plot of the gradient per time step.

    The solid curve is the size of the gradient of a loss on the final state ``h_T`` with respect to each input
    ``x_t`` (a random tanh RNN, :func:`lmbook.bptt.gradient_per_step`), divided by its size at ``x_T``, on a log
    scale. The dashed line is ``radius^(T - t)``, what a linear RNN whose ``W_h`` had only that eigenvalue would
    give. Below the grey band a step's contribution is lost in float32 arithmetic next to the last step's.

    Args:
        radius: the spectral radius first shown. T: the length first shown. seed: the random RNN and inputs.

    Attributes:
        widget: the ipywidgets container to display. controls: ``"radius"``, ``"T"`` -> slider.
        status: the readout under the plot. current: the latest :class:`GradientFlow`.
    """

    def __init__(self, radius: float = 1.0, T: int = 50, seed: int = 0) -> None:
        self.seed = seed
        self._holding = False
        self.controls = {
            "radius": widgets.FloatSlider(value=radius, min=0.1, max=3.0, step=0.05, readout_format=".2f",
                                          description="spectral radius of W_h", continuous_update=False,
                                          style=SLIDER_STYLE, layout=widgets.Layout(width="360px")),
            "T": widgets.IntSlider(value=T, min=2, max=200, step=1, description="sequence length T",
                                   continuous_update=False, style=SLIDER_STYLE, layout=widgets.Layout(width="360px")),
        }  # fmt: skip
        self._check_settings(self.values)
        self.status = widgets.HTML()
        self.figure_image = FigureImage(plotting.figure(*WIDGET_SIZE, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self.redraw()
        self._connect()

    def _check_settings(self, values: dict) -> None:
        for name, value in values.items():
            control = self.controls[name]
            if not control.min <= value <= control.max:
                raise ValueError(f"{name} must be between {control.min} and {control.max}, got {value!r}")

    def _build_figure(self) -> None:
        fig = self.figure
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.9)
        ax = self.ax = fig.subplots()
        self._band = ax.axhspan(1e-300, FLOAT32_EPS, color="0.6", alpha=0.2, linewidth=0,
                                label="lost in float32 next to step T")  # fmt: skip
        ax.axhline(1.0, color="0.75", linewidth=0.8, zorder=0)
        (self._linear,) = ax.plot([], [], "--", color="#e08214", linewidth=1.6, label="linear RNN: radius$^{T-t}$")
        (self._curve,) = ax.plot([], [], color=plotting.CLASS_COLOURS[0], linewidth=2.2, label="tanh RNN, measured")
        ax.set_yscale("log")
        ax.set_xlabel("time step $t$ of the input $x_t$")
        ax.set_ylabel(r"$\|\partial L / \partial x_t\|$ / same at $t = T$")
        ax.legend(loc="lower right", fontsize="small")

    def redraw(self) -> float:
        """Measure and plot the current settings; return the seconds it took (gradient + render)."""
        start = time.perf_counter()
        v = self.values
        self.current = flow = gradient_flow(v["radius"], v["T"], seed=self.seed)
        t = np.arange(1, flow.T + 1)
        self._curve.set_data(t, flow.relative)
        with np.errstate(under="ignore", over="ignore"):
            linear = np.float64(flow.radius) ** (flow.T - t)
        self._linear.set_data(t, np.clip(linear, 1e-300, 1e300))
        low = min(_decade(float(flow.relative.min())) - 1, -9)
        high = max(_decade(float(flow.relative.max())) + 1, 2)
        self.ax.set_ylim(10.0**low, 10.0**high)
        self.ax.set_xlim(0.5, flow.T + 0.5)
        self.ax.set_title(f"gradient reaching each input, spectral radius {flow.radius:.2f}, T = {flow.T}",
                          fontsize="medium")  # fmt: skip
        self.status.value = self.readout(flow)
        self.figure_image.refresh()
        return time.perf_counter() - start

    @staticmethod
    def readout(flow: GradientFlow) -> str:
        """The status line for one measurement."""
        words = {
            "vanishing": "<b>vanishing</b>: the early inputs barely reach the loss",
            "exploding": "<b>exploding</b>: the early inputs dominate the gradient",
            "kept": "<b>kept</b> within a factor of 1000 over the whole sequence",
        }
        lost = f" {flow.lost} of the {flow.T} inputs are below float32 precision." if flow.lost else ""
        return (
            f"The gradient at x<sub>1</sub> is <b>{flow.ratio:.1e}</b> times the one at x<sub>T</sub>: on average "
            f"x<b>{flow.factor:.3f}</b> per step back (the spectral radius is {flow.radius:.2f}); "
            f"{words[flow.verdict]}.{lost}"
        )

    def record_grid(self) -> dict:
        """Recorded for the static book: 9 radii (0.5 to 3) x 5 lengths (10 to 200), with the current values."""
        v = self.values
        current = v["radius"]
        # A value that reads like the current one on the slider (2 decimals) gives way to it.
        radii = [r for r in RECORDED_RADII if f"{r:.2f}" != f"{current:.2f}"]
        radius = sorted([*radii, current])
        lengths = sorted({*RECORDED_LENGTHS, v["T"]})
        return {"radius": radius, "T": lengths}
