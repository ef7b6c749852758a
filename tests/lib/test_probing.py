"""Tests of lmbook.probing on a tiny random BERT: relative weight change against torch.linalg.norm, attention change
and attention share against the attention maps computed by hand, and word occlusion against predict_proba."""

import copy

import numpy as np
import pytest
import torch

from lmbook.attention import attention_maps
from lmbook.bert import BertConfig, BertModel
from lmbook.finetune import BertClassifier, predict_proba
from lmbook.hub import offline_model_path
from lmbook.probing import attention_change, attention_share, parameter_group, relative_change, word_occlusion
from lmbook.wordpiece import WordPieceTokenizer

TEXTS = ["a quiet, lovely film.", "the soup was cold."]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(offline_model_path() / "vocab.txt")


def classifier(tokenizer, seed=0):
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size, dropout=0.0), seed=seed)
    return BertClassifier(bert, pooling="mean", dropout=0.0, seed=seed)


def test_parameter_groups_name_the_parts_of_bert(tokenizer):
    names = {parameter_group(n) for n, _ in classifier(tokenizer).named_parameters()}
    assert names == {"embeddings", "block 0", "block 1", "pooler", "classifier"}
    assert parameter_group("encoder.blocks.11.ffn.fc1.weight") == "block 11"


def test_relative_change_against_torch_norms(tokenizer):
    before = classifier(tokenizer)
    after = copy.deepcopy(before)
    with torch.no_grad():
        after.bert.encoder.blocks[1].ffn.fc1.weight.add_(0.01)
    change = relative_change(before, after)
    assert list(change) == ["embeddings", "block 0", "block 1", "pooler", "classifier"]
    block = [p for n, p in before.named_parameters() if parameter_group(n) == "block 1"]
    moved = after.bert.encoder.blocks[1].ffn.fc1.weight - before.bert.encoder.blocks[1].ffn.fc1.weight
    expected = torch.linalg.norm(moved.detach().double()) / torch.linalg.norm(
        torch.cat([p.detach().flatten().double() for p in block])
    )
    assert change["block 1"] == pytest.approx(float(expected), rel=1e-9)
    assert change["block 0"] == change["embeddings"] == change["pooler"] == 0.0
    with pytest.raises(ValueError, match="differ"):
        relative_change(before, before.bert)


def test_attention_change_is_the_mean_total_variation(tokenizer):
    a, b = classifier(tokenizer, seed=0), classifier(tokenizer, seed=1)
    assert np.array_equal(attention_change(a, a, tokenizer, TEXTS), np.zeros(2))
    change = attention_change(a, b, tokenizer, TEXTS)
    expected = np.zeros(2)
    for text in TEXTS:
        ids = tokenizer.encode(text).input_ids
        ma, mb = attention_maps(a, ids), attention_maps(b, ids)
        for layer in range(2):
            rows = [0.5 * np.abs(ma[(layer, h)] - mb[(layer, h)]).sum(axis=1) for h in range(4)]
            expected[layer] += np.mean(rows) / len(TEXTS)
    np.testing.assert_allclose(change, expected, rtol=1e-12)
    assert ((change > 0) & (change <= 1)).all()
    with pytest.raises(ValueError, match="at least one"):
        attention_change(a, b, tokenizer, [])


def test_attention_share_of_first_and_last_token(tokenizer):
    model = classifier(tokenizer)
    share = attention_share(model, tokenizer, TEXTS[:1])
    maps = attention_maps(model, tokenizer.encode(TEXTS[0]).input_ids)
    for layer in range(2):
        heads = np.stack([maps[(layer, h)] for h in range(4)])
        np.testing.assert_allclose(share[layer], [heads[..., 0].mean(), heads[..., -1].mean()], rtol=1e-12)
    assert share.shape == (2, 2) and ((share > 0) & (share < 1)).all()


def test_word_occlusion_deletes_one_word_at_a_time(tokenizer):
    model = classifier(tokenizer)

    def predict(texts):
        return predict_proba(model, tokenizer, texts)

    result = word_occlusion(predict, "not bad at all", label=1)
    assert [w for w, _ in result] == ["not", "bad", "at", "all"]
    full, without_bad = predict(["not bad at all", "not at all"])[:, 1]
    assert result[1][1] == pytest.approx(full - without_bad, abs=1e-6)  # float32, batched differently
    toward_0 = word_occlusion(predict, "not bad at all", label=0)
    np.testing.assert_allclose([d for _, d in toward_0], [-d for _, d in result], atol=1e-12)  # two classes
    with pytest.raises(ValueError, match="no words"):
        word_occlusion(predict, "   ")
    with pytest.raises(ValueError, match="probabilities"):
        word_occlusion(lambda texts: np.ones(len(texts)), "not bad")
