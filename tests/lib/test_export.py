"""Tests of lmbook.export: a tiny random BERT classifier exported to ONNX and run with ONNX Runtime gives PyTorch's
logits (to 1e-4) at batch and sequence sizes other than the traced example, evaluate scores it unchanged, ONNX
Runtime's int8 file is smaller and close, bad inputs are named, and the variant table computes its ratios.

The model is chapter 8's classifier shape at the tiny size (1 layer, C = 64) over a whole-word vocabulary of the
book's sentences, so the one export of the module takes a few seconds."""

import copy

import numpy as np
import onnx
import pytest
import torch
from torch.testing import assert_close

from lmbook.attention import MultiHeadAttention
from lmbook.bert import BertConfig, BertModel
from lmbook.export import (
    INPUT_NAMES,
    OnnxClassifier,
    Variant,
    export_onnx_cached,
    measure_variants,
    quantize_onnx,
    variant_rows,
    variant_table,
    weights_digest,
)
from lmbook.finetune import BertClassifier, evaluate
from lmbook.sentiment import load_sentiment
from lmbook.testing import ShapeError
from lmbook.transformer import LayerNorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-4  # float32 logits of the same graph through two engines: summation orders differ, nothing else


@pytest.fixture(scope="module")
def tokenizer(word_tokenizer):
    return word_tokenizer  # tests/lib/conftest.py: every word of the book's sentences is one token


@pytest.fixture(scope="module")
def model(tokenizer):
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size, n_layers=1), seed=0)
    classifier = BertClassifier(bert, num_labels=2, pooling="mean", seed=0)
    with torch.no_grad():  # a head of std 0.02 gives logits near 0 for every input; make them differ
        classifier.classifier.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return classifier.eval()


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def exported(model, tokenizer, tmp_path_factory, cache_folder):
    """The module's one export, made in training mode to show that the model itself is left alone."""
    model.train()
    try:
        path, hit = export_onnx_cached(
            model, tokenizer, tmp_path_factory.mktemp("onnx") / "tiny.onnx", max_length=64, folder=cache_folder
        )
        return {"path": path, "hit": hit, "training_after": model.training}
    finally:
        model.eval()


@pytest.fixture(scope="module")
def onnx_path(exported):
    return exported["path"]


@pytest.fixture(scope="module")
def test_set():
    texts, labels = load_sentiment("test")
    return texts[:40], labels[:40]


def test_onnx_runtime_gives_pytorch_logits_at_new_batch_and_sequence_sizes(model, tokenizer, onnx_path):
    served = OnnxClassifier(onnx_path, threads=1)
    texts = load_sentiment("val")[0]
    for batch in ([texts[0]], texts[:7], texts[7:40]):  # 1, 7 and 33 sentences, each padded to its own longest
        enc = tokenizer.batch_encode(batch, max_length=64)
        assert enc["attention_mask"].min() == 0 or len(batch) == 1  # padding is exercised
        with torch.no_grad():
            expected = model(**enc)
        got = served(**enc)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        assert got.shape == expected.shape == (len(batch), 2)
        assert_close(got, expected, atol=TOLERANCE, rtol=0)
        assert expected.std() > 100 * TOLERANCE  # the logits differ between sentences, so the check can fail


def test_graph_has_free_batch_and_sequence_axes(onnx_path):
    served = OnnxClassifier(onnx_path)
    inputs = {i.name: i for i in served.session.get_inputs()}
    assert set(inputs) == set(INPUT_NAMES)
    for i in inputs.values():
        assert all(isinstance(d, str) for d in i.shape), i.shape  # symbols, not the traced example's sizes
        assert i.type == "tensor(int64)"


def test_export_leaves_the_model_unchanged(model, exported):
    assert exported["training_after"]  # the copy was put in evaluation mode, not the model
    assert not any(m.fused for m in model.modules() if isinstance(m, MultiHeadAttention))
    assert all(type(m) is LayerNorm for m in model.modules() if isinstance(m, LayerNorm))


def test_cached_export_is_reused_for_the_same_weights_only(model, tokenizer, exported, cache_folder, tmp_path):
    assert not exported["hit"]
    again, hit = export_onnx_cached(model, tokenizer, tmp_path / "again.onnx", max_length=64, folder=cache_folder)
    assert hit and again.read_bytes() == exported["path"].read_bytes()
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.classifier.bias[0] += 1e-3
    assert weights_digest(changed) != weights_digest(model) == weights_digest(copy.deepcopy(model))


def test_evaluate_scores_the_onnx_classifier(model, tokenizer, onnx_path, test_set):
    torch_scores = evaluate(model, tokenizer, *test_set, max_length=64)
    onnx_scores = evaluate(OnnxClassifier(onnx_path, threads=2), tokenizer, *test_set, max_length=64)
    np.testing.assert_array_equal(onnx_scores["predictions"], torch_scores["predictions"])
    np.testing.assert_allclose(onnx_scores["probabilities"], torch_scores["probabilities"], atol=TOLERANCE)
    assert onnx_scores["accuracy"] == torch_scores["accuracy"]


def test_onnx_int8_is_smaller_and_close(model, tokenizer, onnx_path, tmp_path):
    q_path = quantize_onnx(onnx_path, tmp_path / "tiny-int8.onnx")
    served, quantised = OnnxClassifier(onnx_path), OnnxClassifier(q_path)
    assert quantised.file_bytes() < 0.6 * served.file_bytes()
    stored = {}
    for t in onnx.load(str(q_path)).graph.initializer:
        stored[t.data_type] = stored.get(t.data_type, 0) + int(np.prod(t.dims))
    float_share = stored.get(onnx.TensorProto.FLOAT, 0) / sum(stored.values())
    assert float_share < 0.03, float_share  # every weight matrix and table in 8 bits: only norms and biases in float
    enc = tokenizer.batch_encode(load_sentiment("val")[0][:20], max_length=64)
    exact, approx = served(**enc), quantised(**enc)
    gap = float((exact - approx).abs().max())
    assert 0 < gap < 0.1 * float(exact.abs().max())  # int8 rounding changes the logits, a little


def test_bad_inputs_are_named(onnx_path, tmp_path):
    served = OnnxClassifier(onnx_path)
    ids = torch.ones(2, 5, dtype=torch.int64)
    with pytest.raises(ShapeError, match=r"attention_mask: expected shape \(2, 5\), got \(2, 4\)"):
        served(ids, torch.zeros_like(ids), torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(ShapeError, match="input_ids"):
        served(torch.ones(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="threads must be a whole number >= 1, got 0"):
        OnnxClassifier(onnx_path, threads=0)
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxClassifier(tmp_path / "missing.onnx")


def _latency(ms: float, threads: int = 1):
    from lmbook.timing import Latency

    return Latency(times=np.array([ms, ms, ms]) / 1e3, threads=threads, warmup=0)


def test_variant_rows_and_table():
    variants = [
        Variant("float32", 90_000_000, 22_700_000, _latency(20.0), 0.88, 100),
        Variant("int8 dynamic (torchao)", 30_000_000, 22_700_000, _latency(10.0), 0.87, 100),
    ]
    rows = variant_rows(variants)
    assert [r["variant"] for r in rows] == ["float32", "int8 dynamic (torchao)"]
    assert rows[1]["size_ratio"] == pytest.approx(3.0) and rows[1]["speedup"] == pytest.approx(2.0)
    assert rows[1]["size_mb"] == pytest.approx(30.0) and rows[0]["latency_ms"] == pytest.approx(20.0)
    table = variant_table(variants).splitlines()
    assert "1 thread)" in table[0] and len(table) == 4
    assert table[3].startswith("| int8 dynamic (torchao) | 30.0 | 3.0x | 22.7M | 10.0 (10.0-10.0) | 2.00x | 0.87 |")
    with pytest.raises(ValueError, match="baseline 'fp16' is not among the variants"):
        variant_rows(variants, baseline="fp16")


def test_measure_variants_on_torch_and_onnx(model, tokenizer, onnx_path, test_set):
    from lmbook.inference import saved_bytes

    served = OnnxClassifier(onnx_path, threads=1)
    variants = measure_variants(
        {"float32": model, "ONNX Runtime": served}, tokenizer, *test_set, rounds=2, per_round=2, warmup=1
    )
    torch_row, onnx_row = variants
    assert [v.name for v in variants] == ["float32", "ONNX Runtime"]
    assert torch_row.accuracy == onnx_row.accuracy == evaluate(model, tokenizer, *test_set)["accuracy"]
    assert torch_row.size_bytes == saved_bytes(model) and onnx_row.size_bytes == served.file_bytes()
    assert torch_row.parameters == sum(p.numel() for p in model.parameters())
    pooler = sum(p.numel() for p in model.bert.pooler.parameters())
    assert torch_row.parameters - 2 * pooler < onnx_row.parameters < torch_row.parameters  # no unused pooler
    for v in variants:
        assert len(v.latency.times) == 4 and v.latency.threads == 1 and v.latency.warmup == 2 and v.n_test == 40
    with pytest.raises(ValueError, match="ONNX Runtime session has 2 threads, torch gets 1"):
        measure_variants({"ONNX Runtime": OnnxClassifier(onnx_path, threads=2)}, tokenizer, *test_set)
