"""Tests of chapter 4's widgets without a browser: the callbacks by value, the widgets through their controls.

As in test_widgets.py: each widget keeps one figure and changes what it shows, renders a picture as soon as it
is built, and redraws once per update. The blitting FigureImage they use must give the same picture as a full
draw. The last test executes a small notebook in a real kernel and checks that the images reach the widget state.
"""

import io

import numpy as np
import PIL.Image
import pytest

from lmbook.metrics import roc_auc, roc_curve, threshold_metrics
from lmbook.plotting import figure
from lmbook.regularisation import degree_sweep, polynomial_experiment
from lmbook.widgets import (
    FigureImage,
    OverfittingExplorer,
    OverfittingResult,
    ThresholdExplorer,
    overfitting_curves,
)
from lmbook.widgets.blitting import BlitFigureImage
from lmbook.widgets.overfitting import L2_OPTIONS, MAX_DEGREE
from tests.lib.widget_helpers import artist_counts, execute_with_widget_state


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(png))).astype(int)


def classifier_scores(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    logits = 2.0 * (2 * y - 1) + rng.normal(0, 1.5, n)
    return y, 1 / (1 + np.exp(-logits))


# ----- BlitFigureImage ----------------------------------------------------------------------------------------


def test_blitting_gives_the_same_picture_as_a_full_draw():
    fig = figure(4, 3, dpi=50, layout=None)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.5")
    (moving,) = ax.plot([0, 1], [1, 0], color="red", zorder=5)
    title = ax.set_title("start")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    view = BlitFigureImage(fig)
    view.set_dynamic([moving, title])
    view.refresh()
    np.testing.assert_array_equal(pixels(view.image.value), pixels(FigureImage(fig).to_png()))
    # After moving the dynamic artists nothing of their old state is left behind.
    moving.set_data([0, 1], [0.2, 0.8])
    title.set_text("moved")
    view.refresh()
    np.testing.assert_array_equal(pixels(view.image.value), pixels(FigureImage(fig).to_png()))
    assert view.full_draws == 1 and view.renders == 2
    # A hidden dynamic artist is not drawn, and it comes back when shown again.
    moving.set_visible(False)
    view.refresh()
    np.testing.assert_array_equal(pixels(view.image.value), pixels(FigureImage(fig).to_png()))
    moving.set_visible(True)


def test_blitting_redraws_the_background_after_invalidate():
    fig = figure(4, 3, dpi=50, layout=None)
    ax = fig.add_subplot()
    (static,) = ax.plot([0, 1], [0, 1])
    view = BlitFigureImage(fig)
    view.refresh()
    static.set_color("green")  # not dynamic: invisible until the background is redrawn
    view.refresh()
    assert view.full_draws == 1
    np.testing.assert_raises(AssertionError, np.testing.assert_array_equal, pixels(view.image.value),
                             pixels(FigureImage(fig).to_png()))  # fmt: skip
    view.invalidate()
    view.refresh()
    assert view.full_draws == 2
    np.testing.assert_array_equal(pixels(view.image.value), pixels(FigureImage(fig).to_png()))


# ----- overfitting_curves and OverfittingExplorer -------------------------------------------------------------


def test_overfitting_curves_agree_with_the_experiment():
    r = overfitting_curves(4, 15, l2=1e-4, noise=0.2, seed=1)
    assert isinstance(r, OverfittingResult)
    np.testing.assert_array_equal(r.degrees, np.arange(MAX_DEGREE + 1))
    fit = polynomial_experiment(4, 15, noise=0.2, seed=1, l2=1e-4)
    np.testing.assert_allclose(r.fit.coeffs, fit.coeffs)
    train, val = degree_sweep(range(MAX_DEGREE + 1), 15, noise=0.2, seed=1, l2=1e-4)
    np.testing.assert_allclose(r.train_mse, train)
    np.testing.assert_allclose(r.val_mse, val)
    assert r.val_mse[4] == pytest.approx(r.fit.val_mse)
    assert r.best_degree == int(np.argmin(val))
    with pytest.raises(ValueError, match="degree"):
        overfitting_curves(MAX_DEGREE + 1, 10)


def test_overfitting_explorer_starts_with_a_picture_of_the_default_fit():
    explorer = OverfittingExplorer()
    assert explorer.values == {"degree": 3, "n_train": 12, "l2": 0.0}
    assert explorer.figure_image.renders == 1 and len(explorer.figure_image.image.value) > 10_000
    r = explorer.result
    np.testing.assert_allclose(explorer._train_points.get_xdata(), r.fit.x_train)
    np.testing.assert_allclose(explorer._fit_line.get_xdata(), r.fit.grid_x)
    np.testing.assert_allclose(explorer._val_curve.get_ydata(), np.clip(r.val_mse, 1e-3, 1e4))
    assert "degree 3" in explorer.ax_fit.get_title()
    assert f"degree <b>{r.best_degree}</b>" in explorer.status.value


def test_overfitting_explorer_update_redraws_the_same_figure():
    explorer = OverfittingExplorer()
    fig, axes = explorer.figure, list(explorer.figure.axes)
    counts = [artist_counts(ax) for ax in axes]
    first = explorer.figure_image.image.value
    elapsed = explorer.update(degree=9, n_train=10, l2=0.0)
    assert elapsed > 0.0 and explorer.figure_image.renders == 2
    assert explorer.figure is fig and explorer.figure.axes == axes
    assert [artist_counts(ax) for ax in axes] == counts  # redrawing adds no artists
    assert explorer.figure_image.image.value != first
    assert explorer.figure_image.full_draws == 1  # the static parts were drawn once
    r = explorer.result
    assert (r.fit.degree, r.fit.n_train, r.fit.l2) == (9, 10, 0.0)
    assert len(explorer._train_points.get_xdata()) == 10
    np.testing.assert_array_equal(explorer._degree_line.get_xdata(), [9, 9])
    # Ten coefficients through ten points: the status says so, and the validation error is far above the best.
    assert "passes through every training point" in explorer.status.value
    assert r.fit.val_mse > 10 * r.val_mse[r.best_degree]
    # An L2 penalty brings the high-degree validation error down.
    explorer.update(l2=1e-2)
    assert explorer.result.fit.val_mse < r.fit.val_mse / 10
    assert "L2 = 1e-02" in explorer.ax_fit.get_title()


def test_overfitting_explorer_redraws_once_per_update_and_when_a_slider_moves():
    explorer = OverfittingExplorer()
    renders = explorer.figure_image.renders
    explorer.update(degree=5, n_train=40, l2=1e-3)
    assert explorer.figure_image.renders == renders + 1
    before = explorer.figure_image.image.value
    explorer.controls["degree"].value = 1  # what dragging the slider in a browser does
    assert explorer.figure_image.renders == renders + 2
    assert explorer.result.fit.degree == 1 and explorer.figure_image.image.value != before
    explorer.controls["l2"].value = L2_OPTIONS[-1]
    assert explorer.result.fit.l2 == L2_OPTIONS[-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"degree": MAX_DEGREE + 1}, "degree"),
        ({"n_train": 2}, "n_train"),
        ({"l2": 0.5}, "l2 must be one of"),
        ({"epochs": 3}, "unknown setting"),
    ],
)
def test_overfitting_explorer_rejects_bad_settings_without_changing_anything(kwargs, message):
    explorer = OverfittingExplorer()
    before, renders = dict(explorer.values), explorer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        explorer.update(**{"n_train": 30, **kwargs})
    assert explorer.values == before and explorer.figure_image.renders == renders
    if "epochs" not in kwargs:
        with pytest.raises(ValueError, match=message):
            OverfittingExplorer(**kwargs)


def test_overfitting_explorer_displays_as_its_widget():
    explorer = OverfittingExplorer(degree=2)
    view = explorer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id
    assert explorer.figure_image.image in explorer.widget.children
    assert repr(explorer) == "OverfittingExplorer(degree=2, n_train=12, l2=0.0)"


# ----- ThresholdExplorer --------------------------------------------------------------------------------------


def test_threshold_explorer_starts_with_the_metrics_at_one_half():
    y, scores = classifier_scores()
    explorer = ThresholdExplorer(y, scores)
    assert explorer.values == {"threshold": 0.5}
    assert explorer.figure_image.renders == 1 and len(explorer.figure_image.image.value) > 10_000
    ref = threshold_metrics(y, scores, 0.5)
    m = explorer.metrics
    np.testing.assert_array_equal(m.confusion, ref.confusion)
    np.testing.assert_array_equal(explorer._cm_image.get_array(), ref.confusion)
    assert explorer._cm_texts[1, 1].get_text() == f"TP\n{ref.tp}"
    assert explorer._cm_texts[0, 1].get_text() == f"FP\n{ref.fp}"  # row = true class, column = prediction
    assert explorer._cm_texts[1, 0].get_text() == f"FN\n{ref.fn}"
    assert explorer.auc == pytest.approx(roc_auc(y, scores))
    np.testing.assert_allclose(explorer.fpr, roc_curve(y, scores)[0])
    assert f"AUC = {explorer.auc:.3f}" in explorer.ax_roc.get_title()
    assert f"precision <b>{ref.precision:.3f}</b>" in explorer.status.value
    assert f"recall <b>{ref.recall:.3f}</b>" in explorer.status.value


def test_threshold_explorer_update_moves_the_operating_point_on_the_same_figure():
    y, scores = classifier_scores()
    explorer = ThresholdExplorer(y, scores)
    fig, axes = explorer.figure, list(explorer.figure.axes)
    counts = [artist_counts(ax) for ax in axes]
    first = explorer.figure_image.image.value
    elapsed = explorer.update(threshold=0.8)
    assert elapsed > 0.0 and explorer.figure_image.renders == 2 and explorer.figure_image.full_draws == 1
    assert explorer.figure is fig and explorer.figure.axes == axes
    assert [artist_counts(ax) for ax in axes] == counts
    assert explorer.figure_image.image.value != first
    m = threshold_metrics(y, scores, 0.8)
    assert explorer.metrics.recall == m.recall and explorer.metrics.precision == m.precision
    np.testing.assert_allclose(np.ravel(explorer._operating_point.get_data()), [m.fpr, m.tpr])
    np.testing.assert_allclose(explorer._threshold_line.get_xdata(), [0.8, 0.8])
    # Raising the threshold trades recall for precision.
    low = threshold_metrics(y, scores, 0.2)
    assert m.recall < low.recall and m.precision > low.precision


def test_threshold_explorer_redraws_when_the_slider_moves():
    y, scores = classifier_scores()
    explorer = ThresholdExplorer(y, scores)
    explorer.update(threshold=0.3)
    renders = explorer.figure_image.renders
    explorer.threshold_slider.value = 0.6
    assert explorer.figure_image.renders == renders + 1
    assert explorer.metrics.threshold == pytest.approx(0.6)


def test_threshold_explorer_takes_logits_and_class_names():
    y, scores = classifier_scores(seed=3)
    logits = np.log(scores / (1 - scores))
    explorer = ThresholdExplorer(y, logits, class_names=("benign", "malignant"))
    assert explorer.values["threshold"] == pytest.approx(np.median(logits))  # not in [0, 1]: the median
    assert explorer.threshold_slider.min == logits.min() and explorer.threshold_slider.max == logits.max()
    assert [t.get_text() for t in explorer.ax_cm.get_xticklabels()] == ["benign", "malignant"]
    assert explorer.auc == pytest.approx(roc_auc(y, scores))  # the ranking, and so the AUC, is unchanged
    explorer.update(threshold=0.0)  # logit 0 is probability 0.5
    np.testing.assert_array_equal(explorer.metrics.confusion, threshold_metrics(y, scores, 0.5).confusion)


def test_threshold_explorer_rejects_bad_input():
    y, scores = classifier_scores()
    with pytest.raises(ValueError, match="both classes"):
        ThresholdExplorer(np.ones(10, int), np.linspace(0, 1, 10))
    explorer = ThresholdExplorer(y, scores)
    with pytest.raises(ValueError, match="between the lowest and highest score"):
        explorer.update(threshold=2.0)
    assert explorer.values == {"threshold": 0.5}
    with pytest.raises(ValueError, match="between the lowest and highest score"):
        ThresholdExplorer(y, scores, threshold=-1.0)


def test_threshold_explorer_displays_as_its_widget():
    y, scores = classifier_scores()
    explorer = ThresholdExplorer(y, scores)
    view = explorer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id
    assert repr(explorer) == "ThresholdExplorer(threshold=0.5, n=200)"


# ----- the static page --------------------------------------------------------------------------------------


def test_executed_notebook_stores_the_chapter_4_widget_images(monkeypatch):
    """The images are in the stored widget state, so the HTML book shows them without a kernel."""
    _, _, images = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets import OverfittingExplorer\nOverfittingExplorer(degree=9)",
        "import numpy as np\nfrom lmbook.widgets import ThresholdExplorer\n"
        "rng = np.random.default_rng(0)\ny = rng.integers(0, 2, 100)\n"
        "ThresholdExplorer(y, np.clip(0.3 * y + rng.uniform(0, 0.7, 100), 0, 1))",
    )
    assert len(images) == 2
    for model in images:
        (buffer,) = model["buffers"]
        assert buffer["path"] == ["value"] and len(buffer["data"]) > 10_000
