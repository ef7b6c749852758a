"""Tests of lmbook.finetune: the learning-rate schedule (against LambdaLR and hand-computed values), mean pooling
(float64 values and gradients against a per-sentence loop; padding ignored, the plain mean rejected), the classifier's
independence from padding, gradient clipping as the optimiser sees it, a short fine-tune lowering the loss,
evaluate against scikit-learn, reproducibility, mixed precision, and the frozen features of embed.

Most tests use a tiny random BERT (2 layers, C = 64) with a vocabulary built from the book's sentences, so they run in
seconds; one test uses the real all-MiniLM-L6-v2 and one a Hugging Face BertModel."""

import math
import sys
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import sklearn.metrics
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.testing import assert_close

from lmbook.bert import BertConfig, BertModel, load_pretrained
from lmbook.finetune import (
    BertClassifier,
    FinetuneConfig,
    FinetuneLog,
    embed,
    embed_layers,
    evaluate,
    finetune,
    mean_pool,
    predict_proba,
    sentence_vectors,
)
from lmbook.schedules import linear_warmup_decay
from lmbook.sentiment import load_sentiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(word_tokenizer):
    return word_tokenizer  # tests/lib/conftest.py: every word of the book's sentences is one token


@pytest.fixture(scope="module")
def data():
    texts, labels = load_sentiment("train")
    return (texts[:64], labels[:64]), (texts[64:96], labels[64:96])


def tiny(tokenizer, pooling="mean", seed=0, dropout=0.1):
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size), seed=seed)
    return BertClassifier(bert, num_labels=2, pooling=pooling, dropout=dropout, seed=seed)


def small_config(**overrides):
    base = dict(epochs=4, batch_size=16, lr=1e-3, warmup_ratio=0.2, max_length=32, threads=1, amp="off")
    return FinetuneConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(tokenizer, data):
    model = tiny(tokenizer)
    before = evaluate(model, tokenizer, *data[0])
    log = finetune(
        model,
        tokenizer,
        data[0],
        data[1],
        small_config(epochs=8, lr=2e-3, warmup_ratio=0.1),
        device="cpu",
        progress=False,
    )
    return model, log, before


# ----- the schedule -------------------------------------------------------------------------------------------


def test_schedule_through_lambda_lr_and_finetune(tokenizer, data):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_warmup_decay(s, 20, 5))
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert_close(seen, [0.1 * linear_warmup_decay(s, 20, 5) for s in range(20)])

    config = small_config(epochs=2, lr=3e-4, warmup_ratio=0.25)
    log = finetune(tiny(tokenizer), tokenizer, data[0], config=config, device="cpu", progress=False)
    total = 2 * math.ceil(64 / 16)
    assert log.steps == total and len(log.epoch_loss) == 2 and len(log.val_accuracy) == 0
    assert_close(log.lr.tolist(), [3e-4 * linear_warmup_decay(s, total, 2) for s in range(total)])


# ----- pooling and padding ------------------------------------------------------------------------------------


def test_mean_pool_against_a_loop_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 1, 0]])
    weights = torch.randn(3, 4, dtype=torch.float64, generator=gen)

    ours = mean_pool(hidden, mask)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), hidden)
    reference = torch.stack([hidden[b][mask[b].bool()].mean(dim=0) for b in range(3)])
    (g_ref,) = torch.autograd.grad((reference * weights).sum(), hidden)
    assert_close(ours, reference)
    assert_close(g_ours, g_ref)
    assert torch.all(g_ours[mask == 0] == 0)

    # Whatever the padded positions hold, even NaN, the result is the same.
    poisoned = hidden.detach().clone()
    poisoned[mask == 0] = float("nan")
    assert_close(mean_pool(poisoned, mask), reference.detach())
    # The plain mean over all positions (the mistake) averages the padding in.
    assert not torch.allclose(hidden.mean(dim=1), reference)
    assert torch.equal(mean_pool(hidden, torch.zeros(3, 5)), torch.zeros(3, 4, dtype=torch.float64))
    assert_close(mean_pool(hidden, None), hidden.mean(dim=1))


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_classifier_ignores_padding(tokenizer, pooling):
    model = tiny(tokenizer, pooling=pooling).eval()
    batch = tokenizer.batch_encode(["Surprisingly good.", "The battery barely lasts a morning, sadly."])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the first sentence is padded
    with torch.no_grad():
        logits = model(**batch)
        assert logits.shape == (2, 2)
        alone = model(**tokenizer.batch_encode(["Surprisingly good."]))
        changed = {k: v.clone() for k, v in batch.items()}
        changed["input_ids"][0][batch["attention_mask"][0] == 0] = 42  # other tokens where the padding is
        assert_close(model(**changed), logits)
        assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)
        # Seed-map mistake 9: a mask of ones lets the padding in, and the logits change.
        ones = {**batch, "attention_mask": torch.ones_like(batch["attention_mask"])}
        assert not torch.allclose(model(**ones)[0], logits[0], atol=1e-4)


def test_classifier_arguments_and_seeded_head(tokenizer):
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size))
    state = torch.random.get_rng_state()
    a, b = BertClassifier(bert, num_labels=3, seed=1), BertClassifier(bert, num_labels=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    assert torch.equal(a.classifier.weight, b.classifier.weight) and a.classifier.weight.shape == (3, 64)
    assert 0.01 < a.classifier.weight.std() < 0.03 and torch.all(a.classifier.bias == 0)
    for bad in (dict(pooling="max"), dict(num_labels=1), dict(dropout=1.0)):
        with pytest.raises(ValueError):
            BertClassifier(bert, **bad)


def test_real_minilm_ignores_padding():
    bert, tok, source = load_pretrained("minilm")
    assert source == "minilm"
    texts = ["Not bad at all.", "The opening hour drags, but the ending is superb and the cast is wonderful."]
    model = BertClassifier(bert, pooling="mean").eval()
    with torch.no_grad():
        both = model(**tok.batch_encode(texts))
        alone = model(**tok.batch_encode(texts[:1]))
    assert_close(both[:1], alone, atol=1e-5, rtol=1e-4)
    vectors = embed(bert, tok, texts)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32


# ----- training -----------------------------------------------------------------------------------------------


def test_short_finetune_lowers_the_loss(trained, tokenizer, data):
    model, log, before = trained
    assert isinstance(log, FinetuneLog) and log.steps == 8 * 4 and log.device == "cpu" and log.amp == "off"
    after = evaluate(model, tokenizer, *data[0])
    assert before["loss"] > 0.6 and after["loss"] < 0.5 * before["loss"]
    assert log.epoch_loss[-1] < 0.6 * log.epoch_loss[0]
    assert len(log.val_accuracy) == len(log.val_f1) == 8 and log.samples_per_second > 0
    assert not model.training  # left ready for prediction
    assert "FinetuneLog(steps=32" in repr(log)


def test_gradient_clipping_is_applied(tokenizer, data):
    def norms_seen_by_the_optimiser(max_grad_norm):
        seen = []

        def hook(optimizer, args, kwargs):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

        handle = register_optimizer_step_pre_hook(hook)
        try:
            config = small_config(epochs=1, max_grad_norm=max_grad_norm)
            log = finetune(tiny(tokenizer), tokenizer, data[0], config=config, device="cpu", progress=False)
        finally:
            handle.remove()
        return np.array(seen), log

    clipped, log = norms_seen_by_the_optimiser(0.05)
    assert len(clipped) == log.steps == 4
    assert np.all(clipped <= 0.05 * (1 + 1e-4))
    assert np.all(log.grad_norm > 0.05)  # the log keeps the norm before clipping
    unclipped, _ = norms_seen_by_the_optimiser(None)
    assert np.all(unclipped > 0.05)  # so the first check can fail


def test_reproducible_with_a_seed(tokenizer, data):
    def run(seed):
        model = tiny(tokenizer)
        log = finetune(
            model, tokenizer, data[0], config=small_config(epochs=2, seed=seed), device="cpu", progress=False
        )
        return log, model

    state = torch.random.get_rng_state()
    (log_a, model_a), (log_b, model_b), (log_c, _) = run(0), run(0), run(1)
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout used a private generator
    np.testing.assert_array_equal(log_a.loss, log_b.loss)
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not np.array_equal(log_a.loss, log_c.loss)


@pytest.mark.parametrize("amp, dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_mixed_precision_paths(tokenizer, data, amp, dtype):
    # The GPU code path (autocast; float16 with a GradScaler) run on the CPU, which supports both dtypes.
    model = tiny(tokenizer)
    start = [p.detach().clone() for p in model.parameters()]
    log = finetune(model, tokenizer, data[0], config=small_config(epochs=1, amp=amp), device="cpu", progress=False)
    assert log.amp == dtype and np.all(np.isfinite(log.loss))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start, strict=True))


def test_progress_output_with_and_without_tqdm(tokenizer, data, capsys, monkeypatch):
    config = small_config(epochs=1)
    finetune(tiny(tokenizer), tokenizer, data[0], data[1], config=config, device="cpu")
    out = capsys.readouterr().out
    assert "Fine-tuning on cpu (mixed precision: off): 64 sentences, 4 steps" in out
    assert "epoch 1: train loss" in out and "val accuracy" in out and "samples/s" in out
    monkeypatch.setitem(sys.modules, "tqdm", None)
    finetune(tiny(tokenizer), tokenizer, data[0], config=config, device="cpu")
    assert "step     4/4 [####################]" in capsys.readouterr().out


def test_threads_are_restored(tokenizer, data):
    torch.set_num_threads(2)
    try:
        finetune(tiny(tokenizer), tokenizer, data[0], config=small_config(epochs=1, threads=1), progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_bad_labels_are_rejected(tokenizer, data):
    texts, labels = data[0]
    with pytest.raises(ValueError, match="0 .. 1"):
        finetune(tiny(tokenizer), tokenizer, (texts, labels + 1), config=small_config(), progress=False)
    with pytest.raises(ValueError, match="shape"):
        finetune(tiny(tokenizer), tokenizer, (texts, labels[:-1]), config=small_config(), progress=False)


# ----- evaluation and features --------------------------------------------------------------------------------


def test_evaluate_matches_sklearn_and_a_single_batch(trained, tokenizer, data):
    model, _, _ = trained
    texts, labels = data[1]
    result = evaluate(model, tokenizer, texts, labels, batch_size=5)
    pred = result["predictions"]
    assert set(pred.tolist()) == {0, 1}  # both classes predicted, so F1 is a real test
    assert result["accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(labels, pred))
    assert result["f1"] == pytest.approx(sklearn.metrics.f1_score(labels, pred))
    np.testing.assert_array_equal(result["confusion"], sklearn.metrics.confusion_matrix(labels, pred))
    assert result["loss"] == pytest.approx(sklearn.metrics.log_loss(labels, result["probabilities"]))
    # Batches of 5 sorted by length give what one padded batch of everything gives, in the original order.
    with torch.no_grad():
        direct = torch.softmax(model(**tokenizer.batch_encode(texts, max_length=128)), dim=1).double().numpy()
    assert_close(result["probabilities"], direct, atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(pred, direct.argmax(axis=1))


def test_embed_is_order_and_padding_independent(trained, tokenizer, data):
    model, _, _ = trained
    texts = data[1][0][:12]
    vectors = embed(model, tokenizer, texts, batch_size=4)  # a classifier: its encoder is used
    assert vectors.shape == (12, 64) and vectors.dtype == np.float32
    with torch.no_grad():
        one_by_one = [sentence_vectors(model.bert, **tokenizer.batch_encode([t]), pooling="mean") for t in texts]
    assert_close(torch.from_numpy(vectors), torch.cat(one_by_one), atol=1e-5, rtol=1e-4)
    cls = embed(model.bert, tokenizer, texts, pooling="cls")
    assert cls.shape == (12, 64) and not np.allclose(cls, vectors)


def test_embed_layers_is_every_layer_mean_pooled(trained, tokenizer, data):
    model, _, _ = trained
    texts = data[1][0][:10]
    layers = embed_layers(model, tokenizer, texts, batch_size=3)
    assert layers.shape == (3, 10, 64) and layers.dtype == np.float32  # embeddings + 2 blocks
    assert_close(torch.from_numpy(layers[-1]), torch.from_numpy(embed(model, tokenizer, texts)), atol=1e-5, rtol=1e-4)
    enc = tokenizer.batch_encode(texts)
    with torch.no_grad():
        states = model.bert.hidden_states(**enc)
    real = enc["attention_mask"][:, :, None].float()  # by hand: sum over the real tokens / their number
    for layer, h in enumerate(states):
        assert_close(torch.from_numpy(layers[layer]), (h * real).sum(1) / real.sum(1), atol=1e-5, rtol=1e-4)
    with pytest.raises(TypeError, match="hidden_states"):
        embed_layers(torch.nn.Linear(2, 2), tokenizer, texts)


def test_embed_layers_of_minilm_match_hugging_face_hidden_states():
    from transformers import BertModel as HFModel

    from lmbook.hub import offline_model_path

    bert, tok, source = load_pretrained("minilm")
    assert source == "minilm"
    reference = HFModel.from_pretrained(offline_model_path(), local_files_only=True).eval()
    texts = ["A quiet, lovely film.", "The soup was cold and the waiter was rude about it."]
    ours = embed_layers(bert, tok, texts)
    enc = tok.batch_encode(texts)
    with torch.no_grad():
        states = reference(**enc, output_hidden_states=True).hidden_states  # 7 tensors (B, T, 384)
    real = enc["attention_mask"][:, :, None].float()
    expected = torch.stack([(h * real).sum(1) / real.sum(1) for h in states])
    assert ours.shape == (7, 2, 384)
    assert_close(torch.from_numpy(ours), expected, atol=1e-5, rtol=1e-4)


def test_hugging_face_model_and_tokenizer(tokenizer, data):
    from transformers import BertConfig as HFConfig
    from transformers import BertModel as HFModel
    from transformers import BertTokenizer

    torch.manual_seed(0)
    hf = HFModel(
        HFConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    model = BertClassifier(hf, pooling="mean").eval()
    hf_tokenizer = BertTokenizer.from_pretrained(str(tokenizer.vocab_path.parent))  # the folder with vocab.txt
    texts = data[1][0][:8]
    ours = predict_proba(model, tokenizer, texts)
    theirs = predict_proba(model, hf_tokenizer, texts)
    assert ours.shape == (8, 2)
    assert_close(ours, theirs)


# ----- configuration ------------------------------------------------------------------------------------------


def test_config_presets_and_validation():
    cpu, gpu = FinetuneConfig.cpu(), FinetuneConfig.gpu()
    assert (cpu.epochs, cpu.batch_size, cpu.lr, cpu.max_length, cpu.threads) == (3, 16, 2e-4, 48, 1)
    assert (gpu.epochs, gpu.batch_size, gpu.lr, gpu.max_length, gpu.amp) == (3, 32, 2e-5, 128, "auto")
    assert FinetuneConfig.cpu(epochs=1).epochs == 1
    with pytest.raises(FrozenInstanceError):
        cpu.lr = 1.0
    for bad in (
        dict(epochs=0),
        dict(lr=0.0),
        dict(warmup_ratio=1.0),
        dict(max_grad_norm=0.0),
        dict(amp="int8"),
        dict(max_length=1),
        dict(weight_decay=-1.0),
        dict(threads=0),
    ):
        with pytest.raises(ValueError):
            FinetuneConfig(**bad)
