"""Reference tests for lmbook.robustness: FGSM against a gradient taken directly with torch.autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmbook.robustness import accuracy_under_attack, fgsm, loss_input_gradient, random_sign_noise


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 8, dtype=torch.float64), torch.nn.Tanh(),
        torch.nn.Dropout(0.5), torch.nn.Linear(8, 3, dtype=torch.float64),
    )  # fmt: skip


def _data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.95, (n, 1, 4, 4)), rng.integers(0, 3, n)


def _reference_gradient(model, x, y):
    model.eval()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(model(xt), torch.tensor(y))
    loss.backward()
    return xt.grad


def test_input_gradient_matches_autograd_and_leaves_parameters_alone():
    model, (x, y) = _model(), _data()
    model.train()
    grad = loss_input_gradient(model, x, y)
    assert model.training  # the mode is given back
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(grad, _reference_gradient(model, x, y))


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.3])
def test_fgsm_is_epsilon_times_the_sign_of_the_gradient_clamped(epsilon):
    model, (x, y) = _model(), _data()
    grad = _reference_gradient(model, x, y)
    expected = (torch.tensor(x) + epsilon * grad.sign()).clamp(0.0, 1.0)
    torch.testing.assert_close(fgsm(model, x, y, epsilon), expected)
    unclamped = fgsm(model, x, y, epsilon, clamp=None)
    torch.testing.assert_close(unclamped - torch.tensor(x), epsilon * grad.sign())


def test_fgsm_with_epsilon_zero_changes_nothing():
    model, (x, y) = _model(), _data()
    torch.testing.assert_close(fgsm(model, x, y, 0.0), torch.tensor(x))


def test_fgsm_raises_the_loss_and_the_random_baseline_has_the_same_size():
    model, (x, y) = _model(), _data(64)
    model.eval()
    adv = fgsm(model, x, y, 0.05, clamp=None)
    noise = random_sign_noise(x, 0.05, clamp=None)
    xt, yt = torch.tensor(x), torch.tensor(y)
    with torch.no_grad():
        clean, attacked, noisy = (F.cross_entropy(model(v), yt).item() for v in (xt, adv, noise))
    assert attacked > clean
    assert attacked > noisy
    torch.testing.assert_close((noise - xt).abs(), torch.full_like(xt, 0.05))


def test_accuracy_under_attack_starts_at_the_clean_accuracy_and_falls():
    model, (x, y) = _model(), _data(200)
    model.eval()
    with torch.no_grad():
        clean = (model(torch.tensor(x)).argmax(1) == torch.tensor(y)).double().mean().item()
    accs = accuracy_under_attack(model, x, y, [0.0, 0.2, 0.5], clamp=None)
    assert accs[0] == pytest.approx(clean)
    assert accs[2] < accs[0]
    rand = accuracy_under_attack(model, x, y, [0.0, 0.2], attack="random", clamp=None)
    assert rand[0] == pytest.approx(clean)


def test_bad_inputs_are_named():
    model, (x, y) = _model(), _data()
    with pytest.raises(ValueError, match="epsilon"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="y"):
        fgsm(model, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="attack"):
        accuracy_under_attack(model, x, y, [0.1], attack="pgd")
