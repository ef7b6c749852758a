"""Tests of chapter 3's widgets without a browser: the callbacks as pure functions, the widgets through .update().

Update latency is not asserted here (it depends on the machine); the benchmarks measure it.
"""

import warnings

import numpy as np
import pytest

from lmbook.regression import gradient_descent, least_squares, make_linear_data, mse_loss
from lmbook.surfaces import SURFACES, trajectory
from lmbook.widgets import (
    RACE_OPTIMIZERS,
    LearningRateExplorer,
    OptimizerRace,
    experiment_data,
    gap_to_minimum,
    lr_experiment,
    lr_verdict,
    race,
)
from tests.lib.widget_helpers import artist_counts, execute_with_widget_state, png_size

# ----- the race callback ------------------------------------------------------------------------------------


def test_race_runs_each_chosen_optimizer_with_the_shared_settings():
    paths = race("saddle", ("adam", "sgd"), lr=0.05, momentum=0.7, steps=40)
    assert list(paths) == ["adam", "sgd"]
    for name, path in paths.items():
        assert path.shape == (41, 2)
        np.testing.assert_array_equal(path, trajectory("saddle", name, 0.05, 40, momentum=0.7))
    momentum = race("saddle", ("momentum",), lr=0.05, momentum=0.7, steps=40)["momentum"]
    np.testing.assert_array_equal(momentum, trajectory("saddle", "momentum", 0.05, 40, momentum=0.7))
    assert race("rosenbrock", (), lr=0.01, momentum=0.9, steps=5) == {}


def test_race_reports_divergence_as_a_short_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = race("ill-conditioned quadratic", RACE_OPTIMIZERS, lr=0.5, momentum=0.9, steps=100)
    assert len(paths["sgd"]) < 101 and len(paths["momentum"]) < 101  # 0.5 * 20 > 2: SGD overshoots
    assert len(paths["rmsprop"]) == len(paths["adam"]) == 101  # their steps are about lr long: no divergence


def test_gap_to_minimum_is_zero_at_the_minimum_and_positive_elsewhere():
    for name, s in SURFACES.items():
        gap = gap_to_minimum(name, np.array([s.minimum, s.start]))
        assert gap[0] == 0.0 and gap[1] > 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"surface": "beale"}, "unknown surface 'beale'"),
        ({"optimizers": ("sgd", "lbfgs")}, r"unknown optimiser\(s\) \['lbfgs'\]"),
        ({"lr": 0.0}, "learning rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"steps": 0}, "steps"),
    ],
)
def test_race_rejects_bad_settings(kwargs, message):
    settings = {"surface": "saddle", "optimizers": ("sgd",), "lr": 0.1, "momentum": 0.9, "steps": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        race(**settings)


# ----- the learning-rate callback ---------------------------------------------------------------------------


def test_lr_experiment_is_gradient_descent_on_the_experiment_data():
    X, y = experiment_data(seed=2)
    assert X.shape == (40, 1) and y.shape == (40,)
    np.testing.assert_array_equal(X, make_linear_data(n=40, w=(1.5,), b=1.0, noise=0.5, seed=2)[0])
    result = lr_experiment(0.1, steps=30, seed=2)
    reference = gradient_descent(X, y, lr=0.1, steps=30)
    np.testing.assert_array_equal(result.losses, reference.losses)
    assert result.losses.shape == (30,)


@pytest.mark.parametrize(
    ("lr", "verdict"),
    [(0.001, "too small"), (0.01, "too small"), (0.1, "good"), (0.7, "good"), (1.05, "too large (diverges)")],
)
def test_lr_verdict_comes_from_the_losses(lr, verdict):
    X, y = experiment_data()
    best = mse_loss(X, y, *least_squares(X, y))
    assert lr_verdict(lr_experiment(lr, 50), best) == verdict


def test_lr_verdict_tolerance():
    X, y = experiment_data()
    best = mse_loss(X, y, *least_squares(X, y))
    result = lr_experiment(0.03, 50)  # about 1.6% of the way left after 50 steps
    assert lr_verdict(result, best, tol=0.01) == "too small"
    assert lr_verdict(result, best, tol=0.05) == "good"


# ----- OptimizerRace ----------------------------------------------------------------------------------------


def test_race_widget_starts_with_a_picture_and_redraws_the_same_figure():
    widget = OptimizerRace()
    fig, axes = widget.figure, list(widget.figure.axes)
    first = widget.figure_image.image.value
    assert png_size(first)[0] > 100
    assert widget.values == {
        "surface": "ill-conditioned quadratic",
        "lr": pytest.approx(0.04),
        "momentum": 0.9,
        "steps": 100,
        "optimizers": RACE_OPTIMIZERS,
    }
    assert set(widget.paths) == set(RACE_OPTIMIZERS)
    counts = [artist_counts(ax) for ax in axes]

    elapsed = widget.update(lr=0.01, momentum=0.5, steps=200, optimizers=("sgd", "adam"))
    assert elapsed >= 0.0
    assert widget.figure is fig and widget.figure.axes == axes
    assert [artist_counts(ax) for ax in axes] == counts  # redrawing adds no artists
    assert widget.figure_image.image.value != first
    assert list(widget.paths) == ["sgd", "adam"]
    # The drawn path is the callback's path for the new values.
    expected = race("ill-conditioned quadratic", ("sgd", "adam"), 0.01, 0.5, 200)
    np.testing.assert_array_equal(widget._path_lines["adam"].get_xydata(), expected["adam"])
    np.testing.assert_allclose(
        widget._loss_lines["sgd"].get_ydata(), gap_to_minimum("ill-conditioned quadratic", expected["sgd"])
    )
    assert not widget._path_lines["rmsprop"].get_visible()
    assert "SGD" in widget.status.value and "after 200 steps" in widget.status.value


def test_race_widget_changes_surface_without_piling_up_contours():
    widget = OptimizerRace()
    contours = len(widget.ax_surface.collections)
    widget.update(surface="rosenbrock", lr=0.001)
    widget.update(surface="saddle", lr=0.05)
    widget.update(surface="rosenbrock", lr=0.001)
    assert len(widget.ax_surface.collections) == contours
    assert widget.ax_surface.get_xlim() == SURFACES["rosenbrock"].xlim
    assert "100" in widget.ax_surface.get_title()  # the formula of the Rosenbrock function
    np.testing.assert_array_equal(widget._min_marker.get_xydata(), [SURFACES["rosenbrock"].minimum])


def test_race_widget_redraws_once_per_update_and_when_a_control_moves():
    widget = OptimizerRace(steps=50)
    renders = widget.figure_image.renders
    widget.update(lr=0.02, momentum=0.8)
    assert widget.figure_image.renders == renders + 1
    before = widget.figure_image.image.value
    widget.controls["lr"].value = 0.005  # what dragging the slider in a browser does
    assert widget.figure_image.renders == renders + 2 and widget.figure_image.image.value != before
    widget.checkboxes["adam"].value = False
    assert "adam" not in widget.paths and widget.figure_image.renders == renders + 3


def test_race_widget_reports_divergence():
    widget = OptimizerRace()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        widget.update(lr=0.5)
    assert "<b>diverged</b>" in widget.status.value
    assert widget._end_markers["sgd"].get_marker() == "X"
    assert widget._end_markers["adam"].get_marker() == "o"
    widget.update(optimizers=())
    assert "Tick at least one optimiser" in widget.status.value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"surface": "beale"}, "unknown surface 'beale'"),
        ({"optimizers": ("nadam",)}, "unknown optimiser"),
        ({"lr": 5.0}, "learning rate"),
        ({"lr": -1.0}, "learning rate"),
        ({"momentum": 1.5}, "momentum"),
        ({"steps": 5000}, "steps"),
        ({"epochs": 3}, "unknown setting"),
    ],
)
def test_race_widget_rejects_bad_values_without_changing_anything(kwargs, message):
    widget = OptimizerRace(steps=20)
    before, renders = dict(widget.values), widget.figure_image.renders
    with pytest.raises(ValueError, match=message):
        widget.update(**kwargs)
    assert widget.values == before and widget.figure_image.renders == renders
    if "epochs" not in kwargs:
        with pytest.raises(ValueError, match=message):
            OptimizerRace(**{"steps": 20, **kwargs})


def test_race_widget_displays_as_its_widget():
    widget = OptimizerRace(steps=20)
    view = widget._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == widget.widget.model_id
    assert widget.figure_image.image in widget.widget.children
    assert repr(widget).startswith("OptimizerRace(surface='ill-conditioned quadratic', lr=0.04")
    assert type(widget.controls["lr"]).__name__ == "FloatLogSlider"


# ----- LearningRateExplorer ---------------------------------------------------------------------------------


def test_explorer_starts_with_a_picture_and_a_verdict():
    explorer = LearningRateExplorer()
    assert png_size(explorer.figure_image.image.value)[0] > 100
    assert explorer.values == {"lr": pytest.approx(0.01), "steps": 50}
    assert explorer.verdict == "too small" and "<b>too small</b>" in explorer.status.value
    X, y = experiment_data()
    assert explorer.best_loss == pytest.approx(mse_loss(X, y, *least_squares(X, y)))
    # The loss panel shows the starting loss and the loss after every step.
    np.testing.assert_allclose(
        explorer._loss_line.get_ydata(), np.r_[explorer.result.initial_loss, explorer.result.losses]
    )
    # The darkest line is the model after the last step.
    w, b = explorer.result.w[0], explorer.result.b
    np.testing.assert_allclose(explorer._fit_lines[-1].get_ydata(), w * explorer._line_x + b)


@pytest.mark.parametrize(("lr", "word"), [(0.002, "too small"), (0.2, "good"), (1.5, "too large (diverges)")])
def test_explorer_status_follows_the_numbers(lr, word):
    explorer = LearningRateExplorer()
    fig, axes = explorer.figure, list(explorer.figure.axes)
    counts = [artist_counts(ax) for ax in axes]
    first = explorer.figure_image.image.value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        elapsed = explorer.update(lr=lr)
    assert elapsed >= 0.0 and explorer.verdict == word
    assert f"<b>{word}</b>" in explorer.status.value
    assert explorer.figure is fig and [artist_counts(ax) for ax in axes] == counts
    assert explorer.figure_image.image.value != first
    assert explorer.result.losses.shape == (50,)


def test_explorer_mentions_zig_zags_for_a_large_but_converging_rate():
    explorer = LearningRateExplorer(lr=0.8)
    assert explorer.verdict == "good" and "zig-zag" in explorer.status.value
    explorer.update(lr=0.1)
    assert explorer.verdict == "good" and "zig-zag" not in explorer.status.value


def test_explorer_redraws_when_a_slider_moves():
    explorer = LearningRateExplorer()
    renders = explorer.figure_image.renders
    explorer.steps_slider.value = 120
    assert explorer.figure_image.renders == renders + 1
    assert explorer.result.losses.shape == (120,) and explorer.ax_loss.get_xlim() == (0.0, 120.0)
    explorer.lr_slider.value = 0.3
    assert explorer.figure_image.renders == renders + 2 and explorer.verdict == "good"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lr": 0.0}, "learning rate"), ({"lr": 10.0}, "learning rate"), ({"steps": 1000}, "steps")],
)
def test_explorer_rejects_values_outside_its_sliders(kwargs, message):
    explorer = LearningRateExplorer()
    before, renders = dict(explorer.values), explorer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        explorer.update(**kwargs)
    assert explorer.values == before and explorer.figure_image.renders == renders
    with pytest.raises(ValueError, match=message):
        LearningRateExplorer(**kwargs)


def test_explorer_displays_as_its_widget():
    explorer = LearningRateExplorer()
    view = explorer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id
    assert explorer.figure_image.image in explorer.widget.children
    assert repr(explorer) == "LearningRateExplorer(lr=0.01, steps=50)"
    assert type(explorer.lr_slider).__name__ == "FloatLogSlider"


# ----- the static page --------------------------------------------------------------------------------------


def test_executed_notebook_stores_both_widget_images(monkeypatch):
    """With store_widget_state each widget's PNG is kept in the notebook: what the HTML book shows."""
    _, _, images = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets import OptimizerRace\nOptimizerRace()",
        "from lmbook.widgets import LearningRateExplorer\nLearningRateExplorer()",
    )
    assert len(images) == 2
    for model in images:
        (buffer,) = model["buffers"]
        assert len(buffer["data"]) > 10_000  # a real picture, not an empty image
