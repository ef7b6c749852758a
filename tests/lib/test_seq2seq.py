"""Tests of lmbook.seq2seq: the digit task, teacher forcing, the bottleneck, attention weights, a model that learns."""

import pytest
import torch
from torch.testing import assert_close

from lmbook.loop import make_optimizer, optimizer_step
from lmbook.seq2seq import (
    BOS,
    Seq2Seq,
    Seq2SeqTrainConfig,
    accuracy_by_length,
    decoder_inputs,
    digit_batch,
    sequence_accuracy,
    sequence_loss,
    train_seq2seq,
)
from lmbook.testing import ShapeError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_digit_batch_reverses_or_copies():
    g = torch.Generator().manual_seed(0)
    source, target = digit_batch(5, 7, "reverse", g)
    assert source.shape == target.shape == (5, 7) and source.dtype == torch.long
    assert int(source.min()) >= 0 and int(source.max()) <= 9
    assert torch.equal(target[:, 0], source[:, -1]) and torch.equal(target, source.flip(1))
    source, target = digit_batch(5, 7, "copy", g)
    assert torch.equal(target, source)
    with pytest.raises(ValueError, match="unknown task 'sort'"):
        digit_batch(5, 7, "sort")


def test_decoder_inputs_shift_the_target_right_after_bos():
    target = torch.tensor([[3, 1, 4], [1, 5, 9]])
    assert decoder_inputs(target).tolist() == [[BOS, 3, 1], [BOS, 1, 5]]


@pytest.mark.parametrize("attention", [False, True])
def test_shapes_and_the_final_state_is_both_directions(attention):
    model = Seq2Seq(d_model=8, d_hidden=12, attention=attention, seed=0)
    source, target = digit_batch(3, 6)
    assert model(source, target[:, :4]).shape == (3, 4, 10)  # target length may differ from the source's
    assert model.generate(source).shape == (3, 6) and model.generate(source, length=2).shape == (3, 2)
    outputs, (h, c) = model.encode(source)
    assert outputs.shape == (3, 6, 12) and h.shape == c.shape == (1, 3, 12)
    # forward direction: its state after the last token; backward direction: its state after the first token
    assert_close(h[0, :, :6], outputs[:, -1, :6])
    assert_close(h[0, :, 6:], outputs[:, 0, 6:])
    with pytest.raises(ShapeError, match=r"target: expected shape \(B, T_t\), got \(2, 6\) \[B=3\]"):
        model(source, target[:2])
    with pytest.raises(ValueError, match="d_hidden must be even"):
        Seq2Seq(d_hidden=7)


def test_without_attention_the_decoder_sees_only_the_final_state(monkeypatch):
    source, target = digit_batch(4, 9, generator=torch.Generator().manual_seed(1))
    for attention in (False, True):
        model = Seq2Seq(d_model=8, d_hidden=16, attention=attention, seed=0)
        before = model(source, target)
        encode = model.encode

        def scrambled(src, encode=encode):  # the same final state, different outputs at every position
            outputs, state = encode(src)
            return torch.randn_like(outputs), state

        monkeypatch.setattr(model, "encode", scrambled)
        changed = not torch.allclose(model(source, target), before)
        assert changed == attention  # the bottleneck model cannot tell; the attention model can


def test_attention_weights_sum_to_one_and_match_between_forward_and_generate():
    model = Seq2Seq(d_model=8, d_hidden=16, attention=True, seed=0).double()
    model.record = True
    source, _ = digit_batch(4, 7)
    predicted = model.generate(source)
    weights_generate = model.last_weights
    assert weights_generate.shape == (4, 7, 7)
    assert_close(weights_generate.sum(dim=-1), torch.ones(4, 7, dtype=torch.float64))
    assert bool((weights_generate >= 0).all())
    # Teacher forcing with the model's own predictions is free-running generation: same tokens, same weights.
    logits = model(source, predicted)
    assert torch.equal(logits.argmax(dim=-1), predicted)
    assert_close(model.last_weights, weights_generate)


def test_sequence_accuracy_per_token_and_per_sequence():
    target = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    predicted = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 8]])
    assert sequence_accuracy(predicted, target) == (7 / 8, 1 / 2)
    with pytest.raises(ShapeError, match="predicted"):
        sequence_accuracy(predicted[:, :3], target)


@pytest.mark.parametrize("attention", [False, True])
def test_a_tiny_model_overfits_a_few_examples(attention):
    source, target = digit_batch(6, 5, generator=torch.Generator().manual_seed(2))
    model = Seq2Seq(d_model=8, d_hidden=32, attention=attention, seed=0)
    optimizer = make_optimizer(model, "adam", lr=2e-2)
    for _ in range(120):
        optimizer_step(sequence_loss(model, source, target), model, optimizer)
    assert sequence_loss(model, source, target).item() < 0.05
    assert sequence_accuracy(model.generate(source), target) == (1.0, 1.0)


def test_train_seq2seq_learns_is_reproducible_and_evaluates_in_eval_mode():
    config = Seq2SeqTrainConfig(steps=80, batch_size=32, lr=2e-2, min_len=2, max_len=3, threads=1)
    model = Seq2Seq(d_model=8, d_hidden=16, seed=0)
    log = train_seq2seq(model, config)
    assert len(log.loss) == 80 and log.seconds > 0
    assert sum(log.loss[-10:]) / 10 < 0.7 * sum(log.loss[:10]) / 10
    again = train_seq2seq(Seq2Seq(d_model=8, d_hidden=16, seed=0), config)
    assert again.loss == log.loss
    assert model.training
    accuracy = accuracy_by_length(model, [2, 3], n=50)
    assert set(accuracy) == {2, 3} and all(0 <= a <= 1 and 0 <= s <= a for a, s in accuracy.values())
    assert model.training  # given back its mode
    with pytest.raises(ValueError, match="min_len"):
        Seq2SeqTrainConfig(min_len=5, max_len=4)
