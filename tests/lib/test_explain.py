"""Tests of lmbook.explain: embedding gradients against central finite differences in float64, padding and
batching, attention importance, the deletion test, the rank correlations against scipy, and the bootstrap."""

import numpy as np
import pytest
import torch

from lmbook.bert import BertConfig, BertModel
from lmbook.explain import (
    attention_importance,
    bootstrap_mean,
    class_probabilities,
    deletion_effects,
    deletion_test,
    embedding_gradients,
    kendall_tau,
    leave_one_out,
    spearman_rho,
    token_saliency,
    word_embedding,
)
from lmbook.finetune import BertClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V = 40


def tiny_classifier(dtype=torch.float32) -> BertClassifier:
    bert = BertModel(BertConfig.tiny(vocab_size=V, n_layers=2, d_model=32, n_heads=4, d_ff=64), seed=0)
    model = BertClassifier(bert, num_labels=3, pooling="mean", seed=1).to(dtype).eval()
    with torch.no_grad():  # a head with larger weights, so the classes differ clearly
        model.classifier.weight.mul_(20)
    return model


def ids_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (2, 7), generator=g)
    ids[:, 0], ids[0, -1], ids[1, 4] = 2, 3, 3  # [CLS]-like first token; row 1 is 5 tokens long
    ids[1, 5:] = 0
    mask = (torch.arange(7)[None, :] < torch.tensor([[7], [5]])).long()
    return ids, mask


def logit_with_offset(model, ids, mask, b, t, c, delta, k):
    """Class-k logit of sentence b when delta is added to component c of token t's embedding."""

    def hook(module, inputs, output):
        output = output.clone()
        output[b, t, c] += delta
        return output

    handle = word_embedding(model).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return float(model(ids, torch.zeros_like(ids), mask)[b, k])
    finally:
        handle.remove()


def test_gradients_match_finite_differences_float64():
    model = tiny_classifier(torch.float64)
    ids, mask = ids_batch()
    E, G, k = embedding_gradients(model, ids, mask)
    assert E.shape == G.shape == (2, 7, 32) and E.dtype == G.dtype == torch.float64
    h = 1e-6
    for b, t, c in [(0, 0, 0), (0, 3, 5), (0, 6, 31), (1, 1, 7), (1, 4, 2)]:
        kb = int(k[b])
        plus = logit_with_offset(model, ids, mask, b, t, c, h, kb)
        minus = logit_with_offset(model, ids, mask, b, t, c, -h, kb)
        assert G[b, t, c].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-5, abs=1e-8)


def test_predicted_class_and_given_target():
    model = tiny_classifier(torch.float64)
    ids, mask = ids_batch()
    with torch.no_grad():
        predicted = model(ids, torch.zeros_like(ids), mask).argmax(dim=1)
    assert torch.equal(embedding_gradients(model, ids, mask)[2], predicted)
    other = (predicted + 1) % 3
    _, G_other, k_other = embedding_gradients(model, ids, mask, target=other)
    assert torch.equal(k_other, other)
    h = 1e-6
    plus = logit_with_offset(model, ids, mask, 0, 2, 3, h, int(other[0]))
    minus = logit_with_offset(model, ids, mask, 0, 2, 3, -h, int(other[0]))
    assert G_other[0, 2, 3].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-5, abs=1e-8)
    with pytest.raises(ValueError, match=r"target must be a class in 0..2, got \[3, 3\]"):
        embedding_gradients(model, ids, mask, target=3)


def test_batch_equals_one_at_a_time_and_padding_gets_nothing():
    model = tiny_classifier(torch.float64)
    ids, mask = ids_batch()
    scores, _ = token_saliency(model, ids, mask)
    assert np.all(scores[1, 5:] == 0)  # padding
    alone, _ = token_saliency(model, ids[1:, :5], mask[1:, :5])
    np.testing.assert_allclose(scores[1, :5], alone[0], rtol=1e-9, atol=1e-12)
    E, G, _ = embedding_gradients(model, ids, mask)
    gxi, _ = token_saliency(model, ids, mask, method="grad_x_input")
    np.testing.assert_allclose(gxi, (G * E).sum(-1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(scores, G.norm(dim=-1).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown saliency method 'integrated'"):
        token_saliency(model, ids, mask, method="integrated")


def test_model_left_in_its_mode_and_hook_removed():
    model = tiny_classifier()
    model.train()
    ids, mask = ids_batch()
    embedding_gradients(model, ids, mask)
    assert model.training
    assert not word_embedding(model)._forward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_attention_importance_sums_to_one():
    model = tiny_classifier()
    ids, _ = ids_batch()
    for layer in (0, -1):
        a = attention_importance(model, ids[0].tolist(), layer=layer)
        assert a.shape == (7,) and a.sum() == pytest.approx(1.0) and (a >= 0).all()


def test_deletion_effects_against_manual_removal():
    model = tiny_classifier(torch.float64)
    ids = ids_batch()[0][0].tolist()
    effects = deletion_effects(model, ids, {"a": [3, 1, 2], "b": [5, 4, 1]}, k=2)
    p = class_probabilities(model, [ids, [ids[i] for i in (0, 2, 4, 5, 6)], [ids[i] for i in (0, 1, 2, 3, 6)]])
    k = p[0].argmax()
    assert effects == pytest.approx({"a": p[0, k] - p[1, k], "b": p[0, k] - p[2, k]})
    single = class_probabilities(model, [ids[:4]])
    np.testing.assert_allclose(class_probabilities(model, [ids, ids[:4]])[1], single[0], rtol=1e-10)
    with pytest.raises(ValueError, match=r"k must be between 1 and the length of ranking 'a' \(3\), got 4"):
        deletion_effects(model, ids, {"a": [3, 1, 2]}, k=4)
    with pytest.raises(ValueError, match="distinct positions"):
        deletion_effects(model, ids, {"a": [3, 3]}, k=1)


def test_rank_correlations_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 5, size=9).astype(float)  # ties on purpose
        b = a + rng.normal(size=9)
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b)[0], abs=1e-12)
        assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match=r"got shapes \(3,\) and \(2,\)"):
        spearman_rho([1, 2, 3], [1, 2])


def test_bootstrap_mean():
    x = np.random.default_rng(1).normal(loc=2.0, scale=1.0, size=400)
    mean, low, high = bootstrap_mean(x, n_boot=2000, seed=0)
    assert mean == pytest.approx(x.mean())
    assert low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * x.std() / np.sqrt(len(x)), rel=0.15)  # the normal interval
    assert bootstrap_mean(x, seed=3) == bootstrap_mean(x, seed=3)
    assert bootstrap_mean([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 finite numbers"):
        bootstrap_mean([1.0])


def test_grad_x_input_at_the_token_table_is_killed_by_the_layer_norm():
    model = tiny_classifier(torch.float64)
    ids, mask = ids_batch()
    E, G, _ = embedding_gradients(model, ids, mask)
    emb = model.bert.embeddings
    x = emb.token(ids) + emb.position(ids.shape[1]) + emb.segment(torch.zeros_like(ids))
    np.testing.assert_allclose((G * x.detach()).sum(-1).numpy(), 0.0, atol=1e-10)  # g . x = 0
    H, GH, _ = embedding_gradients(model, ids, mask, embedding=emb)
    assert H.shape == GH.shape == (2, 7, 32)
    at_block_input, _ = token_saliency(model, ids, mask, method="grad_x_input", embedding=emb)
    np.testing.assert_allclose(at_block_input, (GH * H).sum(-1).numpy(), rtol=1e-12)
    assert np.abs(at_block_input[0]).max() > 1e-3


def test_log_prob_output_against_finite_differences():
    model = tiny_classifier(torch.float64)
    ids, mask = ids_batch()
    _, G, k = embedding_gradients(model, ids, mask, output="log_prob")
    h, (b, t, c) = 1e-6, (0, 2, 4)

    def log_p(delta):
        def hook(module, inputs, output):
            output = output.clone()
            output[b, t, c] += delta
            return output

        handle = word_embedding(model).register_forward_hook(hook)
        with torch.no_grad():
            value = torch.log_softmax(model(ids, torch.zeros_like(ids), mask), dim=1)[b, k[b]].item()
        handle.remove()
        return value

    assert G[b, t, c].item() == pytest.approx((log_p(h) - log_p(-h)) / (2 * h), rel=1e-5, abs=1e-8)
    with pytest.raises(ValueError, match="unknown output 'prob'"):
        embedding_gradients(model, ids, mask, output="prob")


def test_leave_one_out_and_deletion_test_agree():
    model = tiny_classifier(torch.float64)
    sentences = [ids_batch()[0][0].tolist(), ids_batch()[0][1, :5].tolist()]
    loo = leave_one_out(model, sentences)
    assert [len(x) for x in loo] == [7, 5] and all(x[0] == x[-1] == 0 for x in loo)
    rankings = [{"one": [p]} for p in (3, 2)]
    falls = deletion_test(model, sentences, rankings, ks=[1])
    np.testing.assert_allclose(falls["one"][:, 0], [loo[0][3], loo[1][2]], rtol=1e-10)
    with pytest.raises(ValueError, match="one ranking dict per sentence"):
        deletion_test(model, sentences, rankings[:1], ks=[1])
