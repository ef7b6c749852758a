"""Tests of lmbook.memory: storages counted once, the training state of a small GPT as allocated against
lmbook.cost's formulas, and the activations autograd saves (with and without checkpointing)."""

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lmbook.cost import training_memory
from lmbook.gpt import GPT, GPTConfig
from lmbook.loop import make_optimizer
from lmbook.memory import (
    activation_bytes,
    gradient_bytes,
    optimizer_state_bytes,
    parameter_bytes,
    tensor_bytes,
    training_state_bytes,
)
from lmbook.transformer import count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tensor_bytes_counts_each_storage_once():
    a = torch.zeros(10, 3)  # 120 bytes
    b = torch.zeros(5, dtype=torch.float64)  # 40 bytes
    assert tensor_bytes([a]) == 120
    assert tensor_bytes([a, a.t(), a[2:4], b, None]) == 160  # views add nothing; a slice keeps all of a alive
    assert tensor_bytes([a[2:4].clone()]) == 24


def _one_step(model, optimizer):
    idx = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    model.loss(idx, idx).backward()
    optimizer.step()


def test_small_gpt_with_adamw_allocates_what_the_formula_says():
    config = GPTConfig.cpu(96)
    model = GPT(config)
    n_params = count_parameters(config)["total"]
    assert parameter_bytes(model) == 4 * n_params  # the tied LM head counted once
    optimizer = make_optimizer(model, "adamw")
    assert optimizer_state_bytes(optimizer) == {"per_parameter": 0, "other": 0}  # states are created lazily
    _one_step(model, optimizer)
    measured = training_state_bytes(model, optimizer)
    expected = training_memory(n_params, "fp32", "adam")
    for part in ("weights", "gradients", "optimizer"):
        assert measured[part] == expected[part]
    # the rest is one step counter per parameter tensor
    n_tensors = len(list(model.parameters()))
    assert 0 < measured["optimizer_other"] <= 8 * n_tensors
    assert measured["total"] == expected["total"] + measured["optimizer_other"]


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_a_16_bit_model_with_adam_allocates_half(precision, dtype):
    model = GPT(GPTConfig(20, max_len=16, d_model=16, n_layers=1, n_heads=2)).to(dtype)
    optimizer = torch.optim.AdamW(model.parameters())
    _one_step(model, optimizer)
    n_params = sum(p.numel() for p in model.parameters())
    measured, expected = training_state_bytes(model, optimizer), training_memory(n_params, precision, "adam")
    assert [measured[k] for k in ("weights", "gradients", "optimizer")] == [
        expected[k] for k in ("weights", "gradients", "optimizer")
    ]


def test_sgd_with_and_without_momentum():
    model = nn.Linear(10, 10)
    for name, momentum in (("momentum", 0.9), ("sgd", 0.0)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
        model(torch.ones(3, 10)).sum().backward()
        optimizer.step()
        assert training_state_bytes(model, optimizer)["optimizer"] == training_memory(110, "fp32", name)["optimizer"]
    assert gradient_bytes(model) == 440


def test_activation_bytes_sees_what_autograd_saves():
    x = torch.randn(100, requires_grad=True)  # 400 bytes
    m = activation_bytes(lambda: torch.exp(x))  # exp saves its output
    assert (m.saved_bytes, m.n_saved) == (400, 1)
    m = activation_bytes(lambda: x * x)  # x saved twice, one storage
    assert (m.saved_bytes, m.n_saved) == (400, 2)
    m = activation_bytes(lambda: (x + 1).sum())  # addition saves nothing
    assert (m.saved_bytes, m.n_saved) == (0, 0)
    with torch.no_grad():
        assert activation_bytes(lambda: torch.exp(x)).saved_bytes == 0


def test_activation_bytes_excludes_weights_and_keeps_backward_working():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4, bias=False)
    x = torch.randn(5, 8, requires_grad=True)
    assert activation_bytes(lambda: layer(x)).saved_bytes == (5 * 8 + 4 * 8) * 4  # input and weight
    m = activation_bytes(lambda: layer(x).pow(2).sum(), exclude=layer.parameters())
    assert m.saved_bytes == (5 * 8 + 5 * 4) * 4  # input and the squared output's input
    m.output.backward()
    expected = torch.autograd.grad(layer(x).pow(2).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)
    if not torch.cuda.is_available():
        assert m.cuda_peak_bytes is None


def test_checkpointing_saves_less():
    torch.manual_seed(0)
    blocks = nn.Sequential(*(nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 32)) for _ in range(3)))
    x = torch.randn(16, 32, requires_grad=True)

    def plain():
        return blocks(x).sum()

    def checkpointed():
        h = x
        for block in blocks:
            h = checkpoint(block, h, use_reentrant=False)
        return h.sum()

    full = activation_bytes(plain, exclude=blocks.parameters())
    light = activation_bytes(checkpointed, exclude=blocks.parameters())
    # per block: the input (16x32), the hidden layer before and after GELU (16x128 each); checkpointed: inputs only
    assert full.saved_bytes == 3 * (16 * 32 + 2 * 16 * 128) * 4
    assert light.saved_bytes == 3 * 16 * 32 * 4
