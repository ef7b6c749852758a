"""Reference tests for lmbook.privacy: per-example losses against torch, the loss-threshold attack by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmbook.metrics import roc_auc
from lmbook.privacy import (
    attack_auc,
    attack_roc,
    best_threshold,
    bootstrap_interval,
    example_losses,
    threshold_attack,
)


def test_example_losses_match_torch_cross_entropy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4, dtype=torch.float64), torch.nn.Dropout(0.5))
    model.train()
    x = np.random.default_rng(0).normal(size=(10, 5))
    y = np.arange(10) % 4
    losses = example_losses(model, x, y, batch_size=3)
    assert model.training
    model.eval()
    expected = F.cross_entropy(model(torch.tensor(x)), torch.tensor(y), reduction="none")
    np.testing.assert_allclose(losses, expected.detach().numpy(), rtol=1e-12)
    assert losses.shape == (10,)


def test_threshold_attack_counts_losses_below_the_threshold():
    members = np.array([0.1, 0.2, 0.3, 2.0])
    nonmembers = np.array([0.25, 1.0, 3.0, 4.0, 5.0])
    r = threshold_attack(members, nonmembers, 0.3)
    assert r["tpr"] == pytest.approx(2 / 4)  # 0.3 is not below 0.3
    assert r["fpr"] == pytest.approx(1 / 5)
    assert r["advantage"] == pytest.approx(0.5 - 0.2)
    assert r["accuracy"] == pytest.approx((0.5 + 0.8) / 2)


def test_best_threshold_is_the_best_over_a_fine_grid():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.exponential(0.5, 50), rng.exponential(1.0, 70)
    best = best_threshold(members, nonmembers)
    grid = np.linspace(0, 10, 20001)
    grid_best = max(threshold_attack(members, nonmembers, t)["advantage"] for t in grid)
    assert best["advantage"] == pytest.approx(grid_best)
    assert best == threshold_attack(members, nonmembers, best["threshold"])


def test_no_leak_gives_no_advantage_and_auc_near_one_half():
    same = np.linspace(0.1, 1.0, 40)
    assert best_threshold(same, same)["advantage"] == 0.0
    assert attack_auc(same, same) == pytest.approx(0.5)


def test_auc_and_roc_against_the_metrics_module_and_a_count():
    rng = np.random.default_rng(2)
    m, n = rng.exponential(0.5, 30), rng.exponential(1.0, 40)
    pairs = np.mean((m[:, None] < n[None, :]) + 0.5 * (m[:, None] == n[None, :]))
    assert attack_auc(m, n) == pytest.approx(pairs)
    labels = np.r_[np.ones(30), np.zeros(40)].astype(int)
    assert attack_auc(m, n) == pytest.approx(roc_auc(labels, -np.r_[m, n]))
    fpr, tpr = attack_roc(m, n)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    m, n = rng.exponential(0.5, 60), rng.exponential(1.0, 60)
    low, high = bootstrap_interval(attack_auc, m, n, n_boot=300)
    assert low < attack_auc(m, n) < high
    assert (low, high) == bootstrap_interval(attack_auc, m, n, n_boot=300)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="member_losses"):
        threshold_attack(np.array([]), np.array([1.0]), 0.5)
    with pytest.raises(ValueError, match="nonmember_losses"):
        attack_auc(np.array([1.0]), np.array([np.nan]))


def test_paired_bootstrap_resamples_rows_together():
    rng = np.random.default_rng(4)
    m = rng.exponential(0.5, (50, 1))
    n = rng.exponential(1.0, (60, 1))
    both_m, both_n = np.hstack([m, m]), np.hstack([n, n])  # two identical models: every difference is exactly 0
    low, high = bootstrap_interval(
        lambda a, b: attack_auc(a[:, 0], b[:, 0]) - attack_auc(a[:, 1], b[:, 1]), both_m, both_n, n_boot=100
    )
    assert low == high == 0.0
    with pytest.raises(ValueError, match="same columns"):
        bootstrap_interval(attack_auc, both_m, n, n_boot=10)
