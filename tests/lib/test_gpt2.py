"""Tests of lmbook.gpt2: lmbook's GPT with GPT-2 weights against transformers.GPT2LMHeadModel (float64 logits to
1e-10) on several small random GPT-2 configurations, on full and on right-padded batches; the loader's checks (a
weight not transposed, another size, a missing or unexplained entry are caught); GPT-2 small's parameter count; and
the hub loader's fall-back without a network. No test touches the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub are imported

import socket
import time

import pytest
import torch
from torch.testing import assert_close

import lmbook.gpt2 as gpt2_module
from lmbook.checkpoint import load_mapped
from lmbook.gpt import GPT, GPTConfig
from lmbook.gpt2 import (
    DOCUMENTED_UNUSED,
    GPT2_SMALL,
    gpt2_config,
    gpt2_name_map,
    load_gpt2_weights,
    load_pretrained_gpt2,
)
from lmbook.testing import ShapeError
from lmbook.transformer import KNOWN_MODELS, count_parameters

transformers = pytest.importorskip("transformers")

DT = torch.float64
TOL = {"atol": 1e-10, "rtol": 1e-10}
CONFIGS = {
    "2 layers, 2 heads, C=32": dict(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=16),
    "1 layer, 4 heads, C=48": dict(n_layer=1, n_head=4, n_embd=48, vocab_size=57, n_positions=24),
    "3 layers, 3 heads, C=24, d_ff=40": dict(n_layer=3, n_head=3, n_embd=24, vocab_size=64, n_positions=12, n_inner=40),
    "exact GELU": dict(n_layer=2, n_head=4, n_embd=16, vocab_size=30, n_positions=10, activation_function="gelu"),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(seed: int = 0, **sizes):
    """A random transformers GPT-2 in float64 whose every parameter is random (biases and layer norms too, so a
    bias or a norm loaded into the wrong place changes the logits)."""
    config = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, attn_implementation="eager", **sizes)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).to(DT).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def ours_from(ref) -> GPT:
    model = GPT(gpt2_config(ref.config)).to(DT).eval()
    report = load_gpt2_weights(model, ref.state_dict())
    assert report.missing == [] and report.unexpected == []
    return model


@pytest.mark.parametrize("sizes", CONFIGS.values(), ids=CONFIGS.keys())
def test_logits_equal_transformers_on_full_batches(sizes):
    ref = reference(**sizes)
    ours = ours_from(ref)
    T = sizes["n_positions"]
    ids = torch.randint(0, sizes["vocab_size"], (3, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(ours(ids), ref(ids).logits, **TOL)
        assert_close(ours(ids[:, :5]), ref(ids[:, :5]).logits, **TOL)  # shorter than max_len


@pytest.mark.parametrize("sizes", list(CONFIGS.values())[:2], ids=list(CONFIGS)[:2])
def test_logits_equal_transformers_on_right_padded_batches(sizes):
    """Sequences of different lengths, padded on the right: transformers gets the attention mask, our GPT needs
    none (causal attention never looks right), and the logits of every real position agree."""
    ref = reference(seed=2, **sizes)
    ours = ours_from(ref)
    T, V = sizes["n_positions"], sizes["vocab_size"]
    lengths = [T, 3, T - 4]
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(3, T, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, n:] = 0  # the padding token
        mask[row, :n] = 1
    with torch.no_grad():
        theirs, mine = ref(ids, attention_mask=mask).logits, ours(ids)
        for row, n in enumerate(lengths):
            assert_close(mine[row, :n], theirs[row, :n], **TOL)
            assert_close(mine[row, :n], ours(ids[row : row + 1, :n])[0], **TOL)  # the same sequence alone


def test_greedy_generation_equals_transformers():
    ref = reference(seed=4, **CONFIGS["2 layers, 2 heads, C=32"])
    ours = ours_from(ref)
    prompt = torch.tensor([[5, 17, 42]])
    expected = ref.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    assert torch.equal(ours.generate(prompt, 8, temperature=0), expected)


def test_loads_gpt2model_checkpoints_and_folders(tmp_path):
    ref = reference(seed=5, **CONFIGS["1 layer, 4 heads, C=48"])
    ids = torch.randint(0, 57, (2, 24), generator=torch.Generator().manual_seed(6))
    # GPT2Model's names have no "transformer." prefix, and old checkpoints keep the causal mask as attn.bias.
    sd = {k.removeprefix("transformer."): v for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 24, 24, dtype=torch.bool))
    ours = GPT(gpt2_config(ref.config)).to(DT).eval()
    report = load_gpt2_weights(ours, sd)
    assert report.unused == ["h.0.attn.bias"] and report.unexpected == []
    assert "not used, as documented: ['h.0.attn.bias']" in str(report)
    with torch.no_grad():
        assert_close(ours(ids), ref(ids).logits, **TOL)
    # A folder written by save_pretrained: config.json and model.safetensors.
    ref.save_pretrained(tmp_path)
    from_folder = GPT(gpt2_config(tmp_path)).to(DT).eval()
    load_gpt2_weights(from_folder, tmp_path)
    with torch.no_grad():
        assert_close(from_folder(ids), ref(ids).logits, **TOL)


def test_every_transpose_matters():
    """A map that forgets the transpose of a square Conv1D weight (attn.c_proj is (C, C)) passes every shape
    check, and only the comparison of the logits catches it."""
    ref = reference(seed=7, **CONFIGS["2 layers, 2 heads, C=32"])
    ours = GPT(gpt2_config(ref.config)).to(DT).eval()
    wrong = gpt2_name_map(2, 32)
    wrong["blocks.0.attn.W_o.weight"] = "h.0.attn.c_proj.weight"  # no transpose
    sd = {k.removeprefix("transformer."): v for k, v in ref.state_dict().items()}
    load_mapped(ours, sd, wrong, DOCUMENTED_UNUSED)
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert (ours(ids) - ref(ids).logits).abs().max() > 1e-3


def test_shape_and_name_errors_are_caught():
    ref = reference(seed=9, **CONFIGS["2 layers, 2 heads, C=32"])
    sd = dict(ref.state_dict())
    ours = GPT(gpt2_config(ref.config)).to(DT)
    linear_style = dict(sd, **{"transformer.h.0.mlp.c_fc.weight": sd["transformer.h.0.mlp.c_fc.weight"].T})
    with pytest.raises(ShapeError, match=r"h\.0\.mlp\.c_fc\.weight has shape \(32, 128\) after conversion, but our "
                       r"blocks\.0\.ffn\.fc1\.weight has shape \(128, 32\)"):  # fmt: skip
        load_gpt2_weights(ours, linear_style)
    wider = GPT(gpt2_config(reference(**dict(CONFIGS["2 layers, 2 heads, C=32"], n_embd=64)).config)).to(DT)
    with pytest.raises(ShapeError, match="wte.weight has shape"):
        load_gpt2_weights(wider, sd)
    with pytest.raises(KeyError, match=r"NOT USED, unexpected: \['h\.0\.extra'\]"):
        load_gpt2_weights(ours, dict(sd, **{"transformer.h.0.extra": torch.zeros(1)}))
    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.ln_2.bias"}
    with pytest.raises(KeyError, match=r"missing \(not in the checkpoint\): \['blocks\.1\.ln2\.bias'\]"):
        load_gpt2_weights(ours, missing)
    report = load_gpt2_weights(ours, missing, strict=False)
    assert report.missing == ["blocks.1.ln2.bias"]


def test_config_conversion_refuses_what_gpt_does_not_have():
    base = dict(CONFIGS["2 layers, 2 heads, C=32"], bos_token_id=0, eos_token_id=0)
    assert gpt2_config(transformers.GPT2Config(**base)).gelu == "tanh"
    with pytest.raises(ValueError, match="activation_function 'relu' is not a GELU"):
        gpt2_config(transformers.GPT2Config(**base, activation_function="relu"))
    with pytest.raises(ValueError, match="layer_norm_epsilon must be 1e-5"):
        gpt2_config(transformers.GPT2Config(**base, layer_norm_epsilon=1e-6))
    with pytest.raises(ValueError, match="unknown gelu 'fast'"):
        GPTConfig(10, gelu="fast")


def test_gpt2_small_has_the_published_124m_parameters():
    with torch.device("meta"):  # sizes only: no memory, no random numbers
        ours = GPT(GPT2_SMALL)
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    n_ours = sum(p.numel() for p in ours.parameters())  # the tied LM head is counted once
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_ours == n_theirs == count_parameters(GPT2_SMALL)["total"] == 124_439_808
    assert abs(n_ours - KNOWN_MODELS["GPT-2 small"].published) / 124e6 < 0.005
    assert gpt2_config(transformers.GPT2Config()) == GPT2_SMALL


def test_pretrained_gpt2_is_skipped_within_seconds_without_network(monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(gpt2_module, "GPT2_FILES", ("lmbook-test-not-cached.json",))  # never in a cache

    def hang(*args, **kwargs):  # what a DNS look-up without a network can do
        time.sleep(5.0)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert load_pretrained_gpt2("gpt2", timeout=0.5) is None
    assert time.perf_counter() - start < 3.0
    out = capsys.readouterr().out
    assert "Skipped: loading GPT-2 ('gpt2') needs the Hugging Face hub" in out and "did not answer within 0.5 s" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_pretrained_gpt2("gpt2", timeout=0.5) is None
    assert "HF_HUB_OFFLINE is set (offline mode)" in capsys.readouterr().out


def test_pretrained_gpt2_loads_a_hub_folder(monkeypatch, tmp_path, capsys):
    """The success path, with a small random GPT-2 standing in for the hub's folder (and its tokenizer faked)."""
    ref = reference(seed=10, **CONFIGS["2 layers, 2 heads, C=32"])
    ref.save_pretrained(tmp_path)
    monkeypatch.setattr(gpt2_module, "resolve_hub_model", lambda name, files, timeout: (tmp_path, ""))
    monkeypatch.setattr(transformers.GPT2TokenizerFast, "from_pretrained", lambda folder: f"tokenizer of {folder}")
    model, tokenizer = load_pretrained_gpt2("gpt2")
    assert tokenizer == f"tokenizer of {tmp_path}" and not model.training
    assert "loaded 36 tensors" in capsys.readouterr().out
    ids = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():  # our model is in float32 here, as it is in the chapter
        assert_close(model(ids), ref(ids).logits.float(), atol=1e-5, rtol=1e-5)
