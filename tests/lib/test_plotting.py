"""Tests of lmbook.plotting: grids, decision-boundary plots and activation plots, drawn without pyplot."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from lmbook.activations import ACTIVATIONS, get_activation, sigmoid
from lmbook.plotting import (
    CLASS_COLOURS,
    decision_grid,
    draw_probability_map,
    figure,
    plot_activation,
    plot_decision_boundary,
)
from lmbook.testing import ShapeError


def points_and_labels(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n, 2))
    y = (X[:, 0] > 0).astype(int)
    return X, y


def test_import_leaves_matplotlib_global_state_alone():
    code = (
        "import sys, matplotlib\n"
        # Reading rcParams['backend'] would itself import pyplot (to resolve the default), so skip it.
        "def settings():\n"
        "    return {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != 'backend'}\n"
        "before = settings()\n"
        "import lmbook.plotting, lmbook.widgets\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert settings() == before, 'rcParams changed'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_figure_is_a_plain_figure_of_the_requested_size():
    fig = figure(5, 2.5, dpi=80)
    assert isinstance(fig, Figure)
    assert tuple(fig.get_size_inches()) == (5.0, 2.5)
    fig.canvas.draw()  # drawable without pyplot
    assert np.asarray(fig.canvas.buffer_rgba()).shape == (200, 400, 4)


def test_decision_grid_covers_the_data_with_a_margin():
    X = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]])
    xx, yy, points = decision_grid(X, resolution=5, margin=0.5)
    assert xx.shape == yy.shape == (5, 5)
    assert points.shape == (25, 2)
    np.testing.assert_allclose([xx.min(), xx.max(), yy.min(), yy.max()], [-0.5, 2.5, -1.5, 1.5])
    # Rows of points line up with xx/yy, so f(points).reshape(xx.shape) is the map of f over the grid.
    np.testing.assert_array_equal(points[:, 0].reshape(xx.shape), xx)
    np.testing.assert_array_equal(points[:, 1].reshape(yy.shape), yy)
    np.testing.assert_allclose(xx[0], np.linspace(-0.5, 2.5, 5))
    np.testing.assert_allclose(yy[:, 0], np.linspace(-1.5, 1.5, 5))


def test_decision_grid_rejects_bad_input():
    with pytest.raises(ShapeError, match="X"):
        decision_grid(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="resolution"):
        decision_grid(np.zeros((4, 2)), resolution=1)
    with pytest.raises(ValueError, match="no points"):
        decision_grid(np.zeros((0, 2)))


def test_plot_decision_boundary_draws_the_half_probability_line_where_the_model_puts_it():
    X, y = points_and_labels()
    fig = figure()
    ax = fig.add_subplot()
    # A model that is sure of class 1 right of x1 = 0.3 and of class 0 left of it.
    artists = plot_decision_boundary(
        ax, lambda P: sigmoid(8.0 * (P[:, 0] - 0.3)), X, y, resolution=60, title="threshold"
    )
    assert set(artists) == {"contourf", "contour", "scatter", "legend"}
    vertices = np.concatenate([p.vertices for p in artists["contour"].get_paths()])
    np.testing.assert_allclose(vertices[:, 0], 0.3, atol=0.02)
    assert vertices[:, 1].min() < -1.5 and vertices[:, 1].max() > 1.5  # the line crosses the whole plot
    class0, class1 = artists["scatter"]
    assert len(class0.get_offsets()) == int((y == 0).sum())
    assert len(class1.get_offsets()) == int((y == 1).sum())
    np.testing.assert_allclose(class0.get_facecolor()[0], to_rgba(CLASS_COLOURS[0]))
    labels = [t.get_text() for t in artists["legend"].get_texts()]
    assert labels == ["class 0", "class 1", "boundary, p = 0.5"]
    assert ax.get_title() == "threshold"
    assert ax.get_xlabel() and ax.get_ylabel()


def test_plot_decision_boundary_accepts_column_probabilities():
    X, y = points_and_labels()
    ax = figure().add_subplot()
    artists = plot_decision_boundary(ax, lambda P: sigmoid(P[:, :1]), X, y, resolution=20)
    assert artists["contour"] is not None


def test_one_class_everywhere_draws_no_boundary_and_no_warning():
    X, y = points_and_labels()
    ax = figure().add_subplot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        artists = plot_decision_boundary(ax, lambda P: np.full(len(P), 0.9), X, y, resolution=20)
    assert artists["contour"] is None


def test_plot_decision_boundary_rejects_a_wrong_number_of_probabilities():
    X, y = points_and_labels()
    ax = figure().add_subplot()
    with pytest.raises(ValueError, match="one each"):
        plot_decision_boundary(ax, lambda P: np.zeros(len(P) - 1), X, y, resolution=10)


def test_draw_probability_map_checks_shapes():
    X, y = points_and_labels()
    xx, yy, _ = decision_grid(X, resolution=10)
    ax = figure().add_subplot()
    with pytest.raises(ShapeError, match="probs"):
        draw_probability_map(ax, xx, yy, np.zeros((10, 9)), X, y)
    with pytest.raises(ShapeError, match="X"):
        draw_probability_map(ax, xx, yy, np.zeros((10, 10)), X, y[:-1])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_plot_activation_draws_the_function_and_its_derivative(name):
    ax = figure().add_subplot()
    z = np.linspace(-3.0, 3.0, 13)
    lines = plot_activation(ax, name, z)
    act = get_activation(name)
    np.testing.assert_allclose(lines["f"].get_xdata(), z)
    np.testing.assert_allclose(lines["f"].get_ydata(), act.f(z))
    np.testing.assert_allclose(lines["df"].get_ydata(), act.df(z))
    assert name in lines["f"].get_label()
    assert ax.get_legend() is not None


def test_plot_activation_default_range_and_bad_name():
    ax = figure().add_subplot()
    lines = plot_activation(ax, get_activation("tanh"))
    np.testing.assert_allclose(lines["f"].get_xdata(), np.linspace(-5.0, 5.0, 201))
    with pytest.raises(ValueError, match="sigmoid"):
        plot_activation(ax, "softsign")
