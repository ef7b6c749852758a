"""Training any next-token language model: ``(B, T)`` token ids in, ``(B, T, V)`` logits out.

Introduced in chapter 7 for the tiny GPT (:func:`lmbook.gpt.train_gpt` calls :func:`train_lm`), written so that
it does not depend on the GPT class: chapter 6's LSTM language model trains with the same loop. A language
model predicts, at every position ``t`` of a window, the token at ``t + 1``; one forward pass over a window of
``T`` tokens trains ``T`` predictions at once.

- :class:`LMTrainConfig`: the run's settings, frozen, with a CPU and a GPU preset;
- :func:`train_lm`: AdamW on random windows (:func:`lmbook.text.get_batch`), the book's warm-up + cosine
  schedule, clipping and mixed precision from :mod:`lmbook.loop`, optionally gradient accumulation
  (:mod:`lmbook.accumulation`); returns a :class:`TrainLog`;
- :func:`evaluate_loss`: the mean next-token loss over consecutive windows of held-out tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.accumulation import accumulation_step
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
)
from lmbook.seeding import private_seed
from lmbook.testing import check_shape
from lmbook.text import get_batch


@dataclass(frozen=True)
class LMTrainConfig:
    """Everything :func:`train_lm` needs to know besides the model and the data.

    Attributes:
        steps: optimiser steps. batch_size: windows per micro-batch (per step when ``accum_steps`` is 1).
        lr: peak learning rate of AdamW.
        window: tokens per training window ``T``; None takes the model's ``config.max_len`` (a GPT's).
        warmup_ratio: share of the steps spent warming up (:func:`lmbook.schedules.linear_warmup_decay`); then
            a cosine decay down to ``min_lr_factor * lr``.
        weight_decay: AdamW's decoupled weight decay, by the rule of :func:`lmbook.loop.param_groups`.
        betas: AdamW's moment decay rates; 0.95 for the second moment, as GPT-2-style models use.
        max_grad_norm: clip the gradient to this total norm before each step; None turns clipping off.
        amp: mixed precision, as :func:`lmbook.device.autocast_dtype`: ``"auto"`` (bfloat16 or float16 on a
            GPU, none on the CPU), ``"bf16"``, ``"fp16"`` or ``"off"``.
        log_every: steps between measurements. eval_batches: batches of the validation estimate.
        seed: seeds the windows drawn and the dropout masks. threads: CPU threads for the run (None: unchanged).
        accum_steps: gradient accumulation: each step draws ``batch_size * accum_steps`` windows and takes them
            ``batch_size`` at a time (:func:`lmbook.accumulation.accumulation_step`), so that only one
            micro-batch's activations are in memory; the step's gradient is that of the whole batch. 1 (the
            default): one batch of ``batch_size`` windows per step.
    """

    steps: int = 600
    batch_size: int = 16
    lr: float = 5e-3
    window: int | None = None
    warmup_ratio: float = 0.05
    min_lr_factor: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float | None = 1.0
    amp: str = "auto"
    log_every: int = 100
    eval_batches: int = 8
    seed: int = 0
    threads: int | None = None
    accum_steps: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_batches", "accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be at least 1 token (or None for the model's max_len), got {self.window}")
        check_training_config(self)

    @classmethod
    def cpu(cls, **overrides) -> LMTrainConfig:
        """The CPU size: 600 steps of 16 windows at a peak rate of 5e-3, for ``GPTConfig.cpu`` (15-30 s on 2 cores).

        A tiny model learns fast with a large rate; one thread, because on a shared machine two threads that wait
        for each other at every small operation can be many times slower.
        """
        return replace(cls(steps=600, batch_size=16, lr=5e-3, threads=1), **overrides)

    @classmethod
    def gpu(cls, **overrides) -> LMTrainConfig:
        """The GPU size, for ``GPTConfig.gpu`` (about 11M parameters): 600 steps of 64 windows at 1e-3."""
        return replace(cls(steps=600, batch_size=64, lr=1e-3), **overrides)


@dataclass
class TrainLog:
    """What :func:`train_lm` measured.

    Attributes:
        steps: the steps (1-based) at which the losses were measured.
        train_loss: mean training loss over the steps since the previous measurement.
        val_loss: validation loss at those steps (empty without validation data).
        seconds: wall-clock time of the training steps (evaluation excluded).
        tokens: tokens processed by the training steps (``steps * batch_size * accum_steps * window``).
        tokens_per_second: ``tokens / seconds``.
        lr: the learning rate of every step. grad_norm: the gradient norm of every step, before clipping.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    tokens_per_second: float = 0.0
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        last = f"train_loss={self.train_loss[-1]:.3f}" if self.train_loss else "no steps"
        if self.val_loss:
            last += f", val_loss={self.val_loss[-1]:.3f}"
        return (
            f"TrainLog(steps={self.steps[-1] if self.steps else 0}, {last}, {self.seconds:.1f} s, "
            f"{self.tokens_per_second:,.0f} tokens/s)"
        )

    def progress_line(self) -> str:
        """One line for the latest measurement: step, losses, elapsed time."""
        line = f"step {self.steps[-1]:5d}  train loss {self.train_loss[-1]:.3f}"
        if self.val_loss:
            line += f"  val loss {self.val_loss[-1]:.3f}"
        return line + f"  ({self.seconds:.1f} s)"


def _window(model: nn.Module, window: int | None) -> int:
    if window is not None:
        return int(window)
    config = getattr(model, "config", None)
    max_len = getattr(config, "max_len", None)
    if max_len is None:
        raise ValueError(f"{type(model).__name__} has no config.max_len: give the window length (window=...)")
    return int(max_len)


def next_token_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model(x)``'s next-token logits ``(B, T, V)`` against the targets ``y`` ``(B, T)``."""
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != y.shape:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must map (B, T) = {tuple(x.shape)} ids to (B, T, V) logits, got {got}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # (B*T, V) vs (B*T,)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, data: torch.Tensor, batch_size: int = 32, max_batches: int | None = 8, window: int | None = None
) -> float:
    """Mean next-token loss of ``model`` on ``data`` (1-d token ids), over consecutive non-overlapping windows.

    Deterministic: the windows start at ``0, T, 2T, ...`` with ``T = window`` (the model's ``config.max_len``
    when None); at most ``max_batches`` batches of ``batch_size`` windows are used (None: all of ``data``).
    Evaluation mode meanwhile.
    """
    check_shape(data, ("N",), "data")
    T = _window(model, window)
    n_windows = (len(data) - 1) // T
    if n_windows < 1:
        raise ValueError(f"data has {len(data)} tokens, too few for one window of {T} + 1")
    if max_batches is not None:
        n_windows = min(n_windows, batch_size * max_batches)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluation_mode(model):
        for first in range(0, n_windows, batch_size):
            starts = torch.arange(first, min(first + batch_size, n_windows)) * T  # (b,)
            index = starts[:, None] + torch.arange(T)[None, :]  # (b, T)
            x, y = data[index].to(device), data[index + 1].to(device)
            total += next_token_loss(model, x, y).item() * len(starts)
            count += len(starts)
    return total / count


def train_lm(
    model: nn.Module, data, config: LMTrainConfig | None = None, device=None, verbose: bool = False
) -> TrainLog:
    """Train a next-token language model in place on random windows of a token sequence; measure as it goes.

    Each step draws ``batch_size`` windows of ``window`` tokens (:func:`lmbook.text.get_batch`), computes the
    mean next-token cross-entropy (:func:`next_token_loss`) and takes one AdamW step
    (:func:`lmbook.loop.optimizer_step`: gradient norm clipped to ``max_grad_norm``; the schedule a linear
    warm-up, then a cosine decay to ``min_lr_factor * lr``). With ``accum_steps = k > 1`` a step draws ``k``
    times as many windows and back-propagates them ``batch_size`` at a time, each loss scaled by ``1 / k``
    (:func:`lmbook.accumulation.accumulation_step`): the same step as one batch of ``k * batch_size`` windows,
    up to rounding (and to dropout, whose masks are drawn per micro-batch). Every ``log_every`` steps, and after
    the last, it records the mean training loss since the previous record and the validation loss
    (:func:`evaluate_loss`).

    Args:
        model: maps ``(B, T)`` token ids to ``(B, T, V)`` logits (a :class:`lmbook.gpt.GPT`, an LSTM language
            model, ...); trained in place, moved to the device.
        data: ``(train, val)`` 1-d tensors of token ids (as from :func:`lmbook.text.train_val_split_tokens`), or
            just ``train``.
        config: an :class:`LMTrainConfig`; :meth:`LMTrainConfig.cpu` when None.
        device: where to train: :func:`lmbook.device.training_device`'s rule (None: where the model is).
        verbose: print a line at every measurement.

    Returns:
        A :class:`TrainLog`, including the measured training speed in tokens per second.
    """
    config = LMTrainConfig.cpu() if config is None else config
    train, val = data if isinstance(data, tuple | list) else (data, None)
    check_shape(train, ("N",), "train")
    window = _window(model, config.window)
    device = training_device(model, device)
    model.to(device)
    amp_dtype = autocast_dtype(device, config.amp)
    scaler = make_scaler(amp_dtype, device)
    optimizer = make_optimizer(model, "adamw", config.lr, config.weight_decay, config.betas)
    scheduler = make_scheduler(optimizer, config.steps, config.warmup_ratio, "cosine", config.min_lr_factor)
    generator = torch.Generator().manual_seed(config.seed)  # the windows, drawn on the CPU whatever the device
    log = TrainLog()
    running, since = 0.0, 0

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp_dtype):
            return next_token_loss(model, x, y)

    model.train()
    with cpu_threads(config.threads), private_seed(config.seed, devices=[device]):  # dropout masks
        for step in range(config.steps):
            start = time.perf_counter()
            x, y = get_batch(train, config.batch_size * config.accum_steps, window, generator, device)  # (k B, T)
            log.lr.append(current_lr(optimizer))
            loss, norm = accumulation_step(
                model, optimizer, loss_fn, (x, y), config.accum_steps, scheduler, scaler, config.max_grad_norm
            )
            running += loss.item()  # .item() waits for the GPU, so the timing below is honest
            since += 1
            log.seconds += time.perf_counter() - start
            if norm is not None:
                log.grad_norm.append(norm)
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                log.steps.append(step + 1)
                log.train_loss.append(running / since)
                running, since = 0.0, 0
                if val is not None:
                    with autocast(device, amp_dtype):
                        log.val_loss.append(
                            evaluate_loss(model, val, config.batch_size, config.eval_batches, window=window)
                        )
                if verbose:
                    print(log.progress_line())
    log.tokens = config.steps * config.batch_size * config.accum_steps * window
    log.tokens_per_second = log.tokens / max(log.seconds, 1e-9)
    return log
