"""A synthetic memory task: remember the first token of a sequence after ``k`` distractors.

Introduced in chapter 6, Recurrent networks and LSTMs (section 3). Each sequence starts with a **signal** token, one
of ``num_classes`` possible ones, followed by ``k`` random **distractor** tokens drawn from a separate set of ids;
the label is which signal came first. The answer is read from the network's state after the last distractor, so
the network must carry one piece of information unchanged across ``k`` steps of input it should ignore. Nothing
but memory helps: the distractors carry no information about the label, so a network that has forgotten the
signal is at chance, ``1 / num_classes``.

Ids: 0 is padding (unused here: every sequence has the same length ``T = k + 1``), ``1 .. num_classes`` are the
signals, ``num_classes + 1 .. vocab_size - 1`` the distractors.

- :func:`first_token_task`: ``n`` sequences and their labels;
- :func:`set_keep_bias`: start the gate that keeps an LSTM's or GRU's state open;
- :func:`carry_accuracy`: train a small :class:`lmbook.sequence.SequenceClassifier` (plain RNN, GRU or LSTM) on
  the task with :func:`lmbook.training.fit_classifier` and return its accuracy on fresh test sequences.
"""

from __future__ import annotations

import numpy as np
import torch

from lmbook.metrics import accuracy_score
from lmbook.sequence import CELLS, SequenceClassifier
from lmbook.testing import check_choice
from lmbook.training import fit_classifier, predict_labels


def first_token_task(n: int, distractors: int, vocab_size: int = 12, num_classes: int = 4, seed: int = 0):
    """``n`` sequences ``[signal, d_1, ..., d_k]`` with ``k = distractors``, labelled by their signal.

    Args:
        n: number of sequences, >= 1. distractors: ``k >= 0``, the number of tokens after the signal.
        vocab_size: ids from 0 to ``vocab_size - 1``; needs room for the padding id, the signals and at least
            one distractor id (``vocab_size >= num_classes + 2``).
        num_classes: how many different signals (and labels), >= 2.
        seed: seeds a private numpy generator; the same seed gives the same sequences.

    Returns:
        ``ids``: int64 ``(n, k + 1)``, the signal (``1 .. num_classes``) first, then distractor ids
        (``num_classes + 1 .. vocab_size - 1``), drawn uniformly and independently of the label.
        ``labels``: int64 ``(n,)``, ``ids[:, 0] - 1``, from 0 to ``num_classes - 1``, balanced in expectation.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if vocab_size < num_classes + 2:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no id for distractors: it needs the padding id 0, {num_classes} "
            f"signal ids and at least one distractor id, so at least {num_classes + 2}"
        )
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    ids = np.empty((n, distractors + 1), dtype=np.int64)
    ids[:, 0] = labels + 1
    ids[:, 1:] = rng.integers(num_classes + 1, vocab_size, size=(n, distractors))
    return torch.from_numpy(ids), torch.from_numpy(labels.astype(np.int64))


def set_keep_bias(module: torch.nn.LSTM | torch.nn.GRU, value: float) -> None:
    """Start the gate that keeps the old state of every layer of an LSTM or GRU at bias ``value`` (in place).

    That gate is the LSTM's forget gate ``f`` (``c' = f * c + ...``) and the GRU's update gate ``z``
    (``h' = (1 - z) * n + z * h``); in torch's gate order (``i, f, g, o`` and ``r, z, n``) both are the second
    block of ``H`` rows. ``bias_ih`` gets ``value`` there and ``bias_hh`` 0, so their sum is ``value``. A positive
    value starts the gate near 1, ``sigmoid(1) = 0.73``, so the state, and its gradient, survive many steps from the
    first update on. torch starts it at ``sigmoid(0 +- small) = 0.5``, which halves them at every step. For the
    LSTM, a forget bias of 1 is the usual recommendation (Jozefowicz, Zaremba and Sutskever 2015).
    """
    if not isinstance(module, torch.nn.LSTM | torch.nn.GRU):
        raise TypeError(f"set_keep_bias expects a torch.nn.LSTM or GRU, got {type(module).__name__}")
    H = module.hidden_size
    with torch.no_grad():
        for layer in range(module.num_layers):
            getattr(module, f"bias_ih_l{layer}")[H : 2 * H] = value
            getattr(module, f"bias_hh_l{layer}")[H : 2 * H] = 0.0


def carry_accuracy(
    cell: str,
    distractors: int,
    *,
    n_train: int = 1024,
    n_test: int = 512,
    vocab_size: int = 12,
    num_classes: int = 4,
    d_model: int = 8,
    d_hidden: int = 32,
    epochs: int = 10,
    optimizer: str = "sgd",
    lr: float = 1.0,
    batch_size: int = 32,
    max_grad_norm: float | None = 1.0,
    keep_bias: float = 1.0,
    seed: int = 0,
) -> float:
    """Train a one-layer recurrent classifier on :func:`first_token_task` and return its test accuracy.

    The model is ``SequenceClassifier(vocab_size, num_classes, d_model, d_hidden, cell=cell)`` (embedding ->
    ``torch.nn`` RNN, GRU or LSTM -> the state after the last step -> linear), trained by
    :func:`lmbook.training.fit_classifier` on ``n_train`` sequences, then measured on ``n_test`` fresh sequences
    drawn with another seed (so memorising the training sequences' distractors does not help).

    The defaults train with plain SGD, gradients clipped to norm ``max_grad_norm``: a step then follows the
    gradient's size, so a gradient that vanishes over the ``k`` steps shows as a model that does not learn. Adam
    divides each parameter's step by that parameter's recent gradient size, which rescues some vanishing gradients
    and blurs the comparison (chapter 6, section 3, shows both).

    Args:
        cell: ``"rnn"``, ``"gru"`` or ``"lstm"``. distractors: ``k``, tokens between the signal and the answer.
        n_train, n_test: training and test sequences. vocab_size, num_classes: as in :func:`first_token_task`.
        d_model, d_hidden: embedding width and hidden-state size.
        epochs, optimizer, lr, batch_size, max_grad_norm: passed to :func:`lmbook.training.fit_classifier`.
        keep_bias: for ``"lstm"`` and ``"gru"``, the initial bias of the gate that keeps the state (the LSTM's
            forget gate, the GRU's update gate; :func:`set_keep_bias`); 0 is torch's default. Ignored by ``"rnn"``.
        seed: seeds the data, the initial weights and the mini-batch order.

    Returns:
        The fraction of test sequences whose signal the trained model names; ``1 / num_classes`` is chance.
    """
    check_choice(cell, CELLS, "cell")
    task = {"distractors": distractors, "vocab_size": vocab_size, "num_classes": num_classes}
    ids, y = first_token_task(n_train, seed=seed, **task)
    test_ids, test_y = first_token_task(n_test, seed=seed + 1_000_003, **task)
    model = SequenceClassifier(vocab_size, num_classes, d_model, d_hidden, cell=cell, seed=seed)
    if cell != "rnn":
        set_keep_bias(model.rnn, keep_bias)
    T = distractors + 1
    fit_classifier(
        model,
        (ids, torch.full((n_train,), T)),
        y,
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size,
        max_grad_norm=max_grad_norm,
        seed=seed,
    )
    predicted = predict_labels(model, (test_ids, torch.full((n_test,), T)))
    return accuracy_score(test_y.numpy(), predicted)
