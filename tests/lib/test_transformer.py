"""Tests of lmbook.transformer: layer norm against torch, the feed-forward network, the two block layouts, and
the parameter and FLOP arithmetic against published sizes, built models and torch's FLOP counter."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from lmbook.attention import causal_mask
from lmbook.bert import BertConfig
from lmbook.gpt import GPT, GPTConfig
from lmbook.testing import ShapeError
from lmbook.transformer import (
    KNOWN_MODELS,
    PUBLISHED_TOLERANCE,
    FeedForward,
    LayerNorm,
    TransformerBlock,
    TransformerConfig,
    check_sizes,
    count_flops,
    count_parameters,
)

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----- layer norm ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "eps"), [((4, 6), 1e-5), ((2, 3, 6), 1e-5), ((2, 3, 6), 0.1)])
def test_layer_norm_matches_torch_values_and_gradients(shape, eps):
    torch.manual_seed(0)
    ours, ref = LayerNorm(6, eps).to(DT), nn.LayerNorm(6, eps=eps, dtype=DT)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())  # same parameter names
    x = (3 * torch.randn(shape, dtype=DT) + 2).requires_grad_()
    up = torch.randn(shape, dtype=DT)
    a, b = ours(x), ref(x)
    assert_close(a, b)
    ga = torch.autograd.grad((a * up).sum(), (x, ours.weight, ours.bias))
    gb = torch.autograd.grad((b * up).sum(), (x, ref.weight, ref.bias))
    for u, w in zip(ga, gb, strict=True):
        assert_close(u, w)


def test_layer_norm_normalises_each_token_and_rejects_unbiased_variance():
    torch.manual_seed(0)
    x = torch.randn(5, 8, dtype=DT) * 4 + 1
    y = LayerNorm(8, eps=0.0).to(DT)(x)
    assert_close(y.mean(-1), torch.zeros(5, dtype=DT))
    assert_close(y.var(-1, unbiased=False), torch.ones(5, dtype=DT))
    wrong = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5)  # divides by C - 1
    assert not torch.allclose(wrong, nn.functional.layer_norm(x, (8,)))
    with pytest.raises(ShapeError):
        LayerNorm(8)(torch.zeros(2, 7))


# ----- feed-forward ------------------------------------------------------------------------------------------


def test_feed_forward_is_linear_gelu_linear():
    torch.manual_seed(0)
    ffn = FeedForward(6).to(DT)
    assert (ffn.fc1.in_features, ffn.fc1.out_features, ffn.fc2.out_features) == (6, 24, 6)
    assert isinstance(ffn.act, nn.GELU)
    x = torch.randn(2, 3, 6, dtype=DT)
    ref = nn.functional.linear(nn.functional.gelu(nn.functional.linear(x, ffn.fc1.weight, ffn.fc1.bias)),
                               ffn.fc2.weight, ffn.fc2.bias)  # fmt: skip
    assert_close(ffn(x), ref)
    assert sum(p.numel() for p in ffn.parameters()) == 8 * 36 + 5 * 6  # 2 C (4C) + 4C + C
    assert FeedForward(6, d_ff=10).fc1.out_features == 10


def test_feed_forward_gelu_variants():
    """GPT-2's tanh approximation, written out, against the exact GELU that BERT uses (erf)."""
    torch.manual_seed(0)
    exact, tanh = FeedForward(6).to(DT), FeedForward(6, gelu="tanh").to(DT)
    tanh.load_state_dict(exact.state_dict())
    z = torch.linspace(-4, 4, 101, dtype=DT)
    gpt2_gelu = 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    assert_close(tanh.act(z), gpt2_gelu, atol=1e-15, rtol=1e-14)
    assert_close(exact.act(z), 0.5 * z * (1 + torch.erf(z / math.sqrt(2))), atol=1e-15, rtol=1e-14)
    assert 1e-4 < (tanh.act(z) - exact.act(z)).abs().max() < 1e-3  # close, but not the same function
    with pytest.raises(ValueError, match="unknown gelu 'fast'; choose one of 'exact', 'tanh'"):
        FeedForward(6, gelu="fast")
    assert TransformerBlock(6, 2, gelu="tanh").ffn.act.approximate == "tanh"


def test_feed_forward_is_not_relu_of_one_linear_plus_x():
    """Seed-map mistake 7: ``ReLU(Linear(x)) + x`` is one layer with a residual, a different function."""
    torch.manual_seed(0)
    mistake = nn.Linear(6, 6, dtype=DT)
    x = torch.randn(4, 6, dtype=DT)
    ffn = FeedForward(6).to(DT)
    assert sum(p.numel() for p in mistake.parameters()) == 42 != sum(p.numel() for p in ffn.parameters())
    with torch.no_grad():  # silence the second layer: the real block then outputs 0, the mistake still outputs x
        ffn.fc2.weight.zero_()
        ffn.fc2.bias.zero_()
        mistake.weight.zero_()
        mistake.bias.fill_(-1.0)
    assert torch.equal(ffn(x), torch.zeros_like(x))  # the residual is added by the block, not inside
    assert_close(torch.relu(mistake(x)) + x, x)


# ----- blocks ----------------------------------------------------------------------------------------------------


def make_block(pre_ln, causal=False):
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, causal=causal, pre_ln=pre_ln).to(DT)
    with torch.no_grad():
        for ln in (block.ln1, block.ln2):
            ln.weight.normal_()
            ln.bias.normal_()
    return block


@pytest.mark.parametrize("pre_ln", [True, False])
def test_block_layouts(pre_ln):
    block = make_block(pre_ln)
    x = torch.randn(2, 5, 8, dtype=DT)
    if pre_ln:
        h = x + block.attn(block.ln1(x))
        ref = h + block.ffn(block.ln2(h))
    else:
        h = block.ln1(x + block.attn(x))
        ref = block.ln2(h + block.ffn(h))
    assert_close(block(x), ref)
    other = make_block(not pre_ln)
    other.load_state_dict(block.state_dict())
    assert not torch.allclose(other(x), block(x))


def test_block_keeps_the_shape_and_a_causal_block_ignores_the_future():
    block = make_block(True, causal=True)
    x = torch.randn(2, 6, 8, dtype=DT)
    y = block(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 8, dtype=DT)
    assert_close(block(x2)[:, :4], y[:, :4])
    assert not torch.allclose(block(x2)[:, 4:], y[:, 4:])
    explicit = make_block(True, causal=False)
    assert_close(explicit(x, causal_mask(6)), y)


# ----- parameter counts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KNOWN_MODELS)
def test_counts_match_the_published_sizes(name):
    known = KNOWN_MODELS[name]
    total = count_parameters(known.config, known.kind)["total"]
    assert abs(total - known.published) <= PUBLISHED_TOLERANCE * known.published, (name, total)


def test_exact_counts_of_gpt2_small_and_bert_base():
    # the numbers of the released checkpoints (Hugging Face GPT2Model with tied head; BertModel with pooler)
    assert count_parameters(KNOWN_MODELS["GPT-2 small"].config)["total"] == 124_439_808
    assert count_parameters(KNOWN_MODELS["BERT-base"].config, "bert")["total"] == 109_482_240
    assert count_parameters(KNOWN_MODELS["BERT-large"].config, "bert")["total"] == 335_141_888


def test_components_add_up():
    for known in KNOWN_MODELS.values():
        counts = count_parameters(known.config, known.kind)
        parts = {k: v for k, v in counts.items() if k not in ("total", "non_embedding")}
        assert sum(parts.values()) == counts["total"]
        assert counts["non_embedding"] < counts["total"]
    with pytest.raises(ValueError, match="kind"):
        count_parameters(KNOWN_MODELS["BERT-base"].config, "t5")


# One good size of each config, in the shared names; each bad case changes one field.
GOOD_SIZES = {"vocab_size": 50, "max_len": 16, "d_model": 32, "n_layers": 2, "n_heads": 4, "d_ff": 64}
BAD_SIZES = [
    ({"d_model": 30}, "d_model=30 must be divisible by n_heads=4"),
    ({"n_heads": 0}, "n_heads must be a positive integer, got 0"),
    ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
    ({"max_len": -1}, "max_len must be a positive integer, got -1"),
    ({"n_layers": 2.0}, "n_layers must be a positive integer, got 2.0"),
    ({"d_ff": 0}, "d_ff must be a positive integer, got 0"),
]


@pytest.mark.parametrize("config_class", [TransformerConfig, GPTConfig, BertConfig])
@pytest.mark.parametrize(("change", "message"), BAD_SIZES)
def test_every_config_rejects_bad_sizes_with_the_same_message(config_class, change, message):
    config_class(**GOOD_SIZES)  # the good sizes pass
    with pytest.raises(ValueError, match=f"^{config_class.__name__}: {message}"):
        config_class(**{**GOOD_SIZES, **change})


@pytest.mark.parametrize("config_class", [GPTConfig, BertConfig])
@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_configs_with_dropout_reject_it_outside_0_to_1(config_class, dropout):
    with pytest.raises(ValueError, match=f"^{config_class.__name__}: dropout must be in \\[0, 1\\), got {dropout}"):
        config_class(**GOOD_SIZES, dropout=dropout)


def test_the_size_names_are_the_same_in_every_config():
    for config in (TransformerConfig(**GOOD_SIZES), GPTConfig(**GOOD_SIZES), BertConfig(**GOOD_SIZES)):
        assert {name: getattr(config, name) for name in GOOD_SIZES} == GOOD_SIZES
        check_sizes(config)  # and the check accepts them as they are
    assert GPTConfig(**GOOD_SIZES).transformer_config() == TransformerConfig(**GOOD_SIZES)
    assert BertConfig(**GOOD_SIZES).transformer_config() == TransformerConfig(**GOOD_SIZES)


CONFIGS = [
    GPTConfig(50, max_len=16, d_model=32, n_layers=2, n_heads=4),
    GPTConfig(37, max_len=9, d_model=24, n_layers=3, n_heads=3, d_ff=40, tied_embeddings=False),
    GPTConfig(20, max_len=8, d_model=16, n_layers=1, n_heads=2, bias=False),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_counts_match_the_built_gpt(config):
    model = GPT(config)
    counts = count_parameters(config)  # a GPTConfig is accepted
    assert counts == count_parameters(config.transformer_config())
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # tied weights counted once
    blocks = sum(p.numel() for p in model.blocks.parameters())
    assert counts["attention"] + counts["feed_forward"] + counts["layer_norms"] == blocks


class TinyBert(nn.Module):
    """BERT's layout from lmbook parts, to check the "bert" count against a built model."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = nn.Embedding(c.max_len, c.d_model)
        self.segments = nn.Embedding(c.type_vocab_size, c.d_model)
        self.ln = LayerNorm(c.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, pre_ln=False, d_ff=c.d_ff) for _ in range(c.n_layers)
        )
        self.pooler = nn.Linear(c.d_model, c.d_model)


def test_bert_count_matches_a_built_encoder():
    c = TransformerConfig(40, 12, 16, 2, 4, d_ff=24)
    assert count_parameters(c, "bert")["total"] == sum(p.numel() for p in TinyBert(c).parameters())


# ----- FLOPs ----------------------------------------------------------------------------------------------------


def test_flops_match_torchs_counter():
    config = GPTConfig(30, max_len=12, d_model=16, n_layers=2, n_heads=2)
    model = GPT(config).eval()
    idx = torch.zeros(1, 12, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        model(idx)
    flops = count_flops(config, tokens=12)
    assert counter.get_total_flops() == flops["forward"]


def test_flops_formula():
    c = KNOWN_MODELS["GPT-2 small"].config
    f = count_flops(c, tokens=1000)
    N = c.n_layers * (4 * c.d_model**2 + 2 * c.d_model * c.ffn_width)
    assert f["linear"] == 2 * N
    assert f["attention"] == 4 * c.n_layers * c.max_len * c.d_model
    assert f["forward_per_token"] == f["linear"] + f["attention"] + f["lm_head"]
    assert f["forward"] == 1000 * f["forward_per_token"] and f["training"] == 3 * f["forward"]
    # roughly 2 x the non-embedding parameters per token, and 6 N D for training
    non_emb = count_parameters(c)["non_embedding"]
    assert math.isclose(f["linear"], 2 * non_emb, rel_tol=0.01)
    assert count_flops(c, seq_len=10)["attention"] < f["attention"]
