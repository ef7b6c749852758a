"""Tests of lmbook.compression_pitfalls: calibration batches without padding, the recorded layer inputs against
the classifier's own features, the calibrated ranges against PyTorch's MinMaxObserver and torch.quantile, static
activation quantisation against torch.fake_quantize_per_tensor_affine, the leaky-against-honest selection on
constructed cases, the layer groups of a BertClassifier, fake-quantised weights restored after use, the mean KL
divergence against F.kl_div (float64), and the sensitivity of one group against a direct computation.

They use a tiny random BERT (2 layers, C = 64) with a whole-word vocabulary of the book's sentences."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.ao.quantization.observer import MinMaxObserver
from torch.testing import assert_close

from lmbook.bert import BertConfig, BertModel
from lmbook.compression_pitfalls import (
    activation_ranges,
    fake_quantized_weights,
    interleaved_latencies,
    layer_groups,
    layer_sensitivity,
    length_batches,
    mean_kl,
    pick_best,
    record_inputs,
    selection_optimism,
    static_activation_quantization,
)
from lmbook.finetune import BertClassifier, predict_proba
from lmbook.quantize import fake_quantize
from lmbook.sentiment import load_sentiment
from lmbook.testing import ShapeError
from lmbook.timing import Latency

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(word_tokenizer):
    return word_tokenizer  # tests/lib/conftest.py: every word of the book's sentences is one token


@pytest.fixture(scope="module")
def texts():
    return list(load_sentiment("train")[0][:40])


def tiny(tokenizer, pooling="mean"):
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size), seed=0)
    return BertClassifier(bert, num_labels=2, pooling=pooling, seed=0).eval()


def test_length_batches_hold_no_padding_and_every_text_once(tokenizer, texts):
    batches = length_batches(tokenizer, texts)
    assert sum(len(b["input_ids"]) for b in batches) == len(texts)
    assert len({b["input_ids"].shape[1] for b in batches}) == len(batches) > 1
    for b in batches:
        assert bool(b["attention_mask"].all())
    encoded = {tuple(tokenizer.batch_encode([t])["input_ids"][0].tolist()) for t in texts}
    assert {tuple(row.tolist()) for b in batches for row in b["input_ids"]} == encoded


def test_recorded_inputs_are_what_the_layers_receive(tokenizer, texts):
    model = tiny(tokenizer)
    batches = length_batches(tokenizer, texts)
    inputs = record_inputs(model, batches)
    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(inputs) == names
    with torch.no_grad():
        features = torch.cat([model.features(**b) for b in batches])  # (N, C): what the head receives
    np.testing.assert_array_equal(inputs["classifier"], features.reshape(-1).numpy())
    tokens = sum(b["input_ids"].numel() for b in batches)
    assert inputs["bert.encoder.blocks.0.ffn.fc2"].size == tokens * model.bert.config.d_ff
    assert not any(h for m in model.modules() for h in m._forward_pre_hooks.values())  # hooks removed


def test_ranges_match_minmax_observer_and_quantile():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 3 + 1
    inputs = {"layer": x.numpy()}
    observer = MinMaxObserver()
    observer(x)
    assert activation_ranges(inputs, 100.0)["layer"] == (float(observer.min_val), float(observer.max_val))
    lo, hi = activation_ranges(inputs, 99.0)["layer"]
    assert lo == pytest.approx(float(torch.quantile(x, 0.01)), rel=1e-5)  # float32 interpolation
    assert hi == pytest.approx(float(torch.quantile(x, 0.99)), rel=1e-5)  # float32 interpolation
    for bad in (50.0, 100.5, 0.99):
        with pytest.raises(ValueError, match="percentile must be in"):
            activation_ranges(inputs, bad)


@pytest.mark.parametrize("bits", [8, 4])
def test_static_quantization_matches_torch_fake_quantize(bits):
    layer = torch.nn.Linear(16, 8)
    model = torch.nn.Sequential(layer)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1)) * 2
    lo, hi = -1.5, 2.5  # narrower than x: values outside are clamped
    observer = MinMaxObserver(dtype=torch.qint8, quant_min=-(2 ** (bits - 1)), quant_max=2 ** (bits - 1) - 1)
    observer(torch.tensor([lo, hi]))
    scale, zero_point = observer.calculate_qparams()
    expected = F.linear(
        torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), observer.quant_min, observer.quant_max),
        layer.weight,
        layer.bias,
    )
    with torch.no_grad(), static_activation_quantization(model, {"0": (lo, hi)}, bits):
        assert_close(model(x), expected.detach())
    with torch.no_grad():
        assert_close(model(x), layer(x))  # the hook is gone
    with pytest.raises(ValueError, match="no Linear layer of the model: 'missing'"):
        with static_activation_quantization(model, {"missing": (0.0, 1.0)}):
            pass


def test_static_quantization_of_a_classifier_with_wide_ranges_changes_little(tokenizer, texts):
    model = tiny(tokenizer)
    ranges = activation_ranges(record_inputs(model, length_batches(tokenizer, texts)))
    reference = predict_proba(model, tokenizer, texts)
    with static_activation_quantization(model, ranges, bits=16):
        fine = predict_proba(model, tokenizer, texts)
    with static_activation_quantization(model, ranges, bits=3):
        coarse = predict_proba(model, tokenizer, texts)
    assert np.abs(fine - reference).max() < 1e-3
    assert np.abs(coarse - reference).max() > 10 * np.abs(fine - reference).max()


def test_selection_optimism_on_constructed_settings():
    rng = np.random.default_rng(0)
    same = np.tile(rng.random(200) < 0.8, (5, 1))  # five identical settings: choosing cannot flatter
    assert selection_optimism(same, n_splits=50).mean == 0.0
    best = rng.random((4, 200)) < 0.6
    best[2] = True  # one setting right everywhere: both ways pick it
    assert selection_optimism(best, n_splits=50).mean == 0.0
    noise = rng.random((20, 200)) < 0.8  # twenty equally good settings: the best on the reporting half is luck
    result = selection_optimism(noise, n_splits=200)
    assert (result.gaps >= 0).all() and result.mean > 0.02
    assert result.leaky.shape == result.honest.shape == (200,)


def test_selection_optimism_one_split_by_hand():
    correct = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=bool)
    result = selection_optimism(correct, n_report=2, n_splits=1, seed=3)
    order = np.random.default_rng(3).permutation(4)
    report, choose = correct[:, order[:2]], correct[:, order[2:]]
    assert result.leaky[0] == report.mean(axis=1).max()
    assert result.honest[0] == report[pick_best(choose)].mean()
    assert pick_best(np.array([[0, 1], [1, 0], [1, 1]], dtype=bool)) == 2
    assert pick_best(np.array([[0, 1], [1, 0]], dtype=bool)) == 0  # a tie goes to the first


def test_selection_optimism_bad_arguments():
    with pytest.raises(ShapeError, match="correct"):
        selection_optimism(np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match="n_report must be between 1 and N - 1 = 9, got 10"):
        selection_optimism(np.ones((2, 10), dtype=bool), n_report=10)


def test_layer_groups_cover_the_used_weights(tokenizer):
    model = tiny(tokenizer)
    groups = layer_groups(model)
    assert list(groups)[0] == "embeddings" and list(groups)[-1] == "head" and "pooler" not in groups
    assert len(groups) == 2 + 2 * model.bert.config.n_layers
    named = [n for names in groups.values() for n in names]
    weighted = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Embedding)}
    assert len(named) == len(set(named)) and set(named) == weighted - {"bert.pooler"}
    assert "pooler" in layer_groups(tiny(tokenizer, pooling="pooler"))
    with pytest.raises(TypeError, match="BertClassifier"):
        layer_groups(torch.nn.Linear(2, 2))


def test_fake_quantized_weights_are_quantised_inside_and_restored_after(tokenizer):
    model = tiny(tokenizer)
    fc1 = model.bert.encoder.blocks[0].ffn.fc1
    before = fc1.weight.detach().clone()
    with fake_quantized_weights(model, ["bert.encoder.blocks.0.ffn.fc1"], bits=4, scheme="symmetric"):
        scale = before.abs().max() / 7.5  # symmetric 4 bits: (q_max - q_min) / 2 = 7.5 levels each side
        assert_close(fc1.weight.detach(), torch.fake_quantize_per_tensor_affine(before, float(scale), 0, -8, 7))
        assert len(torch.unique(fc1.weight)) <= 16
    assert torch.equal(fc1.weight, before)
    with pytest.raises(RuntimeError, match="inside"):
        with fake_quantized_weights(model, ["classifier"], bits=2, axis=0):
            raise RuntimeError("inside")
    assert torch.equal(fc1.weight, before)
    with pytest.raises(ValueError, match="no module with a weight named 'bert.nothing'"):
        with fake_quantized_weights(model, ["bert.nothing"]):
            pass


def test_mean_kl_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=1)
    q = torch.softmax(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=1)
    expected = F.kl_div(q.log(), p, reduction="batchmean")
    assert mean_kl(p.numpy(), q.numpy()) == pytest.approx(float(expected), rel=1e-12)
    assert mean_kl(p.numpy(), p.numpy()) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ShapeError, match="q"):
        mean_kl(p.numpy(), q[:, :2].numpy())


def test_sensitivity_of_one_group_by_hand(tokenizer, texts):
    model = tiny(tokenizer)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    groups = layer_groups(model)
    result = layer_sensitivity(model, tokenizer, texts, groups, bits=3)
    assert list(result) == list(groups) and all(v >= 0 for v in result.values())
    reference = predict_proba(model, tokenizer, texts)
    saved = model.bert.encoder.blocks[1].ffn.fc2.weight.detach().clone()
    ffn = model.bert.encoder.blocks[1].ffn
    with torch.no_grad():
        ffn.fc1.weight.copy_(fake_quantize(ffn.fc1.weight, 3, "symmetric"))
        ffn.fc2.weight.copy_(fake_quantize(saved, 3, "symmetric"))
    by_hand = mean_kl(reference, predict_proba(model, tokenizer, texts))
    model.load_state_dict(state)
    assert result["block 1 feed-forward"] == pytest.approx(by_hand, rel=1e-9) and by_hand > 0
    assert max(layer_sensitivity(model, tokenizer, texts, groups, bits=16).values()) < 1e-6
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_interleaved_latencies_take_turns_with_the_thread_count_and_restore_it():
    calls, threads_seen = [], []

    def make(name):
        def fn():
            calls.append(name)
            threads_seen.append(torch.get_num_threads())

        return fn

    before = torch.get_num_threads()
    result = interleaved_latencies({"a": make("a"), "b": make("b")}, warmup=2, repeats=5, threads=2)
    assert calls == ["a", "b"] * 7  # in turns: 2 warm-up rounds, then 5 timed rounds
    assert set(threads_seen) == {2} and torch.get_num_threads() == before
    for latency in result.values():
        assert isinstance(latency, Latency) and latency.times.shape == (5,)
        assert latency.threads == 2 and latency.warmup == 2 and (latency.times >= 0).all()
    with pytest.raises(ValueError, match="threads must be at least 1"):
        interleaved_latencies({"a": make("a")}, threads=0)
