"""Tests of lmbook.mlm: the 80/10/10 masking rule measured on many tokens, special tokens never chosen, labels
-100 elsewhere; next-sentence pairs; the MLM head against transformers.BertForMaskedLM (float64); and a tiny BERT
whose masked-LM loss falls after a few seconds of pre-training on the book's own text. Offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import re

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.bert import BertConfig, BertModel, load_hf_weights
from lmbook.hub import offline_model_path
from lmbook.mlm import (
    IGNORE_INDEX,
    BertForMaskedLM,
    MLMTrainConfig,
    fill_mask,
    mask_tokens,
    mlm_loss,
    nsp_pairs,
    pretrain_mlm,
)
from lmbook.testing import ShapeError
from lmbook.text import book_corpus
from lmbook.wordpiece import WordPieceTokenizer

DT = torch.float64
MASK, V = 3, 1000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(offline_model_path() / "vocab.txt")


def random_batch(B=64, T=256, seed=0):
    """Ids from 10 .. V-1 (0 .. 9 are "special"), with [CLS]=1 first, [SEP]=2 last and some padding (0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, V, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2
    ids[: B // 4, -20:] = 0
    return ids, ids < 10


def test_mask_tokens_follows_the_80_10_10_rule():
    ids, special = random_batch()
    inputs, labels = mask_tokens(ids, MASK, V, special, p=0.15, generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    n_candidates = int((~special).sum())
    assert abs(chosen.sum().item() / n_candidates - 0.15) < 0.01  # about 15% of 15 000 candidates
    assert not chosen[special].any()  # [CLS], [SEP], [PAD] are never chosen
    assert torch.equal(labels[chosen], ids[chosen])  # the label is the original token
    assert (labels[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    n = chosen.sum().item()
    masked = (inputs[chosen] == MASK).sum().item() / n
    unchanged = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - masked - unchanged
    assert abs(masked - 0.8) < 0.025
    assert abs(replaced - 0.1) < 0.02  # a random token (it equals the original with probability 1/V: negligible)
    assert abs(unchanged - 0.1) < 0.02
    assert torch.equal(ids, random_batch()[0])  # the input was not modified in place


def test_mask_tokens_is_reproducible_and_checks_its_arguments():
    ids, special = random_batch(4, 32)
    a = mask_tokens(ids, MASK, V, special, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, MASK, V, special, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="special_mask"):
        mask_tokens(ids, MASK, V)  # an int mask id needs to know which tokens are special
    with pytest.raises(ShapeError, match="special_mask"):
        mask_tokens(ids, MASK, V, special[:, :-1])
    with pytest.raises(ValueError, match="p must"):
        mask_tokens(ids, MASK, V, special, p=0.0)


def test_mask_tokens_with_a_tokenizer_never_masks_special_tokens(tokenizer):
    texts = [f"sentence number {i} is about something else entirely." * (1 + i % 3) for i in range(40)]
    batch = tokenizer.batch_encode(texts)
    ids = batch["input_ids"]
    inputs, labels = mask_tokens(ids, tokenizer, p=0.5, generator=torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor([tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id]))
    assert (batch["attention_mask"] == 0).any()
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[special], ids[special])
    assert (inputs == tokenizer.mask_id).sum() > 0.3 * (~special).sum()


def test_nsp_pairs_are_half_true_successors():
    sentences = [f"s{i}" for i in range(2000)]
    pairs = nsp_pairs(sentences, torch.Generator().manual_seed(0))
    assert len(pairs) == 1999
    is_next = [p for p in pairs if p[2]]
    assert abs(len(is_next) / len(pairs) - 0.5) < 0.04
    index = {s: i for i, s in enumerate(sentences)}
    for a, b, nxt in pairs:
        assert (index[b] == index[a] + 1) == nxt
        assert a != b
    assert len({b for _, b, nxt in pairs if not nxt}) > 500  # the random partners are spread out
    with pytest.raises(ValueError, match="3"):
        nsp_pairs(["a", "b"])


def test_head_is_tied_and_loss_equals_full_cross_entropy():
    model = BertForMaskedLM(BertConfig.tiny(vocab_size=V, max_len=32)).to(DT).eval()
    assert model.head.decoder.weight is model.bert.embeddings.token.weight
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == model.bert.num_parameters() + 64 * 64 + 64 + 2 * 64 + V  # the tied matrix counts once
    ids, special = random_batch(3, 20)
    inputs, labels = mask_tokens(ids, MASK, V, special, p=0.3, generator=torch.Generator().manual_seed(0))
    logits = model(inputs)
    expected = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    assert_close(model.loss(inputs, labels), expected)
    nothing = torch.full_like(labels, IGNORE_INDEX)
    assert model.loss(inputs, nothing).item() == 0.0  # no NaN when nothing is masked


def test_head_matches_transformers_bert_for_masked_lm():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=40, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.BertForMaskedLM(hf_config).to(DT).eval()
    with torch.no_grad():  # non-trivial layer norms and biases, so that a wrong mapping shows
        for name, p in reference.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    config = BertConfig(V, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=40)
    ours = BertForMaskedLM(config).to(DT).eval()
    report = load_hf_weights(ours, reference.state_dict())
    assert report.unexpected == []
    assert report.missing == ["bert.pooler.weight", "bert.pooler.bias"]  # BertForMaskedLM has no pooler
    ids, _ = random_batch(2, 12)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        assert_close(ours(ids, attention_mask=mask), reference(input_ids=ids, attention_mask=mask).logits)


def test_tiny_bert_pretraining_lowers_the_mlm_loss(tokenizer):
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", book_corpus()) if len(s.split()) >= 6]
    train, held_out = sentences[:-40], sentences[-40:]
    model = BertForMaskedLM(BertConfig.tiny(tokenizer.vocab_size, dropout=0.0))
    config = MLMTrainConfig.cpu(steps=30, max_length=48)
    log = pretrain_mlm(model, train, tokenizer, config, eval_texts=held_out)
    assert len(log.losses) == len(log.lr) == 30 and log.tokens > 0
    assert log.lr[0] == pytest.approx(3e-3 / 3) and max(log.lr) == pytest.approx(3e-3)  # 3 warm-up steps
    assert log.eval_before > 9.5  # about ln(30522) = 10.3 at the start: a uniform guess
    assert log.eval_after < log.eval_before - 2.0, log
    assert mlm_loss(model, tokenizer, held_out, max_length=48) == pytest.approx(log.eval_after)
    guesses = fill_mask(model, tokenizer, "the model reads the [MASK] and then the [MASK].", top_k=4)
    assert len(guesses) == 2 and all(len(g) == 4 for g in guesses)
    probs = [p for _, p in guesses[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    with pytest.raises(ValueError, match="MASK"):
        fill_mask(model, tokenizer, "no mask here")


def test_wrapping_an_existing_encoder_shares_it():
    bert = BertModel(BertConfig.tiny(vocab_size=V, max_len=16))
    model = BertForMaskedLM(bert)
    assert model.bert is bert and model.head.decoder.weight is bert.embeddings.token.weight
