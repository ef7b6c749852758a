"""Tests of lmbook.language_model: the next-token loop on a model that is not a GPT (a tiny LSTM), its config."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.language_model import LMTrainConfig, TrainLog, evaluate_loss, next_token_loss, train_lm
from lmbook.schedules import linear_warmup_decay

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LSTMLanguageModel(nn.Module):
    """Embedding -> one LSTM layer -> linear read-out: ``(B, T)`` ids -> ``(B, T, V)`` next-token logits."""

    def __init__(self, vocab_size: int, width: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx):
        hidden, _ = self.lstm(self.embedding(idx))  # (B, T, width)
        return self.head(hidden)  # (B, T, V)


PATTERN = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 6] * 60)  # predictable after a few tokens


def test_an_lstm_language_model_learns_a_repeating_pattern():
    model = LSTMLanguageModel(9)
    before = evaluate_loss(model, PATTERN, window=16)
    config = LMTrainConfig.cpu(steps=150, batch_size=8, lr=1e-2, window=16, log_every=50)
    log = train_lm(model, (PATTERN[:600], PATTERN[600:]), config)
    assert abs(before - math.log(9)) < 0.2  # about a uniform guess at the start
    assert log.steps == [50, 100, 150] and len(log.val_loss) == 3 and len(log.grad_norm) == 150
    assert log.val_loss[-1] < 0.3 < before, log
    assert log.tokens == 150 * 8 * 16
    # the schedule: a linear warm-up (8 steps), then a cosine decay to a tenth of the peak
    expected = [1e-2 * linear_warmup_decay(s, 150, 8, "cosine", 0.1) for s in range(150)]
    assert log.lr == pytest.approx(expected, rel=1e-12)
    again = train_lm(LSTMLanguageModel(9), (PATTERN[:600], PATTERN[600:]), config)
    assert again.train_loss == log.train_loss and again.val_loss == log.val_loss  # seeded: the same run


def test_evaluate_loss_is_the_mean_over_consecutive_windows():
    model = LSTMLanguageModel(9).double()
    data = PATTERN[: 10 * 4 + 1]
    windows = torch.arange(4)[:, None] * 10 + torch.arange(10)[None, :]
    with torch.no_grad():
        logits = model(data[windows])
    expected = F.cross_entropy(logits.reshape(-1, 9), data[windows + 1].reshape(-1)).item()
    assert math.isclose(evaluate_loss(model, data, batch_size=3, window=10), expected, rel_tol=1e-12)


def test_the_model_must_give_logits_per_position_and_a_window():
    model = LSTMLanguageModel(9)
    with pytest.raises(ValueError, match=r"\(B, T, V\) logits, got \(2, 9\)"):
        next_token_loss(lambda x: model(x)[:, -1], PATTERN[:10].view(2, 5), PATTERN[1:11].view(2, 5))
    with pytest.raises(ValueError, match="window"):
        train_lm(model, PATTERN, LMTrainConfig.cpu(steps=1))  # an LSTM has no config.max_len


def test_config_checks_and_presets():
    cpu, gpu = LMTrainConfig.cpu(), LMTrainConfig.gpu()
    assert gpu.batch_size > cpu.batch_size and LMTrainConfig.cpu(steps=5).steps == 5
    for bad in (dict(steps=0), dict(lr=0.0), dict(warmup_ratio=1.0), dict(amp="half"), dict(max_grad_norm=0.0)):
        with pytest.raises(ValueError):
            LMTrainConfig(**bad)
    with pytest.raises(AttributeError):
        cpu.steps = 3  # frozen
    assert "no steps" in repr(TrainLog())
