"""Plots that recur through the book: decision boundaries of a classifier and activation functions.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. Figures are made with
``matplotlib.figure.Figure`` directly rather than through ``pyplot``, so that nothing here touches
matplotlib's global state: no figure is left open behind the reader's back, and a widget can keep redrawing
one figure without piling up new ones. Nothing is styled at import time.

Colours: class 0 is blue and class 1 is red, in the points and in the probability map alike; the two classes
also use different marker shapes (circle and triangle) so that the plots still read in grey scale or for a
reader who does not tell red from blue.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lmbook.activations import Activation, get_activation
from lmbook.testing import check_shape

CLASS_COLOURS = ("#1f5fa8", "#c8312b")
CLASS_MARKERS = ("o", "^")
# A diverging map whose ends match CLASS_COLOURS: blue where p(class 1) is near 0, red where it is near 1.
PROBABILITY_CMAP = "RdBu_r"
PROBABILITY_LEVELS = np.linspace(0.0, 1.0, 11)


def figure(width: float = 6, height: float = 4, dpi: float = 100, layout: str | None = "constrained") -> Figure:
    """A new matplotlib figure of ``width`` x ``height`` inches, created without ``pyplot``.

    The figure gets an Agg canvas, so it can be drawn and saved straight away; in a notebook,
    ``display(fig)`` shows it. ``layout="constrained"`` keeps labels and legends from overlapping.
    """
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def decision_grid(
    X: np.ndarray, resolution: int = 100, margin: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular grid of points covering the data, for colouring a classifier's output over the plane.

    Args:
        X: the data, shape ``(B, 2)``; the grid spans its bounding box plus ``margin`` on every side.
        resolution: number of grid points along each axis.
        margin: extra room around the data, in the data's units.

    Returns:
        xx, yy: grid coordinates, each of shape ``(resolution, resolution)`` (as from ``np.meshgrid``).
        points: the same grid as a batch, shape ``(resolution**2, 2)``, ready to feed to a model; its rows run
            along ``xx`` first, so ``f(points).reshape(xx.shape)`` lines up with ``xx`` and ``yy``.
    """
    X = np.asarray(X, dtype=np.float64)
    check_shape(X, (None, 2), "X")
    if len(X) == 0:
        raise ValueError("X has no points, so there is nothing to put a grid around")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    low = X.min(axis=0) - margin
    high = X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    points = np.column_stack([xx.ravel(), yy.ravel()])
    return xx, yy, points


def draw_probability_map(
    ax,
    xx: np.ndarray,
    yy: np.ndarray,
    probs: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    title: str | None = None,
    legend: bool = True,
) -> dict:
    """Draw a probability map that is already computed on a grid, with the data on top.

    This is the drawing half of :func:`plot_decision_boundary`, for callers that evaluated the model on the
    grid themselves (for example :func:`lmbook.widgets.train_boundary`).

    Args:
        ax: the matplotlib Axes to draw into.
        xx, yy: grid coordinates, shape ``(R, R)`` each, from :func:`decision_grid`.
        probs: probability of class 1 at each grid point, shape ``(R, R)``.
        X: data points, shape ``(B, 2)``. y: their labels in {0, 1}, shape ``(B,)``.
        title: optional axes title.
        legend: whether to add a legend (classes and the boundary line).

    Returns:
        A dict of the artists: ``"contourf"`` (the filled probability map), ``"contour"`` (the ``p = 0.5``
        line, or ``None`` when the model predicts one class everywhere), ``"scatter"`` (one collection per
        class) and ``"legend"`` (or ``None``).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    check_shape(X, ("B", 2), "X", {"B": len(y)})
    check_shape(probs, xx.shape, "probs")
    filled = ax.contourf(
        xx, yy, probs, levels=PROBABILITY_LEVELS, cmap=PROBABILITY_CMAP, vmin=0.0, vmax=1.0, alpha=0.35
    )
    # A contour at 0.5 only exists if the probability crosses 0.5 somewhere; asking for it otherwise warns.
    line = None
    if probs.min() < 0.5 < probs.max():
        line = ax.contour(xx, yy, probs, levels=[0.5], colors="black", linewidths=1.6)
    scatter = []
    for label in (0, 1):
        mask = y == label
        scatter.append(
            ax.scatter(
                X[mask, 0],
                X[mask, 1],
                s=22,
                c=CLASS_COLOURS[label],
                marker=CLASS_MARKERS[label],
                edgecolors="white",
                linewidths=0.6,
                label=f"class {label}",
                zorder=3,
            )
        )
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    artist_legend = None
    if legend:
        boundary = Line2D([], [], color="black", linewidth=1.6, label="boundary, p = 0.5")
        artist_legend = ax.legend(
            handles=[*scatter, boundary],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=3,
            fontsize="small",
            frameon=False,
            handletextpad=0.3,
            columnspacing=1.0,
        )
    return {"contourf": filled, "contour": line, "scatter": scatter, "legend": artist_legend}


def plot_decision_boundary(
    ax,
    predict_proba: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    resolution: int = 100,
    title: str | None = None,
) -> dict:
    """Colour the plane by a classifier's probability of class 1; draw the data and the ``p = 0.5`` boundary.

    Args:
        ax: the matplotlib Axes to draw into.
        predict_proba: maps a batch of points, shape ``(N, 2)``, to probabilities of class 1, shape ``(N,)``
            (or ``(N, 1)``), e.g. ``model.predict_proba``.
        X: data points, shape ``(B, 2)``. y: their labels in {0, 1}, shape ``(B,)``.
        resolution: grid points along each axis; the model is evaluated ``resolution**2`` times.
        title: optional axes title.

    Returns:
        The artists, as described in :func:`draw_probability_map`.
    """
    xx, yy, points = decision_grid(X, resolution=resolution)
    probs = np.asarray(predict_proba(points), dtype=np.float64)
    if probs.size != len(points):
        raise ValueError(f"predict_proba returned {probs.size} values for {len(points)} points; expected one each")
    return draw_probability_map(ax, xx, yy, probs.reshape(xx.shape), X, y, title=title)


def plot_activation(ax, activation: str | Activation, z: np.ndarray | None = None) -> dict:
    """Draw an activation function ``f(z)`` and its derivative ``f'(z)`` on one Axes.

    Args:
        ax: the matplotlib Axes to draw into.
        activation: a name such as ``"tanh"`` or an :class:`~lmbook.activations.Activation`.
        z: pre-activation values to draw over, shape ``(N,)``; ``None`` means ``np.linspace(-5, 5, 201)``.

    Returns:
        ``{"f": line of f, "df": line of f'}``.
    """
    act = get_activation(activation)
    z = np.linspace(-5.0, 5.0, 201) if z is None else np.asarray(z, dtype=np.float64)
    check_shape(z, (None,), "z")
    ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
    (f_line,) = ax.plot(z, act.f(z), color="#1f5fa8", linewidth=2.2, label=f"$f(z)$ = {act.name}")
    (df_line,) = ax.plot(z, act.df(z), color="#e08214", linewidth=1.8, linestyle="--", label="$f'(z)$")
    ax.set_xlabel("pre-activation $z$")
    ax.set_title(act.name)
    ax.legend(loc="upper left", fontsize="small")
    return {"f": f_line, "df": df_line}
