"""lmbook.landmarks: the table of landmark models, its growth fits, and the Markdown it renders."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from lmbook import references
from lmbook.cost import PUBLISHED_RUNS, training_flops
from lmbook.landmarks import (
    FIELDS,
    KINDS,
    LANDMARKS,
    LARGE_THRESHOLD,
    Landmark,
    as_markdown_table,
    format_count,
    growth_fit,
)


def _by_name(name: str) -> Landmark:
    return next(lm for lm in LANDMARKS if lm.name == name)


def _synthetic(years, values, field="params") -> list[Landmark]:
    base = _by_name("GPT-3")
    return [
        replace(base, name=f"m{i}", year=int(y), **{field: float(v)})
        for i, (y, v) in enumerate(zip(years, values, strict=True))
    ]


def test_table_shape_and_order():
    assert 12 <= len(LANDMARKS) <= 18
    years = [lm.year for lm in LANDMARKS]
    assert years == sorted(years)
    assert len({lm.name for lm in LANDMARKS}) == len(LANDMARKS)
    assert LANDMARKS[0].name == "LeNet-5" and LANDMARKS[0].year == 1998
    assert {lm.kind for lm in LANDMARKS} <= set(KINDS)


def test_every_row_cites_a_bibliography_entry():
    bib = references.load()
    missing = [(lm.name, lm.cite) for lm in LANDMARKS if lm.cite not in bib]
    assert not missing, missing
    for lm in LANDMARKS:
        assert bib[lm.cite].year in (lm.year, lm.year + 1), f"{lm.name}: cited work of {bib[lm.cite].year}"


def test_published_runs_are_reused_not_retyped():
    gpt3, bert, chinchilla = _by_name("GPT-3"), _by_name("BERT-large"), _by_name("Chinchilla")
    assert gpt3.params == PUBLISHED_RUNS["GPT-3 175B"].n_params
    assert gpt3.tokens == PUBLISHED_RUNS["GPT-3 175B"].n_tokens
    assert gpt3.flops == PUBLISHED_RUNS["GPT-3 175B"].published_flops and gpt3.flops_source == "paper"
    assert bert.params == PUBLISHED_RUNS["BERT-large"].n_params
    assert bert.tokens == PUBLISHED_RUNS["BERT-large"].n_tokens
    assert chinchilla.params == 70e9 and chinchilla.tokens == 1.4e12


def test_stated_numbers():
    # Numbers the papers state, spot-checked (the notes name the tables).
    assert _by_name("LeNet-5").params == 60_000
    assert _by_name("AlexNet").params == 60e6
    assert _by_name("Transformer (big)").flops == 2.3e19
    assert _by_name("Llama 3 405B").flops == 3.8e25
    # counted sizes stay within 2% of the stated ones
    assert _by_name("GPT-3").params == pytest.approx(175e9, rel=0.02)
    assert _by_name("BERT-large").params == pytest.approx(340e6, rel=0.02)
    assert _by_name("GPT-2").params == pytest.approx(1542e6, rel=0.02)


def test_6nd_rows_use_training_flops():
    rows = [lm for lm in LANDMARKS if lm.flops_source == "6ND"]
    assert len(rows) >= 5
    for lm in rows:
        n = lm.active_params if lm.active_params is not None else lm.params
        assert lm.flops == pytest.approx(training_flops(n, lm.tokens), rel=1e-12), lm.name
    moe = _by_name("DeepSeek-V3")
    assert moe.kind == "moe" and moe.flops == pytest.approx(6 * 37e9 * 14.8e12)


def test_image_models_count_samples_not_tokens():
    for lm in LANDMARKS:
        if lm.kind == "cnn":
            assert lm.tokens is None and lm.samples is not None and lm.samples_unit == "images", lm.name
            assert lm.data_note


def test_flops_sources_are_known():
    for lm in LANDMARKS:
        if lm.flops is None:
            assert lm.flops_source == ""
        else:
            assert lm.flops_source in ("paper", "6ND") or lm.flops_source.startswith("estimate:")


def test_the_large_threshold():
    large = [lm for lm in LANDMARKS if lm.is_large]
    assert LARGE_THRESHOLD == 100e6
    assert all(lm.params >= 100e6 for lm in large)
    assert min(lm.year for lm in large) == 2014  # VGG-16 and the seq2seq LSTM


@pytest.mark.parametrize(
    "field,since", [("params", None), ("params", 2012), ("params", 2018), ("tokens", None), ("flops", 2015)]
)
def test_growth_fit_matches_polyfit(field, since):
    fit = growth_fit(LANDMARKS, field, since)
    rows = [lm for lm in LANDMARKS if getattr(lm, field) is not None and (since is None or lm.year >= since)]
    x = np.array([lm.year for lm in rows], dtype=float)
    y = np.log10([getattr(lm, field) for lm in rows])
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.r_squared == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-9)
    assert len(fit.rows) == len(rows)
    assert fit.factor_per_year == pytest.approx(10**slope)
    assert fit.doubling_months == pytest.approx(12 * math.log10(2) / slope)
    assert fit.predict(2020.0) == pytest.approx(10 ** (intercept + slope * 2020.0))


def test_growth_fit_recovers_an_exact_exponential():
    # Doubling every 18 months from 1000 in 2000: log10 v = log10 1000 + (year - 2000) log10(2) / 1.5.
    years = [2000, 2003, 2004, 2009, 2012]
    values = [1000 * 2 ** ((y - 2000) / 1.5) for y in years]
    fit = growth_fit(_synthetic(years, values), "params")
    assert fit.doubling_months == pytest.approx(18.0, rel=1e-12)
    assert fit.factor_per_year == pytest.approx(2 ** (1 / 1.5), rel=1e-12)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.predict(2000) == pytest.approx(1000.0, rel=1e-9)


def test_growth_fit_of_a_falling_value_never_doubles():
    fit = growth_fit(_synthetic([2000, 2001, 2002], [100.0, 10.0, 1.0]), "params")
    assert fit.slope == pytest.approx(-1.0) and fit.doubling_months == math.inf


def test_growth_fit_since_filters_rows():
    fit = growth_fit(LANDMARKS, "params", since=2018)
    assert all(lm.year >= 2018 for lm in fit.rows)
    assert [lm.year for lm in fit.rows] == sorted(lm.year for lm in fit.rows)


def test_growth_fit_errors_name_the_field():
    with pytest.raises(ValueError, match="field"):
        growth_fit(LANDMARKS, "parameters")
    with pytest.raises(ValueError, match="'tokens'.*got 1"):
        growth_fit(LANDMARKS[:7], "tokens")  # only BERT-large states tokens before GPT-2
    with pytest.raises(ValueError, match="'flops'.*got 0"):
        growth_fit(LANDMARKS, "flops", since=2030)
    with pytest.raises(ValueError, match="two years"):
        growth_fit(_synthetic([2020, 2020], [1.0, 2.0]), "params")
    assert set(FIELDS) >= {"params", "tokens", "flops"}


def test_landmark_rejects_bad_rows():
    row = LANDMARKS[0]
    with pytest.raises(ValueError, match="kind"):
        replace(row, kind="transformer")
    with pytest.raises(ValueError, match="params"):
        replace(row, params=0.0)
    with pytest.raises(ValueError, match="flops_source"):
        replace(row, flops=1e18, flops_source="")
    with pytest.raises(ValueError, match="flops_source"):
        replace(row, flops=None, flops_source="paper")


def test_format_count():
    assert [format_count(x) for x in (60_000, 1.2e6, 138e6, 1.558e9, 14.8e12, 512)] == [
        "60K",
        "1.2M",
        "138M",
        "1.56B",
        "14.8T",
        "512",
    ]


def test_markdown_table():
    text = as_markdown_table(LANDMARKS)
    lines = text.splitlines()
    assert len(lines) == 2 + len(LANDMARKS)
    assert all(line.count("|") == 8 for line in lines)
    assert references.cited_keys(text) == [lm.cite for lm in LANDMARKS]
    assert "| GPT-3 | 2020 | decoder | 175B | 300B tokens | 3.1e23 (paper) |" in text
    assert "671B (37B active)" in text and "60K images" in text
    assert re.search(r"\| Transformer \(big\) .*\| not stated \|", text)
