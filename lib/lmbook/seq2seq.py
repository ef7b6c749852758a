"""An encoder-decoder (sequence-to-sequence) LSTM, with or without attention, on a synthetic task.

Introduced in chapter 6, section 6 (from RNNs to attention), as the bridge to chapter 7. An **encoder** LSTM reads
the source sequence; a **decoder** LSTM writes the target one token at a time, each step fed the previous target
token (during training the true one: **teacher forcing**). The two variants differ in one thing:

- ``attention=False``: the decoder starts from the encoder's final state ``(h, c)`` and sees nothing else of the
  source. All of it must be squeezed into that one fixed-size vector: the **bottleneck** of the first neural
  translation systems (Sutskever, Vinyals and Le, 2014; Cho et al., 2014).
- ``attention=True``: at every step the decoder's hidden state is a query that is compared with *every* encoder
  output (keys and values), and the weighted average of those outputs (the context) joins the hidden state
  before the prediction: dot-product attention in the form of Luong, Pham and Manning (2015), after Bahdanau, Cho
  and Bengio (2015). The comparison is :func:`lmbook.attention.scaled_dot_product_attention`, the one of
  chapter 7.

Because the decoder's LSTM does not read the context back (no "input feeding"), a teacher-forced forward pass is
one LSTM call over the whole target and one attention call for all its steps; only free-running generation
(:meth:`Seq2Seq.generate`) goes step by step.

The task is made up, so that its difficulty is set by one number, the length ``T``: **reverse** (or **copy**) a
sequence of ``T`` random digits. Every batch holds sequences of one length, so there is no padding. Tokens
``0 .. 9`` are the digits; the decoder's first input is an extra start token, :data:`BOS`.

Shapes: ``B`` batch, ``T`` source and target length, ``d_model`` embedding width, ``d_hidden`` LSTM size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.attention import scaled_dot_product_attention
from lmbook.loop import cpu_threads, evaluation_mode, make_optimizer, make_scheduler, optimizer_step
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape

NUM_DIGITS = 10
BOS = NUM_DIGITS  # the decoder's start token, after the ten digits
TASKS = ("reverse", "copy")


def digit_batch(
    B: int, T: int, task: str = "reverse", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the synthetic task: ``B`` random sequences of ``T`` digits and their targets.

    Args:
        B: sequences. T: digits in each (source and target have the same length).
        task: ``"reverse"`` (the target is the source backwards) or ``"copy"`` (the target is the source).
        generator: the random generator (None: torch's global one).

    Returns:
        ``(source, target)``, two ``(B, T)`` tensors of integer tokens in ``0 .. 9``.
    """
    check_choice(task, TASKS, "task")
    if B < 1 or T < 1:
        raise ValueError(f"need B >= 1 and T >= 1, got B={B}, T={T}")
    source = torch.randint(0, NUM_DIGITS, (B, T), generator=generator)
    target = source.flip(1) if task == "reverse" else source.clone()
    return source, target


def decoder_inputs(target: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: the decoder's inputs are the target shifted right by one, after the start token.

    ``(B, T)`` target ``[y_1, ..., y_T]`` -> ``(B, T)`` inputs ``[BOS, y_1, ..., y_{T-1}]``: at step ``t`` the
    decoder is given the true previous token and predicts ``y_t``.
    """
    B, _ = check_shape(target, ("B", "T"), "target").shape
    start = torch.full((B, 1), BOS, dtype=target.dtype, device=target.device)
    return torch.cat([start, target[:, :-1]], dim=1)


class Seq2Seq(nn.Module):
    """An LSTM encoder and an LSTM decoder; the decoder attends to the encoder's outputs if ``attention``.

    Args:
        d_model: width of the token embeddings. d_hidden: size of both LSTMs' hidden states.
        attention: False for the bottleneck model (the decoder sees only the encoder's final state), True for
            dot-product attention over all encoder outputs at every decoder step.
        seed: seeds the initial weights (None: torch's global generator).

    Attributes:
        record: set to True to keep the attention weights of every forward pass in ``last_weights``.
        last_weights: the latest attention weights, shape ``(B, T_target, T_source)`` (detached), or None.
    """

    def __init__(self, d_model: int = 16, d_hidden: int = 64, attention: bool = False, seed: int | None = 0):
        super().__init__()
        if d_hidden % 2:
            raise ValueError(f"d_hidden must be even (half of it for each direction of the encoder), got {d_hidden}")
        self.d_model, self.d_hidden, self.attention = d_model, d_hidden, attention
        with private_seed(seed):
            self.source_embedding = nn.Embedding(NUM_DIGITS, d_model)
            self.target_embedding = nn.Embedding(NUM_DIGITS + 1, d_model)  # the digits and BOS
            # Bidirectional: each encoder output knows the tokens on both sides of it (Bahdanau et al. 2015).
            self.encoder = nn.LSTM(d_model, d_hidden // 2, batch_first=True, bidirectional=True)
            self.decoder = nn.LSTM(d_model, d_hidden, batch_first=True)
            # With attention, the hidden state and the context (2 * d_hidden) are mixed before the prediction.
            self.combine = nn.Linear(2 * d_hidden, d_hidden) if attention else None
            self.out = nn.Linear(d_hidden, NUM_DIGITS)
        self.record = False
        self.last_weights: torch.Tensor | None = None

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``(B, T)`` source tokens -> encoder outputs ``(B, T, d_hidden)`` and the final state ``(h, c)``.

        Each output is the forward and the backward LSTM's hidden states at that position, side by side. The
        final state, ``(1, B, d_hidden)`` each for ``h`` and ``c``, is the forward LSTM's state after the last
        token beside the backward LSTM's state after the first: the fixed-size summary of the whole source.
        """
        check_shape(source, ("B", "T"), "source")
        outputs, (h, c) = self.encoder(self.source_embedding(source))  # (B, T, d_hidden); h, c: (2, B, d_hidden/2)
        # (2 directions, B, d_hidden/2) -> (1, B, d_hidden): the decoder's initial state
        h, c = (torch.cat([s[0], s[1]], dim=-1).unsqueeze(0) for s in (h, c))
        return outputs, (h, c)

    def _predict(self, hidden: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Decoder states ``(B, T_out, d_hidden)`` -> logits ``(B, T_out, 10)``, attending to ``memory`` if asked."""
        if not self.attention:
            return self.out(hidden)
        # The decoder's states are the queries; the encoder's outputs are both the keys and the values.
        context, weights = scaled_dot_product_attention(hidden, memory, memory, return_weights=True)  # (B, T_out, H)
        if self.record:
            self.last_weights = weights.detach()  # (B, T_out, T_source)
        return self.out(torch.tanh(self.combine(torch.cat([hidden, context], dim=-1))))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: ``(B, T_s)`` source and ``(B, T_t)`` target tokens -> ``(B, T_t, 10)``.

        Step ``t`` is given the true token ``t - 1`` of the target (:func:`decoder_inputs`) and predicts token ``t``.
        """
        dims: dict[str, int] = {}
        check_shape(source, ("B", "T_s"), "source", dims)
        check_shape(target, ("B", "T_t"), "target", dims)
        memory, state = self.encode(source)
        hidden, _ = self.decoder(self.target_embedding(decoder_inputs(target)), state)  # (B, T_t, d_hidden)
        return self._predict(hidden, memory)

    @torch.no_grad()
    def generate(self, source: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Greedy decoding without teacher forcing: each step is fed the model's own previous prediction.

        Args:
            source: ``(B, T)`` tokens. length: tokens to write (the source's length by default).

        Returns:
            ``(B, length)`` predicted digits. With ``record`` on, ``last_weights`` holds all steps' attention
            weights, ``(B, length, T)``.
        """
        B, T = check_shape(source, ("B", "T"), "source").shape
        length = T if length is None else length
        memory, state = self.encode(source)
        token = torch.full((B, 1), BOS, dtype=torch.long, device=source.device)
        predicted, weights = [], []
        for _ in range(length):
            hidden, state = self.decoder(self.target_embedding(token), state)  # one step: (B, 1, d_hidden)
            token = self._predict(hidden, memory).argmax(dim=-1)  # (B, 1)
            predicted.append(token)
            if self.record and self.attention:
                weights.append(self.last_weights)
        if weights:
            self.last_weights = torch.cat(weights, dim=1)  # (B, length, T)
        return torch.cat(predicted, dim=1)


def sequence_loss(model: nn.Module, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of the teacher-forced predictions over every target token."""
    logits = model(source, target)  # (B, T, 10)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


@dataclass(frozen=True)
class Seq2SeqTrainConfig:
    """Settings of :func:`train_seq2seq`.

    Attributes:
        steps: optimiser steps. batch_size: sequences per step. lr: Adam's peak learning rate, decayed along
            half a cosine to ``min_lr_factor * lr`` (:func:`lmbook.loop.make_scheduler`; no warm-up).
        min_len, max_len: each batch has one length, drawn uniformly from ``min_len .. max_len``.
        task: ``"reverse"`` or ``"copy"`` (:func:`digit_batch`).
        max_grad_norm: clip the gradient's total norm to this (None: no clipping).
        seed: seeds the batches drawn. threads: CPU threads for the run (None: unchanged).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2
    min_lr_factor: float = 0.1
    min_len: int = 4
    max_len: int = 24
    task: str = "reverse"
    max_grad_norm: float | None = 1.0
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be at least 1, got {self.steps} and {self.batch_size}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={self.min_len}, max_len={self.max_len}")
        check_choice(self.task, TASKS, "task")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class Seq2SeqLog:
    """What :func:`train_seq2seq` measured: the loss of every step and the training time in seconds."""

    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_seq2seq(model: Seq2Seq, config: Seq2SeqTrainConfig | None = None) -> Seq2SeqLog:
    """Train ``model`` in place with teacher forcing and Adam (:mod:`lmbook.loop`), on fresh batches every step.

    Every step draws a new batch (:func:`digit_batch`, a length from ``min_len .. max_len``), so the model
    never sees the same sequence twice and there is nothing to overfit. The learning rate falls along half a
    cosine, so that the last steps settle instead of jumping about (the accuracy measured afterwards then depends
    less on where the run happened to stop). Runs on the CPU.
    """
    config = Seq2SeqTrainConfig() if config is None else config
    optimizer = make_optimizer(model, "adam", config.lr)
    scheduler = make_scheduler(optimizer, config.steps, 0.0, "cosine", config.min_lr_factor)
    generator = torch.Generator().manual_seed(config.seed)
    log = Seq2SeqLog()
    model.train()
    start = time.perf_counter()
    with cpu_threads(config.threads):
        for _ in range(config.steps):
            T = int(torch.randint(config.min_len, config.max_len + 1, (), generator=generator))
            source, target = digit_batch(config.batch_size, T, config.task, generator)
            loss = sequence_loss(model, source, target)
            optimizer_step(loss, model, optimizer, scheduler, max_grad_norm=config.max_grad_norm)
            log.loss.append(loss.item())
    log.seconds = time.perf_counter() - start
    return log


def sequence_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """``(per token, per sequence)``: the share of tokens that are right, and of sequences right in every token."""
    dims: dict[str, int] = {}
    check_shape(target, ("B", "T"), "target", dims)
    check_shape(predicted, ("B", "T"), "predicted", dims)
    right = predicted == target  # (B, T)
    return float(right.float().mean()), float(right.all(dim=1).float().mean())


def accuracy_by_length(
    model: Seq2Seq, lengths, n: int = 500, task: str = "reverse", seed: int = 1
) -> dict[int, tuple[float, float]]:
    """Greedy-decoding accuracy on ``n`` fresh sequences of each length: ``{T: (per token, per sequence)}``.

    The model writes its answer from its own predictions (:meth:`Seq2Seq.generate`), as it would in use, not
    with teacher forcing. Evaluated in evaluation mode (:func:`lmbook.loop.evaluation_mode`).
    """
    generator = torch.Generator().manual_seed(seed)
    result = {}
    with evaluation_mode(model):
        for T in lengths:
            source, target = digit_batch(n, int(T), task, generator)
            result[int(T)] = sequence_accuracy(model.generate(source), target)
    return result
