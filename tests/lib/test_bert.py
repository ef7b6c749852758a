"""Tests of lmbook.bert: our BertModel with the offline MiniLM weights against transformers.BertModel (float64,
every layer and the pooler, on a padded batch), the weight loader's checks (wrong shapes and wrong mappings are
caught), the offline fall-back of load_pretrained, and the parameter count. No test touches the network."""

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # set before transformers / huggingface_hub are imported

import re
import socket
import time

import pytest
import torch
from torch.testing import assert_close

from lmbook.bert import (
    DOCUMENTED_UNUSED,
    BertConfig,
    BertModel,
    load_hf_weights,
    load_pretrained,
    read_state_dict,
)
from lmbook.hub import offline_model_path
from lmbook.testing import ShapeError
from lmbook.transformer import count_parameters
from lmbook.wordpiece import WordPieceTokenizer

transformers = pytest.importorskip("transformers")

DT = torch.float64
TEXTS = [
    "The encoder reads the whole sentence at once.",
    "Short one.",
    ("Is the second segment used?", "Yes: its token type is 1."),
    "Padding must not change the real tokens.",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder():
    return offline_model_path()


@pytest.fixture(scope="module")
def state_dict(folder):
    return read_state_dict(folder)


@pytest.fixture(scope="module")
def tokenizer(folder):
    return WordPieceTokenizer(folder / "vocab.txt")


@pytest.fixture(scope="module")
def reference(folder):
    return transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").to(DT).eval()


@pytest.fixture(scope="module")
def ours(folder, state_dict):
    model = BertModel(BertConfig.from_json(folder)).to(DT).eval()
    load_hf_weights(model, state_dict)
    return model


@pytest.fixture(scope="module")
def batch(tokenizer):
    b = tokenizer.batch_encode(TEXTS)
    assert (b["attention_mask"] == 0).any() and (b["token_type_ids"] == 1).any()  # padded, with a pair
    return b


def test_config_from_json(folder):
    c = BertConfig.from_json(folder)
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.d_ff) == (30522, 384, 6, 12, 1536)
    assert (c.max_len, c.type_vocab_size, c.eps) == (512, 2, 1e-12)
    assert BertConfig.from_json(folder / "config.json") == c


def test_config_rejects_other_activations(folder, tmp_path):
    text = (folder / "config.json").read_text().replace('"gelu"', '"gelu_new"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="gelu_new"):
        BertConfig.from_json(tmp_path)


def test_hidden_states_and_pooled_output_match_transformers(ours, reference, batch):
    with torch.no_grad():
        expected = reference(**batch, output_hidden_states=True)
        hidden, pooled = ours(**batch)
        layers = ours.hidden_states(**batch)
    assert hidden.shape == (4, batch["input_ids"].shape[1], 384) and pooled.shape == (4, 384)
    assert len(layers) == len(expected.hidden_states) == 7  # embeddings + 6 blocks
    for i, (a, b) in enumerate(zip(layers, expected.hidden_states, strict=True)):
        assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m, i=i: f"layer {i}: {m}")
    assert_close(hidden, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert_close(pooled, expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_float32_matches_transformers_too(folder, state_dict, batch):
    reference = transformers.BertModel.from_pretrained(str(folder)).eval()  # its default attention kernel
    ours = BertModel(BertConfig.from_json(folder)).eval()
    load_hf_weights(ours, state_dict)
    with torch.no_grad():
        expected = reference(**batch)
        hidden, pooled = ours(**batch)
    assert_close(hidden, expected.last_hidden_state, atol=1e-4, rtol=1e-4)
    assert_close(pooled, expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_tokens_only_with_the_mask(ours, tokenizer, batch):
    alone = tokenizer.batch_encode([TEXTS[1]])
    n = alone["input_ids"].shape[1]
    with torch.no_grad():
        h_alone, _ = ours(**alone)
        h_batch, _ = ours(**batch)
        # Seed-map mistake 9: an attention mask of ones marks the padding as real tokens.
        wrong = {**batch, "attention_mask": torch.ones_like(batch["attention_mask"])}
        h_wrong, _ = ours(**wrong)
    assert_close(h_batch[1, :n], h_alone[0], atol=1e-10, rtol=1e-10)
    assert (h_wrong[1, :n] - h_alone[0]).abs().max() > 1e-2


def test_attention_mask_checks(ours, batch):
    with pytest.warns(UserWarning, match="attention_mask"):
        ours(batch["input_ids"])  # padding in the ids, no mask
    with pytest.raises(ValueError, match="0"):
        ours(batch["input_ids"], attention_mask=2 * batch["attention_mask"])
    with pytest.raises(ShapeError, match="attention_mask"):
        ours(batch["input_ids"], attention_mask=batch["attention_mask"][:, :-1])


def test_load_report_lists_only_documented_unused_keys(folder, state_dict, ours):
    model = copy.deepcopy(ours)
    report = load_hf_weights(model, folder)  # from the folder this time
    assert report.missing == [] and report.unexpected == []
    assert report.unused == ["embeddings.position_ids"]
    assert all(any(re.fullmatch(p, k) for p in DOCUMENTED_UNUSED) for k in report.unused)
    assert len(report.loaded) == len(list(model.parameters())) == len(state_dict) - 1
    assert "loaded 103 tensors" in str(report)


def test_unknown_and_missing_keys_are_reported(state_dict, ours):
    model = copy.deepcopy(ours)
    extra = {**state_dict, "encoder.layer.0.attention.self.rotary.weight": torch.zeros(3)}
    with pytest.raises(KeyError, match="rotary"):
        load_hf_weights(model, extra)
    report = load_hf_weights(model, extra, strict=False)
    assert report.unexpected == ["encoder.layer.0.attention.self.rotary.weight"]
    missing = {k: v for k, v in state_dict.items() if k != "pooler.dense.bias"}
    with pytest.raises(KeyError, match="pooler.bias"):
        load_hf_weights(model, missing)


def test_wrong_shapes_are_rejected_with_both_shapes(state_dict, ours):
    model = copy.deepcopy(ours)
    key = "encoder.layer.2.intermediate.dense.weight"
    transposed = {**state_dict, key: state_dict[key].T}  # a missing (or extra) transpose: (384, 1536)
    with pytest.raises(ShapeError, match=re.escape("(384, 1536)") + ".*" + re.escape("(1536, 384)")):
        load_hf_weights(model, transposed)
    small = BertModel(BertConfig.tiny())  # another model size
    with pytest.raises(ShapeError, match="word_embeddings"):
        load_hf_weights(small, state_dict)


@pytest.mark.parametrize("mistake", ["swap q and k", "transpose a square weight"])
def test_wrong_mapping_with_right_shapes_changes_the_outputs(state_dict, ours, reference, batch, mistake):
    """Shape checks cannot catch everything: a square matrix fits either way. The comparison with transformers
    does: these mappings load without an error but compute something else."""
    wrong = dict(state_dict)
    q, k = "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.key.weight"
    if mistake == "swap q and k":
        wrong[q], wrong[k] = state_dict[k], state_dict[q]
    else:
        wrong[q] = state_dict[q].T
    model = copy.deepcopy(ours)
    load_hf_weights(model, wrong)
    with torch.no_grad():
        hidden, _ = model(**batch)
        expected = reference(**batch).last_hidden_state
    with pytest.raises(AssertionError):
        assert_close(hidden, expected, atol=1e-5, rtol=1e-5)


def test_old_names_and_bert_prefix_are_understood(state_dict, ours, batch):
    """Checkpoints of BertForPreTraining put the encoder under ``bert.`` and old ones say LayerNorm.gamma/beta."""
    renamed = {}
    for key, value in state_dict.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed["bert." + key] = value
    renamed["cls.seq_relationship.weight"] = torch.zeros(2, 384)  # the NSP head: documented as unused
    model = copy.deepcopy(ours)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    report = load_hf_weights(model, renamed)
    assert report.unexpected == [] and "cls.seq_relationship.weight" in report.unused
    with torch.no_grad():
        assert_close(model(**batch)[0], ours(**batch)[0])


def test_parameter_count_equals_the_formula(folder):
    config = BertConfig.from_json(folder)
    with torch.device("meta"):  # shapes only, no memory and no time spent on initial values
        model = BertModel(config)
    expected = count_parameters(config.transformer_config(), kind="bert")["total"]
    assert model.num_parameters() == expected == 22_713_216
    base = BertConfig.base()
    assert count_parameters(base.transformer_config(), kind="bert")["total"] == 109_482_240  # "110M", not 340M


def test_load_pretrained_minilm(tokenizer):
    model, tok, source = load_pretrained("minilm")
    assert source == "minilm" and not model.training
    assert isinstance(tok, WordPieceTokenizer) and tok.vocab == tokenizer.vocab


def test_bert_base_falls_back_to_minilm_quickly_without_network(capsys):
    start = time.perf_counter()
    model, _, source = load_pretrained("bert-base-uncased", timeout=2.0)
    seconds = time.perf_counter() - start
    assert source == "minilm" and model.config.d_model == 384
    assert "minilm" in capsys.readouterr().out
    assert seconds < 15, f"the fall-back took {seconds:.1f} s"


def test_fall_back_when_the_hub_does_not_answer(monkeypatch, capsys):
    """The network probe hangs (as a DNS look-up without network can): the timeout must still end the wait."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    _, _, source = load_pretrained("bert-base-uncased", timeout=1.0)
    assert source == "minilm" and time.perf_counter() - start < 15
    out = capsys.readouterr().out
    assert "bert-base-uncased" in out and "did not answer within 1 s" in out


def test_new_model_is_seeded_and_leaves_global_rng_alone():
    config = BertConfig.tiny(vocab_size=50, max_len=16)
    state = torch.get_rng_state()
    a, b = BertModel(config, seed=3), BertModel(config, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    ids = torch.randint(1, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    hidden, pooled = a.eval()(ids)
    assert hidden.shape == (2, 10, 64) and pooled.shape == (2, 64)
    pooled.sum().backward()
    assert a.embeddings.token.weight.grad is not None
