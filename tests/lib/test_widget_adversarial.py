"""Tests of chapter 11's adversarial-example explorer without a browser: what it shows is lmbook.robustness's
attacks on the model it is given, the controls change the picture and the verdict, bad settings are rejected
without changing anything, and its record grid fits a page. A tiny linear model stands in for the CNN."""

import numpy as np
import pytest
import torch

from lmbook.robustness import accuracy_under_attack, fgsm, random_sign_noise
from lmbook.widgets.adversarial import EPSILONS, AdversarialExplorer, example_indices
from lmbook.widgets.recorded import check_grid


def _data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.clip(
        rng.normal(0.5, 0.1, (n, 1, 4, 4)) + 0.3 * (y[:, None, None, None] == np.arange(4)[None, None, :, None] % 3),
        0,
        1,
    )
    return torch.tensor(x, dtype=torch.float64), torch.tensor(y)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    x, y = _data()
    return model, x, y, AdversarialExplorer(model, x, y)


def test_the_curves_are_the_accuracy_under_each_attack(setup):
    model, x, y, w = setup
    assert w.curves["fgsm"] == accuracy_under_attack(model, x, y, EPSILONS, attack="fgsm")
    assert w.curves["random"] == accuracy_under_attack(model, x, y, EPSILONS, attack="random", seed=0)
    assert w.curves["fgsm"][0] == w.curves["random"][0]  # epsilon 0: the clean accuracy under both


def test_the_shown_digit_is_the_attack_of_the_chosen_example(setup):
    model, x, y, w = setup
    w.update(example=w.controls["example"].options[1][1], epsilon=0.2, attack="fgsm")
    i = w.controls["example"].value
    original, attacked = w.attacked()
    assert torch.equal(original, x[i : i + 1])
    assert torch.equal(attacked, fgsm(model, x[i : i + 1], y[i : i + 1], 0.2))
    want = torch.softmax(model(attacked), dim=1)[0].detach().numpy()
    np.testing.assert_allclose(w.probabilities, want)
    w.update(attack="random")
    assert torch.equal(w.attacked()[1], random_sign_noise(x[i : i + 1], 0.2, seed=i))
    assert f"epsilon 0.2: {w.curves['random'][EPSILONS.index(0.2)]:.3f}" in w.status.value


def test_epsilon_zero_changes_nothing_and_the_picture_changes_with_epsilon(setup):
    _, _, _, w = setup
    w.update(epsilon=0.0, attack="fgsm")
    original, attacked = w.attacked()
    assert torch.equal(original, attacked)
    before = w.figure_image.to_png()
    w.update(epsilon=0.3)
    assert w.figure_image.to_png() != before


def test_bad_settings_are_refused_and_change_nothing(setup):
    _, _, _, w = setup
    values = dict(w.values)
    with pytest.raises(ValueError, match="epsilon"):
        w.update(epsilon=0.07)
    with pytest.raises(ValueError, match="attack"):
        w.update(attack="pgd")
    with pytest.raises(ValueError, match="example"):
        w.update(example=10_000)
    assert w.values == values


def test_wrong_shapes_are_named():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    x, y = _data()
    with pytest.raises(ValueError, match=r"x \(60, 16\)"):
        AdversarialExplorer(model, x.reshape(60, 16), y)


def test_examples_are_one_per_class_and_the_grid_fits_a_page(setup):
    _, _, y, w = setup
    assert example_indices(y.numpy()) == [0, 1, 2]
    grid = check_grid(w, w.record_grid())
    assert np.prod([len(v) for v in grid.values()]) == 3 * len(EPSILONS) * 2
