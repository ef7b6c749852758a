"""Reference tests of lmbook.attention against torch in float64: values and gradients, with and without masks.

Also the worked example of the chapter (three 1-d tokens), and tests that the classic mistakes (no scaling,
masking after the softmax, ``V @ weights``) are caught by the same reference comparison.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from lmbook.attention import (
    CausalSelfAttention,
    MultiHeadAttention,
    SelfAttention,
    attention_maps,
    attention_modules,
    causal_mask,
    combine_masks,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from lmbook.gpt import GPT, GPTConfig
from lmbook.testing import ShapeError
from lmbook.text import CharTokenizer

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def qkv(shape_q=(2, 3, 5, 4), T_k=None, D_v=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    *batch, T_q, D = shape_q
    T_k = T_q if T_k is None else T_k
    D_v = D if D_v is None else D_v
    make = lambda *s: torch.randn(*s, generator=g, dtype=DT, requires_grad=True)  # noqa: E731
    return make(*batch, T_q, D), make(*batch, T_k, D), make(*batch, T_k, D_v)


def random_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < 0.6
    mask[..., 0] = True  # every query may attend to at least one key
    return mask


def values_and_grads(fn, q, k, v):
    out = fn(q, k, v)
    g = torch.Generator().manual_seed(7)
    upstream = torch.randn(out.shape, generator=g, dtype=DT)  # a random linear function of the output
    grads = torch.autograd.grad((out * upstream).sum(), (q, k, v))
    return out.detach(), grads


def matches_torch(fn, q, k, v, mask=None) -> bool:
    """Whether ``fn(q, k, v, mask)`` gives torch's values and gradients."""
    ours = values_and_grads(lambda a, b, c: fn(a, b, c, mask), q, k, v)
    ref = values_and_grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask), q, k, v)
    try:
        assert_close(ours[0], ref[0])
        for a, b in zip(ours[1], ref[1], strict=True):
            assert_close(a, b)
    except AssertionError:
        return False
    return True


# ----- scaled dot-product attention ---------------------------------------------------------------------------


MASKS = {
    "none": lambda s: None,
    "causal": lambda s: causal_mask(s[-1]),
    "padding": lambda s: padding_mask([5, 3], s[-1]),
    "random": lambda s: random_mask(s),
    "causal+padding": lambda s: combine_masks(causal_mask(s[-1]), padding_mask([5, 2], s[-1])),
}


@pytest.mark.parametrize("kind", MASKS)
def test_sdpa_matches_torch_values_and_gradients(kind):
    q, k, v = qkv((2, 3, 5, 4))  # (B, H, T, D)
    mask = MASKS[kind]((2, 3, 5, 5))
    assert matches_torch(scaled_dot_product_attention, q, k, v, mask)


@pytest.mark.parametrize("shape", [(7, 4), (3, 6, 8), (2, 2, 3, 5, 4)])
def test_sdpa_any_batch_axes_and_different_lengths(shape):
    q, k, v = qkv(shape, T_k=shape[-2] + 2, D_v=3)  # T_k != T_q and D_v != D
    assert matches_torch(scaled_dot_product_attention, q, k, v)
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert out.shape == (*shape[:-1], 3) and weights.shape == (*shape[:-1], shape[-2] + 2)
    assert_close(weights.sum(-1), torch.ones(shape[:-1], dtype=DT))


def test_sdpa_custom_scale_matches_torch():
    q, k, v = qkv((2, 4, 3))
    ours = scaled_dot_product_attention(q, k, v, scale=0.3)
    assert_close(ours, F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_causal_mask_is_torchs_is_causal():
    q, k, v = qkv((2, 2, 6, 4))
    ours = values_and_grads(lambda a, b, c: scaled_dot_product_attention(a, b, c, causal_mask(6)), q, k, v)
    ref = values_and_grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), q, k, v)
    assert_close(ours[0], ref[0])
    for a, b in zip(ours[1], ref[1], strict=True):
        assert_close(a, b)


def test_fully_masked_rows_give_zero_output_and_finite_gradients():
    q, k, v = qkv((1, 3, 4))
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert torch.equal(out[0, 1], torch.zeros(4, dtype=DT)) and torch.equal(weights[0, 1], torch.zeros(3, dtype=DT))
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][0, 1], torch.zeros(4, dtype=DT))  # the masked query gets no gradient
    # the other rows are as torch computes them
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(out[:, [0, 2]], ref[:, [0, 2]])


def test_sdpa_dropout_zeroes_weights_only_when_asked():
    q, k, v = qkv((2, 5, 4))
    assert_close(scaled_dot_product_attention(q, k, v, dropout=0.0), scaled_dot_product_attention(q, k, v))
    torch.manual_seed(0)
    dropped = scaled_dot_product_attention(q, k, v, dropout=0.5)
    assert not torch.allclose(dropped, scaled_dot_product_attention(q, k, v))


def test_worked_example_of_three_one_dimensional_tokens():
    """Seed-map mistake 6: tokens [1, 2, 3] as queries and keys, values [4, 5, 6], d_k = 1."""
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=DT)  # (T, D) = (3, 1)
    v = torch.tensor([[4.0], [5.0], [6.0]], dtype=DT)
    out, weights = scaled_dot_product_attention(x, x, v, return_weights=True)
    assert_close(weights[0], torch.tensor([0.090, 0.245, 0.665], dtype=DT), atol=5e-4, rtol=0)
    assert_close(weights[0], torch.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=DT), 0))  # scores 1*1, 1*2, 1*3
    assert_close(out[:, 0], torch.tensor([5.575, 5.851, 5.948], dtype=DT), atol=5e-4, rtol=0)
    assert_close(weights.sum(-1), torch.ones(3, dtype=DT))
    # the article's weights [1/3, 2/3, 1/3] do not even sum to 1
    assert not math.isclose(1 / 3 + 2 / 3 + 1 / 3, 1.0)


# ----- the mistakes are caught -------------------------------------------------------------------------------


def unscaled(q, k, v, mask=None):
    return scaled_dot_product_attention(q, k, v, mask, scale=1.0)


def mask_after_softmax(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if mask is not None:
        weights = weights * mask  # rows no longer sum to 1
    return weights @ v


def values_times_weights(q, k, v, mask=None):
    _, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    return v @ weights  # shapes only work because T == D here


def test_the_reference_check_rejects_unscaled_scores():
    q, k, v = qkv((2, 5, 16))
    assert matches_torch(scaled_dot_product_attention, q, k, v)
    assert not matches_torch(unscaled, q, k, v)


def test_the_reference_check_rejects_masking_after_the_softmax():
    q, k, v = qkv((2, 5, 4))
    mask = causal_mask(5)
    assert matches_torch(scaled_dot_product_attention, q, k, v, mask)
    assert matches_torch(mask_after_softmax, q, k, v)  # identical without a mask...
    assert not matches_torch(mask_after_softmax, q, k, v, mask)  # ...wrong with one
    _, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert_close(weights.sum(-1), torch.ones(2, 5, dtype=DT))


def test_the_reference_check_rejects_values_times_weights():
    q, k, v = qkv((2, 4, 4))  # T == D == 4, the only case where V @ weights has the right shape
    assert values_times_weights(q, k, v).shape == (2, 4, 4)
    assert not matches_torch(values_times_weights, q, k, v)
    q, k, v = qkv((2, 5, 4))
    with pytest.raises(RuntimeError):
        values_times_weights(q, k, v)


# ----- masks -------------------------------------------------------------------------------------------------


def test_causal_and_padding_masks():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    pad = padding_mask([2, 3, 0], 3)
    assert pad.shape == (3, 1, 1, 3) and pad.dtype == torch.bool
    assert torch.equal(pad[:, 0, 0].int(), torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.int32))
    both = combine_masks(causal_mask(3), pad)
    assert both.shape == (3, 1, 3, 3)
    assert torch.equal(both[0, 0].int(), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.int32))
    assert combine_masks(None, None) is None and combine_masks(None, pad) is pad
    with pytest.raises(ValueError, match="between 0 and T"):
        padding_mask([4], 3)


def test_mask_must_be_boolean_and_must_not_enlarge_the_scores():
    q, k, v = qkv((2, 3, 4))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, causal_mask(3).float())
    with pytest.raises(ShapeError, match=r"\(2, 1, 1, 3\)"):
        scaled_dot_product_attention(q, k, v, padding_mask([3, 2], 3))  # would broadcast (B,T,T) to (B,B,T,T)
    out = scaled_dot_product_attention(q, k, v, padding_mask([3, 2], 3)[:, 0])  # (B, 1, T) is right
    assert out.shape == (2, 3, 4)
    with pytest.raises(ShapeError, match="k: expected shape"):
        scaled_dot_product_attention(q, k[..., :3], v)


# ----- one head ----------------------------------------------------------------------------------------------


def manual_head(x, head, causal=False):
    q, k, v = x @ head.W_q.weight.T, x @ head.W_k.weight.T, x @ head.W_v.weight.T
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    if causal:
        T = x.shape[1]
        scores = scores + torch.triu(torch.full((T, T), float("-inf"), dtype=DT), diagonal=1)
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("cls", [SelfAttention, CausalSelfAttention])
def test_self_attention_matches_the_formula(cls):
    torch.manual_seed(0)
    head = cls(6, 4).to(DT)
    x = torch.randn(3, 5, 6, dtype=DT, requires_grad=True)
    out = head(x)
    assert out.shape == (3, 5, 4) and head.last_weights is None  # not recording by default
    ref = manual_head(x, head, causal=cls is CausalSelfAttention)
    assert_close(out, ref)
    assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])
    head.record = True
    head(x)
    w = head.last_weights
    assert w.shape == (3, 5, 5) and not w.requires_grad
    assert_close(w.sum(-1), torch.ones(3, 5, dtype=DT))
    if cls is CausalSelfAttention:
        assert torch.equal(w.triu(1), torch.zeros_like(w))


def test_causal_head_combines_the_callers_mask():
    torch.manual_seed(0)
    head = CausalSelfAttention(4).to(DT)
    head.record = True
    head(torch.randn(2, 4, 4, dtype=DT), padding_mask([4, 2], 4)[:, 0])
    w = head.last_weights
    assert torch.equal(w[1, :, 2:], torch.zeros(4, 2, dtype=DT))  # padding of the second sequence
    assert torch.equal(w[0].triu(1), torch.zeros(4, 4, dtype=DT))


# ----- multi-head attention ----------------------------------------------------------------------------------


def test_split_and_merge_heads():
    x = torch.arange(2 * 3 * 8, dtype=DT).reshape(2, 3, 8)
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 2)
    assert torch.equal(heads[1, 2, 0], x[1, 0, 4:6])  # head h holds features h*D .. (h+1)*D - 1
    assert torch.equal(merge_heads(heads), x)
    with pytest.raises(ValueError, match="divisible"):
        split_heads(x, 3)


def torch_pair(C=8, H=2, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(C, H, bias=bias, batch_first=True, dtype=DT)
    with torch.no_grad():  # torch initialises the biases to 0; random ones test that they are copied
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = MultiHeadAttention(C, H, bias=bias).to(DT).load_from_torch(ref)
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
def test_multihead_loaded_from_torch_gives_the_same_outputs_weights_and_gradients(bias):
    ours, ref = torch_pair(bias=bias)
    ours.record = True
    x = torch.randn(3, 5, 8, dtype=DT, requires_grad=True)
    out = ours(x)
    out_ref, w_ref = ref(x, x, x, need_weights=True, average_attn_weights=False)
    assert_close(out, out_ref)
    assert_close(ours.last_weights, w_ref)  # (B, H, T, T)
    assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(out_ref.sum(), x)[0])


def test_multihead_masks_match_torch_with_its_opposite_convention():
    ours, ref = torch_pair(C=12, H=3)
    ours.causal = True
    ours.record = True
    x = torch.randn(2, 6, 12, dtype=DT)
    lengths = [6, 4]
    out = ours(x, padding_mask(lengths, 6))
    key_padding = ~padding_mask(lengths, 6)[:, 0, 0]  # torch: True = padding, to be ignored
    future = ~causal_mask(6)  # torch: True = not allowed
    out_ref, w_ref = ref(x, x, x, key_padding_mask=key_padding, attn_mask=future, average_attn_weights=False)
    assert_close(out, out_ref)
    assert_close(ours.last_weights, w_ref)


def test_fused_path_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    slow = MultiHeadAttention(8, 2, causal=True).to(DT)
    fast = MultiHeadAttention(8, 2, causal=True, fused=True).to(DT)
    fast.load_state_dict(slow.state_dict())
    x = torch.randn(2, 5, 8, dtype=DT, requires_grad=True)
    for mask in (None, padding_mask([5, 3], 5)):
        a, b = slow(x, mask), fast(x, mask)
        assert_close(a, b)
        assert_close(torch.autograd.grad(a.sum(), x)[0], torch.autograd.grad(b.sum(), x)[0])
    fast.record = True  # recording needs the weights: the from-scratch path is used
    fast(x)
    assert fast.last_weights.shape == (2, 2, 5, 5)


def test_multihead_checks_its_inputs():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ShapeError, match="x: expected shape"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="embed_dim"):
        mha.load_from_torch(torch.nn.MultiheadAttention(8, 4, batch_first=True))


def test_multihead_dropout_only_while_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    mha.eval()
    a = mha(x)
    assert torch.equal(a, mha(x))
    mha.train()
    assert not torch.allclose(a, mha(x))


TOKENIZER = CharTokenizer("the cat sat on the mat.")


# ----- attention_maps: every head's weights, from any model ------------------------------------------------


def test_attention_maps_of_a_gpt():
    model = GPT(GPTConfig(TOKENIZER.vocab_size, max_len=32, d_model=16, n_layers=2, n_heads=4)).train()
    ids = TOKENIZER.encode("the cat sat")
    maps = attention_maps(model, ids)
    assert sorted(maps) == [(layer, head) for layer in range(2) for head in range(4)]
    for weights in maps.values():
        assert weights.shape == (11, 11) and weights.dtype == np.float64
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
        assert np.all(np.triu(weights, 1) == 0)  # causal
    # everything is put back: training mode, recording off, nothing kept
    assert model.training
    assert all(not m.record for m in attention_modules(model))
    # the same weights as recording by hand
    block = model.blocks[1].attn
    block.record = True
    model.eval()
    with torch.no_grad():
        model(torch.tensor([ids]))
    block.record = False
    np.testing.assert_allclose(maps[(1, 2)], block.last_weights[0, 2].double().numpy())
    np.testing.assert_array_equal(maps[(0, 0)], attention_maps(model, torch.tensor(ids))[(0, 0)])


def test_attention_maps_of_any_module_and_fused_models():
    torch.manual_seed(0)
    stack = nn.Sequential(CausalSelfAttention(8, 8), nn.ReLU(), MultiHeadAttention(8, 2))
    maps = attention_maps(stack, torch.randn(3, 5, 8))  # float vectors pass through unchanged
    assert sorted(maps) == [(0, 0), (1, 0), (1, 1)]
    assert all(w.shape == (5, 5) for w in maps.values())
    assert np.all(np.triu(maps[(0, 0)], 1) == 0) and not np.all(np.triu(maps[(1, 0)], 1) == 0)
    fused = GPT(GPTConfig(10, max_len=8, d_model=8, n_layers=1, n_heads=2, fused_attention=True))
    assert sorted(attention_maps(fused, [1, 2, 3])) == [(0, 0), (0, 1)]
    with pytest.raises(ValueError, match="no lmbook attention module"):
        attention_maps(nn.Linear(3, 3), torch.zeros(1, 3))
