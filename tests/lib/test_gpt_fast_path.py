"""The fast path of the book's GPT (``fused_attention=True``) computes what the from-scratch path computes.

In float64, with dropout 0, both paths must give the same logits, the same loss and the same gradient for every
parameter: the fast path only changes *how* (torch's fused kernels for layer norm and attention, one matrix
product for Q, K and V), never *what*. The reference model of ``benchmarks/reference_gpt.py``, which the
speed benchmark times the book's GPT against, must have exactly the book's parameter count.
"""

import importlib.util
import math
import pathlib
from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from lmbook.attention import MultiHeadAttention, padding_mask
from lmbook.gpt import GPT, GPTConfig
from lmbook.transformer import FusedLayerNorm, LayerNorm, TransformerBlock, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DT = torch.float64
ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_reference():
    """benchmarks/reference_gpt.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("reference_gpt", ROOT / "benchmarks" / "reference_gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def twin_models(config: GPTConfig) -> tuple[GPT, GPT]:
    """The from-scratch and the fast GPT with the same float64 weights (the same seed builds the same weights)."""
    slow = GPT(replace(config, fused_attention=False), seed=0).to(DT)
    fast = GPT(replace(config, fused_attention=True), seed=0).to(DT)
    for (name, a), b in zip(slow.state_dict().items(), fast.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    return slow, fast


def random_layer_norms(model: torch.nn.Module) -> None:
    """Give every layer norm a random scale and shift, so that a wrong use of either one shows."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen, dtype=DT))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen, dtype=DT))


def assert_same_gradients(slow: torch.nn.Module, fast: torch.nn.Module) -> None:
    slow_params, fast_params = dict(slow.named_parameters()), dict(fast.named_parameters())
    assert slow_params.keys() == fast_params.keys()  # same names: checkpoints load into either path
    for name, p in slow_params.items():
        assert p.grad is not None and fast_params[name].grad is not None, name
        assert_close(fast_params[name].grad, p.grad, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("bias", [True, False])
def test_fast_gpt_equals_the_from_scratch_gpt_in_logits_loss_and_every_gradient(bias):
    config = GPTConfig(23, max_len=12, d_model=16, n_layers=2, n_heads=4, bias=bias)
    slow, fast = twin_models(config)
    random_layer_norms(slow)
    fast.load_state_dict(slow.state_dict())
    gen = torch.Generator().manual_seed(0)
    idx, targets = torch.randint(23, (3, 12), generator=gen), torch.randint(23, (3, 12), generator=gen)
    assert_close(fast(idx), slow(idx), rtol=1e-12, atol=1e-12)
    loss_slow, loss_fast = slow.loss(idx, targets), fast.loss(idx, targets)
    assert_close(loss_fast, loss_slow, rtol=1e-12, atol=1e-12)
    loss_slow.backward()
    loss_fast.backward()
    assert_same_gradients(slow, fast)


def test_the_fast_path_uses_the_fused_modules_and_the_default_does_not():
    slow, fast = twin_models(GPTConfig.cpu(96))
    assert not any(isinstance(m, FusedLayerNorm) for m in slow.modules())
    norms = [m for m in fast.modules() if isinstance(m, LayerNorm)]
    assert norms and all(isinstance(m, FusedLayerNorm) for m in norms)  # ln1, ln2 of every block and ln_f
    assert all(block.attn.fused for block in fast.blocks)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pre_ln", [True, False])
def test_fast_block_equals_the_from_scratch_block_with_a_padding_mask(causal, pre_ln):
    torch.manual_seed(0)
    slow = TransformerBlock(8, 2, causal=causal, pre_ln=pre_ln).to(DT)
    fast = TransformerBlock(8, 2, causal=causal, pre_ln=pre_ln, fused=True).to(DT)
    random_layer_norms(slow)
    fast.load_state_dict(slow.state_dict())
    mask = padding_mask([6, 4, 1], 6)  # (B, 1, 1, T): the padded keys of the last two sequences are ignored
    x = torch.randn(3, 6, 8, dtype=DT)
    out_slow, out_fast = slow(x, mask), fast(x, mask)
    assert_close(out_fast, out_slow, rtol=1e-12, atol=1e-12)
    weights = torch.randn(out_slow.shape, dtype=DT)  # a loss that weighs every output differently
    (out_slow * weights).sum().backward()
    (out_fast * weights).sum().backward()
    assert_same_gradients(slow, fast)


def test_fused_layer_norm_equals_the_from_scratch_one_and_checks_the_width():
    torch.manual_seed(0)
    slow, fast = LayerNorm(6).to(DT), FusedLayerNorm(6).to(DT)
    random_layer_norms(slow)
    fast.load_state_dict(slow.state_dict())
    x = torch.randn(4, 3, 6, dtype=DT, requires_grad=True)
    a, b = slow(x), fast(x)
    assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert_close(torch.autograd.grad(b.sum() + (b**2).sum(), x)[0], torch.autograd.grad(a.sum() + (a**2).sum(), x)[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(4, 3, 6\), got \(4, 3, 5\)"):
        fast(torch.randn(4, 3, 5))


def test_fast_attention_with_and_without_biases_keeps_the_three_projections_as_parameters():
    for bias in (True, False):
        mha = MultiHeadAttention(8, 2, causal=True, bias=bias, fused=True)
        names = {name for name, _ in mha.named_parameters()}
        expected = {f"{w}.weight" for w in ("W_q", "W_k", "W_v", "W_o")}
        assert names == (expected | {n.replace("weight", "bias") for n in expected} if bias else expected)


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_reference_gpt_has_the_books_parameter_count(preset):
    reference = load_reference()
    config = getattr(GPTConfig, preset)(96)
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised for real
        model = reference.ReferenceGPT(config)
        book = GPT(config, seed=None)
    expected = {"cpu": 110_336, "gpu": 10_782_720}[preset]
    assert reference.count_parameters(model) == expected == count_parameters(config)["total"]
    assert sum(p.numel() for p in book.parameters()) == expected
    assert model.lm_head.weight is model.wte.weight  # tied, counted once


def test_reference_gpt_computes_a_causal_language_model():
    reference = load_reference()
    model = reference.ReferenceGPT(GPTConfig(23, max_len=12, d_model=16, n_layers=2, n_heads=4)).to(DT)
    gen = torch.Generator().manual_seed(0)
    idx, targets = torch.randint(23, (2, 12), generator=gen), torch.randint(23, (2, 12), generator=gen)
    logits = model(idx)
    assert logits.shape == (2, 12, 23)
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 23
    assert_close(model(changed)[:, :7], logits[:, :7])  # the future does not leak back
    assert not torch.allclose(model(changed)[:, 7], logits[:, 7])
    with torch.no_grad():
        assert abs(float(model.loss(idx, targets)) - math.log(23)) < 0.1  # about ln V at the start
