"""Tests of lmbook.inference: saved and in-memory bytes of float and torchao-quantised weights, the live
activation bytes of known chains, and the KV cache against the uncached GPT (logits at every step in float64,
the same generated tokens, the bytes of the formula)."""

import copy
import logging

import pytest
import torch
from torch import nn

from lmbook.gpt import GPT, GPTConfig
from lmbook.inference import (
    KVCache,
    bytes_by_dtype,
    cached_forward,
    generate_cached,
    kv_cache_bytes,
    live_activation_bytes,
    saved_bytes,
)
from lmbook.memory import parameter_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64))


def test_saved_bytes_are_the_numbers_plus_a_small_overhead():
    model = _mlp()
    numbers = parameter_bytes(model)  # 4 bytes per float32 parameter
    assert numbers == 4 * (256 * 256 + 256 + 256 * 64 + 64)
    size = saved_bytes(model)
    assert numbers < size < numbers + 8_000
    assert saved_bytes(model.state_dict()) == size
    half = copy.deepcopy(model).to(torch.float16)
    assert numbers / 2 < saved_bytes(half) < numbers / 2 + 8_000


def test_saved_bytes_of_a_torchao_int8_model():
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = _mlp()
    quantised = copy.deepcopy(model)
    quantize_(quantised, Int8WeightOnlyConfig())
    weights = 256 * 256 + 256 * 64  # one byte each, plus a float scale per output channel and the float biases
    assert weights < saved_bytes(quantised) < weights + 4 * (256 + 64) * 2 + 16_000
    assert saved_bytes(quantised) < saved_bytes(model) / 3


def test_saved_bytes_rejects_other_objects():
    with pytest.raises(TypeError, match="nn.Module or a state dict, got list"):
        saved_bytes([torch.zeros(3)])


def test_bytes_by_dtype_counts_float_weights_and_opens_up_torchao_weights():
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = _mlp()
    assert bytes_by_dtype(model) == {"float32": parameter_bytes(model)}
    quantised = copy.deepcopy(model)
    quantize_(quantised, Int8WeightOnlyConfig())
    parts = bytes_by_dtype(quantised)
    assert parts["int8"] >= 256 * 256 + 256 * 64  # the weights, one byte each (and any int8 zero points)
    assert parts["float32"] == 4 * (256 + 64) * 2  # the biases and one scale per output channel
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert bytes_by_dtype(half) == {"bfloat16": parameter_bytes(model) // 2}


def test_bytes_by_dtype_counts_tied_weights_once():
    model = GPT(GPTConfig.cpu(50))
    assert model.lm_head.weight is model.token_embedding.weight
    assert bytes_by_dtype(model)["float32"] == 4 * sum(p.numel() for p in model.parameters())  # each once


def test_live_activation_bytes_of_a_known_chain():
    torch.manual_seed(0)
    B = 50
    model = nn.Sequential(nn.Linear(10, 1000), nn.ReLU(), nn.Linear(1000, 10)).double()
    x = torch.randn(B, 10, dtype=torch.float64)
    with torch.inference_mode():
        live = live_activation_bytes(lambda: model(x), exclude=[*model.parameters(), x])
    # Linear 1's output (B, 1000) is alive while ReLU writes its own (B, 1000); then it is freed, so the peak is
    # two of them, and the total adds the (B, 10) output.
    hidden = B * 1000 * 8
    assert live.peak == 2 * hidden
    assert live.largest == hidden and live.largest_op.startswith("aten.")
    assert live.total == 2 * hidden + B * 10 * 8 and live.n_tensors == 3


def test_live_activation_bytes_sees_what_stays_alive():
    x = torch.randn(100, 100)  # 40,000 bytes
    kept = []

    def keep_all():
        a = x * 2
        kept.append(a)
        b = a + 1
        kept.append(b)

    def keep_none():
        a = x * 2
        b = a + 1
        del a, b
        c = x - 1
        del c

    assert live_activation_bytes(keep_all, exclude=[x]).peak == 80_000
    freed = live_activation_bytes(keep_none, exclude=[x])
    assert freed.peak == 80_000 and freed.total == 120_000  # a and b at once; c after both were freed


def test_kv_cache_bytes_formula():
    assert kv_cache_bytes(2, 4, 16, 64, batch_size=3, bytes_per_number=4) == 2 * 2 * 4 * 16 * 64 * 3 * 4
    with pytest.raises(ValueError, match="seq_len must be at least 0, got -1"):
        kv_cache_bytes(2, 4, 16, -1)
    with pytest.raises(ValueError, match="bytes_per_number must be positive"):
        kv_cache_bytes(2, 4, 16, 8, bytes_per_number=0)


def _gpt(dtype=torch.float64) -> GPT:
    config = GPTConfig.cpu(37, max_len=40, d_model=32, n_layers=3, n_heads=4)
    model = GPT(config, seed=1).to(dtype).eval()
    with torch.no_grad():  # larger than the initial 0.02 weights, so attention is far from uniform
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel())))
    return model


def test_cached_logits_equal_the_models_at_every_step():
    model = _gpt()
    torch.manual_seed(2)
    idx = torch.randint(0, 37, (3, 30))
    cache = KVCache.for_model(model, batch_size=3)
    with torch.no_grad():
        full = model(idx)  # (B, T, V)
        prompt = cached_forward(model, idx[:, :10], cache)  # the prompt in one pass
        torch.testing.assert_close(prompt, full[:, :10], rtol=0, atol=1e-10)
        for t in range(10, 30):  # then one token at a time
            step = cached_forward(model, idx[:, t : t + 1], cache)
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=0, atol=1e-10)
    assert cache.length == 30


def test_cache_holds_the_bytes_of_the_formula():
    model = _gpt(torch.float32)
    cache = KVCache.for_model(model, batch_size=2, capacity=25)
    c = model.config
    assert cache.nbytes == kv_cache_bytes(c.n_layers, c.n_heads, c.d_model // c.n_heads, 25, 2, bytes_per_number=4)
    assert cache.keys.shape == (3, 2, 4, 25, 8)


def test_generate_cached_gives_the_same_tokens_as_generate():
    model = _gpt()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = model.generate(prompt, 25, temperature=0)
    assert torch.equal(generate_cached(model, prompt, 25, temperature=0), greedy)
    sampled = model.generate(prompt, 25, temperature=1.0, generator=torch.Generator().manual_seed(0))
    cached = generate_cached(model, prompt, 25, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached, sampled)
    assert not torch.equal(sampled, greedy)  # sampling really differs, so the check above means something


def test_cache_errors_name_the_sizes():
    model = _gpt()
    with pytest.raises(ValueError, match="exceeds the model's max_len=40"):
        generate_cached(model, torch.zeros(1, 30, dtype=torch.long), 11)
    cache = KVCache.for_model(model, batch_size=1, capacity=5)
    with pytest.raises(ValueError, match="the cache holds 5 tokens; 0 \\+ 6 do not fit"):
        cached_forward(model, torch.zeros(1, 6, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="capacity must be between 1 and the model's max_len=40, got 41"):
        KVCache.for_model(model, batch_size=1, capacity=41)
    with pytest.raises(ValueError, match="idx"):
        cached_forward(model, torch.zeros(2, 3, dtype=torch.long), cache)  # the cache is for one sequence
