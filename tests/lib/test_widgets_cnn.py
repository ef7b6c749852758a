"""Tests of chapter 5's widget without a browser: tile and cnn_view as pure functions, CNNViewer through .update(),
its record grid and a small recording. Update latency is not asserted here (it depends on the machine's load)."""

import numpy as np
import pytest
import torch

from lmbook.cnn import digits_cnn, feature_maps, residual_cnn
from lmbook.images import digits_images
from lmbook.saliency import gradient_saliency, occlusion_map
from lmbook.widgets import CNNViewer, cnn_view, tile
from lmbook.widgets.recorded import MAX_STATES, check_grid
from tests.lib.widget_helpers import png_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    split = digits_images().split
    return split.X_test[:40], split.y_test[:40]


@pytest.fixture(scope="module")
def model():
    return digits_cnn(seed=0)  # untrained is enough: the widget shows whatever the weights are


# ----- pure functions ----------------------------------------------------------------------------------------


def test_tile_places_each_map_and_blanks_the_gaps():
    maps = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    out = tile(maps)  # 3 columns, 2 rows
    assert out.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(out[0:2, 0:3], maps[0])
    np.testing.assert_array_equal(out[0:2, 4:7], maps[1])
    np.testing.assert_array_equal(out[3:5, 4:7], maps[4])
    assert np.isnan(out[2]).all() and np.isnan(out[:, 3]).all() and np.isnan(out[3:5, 8:11]).all()
    np.testing.assert_array_equal(tile(maps, columns=5, gap=0), np.concatenate(list(maps), axis=1))
    with pytest.raises(ValueError, match="maps"):
        tile(np.zeros((2, 3)))


def test_cnn_view_kernels_feature_maps_and_saliency(model, data):
    image = data[0][0]
    kernels = cnn_view(model, image, "conv1", "kernels")
    assert (kernels.shown, kernels.total) == (16, 32) and kernels.symmetric
    np.testing.assert_allclose(kernels.picture[0:3, 0:3], model.conv1.weight[0, 0].detach().double().numpy())
    deeper = cnn_view(model, image, "conv2", "kernels")
    w = model.conv2.weight.detach().double().numpy()
    strongest = np.abs(w[5]).sum(axis=(1, 2)).argmax()
    np.testing.assert_allclose(deeper.picture[4:7, 4:7], w[5, strongest])  # map 5: row 1, column 1
    assert "strongest of 32 input channels" in deeper.description

    maps = cnn_view(model, image, "conv3", "feature maps")
    expected = feature_maps(model, torch.as_tensor(image)[None], ["conv3"])["conv3"][0].double().numpy()
    assert (maps.shown, maps.total) == (16, 64) and maps.picture.shape == (4 * 5 - 1, 4 * 5 - 1)
    np.testing.assert_allclose(maps.picture[0:4, 5:9], expected[1])

    sal = cnn_view(model, image, "conv1", "saliency")
    np.testing.assert_allclose(sal.picture, gradient_saliency(model, image)[0])
    assert not sal.symmetric
    occ = cnn_view(model, image, "conv1", "occlusion", patch=3)
    np.testing.assert_allclose(occ.picture, occlusion_map(model, image, patch=3)[0])
    with pytest.raises(ValueError, match="unknown view"):
        cnn_view(model, image, "conv1", "gradients")
    with pytest.raises(ValueError, match="unknown convolution layer 'fc'"):
        cnn_view(model, image, "fc", "kernels")


# ----- the widget ---------------------------------------------------------------------------------------------


def test_viewer_starts_with_a_picture_and_the_prediction(model, data):
    images, labels = data
    viewer = CNNViewer(model, images, labels, index=3)
    assert png_size(viewer.figure_image.image.value)[0] > 300
    assert viewer.values == {"image": 3, "layer": "conv1", "view": "feature maps"}
    p = torch.softmax(model.eval()(torch.as_tensor(images[3:4])), dim=1)[0].detach().numpy()
    np.testing.assert_allclose(viewer.probabilities, p, rtol=1e-5)
    assert [bar.get_height() for bar in viewer._bars] == pytest.approx(list(p), rel=1e-5)
    assert f"true class {labels[3]}" in viewer.status.value
    assert f"predicted <b>{p.argmax()}</b>" in viewer.status.value
    assert repr(viewer) == "CNNViewer(image=3, layer='conv1', view='feature maps')"


def test_viewer_update_redraws_the_same_figure(model, data):
    viewer = CNNViewer(model, *data)
    fig, axes, first = viewer.figure, list(viewer.figure.axes), viewer.figure_image.image.value
    counts = [(len(ax.images), len(ax.patches), len(ax.texts)) for ax in axes]
    renders = viewer.figure_image.renders
    for settings in ({"view": "kernels", "layer": "conv2"}, {"image": 7, "view": "saliency"}, {"view": "occlusion"}):
        assert viewer.update(**settings) >= 0
    assert viewer.figure_image.renders == renders + 3
    assert viewer.figure is fig and viewer.figure.axes == axes
    assert [(len(ax.images), len(ax.patches), len(ax.texts)) for ax in axes] == counts
    assert viewer.figure_image.image.value != first
    np.testing.assert_allclose(viewer._view.get_array().data, occlusion_map(model, data[0][7])[0])
    viewer.controls["view"].value = "kernels"  # what choosing in a browser does
    assert viewer.figure_image.renders == renders + 4 and viewer.current.total == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"image": 40}, "between 0 and 39"), ({"layer": "fc"}, "unknown convolution layer"),
     ({"view": "3d"}, "unknown view"), ({"colour": 1}, "unknown setting")],
)  # fmt: skip
def test_viewer_rejects_bad_settings_without_changing_anything(model, data, kwargs, message):
    viewer = CNNViewer(model, *data)
    before, renders = dict(viewer.values), viewer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        viewer.update(**kwargs)
    assert viewer.values == before and viewer.figure_image.renders == renders


def test_viewer_checks_its_inputs(model, data):
    images, labels = data
    with pytest.raises(ValueError, match="images"):
        CNNViewer(model, images[:, 0])
    with pytest.raises(ValueError, match="labels"):
        CNNViewer(model, images, labels[:5])
    with pytest.raises(ValueError, match="class_names has 3 names"):
        CNNViewer(model, images, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        CNNViewer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), images)


def test_record_grid_one_image_per_class_and_the_current_values(model, data):
    images, labels = data
    viewer = CNNViewer(model, images, labels, index=7, layer="conv2", view="saliency")
    grid = viewer.record_grid()
    assert grid["layer"] == ["conv1", "conv2", "conv3"] and grid["view"] == ["kernels", "feature maps", "saliency",
                                                                            "occlusion"]  # fmt: skip
    assert 7 in grid["image"] and len(grid["image"]) == 8 and grid["image"] == sorted(grid["image"])
    others = [i for i in grid["image"] if i != 7]
    assert len({int(labels[i]) for i in others}) == 7  # one image per class
    n = int(np.prod([len(v) for v in grid.values()]))
    assert n == 96 <= 100 <= MAX_STATES
    assert check_grid(viewer, grid) == grid


def test_record_grid_of_a_deep_net_keeps_three_layers_with_the_current_one(data):
    viewer = CNNViewer(residual_cnn(num_blocks=4), data[0], layer="block2.conv2")
    assert viewer.record_grid()["layer"] == ["stem", "block2.conv2", "block4.conv2"]
    assert viewer.record_grid()["image"] == list(range(8))  # no labels: the first images


def test_recording_gives_every_state_its_own_labelled_picture(model, data):
    viewer = CNNViewer(model, *data, view="kernels")
    view = viewer.recorded({"image": [0, 5], "layer": ["conv1"], "view": ["kernels", "occlusion"]})
    titles = list(view.states)
    assert titles == [f"image = {i}, layer = conv1, view = {v}" for i in (0, 5) for v in ("kernels", "occlusion")]
    pictures = [png for png, _ in view.states.values()]
    assert len(set(pictures)) == 4  # the image and its prediction are in every picture
    assert view.states[titles[0]][1] != view.states[titles[2]][1]  # and in the status line
    assert viewer.values == {"image": 0, "layer": "conv1", "view": "kernels"}  # put back
