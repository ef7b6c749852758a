"""Gradient descent on a linear regression with a learning-rate slider: too small, good, too large (chapter 3).

The callback, :func:`lr_experiment`, fits the line by full-batch gradient descent and draws nothing;
:func:`lr_verdict` judges the run from its numbers. :class:`LearningRateExplorer` draws the data with the
fitted line at several moments of the training (left) and the loss against the step (right).
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import LogLocator, NullLocator

from lmbook import plotting
from lmbook.regression import FitResult, gradient_descent, least_squares, make_linear_data, mse_loss
from lmbook.widgets.base import WIDGET_DPI, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

# The experiment's data: one input feature, so that the model is a line that can be drawn over the points.
_DATA = {"n": 40, "w": (1.5,), "b": 1.0, "noise": 0.5}
_LR_RANGE = (1e-3, 2.0)
_STEPS_RANGE = (10, 200)
_SNAPSHOTS = 6  # fitted lines drawn at this many moments of the training


def experiment_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The data :func:`lr_experiment` fits: 40 points near the line ``y = 1.5 x + 1``; ``X`` (40, 1), ``y`` (40,)."""
    return make_linear_data(seed=seed, **_DATA)


def lr_experiment(lr: float, steps: int = 50, seed: int = 0) -> FitResult:
    """Fit a line to :func:`experiment_data` by ``steps`` steps of full-batch gradient descent from ``w = b = 0``.

    Args:
        lr: the learning rate, > 0. For this data the loss's largest curvature is about 2, so gradient descent
            diverges for learning rates above about 2 / 2 = 1.
        steps: number of steps, >= 1. seed: seeds the data.

    Returns:
        The :class:`~lmbook.regression.FitResult` of :func:`lmbook.regression.gradient_descent`.
    """
    X, y = experiment_data(seed)
    return gradient_descent(X, y, lr=lr, steps=steps)


def lr_verdict(result: FitResult, best_loss: float, tol: float = 0.01) -> str:
    """Judge a run from its losses: ``"too small"``, ``"good"`` or ``"too large (diverges)"``.

    A run diverges when its loss ends above where it started (or overflows). Otherwise it is good when it
    has covered all but a fraction ``tol`` of the way from the starting loss down to ``best_loss`` (the
    least-squares loss), and too small when it has not.
    """
    if result.diverged:
        return "too large (diverges)"
    progress_left = (result.final_loss - best_loss) / (result.initial_loss - best_loss)
    return "good" if progress_left <= tol else "too small"


def _zigzags(result: FitResult) -> bool:
    """Whether the first steps mostly reverse the direction of the step before (the iterate bounces).

    The first steps, because once a run has converged its remaining moves are rounding noise.
    """
    params = np.column_stack([result.w_history, result.b_history])
    moves = np.diff(params, axis=0)[:10]
    if len(moves) < 2:
        return False
    turns = np.sum(moves[1:] * moves[:-1], axis=1)
    return bool(np.mean(turns < 0) > 0.5)


class LearningRateExplorer(InteractiveWidget):
    """A logarithmic learning-rate slider and a steps slider, with the fit and its loss curve.

    Left: the data and the fitted line after a few of the steps, from pale (early) to dark (last). Right: the
    loss after each step on a log scale, with the least-squares loss as the floor. The status line says
    whether the learning rate was too small, good or too large, judged by :func:`lr_verdict` from the losses.

    Args:
        lr: initial learning rate (the slider runs from 0.001 to 2). steps: initial number of steps (10-200).
        seed: seeds the data.

    Attributes:
        widget: the ipywidgets container to display (displaying the explorer itself does the same).
        result: the latest :class:`~lmbook.regression.FitResult`. verdict: its :func:`lr_verdict`.
        lr_slider, steps_slider, status: the controls and the status line.
    """

    def __init__(self, lr: float = 0.01, steps: int = 50, seed: int = 0) -> None:
        _check(lr, steps)
        self._holding = False
        self.seed = seed
        self.X, self.y = experiment_data(seed)
        w, b = least_squares(self.X, self.y)
        self.best_loss = mse_loss(self.X, self.y, w, b)
        style = {"description_width": "100px"}
        self.lr_slider = widgets.FloatLogSlider(
            value=lr,
            base=10,
            min=np.log10(_LR_RANGE[0]),
            max=np.log10(_LR_RANGE[1]),
            step=0.02,
            description="learning rate",
            readout_format=".3g",
            style=style,
            layout=widgets.Layout(width="420px"),
        )
        self.steps_slider = widgets.IntSlider(
            value=steps, min=_STEPS_RANGE[0], max=_STEPS_RANGE[1], step=10, description="steps", style=style
        )
        self.controls = {"lr": self.lr_slider, "steps": self.steps_slider}
        self.status = widgets.HTML()
        self.figure_image = BlitFigureImage(plotting.figure(8.0, 3.5, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.07, right=0.975, bottom=0.14, top=0.9, wspace=0.25)
        self._build_figure()
        self.result: FitResult | None = None
        self.verdict = ""
        self._steps_shown: int | None = None
        self.redraw()
        for control in (self.lr_slider, self.steps_slider):
            control.observe(self._on_change, names="value")
        controls = widgets.HBox([self.lr_slider, self.steps_slider], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([controls, self.figure_image.image, self.status])

    @property
    def values(self) -> dict:
        """The current settings: ``{"lr": ..., "steps": ...}``."""
        return {"lr": self.lr_slider.value, "steps": self.steps_slider.value}

    def record_grid(self) -> dict:
        """Recorded for the static book: 12 learning rates from 0.001 to 2 x 4 step counts."""
        v = self.values
        rates = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, v["lr"]}
        return {"lr": sorted(rates), "steps": sorted({10, 50, 100, 200, v["steps"]})}

    def _build_figure(self) -> None:
        self.ax_fit, self.ax_loss = self.figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.0]})
        ax = self.ax_fit
        x = self.X[:, 0]
        ax.scatter(x, self.y, s=14, color="0.35", zorder=3, label="data")
        pad_x, pad_y = 0.1 * np.ptp(x), 0.15 * np.ptp(self.y)
        ax.set_xlim(x.min() - pad_x, x.max() + pad_x)
        ax.set_ylim(self.y.min() - pad_y, self.y.max() + pad_y)
        self._line_x = np.array(ax.get_xlim())
        shades = colormaps["Blues"](np.linspace(0.3, 1.0, _SNAPSHOTS))
        self._fit_lines = []
        for k in range(_SNAPSHOTS):
            width = 2.4 if k == _SNAPSHOTS - 1 else 1.2
            (line,) = ax.plot(self._line_x, [0.0, 0.0], color=shades[k], linewidth=width, zorder=2)
            self._fit_lines.append(line)
        self._step_labels = [
            ax.text(0.0, 0.0, "", color=shades[k], fontsize="x-small", ha="right", va="bottom", zorder=4, clip_on=True)
            for k in range(_SNAPSHOTS)
        ]
        ax.set_xlabel("$x$")
        ax.set_ylabel("$y$", labelpad=0)
        ax.set_title("the fitted line $\\hat y = w x + b$, early (pale) to late (dark)", fontsize="medium", y=1.0)

        ax = self.ax_loss
        (self._loss_line,) = ax.plot([], [], color=plotting.CLASS_COLOURS[1], linewidth=1.8, marker=".", markersize=3)
        ax.axhline(self.best_loss, color="0.3", linestyle="--", linewidth=1.0)
        ax.text(0.98, self.best_loss, "least-squares minimum", transform=ax.get_yaxis_transform(), ha="right",
                va="top", fontsize="x-small", color="0.3")  # fmt: skip
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())
        initial = mse_loss(self.X, self.y, np.zeros(1), 0.0)
        # Fixed limits: a diverging run leaves through the top instead of rescaling the axis.
        ax.set_ylim(self.best_loss / 4, initial * 1e3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (mean squared error)")
        ax.set_title("loss while training", fontsize="medium", y=1.0)
        ax.grid(True, which="major", color="0.9")
        self.figure_image.set_dynamic([*self._fit_lines, *self._step_labels, self._loss_line])

    def snapshot_steps(self, n_losses: int) -> list[int]:
        """The steps (1-based, at most ``n_losses``) whose fitted lines are drawn: spread evenly on a log scale."""
        picks = np.unique(np.round(np.geomspace(1, n_losses, _SNAPSHOTS)).astype(int))
        return [int(k) for k in picks]

    def redraw(self) -> float:
        """Run :func:`lr_experiment` with the current settings and redraw; return the seconds it took."""
        start = time.perf_counter()
        lr, steps = self.lr_slider.value, self.steps_slider.value
        self.result = r = lr_experiment(lr, steps, self.seed)
        self.verdict = lr_verdict(r, self.best_loss)
        if steps != self._steps_shown:
            self.ax_loss.set_xlim(0, steps)
            self._steps_shown = steps
            self.figure_image.invalidate()
        finite = int(np.sum(np.isfinite(r.losses)))
        chosen = self.snapshot_steps(max(finite, 1)) if finite else []
        # The last line is always the final step, so the darkest line is where training ended.
        slots = [None] * (_SNAPSHOTS - len(chosen)) + chosen
        low, high = self.ax_fit.get_ylim()
        placed: list[float] = []  # heights of the step labels drawn so far
        # Latest first, so that when lines bunch up near the end it is the latest one that keeps its label.
        for line, label, k in reversed(list(zip(self._fit_lines, self._step_labels, slots, strict=True))):
            line.set_visible(k is not None)
            label.set_visible(False)
            if k is None:
                continue
            w, b = r.w_history[k - 1, 0], r.b_history[k - 1]
            ys = w * self._line_x + b
            line.set_ydata(ys)
            # Each line is labelled with its step where it leaves the plot on the right, if it does so in view
            # and not on top of another label.
            if low <= ys[1] <= high and all(abs(ys[1] - y) > 0.06 * (high - low) for y in placed):
                label.set_position((self._line_x[1], ys[1]))
                label.set_text(f"step {k}")
                label.set_visible(True)
                placed.append(ys[1])
        losses = np.concatenate([[r.initial_loss], r.losses])
        self._loss_line.set_data(np.arange(len(losses)), losses)
        self.status.value = self.status_text(r)
        self.figure_image.refresh()
        return time.perf_counter() - start

    def status_text(self, result: FitResult) -> str:
        """The status line: the verdict and the numbers it rests on."""
        r, best = result, self.best_loss
        lr = self.lr_slider.value
        if self.verdict.startswith("too large"):
            if not np.isfinite(r.final_loss):
                how = f"overflowed to {r.final_loss} at step {len(r.losses)}"
            else:
                how = f"grew from {r.initial_loss:.3g} to {r.final_loss:.3g} in {len(r.losses)} steps"
            return (
                f"learning rate {lr:.3g}: <b>too large (diverges)</b>. The loss {how}: each step overshoots "
                "the minimum and lands farther from it than it started."
            )
        left = (r.final_loss - best) / (r.initial_loss - best)
        if self.verdict == "too small":
            return (
                f"learning rate {lr:.3g}: <b>too small</b>. After {len(r.losses)} steps the loss is "
                f"{r.final_loss:.3g}, still {left:.0%} of the way from its start ({r.initial_loss:.3g}) "
                f"down to the minimum ({best:.3g})."
            )
        gaps = (r.losses - best) / (r.initial_loss - best)
        reached = int(np.argmax(gaps <= 0.01)) + 1
        bounce = " The parameters zig-zag around the minimum, but each bounce is smaller." if _zigzags(r) else ""
        return (
            f"learning rate {lr:.3g}: <b>good</b>. The loss came within 1% of the minimum ({best:.3g}) after "
            f"{reached} steps and ends at {r.final_loss:.4g}.{bounce}"
        )

    def update(self, lr: float | None = None, steps: int | None = None) -> float:
        """Set the learning rate and/or the number of steps, redraw once, and return the seconds it took.

        Raises:
            ValueError: a value outside the sliders' ranges; nothing is changed then.
        """
        new_lr = self.lr_slider.value if lr is None else lr
        new_steps = self.steps_slider.value if steps is None else steps
        _check(new_lr, new_steps)
        with self.holding():
            self.lr_slider.value = new_lr
            self.steps_slider.value = new_steps
        return self.redraw()


def _check(lr: float, steps: int) -> None:
    if not _LR_RANGE[0] <= lr <= _LR_RANGE[1]:
        raise ValueError(f"the learning rate must be between {_LR_RANGE[0]:g} and {_LR_RANGE[1]:g}, got {lr}")
    if not _STEPS_RANGE[0] <= steps <= _STEPS_RANGE[1]:
        raise ValueError(f"steps must be between {_STEPS_RANGE[0]} and {_STEPS_RANGE[1]}, got {steps}")
