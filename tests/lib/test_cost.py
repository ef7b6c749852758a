"""Tests of lmbook.cost: FLOPs against torch's FLOP counter, bytes per number against torch's dtypes, training
memory and ZeRO's per-device memory against the ZeRO paper's worked example, days of training, and the published
training runs."""

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lmbook.cost import (
    ACCELERATORS,
    BYTES_PER_NUMBER,
    PUBLISHED_RUNS,
    backward_flops,
    forward_flops,
    training_days,
    training_flops,
    training_memory,
    zero_memory_per_device,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bytes_per_number_are_torchs_element_sizes():
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
    assert set(BYTES_PER_NUMBER) == set(dtypes)
    for name, dtype in dtypes.items():
        assert BYTES_PER_NUMBER[name] == torch.empty(0, dtype=dtype).element_size()


def test_flop_rules():
    assert forward_flops(10, 7) == 140
    assert backward_flops(10, 7) == 280
    assert training_flops(10, 7) == 420 == forward_flops(10, 7) + backward_flops(10, 7)


def _linear_stack():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16, bias=False), nn.Linear(16, 4, bias=False), nn.Linear(4, 8, bias=False))


def test_forward_and_backward_rules_equal_torchs_count_for_matrix_products():
    """For bias-free linear layers whose input needs a gradient, 2ND and 4ND are exact."""
    model = _linear_stack()
    n_params = sum(p.numel() for p in model.parameters())
    n_tokens = 5
    x = torch.randn(n_tokens, 8, requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    assert forward.get_total_flops() == forward_flops(n_params, n_tokens)
    assert backward.get_total_flops() == backward_flops(n_params, n_tokens)


def test_backward_of_the_first_layer_skips_its_input_gradient():
    """The rule's one over-count: with a plain data input, nothing needs dL/dx of the first layer."""
    model = _linear_stack()
    x = torch.randn(5, 8)  # no gradient wanted
    out = model(x)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    first = 2 * 5 * 8 * 16
    assert backward.get_total_flops() == backward_flops(sum(p.numel() for p in model.parameters()), 5) - first


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), "7", True])
def test_flop_rules_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="n_params must be a positive number"):
        training_flops(bad, 10)
    with pytest.raises(ValueError, match="n_tokens must be a positive number"):
        forward_flops(10, bad)


def test_training_memory_per_parameter():
    def per_param(precision, optimizer):
        memory = training_memory(1000, precision, optimizer)
        assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
        return {k: v / 1000 for k, v in memory.items()}

    parts = ("weights", "gradients", "optimizer", "master_weights", "total")
    assert per_param("fp32", "adam") == dict(zip(parts, (4, 4, 8, 0, 16), strict=True))
    # mixed precision: 2 + 2 for the 16-bit weights and gradients, 4 + 4 for Adam's fp32 m and v, 4 for the master
    assert per_param("mixed", "adam") == dict(zip(parts, (2, 2, 8, 4, 16), strict=True))
    assert per_param("bf16", "adam")["total"] == 8
    assert per_param("fp16", "adam")["total"] == 8
    assert per_param("fp32", "sgd")["total"] == 8
    assert per_param("fp32", "momentum")["total"] == 12
    assert per_param("mixed", "sgd")["total"] == 8


def test_training_memory_rejects_unknown_choices():
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of 'fp32', 'bf16', 'fp16', 'mixed'"):
        training_memory(10, "fp8")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        training_memory(10, "fp32", "lion")
    with pytest.raises(ValueError, match="n_params"):
        training_memory(-1)


def test_zero_matches_the_papers_worked_example():
    """Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 processes, Adam in mixed precision (K = 12):
    120 GB, 31.4 GB, 16.6 GB and 1.9 GB per device for stages 0-3."""
    gb = [zero_memory_per_device(7.5e9, 64, stage)["total"] / 1e9 for stage in range(4)]
    assert [round(x, 1) for x in gb] == [120.0, 31.4, 16.6, 1.9]


def test_zero_stages_shard_the_right_parts():
    full = training_memory(1000, "mixed")
    assert zero_memory_per_device(1000, 4, 0) == full
    assert zero_memory_per_device(1000, 1, 3) == full  # one process: nothing to shard
    s1, s2, s3 = (zero_memory_per_device(1000, 4, s) for s in (1, 2, 3))
    assert s1["optimizer"] == full["optimizer"] / 4 and s1["master_weights"] == full["master_weights"] / 4
    assert s1["gradients"] == full["gradients"] and s1["weights"] == full["weights"]
    assert s2["gradients"] == full["gradients"] / 4 and s2["weights"] == full["weights"]
    assert s3["weights"] == full["weights"] / 4 and s3["total"] == full["total"] / 4


def test_zero_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown ZeRO stage 4; choose one of 0, 1, 2, 3"):
        zero_memory_per_device(10, 2, 4)
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 0"):
        zero_memory_per_device(10, 0, 1)
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 2.5"):
        zero_memory_per_device(10, 2.5, 1)


def test_training_days():
    assert training_days(86_400.0, 1, 1.0, 1.0) == 1.0
    assert training_days(86_400.0 * 8, 2, 2.0, 0.5) == 4.0
    with pytest.raises(ValueError, match=r"utilisation must be in \(0, 1\], got 1.5"):
        training_days(1e20, 8, 1e14, 1.5)
    with pytest.raises(ValueError, match="n_devices must be a positive number"):
        training_days(1e20, 0, 1e14, 0.5)


def test_published_runs_are_reproduced():
    gpt3 = PUBLISHED_RUNS["GPT-3 175B"]
    assert math.isclose(gpt3.n_params, 175e9, rel_tol=0.01)  # 174.6 billion counted
    assert math.isclose(gpt3.flops, gpt3.published_flops, rel_tol=0.01)  # 3.14e23 in the paper's Table D.1
    for name in ("BERT-base", "BERT-large"):
        run = PUBLISHED_RUNS[name]
        assert math.isclose(run.n_params, run.published_params, rel_tol=0.02)
        assert run.n_tokens == 1_000_000 * 256 * 512
        assert run.flops == 6 * run.n_params * run.n_tokens


def test_chinchilla_uses_its_published_size_and_tokens():
    run = PUBLISHED_RUNS["Chinchilla 70B"]
    assert run.config is None and run.n_params == 70e9 and run.n_tokens == 1.4e12
    assert run.flops == pytest.approx(5.88e23)


def test_accelerator_peaks_by_precision():
    a100 = ACCELERATORS["A100"]
    assert a100.peak("fp32") == 19.5e12
    assert a100.peak("mixed") == a100.peak("bf16") == 312e12
    assert ACCELERATORS["H100"].peak("bf16") == 1979e12 / 2  # the datasheet's 1,979 is with sparsity
    with pytest.raises(ValueError, match="unknown precision 'tf32'"):
        a100.peak("tf32")
