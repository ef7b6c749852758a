"""Small PyTorch training loops for classifiers: build a multi-layer perceptron, fit it, predict with it.

Introduced in chapter 4, Training well: data, overfitting, evaluation. Chapters 2 and 3 wrote every step of
training by hand; from chapter 4 on the interesting questions are about *what* to train on and *how long*, so
the loop itself is written once, here, in PyTorch:

- :func:`torch_mlp` builds ``Linear -> activation [-> Dropout] -> ... -> Linear`` with seeded initial weights;
- :func:`fit_classifier` trains it (or any classifier) with a ``torch.optim`` optimiser on mini-batches,
  measures the training and validation loss and accuracy after every epoch, and can stop early and go back to
  the best epoch's weights;
- :func:`predict_scores` and :func:`predict_labels` use the trained model, always in evaluation mode.

One output unit means a binary classifier (one logit, sigmoid, binary cross-entropy); ``K >= 2`` output units
mean ``K`` classes (logits, softmax, cross-entropy). Inputs are arrays ``X`` with the examples along the first
axis, ``(N, C_in)`` for an MLP, ``(N, C, H, W)`` for a convolutional net, or a tuple such as padded token ids and
their lengths for a recurrent net; labels ``y`` are integers of shape ``(N,)``. The optimiser, its weight-decay
rule and the update step come from :mod:`lmbook.loop`, shared with the book's other loops. Everything is
reproducible: the same ``seed`` gives the same initial
weights, the same mini-batch order and the same dropout masks, and so the same history, number for number.
Functions seed private copies of PyTorch's random state, so calling them leaves the global state untouched.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmbook.device import training_device
from lmbook.loop import OPTIMIZERS, evaluation_mode, make_optimizer, optimizer_step
from lmbook.regularisation import EarlyStopping
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape

_ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "identity": torch.nn.Identity,
}


# ----- building a model ---------------------------------------------------------------------------------------


def torch_mlp(
    sizes: tuple[int, ...],
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.nn.Sequential:
    """A multi-layer perceptron as a ``torch.nn.Sequential``, with initial weights fixed by ``seed``.

    Args:
        sizes: layer widths from input to output, at least two entries, e.g. ``(64, 32, 10)``: 64 inputs, one
            hidden layer of 32 units, 10 outputs. ``(30, 1)`` has no hidden layer: it is logistic regression.
            ``sizes[-1] == 1`` gives one logit for a binary classifier; ``sizes[-1] = K >= 2`` gives ``K`` logits.
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``, applied after every hidden layer
            (never after the last one: the outputs are logits, and the loss applies sigmoid or softmax itself).
        dropout: probability ``p`` in ``[0, 1)`` for a ``torch.nn.Dropout`` after each hidden activation; 0 adds
            no dropout layers.
        seed: seeds the initial weights (PyTorch's default initialisation); the same seed gives the same model.
        dtype: the parameters' dtype; float64 by default, as in the book's reference tests.

    Returns:
        ``Linear(sizes[0], sizes[1]) -> activation [-> Dropout] -> ... -> Linear(sizes[-2], sizes[-1])`` in
        training mode. It maps inputs of shape ``(B, sizes[0])`` to logits of shape ``(B, sizes[-1])``.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, int | np.integer) and s >= 1 for s in sizes):
        raise ValueError(f"sizes must be at least two positive integers (inputs, ..., outputs), got {sizes}")
    check_choice(activation, _ACTIVATIONS, "activation")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[torch.nn.Module] = []
    # A private copy of the random state, so that building a model does not reseed the caller's.
    with private_seed(seed):
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(torch.nn.Linear(int(c_in), int(c_out), dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
                if dropout > 0:
                    layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


# ----- checking inputs ----------------------------------------------------------------------------------------


def _first_parameter(model: torch.nn.Module) -> torch.Tensor:
    try:
        return next(model.parameters())
    except StopIteration:
        raise ValueError("the model has no parameters to train or to take a dtype from") from None


def _input_width(model: torch.nn.Module) -> int | None:
    """``in_features`` of the model's first ``Linear`` layer, or None when it does not start with one."""
    first = next((m for m in model.modules() if not isinstance(m, torch.nn.Sequential)), None)
    return first.in_features if isinstance(first, torch.nn.Linear) else None


def _as_tensor(X, param: torch.Tensor, name: str, keep_integers: bool) -> torch.Tensor:
    """One input array as a tensor on the model's device, after checking it is numeric, non-empty and finite.

    Floating-point values take the model's dtype; integers (token ids, lengths) stay int64 when
    ``keep_integers``, and become the model's dtype otherwise (pixel values stored as integers, say).
    """
    X = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X)
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {X.dtype}")
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"{name}: expected at least one example along the first axis, got shape {X.shape}")
    if keep_integers and (np.issubdtype(X.dtype, np.integer) or X.dtype == bool):
        return torch.as_tensor(X.astype(np.int64), device=param.device)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values; clean or impute the data first")
    return torch.as_tensor(X.astype(np.float64), dtype=param.dtype, device=param.device)


def _as_inputs(X, model: torch.nn.Module, name: str) -> tuple[torch.Tensor, ...]:
    """``X`` as a tuple of tensors for ``model(*inputs)``, all with the same number of examples ``N``.

    ``X`` is one array of any shape ``(N, ...)`` (features ``(N, C_in)``, images ``(N, C, H, W)``), or a
    tuple (not a list) of arrays (padded token ids ``(N, T)`` and their lengths ``(N,)``, say). A model that
    starts with a ``Linear`` layer must get ``(N, in_features)``.
    """
    param = _first_parameter(model)
    if isinstance(X, tuple):  # several inputs; a list is one array, as for numpy
        if not X:
            raise ValueError(f"{name}: expected at least one input array, got an empty tuple")
        inputs = tuple(_as_tensor(x, param, f"{name}[{i}]", keep_integers=True) for i, x in enumerate(X))
        sizes = [len(x) for x in inputs]
        if len(set(sizes)) > 1:
            raise ValueError(f"{name}: every input must have the same number of examples, got {sizes}")
        return inputs
    width = _input_width(model)
    if width is not None:
        check_shape(X, (None, width), name)
    return (_as_tensor(X, param, name, keep_integers=False),)


def _as_labels(y, n: int, num_outputs: int, name: str) -> np.ndarray:
    """``y`` as int64 of shape ``(n,)``, after checking the labels fit a model with ``num_outputs`` outputs."""
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column of labels (N, 1) is accepted, as elsewhere in the book
    check_shape(y, (n,), name)
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(
                f"{name} must hold integer class labels, got non-integer values such as {y[y != np.round(y)][:3]}"
            )
    elif not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    num_classes = 2 if num_outputs == 1 else num_outputs
    bad = (y < 0) | (y >= num_classes)
    if np.any(bad):
        found = np.unique(y[bad])[:5].tolist()
        what = (
            "one output unit (binary: labels 0 and 1)"
            if num_outputs == 1
            else f"{num_outputs} outputs (labels 0 to {num_outputs - 1})"
        )
        raise ValueError(f"{name}: the model has {what}, but the labels include {found}")
    return y


def _num_outputs(model: torch.nn.Module, X: tuple[torch.Tensor, ...]) -> int:
    """Number of output units, from one forward pass on one example in evaluation mode (no randomness used)."""
    with evaluation_mode(model), torch.no_grad():
        out = model(*(x[:1] for x in X))
    if out.ndim != 2 or out.shape[1] < 1:
        raise ValueError(f"the model must return logits of shape (B, K), got {tuple(out.shape)} for one example")
    return int(out.shape[1])


# ----- loss and accuracy --------------------------------------------------------------------------------------


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on one logit per example, or mean cross-entropy on ``K`` logits."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype))
    return F.cross_entropy(logits, y)


def _labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels: probability ``>= 0.5`` for one output (as lmbook.metrics thresholds), argmax for ``K``."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) >= 0.5).long()
    return logits.argmax(dim=1)


EVAL_CHUNK = 4096  # examples per forward pass when measuring; one pass for the book's small data sets


def _logits(model: torch.nn.Module, X: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``model(*X)`` for all examples, in chunks of :data:`EVAL_CHUNK`, without tracking gradients."""
    with torch.no_grad():
        return torch.cat([model(*(x[i : i + EVAL_CHUNK] for x in X)) for i in range(0, len(X[0]), EVAL_CHUNK)])


def _evaluate(model: torch.nn.Module, X: tuple[torch.Tensor, ...], y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and accuracy on the whole of ``(X, y)``, in evaluation mode without tracking gradients."""
    model.eval()
    logits = _logits(model, X)
    loss = _loss(logits, y).item()
    acc = (_labels_from_logits(logits) == y).double().mean().item()
    return float(loss), float(acc)


# ----- training -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class History:
    """What happened during :func:`fit_classifier`, measured after every epoch.

    Attributes:
        train_loss, train_acc: loss and accuracy on the whole training set, shape ``(epochs_run,)`` each.
            Measured in evaluation mode after the epoch (dropout off), so they describe the model as it is then,
            not an average over the epoch's changing weights.
        val_loss, val_acc: the same on the validation set, shape ``(epochs_run,)``; empty, shape ``(0,)``,
            when no validation data was given.
        best_epoch: 0-based epoch with the lowest validation loss (the first such epoch on a tie); the last
            epoch when there is no validation data. ``val_loss[best_epoch] == val_loss.min()``.
        stopped_early: whether early stopping ended training before ``epochs``.
        epochs_run: the number of epochs trained.
    """

    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    best_epoch: int
    stopped_early: bool
    epochs_run: int

    def __repr__(self) -> str:
        last = f"train_loss={self.train_loss[-1]:.4g}, train_acc={self.train_acc[-1]:.3f}"
        if len(self.val_loss):
            last += f", val_loss={self.val_loss[-1]:.4g}, val_acc={self.val_acc[-1]:.3f}"
        return (
            f"History(epochs_run={self.epochs_run}, best_epoch={self.best_epoch}, "
            f"stopped_early={self.stopped_early}, last: {last})"
        )


def fit_classifier(
    model: torch.nn.Module,
    X_train,
    y_train,
    X_val=None,
    y_val=None,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int | None = 64,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    seed: int = 0,
    early_stopping: EarlyStopping | None = None,
    restore_best: bool = True,
    device=None,
) -> History:
    """Train a classifier in place with mini-batch gradient descent and record its progress epoch by epoch.

    Each epoch shuffles the training examples, cuts them into mini-batches and takes one optimiser step per
    batch on the mean loss: binary cross-entropy with logits for one output unit, cross-entropy for ``K >= 2``.
    After each epoch the model is measured in evaluation mode (``model.eval()``, no gradients) on all training
    data and, if given, all validation data; then it goes back to training mode for the next epoch.

    Args:
        model: maps a batch of inputs to ``(B, 1)`` or ``(B, K)`` logits, e.g. :func:`torch_mlp`, a convolutional
            net or a recurrent one. Its parameters are updated in place.
        X_train: inputs with the examples along the first axis: one array of any shape, ``(N, C_in)`` features
            or ``(N, C, H, W)`` images, converted to the model's dtype and passed as ``model(X)``; or a tuple of
            arrays (a ``tuple``) passed as ``model(*X)``, such as padded token ids ``(N, T)`` and their lengths
            ``(N,)``, where integer arrays stay int64 (a model using ``pack_padded_sequence`` takes
            ``lengths.cpu()``).
        y_train: integer labels, shape ``(N,)``: 0 or 1 for one output unit, ``0 .. K - 1`` for ``K`` outputs.
        X_val, y_val: optional validation data of the same kinds, ``N_val`` examples; give both or neither.
        epochs: the most epochs to train, >= 1. lr: the learning rate, > 0.
        batch_size: examples per step; None (or anything >= N) means full-batch gradient descent.
        optimizer: ``"sgd"`` (plain, no momentum), ``"adam"`` or ``"adamw"``, the ``torch.optim`` classes
            (:func:`lmbook.loop.make_optimizer`).
        weight_decay: >= 0, for the weight matrices and kernels only, not the biases (the rule of
            :func:`lmbook.loop.param_groups`). For ``"sgd"`` and ``"adam"`` it adds ``weight_decay * w`` to their
            gradients (the L2 penalty of :func:`lmbook.regularisation.l2_grad`); for ``"adamw"`` it shrinks them
            directly at each step (decoupled weight decay).
        max_grad_norm: clip the total gradient norm of each step to this (recurrent nets need it); None: no
            clipping.
        seed: seeds the mini-batch order and the dropout masks; the same seed gives the same history.
        early_stopping: a fresh :class:`lmbook.regularisation.EarlyStopping`; its ``step`` is called with each
            epoch's validation loss and training stops when it returns True. Needs validation data.
        restore_best: with ``early_stopping``, load back the weights of the epoch with the lowest validation
            loss when training ends (without ``early_stopping`` the model keeps its last weights).
        device: where to train: :func:`lmbook.device.training_device`'s rule (None: where the model is).

    Returns:
        A :class:`History`. The model is left in evaluation mode, ready for :func:`predict_scores`.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (or None for the full batch), got {batch_size}")
    check_choice(optimizer, OPTIMIZERS, "optimizer")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must not be negative, got {weight_decay}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive (or None for no clipping), got {max_grad_norm}")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    has_val = X_val is not None
    if early_stopping is not None:
        if not has_val:
            raise ValueError("early stopping watches the validation loss: pass X_val and y_val")
        if early_stopping.num_steps:
            raise ValueError("early_stopping has been used before; pass a fresh EarlyStopping for each training run")

    dev = training_device(model, device)
    model.to(dev)
    Xt = _as_inputs(X_train, model, "X_train")  # a tuple: model(*Xt)
    num_outputs = _num_outputs(model, Xt)
    n = len(Xt[0])
    yt = torch.as_tensor(_as_labels(y_train, n, num_outputs, "y_train"), device=dev)
    if has_val:
        Xv = _as_inputs(X_val, model, "X_val")
        yv = torch.as_tensor(_as_labels(y_val, len(Xv[0]), num_outputs, "y_val"), device=dev)

    batch = n if batch_size is None else min(int(batch_size), n)
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    order_rng = torch.Generator().manual_seed(seed)  # mini-batch order, on the CPU whatever the model's device
    train_loss, train_acc, val_loss, val_acc = [], [], [], []
    best_loss, best_epoch, best_state = math.inf, -1, None
    stopped_early = False

    # Dropout draws from PyTorch's global generator: seed a private copy of it for reproducible masks.
    with private_seed(seed, devices=[dev]):
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n, generator=order_rng).to(dev)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                loss = _loss(model(*(x[idx] for x in Xt)), yt[idx])
                optimizer_step(loss, model, opt, max_grad_norm=max_grad_norm)

            loss_value, acc_value = _evaluate(model, Xt, yt)
            train_loss.append(loss_value)
            train_acc.append(acc_value)
            if has_val:
                loss_value, acc_value = _evaluate(model, Xv, yv)
                val_loss.append(loss_value)
                val_acc.append(acc_value)
                if loss_value < best_loss:
                    best_loss, best_epoch = loss_value, epoch
                    if early_stopping is not None and restore_best:
                        best_state = copy.deepcopy(model.state_dict())
                if early_stopping is not None and early_stopping.step(loss_value):
                    stopped_early = epoch < epochs - 1
                    break

    epochs_run = len(train_loss)
    if best_state is not None:
        model.load_state_dict(best_state)
    if best_epoch < 0:  # no validation data, or a validation loss that was never finite
        best_epoch = epochs_run - 1
    model.eval()
    return History(
        train_loss=np.array(train_loss),
        train_acc=np.array(train_acc),
        val_loss=np.array(val_loss),
        val_acc=np.array(val_acc),
        best_epoch=int(best_epoch),
        stopped_early=bool(stopped_early),
        epochs_run=epochs_run,
    )


# ----- predicting ---------------------------------------------------------------------------------------------


def predict_scores(model: torch.nn.Module, X) -> np.ndarray:
    """Class probabilities from a trained classifier, computed in evaluation mode (dropout off), no gradients.

    Args:
        model: as for :func:`fit_classifier`. It is switched to evaluation mode and left there.
        X: inputs as for :func:`fit_classifier`: one array ``(N, ...)``, or a tuple of arrays for ``model(*X)``.

    Returns:
        For one output unit, shape ``(N,)``: the probability of class 1 (sigmoid of the logit), the ``scores``
        that :func:`lmbook.metrics.roc_curve` and :func:`lmbook.metrics.threshold_metrics` take. For ``K``
        outputs, shape ``(N, K)``: softmax probabilities, each row summing to 1.
    """
    Xt = _as_inputs(X, model, "X")
    model.eval()
    logits = _logits(model, Xt)
    n = len(Xt[0])
    if logits.ndim != 2 or len(logits) != n:
        raise ValueError(f"the model must return logits of shape (N, K) = ({n}, K), got {tuple(logits.shape)}")
    probs = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
    return probs.cpu().numpy()


def predict_labels(model: torch.nn.Module, X) -> np.ndarray:
    """Predicted class labels, int64 of shape ``(N,)``: 1 where the probability is ``>= 0.5`` for one output unit,
    the most probable class for ``K`` outputs. Evaluation mode, as :func:`predict_scores`; ``X`` as there."""
    scores = predict_scores(model, X)
    labels = (scores >= 0.5) if scores.ndim == 1 else scores.argmax(axis=1)
    return labels.astype(np.int64)
