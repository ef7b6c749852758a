"""Tests for lmbook.bias: the counterfactual gap on score functions whose gap is known."""

import numpy as np
import pytest

from lmbook.bias import counterfactual_gap, fill_templates

TEMPLATES = ["My {x} made dinner.", "The {x} is here.", "I called my {x} today.", "Our {x} likes music."]
GROUPS = {"a": ["sister", "mother", "aunt"], "b": ["brother", "father", "uncle"]}


def test_fill_templates_order():
    assert fill_templates(["a {x}.", "b {x}!"], ["u", "v"]) == ["a u.", "a v.", "b u!", "b v!"]


def test_a_score_that_ignores_the_word_has_no_gap():
    r = counterfactual_gap(lambda s: np.full(len(s), 0.7), TEMPLATES, GROUPS, n_boot=200)
    assert r["mean_gap"] == 0.0 and r["ci"] == (0.0, 0.0)
    assert not r["excludes_zero"]


def test_a_known_gap_is_found_and_per_template_gaps_are_computed_by_hand():
    group_a = set(GROUPS["a"])

    def score(sentences):
        return np.array([0.6 + 0.1 * any(w in s.split() for w in group_a) + 0.01 * len(s) for s in sentences])

    r = counterfactual_gap(score, TEMPLATES, GROUPS, n_boot=500)
    for t, gap in zip(TEMPLATES, r["per_template"], strict=True):
        a = np.mean(score([t.replace("{x}", w) for w in GROUPS["a"]]))
        b = np.mean(score([t.replace("{x}", w) for w in GROUPS["b"]]))
        assert gap == pytest.approx(a - b)
    assert r["mean_gap"] == pytest.approx(np.mean(r["per_template"]))
    assert r["ci"][0] <= r["mean_gap"] <= r["ci"][1]
    assert r["excludes_zero"] and r["ci"][0] > 0
    assert r["scores"]["a"].shape == (4, 3)
    again = counterfactual_gap(score, TEMPLATES, GROUPS, n_boot=500)
    assert again["ci"] == r["ci"]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="two groups"):
        counterfactual_gap(lambda s: np.zeros(len(s)), TEMPLATES, {"a": ["x"]})
    with pytest.raises(ValueError, match="slot"):
        counterfactual_gap(lambda s: np.zeros(len(s)), ["no slot"], GROUPS)
    with pytest.raises(ValueError, match="one score per sentence"):
        counterfactual_gap(lambda s: np.zeros(2), TEMPLATES, GROUPS)


def test_fixed_words_give_the_template_only_bootstrap():
    # a gap that depends on the word only: resampling templates alone sees no variation at all
    gaps = {"sister": 0.3, "mother": 0.0, "aunt": 0.15}

    def score(sentences):
        return np.array([next((v for w, v in gaps.items() if w in s), 0.0) for s in sentences])

    fixed = counterfactual_gap(score, TEMPLATES, GROUPS, n_boot=300, resample_words=False)
    assert fixed["ci"] == pytest.approx((0.15, 0.15))
    both = counterfactual_gap(score, TEMPLATES, GROUPS, n_boot=300)
    assert both["ci"][0] < 0.15 < both["ci"][1]
