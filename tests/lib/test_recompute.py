"""Tests of lmbook.recompute: checkpointed GPT blocks give the same loss and gradients and save what they should."""

import math

import pytest
import torch
from torch import nn

from lmbook.gpt import GPT, GPTConfig
from lmbook.memory import activation_bytes
from lmbook.recompute import (
    best_segment,
    block_activation_bytes,
    checkpoint_blocks,
    checkpointed,
    checkpointed_peak_bytes,
    is_checkpointed,
    restore_blocks,
)
from lmbook.transformer import TransformerBlock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_gpt(n_layers: int = 3, dropout: float = 0.0) -> GPT:
    config = GPTConfig(vocab_size=11, max_len=12, d_model=16, n_layers=n_layers, n_heads=2, dropout=dropout)
    return GPT(config, seed=0).double()


def batch(B: int = 3, T: int = 12):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 11, (B, T), generator=gen), torch.randint(0, 11, (B, T), generator=gen)


def loss_and_grads(model: GPT, x, y, seed: int = 0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout masks
    loss = model.loss(x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("segment", [1, 2, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_checkpointed_loss_and_gradients_equal_the_plain_ones_in_float64(segment, dropout):
    model = small_gpt(3, dropout)
    x, y = batch()
    loss, grads = loss_and_grads(model, x, y)
    with checkpointed(model, segment):
        loss_c, grads_c = loss_and_grads(model, x, y)
    torch.testing.assert_close(loss_c, loss, rtol=0, atol=0)
    for got, want in zip(grads_c, grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_the_backward_pass_runs_each_checkpointed_block_again():
    model = small_gpt(3)
    x, y = batch()
    calls = []
    for i, block in enumerate(model.blocks):
        block.ffn.register_forward_pre_hook(lambda *_, i=i: calls.append(i))  # (a forward hook would
        # miss the recomputation: it stops as soon as the last saved tensor is recomputed, inside ffn)
    with checkpointed(model, 1):
        loss = model.loss(x, y)
        assert calls == [0, 1, 2]
        loss.backward()
    assert sorted(calls) == [0, 0, 1, 1, 2, 2]  # recomputed once each, in the backward pass
    calls.clear()
    model.loss(x, y).backward()  # restored: no recomputation
    assert calls == [0, 1, 2]


def test_parameters_and_state_dict_are_unchanged_and_restore_undoes_it():
    model = small_gpt(3)
    keys = list(model.state_dict())
    assert checkpoint_blocks(model, 2) is model and is_checkpointed(model)
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match="already checkpointed: call restore_blocks"):
        checkpoint_blocks(model)
    restore_blocks(model)
    assert not is_checkpointed(model)
    assert all("forward" not in vars(block) for block in model.blocks)


def test_without_gradients_the_blocks_simply_run():
    model = small_gpt(2)
    x, _ = batch()
    with torch.no_grad():
        plain = model(x)
        with checkpointed(model):
            torch.testing.assert_close(model(x), plain, rtol=0, atol=0)


@pytest.mark.parametrize("segment", [0, 4, 1.0, True])
def test_a_segment_outside_one_to_n_layers_is_rejected_by_name(segment):
    with pytest.raises(ValueError, match=r"segment must be an integer from 1 to n_layers=3"):
        checkpoint_blocks(small_gpt(3), segment)


def test_a_model_without_blocks_is_rejected():
    with pytest.raises(TypeError, match="non-empty nn.ModuleList `blocks`.*got Linear"):
        checkpoint_blocks(nn.Linear(2, 2))


@pytest.mark.parametrize("B, T, C, H", [(2, 10, 24, 3), (3, 7, 16, 4)])
def test_block_activation_bytes_is_what_autograd_saves(B, T, C, H):
    block = TransformerBlock(C, H, causal=True, pre_ln=True)
    x = torch.randn(B, T, C, requires_grad=True)
    measured = activation_bytes(lambda: block(x), exclude=block.parameters()).saved_bytes
    assert block_activation_bytes(B, T, C, H) == measured
    block, x = block.double(), x.detach().double().requires_grad_()
    measured = activation_bytes(lambda: block(x), exclude=block.parameters()).saved_bytes
    assert block_activation_bytes(B, T, C, H, bytes_per_number=8) == measured


@pytest.mark.parametrize("segment", [1, 2, 4])
def test_a_checkpointed_gpt_keeps_only_the_segment_inputs(segment):
    config = GPTConfig(vocab_size=11, max_len=12, d_model=16, n_layers=4, n_heads=2)
    model, (x, y) = GPT(config, seed=0), batch()
    B, T = x.shape
    plain = activation_bytes(lambda: model.loss(x, y), exclude=model.parameters()).saved_bytes
    with checkpointed(model, segment):
        kept = activation_bytes(lambda: model.loss(x, y), exclude=model.parameters()).saved_bytes
    per_block, per_boundary = block_activation_bytes(B, T, 16, 2), 4 * B * T * 16
    assert plain - kept == 4 * per_block - math.ceil(4 / segment) * per_boundary


def test_the_peak_formula_and_the_square_root_rule():
    assert checkpointed_peak_bytes(8, None, 10.0, 1.0) == 80.0
    assert checkpointed_peak_bytes(8, 1, 10.0, 1.0) == 8 * 1.0 + 10.0
    assert checkpointed_peak_bytes(9, 2, 10.0, 1.0) == 5 * 1.0 + 2 * 10.0  # ceil(9 / 2) segments
    assert best_segment(16, 1.0, 1.0) == 4 and best_segment(100, 1.0, 1.0) == 10  # sqrt(L) for equal layers
    assert best_segment(48, 20.0, 1.0) == 2  # a transformer block saves ~20x its input: short segments win
    with pytest.raises(ValueError, match="segment must be from 1 to n_layers=4"):
        checkpointed_peak_bytes(4, 5, 1.0, 1.0)
    with pytest.raises(ValueError, match="seq_len must be at least 1, got 0"):
        block_activation_bytes(1, 0, 8, 2)
