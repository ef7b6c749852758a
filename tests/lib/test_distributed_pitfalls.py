"""Tests of lmbook.distributed_pitfalls: each pitfall's worker shows the mistake in numbers, and its fix.

The workers run in two real processes (``lmbook.launch.run_workers``, about 5 s each). The reports they feed are
also checked on hand-made inputs, so a wrong count is caught without launching anything.
"""

import pytest
import torch

from lmbook.distributed_pitfalls import drifting_validation_set, global_batch_report
from lmbook.launch import run_workers


def test_without_a_sampler_every_process_reads_the_same_examples():
    n_examples = 32  # batches of 8 (the worker's default) in each of the 2 processes
    results = run_workers("lmbook.distributed_pitfalls:sampled_indices", n_examples=n_examples)
    same = [r["no_sampler"] for r in results]
    split = [r["distributed_sampler"] for r in results]
    assert same[0] == same[1]  # the same shuffle in both processes
    wrong, right = global_batch_report(same, n_examples), global_batch_report(split, n_examples)
    assert wrong["global_batch"] == right["global_batch"] == 2 * 8 and wrong["steps_per_epoch"] == 2
    assert wrong["duplicates_first_step"] == 8 and wrong["coverage"] == 0.5
    assert right["duplicates_first_step"] == 0 and right["coverage"] == 1.0
    assert sorted(i for batches in split for batch in batches for i in batch) == list(range(n_examples))


def test_global_batch_report_on_hand_made_indices():
    per_rank = [[[0, 1], [2, 3]], [[0, 5], [6, 7]]]
    report = global_batch_report(per_rank, n_examples=8)
    assert report == {
        "global_batch": 4,
        "steps_per_epoch": 2,
        "duplicates_first_step": 1,
        "distinct_in_epoch": 7,
        "coverage": 7 / 8,
    }
    with pytest.raises(ValueError, match="at least one process"):
        global_batch_report([], n_examples=8)


def test_a_metric_from_rank_0_or_a_mean_of_means_is_biased_and_the_weighted_one_is_exact():
    results = run_workers("lmbook.distributed_pitfalls:sharded_metrics", shard_sizes=(300, 700))
    rank0 = results[0]
    assert [r["n_local"] for r in results] == [300, 700]
    for key in ("accuracy", "loss"):
        assert rank0["weighted"][key] == pytest.approx(rank0["single"][key], abs=1e-12)
        assert results[1]["weighted"][key] == pytest.approx(rank0["single"][key], abs=1e-12)
    assert rank0["rank0"]["accuracy"] - rank0["single"]["accuracy"] > 0.05  # the easy first shard flatters
    assert rank0["mean_of_means"]["accuracy"] - rank0["single"]["accuracy"] > 0.01  # equal votes, unequal shards


def test_drifting_validation_set_gets_harder_along_the_file():
    x, y = drifting_validation_set(2000, seed=1)
    correct = ((x > 0).double() == y).double()
    assert x.shape == y.shape == (2000,) and x.dtype == torch.float64
    assert correct[:500].mean() > correct[-500:].mean() + 0.2


def test_the_loss_scaled_twice_gives_a_gradient_k_or_p_times_too_small():
    accum_steps = 3
    results = run_workers("lmbook.distributed_pitfalls:accumulated_gradients", accum_steps=accum_steps, batch_size=4)
    for result in results:
        assert result["global_batch"] == 4 * 2 * accum_steps
        assert result["right"]["max_error"] < 1e-12
        assert result["divided_by_k_again"]["ratio"] == pytest.approx(accum_steps, rel=1e-9)
        assert result["divided_by_world_size_again"]["ratio"] == pytest.approx(2, rel=1e-9)
        assert result["divided_by_k_again"]["max_error"] > 1e-3
