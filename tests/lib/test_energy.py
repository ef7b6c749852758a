"""Tests of lmbook.energy: each link of the chain by hand, the published GPT-3 estimate reproduced from its own
inputs (Patterson et al. 2021, Table 4), and clear errors on bad inputs."""

import dataclasses
import math

import pytest

from lmbook.cost import PUBLISHED_RUNS
from lmbook.energy import (
    KG_PER_LB,
    PATTERSON_GPT3,
    STRUBELL_LBS_PER_KWH,
    EnergyEstimate,
    accelerator_hours,
    datasheet_peak_flops,
    emissions_tonnes,
    estimate_measured,
    estimate_training,
    training_energy_kwh,
)


def test_each_link_by_hand():
    # 3.6e18 FLOPs at 1e15 FLOP/s x 0.5 = 7200 s = 2 h
    assert accelerator_hours(3.6e18, 1e15, 0.5) == pytest.approx(2.0)
    # 2 h x 500 W = 1 kWh, x PUE 1.5 = 1.5 kWh
    assert training_energy_kwh(2.0, 500.0, 1.5) == pytest.approx(1.5)
    # 1500 kWh x 0.4 kg/kWh = 600 kg = 0.6 t
    assert emissions_tonnes(1500.0, 0.4) == pytest.approx(0.6)
    assert emissions_tonnes(1500.0, 0.0) == 0.0  # carbon-free electricity


def test_estimate_is_the_chain_and_scales_linearly():
    est = estimate_training(3.6e18, 1e15, 0.5, 500.0, pue=1.5, carbon_intensity=0.4, n_devices=2)
    assert est.accelerator_hours == pytest.approx(2.0)
    assert est.days == pytest.approx(1 / 24)  # two devices share the two hours
    assert est.it_energy_kwh == pytest.approx(1.0)
    assert est.energy_kwh == pytest.approx(1.5) and est.energy_mwh == pytest.approx(1.5e-3)
    assert est.emissions_kg == pytest.approx(0.6)
    doubled = dataclasses.replace(est, pue=3.0)
    assert doubled.emissions_kg == pytest.approx(2 * est.emissions_kg)
    # halving the utilisation doubles hours, energy and emissions
    slow = estimate_training(3.6e18, 1e15, 0.25, 500.0, pue=1.5, carbon_intensity=0.4)
    assert slow.energy_kwh == pytest.approx(2 * est.energy_kwh)


def test_measured_run():
    est = estimate_measured(1800.0, 40.0, pue=1.0, carbon_intensity=0.5)  # half an hour at 40 W
    assert est.energy_kwh == pytest.approx(0.02)
    assert est.emissions_kg == pytest.approx(0.01)
    assert estimate_measured(3600.0, 300.0, n_devices=4).accelerator_hours == pytest.approx(4.0)


def test_reproduces_patterson_gpt3_from_its_inputs():
    p = PATTERSON_GPT3
    # the paper's compute agrees with 6ND for 175B parameters and 300B tokens to within 1%
    assert PUBLISHED_RUNS["GPT-3 175B"].flops == pytest.approx(p["flops"], rel=0.01)
    # their measured 24.6 TFLOP/s per V100 for 3.14e23 FLOPs on 10,000 GPUs gives their 14.8 days
    peak = datasheet_peak_flops("V100", "fp16")
    util = p["measured_tflops_per_device"] * 1e12 / peak
    est = estimate_training(
        p["flops"], peak, util, p["power_watts"], p["pue"], p["carbon_intensity"], n_devices=p["n_devices"]
    )
    assert est.days == pytest.approx(p["days"], rel=0.01)
    assert est.energy_mwh == pytest.approx(p["energy_mwh"], rel=0.01)
    assert est.emissions_tonnes == pytest.approx(p["emissions_tonnes"], rel=0.01)


def test_pound_conversion():
    assert KG_PER_LB == pytest.approx(0.4536, abs=1e-4)
    assert STRUBELL_LBS_PER_KWH * KG_PER_LB == pytest.approx(0.4327, abs=1e-4)


def test_datasheet_peak():
    assert datasheet_peak_flops("H100", "bf16") == pytest.approx(989.5e12)
    with pytest.raises(ValueError, match="unknown accelerator 'H900'"):
        datasheet_peak_flops("H900")
    with pytest.raises(ValueError, match="no 'bf16' peak for the V100"):
        datasheet_peak_flops("V100", "bf16")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: accelerator_hours(-1.0, 1e15, 0.5), "flops must be a positive finite number, got -1.0"),
        (lambda: accelerator_hours(1e18, math.inf, 0.5), "peak_flops must be"),
        (lambda: accelerator_hours(1e18, 1e15, 40), r"utilisation must be a fraction in \(0, 1\].*got 40"),
        (lambda: accelerator_hours(1e18, 1e15, 0.0), "utilisation"),
        (lambda: training_energy_kwh(1.0, 300.0, pue=0.9), "pue .* cannot be below 1, got 0.9"),
        (lambda: training_energy_kwh(1.0, 0.0), "power_watts must be a positive finite number, got 0.0"),
        (lambda: emissions_tonnes(10.0, -0.1), "carbon_intensity must be a finite number >= 0, got -0.1"),
        (lambda: EnergyEstimate(1.0, 300.0, n_devices=0), "n_devices must be a positive integer, got 0"),
        (lambda: estimate_measured(True, 300.0), "seconds must be"),
        (lambda: accelerator_hours("1e18", 1e15, 0.5), "flops must be"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
