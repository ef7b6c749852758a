"""Tests of chapter 6's widget without a browser: gradient_flow as a pure function, GradientFlowViewer through
.update(), its record grid, and the recorded view stored by a real kernel as the book's build stores it. Update
latency is not asserted here (it depends on the machine's load; benchmarks measure it)."""

import re

import numpy as np
import pytest

from lmbook.bptt import gradient_per_step
from lmbook.widgets.recorded import MAX_STATES, RECORD_VARIABLE, check_grid
from lmbook.widgets.rnn import FLOAT32_EPS, GradientFlowViewer, gradient_flow
from tests.lib.widget_helpers import artist_counts, execute_with_widget_state, png_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gradient_flow_measures_relative_to_the_last_step():
    flow = gradient_flow(0.5, 60)
    np.testing.assert_allclose(flow.norms, gradient_per_step(0.5, 60))
    assert flow.relative[-1] == 1.0 and flow.ratio == flow.relative[0]
    assert flow.factor == pytest.approx(flow.ratio ** (1 / 59))
    assert flow.verdict == "vanishing" and flow.factor < 0.5
    assert flow.lost == int((flow.relative < FLOAT32_EPS).sum()) > 0
    assert gradient_flow(3.0, 60).verdict == "exploding"
    assert gradient_flow(0.5, 2).verdict == "kept" and gradient_flow(1.0, 1).factor == 1.0


def test_viewer_starts_with_a_picture_and_a_readout():
    viewer = GradientFlowViewer(radius=0.5, T=100)
    assert png_size(viewer.figure_image.image.value) == (720, 315)
    assert viewer.values == {"radius": 0.5, "T": 100}
    assert f"<b>{viewer.current.ratio:.1e}</b>" in viewer.status.value and "vanishing" in viewer.status.value
    x, y = viewer._curve.get_data()
    np.testing.assert_array_equal(x, np.arange(1, 101))
    np.testing.assert_allclose(y, gradient_flow(0.5, 100).relative)
    np.testing.assert_allclose(viewer._linear.get_data()[1][-3:], [0.25, 0.5, 1.0])
    low, high = viewer.ax.get_ylim()
    assert low <= y.min() and high >= 1.0


def test_viewer_update_redraws_the_same_figure_once():
    viewer = GradientFlowViewer()
    fig, first, counts = viewer.figure, viewer.figure_image.image.value, artist_counts(viewer.ax)
    renders = viewer.figure_image.renders
    viewer.update(radius=3.0, T=60)
    assert viewer.figure_image.renders == renders + 1
    assert viewer.figure is fig and artist_counts(viewer.ax) == counts
    assert viewer.figure_image.image.value != first and "exploding" in viewer.status.value
    viewer.controls["T"].value = 10  # what moving the slider in a browser does
    assert viewer.figure_image.renders == renders + 2 and len(viewer._curve.get_data()[0]) == 10


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"radius": 5.0}, "radius must be between"), ({"T": 1}, "T must be between"),
                            ({"depth": 3}, "unknown setting")],
)  # fmt: skip
def test_viewer_rejects_bad_settings_without_changing_anything(kwargs, message):
    viewer = GradientFlowViewer()
    before, renders = dict(viewer.values), viewer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        viewer.update(**kwargs)
    assert viewer.values == before and viewer.figure_image.renders == renders


def test_record_grid_is_modest_and_holds_the_current_values():
    grid = GradientFlowViewer().record_grid()
    assert grid == {"radius": [0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0], "T": [10, 25, 50, 100, 200]}
    odd = GradientFlowViewer(radius=1.2, T=37)
    grid = odd.record_grid()
    assert 1.2 in grid["radius"] and 37 in grid["T"]
    assert check_grid(odd, grid) == grid and len(grid["radius"]) * len(grid["T"]) <= 60 <= MAX_STATES
    # A value that reads like a recorded one on the slider replaces it, instead of two states with one label.
    near = GradientFlowViewer(radius=1.001)
    assert check_grid(near, near.record_grid())["radius"].count(1.001) == 1 and 1.0 not in near.record_grid()["radius"]


def test_recording_gives_every_state_its_own_labelled_picture():
    viewer = GradientFlowViewer(radius=1.0, T=25)
    view = viewer.recorded({"radius": [0.5, 1.0], "T": [10, 25]})
    titles = list(view.states)
    assert titles == [f"spectral radius of W_h = {r}, sequence length T = {T}" for r in ("0.50", "1.00")
                      for T in (10, 25)]  # fmt: skip
    assert len({png for png, _ in view.states.values()}) == 4
    assert len({status for _, status in view.states.values()}) == 4
    assert viewer.values == {"radius": 1.0, "T": 25}  # put back


def test_the_notebook_stores_the_recorded_states_for_the_page(monkeypatch):
    """As the book's build runs it: the page gets the recordings, each picture with its alt text."""
    monkeypatch.setenv(RECORD_VARIABLE, "1")
    _, state, _ = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets.rnn import GradientFlowViewer\n"
        "v = GradientFlowViewer(radius=1.0, T=10)\n"
        "v.record_grid = lambda: {'radius': [0.5, 1.0], 'T': [10, 25]}\n"
        "v",
    )
    names = [m["model_name"] for m in state.values()]
    assert names.count("StackModel") == 3 and names.count("LinkModel") == 3
    htmls = [m["state"]["value"] for m in state.values() if m["model_name"] == "HTMLModel"]
    alts = sorted(a.group(1) for a in (re.search(r'alt="([^"]*)"', h) for h in htmls) if a)
    assert alts == sorted(f"spectral radius of W_h = {r}, sequence length T = {T}" for r in ("0.50", "1.00")
                          for T in (10, 25))  # fmt: skip
    assert all("data:image/png;base64," in h for h in htmls if "alt=" in h)
