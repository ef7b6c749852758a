"""Backpropagation through time against autograd (float64), the spectral radius, the gradient per step, and
clipping by global norm against torch.nn.utils.clip_grad_norm_."""

import numpy as np
import pytest
import torch

from lmbook.bptt import (
    GRADIENT_KEYS,
    clip_grad_norm,
    gradient_per_step,
    input_gradient_per_step,
    random_rnn_weights,
    rnn_backward,
    spectral_radius,
    with_spectral_radius,
)
from lmbook.rnn import rnn_forward
from lmbook.testing import ShapeError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_problem(B, T, d_in, d_hidden, seed=0):
    g = torch.Generator().manual_seed(seed)

    def draw(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_(True)

    tensors = {
        "x": draw(B, T, d_in),
        "h0": draw(B, d_hidden, scale=0.5),
        "W_x": draw(d_hidden, d_in, scale=0.5),
        "W_h": draw(d_hidden, d_hidden, scale=0.5),
        "b": draw(d_hidden, scale=0.1),
    }
    grad_h = torch.randn(B, T, d_hidden, generator=g, dtype=torch.float64)
    return tensors, grad_h


@pytest.mark.parametrize(("B", "T", "d_in", "d_hidden"), [(1, 1, 1, 1), (3, 5, 4, 6), (2, 12, 7, 3), (4, 3, 2, 8)])
def test_rnn_backward_equals_autograd(B, T, d_in, d_hidden):
    tensors, grad_h = random_problem(B, T, d_in, d_hidden, seed=B + T)
    h, _ = rnn_forward(*tensors.values())
    (h * grad_h).sum().backward()  # a loss whose gradient at every h_t is grad_h
    ours = rnn_backward(*(t.detach() for t in tensors.values()), grad_h)
    assert list(ours) == list(GRADIENT_KEYS)
    for name, t in tensors.items():
        torch.testing.assert_close(ours[name], t.grad, msg=lambda m, name=name: f"gradient of {name}: {m}")


def test_rnn_backward_with_a_loss_on_the_last_state_only_and_no_h0():
    tensors, _ = random_problem(3, 6, 2, 4, seed=7)
    tensors.pop("h0")
    x, W_x, W_h, b = tensors.values()
    _, h_T = rnn_forward(x, torch.zeros(3, 4, dtype=torch.float64), W_x, W_h, b)
    (h_T**2).sum().backward()
    grad_h = torch.zeros(3, 6, 4, dtype=torch.float64)
    grad_h[:, -1] = 2 * h_T.detach()
    ours = rnn_backward(x.detach(), None, W_x.detach(), W_h.detach(), b.detach(), grad_h)
    for name, t in tensors.items():
        torch.testing.assert_close(ours[name], t.grad)


def test_rnn_backward_names_a_wrong_shape():
    tensors, grad_h = random_problem(2, 3, 4, 5)
    args = [t.detach() for t in tensors.values()]
    with pytest.raises(ShapeError, match=r"grad_h: expected shape \(B, T, d_hidden\), got \(2, 3, 4\)"):
        rnn_backward(*args, grad_h[..., :4])
    with pytest.raises(ShapeError, match="W_h"):
        rnn_backward(args[0], args[1], args[2], args[3][:, :4], args[4], grad_h)


def test_with_spectral_radius_scales_every_eigenvalue():
    W = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    V = with_spectral_radius(W, 0.9)
    assert spectral_radius(V) == pytest.approx(0.9, rel=1e-12)
    ratio = V / W
    torch.testing.assert_close(ratio, torch.full_like(W, float(ratio[0, 0])))  # one factor for the whole matrix
    assert spectral_radius(torch.diag(torch.tensor([0.5, -2.0]))) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="radius 0"):
        with_spectral_radius(torch.zeros(3, 3), 1.0)
    with pytest.raises(ShapeError, match="W"):
        spectral_radius(torch.zeros(2, 3))


def test_random_weights_differ_only_by_the_scale_of_W_h():
    a, b = random_rnn_weights(3, 5, 0.5, seed=1), random_rnn_weights(3, 5, 2.0, seed=1)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[2], b[2])
    torch.testing.assert_close(4 * a[1], b[1])
    assert a[0].shape == (5, 3) and a[1].shape == (5, 5) and a[2].shape == (5,)


def test_gradient_per_step_vanishes_below_and_explodes_above():
    small, large = gradient_per_step(0.5, 40), gradient_per_step(3.0, 40)
    assert small.shape == (40,) and small.dtype == np.float64
    assert small[0] < 1e-9 * small[-1]  # vanished: the first input hardly moves the loss
    assert large[0] > 1e3 * large[-1]  # exploded
    # Per step, a contractive W_h shrinks the gradient at least by its spectral radius (tanh' <= 1).
    assert (small[:-1] / small[1:]).mean() < 0.5
    # Checked against autograd for one batch: the same weights, inputs and loss.
    W_x, W_h, b = random_rnn_weights(16, 32, 0.5, seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 40, 16, generator=g, dtype=torch.float64).requires_grad_(True)
    u = torch.randn(16, 32, generator=g, dtype=torch.float64)
    _, h_T = rnn_forward(x, torch.zeros(16, 32, dtype=torch.float64), W_x, W_h, b)
    (h_T * u / u.norm(dim=1, keepdim=True)).sum().backward()
    np.testing.assert_allclose(small, x.grad.norm(dim=2).mean(dim=0).numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="at least 1"):
        gradient_per_step(1.0, 0)


def test_input_gradient_per_step_reads_the_gradient_at_the_layer_output():
    torch.manual_seed(0)
    embedding, rnn, head = torch.nn.Embedding(6, 3), torch.nn.RNN(3, 5, batch_first=True), torch.nn.Linear(5, 2)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.rnn, self.head = embedding, rnn, head

        def forward(self, ids):
            return self.head(self.rnn(self.embedding(ids))[0][:, -1])

    model = Model().double()
    ids, labels = torch.randint(0, 6, (4, 7)), torch.tensor([0, 1, 1, 0])
    norms = input_gradient_per_step(model, model.embedding, (ids,), labels)
    x = model.embedding(ids).detach().requires_grad_(True)
    torch.nn.functional.cross_entropy(head(rnn(x)[0][:, -1]), labels).backward()
    np.testing.assert_allclose(norms, x.grad.norm(dim=2).mean(dim=0).numpy())
    assert all(p.grad is None for p in model.embedding.parameters())
    # A float32 gradient of 1e-30 has a norm of about 1e-30, not the 0 that squaring it in float32 gives.
    model.float()
    with torch.no_grad():
        model.head.weight.mul_(1e-30)
    tiny = input_gradient_per_step(model, model.embedding, (ids,), labels)
    assert 0 < tiny.min() and tiny.max() < 1e-27
    with pytest.raises(ShapeError, match="module's output"):
        input_gradient_per_step(model, model.head, (ids,), labels)


# ----- clipping by norm ---------------------------------------------------------------------------------------


def model_with_gradients(scale, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3, bias=False))
    for p in model.parameters():
        p.grad = scale * torch.randn_like(p)
    return model


@pytest.mark.parametrize(("scale", "max_norm"), [(10.0, 1.0), (0.01, 1.0), (1.0, 0.3), (3.0, 2.5)])
def test_clip_grad_norm_equals_torch(scale, max_norm):
    ours, theirs = model_with_gradients(scale), model_with_gradients(scale)
    norm = clip_grad_norm(ours.parameters(), max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    torch.testing.assert_close(norm, expected)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_clip_grad_norm_leaves_small_gradients_alone_and_skips_missing_ones():
    model = model_with_gradients(0.01)
    model[2].weight.grad = None
    before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    norm = clip_grad_norm(model.parameters(), 1.0)
    assert float(norm) == pytest.approx(float(torch.sqrt(sum((g**2).sum() for g in before if g is not None))))
    for p, g in zip(model.parameters(), before, strict=True):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)


def global_clipping_holds(clip) -> bool:
    """Whether ``clip(grads, max_norm)`` keeps the direction of the whole gradient and brings its norm to max_norm."""
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(4, 3, generator=g, dtype=torch.float64), 5 * torch.randn(7, generator=g, dtype=torch.float64)]
    flat = torch.cat([t.flatten() for t in grads])
    clip(grads, 1.0)
    clipped = torch.cat([t.flatten() for t in grads])
    cosine = float(clipped @ flat / (clipped.norm() * flat.norm()))
    return abs(cosine - 1) < 1e-12 and abs(float(clipped.norm()) - 1.0) < 1e-5


def clip_each_element(grads, max_norm):
    """The wrong rule: each element clamped to [-max_norm, max_norm] (what clip_grad_value_ does)."""
    for g in grads:
        g.clamp_(-max_norm, max_norm)


def clip_each_tensor(grads, max_norm):
    """Also wrong: each tensor's norm clipped on its own, which changes the balance between tensors."""
    for g in grads:
        g.mul_(min(1.0, max_norm / float(g.norm())))


def test_clipping_is_by_the_global_norm_not_per_element():
    assert global_clipping_holds(clip_grad_norm)  # also works on plain gradient tensors
    assert not global_clipping_holds(clip_each_element)
    assert not global_clipping_holds(clip_each_tensor)


def test_clip_grad_norm_rejects_a_bad_threshold():
    with pytest.raises(ValueError, match="positive"):
        clip_grad_norm([torch.ones(3)], 0.0)
    assert float(clip_grad_norm([], 1.0)) == 0.0
