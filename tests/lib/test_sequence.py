"""Tests of lmbook.sequence: vocabulary, padding, the last real step, the classifier's readouts, the char LSTM."""

import numpy as np
import pytest
import torch

from lmbook.language_model import LMTrainConfig, train_lm
from lmbook.sequence import CharLSTM, SequenceClassifier, Vocabulary, last_real_step, pad_batch
from lmbook.testing import ShapeError
from lmbook.training import fit_classifier, predict_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_vocabulary_ids_counts_and_unknown_words():
    vocab = Vocabulary(["A good film.", "a BAD film!", "good"], min_count=1)
    assert vocab.words[:2] == ["<pad>", "<unk>"]
    # by decreasing count, ties alphabetical: a, film, good (2 each), then !, ., bad (1 each)
    assert vocab.words[2:] == ["a", "film", "good", "!", ".", "bad"]
    assert vocab.encode(["Good film, dull plot"]) == [[4, 3, 1, 1, 1]]
    assert vocab.decode([4, 3, 0, 0]) == "good film"
    rare = Vocabulary(["A good film.", "a BAD film!", "good"], min_count=2)
    assert rare.words == ["<pad>", "<unk>", "a", "film", "good"]
    assert rare.encode(["bad"]) == [[1]]
    with pytest.raises(TypeError, match="list of texts"):
        vocab.encode("one text")
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary(["x"], min_count=0)


def test_pad_batch_shapes_values_and_errors():
    ids, lengths = pad_batch([[5, 6, 7], [8], torch.tensor([9, 10])])
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    wide, _ = pad_batch([[5], [6, 7]], pad_id=3, total_length=4)
    assert wide.tolist() == [[5, 3, 3, 3], [6, 7, 3, 3]]
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[1], []])
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_batch([[1, 2, 3]], total_length=2)


def test_last_real_step_against_a_loop_values_and_gradients():
    torch.manual_seed(0)
    outputs = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 1, 3, 2])
    got = last_real_step(outputs, lengths)
    want = torch.stack([outputs[b, int(lengths[b]) - 1] for b in range(4)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    weights = torch.randn(4, 3, dtype=torch.float64)
    (g_got,) = torch.autograd.grad((got * weights).sum(), outputs)
    (g_want,) = torch.autograd.grad((want * weights).sum(), outputs)
    torch.testing.assert_close(g_got, g_want, rtol=0, atol=0)
    assert g_got[1, 1:].abs().sum() == 0  # nothing flows into row 1's padding


def test_last_real_step_errors():
    outputs = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="between 1 and T=4"):
        last_real_step(outputs, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="between 1 and T=4"):
        last_real_step(outputs, torch.tensor([5, 2]))
    with pytest.raises(ShapeError, match=r"lengths: expected shape \(2,?\), got \(3,?\)"):
        last_real_step(outputs, torch.tensor([1, 2, 3]))
    with pytest.raises(ShapeError, match="outputs"):
        last_real_step(torch.zeros(2, 4), torch.tensor([1, 2]))


def _batch():
    return pad_batch([[2, 3, 4, 5, 6], [7, 8], [9], [3, 4, 5]])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_packed_readout_equals_last_real_readout(cell, num_layers):
    ids, lengths = _batch()
    real = SequenceClassifier(10, 3, d_model=4, d_hidden=5, cell=cell, num_layers=num_layers, readout="last_real")
    packed = SequenceClassifier(10, 3, d_model=4, d_hidden=5, cell=cell, num_layers=num_layers, readout="packed")
    packed.load_state_dict(real.state_dict())
    real.double(), packed.double()
    torch.testing.assert_close(packed(ids, lengths), real(ids, lengths), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("readout", ["last_real", "packed"])
def test_padding_does_not_change_a_sequence_under_the_right_readouts(readout):
    ids, lengths = _batch()
    model = SequenceClassifier(10, 2, d_model=4, d_hidden=5, cell="lstm", readout=readout).double()
    wide, _ = pad_batch([row[: int(n)] for row, n in zip(ids, lengths, strict=True)], total_length=12)
    alone = torch.cat([model(ids[i : i + 1, : int(lengths[i])], lengths[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(model(ids, lengths), alone, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model(wide, lengths), alone, rtol=1e-12, atol=1e-12)


def test_last_padded_readout_reads_padding():
    ids, lengths = _batch()
    model = SequenceClassifier(10, 2, d_model=4, d_hidden=5, cell="lstm", readout="last_padded")
    right = SequenceClassifier(10, 2, d_model=4, d_hidden=5, cell="lstm", readout="last_real")
    with torch.no_grad():
        wrong, good = model(ids, lengths), right(ids, lengths)
    full = lengths == ids.shape[1]
    torch.testing.assert_close(wrong[full], good[full])  # no padding in the longest row: the same
    assert (wrong[~full] - good[~full]).abs().min() > 1e-4  # every padded row differs
    wide, _ = pad_batch([row[: int(n)] for row, n in zip(ids, lengths, strict=True)], total_length=9)
    with torch.no_grad():
        assert not torch.allclose(model(wide, lengths)[0], wrong[0])  # even the longest row changes


def test_classifier_checks_its_arguments_and_inputs():
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        SequenceClassifier(10, 2, cell="transformer")
    with pytest.raises(ValueError, match="unknown readout"):
        SequenceClassifier(10, 2, readout="mean")
    model = SequenceClassifier(10, 2)
    with pytest.raises(ValueError, match="between 1 and T=3"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 3]))
    with pytest.raises(ShapeError, match="ids"):
        model(torch.zeros(3, dtype=torch.long), torch.tensor([3]))
    a, b = SequenceClassifier(10, 2, seed=3), SequenceClassifier(10, 2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert torch.count_nonzero(a.embedding.weight[0]) == 0  # the padding's embedding is zero


def test_from_embeddings_copies_and_freezes_the_table():
    weights = torch.arange(24.0).reshape(6, 4)
    model = SequenceClassifier.from_embeddings(weights, 3, d_hidden=5, cell="gru", readout="packed")
    assert model.embedding.weight.shape == (6, 4) and model.head.out_features == 3 and model.readout == "packed"
    assert torch.equal(model.embedding.weight[1:], weights[1:]) and model.embedding.weight[0].abs().sum() == 0
    assert not model.embedding.weight.requires_grad
    ids, lengths = pad_batch([[1, 2], [3]])
    before = model.embedding.weight.clone()
    fit_classifier(model, (ids, lengths), np.array([0, 2]), epochs=3, lr=0.1, seed=0)
    assert torch.equal(model.embedding.weight, before)  # frozen: training left it alone
    assert SequenceClassifier.from_embeddings(weights, 2, freeze=False).embedding.weight.requires_grad
    with pytest.raises(ShapeError, match="weights"):
        SequenceClassifier.from_embeddings(torch.zeros(6), 2)


def test_fit_classifier_learns_a_task_that_needs_the_last_real_token():
    """The label is the last real token (3 or 4); the sequences have 1 to 6 tokens, padded to 20."""
    rng = np.random.default_rng(0)
    seqs, y = [], []
    for _ in range(160):
        n = int(rng.integers(1, 7))
        label = int(rng.integers(0, 2))
        seqs.append([*rng.integers(5, 9, size=n - 1).tolist(), 3 + label])
        y.append(label)
    ids, lengths = pad_batch(seqs, total_length=20)
    y = np.array(y)
    accuracy = {}
    for readout in ("last_real", "last_padded"):
        model = SequenceClassifier(9, 2, d_model=8, d_hidden=8, cell="rnn", readout=readout, seed=1)
        fit_classifier(model, (ids[:120], lengths[:120]), y[:120], epochs=25, lr=0.02, batch_size=32, seed=0)
        accuracy[readout] = (predict_labels(model, (ids[120:], lengths[120:])) == y[120:]).mean()
    assert accuracy["last_real"] == 1.0
    assert accuracy["last_padded"] < 0.8  # 14 or more padding steps after the token that decides


def test_char_lstm_shapes_state_and_training():
    model = CharLSTM(7, d_model=6, d_hidden=8, num_layers=2).double()
    idx = torch.randint(0, 7, (3, 10), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    assert logits.shape == (3, 10, 7)
    first, state = model.step(idx[:, :4])
    second, _ = model.step(idx[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), logits, rtol=1e-12, atol=1e-12)
    # trained by the chapter 7 loop on a repeating pattern, it learns it (the loss falls far below log 7)
    pattern = torch.tensor([0, 1, 2, 3, 4, 5, 6] * 60)
    lm = CharLSTM(7, d_model=8, d_hidden=16)
    log = train_lm(lm, pattern, LMTrainConfig(steps=60, batch_size=8, window=16, lr=2e-2, log_every=60))
    assert log.train_loss[-1] < 0.5


def test_char_lstm_generate_matches_rereading_and_is_reproducible():
    model = CharLSTM(5, d_model=4, d_hidden=6).double()
    model.train()
    prompt = torch.tensor([[1, 2], [3, 4]])
    out = model.generate(prompt, 6, temperature=0.8, top_k=3, generator=torch.Generator().manual_seed(2))
    again = model.generate(prompt, 6, temperature=0.8, top_k=3, generator=torch.Generator().manual_seed(2))
    assert out.shape == (2, 8) and torch.equal(out, again) and torch.equal(out[:, :2], prompt)
    assert model.training  # back in training mode
    greedy = model.generate(prompt, 5, temperature=0)
    # greedy decoding with a carried state gives what re-reading the whole text at each step gives
    idx = prompt
    for _ in range(5):
        idx = torch.cat([idx, model(idx)[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, idx)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 1, temperature=-1)
