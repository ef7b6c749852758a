"""Tests of lmbook.distill: the distillation loss against torch's kl_div and cross_entropy (float64 values and
gradients), the closed form of the soft term's gradient against autograd, the T^2 factor, the teacher held constant,
a student cut from a teacher computing the teacher's first blocks, distill's teacher logits looked up by position
(alpha = 0 is exactly the plain fine-tune), and train_student's cache.

The models are tiny random BERTs (2-4 layers, C = 64) with a whole-word vocabulary of the book's sentences; one test
loads the real all-MiniLM-L6-v2."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.bert import BertConfig, BertModel
from lmbook.distill import distill, distillation_loss, soft_loss_gradient, student_from, teacher_logits, train_student
from lmbook.finetune import BertClassifier, FinetuneConfig, finetune
from lmbook.sentiment import load_sentiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_loss(s, t, y, T, alpha):
    """torch's own pieces: KL with batch-mean reduction (log-probabilities of the teacher as the target)."""
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), reduction="batchmean", log_target=True)
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def logits(B=8, K=3, seed=0, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    s = (spread * torch.randn(B, K, generator=g, dtype=torch.float64)).requires_grad_()
    t = spread * torch.randn(B, K, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (B,), generator=g)
    return s, t, y


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (8.0, 1.0), (0.5, 0.3), (3.0, 0.0)])
def test_loss_matches_torch_values_and_gradients(T, alpha):
    s, t, y = logits(seed=int(T * 10))
    ours = distillation_loss(s, t, y, T, alpha)
    ref = reference_loss(s, t, y, T, alpha)
    assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours, s)
    (g_ref,) = torch.autograd.grad(ref, s)
    assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
def test_soft_gradient_closed_form(T):
    s, t, y = logits(B=5, K=4, seed=3)
    (g_auto,) = torch.autograd.grad(distillation_loss(s, t, y, T, alpha=1.0), s)  # alpha = 1: the soft term only
    assert_close(soft_loss_gradient(s.detach(), t, T), g_auto, rtol=1e-10, atol=1e-14)
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), reduction="batchmean", log_target=True)
    (g_plain,) = torch.autograd.grad(kl, s)  # without T^2
    assert_close(soft_loss_gradient(s.detach(), t, T, scale_t2=False), g_plain, rtol=1e-10, atol=1e-14)


def test_t_squared_keeps_the_gradient_size():
    """With T^2 the soft gradient's norm stays within 2x from T = 2 to 8; without it, it falls by more than 10x."""
    s, t, _ = logits(B=64, K=2, seed=1, spread=2.0)
    norms = {T: float(soft_loss_gradient(s.detach(), t, T).norm()) for T in (2.0, 8.0)}
    plain = {T: float(soft_loss_gradient(s.detach(), t, T, scale_t2=False).norm()) for T in (2.0, 8.0)}
    assert 0.5 < norms[8.0] / norms[2.0] < 2.0
    assert plain[8.0] / plain[2.0] < 0.1


def test_teacher_is_constant_and_alpha_zero_is_cross_entropy():
    s, t, y = logits()
    t = t.clone().requires_grad_()
    distillation_loss(s, t, y, 2.0, 0.5).backward()
    assert t.grad is None and s.grad is not None
    assert_close(distillation_loss(s, t, y, 2.0, 0.0), F.cross_entropy(s, y), rtol=0, atol=0)
    identical = distillation_loss(t.detach(), t.detach(), y, 3.0, alpha=1.0)  # a student equal to its teacher
    assert abs(float(identical)) < 1e-14


def test_loss_and_gradient_reject_bad_arguments():
    s, t, y = logits(B=4, K=3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        distillation_loss(s, t, y, temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(s, t[:, :2], y)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, t, y[:3])
    with pytest.raises(ValueError, match="teacher_logits"):
        soft_loss_gradient(s, t[:3])


# ----- students from a teacher --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(word_tokenizer):
    return word_tokenizer  # tests/lib/conftest.py: every word of the book's sentences is one token


def tiny(tokenizer, n_layers=4, dropout=0.0, seed=0):
    config = BertConfig.tiny(vocab_size=tokenizer.vocab_size, n_layers=n_layers, dropout=dropout)
    return BertClassifier(BertModel(config, seed=seed), num_labels=2, pooling="mean", dropout=dropout, seed=seed)


@pytest.mark.parametrize("layers", [None, [0, 2], [3, 1]])
def test_student_computes_the_chosen_teacher_blocks(tokenizer, layers):
    teacher = tiny(tokenizer, n_layers=4).eval()
    student = student_from(teacher, 2, layers=layers, seed=5)
    chosen = [0, 1] if layers is None else layers
    assert student.bert.config.n_layers == 2 and not student.training
    assert (student.num_labels, student.pooling) == (2, "mean")
    enc = tokenizer.batch_encode(load_sentiment("val")[0][:6])
    ids, types, mask = enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]
    key_mask = mask.bool()[:, None, None, :]
    with torch.no_grad():
        x = teacher.bert.embeddings(ids, types)
        for i in chosen:  # the teacher's blocks, in the student's order
            x = teacher.bert.encoder.blocks[i](x, key_mask)
        assert_close(student.bert(ids, types, mask)[0], x, rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # copies, not shared tensors: training the student leaves the teacher alone
        student.bert.embeddings.token.weight.add_(1.0)
    assert not torch.equal(student.bert.embeddings.token.weight, teacher.bert.embeddings.token.weight)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_student_from_rejects_bad_arguments(tokenizer):
    teacher = tiny(tokenizer, n_layers=3)
    with pytest.raises(ValueError, match="n_layers must be between 1 and the teacher's 3"):
        student_from(teacher, 4)
    with pytest.raises(ValueError, match="layers must be 2 distinct indices in 0 .. 2"):
        student_from(teacher, 2, layers=[1, 1])
    with pytest.raises(TypeError, match="teacher must be a BertClassifier"):
        student_from(torch.nn.Linear(2, 2), 1)


def small_config(**overrides):
    base = dict(epochs=2, batch_size=16, lr=1e-3, warmup_ratio=0.2, max_length=32, threads=1, amp="off", seed=3)
    return FinetuneConfig(**{**base, **overrides})


def test_teacher_logits_are_the_models_logits_in_order(tokenizer):
    teacher = tiny(tokenizer, dropout=0.1)  # dropout on: teacher_logits must switch it off
    texts = load_sentiment("val")[0][:20]
    enc = tokenizer.batch_encode(texts, max_length=32)
    with torch.no_grad():
        expected = teacher.eval()(**enc)
    teacher.train()
    assert_close(teacher_logits(teacher, tokenizer, texts, max_length=32, batch_size=7), expected, rtol=1e-5, atol=1e-6)


def test_distill_with_alpha_zero_is_the_plain_finetune(tokenizer):
    train = tuple(x[:48] for x in load_sentiment("train"))
    plain, distilled = tiny(tokenizer, 2, dropout=0.1), tiny(tokenizer, 2, dropout=0.1)
    teacher = tiny(tokenizer, 4, seed=9)
    log_a = finetune(plain, tokenizer, train, None, small_config(), device="cpu", progress=False)
    log_b = distill(distilled, teacher, tokenizer, train, None, small_config(), temperature=4.0, alpha=0.0)
    assert log_a.loss.tolist() == log_b.loss.tolist()
    for (name, a), b in zip(plain.state_dict().items(), distilled.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_distill_looks_up_each_sentences_teacher_logits(tokenizer):
    """A student identical to its teacher (no dropout) has a zero soft loss only if every batch gets its own
    sentences' teacher logits; a lookup in the wrong order gives a positive loss."""
    train = tuple(x[:48] for x in load_sentiment("train"))
    teacher = tiny(tokenizer, 2, seed=4)
    with torch.no_grad():
        teacher.classifier.weight.mul_(200.0)  # confident, different logits per sentence
    student = tiny(tokenizer, 2, seed=4)
    student.load_state_dict(teacher.state_dict())
    log = distill(student, teacher, tokenizer, train, None, small_config(epochs=1, lr=1e-12), 2.0, alpha=1.0)
    assert log.loss.max() < 1e-6, log.loss


def test_train_student_is_cached_and_reproducible(tmp_path):
    config = FinetuneConfig.cpu(epochs=1, max_length=16, batch_size=64)
    trained, tokenizer, info1 = train_student("labels", 1, config=config, folder=tmp_path)
    loaded, _, info2 = train_student("labels", 1, config=config, folder=tmp_path)
    assert (info1["cached"], info2["cached"]) == (False, True)
    assert info1["val_accuracy"] == info2["val_accuracy"] and info2["temperature"] is None
    for (name, a), b in zip(trained.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.bert.config.n_layers == 1 and not loaded.training
    assert info2["parameters"] == sum(p.numel() for p in loaded.parameters())
    with pytest.raises(ValueError, match="method"):
        train_student("soft", 1, config=config, folder=tmp_path)
