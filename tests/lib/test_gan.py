"""Tests of lmbook.gan: the losses against torch's binary cross-entropy (values and gradients, float64), the two
networks, the training loop's reproducibility, and the measures of sample quality."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.gan import (
    GANConfig,
    discriminator_loss,
    generator_gradient_norm,
    generator_loss,
    log_sigmoid,
    make_discriminator,
    make_generator,
    nearest_distances,
    sample_images,
    sample_quality,
    train_gan,
)


def logits(*shape, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_log_sigmoid_matches_torch_values_and_gradients():
    x = logits(50)
    x_ref = x.detach().clone().requires_grad_()
    torch.testing.assert_close(log_sigmoid(x), F.logsigmoid(x_ref))
    (g,) = grads(log_sigmoid(x).sum(), x)
    (g_ref,) = grads(F.logsigmoid(x_ref).sum(), x_ref)
    torch.testing.assert_close(g, g_ref)


def test_log_sigmoid_is_finite_for_huge_logits():
    x = torch.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=torch.float64)
    out = log_sigmoid(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.logsigmoid(x))
    assert out[0] == pytest.approx(-1000.0)


@pytest.mark.parametrize("shape", [(16,), (16, 1)])
def test_discriminator_loss_is_bce_of_real_as_1_and_fake_as_0(shape):
    real = logits(*shape, seed=1)
    fake = logits(24, *shape[1:], seed=2)  # a different batch size for the fakes
    real_ref, fake_ref = (t.detach().clone().requires_grad_() for t in (real, fake))
    ours = discriminator_loss(real, fake)
    ref = F.binary_cross_entropy_with_logits(real_ref, torch.ones_like(real_ref)) + F.binary_cross_entropy_with_logits(
        fake_ref, torch.zeros_like(fake_ref)
    )
    torch.testing.assert_close(ours, ref)
    for g, g_ref in zip(grads(ours, real, fake), grads(ref, real_ref, fake_ref), strict=True):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("kind", ["non_saturating", "minimax"])
def test_generator_loss_matches_torch_values_and_gradients(kind):
    fake = logits(32, 1, seed=3)
    fake_ref = fake.detach().clone().requires_grad_()
    ours = generator_loss(fake, kind)
    if kind == "non_saturating":  # -mean log sigma(l): label "real" on the fakes
        ref = F.binary_cross_entropy_with_logits(fake_ref, torch.ones_like(fake_ref))
    else:  # mean log(1 - sigma(l)) = -BCE(l, 0)
        ref = -F.binary_cross_entropy_with_logits(fake_ref, torch.zeros_like(fake_ref))
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grads(ours, fake)[0], grads(ref, fake_ref)[0])


def test_generator_loss_derivatives_are_the_ones_the_text_states():
    fake = logits(10, seed=4)
    p = torch.sigmoid(fake.detach())
    (g_minimax,) = grads(generator_loss(fake, "minimax"), fake)
    (g_ns,) = grads(generator_loss(fake, "non_saturating"), fake)
    torch.testing.assert_close(g_minimax, -p / 10)
    torch.testing.assert_close(g_ns, -(1 - p) / 10)


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match=r"fake_logits \(B,\) or \(B, 1\)"):
        generator_loss(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="real_logits"):
        discriminator_loss(torch.zeros(2, 3, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        generator_loss(torch.zeros(0))
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(torch.zeros(3), kind="saturating")
    with pytest.raises(TypeError, match="torch.Tensor"):
        generator_loss([0.0, 1.0])


def test_networks_shapes_ranges_and_seeding():
    G, D = make_generator(8, 32, seed=0), make_discriminator(32, seed=1)
    again = make_generator(8, 32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), again.state_dict().values(), strict=True))
    z = torch.randn(5, 8)
    images = G(z)
    assert images.shape == (5, 1, 8, 8)
    assert images.min() > 0 and images.max() < 1
    assert D(images).shape == (5, 1)
    other = make_generator(8, 32, seed=1)
    assert not torch.equal(G[0].weight, other[0].weight)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        GANConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        GANConfig(lr=0.0)
    with pytest.raises(ValueError, match="minimax"):
        GANConfig(generator_loss="wasserstein")
    assert GANConfig.gpu().d_hidden > GANConfig.cpu().d_hidden


@pytest.fixture(scope="module")
def blobs():
    """48 'images': three fixed 8 x 8 patterns with a little noise, in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(3, 1, 8, 8, generator=gen)
    noise = 0.05 * torch.rand(48, 1, 8, 8, generator=gen)
    return (0.9 * base.repeat(16, 1, 1, 1) + noise).clamp(0, 1).numpy()


def test_train_gan_is_reproducible_and_leaves_the_callers_random_state(blobs):
    config = GANConfig(d_noise=4, d_hidden=16, steps=30, batch_size=8, log_every=10)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train_gan(blobs, config)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = train_gan(blobs, config)
    for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert a.steps == [10, 20, 30] and len(a.d_loss) == len(a.g_loss) == len(a.d_real) == len(a.d_fake) == 3
    assert all(0 < p < 1 for p in a.d_real + a.d_fake)
    assert not a.generator.training and all(p.grad is None for p in a.discriminator.parameters())
    c = train_gan(blobs, GANConfig(d_noise=4, d_hidden=16, steps=30, batch_size=8, log_every=10, seed=1))
    assert not torch.equal(a.generator[0].weight, c.generator[0].weight)


def test_train_gan_moves_both_networks(blobs):
    config = GANConfig(d_noise=4, d_hidden=16, steps=5, batch_size=8)
    G0, D0 = make_generator(4, 16, seed=0), make_discriminator(16, seed=1)  # the run's initial weights
    run = train_gan(blobs, config)
    assert not torch.equal(G0[0].weight, run.generator[0].weight)
    assert not torch.equal(D0[1].weight, run.discriminator[1].weight)


def test_train_gan_rejects_bad_images(blobs):
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        train_gan(np.zeros((4, 64), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_gan(blobs * 16)


def test_generator_gradient_norm_matches_autograd_and_shows_saturation():
    G, D = make_generator(4, 16, seed=0).double(), make_discriminator(16, seed=1).double()
    z = torch.randn(32, 4, dtype=torch.float64)
    for kind in ("non_saturating", "minimax"):
        G.zero_grad(set_to_none=True)
        generator_loss(D(G(z)), kind).backward()
        expected = torch.sqrt(sum((p.grad**2).sum() for p in G.parameters())).item()
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        assert generator_gradient_norm(G, D, z, kind) == pytest.approx(expected, rel=1e-12)
        assert all(p.grad is None for p in list(G.parameters()) + list(D.parameters()))
    with torch.no_grad():
        D[-1].bias.fill_(-8.0)  # D now rejects every image with sigma(l) about 3e-4
    assert generator_gradient_norm(G, D, z, "non_saturating") > 100 * generator_gradient_norm(G, D, z, "minimax")


def test_sample_images_is_seeded():
    G = make_generator(4, 16, seed=0)
    a, b = sample_images(G, 6, seed=3), sample_images(G, 6, seed=3)
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b) and not a.requires_grad
    assert not torch.equal(a, sample_images(G, 6, seed=4))
    assert G.training  # its mode is given back


def test_nearest_distances_against_brute_force():
    gen = np.random.default_rng(0)
    a, b = gen.random((5, 1, 8, 8)), gen.random((7, 1, 8, 8))
    expected = [min(np.linalg.norm(x - y) for y in b) for x in a]
    np.testing.assert_allclose(nearest_distances(a, b), expected)
    assert nearest_distances(b[:2], b).max() == 0.0  # a training image is at distance 0 from itself
    with pytest.raises(ValueError, match="pixels"):
        nearest_distances(a, np.zeros((2, 1, 4, 4)))


class FixedClassifier(nn.Module):
    """Returns the logits it was given, whatever the images (one row per image)."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32), requires_grad=False)

    def forward(self, x):
        return self.table[: len(x)]


def test_sample_quality_score_limits():
    images = np.zeros((20, 1, 8, 8), dtype=np.float32)
    sure_and_even = FixedClassifier(40.0 * np.eye(10)[np.arange(20) % 10])  # every class, each image sure
    q = sample_quality(images, sure_and_even, images)
    assert q.score == pytest.approx(10.0, rel=1e-6) and q.confidence == pytest.approx(1.0)
    assert q.classes_seen == 10 and np.allclose(q.histogram, 0.1) and q.nearest_distance.max() == 0
    collapsed = FixedClassifier(40.0 * np.eye(10)[np.zeros(20, dtype=int)])  # one class, sure
    q = sample_quality(images, collapsed, images)
    assert q.score == pytest.approx(1.0) and q.classes_seen == 1 and q.histogram[0] == 1.0
    unsure = FixedClassifier(np.zeros((20, 10)))  # uniform p(y|x)
    q = sample_quality(images, unsure, images)
    assert q.score == pytest.approx(1.0) and q.confidence == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"classifier logits \(n, 10\)"):
        sample_quality(images, FixedClassifier(np.zeros((20, 3))), images)
