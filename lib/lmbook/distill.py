"""Knowledge distillation: a small student trained to copy a large teacher's soft predictions.

Introduced in chapter 10, Small and fast models. A trained classifier's probabilities say more than its labels:
that a sentence is 70% positive, not 99%, is information a one-hot label throws away. Distillation trains a
smaller **student** on the **teacher**'s probabilities, softened by a **temperature** ``T``
(``softmax(z / T)``: ``T > 1`` flattens the distribution so the small probabilities count), mixed with the usual
cross-entropy on the labels:

``loss = alpha T^2 KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) CE(s, y)``

with ``s`` the student's logits, ``t`` the teacher's, ``y`` the labels. The gradient of the soft term with
respect to ``s`` is ``T (softmax(s / T) - softmax(t / T)) / B`` for a batch of ``B``: without the ``T^2``
factor it would shrink like ``1 / T`` (and like ``1 / T^2`` once the logits are close), so changing ``T`` would
silently change the weight of the two terms.

- :func:`distillation_loss` and :func:`soft_loss_gradient` (the closed form of the soft term's gradient).
- :func:`student_from`: a :class:`lmbook.finetune.BertClassifier` whose encoder is the teacher's embeddings and
  first ``n_layers`` blocks (DistilBERT, too, starts its student from the teacher's layers).
- :func:`teacher_logits` and :func:`distill`: :func:`lmbook.finetune.finetune` with the distillation loss through
  its ``loss_fn`` hook; the teacher's logits are computed once, in evaluation mode, and looked up per batch.
- :func:`train_student`: MiniLM cut to a few blocks, trained on the labels alone or distilled from chapter 8's
  classifier, with the same recipe, trained once and cached; :func:`distilled_student` is the chapter's small
  model (3 of MiniLM's 6 blocks, distilled).

Sources: Hinton, Vinyals and Dean 2015, *Distilling the Knowledge in a Neural Network*, arXiv:1503.02531 (the
soft-target loss and its ``T^2`` factor); Sanh, Debut, Chaumond and Wolf 2019, *DistilBERT, a distilled version of
BERT: smaller, faster, cheaper and lighter*, arXiv:1910.01108 (a student initialised from the teacher's layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.bert import BertModel
from lmbook.finetune import BertClassifier, FinetuneConfig, FinetuneLog, _batched_outputs, finetune
from lmbook.testing import check_choice, check_shape

METHODS = ("labels", "distilled")
"""How :func:`distillation_experiment` trains a student: on the labels alone, or with :func:`distillation_loss`."""


# ----- the loss -----------------------------------------------------------------------------------------------


def _check_temperature_alpha(temperature: float, alpha: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (the weight of the soft term), got {alpha}")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """Hinton et al.'s loss: ``alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(s, y)``, batch means.

    Args:
        student_logits: ``s``, shape ``(B, K)``. teacher_logits: ``t``, shape ``(B, K)``; treated as constants
            (detached): the teacher is not trained. labels: ``y``, integer classes of shape ``(B,)``.
        temperature: ``T > 0``; both distributions of the soft term are softened by it, the hard term is not.
        alpha: weight of the soft term in ``[0, 1]``; 0 is plain cross-entropy, 1 ignores the labels.

    Returns:
        A scalar tensor. The ``T^2`` keeps the soft term's gradient about as large at every temperature.
    """
    _check_temperature_alpha(temperature, alpha)
    B, K = check_shape(student_logits, ("B", "K"), "student_logits").shape
    check_shape(teacher_logits, (B, K), "teacher_logits")
    check_shape(labels, (B,), "labels")
    T = temperature
    log_p_s = F.log_softmax(student_logits / T, dim=1)  # (B, K)
    log_p_t = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / T, dim=1)  # (B, K)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()  # KL(p_t || p_s) per sentence, then the mean
    hard = F.cross_entropy(student_logits, labels)
    return alpha * T**2 * soft + (1.0 - alpha) * hard


def soft_loss_gradient(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0, scale_t2: bool = True
) -> torch.Tensor:
    """The gradient of the soft term with respect to the student's logits, in closed form: ``(B, K)``.

    For ``T^2 KL(softmax(t/T) || softmax(s/T))`` averaged over a batch of ``B`` it is
    ``T (softmax(s/T) - softmax(t/T)) / B``; without the ``T^2`` factor (``scale_t2=False``) it is that divided
    by ``T^2``, i.e. ``(softmax(s/T) - softmax(t/T)) / (T B)``.
    """
    _check_temperature_alpha(temperature, 0.0)
    B, K = check_shape(student_logits, ("B", "K"), "student_logits").shape
    check_shape(teacher_logits, (B, K), "teacher_logits")
    T = temperature
    diff = torch.softmax(student_logits / T, dim=1) - torch.softmax(teacher_logits / T, dim=1)  # (B, K)
    return diff * (T if scale_t2 else 1.0 / T) / B


# ----- the student --------------------------------------------------------------------------------------------


def _encoder_of(teacher: nn.Module) -> BertModel:
    encoder = teacher.bert if isinstance(teacher, BertClassifier) else teacher
    if not isinstance(encoder, BertModel):
        raise TypeError(f"teacher must be a BertClassifier or an lmbook.bert.BertModel, got {type(teacher).__name__}")
    return encoder


def student_from(
    teacher: nn.Module,
    n_layers: int,
    layers: Sequence[int] | None = None,
    num_labels: int | None = None,
    pooling: str | None = None,
    seed: int = 0,
) -> BertClassifier:
    """A smaller :class:`~lmbook.finetune.BertClassifier`: the teacher's encoder cut to ``n_layers`` blocks.

    The embeddings, the pooler and the chosen blocks are copied (not shared) from the teacher's encoder; the
    classification head is new (seeded with ``seed``), as for fine-tuning. The width, the heads and the
    vocabulary stay the teacher's, so the student's embeddings (``V C`` parameters, half of MiniLM's) are as
    large as the teacher's: cutting layers saves compute per token more than bytes.

    Args:
        teacher: a :class:`BertClassifier` with an :class:`lmbook.bert.BertModel` encoder, or such an encoder
            (e.g. the pre-trained MiniLM of :func:`lmbook.bert.load_pretrained`).
        n_layers: blocks the student keeps, from 1 to the teacher's ``L``.
        layers: which of the teacher's blocks, in order (``n_layers`` distinct indices); None: the first
            ``n_layers`` (DistilBERT takes every other one instead).
        num_labels, pooling: of the head; None: the teacher's (a bare encoder: 2 classes, mean pooling).
        seed: seeds the new head's weights.
    """
    encoder = _encoder_of(teacher)
    L = encoder.config.n_layers
    if not 1 <= n_layers <= L:
        raise ValueError(f"n_layers must be between 1 and the teacher's {L} layers, got {n_layers}")
    layers = list(range(n_layers)) if layers is None else [int(i) for i in layers]
    if len(layers) != n_layers or len(set(layers)) != n_layers or not all(0 <= i < L for i in layers):
        raise ValueError(f"layers must be {n_layers} distinct indices in 0 .. {L - 1}, got {layers}")
    if num_labels is None:
        num_labels = teacher.num_labels if isinstance(teacher, BertClassifier) else 2
    if pooling is None:
        pooling = teacher.pooling if isinstance(teacher, BertClassifier) else "mean"
    dropout = teacher.dropout.p if isinstance(teacher, BertClassifier) else encoder.config.dropout

    small = BertModel(replace(encoder.config, n_layers=n_layers), seed=seed)
    small.embeddings.load_state_dict(encoder.embeddings.state_dict())
    small.pooler.load_state_dict(encoder.pooler.state_dict())
    for mine, theirs in enumerate(layers):
        small.encoder.blocks[mine].load_state_dict(encoder.encoder.blocks[theirs].state_dict())
    param = next(encoder.parameters())
    small.to(device=param.device, dtype=param.dtype)
    student = BertClassifier(small, num_labels=num_labels, pooling=pooling, dropout=dropout, seed=seed)
    return student.eval()


# ----- training -----------------------------------------------------------------------------------------------


def teacher_logits(teacher: nn.Module, tokenizer, texts, max_length: int = 128, batch_size: int = 64) -> torch.Tensor:
    """The teacher's logits for ``N`` texts, ``(N, K)`` float32 on the CPU: evaluation mode (no dropout), no
    gradients, in the texts' order."""
    dev = next(teacher.parameters()).device
    teacher.eval()
    return _batched_outputs(lambda batch: teacher(**batch), tokenizer, texts, batch_size, max_length, dev)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    tokenizer,
    train: tuple,
    val: tuple | None = None,
    config: FinetuneConfig | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    device=None,
    progress: bool = False,
) -> FinetuneLog:
    """Train ``student`` in place on :func:`distillation_loss` with ``teacher``'s logits: :func:`finetune`'s loop.

    The teacher's logits for the training texts are computed once, before training (:func:`teacher_logits`,
    dropout off), and each batch looks its rows up by the positions ``finetune`` passes to ``loss_fn``. Everything
    else (optimiser, schedule, batch order, clipping) is :func:`lmbook.finetune.finetune`'s, so a student trained
    on the labels alone with the same ``config`` differs only in the loss; ``alpha = 0`` gives exactly that run.

    Args:
        student, tokenizer, train, val, config, device, progress: as for :func:`lmbook.finetune.finetune`.
            Both models must use ``tokenizer``.
        teacher: any model with the student's call signature and ``(B, K)`` logits (not trained, not moved).
        temperature, alpha: as for :func:`distillation_loss`.
    """
    _check_temperature_alpha(temperature, alpha)
    config = FinetuneConfig.cpu() if config is None else config
    logits = teacher_logits(teacher, tokenizer, train[0], config.max_length, config.eval_batch_size)  # (N, K)

    def loss_fn(student_logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        t = logits[idx.cpu()].to(student_logits.device)  # (B, K): this batch's rows
        return distillation_loss(student_logits, t, labels, temperature, alpha)

    return finetune(student, tokenizer, train, val, config, device=device, progress=progress, loss_fn=loss_fn)


def train_student(
    method: str = "distilled",
    n_layers: int = 3,
    temperature: float = 2.0,
    alpha: float = 0.5,
    config: FinetuneConfig | None = None,
    seed: int = 0,
    use_cache: bool = True,
    folder=None,
) -> tuple[BertClassifier, object, dict]:
    """A MiniLM cut to ``n_layers`` blocks, trained on the book's 300 sentences by ``method``; cached.

    The student starts from the pre-trained MiniLM's embeddings and first blocks (the teacher's own starting point,
    before fine-tuning, as DistilBERT starts from its teacher's layers) and learns the task only here:
    ``"labels"`` fine-tunes it on the labels (:func:`lmbook.finetune.finetune`), ``"distilled"`` trains it with
    :func:`distill` from the teacher :func:`lmbook.finetune.sentiment_classifier` (chapter 8's classifier). Both
    use the same ``config`` (epochs, batch order, learning rate), so they differ only in the loss. Trained once
    (seconds) and stored with :func:`lmbook.cache.cached`; later calls, from any process, load it.

    Args:
        method: ``"labels"`` or ``"distilled"`` (:data:`METHODS`). n_layers: the student's blocks (MiniLM has 6).
        temperature, alpha: as for :func:`distillation_loss` (ignored for ``"labels"``).
        config: the recipe; None: :meth:`FinetuneConfig.cpu` with ``seed``, the teacher's own recipe.
        seed: of the new head and of the run (batch order, dropout). use_cache: False always trains.
        folder: the cache folder (None: :func:`lmbook.cache.cache_dir`).

    Returns:
        ``(model, tokenizer, info)``, the model in evaluation mode on the CPU; ``info`` holds ``"val_accuracy"``
        (after the last epoch), ``"seconds"`` (of the training run, whenever it happened), ``"cached"``,
        ``"method"``, ``"n_layers"``, ``"temperature"`` and ``"alpha"`` (None for ``"labels"``) and
        ``"parameters"``.
    """
    from lmbook.bert import load_pretrained
    from lmbook.cache import source_digest, trained_once
    from lmbook.finetune import sentiment_classifier
    from lmbook.sentiment import load_sentiment

    check_choice(method, METHODS, "method")
    _check_temperature_alpha(temperature, alpha)
    if method == "labels":
        temperature = alpha = None
    config = FinetuneConfig.cpu(seed=seed) if config is None else config
    pretrained, tokenizer, _ = load_pretrained("minilm")
    student = student_from(pretrained, n_layers, seed=seed)

    def train() -> dict:
        train_set, val_set = load_sentiment("train"), load_sentiment("val")
        if method == "labels":
            log = finetune(student, tokenizer, train_set, val_set, config, device="cpu", progress=False)
        else:
            teacher, _, _ = sentiment_classifier()
            log = distill(student, teacher, tokenizer, train_set, val_set, config, temperature, alpha, device="cpu")
        return {"val_accuracy": float(log.val_accuracy[-1]), "seconds": float(log.seconds)}

    parts = {
        "method": method,
        "n_layers": n_layers,
        "temperature": temperature,
        "alpha": alpha,
        "config": repr(config),
        "seed": seed,
        "source": source_digest(
            "distill", "finetune", "bert", "wordpiece", "loop", "transformer", "datasets/sentiment.tsv"
        ),
    }
    result, hit = trained_once("student", parts, student, train, folder, use_cache=use_cache)
    info = {
        "val_accuracy": result["val_accuracy"],
        "seconds": result["seconds"],
        "cached": hit,
        "method": method,
        "n_layers": n_layers,
        "temperature": temperature,
        "alpha": alpha,
        "parameters": sum(p.numel() for p in student.parameters()),
    }
    return student, tokenizer, info


def distilled_student(
    n_layers: int = 3, temperature: float = 2.0, alpha: float = 0.5, seed: int = 0, use_cache: bool = True, folder=None
) -> tuple[BertClassifier, object, dict]:
    """The chapter's small model: MiniLM cut to 3 of its 6 blocks, distilled from chapter 8's classifier.

    :func:`train_student` with ``method="distilled"`` (trained once, then loaded from the cache); the arguments
    are its own. Returns ``(model, tokenizer, info)`` like :func:`lmbook.finetune.sentiment_classifier`.
    """
    return train_student("distilled", n_layers, temperature, alpha, None, seed, use_cache, folder)
