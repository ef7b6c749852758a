"""The pieces every training loop of the book shares: parameter groups, optimiser, schedule, precision, one step.

Introduced in chapter 4 and used by every loop after it: :func:`lmbook.training.fit_classifier` (classifiers of
any input shape), :func:`lmbook.language_model.train_lm` (next-token language models: the GPT of chapter 7, the
LSTM of chapter 6), :func:`lmbook.mlm.pretrain_mlm` and :func:`lmbook.finetune.finetune` (chapter 8). Each loop
is written out in its own module so that a reader sees the loop; what is the same in all of them is here, once,
as a few small functions rather than a framework:

- :func:`param_groups`: which parameters get weight decay, by one rule (below);
- :func:`make_optimizer`: SGD, Adam or AdamW on those groups;
- :func:`make_scheduler`: the one warm-up schedule, :func:`lmbook.schedules.linear_warmup_decay`;
- :func:`make_scaler` and :func:`autocast`: mixed precision (dtype from :func:`lmbook.device.autocast_dtype`);
- :func:`optimizer_step`: backward, clip, step, schedule, for one mini-batch loss (:func:`scaled_backward` then
  :func:`apply_gradients`, which gradient accumulation calls apart);
- :func:`cpu_threads`: a number of CPU threads for the length of a run;
- :func:`evaluation_mode`: a model in evaluation mode for one block, then back in the mode it had.

Where a loop runs is :func:`lmbook.device.training_device`'s one rule (the given device, else the model's), and
its randomness comes from :func:`lmbook.seeding.private_seed`, so that a run with ``seed=...`` is reproducible
and leaves the caller's random state alone.

**The weight-decay rule.** Weight decay pulls weights towards 0. It is meant for the weights that *multiply*
inputs: the matrices of linear layers and the kernels of convolutions (parameters with two or more dimensions).
Biases, the scales and shifts of normalisation layers, and embedding tables are left alone: shrinking a bias or
a layer norm's scale does not make the function any simpler, and an embedding row of a rare token would be
shrunk at every step while receiving a gradient only when that token appears. This is BERT's and GPT-2's practice;
nanoGPT decays the embeddings too, which makes little difference at the book's sizes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from lmbook.device import AMP_CHOICES
from lmbook.schedules import linear_warmup_decay
from lmbook.testing import check_choice

OPTIMIZERS = ("sgd", "adam", "adamw")


def check_training_config(config) -> None:
    """The checks every training config shares (``LMTrainConfig``, ``MLMTrainConfig``, ``FinetuneConfig``).

    Raises ValueError naming the field: a learning rate that is not positive, a warm-up share outside [0, 1), a
    final-rate factor outside [0, 1], negative weight decay, a clipping norm that is not positive, an unknown
    mixed-precision mode, or fewer than one thread. Fields a config does not have are skipped.
    """
    if not config.lr > 0:
        raise ValueError(f"lr must be positive, got {config.lr}")
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    min_lr_factor = getattr(config, "min_lr_factor", 0.0)
    if not 0.0 <= min_lr_factor <= 1.0:
        raise ValueError(f"min_lr_factor must be in [0, 1], got {min_lr_factor}")
    if config.weight_decay < 0:
        raise ValueError(f"weight_decay must not be negative, got {config.weight_decay}")
    if config.max_grad_norm is not None and not config.max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive (or None for no clipping), got {config.max_grad_norm}")
    check_choice(config.amp, AMP_CHOICES, "amp")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be at least 1 (or None), got {config.threads}")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The model's trainable parameters in two optimiser groups: with and without weight decay.

    Decayed: parameters with two or more dimensions (weight matrices, convolution kernels) that do not belong to
    an ``nn.Embedding``. Not decayed: biases, normalisation scales and shifts (one dimension or none) and
    embedding tables. A weight shared by two modules (a language model's tied embedding and output layer) is
    listed once, and counts as an embedding.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]``, ready
        for any ``torch.optim`` optimiser.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must not be negative, got {weight_decay}")
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(False)}
    decay, no_decay = [], []
    for p in model.parameters():  # each parameter once, even when shared
        if p.requires_grad:
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser on :func:`param_groups`.

    Args:
        model: the model to train.
        name: ``"sgd"`` (plain, no momentum), ``"adam"`` or ``"adamw"``. For SGD and Adam, weight decay adds
            ``weight_decay * w`` to the gradient (an L2 penalty); AdamW shrinks the weights directly (decoupled).
        lr: the (peak) learning rate, > 0. weight_decay: >= 0. betas: Adam's and AdamW's moment decay rates.

    AdamW uses PyTorch's fused kernel where this torch offers one (on a CPU several times faster than the loop
    over parameters; the same update up to rounding).
    """
    check_choice(name, OPTIMIZERS, "optimizer")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def num_warmup_steps(total: int, warmup_ratio: float) -> int:
    """The number of warm-up steps of a run of ``total`` steps: ``round(warmup_ratio * total)``, below ``total``."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    return min(round(warmup_ratio * total), total - 1)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total: int,
    warmup_ratio: float,
    decay: str = "linear",
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of each step as :func:`lmbook.schedules.linear_warmup_decay` says, times the peak rate.

    Call its ``step()`` once after each optimiser step (:func:`optimizer_step` does). ``total`` steps in all, of
    which :func:`num_warmup_steps` ``(total, warmup_ratio)`` warm up; ``decay`` and ``min_factor`` as there.
    """
    if total < 1:
        raise ValueError(f"total must be at least 1 step, got {total}")
    warmup = num_warmup_steps(total, warmup_ratio)
    linear_warmup_decay(0, total, warmup, decay, min_factor)  # check the arguments now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_warmup_decay(step, total, warmup, decay, min_factor)
    )


def make_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for float16 mixed precision (so that small gradients do not underflow), else None.

    bfloat16 has float32's range and needs none; neither does float32.
    """
    if amp_dtype != torch.float16:
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """``torch.autocast`` for ``device`` with ``amp_dtype``; a context that does nothing when it is None."""
    return torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate the next step will use (of the first parameter group; the book's groups share one)."""
    return float(optimizer.param_groups[0]["lr"])


def scaled_backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None = None) -> None:
    """Back-propagate ``loss``, adding to the parameters' ``.grad``; with a float16 ``scaler``, the scaled loss.

    Gradients *add up* over calls until they are cleared: :func:`optimizer_step` clears them first, and
    :func:`lmbook.accumulation.accumulate_gradients` relies on the sum over micro-batches.
    """
    (loss if scaler is None else scaler.scale(loss)).backward()


def apply_gradients(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
) -> float | None:
    """The update from the gradients already in ``.grad``: unscale, clip, step, advance the schedule.

    Args and the return value as :func:`optimizer_step`, which is :func:`scaled_backward` followed by this.
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = None
    if max_grad_norm is not None:
        norm = float(nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return norm


def optimizer_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
) -> float | None:
    """One update from a mini-batch's loss: clear old gradients, back-propagate, clip, step, advance the schedule.

    Args:
        loss: the scalar loss of the mini-batch, with its graph.
        model: whose parameters' gradient norm is clipped.
        optimizer: steps the parameters. scheduler: stepped afterwards (None: no schedule).
        scaler: a float16 :func:`make_scaler`: the loss is scaled before ``backward`` and the gradients unscaled
            before clipping (so the true gradients are clipped); a step whose gradients overflowed is skipped.
        max_grad_norm: clip the total gradient norm to this; ``math.inf`` measures without clipping; None
            neither measures nor clips.

    Returns:
        The total gradient norm *before* clipping, or None when ``max_grad_norm`` is None.

    It is :func:`scaled_backward` then :func:`apply_gradients`; a step over several micro-batches
    (:func:`lmbook.accumulation.accumulation_step`) calls the two itself.
    """
    optimizer.zero_grad(set_to_none=True)
    scaled_backward(loss, scaler)
    return apply_gradients(model, optimizer, scheduler, scaler, max_grad_norm)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Run the block with ``model.eval()`` (dropout off, batch norm on its running statistics), then give the
    model back the mode it had, training or evaluation."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` CPU threads for torch, restoring the previous number after; None changes nothing."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be at least 1 (or None), got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
