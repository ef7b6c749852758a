"""Counterfactual template tests: does a classifier's score change when only a group word changes?

Introduced in chapter 11, Applications, challenges and the road ahead (section 4, "Bias, privacy and
robustness, measured"). Write neutral sentences with a slot, ``"My {x} friend made dinner tonight."``, fill the
slot with words that name one group or another (``"sister"``, ``"brother"``), and compare the model's scores:
anything that differs between the two filled sentences is caused by the word alone, because nothing else
changed. This is the method of benchmark sets such as the Equity Evaluation Corpus (Kiritchenko and Mohammad
2018).

:func:`fill_templates` writes the sentences; :func:`counterfactual_gap` scores them and reports the mean gap
between two groups with a bootstrap interval that resamples both the templates and the words of each group, so
that the interval reflects the book's choice of sentences and of words, which are samples too.
"""

from __future__ import annotations

import numpy as np


def _check_groups(groups) -> tuple[list[str], list[list[str]]]:
    if not isinstance(groups, dict) or len(groups) != 2:
        got = f"{len(groups)} groups" if isinstance(groups, dict) else type(groups).__name__
        raise ValueError(f"groups: expected a dict of exactly two groups {{name: [words]}}, got {got}")
    names = list(groups)
    words = [list(groups[k]) for k in names]
    for name, ws in zip(names, words, strict=True):
        if not ws or not all(isinstance(w, str) and w for w in ws):
            raise ValueError(f"group {name!r}: expected a non-empty list of non-empty words, got {ws!r}")
    return names, words


def _check_templates(templates) -> list[str]:
    templates = list(templates)
    if not templates:
        raise ValueError("templates: expected at least one template")
    for t in templates:
        if not isinstance(t, str) or t.count("{x}") != 1:
            raise ValueError(f"each template must be a string with exactly one '{{x}}' slot, got {t!r}")
    return templates


def fill_templates(templates, words) -> list[str]:
    """Every template filled with every word, template by template: ``[t0(w0), t0(w1), ..., t1(w0), ...]``.

    Args:
        templates: strings with exactly one ``{x}`` slot each. words: the words to put in the slot.
    """
    templates = _check_templates(templates)
    return [t.replace("{x}", w) for t in templates for w in words]


def counterfactual_gap(
    score_fn,
    templates,
    groups: dict,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    resample_words: bool = True,
) -> dict:
    """The mean difference in score between two groups of words put into the same templates.

    Args:
        score_fn: maps a list of ``S`` sentences to ``S`` scores (e.g. the probability of "positive").
        templates: ``T`` strings, each with one ``{x}`` slot.
        groups: ``{name_a: [words], name_b: [words]}``, exactly two groups; the gap is ``a - b``.
        n_boot: bootstrap rounds, >= 1. level: the interval's coverage in (0, 1). seed: seeds the resampling.
        resample_words: True (default) resamples the words of each group as well as the templates, for a claim
            about such words in general; False keeps the words fixed and resamples the templates only, for a claim
            about these very words (a narrower interval, and a narrower claim).

    Returns:
        A dict with
        ``"groups"``: ``(name_a, name_b)``;
        ``"mean_gap"``: the mean over templates of (mean score of group a's sentences - mean of group b's);
        ``"ci"``: ``(low, high)``, a percentile bootstrap interval for it: each round resamples the templates and
        (with ``resample_words``), independently, the words of each group, with replacement;
        ``"excludes_zero"``: whether the interval lies entirely on one side of 0;
        ``"per_template"``: the ``(T,)`` gaps of the single templates;
        ``"scores"``: ``{name: (T, W_name) array}``, every sentence's score.
    """
    templates = _check_templates(templates)
    names, words = _check_groups(groups)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    scores = {}
    for name, ws in zip(names, words, strict=True):
        sentences = fill_templates(templates, ws)
        s = np.asarray(score_fn(sentences), dtype=np.float64)
        if s.shape != (len(sentences),):
            raise ValueError(f"score_fn must return one score per sentence, shape ({len(sentences)},), got {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError("score_fn returned a NaN or infinite score")
        scores[name] = s.reshape(len(templates), len(ws))
    a, b = scores[names[0]], scores[names[1]]
    per_template = a.mean(axis=1) - b.mean(axis=1)
    rng = np.random.default_rng(seed)
    t, wa, wb = len(templates), a.shape[1], b.shape[1]
    boot = np.empty(n_boot)
    for i in range(n_boot):
        rows = rng.integers(0, t, t)
        ca = rng.integers(0, wa, wa) if resample_words else np.arange(wa)
        cb = rng.integers(0, wb, wb) if resample_words else np.arange(wb)
        boot[i] = np.mean(a[rows][:, ca].mean(axis=1) - b[rows][:, cb].mean(axis=1))
    low, high = (float(q) for q in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))
    return {
        "groups": (names[0], names[1]),
        "mean_gap": float(per_template.mean()),
        "ci": (low, high),
        "excludes_zero": bool(low > 0 or high < 0),
        "per_template": per_template,
        "scores": scores,
    }
