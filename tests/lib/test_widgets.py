"""Tests of lmbook.widgets without a browser: the pure callbacks by value, the widgets through their controls.

Drawing must reuse one figure per widget (style rule 12) and change the rendered PNG when a control moves.
The last test executes a small notebook in a real kernel and checks that the widget images are stored in the
notebook's widget state, which is what the static HTML book shows.
"""

import warnings

import numpy as np
import pytest

from lmbook.activations import get_activation, relu, sigmoid, tanh
from lmbook.data import make_2d
from lmbook.mlp import MLP
from lmbook.plotting import decision_grid, figure
from lmbook.widgets import (
    WIDGET_DPI,
    WIDGET_SIZE,
    BoundaryResult,
    DecisionBoundaryTrainer,
    FigureImage,
    NeuronExplorer,
    flat_fraction,
    neuron_response,
    train_boundary,
)
from tests.lib.widget_helpers import artist_counts, execute_with_widget_state, png_size

# ----- callbacks --------------------------------------------------------------------------------------------


def test_neuron_response_one_input():
    x = np.array([-2.0, 0.0, 1.0, 3.0])
    z, a = neuron_response(x, 2.0, -1.0, "sigmoid")
    np.testing.assert_allclose(z, [-5.0, -1.0, 1.0, 5.0])
    np.testing.assert_allclose(a, 1.0 / (1.0 + np.exp(-z)))
    _, a_relu = neuron_response(x, 2.0, -1.0, get_activation("relu"))
    np.testing.assert_allclose(a_relu, [0.0, 0.0, 1.0, 5.0])


def test_neuron_response_several_inputs():
    x = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    w = np.array([0.5, -1.0])
    z, a = neuron_response(x, w, 0.25, "tanh")
    np.testing.assert_allclose(z, [1.0 * 0.5 - 2.0 + 0.25, 1.0 + 0.25, 1.5 - 0.5 + 0.25])
    np.testing.assert_allclose(a, np.tanh(z))
    assert z.shape == a.shape == (3,)


def test_neuron_response_rejects_mismatched_shapes_and_unknown_activation():
    with pytest.raises(ValueError, match="expected x"):
        neuron_response(np.zeros((3, 2)), np.zeros(3), 0.0, "tanh")
    with pytest.raises(ValueError, match="expected x"):
        neuron_response(np.zeros(3), np.zeros(2), 0.0, "tanh")
    with pytest.raises(ValueError, match="'tanh'"):
        neuron_response(np.zeros(3), 1.0, 0.0, "swish")


def test_flat_fraction():
    z = np.linspace(-3.0, 3.0, 600)
    assert flat_fraction(z, "relu") == pytest.approx(0.5)
    assert flat_fraction(z, "identity") == 0.0
    assert flat_fraction(np.zeros(10), "sigmoid") == 0.0
    assert flat_fraction(np.full(10, 6.0), "sigmoid") == 1.0
    # tanh'(z) = 1 - tanh(z)^2 falls below 0.1 where |z| > atanh(sqrt(0.9)), about 1.818.
    assert flat_fraction(z, "tanh") == pytest.approx(np.mean(np.abs(z) > np.arctanh(np.sqrt(0.9))))


def test_train_boundary_learns_xor_and_reports_consistent_numbers():
    r = train_boundary("xor", hidden=8, lr=0.5, activation="tanh", steps=300, seed=1, n=120, resolution=30)
    assert isinstance(r, BoundaryResult)
    assert r.sizes == (2, 8, 1) and r.activation == "tanh" and r.steps == 300
    assert len(r.losses) == 300 and r.final_loss == r.losses[-1]
    assert r.losses[-1] < 0.5 * r.losses[0]
    assert r.train_accuracy >= 0.95
    X, y = make_2d("xor", n=120, seed=1)
    np.testing.assert_array_equal(r.X, X)
    np.testing.assert_array_equal(r.y, y)
    xx, yy, points = decision_grid(X, resolution=30)
    np.testing.assert_array_equal(r.xx, xx)
    np.testing.assert_allclose(r.probs, r.model.predict_proba(points).reshape(30, 30))
    assert r.probs.min() >= 0.0 and r.probs.max() <= 1.0
    # The accuracy is the trained model's, on the training points.
    assert r.train_accuracy == pytest.approx(np.mean(r.model.predict(X) == y))


def test_train_boundary_is_deterministic_and_accepts_several_hidden_layers():
    a = train_boundary("moons", hidden=(6, 4), lr=0.3, activation="relu", steps=50, seed=3, resolution=10)
    b = train_boundary("moons", hidden=(6, 4), lr=0.3, activation="relu", steps=50, seed=3, resolution=10)
    assert a.sizes == (2, 6, 4, 1)
    assert a.losses == b.losses
    np.testing.assert_array_equal(a.probs, b.probs)
    # It trains the same network as the MLP API with the same seed would start from.
    start = MLP((2, 6, 4, 1), activation="relu", seed=3)
    assert a.losses[0] == pytest.approx(start.loss(a.X, a.y))


def test_a_network_without_a_nonlinearity_cannot_learn_xor():
    r = train_boundary("xor", hidden=16, lr=0.5, activation="identity", steps=300, resolution=10)
    assert r.train_accuracy < 0.8


def test_train_boundary_stops_quietly_when_the_loss_blows_up():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings reach the reader
        r = train_boundary("moons", hidden=(32, 32, 32), lr=10.0, activation="identity", steps=3000)
    assert r.diverged
    assert not np.isfinite(r.final_loss) and np.isfinite(r.losses[:-1]).all()
    assert len(r.losses) < 3000 and r.steps == 3000
    ok = train_boundary("moons", hidden=4, lr=0.1, activation="tanh", steps=20, resolution=10)
    assert not ok.diverged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "iris"}, "unknown data set 'iris'.*'moons'"),
        ({"activation": "swish"}, "unknown activation 'swish'.*'relu'"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": (4, 0)}, "hidden"),
        ({"lr": 0.0}, "learning rate"),
        ({"steps": 0}, "steps"),
    ],
)
def test_train_boundary_rejects_bad_settings(kwargs, message):
    settings = {"dataset": "moons", "hidden": 4, "lr": 0.1, "activation": "tanh", "steps": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_boundary(**settings)


# ----- FigureImage ------------------------------------------------------------------------------------------


def test_figure_image_renders_its_figure_into_the_image():
    view = FigureImage()
    assert view.image.value == b"" and view.renders == 0
    ax = view.figure.add_subplot()
    ax.plot([0, 1], [0, 1])
    elapsed = view.refresh()
    first = view.image.value
    assert elapsed >= 0.0 and view.renders == 1
    assert png_size(first) == (round(WIDGET_SIZE[0] * WIDGET_DPI), round(WIDGET_SIZE[1] * WIDGET_DPI))
    ax.plot([0, 1], [1, 0])
    view.refresh(relayout=True)
    assert view.image.value != first and view.renders == 2


def test_figure_image_accepts_a_given_figure():
    fig = figure(4, 3, dpi=50)
    view = FigureImage(fig)
    view.refresh()
    assert view.figure is fig
    assert png_size(view.image.value) == (200, 150)


# ----- NeuronExplorer ---------------------------------------------------------------------------------------


def test_neuron_explorer_starts_with_a_picture_and_redraws_the_same_figure():
    explorer = NeuronExplorer()
    fig, axes = explorer.figure, list(explorer.figure.axes)
    counts = [artist_counts(ax) for ax in axes]
    first = explorer.figure_image.image.value
    assert png_size(first)[0] > 100
    assert explorer.values == {"w": 1.0, "b": 0.0, "activation": "sigmoid"}

    elapsed = explorer.update(w=3.0, b=-1.0, activation="tanh")
    assert elapsed >= 0.0
    assert explorer.values == {"w": 3.0, "b": -1.0, "activation": "tanh"}
    assert explorer.figure is fig and explorer.figure.axes == axes
    assert [artist_counts(ax) for ax in axes] == counts  # redrawing adds no artists
    second = explorer.figure_image.image.value
    assert second != first

    # The plotted output is the callback's output for the new values.
    z, a = neuron_response(explorer.x, 3.0, -1.0, "tanh")
    np.testing.assert_allclose(explorer._a_line.get_ydata(), a)
    np.testing.assert_allclose(explorer._f_line.get_ydata(), tanh(explorer.z_grid))
    # The shaded band spans the pre-activations the inputs reach: z from -13 to 11, clipped to the axis.
    assert explorer._band.get_x() == pytest.approx(-explorer.Z_LIMIT)
    assert explorer._band.get_x() + explorer._band.get_width() == pytest.approx(explorer.Z_LIMIT)
    assert "-13.0" in explorer.status.value and "11.0" in explorer.status.value

    explorer.update(b=0.5)
    assert explorer.figure_image.image.value not in (first, second)


def test_neuron_explorer_redraws_once_per_update_and_when_a_slider_moves():
    explorer = NeuronExplorer(w=0.5, b=1.0, activation="relu")
    renders = explorer.figure_image.renders
    explorer.update(w=2.0, b=-2.0, activation="sigmoid")
    assert explorer.figure_image.renders == renders + 1
    before = explorer.figure_image.image.value
    explorer.w_slider.value = -1.5  # what dragging the slider in a browser does
    assert explorer.figure_image.renders == renders + 2
    assert explorer.figure_image.image.value != before
    np.testing.assert_allclose(explorer._a_line.get_ydata(), sigmoid(-1.5 * explorer.x - 2.0))
    explorer.activation_menu.value = "relu"
    np.testing.assert_allclose(explorer._a_line.get_ydata(), relu(-1.5 * explorer.x - 2.0))


def test_neuron_explorer_marks_where_z_is_zero():
    explorer = NeuronExplorer(w=2.0, b=-1.0)
    assert explorer._threshold_line.get_visible()
    np.testing.assert_allclose(explorer._threshold_line.get_xdata(), [0.5, 0.5])
    explorer.update(w=0.0)  # z = b everywhere: no crossing to mark
    assert not explorer._threshold_line.get_visible()
    explorer.update(w=0.1, b=2.0)  # crossing at x = -20, outside the plot
    assert not explorer._threshold_line.get_visible()


def test_neuron_explorer_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        NeuronExplorer(activation="softmax")
    explorer = NeuronExplorer()
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        explorer.update(w=2.0, activation="softmax")
    assert explorer.values["w"] == 1.0  # a rejected update changes nothing


def test_neuron_explorer_displays_as_its_widget():
    explorer = NeuronExplorer()
    bundle = explorer._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id
    assert explorer.figure_image.image in explorer.widget.children
    assert repr(explorer) == "NeuronExplorer(w=1.0, b=0.0, activation='sigmoid')"


# ----- DecisionBoundaryTrainer ------------------------------------------------------------------------------


def test_trainer_is_trained_at_construction():
    trainer = DecisionBoundaryTrainer()
    r = trainer.result
    assert r.dataset == "moons" and r.sizes == (2, 16, 16, 1) and r.steps == 500
    assert r.train_accuracy >= 0.9
    assert f"train accuracy <b>{r.train_accuracy:.2f}</b> after 500 steps" in trainer.status.value
    assert set(trainer.timings) == {"train_s", "redraw_s"}
    assert png_size(trainer.figure_image.image.value)[0] > 100
    # The loss panel shows every step's loss.
    np.testing.assert_allclose(trainer._loss_line.get_ydata(), r.losses)


def test_trainer_update_retrains_and_redraws_the_same_figure():
    trainer = DecisionBoundaryTrainer(steps=100)
    fig, axes = trainer.figure, list(trainer.figure.axes)
    first_png, first_result = trainer.figure_image.image.value, trainer.result
    counts = artist_counts(trainer.ax_boundary)

    elapsed = trainer.update(dataset="circles", hidden=4, layers=1, lr=1.0, activation="relu", steps=150)
    r = trainer.result
    assert elapsed > 0.0 and r is not first_result
    assert (r.dataset, r.sizes, r.activation, r.lr, r.steps) == ("circles", (2, 4, 1), "relu", 1.0, 150)
    assert trainer.figure is fig and trainer.figure.axes == axes
    assert artist_counts(trainer.ax_boundary) == counts  # the old boundary was replaced, not drawn over
    assert trainer.figure_image.image.value != first_png
    assert "circles" in trainer.ax_boundary.get_title()
    assert len(trainer._loss_line.get_xdata()) == 150

    redraw_s = trainer.redraw()
    assert redraw_s >= 0.0 and trainer.result is r and trainer.figure is fig


def test_trainer_reports_a_diverged_training():
    trainer = DecisionBoundaryTrainer(steps=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.update(activation="identity", hidden=32, layers=3, lr=10.0, steps=3000)
    assert trainer.result.diverged
    assert "diverged" in trainer.status.value and "learning rate" in trainer.status.value
    assert "diverged" in trainer.ax_boundary.get_title()
    assert png_size(trainer.figure_image.image.value)[0] > 100
    trainer.update(activation="tanh", hidden=8, layers=1, lr=0.3, steps=100)
    assert "train accuracy" in trainer.status.value and "diverged" not in trainer.ax_boundary.get_title()


def test_trainer_waits_for_the_button_when_a_control_changes():
    trainer = DecisionBoundaryTrainer(steps=50)
    result, renders = trainer.result, trainer.figure_image.renders
    trainer.controls["dataset"].value = "spirals"
    assert trainer.result is result and trainer.figure_image.renders == renders
    assert "press <b>Train</b>" in trainer.status.value
    trainer.train_button.click()
    assert trainer.result.dataset == "spirals"
    assert trainer.figure_image.renders == renders + 1
    assert "train accuracy" in trainer.status.value


def test_trainer_learning_rate_is_on_a_log_slider():
    trainer = DecisionBoundaryTrainer(steps=50)
    lr = trainer.controls["lr"]
    assert type(lr).__name__ == "FloatLogSlider"
    assert lr.base == 10 and lr.min <= -3 and lr.max >= 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "mnist"}, "unknown data set 'mnist'"),
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
    ],
)
def test_trainer_rejects_unknown_names(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecisionBoundaryTrainer(**kwargs)


def test_trainer_update_rejects_bad_settings_without_changing_anything():
    trainer = DecisionBoundaryTrainer(steps=50)
    before = dict(trainer.values)
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        trainer.update(dataset="mnist", steps=100)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        trainer.update(activation="gelu")
    with pytest.raises(ValueError, match="unknown setting"):
        trainer.update(epochs=3)
    assert trainer.values == before


def test_trainer_displays_as_its_widget():
    trainer = DecisionBoundaryTrainer(steps=50)
    view = trainer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == trainer.widget.model_id
    assert repr(trainer).startswith("DecisionBoundaryTrainer(dataset='moons', activation='tanh'")


# ----- the static page --------------------------------------------------------------------------------------


def test_executed_notebook_stores_the_widget_images(monkeypatch):
    """nbclient with store_widget_state keeps each Image's PNG: what the HTML book shows without a kernel."""
    nb, state, images = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets import NeuronExplorer\nNeuronExplorer(w=2.0)",
        "from lmbook.widgets import DecisionBoundaryTrainer\nDecisionBoundaryTrainer()",
    )
    assert len(images) == 2
    for model in images:
        (buffer,) = model["buffers"]
        assert buffer["path"] == ["value"] and buffer["encoding"] == "base64"
        assert len(buffer["data"]) > 10_000  # a real picture, not an empty image
    shown = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in nb.cells for o in c.outputs]
    assert all(model_id in state for model_id in shown)
