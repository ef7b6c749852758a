"""Tests of chapter 9's calculator without a browser: compute_estimate against lmbook.cost, ComputeCalculator's
initial state, update() with valid and invalid settings, and its record grid. Update latency is not asserted here
(it depends on the machine's load; benchmarks measure it)."""

import io
import math

import numpy as np
import PIL.Image
import pytest

from lmbook.cost import (
    ACCELERATORS,
    PUBLISHED_RUNS,
    training_days,
    training_flops,
    training_memory,
    zero_memory_per_device,
)
from lmbook.widgets.base import FigureImage
from lmbook.widgets.recorded import MAX_STATES, check_grid
from lmbook.widgets.scale import CALCULATOR_PRESETS, ComputeCalculator, compute_estimate
from tests.lib.widget_helpers import artist_counts, png_size


@pytest.fixture(scope="module")
def calculator():
    """One calculator for the tests that leave it as they found it."""
    return ComputeCalculator()


def test_estimate_is_lmbook_cost():
    e = compute_estimate(70e9, 1.4e12, 512, 0.4, "bf16", "H100")
    assert e.flops == training_flops(70e9, 1.4e12)
    assert e.memory[0] == training_memory(70e9, "bf16")
    for stage in range(4):
        assert e.memory[stage] == zero_memory_per_device(70e9, 512, stage, "bf16")
        assert e.fits[stage] == (e.memory[stage]["total"] <= 80e9)
    assert e.peak == 989.5e12
    assert e.days == training_days(e.flops, 512, 989.5e12, 0.4)
    assert compute_estimate(70e9, 1.4e12, 512, 0.4, "fp32", "H100").peak == ACCELERATORS["H100"].peak_flops["fp32"]
    with pytest.raises(ValueError, match="unknown accelerator 'TPU'"):
        compute_estimate(70e9, 1.4e12, 512, 0.4, "bf16", "TPU")


def test_the_gpt3_preset_reproduces_the_published_compute():
    calc = ComputeCalculator()
    assert calc.values == {"n_params": 175e9, "n_tokens": 300e9, "n_devices": 1024, "utilisation": 0.5,
                           "precision": "mixed", "accelerator": "A100"}  # fmt: skip
    published = PUBLISHED_RUNS["GPT-3 175B"].published_flops
    assert math.isclose(calc.current.flops, published, rel_tol=0.01)  # 3.15e23 against the paper's 3.14e23
    assert "3.15 &times; 10<sup>23</sup> FLOPs" in calc.status.value
    assert "the paper states 3.14 &times; 10<sup>23</sup>" in calc.status.value
    assert f"{calc.current.days:,.1f} days" in calc.status.value and "2,800 GB" in calc.status.value
    assert png_size(calc.figure_image.image.value) == (720, 324)


@pytest.mark.parametrize("preset", sorted(CALCULATOR_PRESETS))
def test_every_preset_uses_the_published_token_count(preset):
    n_params, n_tokens = CALCULATOR_PRESETS[preset]
    assert n_tokens == PUBLISHED_RUNS[preset].n_tokens
    assert preset in ComputeCalculator.readout(compute_estimate(n_params, n_tokens, 8, 0.5))


def test_update_redraws_the_same_figure_with_the_new_numbers():
    calc = ComputeCalculator()
    fig, first = calc.figure, calc.figure_image.image.value
    counts = artist_counts(calc.ax_memory), artist_counts(calc.ax_days)
    renders = calc.figure_image.renders
    calc.update(n_params=110e6, n_devices=8, precision="fp32", utilisation=0.3)
    assert calc.figure_image.renders == renders + 1 and calc.figure is fig
    assert (artist_counts(calc.ax_memory), artist_counts(calc.ax_days)) == counts
    assert calc.figure_image.image.value != first
    e = calc.current
    assert e.days == training_days(training_flops(110e6, 300e9), 8, 19.5e12, 0.3)
    # the bars are the memory of each stage, part by part
    widths = [calc._bars[part].patches[3].get_width() for part in ("weights", "gradients", "optimizer")]
    assert widths == pytest.approx([4 * 110e6 / 8 / 1e9, 4 * 110e6 / 8 / 1e9, 8 * 110e6 / 8 / 1e9])
    assert calc._days_dot.get_data()[1][0] == pytest.approx(e.days)
    calc.controls["n_devices"].value = 4096  # what moving the slider in a browser does
    assert calc.figure_image.renders == renders + 2 and calc.current.n_devices == 4096


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_params": 123}, "n_params must be one of"),
        ({"n_tokens": 5e11}, "n_tokens must be one of"),
        ({"n_devices": 3}, "n_devices must be one of"),
        ({"utilisation": 1.5}, r"utilisation must be between 0.05 and 1.0, got 1.5"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"accelerator": "V100"}, "unknown accelerator 'V100'"),
        ({"batch": 3}, "unknown setting"),
    ],
)
def test_update_rejects_bad_settings_without_changing_anything(calculator, kwargs, message):
    calc = calculator
    before, renders = dict(calc.values), calc.figure_image.renders
    with pytest.raises(ValueError, match=message):
        calc.update(**kwargs)
    assert calc.values == before and calc.figure_image.renders == renders


def test_constructor_rejects_an_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'GPT-4'; choose one of 'GPT-3 175B'"):
        ComputeCalculator(preset="GPT-4")


def test_record_grid_is_modest_and_holds_the_current_values(calculator):
    grid = calculator.record_grid()
    assert math.prod(len(v) for v in grid.values()) == 96
    assert grid["precision"] == ["fp32", "mixed"] and grid["n_devices"] == [8, 64, 1024, 4096]
    odd = ComputeCalculator(preset="Chinchilla 70B", n_devices=256, precision="bf16")
    odd.update(n_params=540e9, n_tokens=15e12)
    grid = check_grid(odd, odd.record_grid())
    assert 540e9 in grid["n_params"] and 15e12 in grid["n_tokens"] and 256 in grid["n_devices"]
    assert "bf16" in grid["precision"] and math.prod(len(v) for v in grid.values()) <= MAX_STATES


def test_recording_gives_every_state_its_own_picture_and_numbers():
    calc = ComputeCalculator(preset="BERT-base", n_devices=8)
    view = calc.recorded({"n_params": [110e6, 340e6], "n_devices": [8, 64]})
    assert list(view.states) == [f"parameters N = {n}, accelerators = {d}" for n in ("110M", "340M") for d in (8, 64)]
    assert len({png for png, _ in view.states.values()}) == 4
    assert len({status for _, status in view.states.values()}) == 4
    assert calc.values["n_params"] == 110e6 and calc.values["n_devices"] == 8  # put back


def test_a_blitted_picture_is_the_full_drawing():
    """Only the changing artists are redrawn; the axes must still match the new state (e.g. a new memory range)."""
    calc = ComputeCalculator()
    calc.update(n_params=110e6, n_devices=8)  # a much smaller memory axis
    calc.update(n_devices=64)  # a blit on the new background
    blitted = np.asarray(PIL.Image.open(io.BytesIO(calc.figure_image.image.value)).convert("RGB"), dtype=int)
    full = np.asarray(PIL.Image.open(io.BytesIO(FigureImage.to_png(calc.figure_image))).convert("RGB"), dtype=int)
    assert blitted.shape == full.shape
    assert (np.abs(blitted - full).max(axis=2) > 40).mean() < 0.002
