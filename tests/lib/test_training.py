"""Tests of lmbook.training: the model builder, the training loop (losses checked against torch's own functions in
float64, optimiser steps against a hand-written step), reproducibility, early stopping, dropout at prediction time,
weight decay, and the errors raised for wrong shapes and labels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.metrics import accuracy_score
from lmbook.preprocessing import Standardiser, load_tabular, train_val_test_split
from lmbook.regularisation import EarlyStopping
from lmbook.testing import ShapeError
from lmbook.training import History, fit_classifier, predict_labels, predict_scores, torch_mlp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def standardised(name):
    X, y, _ = load_tabular(name)
    split = train_val_test_split(X, y, seed=0)
    scaler = Standardiser().fit(split.X_train)
    return scaler.transform(split.X_train), split.y_train, scaler.transform(split.X_val), split.y_val


@pytest.fixture(scope="module")
def cancer():
    return standardised("breast_cancer")


@pytest.fixture(scope="module")
def digits():
    return standardised("digits")


def noisy_problem(n, seed=0, c_in=10):
    """A binary problem with a real signal and much label noise: big networks overfit it within a few epochs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, c_in))
    y = (X[:, 0] + X[:, 1] + rng.normal(0.0, 1.0, n) > 0).astype(np.int64)
    return X, y


def t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


# ----- torch_mlp ----------------------------------------------------------------------------------------------


def test_torch_mlp_layers_in_order():
    logistic = torch_mlp((30, 1))
    assert [type(m) for m in logistic] == [torch.nn.Linear]
    model = torch_mlp((8, 16, 4, 3), activation="tanh", dropout=0.25)
    kinds = [type(m) for m in model]
    assert kinds == [torch.nn.Linear, torch.nn.Tanh, torch.nn.Dropout] * 2 + [torch.nn.Linear]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, torch.nn.Linear)] == [
        (8, 16),
        (16, 4),
        (4, 3),
    ]
    assert model[2].p == 0.25
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert torch_mlp((4, 2), dtype=torch.float32)[0].weight.dtype == torch.float32
    assert model(torch.zeros(5, 8, dtype=torch.float64)).shape == (5, 3)


def test_torch_mlp_seeded_without_touching_the_global_random_state():
    state = torch.get_rng_state()
    same = [params(torch_mlp((5, 7, 2), seed=3)) for _ in range(2)]
    assert torch.equal(state, torch.get_rng_state())
    for a, b in zip(*same, strict=True):
        assert torch.equal(a, b)
    other = params(torch_mlp((5, 7, 2), seed=4))
    assert not torch.equal(same[0][0], other[0])
    # The weights are those that torch.manual_seed(seed) followed by building the layers gives.
    torch.manual_seed(3)
    assert torch.equal(torch.nn.Linear(5, 7, dtype=torch.float64).weight, same[0][0])


@pytest.mark.parametrize(
    "kwargs",
    [{"sizes": (30,)}, {"sizes": (30, 0)}, {"sizes": (30, 2.5)}, {"activation": "softmax"}, {"dropout": 1.0}],
)
def test_torch_mlp_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        torch_mlp(**{"sizes": (4, 3, 1), **kwargs})


# ----- fitting: binary and multi-class ------------------------------------------------------------------------


def test_logistic_regression_on_breast_cancer_learns(cancer):
    X_train, y_train, X_val, y_val = cancer
    model = torch_mlp((30, 1))
    with torch.no_grad():
        initial = F.binary_cross_entropy_with_logits(model(t(X_train))[:, 0], t(y_train)).item()
    history = fit_classifier(model, X_train, y_train, X_val, y_val, epochs=15, lr=1e-2)
    assert isinstance(history, History) and history.epochs_run == 15 and not history.stopped_early
    assert history.train_loss.shape == history.val_acc.shape == (15,)
    assert history.train_loss[-1] < 0.5 * initial and history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] >= 0.9 and history.train_acc[-1] >= 0.9
    assert history.best_epoch == int(np.argmin(history.val_loss))
    # The recorded numbers are torch's own loss and the book's accuracy for the final model, in eval mode.
    assert not model.training
    with torch.no_grad():
        val_loss = F.binary_cross_entropy_with_logits(model(t(X_val))[:, 0], t(y_val)).item()
    assert history.val_loss[-1] == pytest.approx(val_loss, rel=1e-12)
    assert history.val_acc[-1] == accuracy_score(y_val, predict_labels(model, X_val))
    scores = predict_scores(model, X_val)
    assert scores.shape == (len(X_val),) and np.all((scores >= 0) & (scores <= 1))
    assert np.array_equal(predict_labels(model, X_val), (scores >= 0.5).astype(np.int64))


def test_multiclass_on_digits_uses_cross_entropy(digits):
    X_train, y_train, X_val, y_val = digits
    model = torch_mlp((64, 32, 10))
    history = fit_classifier(model, X_train, y_train, X_val, y_val, epochs=8, lr=1e-2)
    assert history.val_acc[-1] >= 0.9
    with torch.no_grad():
        logits = model(t(X_train))
    assert history.train_loss[-1] == pytest.approx(F.cross_entropy(logits, torch.as_tensor(y_train)).item(), rel=1e-12)
    scores = predict_scores(model, X_val)
    assert scores.shape == (len(X_val), 10)
    assert_close(torch.from_numpy(scores.sum(axis=1)), torch.ones(len(X_val), dtype=torch.float64))
    labels = predict_labels(model, X_val)
    assert labels.dtype == np.int64 and np.array_equal(labels, scores.argmax(axis=1))
    assert history.val_acc[-1] == accuracy_score(y_val, labels)


def test_without_validation_data_the_history_has_empty_val_arrays():
    X, y = noisy_problem(30)
    history = fit_classifier(torch_mlp((10, 1)), X, y, epochs=3, batch_size=8)
    assert history.val_loss.shape == history.val_acc.shape == (0,)
    assert history.best_epoch == 2 and history.epochs_run == 3
    assert "epochs_run=3" in repr(history)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_full_batch_epoch_is_one_torch_optimiser_step(optimizer):
    # Reference: the same step written out with torch.optim directly, with weight decay.
    X, y = noisy_problem(20)
    model = torch_mlp((10, 4, 1), seed=1)
    reference = torch_mlp((10, 4, 1), seed=1)
    fit_classifier(model, X, y, epochs=1, lr=0.1, batch_size=None, optimizer=optimizer, weight_decay=0.3)
    opt_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    weights = [p for p in reference.parameters() if p.ndim == 2]  # decayed; the biases are not
    biases = [p for p in reference.parameters() if p.ndim == 1]
    opt = opt_class([{"params": weights, "weight_decay": 0.3}, {"params": biases, "weight_decay": 0.0}], lr=0.1)
    F.binary_cross_entropy_with_logits(reference(t(X))[:, 0], t(y)).backward()
    opt.step()
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_sgd_weight_decay_is_l2_in_the_gradient_of_the_weights():
    X, y = noisy_problem(20)
    model, start = torch_mlp((10, 1), seed=2), torch_mlp((10, 1), seed=2)
    fit_classifier(model, X, y, epochs=1, lr=0.5, batch_size=None, optimizer="sgd", weight_decay=0.2)
    F.binary_cross_entropy_with_logits(start(t(X))[:, 0], t(y)).backward()
    for got, w in zip(model.parameters(), start.parameters(), strict=True):
        decay = 0.2 if w.ndim == 2 else 0.0  # the weights are decayed, the bias is not (lmbook.loop.param_groups)
        assert_close(got.detach(), w.detach() - 0.5 * (w.grad + decay * w.detach()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_gives_smaller_weights(optimizer):
    X, y = noisy_problem(60)
    norms = []
    for weight_decay in (0.0, 0.1):
        model = torch_mlp((10, 32, 1))
        fit_classifier(model, X, y, epochs=30, lr=0.05, batch_size=16, optimizer=optimizer, weight_decay=weight_decay)
        norms.append(sum(float(p.detach().square().sum()) for p in model.parameters()))
    assert norms[1] < 0.9 * norms[0]


# ----- reproducibility ----------------------------------------------------------------------------------------


def run(seed, fit_seed):
    X, y = noisy_problem(50)
    Xv, yv = noisy_problem(40, seed=1)
    model = torch_mlp((10, 16, 1), dropout=0.3, seed=seed)
    history = fit_classifier(model, X, y, Xv, yv, epochs=5, batch_size=8, seed=fit_seed)
    return history, params(model)


def test_same_seed_gives_identical_histories_and_weights_different_seed_does_not():
    (h1, p1), (h2, p2) = run(0, 0), run(0, 0)
    for field in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert np.array_equal(getattr(h1, field), getattr(h2, field))
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    # A different training seed (batch order and dropout masks) alone changes the run.
    h3, _ = run(0, 1)
    assert not np.array_equal(h1.train_loss, h3.train_loss)


def test_training_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    run(0, 0)
    assert torch.equal(state, torch.get_rng_state())


def test_batch_size_none_is_full_batch():
    X, y = noisy_problem(30)
    histories = [fit_classifier(torch_mlp((10, 1)), X, y, epochs=3, batch_size=b) for b in (None, 30, 1000)]
    assert all(np.array_equal(histories[0].train_loss, h.train_loss) for h in histories[1:])


# ----- early stopping -----------------------------------------------------------------------------------------


def overfit(restore_best=True, patience=5):
    X, y = noisy_problem(40)
    Xv, yv = noisy_problem(300, seed=1)
    model = torch_mlp((10, 64, 64, 1))
    stopper = EarlyStopping(patience)
    history = fit_classifier(
        model, X, y, Xv, yv, epochs=200, lr=1e-2, batch_size=None, early_stopping=stopper, restore_best=restore_best
    )
    with torch.no_grad():
        val_loss_now = F.binary_cross_entropy_with_logits(model(t(Xv))[:, 0], t(yv)).item()
    return history, stopper, val_loss_now


def test_early_stopping_stops_and_restores_the_best_weights():
    history, stopper, val_loss_now = overfit()
    assert history.stopped_early and history.epochs_run < 200
    assert history.epochs_run == history.best_epoch + 5 + 1  # patience epochs without improvement, then stop
    assert 0 < history.best_epoch and history.val_loss[history.best_epoch] == history.val_loss.min()
    assert stopper.best_step == history.best_epoch and stopper.stopped
    assert val_loss_now == pytest.approx(history.val_loss.min(), rel=1e-12)
    assert history.val_loss[-1] > history.val_loss.min()


def test_without_restore_best_the_last_weights_stay():
    history, _, val_loss_now = overfit(restore_best=False)
    assert history.stopped_early
    assert val_loss_now == pytest.approx(history.val_loss[-1], rel=1e-12)


def test_early_stopping_needs_validation_data_and_a_fresh_stopper():
    X, y = noisy_problem(20)
    with pytest.raises(ValueError, match="X_val"):
        fit_classifier(torch_mlp((10, 1)), X, y, epochs=2, early_stopping=EarlyStopping(2))
    used = EarlyStopping(2)
    used.step(1.0)
    with pytest.raises(ValueError, match="fresh"):
        fit_classifier(torch_mlp((10, 1)), X, y, X, y, epochs=2, early_stopping=used)


# ----- dropout and evaluation mode ----------------------------------------------------------------------------


def test_dropout_is_off_when_predicting_and_the_model_ends_in_eval_mode():
    X, y = noisy_problem(40)
    model = torch_mlp((10, 64, 3), dropout=0.5)
    fit_classifier(model, X, y, epochs=2)
    assert not model.training
    model.train()  # even when someone switched it back to training mode
    first = predict_scores(model, X)
    second = predict_scores(model, X)
    assert np.array_equal(first, second) and not model.training
    with torch.no_grad():
        assert_close(torch.from_numpy(first), torch.softmax(model(t(X)), dim=1))
    # ... while in training mode dropout really is on: two passes differ.
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(t(X)), model(t(X)))


# ----- errors -------------------------------------------------------------------------------------------------

X20, Y20 = noisy_problem(20)


@pytest.mark.parametrize(
    ("sizes", "change", "error", "match"),
    [
        ((10, 1), {"X_train": X20[:, :9]}, ShapeError, r"X_train: expected shape \(\*, 10\), got \(20, 9\)"),
        ((10, 1), {"X_train": X20[0]}, ShapeError, r"expected shape \(\*, 10\), got \(10,\)"),
        ((10, 1), {"y_train": Y20[:19]}, ShapeError, r"y_train: expected shape \(20,\), got \(19,\)"),
        ((10, 1), {"y_train": np.stack([Y20, Y20], 1)}, ShapeError, r"got \(20, 2\)"),
        ((10, 1), {"X_val": X20[:5, :3], "y_val": Y20[:5]}, ShapeError, r"X_val: expected shape \(\*, 10\)"),
        ((10, 1), {"X_val": X20}, ValueError, "both X_val and y_val"),
        ((10, 1), {"y_train": Y20 + 1}, ValueError, r"labels 0 and 1\), but the labels include \[2\]"),
        ((10, 1), {"y_train": 2 * Y20 - 1}, ValueError, r"include \[-1\]"),  # -1/+1 labels: a known mistake
        ((10, 1), {"y_train": Y20 * 0.7}, ValueError, "integer class labels"),  # probabilities are not labels
        ((10, 3), {"y_train": Y20 * 3}, ValueError, r"labels 0 to 2\), but the labels include \[3\]"),
        ((10, 3), {"y_val": Y20 - 1, "X_val": X20}, ValueError, r"y_val: .* include \[-1\]"),
        ((10, 1), {"y_train": Y20.astype(str)}, TypeError, "integer class labels"),
        ((10, 1), {"X_train": np.where(np.eye(20, 10) > 0, np.nan, X20)}, ValueError, "NaN"),
        ((10, 1), {"optimizer": "rmsprop"}, ValueError, "unknown optimizer"),
        ((10, 1), {"epochs": 0}, ValueError, "epochs"),
        ((10, 1), {"lr": 0.0}, ValueError, "lr"),
        ((10, 1), {"batch_size": 0}, ValueError, "batch_size"),
        ((10, 1), {"weight_decay": -1.0}, ValueError, "weight_decay"),
    ],
)
def test_bad_inputs_raise_clear_errors(sizes, change, error, match):
    args = {"X_train": X20, "y_train": Y20, "epochs": 1, **change}
    with pytest.raises(error, match=match):
        fit_classifier(torch_mlp(sizes), **args)


def test_labels_as_a_column_bools_or_whole_floats_are_accepted():
    histories = [
        fit_classifier(torch_mlp((10, 1)), X20, y, epochs=2, batch_size=None)
        for y in (Y20, Y20[:, None], Y20.astype(bool), Y20.astype(float))
    ]
    assert all(np.array_equal(histories[0].train_loss, h.train_loss) for h in histories[1:])


def test_predict_checks_the_input_width():
    model = torch_mlp((10, 1))
    with pytest.raises(ShapeError, match=r"X: expected shape \(\*, 10\), got \(4, 3\)"):
        predict_scores(model, np.zeros((4, 3)))
    with pytest.raises(ShapeError):
        predict_labels(model, np.zeros(10))


# ----- inputs of any shape: images, padded sequences with lengths -------------------------------------------


def blobs_images(n, seed=0):
    """(N, 1, 8, 8) images: class 1 has a bright 3x3 square in the top-left corner, class 0 in the bottom-right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0.0, 0.3, size=(n, 1, 8, 8))
    for i, label in enumerate(y):
        r = 1 if label else 4
        X[i, 0, r : r + 3, r : r + 3] += 1.5
    return X, y


def tiny_conv_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2),
    ).double()  # fmt: skip


def test_a_tiny_conv_net_learns_images():
    X, y = blobs_images(200)
    Xv, yv = blobs_images(100, seed=1)
    model = tiny_conv_net()
    history = fit_classifier(model, X, y, Xv, yv, epochs=5, lr=1e-2, batch_size=32, weight_decay=1e-3)
    assert history.val_acc[-1] > 0.95 and history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert predict_scores(model, Xv).shape == (100, 2)
    assert accuracy_score(yv, predict_labels(model, Xv)) == history.val_acc[-1]
    again = fit_classifier(tiny_conv_net(), X, y, Xv, yv, epochs=5, lr=1e-2, batch_size=32, weight_decay=1e-3)
    assert np.array_equal(history.val_loss, again.val_loss)  # reproducible, as for an MLP


class LastStateGRU(torch.nn.Module):
    """Embeds padded token ids, runs a GRU over the real tokens only, and classifies the last real state."""

    def __init__(self, vocab_size=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = torch.nn.Embedding(vocab_size, 8, padding_idx=0)
        self.rnn = torch.nn.GRU(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 2)
        self.lengths_seen = []

    def forward(self, ids, lengths):  # (B, T) int64, (B,) int64 -> (B, 2)
        self.lengths_seen.append(lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, h = self.rnn(packed)  # h: (1, B, 16), the state after each sequence's last real token
        return self.head(h[0])


def padded_sequences(n, seed=0):
    """Sequences of 2 .. 9 tokens from 1 .. 5, padded with 0 to length 9: class 1 when token 5 occurs."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 10, n)
    ids = np.zeros((n, 9), dtype=np.int64)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1, 5, length)
        if rng.random() < 0.5:
            ids[i, rng.integers(length)] = 5
    return (ids, lengths), (ids == 5).any(axis=1).astype(np.int64)


def test_a_tiny_gru_learns_padded_sequences_with_their_lengths():
    X, y = padded_sequences(300)
    Xv, yv = padded_sequences(100, seed=1)
    model = LastStateGRU()
    history = fit_classifier(model, X, y, Xv, yv, epochs=12, lr=2e-2, batch_size=32, max_grad_norm=1.0)
    assert history.val_acc[-1] > 0.9, history
    assert all(lengths.dtype == torch.int64 for lengths in model.lengths_seen)  # integers stay integers
    # The padding is invisible: more padding changes no prediction.
    ids, lengths = Xv
    longer = np.concatenate([ids, np.zeros((len(ids), 4), dtype=np.int64)], axis=1)
    assert_close(predict_scores(model, (longer, lengths)), predict_scores(model, Xv), rtol=1e-5, atol=1e-6)


def test_tuple_inputs_must_agree_on_the_number_of_examples():
    (ids, lengths), y = padded_sequences(20)
    with pytest.raises(ValueError, match=r"same number of examples, got \[20, 19\]"):
        fit_classifier(LastStateGRU(), (ids, lengths[:19]), y, epochs=1)
