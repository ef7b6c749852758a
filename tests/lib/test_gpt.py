"""Tests of lmbook.gpt: shapes, causality, the loss at initialisation, sampling, and small training runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.gpt import GPT, GPTConfig, train_gpt
from lmbook.language_model import LMTrainConfig, TrainLog, evaluate_loss
from lmbook.testing import ShapeError

SMALL = GPTConfig(23, max_len=12, d_model=16, n_layers=2, n_heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tokens(shape, V=23, seed=0):
    return torch.randint(V, shape, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_tied_head():
    model = GPT(SMALL)
    assert model(tokens((3, 12))).shape == (3, 12, 23)
    assert model(tokens((1, 1))).shape == (1, 1, 23)
    assert model.lm_head.weight is model.token_embedding.weight
    untied = GPT(GPTConfig(23, max_len=12, d_model=16, n_layers=1, n_heads=2, tied_embeddings=False))
    assert untied.lm_head.weight is not untied.token_embedding.weight
    with pytest.raises(ValueError, match="max_len=12"):
        model(tokens((1, 13)))
    with pytest.raises(ShapeError):
        model(tokens((12,)))


def test_config_presets():  # the size checks of every config are tested in test_transformer.py
    cpu, gpu = GPTConfig.cpu(97), GPTConfig.gpu(97)
    assert cpu.vocab_size == gpu.vocab_size == 97
    assert gpu.d_model * gpu.n_layers * gpu.max_len > cpu.d_model * cpu.n_layers * cpu.max_len
    assert GPTConfig.cpu(97, n_layers=3).n_layers == 3


@pytest.mark.parametrize("fused", [False, True])
def test_changing_a_future_token_never_changes_earlier_logits(fused):
    model = GPT(GPTConfig(23, max_len=12, d_model=16, n_layers=2, n_heads=2, fused_attention=fused)).double()
    idx = tokens((2, 12))
    logits = model(idx)
    for t in (0, 5, 11):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 23
        new = model(changed)
        assert_close(new[:, :t], logits[:, :t])
        assert not torch.allclose(new[:, t], logits[:, t])


def test_loss_at_initialisation_is_about_log_vocab_size():
    model = GPT(SMALL)
    idx = tokens((8, 12))
    loss = model.loss(idx, tokens((8, 12), seed=1))
    assert abs(loss.item() - math.log(23)) < 0.05
    logits = model(idx)
    assert_close(loss, F.cross_entropy(logits.reshape(-1, 23), tokens((8, 12), seed=1).reshape(-1)))


def test_seeded_weights_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    a, b, c = GPT(SMALL, seed=3), GPT(SMALL, seed=3), GPT(SMALL, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.token_embedding.weight, c.token_embedding.weight)


@pytest.fixture(scope="module")
def trained():
    """A small model trained briefly on a repeating pattern, so that its predictions are not uniform."""
    pattern = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 6] * 40)
    model = GPT(GPTConfig(9, max_len=12, d_model=16, n_layers=1, n_heads=2))
    train_gpt(model, pattern, LMTrainConfig.cpu(steps=150, batch_size=8, lr=1e-2, log_every=150))
    return model, pattern


def test_generate_is_reproducible_and_greedy_with_top_k_one(trained):
    model, _ = trained
    model.train()
    start = torch.tensor([[0, 1, 2]])
    state = torch.random.get_rng_state()
    a = model.generate(start, 20, temperature=1.3, top_k=5, generator=torch.Generator().manual_seed(1))
    b = model.generate(start, 20, temperature=1.3, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)  # only the given generator was used
    assert a.shape == (1, 23) and torch.equal(a[:, :3], start) and torch.equal(a, b)
    greedy = model.generate(start, 20, temperature=0.0)
    assert torch.equal(model.generate(start, 20, top_k=1, generator=torch.Generator().manual_seed(5)), greedy)
    # greedy by hand: the most likely next token, one at a time, reading at most `max_len` tokens
    idx = start
    for _ in range(20):
        nxt = model(idx[:, -12:])[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], 1)
    assert torch.equal(idx, greedy)
    assert model.training  # generate put the model back in training mode


def test_top_k_samples_only_among_the_k_most_likely(trained):
    model, _ = trained
    start = tokens((50, 5), V=9)
    with torch.no_grad():
        allowed = torch.topk(model.eval()(start)[:, -1], 3, dim=-1).indices  # (50, 3)
    out = model.generate(start, 1, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(0))
    assert (out[:, -1:] == allowed).any(dim=1).all()
    with pytest.raises(ValueError, match="temperature"):
        model.generate(start, 1, temperature=-1.0)


def test_a_tiny_model_overfits_a_repeating_pattern(trained):
    model, pattern = trained
    loss = evaluate_loss(model, pattern)
    assert loss < 0.3, loss  # ln 9 = 2.2 at the start; the pattern is (almost) fully predictable
    greedy = model.generate(pattern[None, :12], 12, temperature=0.0)
    assert torch.equal(greedy[0, 12:], pattern[12:24])


def test_train_log_and_reproducibility():
    data = tokens((2000,), V=23)
    logs = []
    for _ in range(2):
        model = GPT(SMALL)
        config = LMTrainConfig.cpu(steps=10, batch_size=4, lr=1e-3, log_every=4)
        logs.append(train_gpt(model, (data[:1800], data[1800:]), config))
    log = logs[0]
    assert isinstance(log, TrainLog)
    assert log.steps == [4, 8, 10] and len(log.train_loss) == len(log.val_loss) == 3 and len(log.lr) == 10
    assert log.tokens == 10 * 4 * 12 and log.tokens_per_second > 0 and log.seconds > 0
    assert logs[0].train_loss == logs[1].train_loss and logs[0].val_loss == logs[1].val_loss
    assert "tokens/s" in repr(log)


def test_evaluate_loss_is_the_mean_over_consecutive_windows():
    model = GPT(SMALL).double()
    data = tokens((12 * 5 + 3,))
    windows = torch.arange(5)[:, None] * 12 + torch.arange(12)[None, :]
    expected = model.loss(data[windows], data[windows + 1]).item()
    assert math.isclose(evaluate_loss(model, data, batch_size=2), expected, rel_tol=1e-12)
    assert model.training
