"""lmbook.data_parallel: DDP and FSDP2 on two processes equal one process trained on the combined batch."""

import pytest
import torch

from lmbook.data_parallel import (
    DataParallelConfig,
    max_weight_difference,
    token_windows,
    train_data_parallel,
)
from lmbook.launch import run_workers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = DataParallelConfig(steps=3, global_batch=8, seq_len=16, n_windows=64, dtype="float64")
TOLERANCE = 1e-10  # float64: the runs differ only in the order of additions (about 1e-13 after 3 AdamW steps)


@pytest.fixture(scope="module")
def single():
    return train_data_parallel("single", CONFIG)


@pytest.fixture(scope="module")
def two_processes():
    return run_workers("lmbook.data_parallel:compare_strategies", nprocs=2, timeout=120, config=CONFIG)


def test_ddp_on_two_processes_equals_one_process_on_the_combined_batch(single, two_processes):
    ddp = [result["ddp"] for result in two_processes]
    assert [r["rank"] for r in ddp] == [0, 1] and all(r["world_size"] == 2 for r in ddp)
    assert ddp[0]["backend"] == ("nccl" if torch.cuda.device_count() >= 2 else "gloo") and single["backend"] is None
    assert max_weight_difference(ddp[0]["weights"], single["weights"]) < TOLERANCE
    assert ddp[0]["losses"] == pytest.approx(single["losses"], abs=TOLERANCE)
    # every process applies the same averaged gradient: the copies stay identical to the last bit
    assert max_weight_difference(ddp[0]["weights"], ddp[1]["weights"]) == 0.0
    assert single["losses"][-1] < single["losses"][0]  # it trained


def test_fsdp_equals_ddp_and_holds_half_the_training_memory(two_processes):
    ddp, fsdp = two_processes[0]["ddp"], [result["fsdp"] for result in two_processes]
    assert max_weight_difference(fsdp[0]["weights"], ddp["weights"]) < TOLERANCE
    assert max_weight_difference(fsdp[1]["weights"], ddp["weights"]) == 0.0  # both gathered the same shards
    for part in ("weights", "gradients", "optimizer"):
        shards = [r["memory"][part] for r in fsdp]
        assert sum(shards) == ddp["memory"][part], part  # the shards together are exactly one full copy
        assert max(shards) <= 0.55 * ddp["memory"][part], part


def test_unsharded_memory_is_parameters_gradients_and_adams_two_states(single):
    n_params = sum(w.numel() for w in single["weights"].values())
    assert single["memory"] == {"weights": 8 * n_params, "gradients": 8 * n_params, "optimizer": 16 * n_params}


def test_a_different_global_batch_is_not_within_the_tolerance(single):
    # the check can fail: one process reading only its own share (4 windows) is a different run
    half = train_data_parallel("single", DataParallelConfig(**{**CONFIG.__dict__, "global_batch": 4}))
    assert max_weight_difference(half["weights"], single["weights"]) > 1e3 * TOLERANCE


def test_token_windows_are_consecutive_and_shifted_by_one():
    data = token_windows(torch.arange(20), seq_len=4, n_windows=3)
    x, y = data.tensors
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13]]
    torch.testing.assert_close(y, x + 1)
    with pytest.raises(ValueError, match="5 windows of 4 \\+ 1 tokens need 25 tokens, got 20"):
        token_windows(torch.arange(20), seq_len=4, n_windows=5)


def test_bad_runs_are_refused():
    with pytest.raises(RuntimeError, match="needs a process group: start it with lmbook.launch.run_workers"):
        train_data_parallel("ddp", CONFIG)
    with pytest.raises(ValueError, match="unknown strategy 'zero'"):
        train_data_parallel("zero", CONFIG)
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        DataParallelConfig(dtype="float16")
    with pytest.raises(ValueError, match="do not fit in n_windows=16"):
        DataParallelConfig(steps=3, global_batch=8, n_windows=16)
    with pytest.raises(ValueError, match="different parameters"):
        max_weight_difference({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
