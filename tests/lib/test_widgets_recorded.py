"""The recorded view (lmbook.widgets.recorded): what the static HTML book shows of each widget without a kernel.

The browser side (moving a control in Chromium) is tested on the built book in tests/site/test_widgets_live.py;
here the recording itself: every state holds the picture the live widget draws for those values, the nested
stacks and links select exactly that state for each combination of control indexes, and bad grids are refused.
"""

import base64
import io
import itertools
import re

import ipywidgets as widgets
import numpy as np
import PIL.Image
import pytest

from lmbook.widgets import (
    DecisionBoundaryTrainer,
    LearningRateExplorer,
    NeuronExplorer,
    OptimizerRace,
    OverfittingExplorer,
    PositionalEncodingExplorer,
    ThresholdExplorer,
)
from lmbook.widgets.recorded import (
    CSS_CLASS,
    MAX_STATES,
    RECORD_VARIABLE,
    RecordedView,
    check_grid,
    compact_png,
    recording,
    value_label,
)
from tests.lib.widget_helpers import execute_with_widget_state, png_size


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def leaf_picture(leaf: widgets.HTML) -> tuple[str, bytes]:
    """(alt text, PNG bytes) of one recorded state's picture."""
    match = re.search(r'src="data:image/png;base64,([^"]+)" alt="([^"]*)"', leaf.value)
    assert match, leaf.value[:200]
    return match.group(2), base64.b64decode(match.group(1))


def shown_leaf(view: RecordedView) -> widgets.HTML:
    """Follow the stacks from the top, each at its selected index, as the page does."""
    node = view.stacks[0][0]
    while isinstance(node, widgets.Stack):
        node = node.children[node.selected_index]
    return node


def select(view: RecordedView, indexes: tuple[int, ...]) -> None:
    """Move the recorded controls as the browser's links would: each control's index into all of its stacks."""
    for level, (control, index) in enumerate(zip(view.controls.values(), indexes, strict=True)):
        control.index = index
        for stack in view.stacks[level]:
            stack.selected_index = index


@pytest.fixture(scope="module")
def neuron_view():
    explorer = NeuronExplorer(w=1.0, b=0.0)
    grid = {"w": [-1.0, 1.0, 2.0], "b": [0.0, 1.0], "activation": ["sigmoid", "relu"]}
    return explorer, explorer.recorded(grid)


def test_every_state_is_the_picture_the_live_widget_draws(neuron_view):
    explorer, view = neuron_view
    assert len(view.states) == 12
    for (w, b, act), (title, (png, status)) in zip(
        itertools.product([-1.0, 1.0, 2.0], [0.0, 1.0], ["sigmoid", "relu"]), view.states.items(), strict=True
    ):
        assert title == f"weight w = {w:.1f}, bias b = {b:.1f}, activation f = {act}"
        explorer.update(w=w, b=b, activation=act)
        live = explorer.figure_image.image.value
        assert png_size(png) == png_size(live)
        # A palette of 128 colours: close to the live picture everywhere, not a different one.
        assert np.abs(pixels(png) - pixels(live)).mean() < 2.0
        assert status == explorer.status.value
    explorer.update(w=1.0, b=0.0, activation="sigmoid")


def test_the_live_widget_is_left_as_it_was(neuron_view):
    explorer, _ = neuron_view
    assert explorer.values == {"w": 1.0, "b": 0.0, "activation": "sigmoid"}


def test_the_stacks_show_the_state_of_the_controls(neuron_view):
    _, view = neuron_view
    titles = list(view.states)
    # The page opens on the live widget's values: w = 1.0 (index 1), b = 0.0, sigmoid.
    assert [c.index for c in view.controls.values()] == [1, 0, 0]
    assert leaf_picture(shown_leaf(view))[0] == titles[4]
    for n, indexes in enumerate(itertools.product(range(3), range(2), range(2))):
        select(view, indexes)
        alt, png = leaf_picture(shown_leaf(view))
        assert alt == titles[n]
        assert png == view.states[alt][0]
        labels = [c.options[c.index][0] for c in view.controls.values()]
        assert alt == ", ".join(
            f"{c.description} = {lab}" for c, lab in zip(view.controls.values(), labels, strict=True)
        )
    select(view, (1, 0, 0))


def test_every_stack_is_linked_to_its_control_in_the_browser(neuron_view):
    _, view = neuron_view
    links = view.links
    for level, control in enumerate(view.controls.values()):
        for stack in view.stacks[level]:
            assert any(
                link.source == (control, "index") and link.target == (stack, "selected_index") for link in links
            ), f"stack at level {level} is not linked to {control.description}"
    assert [len(level) for level in view.stacks] == [1, 3, 6]


def test_values_that_read_the_same_are_refused():
    explorer = NeuronExplorer(w=1.0)
    # The weight slider shows one decimal: 1.0 and 1.04 would be two pictures under one name.
    with pytest.raises(ValueError, match="read the same"):
        explorer.recorded({"w": [1.0, 1.04]})
    assert explorer.values["w"] == 1.0


def test_the_note_names_the_recorded_and_the_fixed_controls():
    race = OptimizerRace()
    view = race.recorded({"lr": [0.01, 0.04]})
    note = view.widget.children[0].value
    assert "<i>learning rate</i>" in note and "2 settings" in note
    assert "<i>momentum</i> = 0.90" in note and "<i>steps</i> = 100" in note and "Binder or Colab" in note
    assert CSS_CLASS in view.widget._dom_classes


def test_menus_stay_menus_and_sliders_stay_sliders():
    view = OverfittingExplorer().recorded({"degree": [1, 3], "l2": [0.0, 1e-3]})
    degree, l2 = view.controls.values()
    assert isinstance(degree, widgets.SelectionSlider) and isinstance(l2, widgets.SelectionSlider)
    assert [label for label, _ in l2.options] == ["none", "1e-03"]
    menu = NeuronExplorer().recorded({"activation": ["sigmoid", "tanh"]}).controls["activation"]
    assert isinstance(menu, widgets.Dropdown)


def test_value_label_reads_like_the_control():
    slider = widgets.FloatLogSlider(value=0.04, readout_format=".3g", description="lr")
    assert value_label(slider, 0.04) == "0.04"
    menu = widgets.Dropdown(options=[("none", 0.0), ("small", 0.1)], value=0.0)
    assert value_label(menu, 0.1) == "small"
    with pytest.raises(ValueError, match="not an option"):
        value_label(menu, 0.5)


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"speed": [1, 2]}, "not controls of NeuronExplorer"),
        ({"w": []}, "no values"),
        ({"w": [1.0, 1.0]}, "repeats"),
        ({"w": [2.0, 3.0]}, "current value 1.0"),
        ({"w": list(np.linspace(-5, 5, 41).round(1)) + [1.0], "activation": ["sigmoid", "tanh", "relu", "identity"]},
         "at most"),
    ],
)  # fmt: skip
def test_bad_grids_are_refused_with_the_reason(grid, message):
    explorer = NeuronExplorer(w=1.0)
    if "at most" in message:
        grid["w"] = sorted(set(grid["w"]))
        assert len(grid["w"]) * 4 > MAX_STATES
    with pytest.raises(ValueError, match=message):
        explorer.recorded(grid)


def test_compact_png_keeps_the_picture():
    explorer = NeuronExplorer()
    live = explorer.figure_image.image.value
    small = compact_png(live)
    assert len(small) < len(live) / 2
    assert np.abs(pixels(small) - pixels(live)).mean() < 2.0


@pytest.mark.parametrize(
    "make",
    [
        NeuronExplorer,
        LearningRateExplorer,
        OptimizerRace,
        OverfittingExplorer,
        PositionalEncodingExplorer,
        lambda: ThresholdExplorer(np.array([0, 1, 0, 1, 1, 0]), np.array([0.1, 0.8, 0.4, 0.6, 0.9, 0.3])),
    ],
    ids=["neuron", "learning-rate", "optimizers", "overfitting", "positions", "threshold"],
)
def test_every_widget_has_a_valid_record_grid(make):
    widget = make()
    grid = widget.record_grid()
    n = int(np.prod([len(v) for v in grid.values()]))
    assert 8 <= n <= MAX_STATES, f"{type(widget).__name__} records {n} states"
    # Validated without recording it all (that is the build's work).
    assert check_grid(widget, grid) == {k: list(v) for k, v in grid.items()}


def test_the_trainer_records_trained_pictures():
    trainer = DecisionBoundaryTrainer(steps=50)
    view = trainer.recorded({"dataset": ["moons", "circles"]})
    (moons, _), (circles, status) = view.states.values()
    assert moons != circles and "loss" in status.lower()
    assert trainer.values["dataset"] == "moons"


def test_recording_is_switched_on_by_the_build_only(monkeypatch):
    monkeypatch.delenv(RECORD_VARIABLE, raising=False)
    assert not recording()
    explorer = NeuronExplorer()
    live = explorer._repr_mimebundle_()
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    monkeypatch.setenv(RECORD_VARIABLE, "1")
    assert recording()
    shown = explorer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert shown != explorer.widget.model_id
    assert shown == explorer._recorded_view.widget.model_id


def test_the_notebook_stores_the_recordings_for_the_page(monkeypatch):
    monkeypatch.setenv(RECORD_VARIABLE, "1")
    _, state, _ = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets import NeuronExplorer\n"
        "e = NeuronExplorer()\n"
        "e.record_grid = lambda: {'w': [0.5, 1.0], 'b': [0.0, 1.0]}\n"
        "e",
    )
    names = [m["model_name"] for m in state.values()]
    assert names.count("StackModel") == 3 and names.count("LinkModel") == 3
    alts = [re.search(r'alt="([^"]*)"', m["state"]["value"]) for m in state.values() if m["model_name"] == "HTMLModel"]
    assert sorted(a.group(1) for a in alts if a) == sorted(
        f"weight w = {w}, bias b = {b}" for w in ("0.5", "1.0") for b in ("0.0", "1.0")
    )
