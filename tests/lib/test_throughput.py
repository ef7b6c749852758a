"""Tests of lmbook.throughput: the peaks, the timing in turns, one training step, and the MFU arithmetic."""

import pytest
import torch

from lmbook import throughput
from lmbook.gpt import GPT, GPTConfig
from lmbook.loop import make_optimizer
from lmbook.throughput import (
    PEAK_TFLOPS,
    Peak,
    device_peak,
    step_speed,
    time_interleaved,
    top_operators,
    training_step,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gpu_peaks_come_from_the_table_with_their_source(monkeypatch):
    monkeypatch.setattr(throughput, "device_name", lambda device: "NVIDIA H100 PCIe")
    peak = device_peak(torch.device("cuda"), "bf16")
    assert peak.flops == 756.5e12 and "H100 PCIe" in peak.source and "data sheet" in peak.source
    monkeypatch.setattr(throughput, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    assert device_peak(torch.device("cuda"), "fp32").flops == 67e12
    for peaks in PEAK_TFLOPS.values():
        assert peaks["fp32"] < min(v for k, v in peaks.items() if k != "fp32")  # tensor cores are faster


def test_a_cpu_peak_is_measured_and_says_so():
    peak = device_peak("cpu", "fp32", n=128)
    assert peak.flops > 1e8 and peak.source.startswith("measured: a 128 x 128 matrix product in fp32")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        device_peak("cpu", "fp8")


def test_time_interleaved_runs_the_contenders_in_turns():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)


def test_training_step_lowers_the_loss_of_a_fixed_batch():
    model = GPT(GPTConfig(11, max_len=8, d_model=16, n_layers=1, n_heads=2))
    optimizer = make_optimizer(model, "adamw", 1e-2)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(11, (4, 8), generator=gen), torch.randint(11, (4, 8), generator=gen)
    losses = [float(training_step(model, optimizer, x, y)) for _ in range(5)]
    assert losses[-1] < losses[0] - 0.1
    bf16 = float(training_step(model, optimizer, x, y, amp_dtype=torch.bfloat16))
    assert abs(bf16 - losses[-1]) < 0.5  # autocast runs and gives a loss of the same size


def test_step_speed_arithmetic():
    speed = step_speed([0.5, 0.25, 2.0], tokens_per_step=1000, flops_per_token=6e6, peak=Peak(1.2e11, "x"))
    assert speed.seconds == 0.5 and speed.tokens_per_second == 2000
    assert speed.achieved_flops == 1.2e10 and speed.mfu == pytest.approx(0.1)


def test_top_operators_find_the_matrix_product():
    a = torch.randn(256, 256)
    ops = top_operators(lambda: a @ a, steps=2, top=3)
    assert ops[0]["operator"] == "aten::mm" and ops[0]["calls_per_step"] == 1
    assert 0 < ops[0]["share"] <= 1
    assert sum(op["share"] for op in top_operators(lambda: a @ a, steps=1, top=None)) == pytest.approx(1.0)


def test_one_datasheet_table_behind_every_peak():
    from lmbook.cost import ACCELERATORS
    from lmbook.hardware import MEMORY_GB, match_gpu, peak_tflops

    for key, accelerator in ACCELERATORS.items():
        assert accelerator.peak_flops == {p: PEAK_TFLOPS[key][p] * 1e12 for p in ("fp32", "bf16")}
        assert accelerator.memory == MEMORY_GB[key] * 1e9
    assert match_gpu("NVIDIA H100 PCIe") == "H100 PCIe" and match_gpu("NVIDIA H100 80GB HBM3") == "H100"
    assert peak_tflops("Tesla T4", "bf16") is None and peak_tflops("Tesla T4", "fp16") == 65.0
    assert peak_tflops("a CPU", "fp32") is None
