"""Tests of lmbook.memory_task: the first-token task's sequences and labels, the gated cells' keep-gate set-up,
and that a small recurrent classifier learns the task when the signal is close and is at chance when it cannot
see it."""

import pytest
import torch
from torch import nn

from lmbook import memory_task
from lmbook.memory_task import carry_accuracy, first_token_task, set_keep_bias

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sequences_start_with_the_signal_and_labels_name_it():
    ids, labels = first_token_task(500, distractors=6, vocab_size=10, num_classes=3, seed=1)
    assert ids.shape == (500, 7) and labels.shape == (500,)
    assert ids.dtype == labels.dtype == torch.int64
    assert torch.equal(labels, ids[:, 0] - 1)
    assert set(labels.tolist()) == {0, 1, 2}
    distractors = ids[:, 1:]
    assert distractors.min() == 4 and distractors.max() == 9  # every distractor id 4..9 is used, none other
    # The distractors say nothing about the label: their mean is the same for every class, up to sampling noise.
    means = [distractors[labels == c].double().mean().item() for c in range(3)]
    assert max(means) - min(means) < 0.2


def test_same_seed_same_sequences_and_no_distractors_allowed():
    a, b = first_token_task(20, 4, seed=3), first_token_task(20, 4, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], first_token_task(20, 4, seed=4)[0])
    ids, labels = first_token_task(5, 0)
    assert ids.shape == (5, 1) and torch.equal(labels, ids[:, 0] - 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0, "distractors": 3}, "n must be at least 1"),
        ({"n": 5, "distractors": -1}, "distractors must be >= 0"),
        ({"n": 5, "distractors": 3, "num_classes": 1}, "num_classes must be at least 2"),
        ({"n": 5, "distractors": 3, "vocab_size": 5, "num_classes": 4}, "at least 6"),
    ],
)
def test_invalid_task_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        first_token_task(**kwargs)


@pytest.mark.parametrize(("cls", "rows"), [(nn.LSTM, 16), (nn.GRU, 12)])
def test_set_keep_bias_changes_only_the_keep_gate(cls, rows):
    torch.manual_seed(0)
    module = cls(3, 4, num_layers=2)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    set_keep_bias(module, 2.0)
    keep = torch.ones(rows, dtype=torch.bool)
    keep[4:8] = False  # the second block of H = 4 rows: f of i, f, g, o; z of r, z, n
    for layer in range(2):
        b_ih, b_hh = getattr(module, f"bias_ih_l{layer}"), getattr(module, f"bias_hh_l{layer}")
        assert torch.all(b_ih[4:8] == 2.0) and torch.all(b_hh[4:8] == 0.0)
        assert torch.equal(b_ih[keep], before[f"bias_ih_l{layer}"][keep])
        assert torch.equal(b_hh[keep], before[f"bias_hh_l{layer}"][keep])
    assert torch.equal(module.weight_hh_l0, before["weight_hh_l0"])


def test_keep_bias_opens_the_gate():
    """With a large keep bias and no input the cell state hardly changes in one step: f = sigmoid(10) ~ 1."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    set_keep_bias(lstm, 10.0)
    with torch.no_grad():
        lstm.weight_ih_l0.zero_()
        lstm.weight_hh_l0.zero_()
        c0 = torch.randn(1, 2, 4)
        _, (_, c1) = lstm(torch.zeros(2, 1, 3), (torch.zeros(1, 2, 4), c0))
    i, g = (
        torch.sigmoid(lstm.bias_ih_l0[:4] + lstm.bias_hh_l0[:4]),
        torch.tanh(lstm.bias_ih_l0[8:12] + lstm.bias_hh_l0[8:12]),
    )
    assert torch.allclose(c1, torch.sigmoid(torch.tensor(10.0)) * c0 + i * g, atol=1e-6)


def test_set_keep_bias_refuses_a_plain_rnn():
    with pytest.raises(TypeError, match="expects a torch.nn.LSTM or GRU, got RNN"):
        set_keep_bias(nn.RNN(3, 4), 1.0)


def test_a_close_signal_is_learned_and_an_absent_one_is_not(monkeypatch):
    small = {"n_train": 512, "n_test": 256, "epochs": 4}
    assert carry_accuracy("gru", 2, **small) > 0.9
    assert carry_accuracy("lstm", 2, **small) > 0.9
    # With the labels shuffled against the sequences nothing can be learned: test accuracy near chance (0.25).
    # (It also proves the test split is separate: memorising the training pairs does not carry over.)
    original = memory_task.first_token_task

    def shuffled(n, **kw):
        ids, labels = original(n, **kw)
        return ids, labels[torch.randperm(n, generator=torch.Generator().manual_seed(0))]

    monkeypatch.setattr(memory_task, "first_token_task", shuffled)
    assert carry_accuracy("gru", 2, **small) < 0.4


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        carry_accuracy("transformer", 3)
