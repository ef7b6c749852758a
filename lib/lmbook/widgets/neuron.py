"""A single neuron with a slider for its weight and bias and a choice of activation (chapter 2).

The callback, :func:`neuron_response`, is a pure function of the control values; :class:`NeuronExplorer`
draws what it returns.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.activations import ACTIVATIONS, Activation, get_activation
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, WIDGET_SIZE, FigureImage, InteractiveWidget


def neuron_response(x, w, b: float, activation: str | Activation) -> tuple[np.ndarray, np.ndarray]:
    """The pre-activation and output of one neuron: ``z = x w + b`` and ``a = f(z)``.

    Args:
        x: inputs, shape ``(N,)`` for a neuron with one input (then ``w`` is a number), or ``(N, C)`` for a
            neuron with ``C`` inputs (then ``w`` has shape ``(C,)``).
        w: the weight(s). b: the bias, a number.
        activation: a name such as ``"sigmoid"`` or an :class:`~lmbook.activations.Activation`.

    Returns:
        z, a: both of shape ``(N,)``, float64.
    """
    act = get_activation(activation)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim == 1 and w.ndim == 0:
        z = x * w + b
    elif x.ndim == 2 and w.shape == (x.shape[1],):
        z = x @ w + b
    else:
        raise ValueError(
            f"x has shape {x.shape} and w has shape {w.shape}; expected x (N,) with a number w, or x (N, C) with w (C,)"
        )
    return z, act.f(z)


def flat_fraction(z: np.ndarray, activation: str | Activation, threshold: float = 0.1) -> float:
    """Share of the pre-activations ``z`` (shape ``(N,)``) where ``f'(z)`` is below ``threshold`` x its peak.

    Where the derivative is (nearly) zero, a neuron passes (almost) no gradient back, so it barely learns from
    those inputs: a saturated sigmoid or tanh, or a ReLU on its flat side.
    """
    act = get_activation(activation)
    slopes = np.abs(act.df(np.asarray(z, dtype=np.float64)))
    peak = float(np.max(np.abs(act.df(np.linspace(-10.0, 10.0, 2001)))))
    return float(np.mean(slopes < threshold * peak))


class NeuronExplorer(InteractiveWidget):
    """Sliders for the weight and bias of one neuron and a menu of activations, with a live plot.

    The left panel shows the neuron's output ``a = f(w x + b)`` for inputs ``x`` in ``x_range``; the right
    panel shows the activation ``f`` and its derivative, with the band of pre-activations ``z`` that those
    inputs reach. A large ``|w|`` stretches the band into the flat parts of a sigmoid or tanh, where the
    derivative, and with it the gradient, is nearly zero.

    Args:
        w, b: initial weight and bias. activation: initial activation name.
        x_range: the inputs drawn on the left, ``(low, high)``.

    Attributes:
        widget: the ipywidgets container to display (displaying the explorer itself does the same).
        figure_image: the :class:`FigureImage` holding the figure.
        w_slider, b_slider, activation_menu, status: the controls and the status line.
    """

    Z_LIMIT = 8.0  # the right panel draws f over z in [-Z_LIMIT, Z_LIMIT]

    def __init__(
        self,
        w: float = 1.0,
        b: float = 0.0,
        activation: str = "sigmoid",
        x_range: tuple[float, float] = (-4.0, 4.0),
    ) -> None:
        get_activation(activation)  # fail early, with the list of valid names
        self._holding = False
        self.x = np.linspace(x_range[0], x_range[1], 241)
        self.z_grid = np.linspace(-self.Z_LIMIT, self.Z_LIMIT, 321)
        self.w_slider = widgets.FloatSlider(
            value=w,
            min=-5.0,
            max=5.0,
            step=0.1,
            description="weight w",
            readout_format=".1f",
            style=SLIDER_STYLE,
        )
        self.b_slider = widgets.FloatSlider(
            value=b,
            min=-5.0,
            max=5.0,
            step=0.1,
            description="bias b",
            readout_format=".1f",
            style=SLIDER_STYLE,
        )
        self.activation_menu = widgets.Dropdown(
            options=list(ACTIVATIONS), value=activation, description="activation f", style=SLIDER_STYLE
        )
        self.controls = {"w": self.w_slider, "b": self.b_slider, "activation": self.activation_menu}
        self.status = widgets.HTML()
        # Fixed margins instead of a layout engine: the axes stay put when the activation (and with it the
        # y tick labels) changes, and no layout pass slows down each redraw.
        self.figure_image = FigureImage(plotting.figure(*WIDGET_SIZE, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.085, right=0.99, bottom=0.15, top=0.9, wspace=0.14)
        self._build_figure()
        self.redraw()
        for control in (self.w_slider, self.b_slider, self.activation_menu):
            control.observe(self._on_change, names="value")
        controls = widgets.HBox(
            [self.w_slider, self.b_slider, self.activation_menu], layout=widgets.Layout(flex_flow="row wrap")
        )
        self.widget = widgets.VBox([controls, self.figure_image.image, self.status])

    @property
    def values(self) -> dict:
        """The current control values: ``{"w": ..., "b": ..., "activation": ...}``."""
        return {"w": self.w_slider.value, "b": self.b_slider.value, "activation": self.activation_menu.value}

    def record_grid(self) -> dict:
        """Recorded for the static book: 4 weights x 4 biases x the 4 activations, the values the chapter's
        things to try use (w = 1, 2, 5 and a negative one; b = 0, -5 and a move either way).

        Each recorded state adds about 13 ms to the time the page takes to respond (benchmarks, section i); with
        6 weights (96 states) the page took 2.0-2.5 s, over the 2 s target.
        """
        v = self.values
        w = sorted({-1.0, 1.0, 2.0, 5.0, v["w"]})
        b = sorted({-5.0, -2.0, 0.0, 2.0, v["b"]})
        return {"w": w, "b": b, "activation": list(ACTIVATIONS)}

    def _build_figure(self) -> None:
        fig = self.figure
        self.ax_out, self.ax_act = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1.0]})
        ax = self.ax_out
        ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
        (self._a_line,) = ax.plot(self.x, np.zeros_like(self.x), color=plotting.CLASS_COLOURS[0], linewidth=2.2)
        self._threshold_line = ax.axvline(0.0, color="0.3", linestyle=":", linewidth=1.4)
        # A label that travels with the dotted line, instead of a legend that the curve could run into.
        self._threshold_text = ax.text(
            0.0, 0.97, " $z = 0$", transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize="small",
            color="0.3",
        )  # fmt: skip
        ax.set_xlim(self.x[0], self.x[-1])
        ax.set_xlabel("input $x$")
        ax.set_ylabel("output $a = f(wx + b)$")

        ax = self.ax_act
        ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
        zeros = np.zeros_like(self.z_grid)
        (self._f_line,) = ax.plot(self.z_grid, zeros, color=plotting.CLASS_COLOURS[0], linewidth=2.2, label="$f(z)$")
        (self._df_line,) = ax.plot(self.z_grid, zeros, color="#e08214", linewidth=1.8, linestyle="--", label="$f'(z)$")
        self._band = ax.axvspan(
            -1.0,
            1.0,
            color="#7a7a7a",
            alpha=0.18,
            linewidth=0,
            label=f"$z$ reached by $x \\in [{self.x[0]:g}, {self.x[-1]:g}]$",
        )
        ax.set_xlim(-self.Z_LIMIT, self.Z_LIMIT)
        ax.set_xlabel("pre-activation $z$")
        ax.set_title("activation and its slope", fontsize="medium")
        self._act_legend = ax.legend(loc="upper left", fontsize="small")

    def redraw(self) -> float:
        """Redraw the figure for the current control values; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        w, b, name = self.w_slider.value, self.b_slider.value, self.activation_menu.value
        act = get_activation(name)
        z, a = neuron_response(self.x, w, b, act)
        self._a_line.set_ydata(a)
        # z = 0 at x = -b / w: there a sigmoid gives 0.5, a tanh 0, and a ReLU starts to rise.
        crossing = -b / w if w != 0 else np.nan
        self._threshold_line.set_xdata([crossing, crossing])
        shown = bool(np.isfinite(crossing) and self.x[0] <= crossing <= self.x[-1])
        self._threshold_line.set_visible(shown)
        self._threshold_text.set_visible(shown)
        if shown:
            self._threshold_text.set_x(crossing)
        f, df = act.f(self.z_grid), act.df(self.z_grid)
        self._f_line.set_ydata(f)
        self._df_line.set_ydata(df)
        self._act_legend.get_texts()[0].set_text(f"$f(z)$ = {name}")
        low, high = float(z.min()), float(z.max())
        self._band.set_x(max(low, -self.Z_LIMIT))
        self._band.set_width(max(min(high, self.Z_LIMIT) - max(low, -self.Z_LIMIT), 0.0))
        bottom, top = min(f.min(), df.min()), max(f.max(), df.max())
        pad = 0.08 * (top - bottom)
        self.ax_act.set_ylim(bottom - pad, top + pad)
        # The output panel keeps the same y range as the activation over [-Z_LIMIT, Z_LIMIT], so the two
        # panels read on the same scale and the y axis does not jump as the sliders move.
        self.ax_out.set_ylim(f.min() - pad, f.max() + pad)
        self.ax_out.set_title(f"$a = $ {name}$({w:.1f}\\,x {'+' if b >= 0 else '-'} {abs(b):.1f})$", fontsize="medium")
        self.status.value = self.status_text(z, act)
        self.figure_image.refresh()
        return time.perf_counter() - start

    def status_text(self, z: np.ndarray, activation: Activation) -> str:
        """The status line under the plot, for pre-activations ``z`` (shape ``(N,)``)."""
        flat = flat_fraction(z, activation)
        return (
            f"z = w·x + b runs from <b>{z.min():.1f}</b> to <b>{z.max():.1f}</b> for x in "
            f"[{self.x[0]:g}, {self.x[-1]:g}]; the activation is nearly flat (slope below 10% of its "
            f"peak) for <b>{flat:.0%}</b> of these inputs."
        )

    def update(self, w: float | None = None, b: float | None = None, activation: str | None = None) -> float:
        """Set any of the controls, redraw once, and return the seconds the redraw took."""
        if activation is not None:
            get_activation(activation)
        # Setting three controls would otherwise trigger three redraws through the observers.
        with self.holding():
            if w is not None:
                self.w_slider.value = w
            if b is not None:
                self.b_slider.value = b
            if activation is not None:
                self.activation_menu.value = activation
        return self.redraw()


# ---------------------------------------------------------------------------------------------------------
# A small network learning a decision boundary
