"""Masked-language-model pre-training: BERT's 80/10/10 masking, next-sentence pairs, an MLM head, a training loop.

Introduced in chapter 8, BERT: pre-training and fine-tuning. A left-to-right model predicts the next token; a
bidirectional encoder cannot, because it sees every token, the next one included. BERT is trained instead to
fill in blanks, the **masked language model** (MLM) objective:

- choose 15% of the (non-special) tokens of every sequence to predict;
- of those, replace 80% by ``[MASK]``, 10% by a random token, and leave 10% unchanged (so that the model
  cannot assume that only ``[MASK]`` positions matter: ``[MASK]`` never appears when the model is used later);
- compute the cross-entropy at the chosen positions only; every other position has the label ``-100``, which
  ``torch.nn.functional.cross_entropy`` ignores.

The original BERT was also trained on **next-sentence prediction** (NSP): given sentences A and B, is B the
sentence that followed A (50%) or a random one (50%)? :func:`nsp_pairs` builds such pairs. Later work
(RoBERTa) found MLM alone as good, so the book trains MLM only.

:class:`BertForMaskedLM` puts BERT's MLM head (a dense layer, GELU, layer norm, then an output layer that
shares its weight with the token embeddings) on a :class:`lmbook.bert.BertModel`; :func:`pretrain_mlm` trains
it (configured by an :class:`MLMTrainConfig`, with a CPU and a GPU preset) and :func:`fill_mask` lists its
guesses for each ``[MASK]`` of a text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.bert import BertConfig, BertModel, bert_name_map
from lmbook.device import autocast_dtype, training_device
from lmbook.loop import (
    autocast,
    check_training_config,
    cpu_threads,
    current_lr,
    evaluation_mode,
    make_optimizer,
    make_scaler,
    make_scheduler,
    optimizer_step,
)
from lmbook.seeding import private_seed
from lmbook.testing import check_shape
from lmbook.transformer import LayerNorm
from lmbook.wordpiece import WordPieceTokenizer

IGNORE_INDEX = -100  # the label of positions that are not predicted (F.cross_entropy's default ignore_index)


def mask_tokens(
    input_ids: torch.Tensor,
    mask_id,
    vocab_size: int | None = None,
    special_mask: torch.Tensor | None = None,
    p: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose the tokens to predict and corrupt them with the 80/10/10 rule.

    Args:
        input_ids: ``(B, T)`` token ids (left unchanged).
        mask_id: the id of ``[MASK]``, or a :class:`~lmbook.wordpiece.WordPieceTokenizer`, which then also
            supplies ``vocab_size`` and the special tokens.
        vocab_size: random replacements are drawn uniformly from ``0 .. vocab_size - 1``.
        special_mask: ``(B, T)`` boolean, True where a token must never be chosen (``[CLS]``, ``[SEP]``,
            ``[PAD]``, ...). Required when ``mask_id`` is an int; with a tokenizer, every special token.
        p: the probability that a non-special token is chosen. generator: a seeded ``torch.Generator``.

    Returns:
        ``(inputs, labels)``, both ``(B, T)``: ``inputs`` is the corrupted copy; ``labels`` holds the original
        id at the chosen positions and ``-100`` everywhere else.
    """
    B, T = check_shape(input_ids, ("B", "T"), "input_ids").shape
    if isinstance(mask_id, WordPieceTokenizer):
        tokenizer = mask_id
        mask_id = tokenizer.mask_id
        vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
        if special_mask is None:
            special_ids = torch.tensor(sorted(tokenizer.special_ids), device=input_ids.device)
            special_mask = torch.isin(input_ids, special_ids)
    if vocab_size is None or special_mask is None:
        raise ValueError("with an integer mask_id, give vocab_size and special_mask (True on special tokens)")
    check_shape(special_mask, (B, T), "special_mask")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    device = input_ids.device

    def uniform() -> torch.Tensor:  # drawn on the CPU, so that a CPU generator works for any device
        return torch.rand(B, T, generator=generator).to(device)

    chosen = (uniform() < p) & ~special_mask.bool()  # the positions to predict
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    r = uniform()
    to_mask = chosen & (r < 0.8)  # 80%: [MASK]
    to_random = chosen & (r >= 0.8) & (r < 0.9)  # 10%: a random token; the other 10% stay as they are
    random_ids = torch.randint(vocab_size, (B, T), generator=generator).to(device)
    inputs = input_ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def nsp_pairs(sentences: list[str], generator: torch.Generator | None = None) -> list[tuple[str, str, bool]]:
    """Next-sentence-prediction pairs: each sentence with its successor (50%) or with a random other sentence.

    Args:
        sentences: consecutive sentences of a text (at least 3). generator: a seeded ``torch.Generator``.

    Returns:
        ``[(a, b, is_next), ...]``, one pair per sentence but the last; ``is_next`` is True when ``b`` follows
        ``a`` in the text. A random ``b`` is never ``a`` itself nor its true successor.
    """
    n = len(sentences)
    if n < 3:
        raise ValueError(f"need at least 3 sentences to draw random partners, got {n}")
    pairs = []
    for i in range(n - 1):
        if torch.rand((), generator=generator).item() < 0.5:
            pairs.append((sentences[i], sentences[i + 1], True))
        else:
            j = int(torch.randint(n - 2, (), generator=generator))  # one of the n - 2 other sentences
            j = j if j < i else j + 2  # skip i and i + 1
            pairs.append((sentences[i], sentences[j], False))
    return pairs


class MLMHead(nn.Module):
    """BERT's masked-LM head: ``Linear(C, C) -> GELU -> LayerNorm -> Linear(C, V)`` with the output weight tied.

    Attributes:
        transform: ``nn.Linear(C, C)``. ln: :class:`~lmbook.transformer.LayerNorm`. decoder: ``nn.Linear(C, V)``
            whose weight *is* the token embedding matrix (one ``(V, C)`` matrix used twice) and whose bias is
            its own.
    """

    def __init__(self, config: BertConfig, token_embedding: nn.Embedding) -> None:
        super().__init__()
        C, V = config.d_model, config.vocab_size
        self.transform = nn.Linear(C, C)
        self.act = nn.GELU()
        self.ln = LayerNorm(C, config.eps)
        self.decoder = nn.Linear(C, V)
        self.decoder.weight = token_embedding.weight  # tied
        with torch.no_grad():
            nn.init.normal_(self.transform.weight, std=0.02)
            nn.init.zeros_(self.transform.bias)
            nn.init.zeros_(self.decoder.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` of shape ``(..., C)`` -> logits ``(..., V)``."""
        return self.decoder(self.ln(self.act(self.transform(h))))


class BertForMaskedLM(nn.Module):
    """A :class:`~lmbook.bert.BertModel` with the MLM head: ``(B, T)`` ids -> ``(B, T, V)`` logits.

    Args:
        bert: an existing :class:`~lmbook.bert.BertModel` (used, not copied), or a :class:`~lmbook.bert.BertConfig`
            to build a new one. seed: seeds a new model's and the head's initial weights.

    Attributes:
        bert: the encoder. head: :class:`MLMHead`.
    """

    hf_prefix = "bert."
    # Hugging Face's BertForMaskedLM has no pooler (BertForPreTraining checkpoints do): it may be missing.
    hf_optional = ("bert.pooler.weight", "bert.pooler.bias")

    def __init__(self, bert: BertModel | BertConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.bert = bert if isinstance(bert, BertModel) else BertModel(bert, seed=seed)
        self.config = self.bert.config
        with private_seed(None if seed is None else seed + 1):
            self.head = MLMHead(self.config, self.bert.embeddings.token)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` for every position (see :meth:`loss` for the cheaper training path)."""
        hidden, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return self.head(hidden)

    def loss(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy over the positions whose label is not ``-100``.

        Only those positions (about 15%) go through the head: computing ``V`` logits for every position and
        then ignoring 85% of them would be the most expensive part of the step.
        """
        check_shape(labels, tuple(input_ids.shape), "labels")
        hidden, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (B, T, C)
        chosen = labels != IGNORE_INDEX  # (B, T)
        if not bool(chosen.any()):
            return hidden.sum() * 0.0  # nothing to predict in this batch: a zero loss that keeps the graph
        logits = self.head(hidden[chosen])  # (N, C) -> (N, V), N = number of predicted positions
        return F.cross_entropy(logits, labels[chosen])

    def hf_name_map(self) -> dict[str, str]:
        """``{our name: Hugging Face name}`` for :func:`lmbook.bert.load_hf_weights` (checkpoints of
        ``BertForMaskedLM`` or ``BertForPreTraining``). As in the encoder, no weight needs a transpose."""
        m = bert_name_map(self.config.n_layers, prefix="bert.", hf_prefix="bert.")
        head = "cls.predictions."
        m.update({
            "head.transform.weight": head + "transform.dense.weight",  # (C, C), (out, in) in both
            "head.transform.bias": head + "transform.dense.bias",
            "head.ln.weight": head + "transform.LayerNorm.weight",
            "head.ln.bias": head + "transform.LayerNorm.bias",
            "head.decoder.bias": head + "bias",  # (V,); the decoder's weight is the tied word embedding matrix
        })  # fmt: skip
        return m


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class MLMLog:
    """What :func:`pretrain_mlm` measured.

    Attributes:
        losses: the training loss of every step. lr: the learning rate of every step. seconds: wall-clock time.
        tokens: real (non-padding) tokens processed. eval_before, eval_after: :func:`mlm_loss` on the held-out
            texts before and after training (None without them).
    """

    losses: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    eval_before: float | None = None
    eval_after: float | None = None

    def __repr__(self) -> str:
        parts = [f"steps={len(self.losses)}"]
        if self.losses:
            k = max(1, len(self.losses) // 10)
            first, last = sum(self.losses[:k]) / k, sum(self.losses[-k:]) / k
            parts.append(f"train loss {first:.3f} -> {last:.3f}")
        if self.eval_before is not None and self.eval_after is not None:
            parts.append(f"held-out loss {self.eval_before:.3f} -> {self.eval_after:.3f}")
        parts.append(f"{self.seconds:.1f} s")
        return f"MLMLog({', '.join(parts)})"


def _batch_to(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def mlm_loss(
    model: BertForMaskedLM,
    tokenizer: WordPieceTokenizer,
    texts: list[str],
    max_length: int = 64,
    p: float = 0.15,
    seed: int = 0,
    batch_size: int = 32,
) -> float:
    """The MLM loss on ``texts`` with a fixed, seeded masking (the same positions every call): comparable over time.

    Evaluation mode meanwhile; the mean is over all predicted positions.
    """
    generator = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    total, count = 0.0, 0
    with evaluation_mode(model):
        for start in range(0, len(texts), batch_size):
            batch = tokenizer.batch_encode(texts[start : start + batch_size], max_length=max_length)
            inputs, labels = mask_tokens(batch["input_ids"], tokenizer, p=p, generator=generator)
            n = int((labels != IGNORE_INDEX).sum())
            if n == 0:
                continue
            batch = _batch_to({**batch, "input_ids": inputs}, device)
            loss = model.loss(batch["input_ids"], labels.to(device), batch["token_type_ids"], batch["attention_mask"])
            total += loss.item() * n
            count += n
    if count == 0:
        raise ValueError("no position was chosen for prediction: give more or longer texts")
    return total / count


@dataclass(frozen=True)
class MLMTrainConfig:
    """Everything :func:`pretrain_mlm` needs to know besides the model, the texts and the tokenizer.

    Attributes:
        steps: optimiser steps. batch_size: texts per step. lr: peak learning rate of AdamW.
        max_length: truncate texts to this many tokens (special tokens included). p: masking probability.
        warmup_ratio: share of the steps spent warming up (:func:`lmbook.schedules.linear_warmup_decay`); then a
            cosine decay down to ``min_lr_factor * lr``.
        weight_decay: AdamW's decoupled weight decay, by the rule of :func:`lmbook.loop.param_groups`.
        max_grad_norm: clip the gradient to this total norm; None turns clipping off.
        amp: mixed precision, as :func:`lmbook.device.autocast_dtype` (``"auto"``: bfloat16 or float16 on a GPU,
            none on the CPU). seed: seeds the batches, the masks and dropout.
        threads: CPU threads for the run (None: unchanged).
    """

    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    max_length: int = 64
    p: float = 0.15
    warmup_ratio: float = 0.1
    min_lr_factor: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    amp: str = "auto"
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be at least 1, got {self.steps} and {self.batch_size}")
        if self.max_length < 3:
            raise ValueError(f"max_length must leave room for [CLS], a token and [SEP], got {self.max_length}")
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"p must be in (0, 1), got {self.p}")
        check_training_config(self)

    @classmethod
    def cpu(cls, **overrides) -> MLMTrainConfig:
        """The CPU size: 300 steps of 16 sentences at a peak rate of 3e-3 for ``BertConfig.tiny`` (about 2M
        parameters), under half a minute on one thread."""
        return replace(cls(steps=300, batch_size=16, lr=3e-3, threads=1), **overrides)

    @classmethod
    def gpu(cls, **overrides) -> MLMTrainConfig:
        """The GPU size: 4000 steps of 64 sentences at 1e-3, for a model of about 11M parameters."""
        return replace(cls(steps=4000, batch_size=64, lr=1e-3), **overrides)


def pretrain_mlm(
    model: BertForMaskedLM,
    texts: list[str],
    tokenizer: WordPieceTokenizer,
    config: MLMTrainConfig | None = None,
    *,
    eval_texts: list[str] | None = None,
    device=None,
    verbose: bool = False,
) -> MLMLog:
    """Pre-train ``model`` in place with the masked-language-model objective on random batches of ``texts``.

    Each step draws ``batch_size`` texts, pads them, masks them afresh with :func:`mask_tokens` (dynamic
    masking: a text gets new masks each time it is drawn), and takes one AdamW step with the pieces of
    :mod:`lmbook.loop`: gradient clipping, a linear warm-up and a cosine decay, mixed precision on a GPU.

    Args:
        model: a :class:`BertForMaskedLM`, trained in place (moved to ``device``).
        texts: the training texts (sentences or short paragraphs). tokenizer: the model's tokenizer.
        config: an :class:`MLMTrainConfig`; :meth:`MLMTrainConfig.cpu` when None.
        eval_texts: held-out texts whose :func:`mlm_loss` is measured before and after.
        device: where to train: :func:`lmbook.device.training_device`'s rule (None: where the model is).
        verbose: print the loss every tenth of the run.

    Returns:
        An :class:`MLMLog`.
    """
    if not texts:
        raise ValueError("no training texts")
    c = MLMTrainConfig.cpu() if config is None else config
    device = training_device(model, device)
    model.to(device)
    log = MLMLog()
    if eval_texts:
        log.eval_before = mlm_loss(model, tokenizer, eval_texts, c.max_length, c.p, c.seed)
    encoded = [tokenizer.encode(t, max_length=c.max_length) for t in texts]  # tokenize once
    amp_dtype = autocast_dtype(device, c.amp)
    scaler = make_scaler(amp_dtype, device)
    optimizer = make_optimizer(model, "adamw", c.lr, c.weight_decay)
    scheduler = make_scheduler(optimizer, c.steps, c.warmup_ratio, "cosine", c.min_lr_factor)
    generator = torch.Generator().manual_seed(c.seed)
    model.train()
    start = time.perf_counter()
    with cpu_threads(c.threads), private_seed(c.seed, devices=[device]):  # dropout
        for step in range(c.steps):
            index = torch.randint(len(encoded), (c.batch_size,), generator=generator).tolist()
            rows = [encoded[i] for i in index]
            T = max(len(e) for e in rows)
            ids = torch.tensor([e.input_ids + [tokenizer.pad_id] * (T - len(e)) for e in rows])  # (B, T)
            attention = torch.tensor([e.attention_mask + [0] * (T - len(e)) for e in rows])  # (B, T)
            inputs, labels = mask_tokens(ids, tokenizer, p=c.p, generator=generator)
            log.lr.append(current_lr(optimizer))
            with autocast(device, amp_dtype):
                loss = model.loss(inputs.to(device), labels.to(device), attention_mask=attention.to(device))
            optimizer_step(loss, model, optimizer, scheduler, scaler, c.max_grad_norm)
            log.losses.append(loss.item())
            log.tokens += int(attention.sum())
            if verbose and ((step + 1) % max(1, c.steps // 10) == 0 or step == c.steps - 1):
                print(f"step {step + 1:5d}  loss {log.losses[-1]:.3f}  lr {log.lr[-1]:.2e}")
    log.seconds = time.perf_counter() - start
    model.eval()
    if eval_texts:
        log.eval_after = mlm_loss(model, tokenizer, eval_texts, c.max_length, c.p, c.seed)
    return log


@torch.no_grad()
def fill_mask(
    model: BertForMaskedLM, tokenizer: WordPieceTokenizer, text: str, top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """The model's ``top_k`` guesses for every ``[MASK]`` in ``text``, with their probabilities.

    Returns:
        One list per ``[MASK]``, in order, of ``(token, probability)`` pairs, most likely first; e.g.
        ``fill_mask(model, tok, "paris is the [MASK] of france")[0][0]`` is the best guess for the only mask.

    Raises:
        ValueError: ``text`` has no ``[MASK]``.
    """
    enc = tokenizer.encode(text, max_length=model.config.max_len)
    ids = torch.tensor([enc.input_ids], device=_device_of(model))  # (1, T)
    positions = (ids[0] == tokenizer.mask_id).nonzero().flatten().tolist()
    if not positions:
        raise ValueError(f"no [MASK] token in {text!r}")
    with evaluation_mode(model):
        logits = model(ids)[0]  # (T, V)
    result = []
    for pos in positions:
        probs = torch.softmax(logits[pos].float(), dim=-1)
        top = torch.topk(probs, top_k)
        result.append([(tokenizer.inv_vocab[int(i)], float(q)) for q, i in zip(top.values, top.indices, strict=True)])
    return result
