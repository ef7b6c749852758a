"""Tests of lmbook.model_parallel: the tensor-parallel feed-forward network and the pipeline schedules.

The tensor-parallel layers run in two real processes (``lmbook.launch.run_workers``) and must equal the unsplit
``lmbook.transformer.FeedForward`` and causal ``lmbook.attention.MultiHeadAttention`` in float64, in the output
and in every gradient (the input's, and each process' shard of each weight and bias), with exactly one all-reduce
forward and one backward per layer. The schedules
are checked as tables: every operation once, no operation before what it needs, the idle share equal to
``(p - 1) / (m + p - 1)``, and the activations each stage holds.
"""

import pytest
import torch
from torch import nn

from lmbook.attention import MultiHeadAttention
from lmbook.launch import run_workers
from lmbook.model_parallel import (
    ColumnParallelLinear,
    RowParallelLinear,
    TensorParallelAttention,
    TensorParallelFeedForward,
    activations_in_flight,
    bubble_fraction,
    pipeline_schedule,
    schedule_bubble,
)
from lmbook.testing import ShapeError
from lmbook.transformer import FeedForward

LINEARS = {"feed_forward": ("fc1", "fc2"), "attention": ("W_q", "W_k", "W_v", "W_o")}


def test_tensor_parallel_layers_equal_the_unsplit_layers_in_two_processes():
    d_model, d_ff, n_heads, batch_size, max_len = 8, 24, 4, 3, 5
    results = run_workers(
        "lmbook.model_parallel:tensor_parallel_check",
        nprocs=2,
        timeout=120,
        d_model=d_model,
        d_ff=d_ff,
        n_heads=n_heads,
        batch_size=batch_size,
        max_len=max_len,
    )
    assert [r["rank"] for r in results] == [0, 1]
    for result in results:
        for layer, linears in LINEARS.items():
            checked = result[layer]
            gaps = ["out", "grad_x"] + [f"grad_{name}_{p}" for name in linears for p in ("weight", "bias")]
            assert {key for key in checked if key.startswith(("out", "grad_"))} == set(gaps)  # nothing unchecked
            for name in gaps:
                assert checked[name] < 1e-12, (result["rank"], layer, name, checked[name])
            assert checked["allreduce_forward"] == 1 and checked["allreduce_backward"] == 1
            assert checked["numel_forward"] == checked["numel_backward"] == batch_size * max_len * d_model
        # fc1's weight and bias and fc2's weight are halved; fc2's bias (d_model) is kept whole
        assert result["feed_forward"]["params_local"] == d_model * d_ff + d_ff // 2 + d_model
        assert result["feed_forward"]["params_full"] == 2 * d_model * d_ff + d_ff + d_model
        # W_q, W_k, W_v halved with their biases, W_o's weight halved, its bias whole
        assert result["attention"]["params_local"] == 2 * d_model * d_model + 3 * d_model // 2 + d_model


def test_shards_hold_the_right_slices():
    full = nn.Linear(4, 6)
    column = ColumnParallelLinear(full, rank=1, world_size=2)
    assert torch.equal(column.weight, full.weight[3:]) and torch.equal(column.bias, full.bias[3:])
    row = RowParallelLinear(nn.Linear(6, 4), rank=0, world_size=3)
    assert row.weight.shape == (4, 2) and row.bias.shape == (4,)


def test_bad_splits_and_shapes_are_named():
    with pytest.raises(ValueError, match="out_features=6 must be divisible by world_size=4"):
        ColumnParallelLinear(nn.Linear(4, 6), rank=0, world_size=4)
    with pytest.raises(ValueError, match="in_features=6 must be divisible by world_size=4"):
        RowParallelLinear(nn.Linear(6, 4), rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size\), got rank=2, world_size=2"):
        ColumnParallelLinear(nn.Linear(4, 6), rank=2, world_size=2)
    with pytest.raises(ValueError, match="needs dropout 0"):
        TensorParallelFeedForward(FeedForward(4, 8, dropout=0.1), rank=0, world_size=2)
    with pytest.raises(ValueError, match="n_heads=3 must be divisible by world_size=2"):
        TensorParallelAttention(MultiHeadAttention(6, 3), rank=0, world_size=2)
    with pytest.raises(ShapeError):  # the shape is checked before any communication
        ColumnParallelLinear(nn.Linear(4, 6), rank=0, world_size=2)(torch.zeros(2, 5))
    with pytest.raises(ShapeError):
        RowParallelLinear(nn.Linear(6, 4), rank=0, world_size=2)(torch.zeros(2, 6))


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("n_stages", "n_micro"), [(1, 1), (1, 5), (2, 1), (2, 3), (4, 4), (4, 8), (3, 7), (8, 2)])
def test_schedule_table_is_complete_ordered_and_has_the_formulas_bubble(schedule, n_stages, n_micro):
    rows = pipeline_schedule(n_stages, n_micro, schedule)
    when = {(r.phase, r.stage, r.micro): r.step for r in rows}
    assert len(rows) == len(when) == 2 * n_stages * n_micro  # every forward and backward exactly once
    assert len({(r.stage, r.step) for r in rows}) == len(rows)  # one operation per stage per step
    for (phase, stage, micro), step in when.items():
        if phase == "F" and stage > 0:
            assert when["F", stage - 1, micro] < step
        if phase == "B":
            assert when["F", stage, micro] < step
            if stage < n_stages - 1:
                assert when["B", stage + 1, micro] < step
    assert 1 + max(r.step for r in rows) == 2 * (n_micro + n_stages - 1)
    assert schedule_bubble(rows) == pytest.approx(bubble_fraction(n_stages, n_micro), abs=1e-12)


def test_bubble_fraction_values_and_errors():
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert bubble_fraction(1, 10) == 0.0
    assert bubble_fraction(4, 1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="n_micro must be a positive integer, got 0"):
        bubble_fraction(4, 0)
    with pytest.raises(ValueError, match="n_stages must be a positive integer"):
        bubble_fraction(2.5, 4)
    with pytest.raises(ValueError, match="unknown schedule 'pipedream'; choose one of 'gpipe', '1f1b'"):
        pipeline_schedule(2, 2, "pipedream")


@pytest.mark.parametrize(("n_stages", "n_micro"), [(4, 8), (4, 2), (3, 3), (1, 4)])
def test_activations_in_flight(n_stages, n_micro):
    assert activations_in_flight(pipeline_schedule(n_stages, n_micro, "gpipe")) == [n_micro] * n_stages
    expected = [min(n_stages - stage, n_micro) for stage in range(n_stages)]
    assert activations_in_flight(pipeline_schedule(n_stages, n_micro, "1f1b")) == expected
