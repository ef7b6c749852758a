"""Tests of lmbook.scaling: power-law fits recover known exponents, the Chinchilla law and its compute optimum."""

import math

import numpy as np
import pytest
import torch

from lmbook.cost import training_flops
from lmbook.language_model import LMTrainConfig
from lmbook.scaling import (
    CHINCHILLA,
    KAPLAN_ALPHA_C,
    KAPLAN_ALPHA_N,
    TOKENS_PER_PARAMETER,
    ChinchillaLaw,
    ScalingRun,
    chinchilla_loss,
    compute_frontier,
    compute_optimal,
    family_configs,
    fit_power_law,
    fit_power_law_offset,
    format_runs,
    train_family,
)
from lmbook.transformer import count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = np.logspace(3, 7, 9)  # 1e3 .. 1e7, like a family of models


# --- the pure power law -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [KAPLAN_ALPHA_N, KAPLAN_ALPHA_C, 0.34, 1.0])
def test_power_law_recovers_exact_exponent_and_constant(alpha):
    fit = fit_power_law(SIZES, 7.5 * SIZES**-alpha)
    assert fit.exponent == pytest.approx(alpha, abs=1e-12)
    assert fit.constant == pytest.approx(7.5, rel=1e-10)
    assert fit.irreducible == 0.0 and fit.irreducible_interval is None
    assert fit.exponent_interval[0] == pytest.approx(alpha) and fit.exponent_interval[1] == pytest.approx(alpha)
    np.testing.assert_allclose(fit.predict(SIZES), 7.5 * SIZES**-alpha, rtol=1e-10)


def test_power_law_matches_numpy_polyfit_on_noisy_data():
    rng = np.random.default_rng(1)
    y = 4.0 * SIZES**-0.076 * np.exp(rng.normal(0, 0.02, len(SIZES)))
    slope, intercept = np.polyfit(np.log(SIZES), np.log(y), 1)
    fit = fit_power_law(SIZES, y)
    assert fit.exponent == pytest.approx(-slope, rel=1e-10)
    assert fit.constant == pytest.approx(math.exp(intercept), rel=1e-10)


def test_power_law_interval_covers_true_exponent_at_about_its_level():
    """Over 200 noisy data sets the 90% t interval holds the true exponent about 90% of the time."""
    rng = np.random.default_rng(0)
    x = np.logspace(3, 6, 6)
    covered = 0
    for _ in range(200):
        y = 3.0 * x**-0.076 * np.exp(rng.normal(0, 0.01, len(x)))
        lo, hi = fit_power_law(x, y, confidence=0.9).exponent_interval
        covered += lo <= 0.076 <= hi
    assert 0.83 <= covered / 200 <= 0.96  # binomial(200, 0.9): 3 standard deviations is about 0.064


def test_power_law_interval_widens_with_noise():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, len(SIZES))
    widths = []
    for scale in (0.001, 0.01, 0.1):
        lo, hi = fit_power_law(SIZES, 2.0 * SIZES**-0.1 * np.exp(scale * noise)).exponent_interval
        widths.append(hi - lo)
    assert widths[0] < widths[1] < widths[2]
    assert widths[1] == pytest.approx(10 * widths[0], rel=1e-6)  # linear in the noise: the t interval's form


# --- with an irreducible loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("E", "A", "alpha"), [(1.69, 406.4, 0.34), (2.0, 5.0, 0.076), (0.5, 30.0, 0.7)])
def test_offset_fit_recovers_exact_constants(E, A, alpha):
    fit = fit_power_law_offset(SIZES, E + A * SIZES**-alpha, n_bootstrap=20)
    assert fit.exponent == pytest.approx(alpha, abs=1e-5)
    assert fit.irreducible == pytest.approx(E, abs=1e-5)
    assert fit.constant == pytest.approx(A, rel=1e-3)
    assert fit.rms_residual < 1e-6 and not fit.at_bound


def test_offset_fit_with_noise_brackets_the_truth_and_beats_the_pure_law():
    rng = np.random.default_rng(3)
    x = np.logspace(3, 6, 8)
    truth = 1.69 + 406.4 * x**-0.34
    y = truth + rng.normal(0, 0.01, len(x))
    fit = fit_power_law_offset(x, y, n_bootstrap=300, seed=0)
    assert fit.exponent_interval[0] <= 0.34 <= fit.exponent_interval[1]
    assert fit.irreducible_interval[0] <= 1.69 <= fit.irreducible_interval[1]
    assert abs(fit.exponent - 0.34) < 0.03
    # With a floor in the data, the pure power law bends and finds a smaller exponent.
    assert fit_power_law(x, y).exponent < fit.exponent - 0.03
    np.testing.assert_allclose(fit.predict(x), truth, atol=0.02)


def test_offset_fit_bootstrap_is_reproducible_and_seeded():
    rng = np.random.default_rng(4)
    y = 2.0 + 10.0 * SIZES**-0.2 + rng.normal(0, 0.01, len(SIZES))
    a = fit_power_law_offset(SIZES, y, n_bootstrap=50, seed=0)
    b = fit_power_law_offset(SIZES, y, n_bootstrap=50, seed=0)
    c = fit_power_law_offset(SIZES, y, n_bootstrap=50, seed=1)
    assert a == b and a.exponent == c.exponent and a.exponent_interval != c.exponent_interval


def test_offset_fit_flags_an_exponent_at_the_edge_of_its_range():
    y = 1.0 + 5.0 * SIZES**-0.5
    assert fit_power_law_offset(SIZES, y, n_bootstrap=0, exponent_bounds=(0.0, 0.2)).at_bound


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit", [fit_power_law, fit_power_law_offset])
def test_fits_reject_non_positive_values(fit):
    with pytest.raises(ValueError, match="n_params must be positive.*got -1"):
        fit([1e3, -1.0, 1e5, 1e6], [3.0, 2.0, 1.0, 0.5], x_name="n_params")
    with pytest.raises(ValueError, match="val_loss must be positive.*got 0"):
        fit([1e3, 1e4, 1e5, 1e6], [3.0, 2.0, 0.0, 0.5], y_name="val_loss")
    with pytest.raises(ValueError, match="y must be finite"):
        fit([1e3, 1e4, 1e5, 1e6], [3.0, float("nan"), 1.0, 0.5])


def test_fits_reject_too_few_points():
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        fit_power_law([1e3, 1e4], [3.0, 2.0])
    with pytest.raises(ValueError, match="at least 4 points, got 3"):
        fit_power_law_offset([1e3, 1e4, 1e5], [3.0, 2.0, 1.5])


def test_fits_reject_mismatched_or_constant_input():
    with pytest.raises(ValueError, match="same length, got 4 and 3"):
        fit_power_law([1e3, 1e4, 1e5, 1e6], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="at least two different values"):
        fit_power_law([1e3, 1e3, 1e3], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"1-d sequence.*shape \(2, 2\)"):
        fit_power_law([[1e3, 1e4], [1e5, 1e6]], [3.0, 2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        fit_power_law(SIZES, SIZES**-0.1, confidence=95)
    with pytest.raises(ValueError, match="exponent_bounds"):
        fit_power_law_offset(SIZES, SIZES**-0.1, exponent_bounds=(1.0, 0.5))


# --- the Chinchilla law and the compute optimum ----------------------------------------------------------------


def test_chinchilla_loss_is_the_published_formula():
    assert (CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta) == (
        1.69,
        406.4,
        410.7,
        0.34,
        0.28,
    )
    N, D = 70e9, 1.4e12  # Chinchilla itself
    assert chinchilla_loss(N, D) == pytest.approx(1.69 + 406.4 / N**0.34 + 410.7 / D**0.28, rel=1e-12)
    np.testing.assert_allclose(chinchilla_loss(np.array([1e9, 1e10]), 1e11), [chinchilla_loss(1e9, 1e11),
                                                                              chinchilla_loss(1e10, 1e11)])  # fmt: skip
    with pytest.raises(ValueError, match="n_tokens must be positive"):
        chinchilla_loss(1e9, 0)


@pytest.mark.parametrize("flops", [1e18, 5.76e23, 1e26])
def test_compute_optimal_spends_the_budget_and_follows_the_ratio(flops):
    n, d = compute_optimal(flops, rule="ratio")
    assert training_flops(n, d) == pytest.approx(flops, rel=1e-12)
    assert d / n == pytest.approx(TOKENS_PER_PARAMETER, rel=1e-12)
    n, d = compute_optimal(flops, rule="ratio", tokens_per_parameter=5.0)
    assert d / n == pytest.approx(5.0) and 6 * n * d == pytest.approx(flops)


@pytest.mark.parametrize("flops", [1e18, 5.76e23, 1e26])
def test_compute_optimal_fit_is_the_minimum_along_the_budget(flops):
    n, d = compute_optimal(flops, rule="fit")
    assert 6 * n * d == pytest.approx(flops, rel=1e-12)
    # Along 6 N D = flops, the loss at any other size is higher.
    best = chinchilla_loss(n, d)
    for factor in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
        assert chinchilla_loss(n * factor, d / factor) > best
    # And the closed form agrees with a brute-force search over sizes.
    sizes = np.geomspace(n / 100, n * 100, 20001)
    assert sizes[np.argmin(chinchilla_loss(sizes, flops / (6 * sizes)))] == pytest.approx(n, rel=1e-3)


def test_compute_optimal_grows_model_and_data_with_the_fitted_exponents():
    n1, d1 = compute_optimal(1e20)
    n2, d2 = compute_optimal(1e22)
    a, b = CHINCHILLA.alpha, CHINCHILLA.beta
    assert math.log(n2 / n1) / math.log(100) == pytest.approx(b / (a + b))
    assert math.log(d2 / d1) / math.log(100) == pytest.approx(a / (a + b))
    # A law with equal exponents and constants has the optimum at D = N.
    n, d = compute_optimal(6e20, law=ChinchillaLaw(E=1.0, A=100.0, B=100.0, alpha=0.3, beta=0.3))
    assert n == pytest.approx(1e10) and d == pytest.approx(1e10)


def test_compute_optimal_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown rule 'kaplan'; choose one of 'fit', 'ratio'"):
        compute_optimal(1e20, rule="kaplan")
    with pytest.raises(ValueError, match="flops must be a positive number, got -1"):
        compute_optimal(-1.0)
    with pytest.raises(ValueError, match="tokens_per_parameter must be positive"):
        compute_optimal(1e20, rule="ratio", tokens_per_parameter=0)


# --- the family ---------------------------------------------------------------------------------------------------


def test_family_configs_vary_only_the_width():
    configs = family_configs(50, [8, 16, 32, 64])
    assert [c.d_model for c in configs] == [8, 16, 32, 64]
    assert [c.n_heads for c in configs] == [1, 1, 2, 4]
    assert {(c.n_layers, c.max_len, c.vocab_size) for c in configs} == {(2, 64, 50)}
    assert family_configs(50, [48])[0].n_heads == 3
    with pytest.raises(ValueError, match="d_model=50 does not split into 3 heads of about 16"):
        family_configs(50, [50])


def test_train_family_rows_count_and_budget():
    torch.manual_seed(0)
    ids = torch.randint(0, 20, (4000,))
    data = (ids[:3500], ids[3500:])
    configs = family_configs(20, [8, 16], max_len=16)
    runs = train_family(configs, data, LMTrainConfig.cpu(steps=3, batch_size=4, log_every=3, eval_batches=1),
                        seeds=(0, 1))  # fmt: skip
    assert [(r.d_model, r.seed) for r in runs] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for run, config in zip(runs[::2], configs, strict=True):
        counts = count_parameters(config)
        assert (run.n_params, run.non_embedding) == (counts["total"], counts["non_embedding"])
        assert run.n_tokens == 3 * 4 * 16
        assert run.flops == 6 * run.non_embedding * run.n_tokens
        assert run.val_loss > 0 and run.train_loss > 0 and run.seconds > 0
    assert runs[0].val_loss != runs[1].val_loss  # the seed changes the run
    assert runs[0].curve_tokens == (3 * 4 * 16,) and runs[0].curve_val_loss == (runs[0].val_loss,)
    table = format_runs(runs)
    assert len(table.splitlines()) == 5 and "non-emb." in table
    with pytest.raises(ValueError, match=r"data must be \(train, val\)"):
        train_family(configs, ids, LMTrainConfig.cpu(steps=1))


def _run(non_embedding, tokens, losses):
    return ScalingRun(8, 2, 0, 2 * non_embedding, non_embedding, tokens[-1], 6.0 * non_embedding * tokens[-1],
                      losses[-1], losses[-1], 1.0, tuple(tokens), tuple(losses))  # fmt: skip


def test_compute_frontier_keeps_the_lowest_loss_for_each_compute():
    small = _run(100, [10, 20, 30], [3.0, 2.5, 2.4])  # flops 6e3, 1.2e4, 1.8e4
    large = _run(1000, [10, 20, 30], [2.8, 2.2, 2.0])  # flops 6e4, 1.2e5, 1.8e5
    flops, loss = compute_frontier([large, small])
    np.testing.assert_allclose(flops, [6e3, 1.2e4, 1.8e4, 1.2e5, 1.8e5])  # the large model's 2.8 at 6e4 is beaten
    np.testing.assert_allclose(loss, [3.0, 2.5, 2.4, 2.2, 2.0])
    assert np.all(np.diff(loss) < 0)
    with pytest.raises(ValueError, match="no learning curves"):
        compute_frontier([ScalingRun(8, 2, 0, 200, 100, 30, 1.0, 2.0, 2.0, 1.0)])
    bad = ScalingRun(8, 2, 0, 200, 100, 30, 1.0, 2.0, 2.0, 1.0, (10, 20), (3.0,))
    with pytest.raises(ValueError, match="differ in length"):
        compute_frontier([bad])
