"""Tests of chapter 1's model-size explorer without a browser: what it shows is lmbook.model_size.size_estimate
(so count_parameters and training_flops), the controls change the picture and the numbers, bad settings are
rejected without changing anything, and its record grid stays modest. Update latency is not asserted here (it
depends on the machine's load)."""

import io
import math

import numpy as np
import PIL.Image
import pytest

from lmbook.cost import PUBLISHED_RUNS, training_flops
from lmbook.landmarks import LANDMARKS
from lmbook.model_size import size_estimate
from lmbook.transformer import KNOWN_MODELS, TransformerConfig, count_parameters
from lmbook.widgets.base import FigureImage
from lmbook.widgets.model_size import (
    MAX_RECORDED_STATES,
    SIZE_PRESETS,
    ModelSizeExplorer,
    config_from_controls,
    format_bytes,
    landmark_points,
)
from lmbook.widgets.recorded import check_grid
from tests.lib.widget_helpers import artist_counts, png_size


@pytest.fixture(scope="module")
def explorer():
    """One explorer for the tests that leave it as they found it."""
    return ModelSizeExplorer()


def test_it_opens_on_gpt2_small_with_the_books_counts(explorer):
    w = explorer
    assert w.values == {"d_model": 768, "n_layers": 12, "vocab_size": 50257, "max_len": 1024, "kind": "gpt",
                        "tokens_per_parameter": 20}  # fmt: skip
    n = count_parameters(KNOWN_MODELS["GPT-2 small"].config)["total"]
    assert w.current.n_params == n == 124_439_808
    assert w.current.training_flops == training_flops(n, 20 * n)
    assert png_size(w.figure_image.image.value) == (720, 324)
    status = w.status.value
    assert (
        "<b>N = 124,439,808</b>" in status and "<b>498 MB</b> in fp32" in status and "<b>249 MB</b> in bf16" in status
    )
    assert "<b>1.99 GB</b>" in status and "6ND = 1.86 &times; 10<sup>18</sup> FLOPs" in status


@pytest.mark.parametrize("preset", sorted(SIZE_PRESETS))
def test_every_preset_counts_as_count_parameters(preset):
    config, kind = SIZE_PRESETS[preset]
    w = ModelSizeExplorer(preset=preset, tokens_per_parameter=1)
    assert w.current.n_params == count_parameters(config, kind)["total"]
    assert w.current.training_flops == training_flops(w.current.n_params, w.current.n_params)
    assert w.values["kind"] == kind


def test_the_heads_change_no_count():
    config = config_from_controls(4096, 24, 30522, 512)
    assert config.n_heads == 64 and config_from_controls(64, 1, 96, 64).n_heads == 1
    other = TransformerConfig(30522, 512, 4096, 24, n_heads=8)
    assert count_parameters(config) == count_parameters(other)


def test_controls_change_the_picture_and_the_numbers():
    w = ModelSizeExplorer()
    fig, first, renders = w.figure, w.figure_image.image.value, w.figure_image.renders
    counts = [artist_counts(ax) for ax in (w.ax_parts, w.ax_memory, w.ax_compute)]
    w.update(d_model=1024, n_layers=24, vocab_size=30522, max_len=512, kind="bert", tokens_per_parameter=100)
    assert w.figure is fig and w.figure_image.renders == renders + 1
    assert [artist_counts(ax) for ax in (w.ax_parts, w.ax_memory, w.ax_compute)] == counts
    assert w.figure_image.image.value != first
    e = w.current
    expected = size_estimate(KNOWN_MODELS["BERT-large"].config, "bert", 100)
    assert e.n_params == expected.n_params == count_parameters(KNOWN_MODELS["BERT-large"].config, "bert")["total"]
    assert e.training_flops == expected.training_flops
    # the bars are the parts' shares, the memory bars the bytes, the star (N, 6ND)
    widths = [w._part_bars[p].get_width() for p in ("embeddings", "attention", "feed_forward", "other")]
    assert widths == pytest.approx([100 * s for s in e.shares.values()])
    memory = [bar.get_x() + bar.get_width() for bar in w._memory_bars]
    assert memory == pytest.approx([2 * e.n_params, 4 * e.n_params, 16 * e.n_params])
    assert w._star.get_data()[0][0] == e.n_params and w._star.get_data()[1][0] == e.training_flops
    line_n, line_c = w._budget_line.get_data()
    assert line_c == pytest.approx(6 * 100 * line_n**2)
    assert f"<b>N = {e.n_params:,}</b>" in w.status.value
    w.controls["n_layers"].value = 48  # what moving the slider in a browser does
    assert w.figure_image.renders == renders + 2 and w.current.config.n_layers == 48
    assert w.current.n_params > e.n_params
    before = w.current.attention_share
    w.controls["max_len"].value = 8192  # a longer context: attention takes a larger share of the forward pass
    assert w.current.attention_share > before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 100}, "d_model must be one of 64, 128, .*; got 100"),
        ({"d_model": True}, "d_model must be one of"),
        ({"n_layers": 0}, "n_layers must be one of 1, 2, .*; got 0"),
        ({"max_len": 3000}, "max_len must be one of"),
        ({"vocab_size": 32000}, "vocab_size must be one of 96, 30,522, 50,257, 100,000; got 32000"),
        ({"kind": "t5"}, "unknown kind 't5'; choose one of 'gpt', 'bert'"),
        ({"tokens_per_parameter": 3}, "tokens_per_parameter must be one of"),
        ({"n_heads": 8}, "unknown setting"),
    ],
)
def test_update_rejects_bad_settings_without_changing_anything(explorer, kwargs, message):
    before, renders = dict(explorer.values), explorer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        explorer.update(**kwargs)
    assert explorer.values == before and explorer.figure_image.renders == renders


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown preset 'GPT-4'; choose one of"):
        ModelSizeExplorer(preset="GPT-4")
    with pytest.raises(ValueError, match="d_model must be one of"):
        ModelSizeExplorer(preset=None, d_model=1000)
    w = ModelSizeExplorer(preset=None, d_model=64, n_layers=2, vocab_size=96, max_len=64)
    assert w.current.n_params == count_parameters(TransformerConfig(96, 64, 64, 2, 1))["total"]


def test_landmarks_are_lmbook_landmarks_with_a_compute(explorer):
    points = landmark_points()
    with_compute = [m for m in LANDMARKS if m.flops is not None]
    assert list(points) == [m.name for m in with_compute] and "GPT-3" in points
    for m in with_compute:
        assert points[m.name] == ((m.active_params or m.params), m.flops)
    assert points["GPT-3"] == (PUBLISHED_RUNS["GPT-3 175B"].n_params, PUBLISHED_RUNS["GPT-3 175B"].published_flops)
    dots = [line for line in explorer.ax_compute.lines if line.get_marker() == "o"]
    assert len(dots) == len(points)


def test_format_bytes():
    assert format_bytes(498e6) == "498 MB" and format_bytes(2.79e12) == "2.79 TB" and format_bytes(512) == "512 B"


def test_record_grid_is_modest_and_holds_the_current_values(explorer):
    grid = check_grid(explorer, explorer.record_grid())
    assert grid["d_model"] == [256, 768, 1024, 4096, 12288] and grid["n_layers"] == [6, 12, 24, 96]
    assert grid["max_len"] == [512, 1024, 8192]
    assert math.prod(len(v) for v in grid.values()) == 60 <= MAX_RECORDED_STATES
    gpt3 = ModelSizeExplorer(preset="GPT-3 175B")
    assert check_grid(gpt3, gpt3.record_grid())["max_len"] == [512, 1024, 2048, 8192]  # its own 2,048 added
    odd = ModelSizeExplorer(preset=None, d_model=64, n_layers=1, vocab_size=96, max_len=64)
    grid = check_grid(odd, odd.record_grid())
    assert 64 in grid["d_model"] and 1 in grid["n_layers"] and 64 in grid["max_len"]
    assert math.prod(len(v) for v in grid.values()) <= MAX_RECORDED_STATES


def test_recording_gives_every_state_its_own_picture_and_numbers(explorer):
    view = explorer.recorded({"d_model": [768, 4096], "n_layers": [12, 96]})
    assert list(view.states) == [f"width d_model = {d}, depth n_layers = {n}" for d in ("768", "4,096")
                                 for n in (12, 96)]  # fmt: skip
    assert len({png for png, _ in view.states.values()}) == 4
    assert len({status for _, status in view.states.values()}) == 4
    assert explorer.values["d_model"] == 768 and explorer.values["n_layers"] == 12  # put back


def test_a_blitted_picture_is_the_full_drawing(explorer):
    explorer.update(d_model=12288, n_layers=96, max_len=2048)
    try:
        blitted = np.asarray(PIL.Image.open(io.BytesIO(explorer.figure_image.image.value)).convert("RGB"), dtype=int)
        full = FigureImage.to_png(explorer.figure_image)
        full = np.asarray(PIL.Image.open(io.BytesIO(full)).convert("RGB"), dtype=int)
        assert blitted.shape == full.shape
        assert (np.abs(blitted - full).max(axis=2) > 40).mean() < 0.002
    finally:
        explorer.update(d_model=768, n_layers=12, max_len=1024)
