"""Tests of lmbook.accumulation: accumulated gradients equal the full batch's, in float64; train_lm's accum_steps."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.accumulation import accumulate_gradients, accumulation_step, micro_batch_sizes, split_micro_batches
from lmbook.gpt import GPT, GPTConfig
from lmbook.language_model import LMTrainConfig, train_lm
from lmbook.loop import make_optimizer, optimizer_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def data(n: int = 12):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen)


def grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def full_batch_grads(model, x, y) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return grads(model)


def test_micro_batch_sizes_are_as_equal_as_possible():
    assert micro_batch_sizes(12, 4) == [3, 3, 3, 3]
    assert micro_batch_sizes(10, 3) == [4, 3, 3]
    assert micro_batch_sizes(5, 5) == [1] * 5
    assert micro_batch_sizes(7, 1) == [7]


@pytest.mark.parametrize("accum_steps", [0, -2, 2.0, True])
def test_accum_steps_below_one_or_not_an_integer_is_rejected_by_name(accum_steps):
    with pytest.raises(ValueError, match="accum_steps must be an integer of at least 1"):
        micro_batch_sizes(8, accum_steps)


def test_more_micro_batches_than_examples_is_rejected():
    with pytest.raises(ValueError, match="accum_steps=5 micro-batches need at least 5 examples, got 3"):
        split_micro_batches(torch.zeros(3, 2), 5)


def test_tensors_of_a_batch_must_agree_on_the_first_dimension():
    with pytest.raises(ValueError, match=r"tensor 1 differs: \[\(4, 2\), \(3,\)\]"):
        split_micro_batches((torch.zeros(4, 2), torch.zeros(3)), 2)


def test_split_micro_batches_are_consecutive_views():
    x, y = data(10)
    parts = split_micro_batches((x, y), 3)
    assert [len(p[0]) for p in parts] == [4, 3, 3]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
    assert parts[1][0].data_ptr() == x[4].data_ptr()  # a view, not a copy


@pytest.mark.parametrize("n, accum_steps", [(12, 4), (12, 1), (10, 3), (7, 7)])
def test_accumulated_gradient_equals_the_full_batch_gradient_in_float64(n, accum_steps):
    model = small_model()
    x, y = data(n)
    expected = full_batch_grads(model, x, y)
    model.zero_grad(set_to_none=True)
    loss = accumulate_gradients(lambda xb, yb: F.cross_entropy(model(xb), yb), (x, y), accum_steps)
    for got, want in zip(grads(model), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y).detach(), rtol=1e-12, atol=0)


def test_forgetting_to_divide_gives_k_times_the_gradient():
    model = small_model()
    x, y = data(12)
    expected = full_batch_grads(model, x, y)
    model.zero_grad(set_to_none=True)
    for xb, yb in split_micro_batches((x, y), 4):
        F.cross_entropy(model(xb), yb).backward()  # the mistake: each micro-batch's mean, not scaled by 1/4
    for got, want in zip(grads(model), expected, strict=True):
        torch.testing.assert_close(got, 4 * want, rtol=1e-12, atol=1e-14)


def test_unequal_micro_batches_need_their_own_weights_not_one_over_k():
    model = small_model()
    x, y = data(10)  # 4 + 3 + 3
    expected = full_batch_grads(model, x, y)
    model.zero_grad(set_to_none=True)
    for xb, yb in split_micro_batches((x, y), 3):
        (F.cross_entropy(model(xb), yb) / 3).backward()  # the naive 1/k
    naive = grads(model)
    assert max(float((a - b).abs().max()) for a, b in zip(naive, expected, strict=True)) > 1e-3


def test_token_counts_weight_micro_batches_whose_means_are_over_different_token_counts():
    """A language-model batch with padding (-100): each micro-batch's loss is a mean over its real tokens."""
    model = small_model()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, 5, generator=gen, dtype=torch.float64)  # (B, T, features)
    y = torch.randint(0, 3, (6, 4), generator=gen)
    y[0, 1:] = -100  # the first micro-batch has far fewer real tokens than the second
    y[1, 2:] = -100

    def loss_fn(xb, yb):
        return F.cross_entropy(model(xb).reshape(-1, 3), yb.reshape(-1), ignore_index=-100)

    expected = [g.clone() for g in full_batch_grads_tokens(model, loss_fn, x, y)]
    model.zero_grad(set_to_none=True)
    accumulate_gradients(loss_fn, (x, y), 2, count_fn=lambda xb, yb: (yb != -100).sum())
    for got, want in zip(grads(model), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    model.zero_grad(set_to_none=True)
    accumulate_gradients(loss_fn, (x, y), 2)  # counting examples instead of tokens: wrong here
    assert max(float((a - b).abs().max()) for a, b in zip(grads(model), expected, strict=True)) > 1e-3


def full_batch_grads_tokens(model, loss_fn, x, y):
    model.zero_grad(set_to_none=True)
    loss_fn(x, y).backward()
    return grads(model)


def test_a_count_of_zero_and_a_loss_that_is_not_a_scalar_are_rejected():
    model = small_model()
    x, y = data(4)
    with pytest.raises(ValueError, match="positive count, got 0.0"):
        accumulate_gradients(lambda xb, yb: F.cross_entropy(model(xb), yb), (x, y), 2, count_fn=lambda xb, yb: 0)
    with pytest.raises(ValueError, match=r"scalar \(mean\) loss, got shape \(2,\)"):
        accumulate_gradients(lambda xb, yb: F.cross_entropy(model(xb), yb, reduction="none"), (x, y), 2)


def test_accumulation_step_with_one_micro_batch_is_optimizer_step_bit_for_bit():
    x, y = data(12)
    models = [small_model(), small_model()]
    opts = [make_optimizer(m, "adamw", lr=0.1, weight_decay=0.1) for m in models]
    for _ in range(3):
        norm_a = optimizer_step(F.cross_entropy(models[0](x), y), models[0], opts[0], max_grad_norm=0.5)
        _, norm_b = accumulation_step(
            models[1], opts[1], lambda xb, yb: F.cross_entropy(models[1](xb), yb), (x, y), 1, max_grad_norm=0.5
        )
        assert norm_a == norm_b
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_accumulation_step_takes_the_large_batch_step():
    x, y = data(12)
    models = [small_model(), small_model()]
    opts = [make_optimizer(m, "adamw", lr=0.1) for m in models]
    for _ in range(3):
        optimizer_step(F.cross_entropy(models[0](x), y), models[0], opts[0])
        accumulation_step(models[1], opts[1], lambda xb, yb: F.cross_entropy(models[1](xb), yb), (x, y), 4)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


PATTERN = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 6] * 40)


def tiny_gpt() -> GPT:
    return GPT(GPTConfig(vocab_size=9, max_len=8, d_model=16, n_layers=1, n_heads=2), seed=0).double()


def test_train_lm_with_accumulation_equals_the_large_batch_run_in_float64():
    common = {"steps": 4, "log_every": 1, "window": 8, "lr": 1e-2, "threads": 1}
    big, small = tiny_gpt(), tiny_gpt()
    log_big = train_lm(big, PATTERN, LMTrainConfig(batch_size=8, **common))
    log_small = train_lm(small, PATTERN, LMTrainConfig(batch_size=2, accum_steps=4, **common))
    assert log_small.tokens == log_big.tokens == 4 * 8 * 8
    torch.testing.assert_close(log_small.train_loss, log_big.train_loss, rtol=1e-10, atol=0)
    torch.testing.assert_close(log_small.grad_norm, log_big.grad_norm, rtol=1e-10, atol=0)
    for a, b in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_lm_train_config_rejects_accum_steps_below_one():
    with pytest.raises(ValueError, match="accum_steps must be at least 1, got 0"):
        LMTrainConfig(accum_steps=0)
