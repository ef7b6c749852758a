"""Fine-tuning a pre-trained BERT for text classification, and frozen BERT features.

Introduced in chapter 8, BERT: pre-training and fine-tuning. Fine-tuning puts one small new layer, the
**classification head**, on top of a pre-trained encoder and trains *all* the weights a little on the labelled
task: a few epochs, a small learning rate (2e-5 to 1e-4), a short **warm-up** followed by a linear decay, and
**gradient clipping**. The recipe is the BERT paper's (Devlin et al., 2019, section 4 and appendix A.3).

- :class:`BertClassifier`: encoder -> pooled sentence vector -> dropout -> ``Linear(C, K)`` logits. The sentence
  vector is the ``[CLS]`` token's final hidden state (``"cls"``), BERT's pooler output (``"pooler"``), or the
  mean of the real tokens' hidden states (``"mean"``, :func:`mean_pool`), which must skip the padding.
- :class:`FinetuneConfig` with a CPU size (:meth:`FinetuneConfig.cpu`, under a minute for the book's 300
  sentences) and a GPU size (:meth:`FinetuneConfig.gpu`, for SST-2), and :func:`finetune`, a loop built from the
  shared pieces of :mod:`lmbook.loop` (the schedule is :func:`lmbook.schedules.linear_warmup_decay`).
- :func:`predict_proba` and :func:`evaluate` (accuracy, F1 and the confusion matrix from :mod:`lmbook.metrics`).
- :func:`embed`: sentence vectors from a frozen encoder, for a logistic regression (the cheap alternative).

Every function takes the book's :class:`lmbook.bert.BertModel` and :class:`lmbook.wordpiece.WordPieceTokenizer`;
Hugging Face's ``BertModel`` and tokenizers work too, so the two can be compared.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.device import autocast_dtype, training_device
from lmbook.loop import (
    autocast,
    check_training_config,
    cpu_threads,
    current_lr,
    make_optimizer,
    make_scaler,
    make_scheduler,
    optimizer_step,
)
from lmbook.metrics import accuracy_score, confusion_matrix, f1, precision_recall_f1
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape

POOLINGS = ("cls", "pooler", "mean")


# ----- pooling and the classifier -----------------------------------------------------------------------------


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of each sequence's hidden states over its real tokens only.

    Args:
        hidden: ``(B, T, C)`` hidden states. attention_mask: ``(B, T)``, 1 on real tokens and 0 on padding;
            None counts every position as real.

    Returns:
        ``(B, C)``. Padded positions contribute nothing, whatever they hold (even NaN): a plain
        ``hidden.mean(dim=1)`` would average the padding in and make a sentence's vector depend on the length of
        the longest sentence in its batch.
    """
    B, T, C = hidden.shape
    if attention_mask is None:
        return hidden.mean(dim=1)
    check_shape(attention_mask, (B, T), "attention_mask")
    real = attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
    summed = hidden.masked_fill(~real, 0.0).sum(dim=1)  # (B, C); masked_fill, not a product: 0 * NaN is NaN
    count = real.sum(dim=1).clamp(min=1).to(hidden.dtype)  # (B, 1) real tokens; an all-padding row gives 0, not NaN
    return summed / count


def _encoder_outputs(bert: nn.Module, input_ids, token_type_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hidden (B, T, C), pooled (B, C))`` from lmbook's BertModel (a tuple) or Hugging Face's (an output object)."""
    out = bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
    if isinstance(out, tuple | list):
        return out[0], out[1]
    return out.last_hidden_state, out.pooler_output


def _d_model(bert: nn.Module) -> int:
    """The width ``C`` of lmbook's BertModel (``config.d_model``) or of Hugging Face's (``config.hidden_size``)."""
    config = bert.config
    return int(config.d_model if hasattr(config, "d_model") else config.hidden_size)


def sentence_vectors(
    bert: nn.Module, input_ids, token_type_ids=None, attention_mask=None, pooling: str = "mean"
) -> torch.Tensor:
    """One vector per sequence from an encoder: ``(B, T)`` ids -> ``(B, C)``, pooled as :class:`BertClassifier` says."""
    check_choice(pooling, POOLINGS, "pooling")
    hidden, pooled = _encoder_outputs(bert, input_ids, token_type_ids, attention_mask)
    if pooling == "cls":
        return hidden[:, 0]  # (B, C): [CLS] is always position 0, never padding
    if pooling == "pooler":
        return pooled  # (B, C) = tanh(W hidden[:, 0] + b), trained by next-sentence prediction
    return mean_pool(hidden, attention_mask)


class BertClassifier(nn.Module):
    """A pre-trained encoder with a classification head: ``(B, T)`` token ids -> ``(B, K)`` logits.

    Args:
        bert: an encoder returning ``(hidden (B, T, C), pooled (B, C))``, e.g. :class:`lmbook.bert.BertModel`
            from :func:`lmbook.bert.load_pretrained` (a Hugging Face ``BertModel`` works too). Kept as
            ``self.bert`` and fine-tuned along with the head.
        num_labels: ``K``, the number of classes.
        pooling: how the ``(B, T, C)`` hidden states become one ``(B, C)`` vector per sentence: ``"cls"`` the
            final hidden state of the ``[CLS]`` token; ``"pooler"`` BERT's pooler output,
            ``tanh(Linear(hidden[:, 0]))``; ``"mean"`` the mean over the real tokens (:func:`mean_pool`), how
            sentence-embedding models such as all-MiniLM-L6-v2 were trained.
        dropout: dropout probability on the sentence vector while training (BERT uses 0.1).
        seed: seeds the head's initial weights (normal, standard deviation 0.02, as BERT's); the caller's random
            state is left alone.
    """

    def __init__(self, bert: nn.Module, num_labels: int = 2, pooling: str = "cls", dropout: float = 0.1, seed: int = 0):
        super().__init__()
        check_choice(pooling, POOLINGS, "pooling")
        if num_labels < 2:
            raise ValueError(f"num_labels must be at least 2 (one logit per class), got {num_labels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.bert = bert
        self.pooling = pooling
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        C = _d_model(bert)
        with private_seed(seed):
            self.classifier = nn.Linear(C, num_labels)
            nn.init.normal_(self.classifier.weight, mean=0.0, std=0.02)
            nn.init.zeros_(self.classifier.bias)
        param = next(bert.parameters(), None)
        if param is not None:
            self.classifier.to(device=param.device, dtype=param.dtype)

    def features(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """The ``(B, C)`` sentence vectors the head sees (before dropout)."""
        return sentence_vectors(self.bert, input_ids, token_type_ids, attention_mask, self.pooling)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """``input_ids``, ``token_type_ids``, ``attention_mask``: ``(B, T)`` each -> logits ``(B, K)``."""
        return self.classifier(self.dropout(self.features(input_ids, token_type_ids, attention_mask)))


# ----- configuration and schedule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything :func:`finetune` needs to know besides the model and the data.

    Attributes:
        epochs: passes over the training set. batch_size: sentences per optimiser step.
        lr: peak learning rate of AdamW. warmup_ratio: share of the steps spent warming up, in [0, 1)
            (:func:`lmbook.schedules.linear_warmup_decay`, then a linear decay to 0).
        weight_decay: AdamW's decoupled weight decay, applied to weight matrices only (not to biases, layer-norm
            parameters or embeddings: the rule of :func:`lmbook.loop.param_groups`).
        max_grad_norm: clip the gradient to this total norm before each step; None turns clipping off.
        max_length: truncate every input to this many tokens (special tokens included).
        amp: mixed precision: ``"auto"`` (bfloat16 where the GPU supports it, else float16 with a gradient
            scaler; none on the CPU, see :func:`lmbook.device.autocast_dtype`), ``"bf16"``, ``"fp16"`` or ``"off"``.
        seed: seeds the mini-batch order and the dropout masks: the same seed gives the same run.
        eval_batch_size: sentences per forward pass when evaluating.
        threads: CPU threads for the run (restored afterwards); None leaves torch's setting alone.
    """

    epochs: int = 2
    batch_size: int = 16
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    max_length: int = 64
    amp: str = "auto"
    seed: int = 0
    eval_batch_size: int = 64
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be at least 1")
        if self.max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {self.max_length}")
        check_training_config(self)

    @classmethod
    def cpu(cls, **overrides) -> FinetuneConfig:
        """The CPU size: all-MiniLM-L6-v2 on the book's 300 training sentences in about half a minute on 2 cores.

        Three epochs of 19 steps. The sentences are short, so ``max_length=48`` cuts none of them. MiniLM is small
        and the data set tiny, so a larger peak learning rate than BERT-base's (2e-4, with mean pooling) learns
        within the few steps there are. One thread: on a machine whose other cores are busy, two threads that wait
        for each other at every operation made the same run ten times slower; on an idle 2-core machine, one
        thread costs little.
        """
        return replace(cls(epochs=3, batch_size=16, lr=2e-4, max_length=48, warmup_ratio=0.1, threads=1), **overrides)

    @classmethod
    def gpu(cls, **overrides) -> FinetuneConfig:
        """The GPU size: the BERT paper's recipe for bert-base-uncased on SST-2 (3 epochs, batch 32, lr 2e-5).

        Meant for the online upgrade (:func:`lmbook.bert.load_pretrained` ``("bert-base-uncased")`` and
        :func:`lmbook.sentiment.load_sst2`). After a fall-back to MiniLM and the book's 300 sentences, use
        :meth:`cpu` (on a GPU too): 30 steps at 2e-5 are too few to learn anything.
        """
        return replace(cls(epochs=3, batch_size=32, lr=2e-5, max_length=128, eval_batch_size=256), **overrides)


# ----- tokenising and batching --------------------------------------------------------------------------------


def _encode(tokenizer, texts, max_length: int) -> dict[str, torch.Tensor]:
    """All ``texts`` as ``(N, T)`` int64 tensors, padded on the right to the longest: lmbook's or a HF tokenizer."""
    texts = list(texts)
    if not texts:
        raise ValueError("expected at least one text")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings")
    if hasattr(tokenizer, "batch_encode"):
        enc = tokenizer.batch_encode(texts, max_length=max_length)
    else:  # a Hugging Face tokenizer
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    out["token_type_ids"] = enc["token_type_ids"] if "token_type_ids" in enc else torch.zeros_like(out["input_ids"])
    return {k: torch.as_tensor(v, dtype=torch.int64) for k, v in out.items()}


def _take(enc: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of the encoded set, cut to the longest of them: padding beyond it would only cost time."""
    T = max(int(enc["attention_mask"][idx].sum(dim=1).max()), 1)
    return {k: v[idx, :T].to(device) for k, v in enc.items()}


def _labels(labels, n: int, num_labels: int | None, name: str) -> torch.Tensor:
    y = np.asarray(labels)
    check_shape(y, (n,), name)
    if y.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if (y < 0).any() or (num_labels is not None and (y >= num_labels).any()):
        raise ValueError(f"{name} must lie in 0 .. {num_labels - 1 if num_labels else 'K-1'}, got {np.unique(y)}")
    return torch.as_tensor(y)


def _progress_bar(total: int, enabled: bool):
    """A progress bar: tqdm's when it is installed (a widget in Jupyter, text elsewhere), else a line every
    tenth of the run.

    In Jupyter the widget bar is one output that changes in place; a text bar there would leave one output per
    refresh in the saved notebook, and the book's HTML would show them all.
    """
    if not enabled:
        return None
    try:
        from tqdm import notebook
        from tqdm.auto import tqdm
    except ImportError:
        return _SimpleBar(total)
    if issubclass(tqdm, notebook.tqdm):  # tqdm.auto chose the widget bar
        return tqdm(total=total, unit="step", mininterval=2.0)
    return tqdm(total=total, unit="step", file=sys.stdout, mininterval=2.0, ncols=100)


class _SimpleBar:
    def __init__(self, total: int) -> None:
        self.total, self.n, self.every, self.text = total, 0, max(1, total // 10), ""

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.text = text

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.n % self.every == 0 or self.n == self.total:
            print(f"step {self.n:>5}/{self.total} [{'#' * (20 * self.n // self.total):<20}] {self.text}")

    def write(self, text: str) -> None:
        print(text)

    def close(self) -> None:
        pass


# ----- training -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FinetuneLog:
    """What happened during :func:`finetune`.

    Attributes:
        loss: training loss of every step (the mini-batch's mean cross-entropy), shape ``(steps,)``.
        lr: learning rate each step used, shape ``(steps,)``.
        grad_norm: total gradient norm of each step *before* clipping, shape ``(steps,)``.
        epoch_loss: mean training loss of each epoch, shape ``(epochs,)``.
        val_accuracy, val_f1: measured after each epoch, shape ``(epochs,)``; empty without validation data.
        seconds: wall-clock time of the whole run, evaluation included.
        samples_per_second: training sentences processed per second of training (evaluation excluded).
        device: where it ran, e.g. ``"cpu"`` or ``"cuda"``. amp: the mixed-precision dtype, or ``"off"``.
    """

    loss: np.ndarray
    lr: np.ndarray
    grad_norm: np.ndarray
    epoch_loss: np.ndarray
    val_accuracy: np.ndarray
    val_f1: np.ndarray
    seconds: float
    samples_per_second: float
    device: str
    amp: str

    @property
    def steps(self) -> int:
        return len(self.loss)

    def __repr__(self) -> str:
        text = (
            f"FinetuneLog(steps={self.steps}, epochs={len(self.epoch_loss)}, device={self.device!r}, amp={self.amp!r}, "
            f"seconds={self.seconds:.1f}, samples_per_second={self.samples_per_second:.1f}, "
            f"epoch_loss={np.round(self.epoch_loss, 4).tolist()}"
        )
        if len(self.val_accuracy):
            text += f", val_accuracy={np.round(self.val_accuracy, 3).tolist()}"
        return text + ")"


def finetune(
    model: nn.Module,
    tokenizer,
    train: tuple,
    val: tuple | None = None,
    config: FinetuneConfig | None = None,
    device=None,
    progress: bool = True,
    loss_fn=None,
) -> FinetuneLog:
    """Fine-tune a classifier in place: AdamW, linear warm-up and decay, gradient clipping, mixed precision on a GPU.

    Each epoch shuffles the training set and takes one step per mini-batch: tokenised once at the start, each
    batch is cut to its longest sentence. A step computes the mean cross-entropy (under ``torch.autocast`` when
    mixed precision is on; with float16 a ``GradScaler`` keeps small gradients from underflowing), back-propagates,
    clips the total gradient norm to ``config.max_grad_norm`` and steps the optimiser and the schedule
    (:func:`lmbook.schedules.linear_warmup_decay`, ``round(warmup_ratio * steps)`` warm-up steps); these pieces are
    :mod:`lmbook.loop`'s. After each epoch the model is evaluated on ``val``.

    Args:
        model: maps ``input_ids``, ``token_type_ids``, ``attention_mask`` (``(B, T)`` each) to ``(B, K)`` logits,
            e.g. a :class:`BertClassifier`. Moved to ``device``; left there, in evaluation mode.
        tokenizer: a :class:`lmbook.wordpiece.WordPieceTokenizer` (or a Hugging Face tokenizer).
        train: ``(texts, labels)``: ``N`` strings and integer labels of shape ``(N,)``.
        val: optional ``(texts, labels)`` to evaluate after each epoch.
        config: a :class:`FinetuneConfig`; by default :meth:`FinetuneConfig.cpu`.
        device: a ``torch.device`` or name; None: where the model is (:func:`lmbook.device.training_device`).
            To use a GPU, pass ``device=lmbook.device()``.
        progress: show a progress bar and print one line per epoch.
        loss_fn: the training loss, called as ``loss_fn(logits, labels, idx)`` with the batch's ``(B, K)``
            float32 logits, its ``(B,)`` labels and the ``(B,)`` positions of its sentences in ``train`` (so a
            loss can look up per-sentence data, such as a teacher's logits for distillation,
            :mod:`lmbook.distill`); it returns a scalar. None: the mean cross-entropy with the labels.

    Returns:
        A :class:`FinetuneLog`.
    """
    config = FinetuneConfig.cpu() if config is None else config
    dev = training_device(model, device)
    texts, labels = train
    enc = _encode(tokenizer, texts, config.max_length)
    n = enc["input_ids"].shape[0]
    num_labels = getattr(model, "num_labels", None)
    y = _labels(labels, n, num_labels, "train labels")
    model.to(dev)
    amp_dtype = autocast_dtype(dev, config.amp)
    scaler = make_scaler(amp_dtype, dev)

    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    opt = make_optimizer(model, "adamw", config.lr, config.weight_decay)
    schedule = make_scheduler(opt, total, config.warmup_ratio, decay="linear")
    order_rng = torch.Generator().manual_seed(config.seed)  # batch order, on the CPU whatever the device
    losses, lrs, norms, epoch_loss, val_acc, val_f1 = [], [], [], [], [], []
    train_seconds = 0.0
    amp_name = str(amp_dtype).replace("torch.", "") if amp_dtype else "off"
    if progress:
        print(f"Fine-tuning on {dev.type} (mixed precision: {amp_name}): {n} sentences, {total} steps")
    bar = _progress_bar(total, progress)
    start_run = time.perf_counter()
    # Dropout draws from torch's global generator: a private, seeded copy makes the run reproducible.
    with cpu_threads(config.threads), private_seed(config.seed, devices=[dev]):
        for epoch in range(config.epochs):
            model.train()
            start = time.perf_counter()
            order = torch.randperm(n, generator=order_rng)
            for first in range(0, n, config.batch_size):
                idx = order[first : first + config.batch_size]
                batch, target = _take(enc, idx, dev), y[idx].to(dev)
                with autocast(dev, amp_dtype):
                    logits = model(**batch)  # (B, K)
                if loss_fn is None:
                    loss = F.cross_entropy(logits.float(), target)
                else:
                    loss = loss_fn(logits.float(), target, idx.to(dev))
                lrs.append(current_lr(opt))
                max_norm = math.inf if config.max_grad_norm is None else config.max_grad_norm  # inf: measure only
                norms.append(optimizer_step(loss, model, opt, schedule, scaler, max_norm))  # the norm before clipping
                losses.append(loss.item())
                if bar is not None:
                    bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs}, loss {losses[-1]:.4f}", refresh=False)
                    bar.update(1)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_seconds += time.perf_counter() - start
            epoch_loss.append(float(np.mean(losses[-steps_per_epoch:])))
            line = f"epoch {epoch + 1}: train loss {epoch_loss[-1]:.4f}"
            if val is not None:
                result = evaluate(
                    model, tokenizer, *val, batch_size=config.eval_batch_size, max_length=config.max_length
                )
                val_acc.append(result["accuracy"])
                val_f1.append(result["f1"])
                line += f", val accuracy {val_acc[-1]:.3f}, val F1 {val_f1[-1]:.3f}"
            if bar is not None:
                bar.write(line + f", {n * (epoch + 1) / train_seconds:.0f} samples/s")
    if bar is not None:
        bar.close()
    model.eval()
    return FinetuneLog(
        loss=np.array(losses),
        lr=np.array(lrs),
        grad_norm=np.array(norms),
        epoch_loss=np.array(epoch_loss),
        val_accuracy=np.array(val_acc),
        val_f1=np.array(val_f1),
        seconds=time.perf_counter() - start_run,
        samples_per_second=n * config.epochs / train_seconds,
        device=dev.type,
        amp=amp_name,
    )


# ----- using the model ----------------------------------------------------------------------------------------


def _batched_outputs(fn, tokenizer, texts, batch_size: int, max_length: int, dev: torch.device) -> torch.Tensor:
    """``fn(batch)`` over all texts in batches of similar length (less padding), in the original order."""
    enc = _encode(tokenizer, texts, max_length)
    lengths = enc["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    outputs = []
    with torch.no_grad():
        for first in range(0, len(order), batch_size):
            outputs.append(fn(_take(enc, order[first : first + batch_size], dev)).float().cpu())
    result = torch.empty_like(torch.cat(outputs))
    result[order] = torch.cat(outputs)  # undo the sort
    return result


def predict_proba(
    model: nn.Module, tokenizer, texts, batch_size: int = 64, max_length: int = 128, device=None
) -> np.ndarray:
    """Class probabilities, shape ``(N, K)`` (softmax of the logits), in evaluation mode without gradients.

    Args:
        model, tokenizer: as for :func:`finetune`; the model is put in evaluation mode and left there.
        texts: ``N`` strings. batch_size: sentences per forward pass. max_length: truncation length.
        device: where to run; None: where the model's parameters are.
    """
    dev = training_device(model) if device is None else torch.device(device)
    model.to(dev).eval()
    logits = _batched_outputs(lambda batch: model(**batch), tokenizer, texts, batch_size, max_length, dev)
    return torch.softmax(logits.double(), dim=1).numpy()


def evaluate(
    model: nn.Module, tokenizer, texts, labels, batch_size: int = 64, max_length: int = 128, device=None
) -> dict:
    """Accuracy, F1 and the confusion matrix of a classifier on labelled texts (from :mod:`lmbook.metrics`).

    Args:
        model, tokenizer, texts, batch_size, max_length, device: as for :func:`predict_proba`.
        labels: true labels, shape ``(N,)``.

    Returns:
        ``{"accuracy", "f1", "confusion", "loss", "predictions", "probabilities"}``: ``f1`` is the F1 of class 1
        (positive) for two classes and the macro F1 for more; ``confusion`` is ``(K, K)`` with rows the true
        class; ``loss`` the mean cross-entropy; ``predictions`` ``(N,)`` and ``probabilities`` ``(N, K)``.
    """
    proba = predict_proba(model, tokenizer, texts, batch_size, max_length, device)
    K = proba.shape[1]
    y = _labels(labels, len(proba), K, "labels").numpy()
    pred = proba.argmax(axis=1)
    score = f1(y, pred) if K == 2 else precision_recall_f1(y, pred, average="macro")[2]
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))
    return {
        "accuracy": accuracy_score(y, pred),
        "f1": score,
        "confusion": confusion_matrix(y, pred, num_classes=K),
        "loss": loss,
        "predictions": pred,
        "probabilities": proba,
    }


def embed(
    bert: nn.Module, tokenizer, texts, pooling: str = "mean", batch_size: int = 64, max_length: int = 128, device=None
) -> np.ndarray:
    """Sentence vectors from a frozen encoder: ``N`` texts -> ``(N, C)`` float32, no gradients.

    The cheap alternative to fine-tuning: the encoder is only read, and a linear classifier (e.g. scikit-learn's
    ``LogisticRegression``) is trained on these vectors.

    Args:
        bert: an encoder as :class:`BertClassifier` takes, or a :class:`BertClassifier` (its encoder is used).
            Put in evaluation mode.
        pooling: ``"mean"`` (default, right for all-MiniLM-L6-v2), ``"cls"`` or ``"pooler"``.
        tokenizer, texts, batch_size, max_length, device: as for :func:`predict_proba`.
    """
    encoder = bert.bert if isinstance(bert, BertClassifier) else bert
    dev = training_device(encoder) if device is None else torch.device(device)
    encoder.to(dev).eval()
    vectors = _batched_outputs(
        lambda batch: sentence_vectors(encoder, **batch, pooling=pooling), tokenizer, texts, batch_size, max_length, dev
    )
    return vectors.numpy().astype(np.float32)


def embed_layers(
    bert: nn.Module, tokenizer, texts, batch_size: int = 64, max_length: int = 128, device=None
) -> np.ndarray:
    """Mean-pooled sentence vectors after *every* layer, from one pass: ``N`` texts -> ``(L + 1, N, C)`` float32.

    Entry 0 is the embeddings' output (no attention yet), entry ``l`` the output of block ``l``; the last entry
    equals :func:`embed` with ``pooling="mean"``. A linear classifier trained on each entry (a **probe**) shows
    at which depth the encoder has made a property easy to read off.

    Args:
        bert: an encoder with ``hidden_states(input_ids, token_type_ids, attention_mask)`` returning ``L + 1``
            tensors ``(B, T, C)`` (:class:`lmbook.bert.BertModel`), or a :class:`BertClassifier` holding one.
        tokenizer, texts, batch_size, max_length, device: as for :func:`embed`.
    """
    encoder = bert.bert if isinstance(bert, BertClassifier) else bert
    if not hasattr(encoder, "hidden_states"):
        raise TypeError(f"{type(encoder).__name__} has no hidden_states method; use lmbook.bert.BertModel")
    dev = training_device(encoder) if device is None else torch.device(device)
    encoder.to(dev).eval()

    def pooled_layers(batch) -> torch.Tensor:  # (B, L + 1, C)
        layers = encoder.hidden_states(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return torch.stack([mean_pool(h, batch["attention_mask"]) for h in layers], dim=1)

    vectors = _batched_outputs(pooled_layers, tokenizer, texts, batch_size, max_length, dev)
    return vectors.transpose(0, 1).numpy().astype(np.float32)


# ----- the book's fine-tuned sentiment classifier, trained once ---------------------------------------------------


def sentiment_classifier(
    config: FinetuneConfig | None = None, pooling: str = "mean", seed: int = 0, use_cache: bool = True, folder=None
) -> tuple[BertClassifier, object, dict]:
    """Chapter 8's fine-tuned classifier: all-MiniLM-L6-v2 with a mean-pooling head, trained on the book's 300
    training sentences (:func:`lmbook.sentiment.load_sentiment`), in evaluation mode on the CPU.

    The first call fine-tunes it (about twenty seconds on two cores with :meth:`FinetuneConfig.cpu`) and stores the
    weights with :func:`lmbook.cache.cached`; later calls with the same arguments, from any process, load them.
    The key holds the configuration, ``pooling``, ``seed``, torch's version and the source of the code that
    trains (this module, :mod:`lmbook.bert`, the data file), so a changed recipe trains again. One CPU thread
    makes the run reproducible, so a loaded model equals a freshly trained one.

    Args:
        config: the recipe; None: :meth:`FinetuneConfig.cpu` (chapter 8's).
        pooling, seed: as for :class:`BertClassifier`. use_cache: False always trains (nothing is stored).
        folder: the cache folder; None: :func:`lmbook.cache.cache_dir`.

    Returns:
        ``(model, tokenizer, info)``: ``info`` holds ``"val_accuracy"`` (after the last epoch), ``"seconds"``
        (of the fine-tuning run, whenever it happened) and ``"cached"`` (True when loaded).
    """
    from lmbook.bert import load_pretrained
    from lmbook.cache import source_digest, trained_once
    from lmbook.sentiment import load_sentiment

    config = FinetuneConfig.cpu() if config is None else config
    bert, tokenizer, _ = load_pretrained("minilm")
    model = BertClassifier(bert, num_labels=2, pooling=pooling, dropout=0.1, seed=seed)

    def train() -> dict:
        log = finetune(
            model, tokenizer, load_sentiment("train"), load_sentiment("val"), config, device="cpu", progress=False
        )
        return {"val_accuracy": float(log.val_accuracy[-1]), "seconds": float(log.seconds)}

    parts = {
        "config": repr(config),
        "pooling": pooling,
        "seed": seed,
        "source": source_digest("finetune", "bert", "wordpiece", "loop", "datasets/sentiment.tsv"),
    }
    report, hit = trained_once("sentiment-classifier", parts, model, train, folder, use_cache=use_cache)
    return model, tokenizer, {**report, "cached": hit}
