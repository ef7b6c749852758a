"""Several optimisers racing down the same 2-D loss surface, with one shared learning rate (chapter 3).

The callback, :func:`race`, runs each chosen optimiser from :mod:`lmbook.optim` on a surface from
:mod:`lmbook.surfaces` and returns the paths; it draws nothing. :class:`OptimizerRace` draws them over the
surface's contour lines (left) and plots each optimiser's loss against the step (right).

One learning rate for everyone is deliberate: it shows that the number means different things to different
optimisers. For SGD it multiplies the gradient, so the step is large where the surface is steep; for Adam and
RMSprop it is roughly the distance moved per step, whatever the steepness.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogLocator, NullLocator

from lmbook import plotting
from lmbook.surfaces import SURFACES, Surface, get_surface, trajectory
from lmbook.widgets.base import WIDGET_DPI, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

# The optimisers the race offers, in the order they are listed and drawn, each with its own colour.
RACE_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
_COLOURS = {"sgd": "#1f5fa8", "momentum": "#e08214", "rmsprop": "#2a9d4a", "adam": "#c8312b"}
_LABELS = {"sgd": "SGD", "momentum": "SGD + momentum", "rmsprop": "RMSprop", "adam": "Adam"}
# The loss panel shows f - f(minimum), on a log scale down to this floor (an exact hit would be log 0).
_LOSS_FLOOR = 1e-10
_RESOLUTION = 120  # contour grid points along each axis
_STEPS_RANGE = (10, 500)
_LR_RANGE = (1e-4, 1.0)


def _check_slider_ranges(lr: float, steps: int) -> None:
    """The widget's sliders cannot show values outside their ranges; refuse them instead of clipping silently."""
    if not _LR_RANGE[0] <= lr <= _LR_RANGE[1]:
        raise ValueError(f"the learning rate slider runs from {_LR_RANGE[0]:g} to {_LR_RANGE[1]:g}, got {lr}")
    if not _STEPS_RANGE[0] <= steps <= _STEPS_RANGE[1]:
        raise ValueError(f"the steps slider runs from {_STEPS_RANGE[0]} to {_STEPS_RANGE[1]}, got {steps}")


def _check_names(surface: str, optimizers) -> tuple[str, ...]:
    get_surface(surface)
    optimizers = tuple(optimizers)
    unknown = [name for name in optimizers if name not in RACE_OPTIMIZERS]
    if unknown:
        valid = ", ".join(map(repr, RACE_OPTIMIZERS))
        raise ValueError(f"unknown optimiser(s) {unknown}; choose from {valid}")
    return optimizers


def race(surface: str, optimizers: tuple[str, ...], lr: float, momentum: float, steps: int) -> dict[str, np.ndarray]:
    """Run each optimiser ``steps`` steps from the surface's start, all with the same learning rate.

    Args:
        surface: a name in :data:`lmbook.surfaces.SURFACES`.
        optimizers: names from :data:`RACE_OPTIMIZERS` (``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"``).
        lr: the learning rate, > 0, shared by all. momentum: the momentum of ``"momentum"``, in [0, 1).
        steps: number of steps, >= 1.

    Returns:
        ``{name: path}`` in the order given, each path of shape ``(steps + 1, 2)``, or shorter when that
        optimiser diverged (see :func:`lmbook.surfaces.trajectory`).
    """
    optimizers = _check_names(surface, optimizers)
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return {name: trajectory(surface, name, lr, int(steps), momentum=momentum) for name in optimizers}


def gap_to_minimum(surface: str | Surface, path: np.ndarray) -> np.ndarray:
    """``f(point) - f(minimum)`` along a path ``(k, 2)``, shape ``(k,)``: how far above the best loss each step is."""
    s = get_surface(surface)
    return s.f(path) - float(s.f(s.minimum))


class OptimizerRace(InteractiveWidget):
    """A surface, a learning rate, a momentum, a number of steps and a choice of optimisers, with a live plot.

    Left: the surface's contour lines, its starting point (black circle) and minimum (star), and the path
    of each optimiser. Right: each optimiser's loss above the minimum, ``f - f_min``, against the step, on a
    log scale. Every change of a control re-runs :func:`race` and redraws the same figure.

    Args:
        surface, optimizers, lr, momentum, steps: initial settings. The learning-rate slider is logarithmic,
            from 1e-4 to 1; momentum runs from 0 to 0.99 and steps from 10 to 500.

    Attributes:
        widget: the ipywidgets container to display (displaying the race itself does the same).
        paths: the latest result of :func:`race`.
        controls: dict name -> control (``"surface"``, ``"lr"``, ``"momentum"``, ``"steps"``) and
            ``checkboxes``: dict optimiser name -> checkbox. status: the line of results under the plot.
    """

    def __init__(
        self,
        surface: str = "ill-conditioned quadratic",
        optimizers: tuple[str, ...] = RACE_OPTIMIZERS,
        lr: float = 0.04,
        momentum: float = 0.9,
        steps: int = 100,
    ) -> None:
        optimizers = _check_names(surface, optimizers)
        race(surface, optimizers, lr, momentum, 1)  # fail early on bad values, with the callback's messages
        _check_slider_ranges(lr, steps)
        self._holding = False
        self._grids: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        style = {"description_width": "110px"}
        wide = widgets.Layout(width="auto")
        self.controls = {
            "surface": widgets.Dropdown(
                options=list(SURFACES), value=surface, description="loss surface", style=style, layout=wide
            ),
            "lr": widgets.FloatLogSlider(
                value=lr,
                base=10,
                min=np.log10(_LR_RANGE[0]),
                max=np.log10(_LR_RANGE[1]),
                step=0.05,
                description="learning rate",
                readout_format=".3g",
                style=style,
                layout=wide,
            ),
            "momentum": widgets.FloatSlider(
                value=momentum, min=0.0, max=0.99, step=0.01, description="momentum", style=style, layout=wide
            ),
            "steps": widgets.IntSlider(
                value=steps, min=_STEPS_RANGE[0], max=_STEPS_RANGE[1], step=10, description="steps", style=style,
                layout=wide,
            ),
        }  # fmt: skip
        self.checkboxes = {
            name: widgets.Checkbox(
                value=name in optimizers, description=_LABELS[name], indent=False, layout=widgets.Layout(width="auto")
            )
            for name in RACE_OPTIMIZERS
        }
        self.status = widgets.HTML()
        self.figure_image = BlitFigureImage(plotting.figure(8.0, 3.6, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.07, right=0.975, bottom=0.14, top=0.9, wspace=0.22)
        self._build_figure()
        self.paths: dict[str, np.ndarray] = {}
        self._surface_shown: str | None = None
        self._static_key: tuple | None = None
        self.redraw()
        for control in [*self.controls.values(), *self.checkboxes.values()]:
            control.observe(self._on_change, names="value")
        grid = widgets.GridBox(
            list(self.controls.values()),
            layout=widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(300px, 1fr))", grid_gap="2px 12px"),
        )
        boxes = widgets.HBox(
            [widgets.HTML("<span style='padding-right: 8px'>optimisers:</span>"), *self.checkboxes.values()],
            layout=widgets.Layout(flex_flow="row wrap", grid_gap="0 16px"),
        )
        self.widget = widgets.VBox([grid, boxes, self.figure_image.image, self.status])

    @property
    def values(self) -> dict:
        """The current settings, as keyword arguments of :func:`race`."""
        v = {name: control.value for name, control in self.controls.items()}
        v["optimizers"] = tuple(name for name in RACE_OPTIMIZERS if self.checkboxes[name].value)
        return v

    def record_grid(self) -> dict:
        """Recorded for the static book: each surface x 6 learning rates (both sides of the quadratic's stability
        limits 0.1 and 0.19) x 4 momentums, with the optimisers and the number of steps shown: 72 states, so that
        the page responds within 2 s (about 13 ms of start-up per state; docs/widgets.md)."""
        v = self.values
        rates = {0.001, 0.01, 0.04, 0.1, 0.15, 0.2, v["lr"]}
        momentums = {0.0, 0.5, 0.9, 0.99, v["momentum"]}
        return {"surface": list(SURFACES), "lr": sorted(rates), "momentum": sorted(momentums)}

    def _build_figure(self) -> None:
        self.ax_surface, self.ax_loss = self.figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1.0]})
        ax = self.ax_surface
        # The background: log of the loss above its minimum, painted once per surface as an image.
        self._shading = ax.imshow(
            np.ones((2, 2)), origin="lower", cmap="Greys_r", norm=LogNorm(), alpha=0.35, aspect="auto",
            interpolation="bilinear", zorder=0,
        )  # fmt: skip
        self._contours = None
        self._path_lines = {}
        self._end_markers = {}
        self._loss_lines = {}
        for name in RACE_OPTIMIZERS:
            colour = _COLOURS[name]
            (self._path_lines[name],) = ax.plot([], [], color=colour, linewidth=1.6, marker=".", markersize=3)
            (self._end_markers[name],) = ax.plot([], [], color=colour, marker="o", markersize=6, markeredgecolor="k")
            (self._loss_lines[name],) = self.ax_loss.plot([], [], color=colour, linewidth=1.8, label=_LABELS[name])
        (self._start_marker,) = ax.plot([], [], "o", color="k", markersize=7, zorder=5)
        (self._min_marker,) = ax.plot([], [], "*", color="gold", markeredgecolor="k", markersize=14, zorder=5)
        # Only the paths and the loss curves change while a slider moves; the rest is drawn once (blitting).
        # The minimum comes last, so that the paths never hide the goal.
        self.figure_image.set_dynamic(
            [*self._path_lines.values(), *self._end_markers.values(), *self._loss_lines.values(), self._min_marker]
        )
        ax.set_xlabel("$x$")
        ax.set_ylabel("$y$", labelpad=0)
        ax = self.ax_loss
        ax.set_yscale("log")
        # Few ticks and no minor ones: drawing tick labels is most of the cost of a redraw.
        ax.yaxis.set_major_locator(LogLocator(numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("step")
        ax.set_ylabel("loss above the minimum, $f - f_{min}$")
        # A title with an explicit height is not re-positioned (an expensive measurement) on every draw.
        ax.set_title("loss while optimising", fontsize="medium", y=1.0)
        ax.grid(True, which="major", color="0.9")
        self._legend = None

    def _surface_grid(self, name: str):
        """The contour grid of a surface, computed once and kept: ``(xx, yy, gap, levels)``."""
        if name not in self._grids:
            s = SURFACES[name]
            xx, yy, zz = s.grid(_RESOLUTION)
            gap = np.maximum(zz - float(s.f(s.minimum)), _LOSS_FLOOR)
            positive = gap[gap > _LOSS_FLOOR]
            levels = np.geomspace(max(np.percentile(positive, 0.5), 1e-3), gap.max(), 12)
            self._grids[name] = (xx, yy, gap, levels)
        return self._grids[name]

    def _show_surface(self, name: str) -> None:
        """Redraw the contour lines and background for a new surface (the slow part, done only on a change)."""
        s = SURFACES[name]
        xx, yy, gap, levels = self._surface_grid(name)
        ax = self.ax_surface
        if self._contours is not None:
            self._contours.remove()
        self._contours = ax.contour(xx, yy, gap, levels=levels, colors="0.45", linewidths=0.7, zorder=1)
        self._shading.set_data(gap)
        self._shading.set_extent((*s.xlim, *s.ylim))
        self._shading.set_norm(LogNorm(vmin=levels[0], vmax=gap.max()))
        self._start_marker.set_data([s.start[0]], [s.start[1]])
        self._min_marker.set_data([s.minimum[0]], [s.minimum[1]])
        ax.set_xlim(*s.xlim)
        ax.set_ylim(*s.ylim)
        ax.set_title(s.formula, fontsize="medium", y=1.0)
        # A fixed loss axis per surface (from the floor to well above the worst point of the plot), so that
        # moving the learning rate only moves lines; a diverging run leaves through the top.
        self.ax_loss.set_ylim(_LOSS_FLOOR, 10 * gap.max())
        self._surface_shown = name

    def _update_static(self, surface: str, optimizers: tuple[str, ...], steps: int) -> None:
        """Change what only the surface, the set of optimisers or the number of steps changes; then redraw all."""
        key = (surface, optimizers, steps)
        if key == self._static_key:
            return
        if surface != self._surface_shown:
            self._show_surface(surface)
        self.ax_loss.set_xlim(0, steps)
        if self._legend is not None:
            self._legend.remove()
        shown = [self._loss_lines[opt] for opt in optimizers]
        self._legend = self.ax_loss.legend(handles=shown, loc="lower left", fontsize="small") if shown else None
        self._static_key = key
        self.figure_image.invalidate()

    def redraw(self) -> float:
        """Run :func:`race` with the current settings and redraw; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        v = self.values
        name = v["surface"]
        self.paths = race(name, v["optimizers"], v["lr"], v["momentum"], v["steps"])
        self._update_static(name, v["optimizers"], v["steps"])
        for opt in RACE_OPTIMIZERS:
            chosen = opt in self.paths
            for artist in (self._path_lines[opt], self._end_markers[opt], self._loss_lines[opt]):
                artist.set_visible(chosen)
            if not chosen:
                continue
            path = self.paths[opt]
            self._path_lines[opt].set_data(path[:, 0], path[:, 1])
            # The end of the path: a dot, or a cross where the run was stopped because it diverged.
            self._end_markers[opt].set_data([path[-1, 0]], [path[-1, 1]])
            self._end_markers[opt].set_marker("X" if len(path) < v["steps"] + 1 else "o")
            self._loss_lines[opt].set_data(np.arange(len(path)), np.maximum(gap_to_minimum(name, path), _LOSS_FLOOR))
        self.status.value = self.status_text(name, self.paths, v["steps"])
        self.figure_image.refresh()
        return time.perf_counter() - start

    def status_text(self, surface: str, paths: dict[str, np.ndarray], steps: int) -> str:
        """One line with each optimiser's result: its final loss above the minimum, or where it diverged."""
        if not paths:
            return "Tick at least one optimiser to start the race."
        parts = []
        for opt, path in paths.items():
            if len(path) < steps + 1:
                parts.append(f"{_LABELS[opt]}: <b>diverged</b> at step {len(path)}")
            else:
                gap = float(gap_to_minimum(surface, path[-1:])[0])
                parts.append(f"{_LABELS[opt]}: <b>{gap:.2g}</b>")
        return f"Loss above the minimum after {steps} steps: " + "; ".join(parts) + "."

    def _on_change(self, change) -> None:
        if not self._holding:
            self.redraw()

    def update(self, **values) -> float:
        """Set any of ``surface``, ``optimizers``, ``lr``, ``momentum``, ``steps``, redraw once; return the seconds.

        Raises:
            ValueError: an unknown setting or an invalid value; nothing is changed then.
        """
        allowed = {*self.controls, "optimizers"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {sorted(allowed)}")
        settings = {**self.values, **values}
        settings["optimizers"] = _check_names(settings["surface"], settings["optimizers"])
        race(**{**settings, "steps": 1})  # validates every value before any control moves
        _check_slider_ranges(settings["lr"], settings["steps"])
        with self.holding():
            for name, control in self.controls.items():
                control.value = settings[name]
            for name, box in self.checkboxes.items():
                box.value = name in settings["optimizers"]
        return self.redraw()
