"""Polynomial fits of growing degree to a few noisy points, with sliders for degree, data size and L2 (chapter 4).

The callback, :func:`overfitting_curves`, fits and measures and draws nothing; :class:`OverfittingExplorer`
draws what it returns. The left panel shows the data and the fitted curve; the right panel shows training
and validation error against the degree, the picture that defines overfitting: past some degree the training
error keeps falling while the validation error climbs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.ticker import NullLocator

from lmbook import plotting
from lmbook.regularisation import X_RANGE, PolyResult, degree_sweep, polynomial_experiment
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, WIDGET_SIZE, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

# The L2 strengths on the slider: none, then one per decade, which is how a penalty's strength is usually tuned.
L2_OPTIONS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
MAX_DEGREE = 12
N_TRAIN_RANGE = (5, 100)
# Errors are drawn on a log scale between these bounds; an exact fit's training error of about 1e-30 is drawn
# at the bottom edge instead of stretching the axis over thirty decades.
_ERROR_LIMITS = (1e-3, 1e4)
_Y_LIMITS = (-2.5, 2.5)


@dataclass(frozen=True, eq=False)
class OverfittingResult:
    """What :func:`overfitting_curves` returns.

    Attributes:
        fit: the :class:`~lmbook.regularisation.PolyResult` at the chosen degree (data, curve, errors).
        degrees: ``0, 1, ..., max_degree``, shape ``(D,)``.
        train_mse, val_mse: the errors at each of those degrees, shape ``(D,)`` each.
    """

    fit: PolyResult
    degrees: np.ndarray
    train_mse: np.ndarray
    val_mse: np.ndarray

    @property
    def best_degree(self) -> int:
        """The degree with the lowest validation error: the one model selection would pick."""
        return int(self.degrees[np.argmin(self.val_mse)])


def overfitting_curves(
    degree: int, n_train: int, l2: float = 0.0, noise: float = 0.3, seed: int = 0, max_degree: int = MAX_DEGREE
) -> OverfittingResult:
    """Fit the chosen degree, and measure the training and validation error of every degree up to ``max_degree``.

    Args:
        degree: the polynomial degree to fit and draw, ``0 <= degree <= max_degree``.
        n_train: number of training points. l2: ridge penalty (see :func:`lmbook.regularisation.fit_polynomial`).
        noise: standard deviation of the noise on the targets. seed: seeds the data.
        max_degree: the largest degree on the error curves.
    """
    if not 0 <= degree <= max_degree:
        raise ValueError(f"degree must be between 0 and max_degree={max_degree}, got {degree}")
    fit = polynomial_experiment(degree, n_train, noise=noise, seed=seed, l2=l2)
    degrees = np.arange(max_degree + 1)
    train_mse, val_mse = degree_sweep(degrees, n_train, noise=noise, seed=seed, l2=l2)
    return OverfittingResult(fit=fit, degrees=degrees, train_mse=train_mse, val_mse=val_mse)


class OverfittingExplorer(InteractiveWidget):
    """Sliders for a polynomial's degree, the number of training points and an L2 penalty, with a live plot.

    Left: the training points, fresh validation points, the true function and the fitted polynomial. Right:
    training and validation error against the degree, with the current degree marked and the noise floor
    (the error even the true function makes on noisy data). Try a high degree with few points, then add
    points or an L2 penalty and watch the validation error come back down.

    Args:
        degree, n_train, l2: initial settings; the sliders allow degrees 0 to ``MAX_DEGREE``, 5 to 100
            points, and the penalties in ``L2_OPTIONS``.
        noise, seed: the data's noise and seed, fixed for the widget's life.

    Attributes:
        widget: the ipywidgets container to display (displaying the explorer itself does the same).
        figure_image: the :class:`~lmbook.widgets.blitting.BlitFigureImage` holding the figure.
        controls: dict name -> slider, for ``"degree"``, ``"n_train"`` and ``"l2"``.
        result: the latest :class:`OverfittingResult`. status: the line of text under the plot.
    """

    def __init__(self, degree: int = 3, n_train: int = 12, l2: float = 0.0, noise: float = 0.3, seed: int = 0):
        self.noise, self.seed = float(noise), int(seed)
        self._check(degree=degree, n_train=n_train, l2=l2)
        self._holding = False
        self.controls = {
            "degree": widgets.IntSlider(value=degree, min=0, max=MAX_DEGREE, description="degree", style=SLIDER_STYLE),
            "n_train": widgets.IntSlider(
                value=n_train,
                min=N_TRAIN_RANGE[0],
                max=N_TRAIN_RANGE[1],
                description="training points",
                style=SLIDER_STYLE,
            ),  # fmt: skip
            # A selection slider: the penalties worth trying differ by factors of 10, and "none" is one of them.
            "l2": widgets.SelectionSlider(
                options=[("none" if v == 0 else f"{v:.0e}", v) for v in L2_OPTIONS],
                value=l2,
                description="L2 penalty",
                style=SLIDER_STYLE,
            ),
        }
        self.status = widgets.HTML()
        # Fixed margins instead of a layout engine: nothing in the figure changes size. Only the artists that
        # the sliders change are redrawn (blitting), which keeps a slider move well under 100 ms.
        self.figure_image = BlitFigureImage(plotting.figure(*WIDGET_SIZE, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.075, right=0.985, bottom=0.14, top=0.9, wspace=0.22)
        self._build_figure()
        self.figure_image.set_dynamic(
            [
                self._fit_line,
                self._train_points,
                self.ax_fit.title,
                self._train_curve,
                self._val_curve,
                self._degree_line,
                self._current,
            ]
        )
        self.result: OverfittingResult | None = None
        self.redraw()
        self._connect()

    @staticmethod
    def _check(**values) -> None:
        unknown = set(values) - {"degree", "n_train", "l2"}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are ['degree', 'n_train', 'l2']")
        if "degree" in values and not 0 <= values["degree"] <= MAX_DEGREE:
            raise ValueError(f"degree must be between 0 and {MAX_DEGREE}, got {values['degree']}")
        if "n_train" in values and not N_TRAIN_RANGE[0] <= values["n_train"] <= N_TRAIN_RANGE[1]:
            raise ValueError(
                f"n_train must be between {N_TRAIN_RANGE[0]} and {N_TRAIN_RANGE[1]}, got {values['n_train']}"
            )
        if "l2" in values and values["l2"] not in L2_OPTIONS:
            raise ValueError(f"l2 must be one of {L2_OPTIONS}, got {values['l2']}")

    def record_grid(self) -> dict:
        """Recorded for the static book: every degree x 4 training-set sizes x 3 penalties."""
        v = self.values
        return {
            "degree": list(range(MAX_DEGREE + 1)),
            "n_train": sorted({12, 25, 50, 100, v["n_train"]}),
            "l2": sorted({0.0, 1e-3, 1e-1, v["l2"]}),
        }

    def _build_figure(self) -> None:
        self.ax_fit, self.ax_err = self.figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1.0]})
        ax = self.ax_fit
        blue, red = plotting.CLASS_COLOURS
        empty = np.zeros(0)
        (self._val_points,) = ax.plot(
            empty, empty, linestyle="none", marker=".", markersize=3, color="0.65", label="validation points"
        )
        (self._true_line,) = ax.plot(empty, empty, color="0.35", linestyle="--", linewidth=1.4, label="true function")
        (self._fit_line,) = ax.plot(empty, empty, color=red, linewidth=2.0, label="fitted polynomial")
        (self._train_points,) = ax.plot(
            empty, empty, linestyle="none", marker="o", markersize=5, color=blue, markeredgecolor="white",
            label="training points", zorder=3,
        )  # fmt: skip
        ax.set_xlim(*X_RANGE)
        ax.set_ylim(*_Y_LIMITS)
        ax.set_xticks(np.linspace(*X_RANGE, 5))
        ax.set_xlabel("input $x$")
        ax.set_ylabel("target $y$")
        ax.legend(loc="lower left", fontsize="x-small", ncol=2, frameon=False)

        ax = self.ax_err
        (self._train_curve,) = ax.plot(empty, empty, color=blue, marker="o", markersize=3.5, label="training")
        (self._val_curve,) = ax.plot(empty, empty, color=red, marker="^", markersize=3.5, label="validation")
        self._noise_line = ax.axhline(self.noise**2, color="0.5", linestyle=":", linewidth=1.2, label="noise floor")
        self._degree_line = ax.axvline(0.0, color="0.3", linewidth=1.0, zorder=0)
        (self._current,) = ax.plot(
            [0.0, 0.0], [1.0, 1.0], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
            markeredgecolor="black", markeredgewidth=1.4,
        )  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlim(-0.5, MAX_DEGREE + 0.5)
        ax.set_ylim(*_ERROR_LIMITS)
        # One tick per decade and no minor ticks: a log axis's many small ticks cost a third of each redraw.
        decades = np.arange(np.log10(_ERROR_LIMITS[0]), np.log10(_ERROR_LIMITS[1]) + 1)
        ax.set_yticks(10.0**decades)
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(range(0, MAX_DEGREE + 1, 2))
        ax.set_xlabel("polynomial degree (capacity)")
        ax.set_ylabel("mean squared error")
        ax.set_title("error against degree", fontsize="medium")
        ax.grid(True, which="major", color="0.92")
        ax.legend(loc="upper left", fontsize="x-small", frameon=False)

    def redraw(self) -> float:
        """Refit for the current control values and redraw; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        v = self.values
        self.result = r = overfitting_curves(v["degree"], v["n_train"], v["l2"], noise=self.noise, seed=self.seed)
        fit = r.fit
        self._train_points.set_data(fit.x_train, fit.y_train)
        self._val_points.set_data(fit.x_val, fit.y_val)
        self._true_line.set_data(fit.grid_x, fit.grid_true)
        # Far outside the axes the curve's values can be astronomically large; clipping them a little beyond
        # the visible range draws the same picture without asking the renderer to handle huge coordinates.
        span = _Y_LIMITS[1] - _Y_LIMITS[0]
        self._fit_line.set_data(fit.grid_x, np.clip(fit.grid_y, _Y_LIMITS[0] - span, _Y_LIMITS[1] + span))
        penalty = "no penalty" if fit.l2 == 0 else f"L2 = {fit.l2:.0e}"
        self.ax_fit.set_title(f"degree {fit.degree}, {fit.n_train} training points, {penalty}", fontsize="medium")
        shown_train = np.clip(r.train_mse, *_ERROR_LIMITS)
        shown_val = np.clip(r.val_mse, *_ERROR_LIMITS)
        self._train_curve.set_data(r.degrees, shown_train)
        self._val_curve.set_data(r.degrees, shown_val)
        self._degree_line.set_xdata([fit.degree, fit.degree])
        self._current.set_data([fit.degree, fit.degree], [shown_train[fit.degree], shown_val[fit.degree]])
        self.status.value = self.status_text(r)
        self.figure_image.refresh()
        return time.perf_counter() - start

    def status_text(self, result: OverfittingResult) -> str:
        """One line comparing the current fit with the best degree for this data."""
        fit = result.fit
        text = (
            f"degree {fit.degree}: training MSE <b>{fit.train_mse:.3g}</b>, validation MSE "
            f"<b>{fit.val_mse:.3g}</b> (noise floor {self.noise**2:.3g}). Lowest validation error at degree "
            f"<b>{result.best_degree}</b>."
        )
        if fit.degree + 1 >= fit.n_train and fit.l2 == 0:
            text += " As many coefficients as points: the curve passes through every training point."
        return text

    def update(self, **values) -> float:
        """Set any of the controls (``degree``, ``n_train``, ``l2``), redraw once, and return the seconds taken."""
        self._check(**values)
        # Setting several controls would otherwise trigger one redraw each through the observers.
        with self.holding():
            for name, value in values.items():
                self.controls[name].value = value
        return self.redraw()
