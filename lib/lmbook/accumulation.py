"""Gradient accumulation: the gradient of a large batch, computed a few examples at a time.

Introduced in chapter 9, Compute, memory and scale (section 3, fitting a larger model on one device), and used by
:func:`lmbook.language_model.train_lm` (``LMTrainConfig.accum_steps``).

A batch of ``n`` examples is cut into ``k = accum_steps`` **micro-batches** of ``n_1 + ... + n_k = n`` examples.
Each micro-batch runs forward and backward on its own, so only one micro-batch's activations are in memory at a
time, and the gradients add up in the parameters' ``.grad`` until one optimiser step uses them. With losses that
are means (the book's losses are), the full-batch loss is the weighted mean of the micro-batch losses,

    L = sum_i (n_i / n) L_i,

and because the gradient is linear, ``grad L = sum_i (n_i / n) grad L_i``. So each micro-batch's loss is scaled
by its share ``n_i / n`` before ``backward``: ``1 / k`` when the micro-batches are equal. Forgetting the scale
gives ``k`` times the gradient (with SGD, a ``k`` times larger learning rate); scaling by ``1 / k`` when the
micro-batches are unequal weights the examples of the small micro-batch more than the others.

Where a loss is a mean over *tokens* rather than examples (padding ignored, windows of different lengths), the
share is the micro-batch's count of tokens over the batch's: give ``count_fn``.

- :func:`micro_batch_sizes` and :func:`split_micro_batches`: ``n`` examples in ``k`` micro-batches as equal as
  possible;
- :func:`accumulate_gradients`: forward and backward of each micro-batch, the loss scaled by its share;
- :func:`accumulation_step`: clear the gradients, accumulate, then one optimiser step
  (:func:`lmbook.loop.apply_gradients`: unscale, clip, step, schedule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lmbook.loop import apply_gradients, scaled_backward


def micro_batch_sizes(n_examples: int, accum_steps: int) -> list[int]:
    """The sizes of ``accum_steps`` micro-batches of ``n_examples`` examples, as equal as possible, larger first.

    ``micro_batch_sizes(10, 3) == [4, 3, 3]``. Raises ValueError when ``accum_steps < 1`` or when there are
    fewer examples than micro-batches (an empty micro-batch has no mean loss).
    """
    if isinstance(accum_steps, bool) or not isinstance(accum_steps, int) or accum_steps < 1:
        raise ValueError(f"accum_steps must be an integer of at least 1 (1: no accumulation), got {accum_steps!r}")
    if n_examples < accum_steps:
        raise ValueError(
            f"accum_steps={accum_steps} micro-batches need at least {accum_steps} examples, got {n_examples}"
        )
    size, extra = divmod(n_examples, accum_steps)
    return [size + 1] * extra + [size] * (accum_steps - extra)


def split_micro_batches(batch: torch.Tensor | Sequence[torch.Tensor], accum_steps: int) -> list[tuple]:
    """Cut a batch (a tensor, or a tuple of tensors with the same first dimension) into micro-batches.

    Returns ``accum_steps`` tuples of tensors, each a consecutive slice along dimension 0 of every tensor, with
    the sizes :func:`micro_batch_sizes` gives (views: nothing is copied).
    """
    tensors = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)
    if not tensors:
        raise ValueError("the batch holds no tensors")
    n = tensors[0].shape[0]
    for i, t in enumerate(tensors):
        if t.shape[0] != n:
            shapes = [tuple(u.shape) for u in tensors]
            raise ValueError(f"every tensor of the batch needs the same first dimension; tensor {i} differs: {shapes}")
    sizes = micro_batch_sizes(n, accum_steps)
    return list(zip(*(t.split(sizes) for t in tensors), strict=True))


def _count(count_fn, micro: tuple) -> float:
    count = float(count_fn(*micro)) if count_fn is not None else float(micro[0].shape[0])
    if not count > 0:
        raise ValueError(f"count_fn must give every micro-batch a positive count, got {count}")
    return count


def accumulate_gradients(
    loss_fn: Callable[..., torch.Tensor],
    batch: torch.Tensor | Sequence[torch.Tensor],
    accum_steps: int,
    count_fn: Callable[..., float | torch.Tensor] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """Add the gradient of the whole batch's mean loss to ``.grad``, one micro-batch at a time.

    Args:
        loss_fn: ``loss_fn(*micro_batch)`` -> the scalar **mean** loss of that micro-batch (with its graph);
            run it under :func:`lmbook.loop.autocast` inside ``loss_fn`` for mixed precision.
        batch: a tensor or a tuple of tensors (inputs, targets, ...) with the examples along dimension 0.
        accum_steps: the number of micro-batches ``k`` (:func:`micro_batch_sizes`).
        count_fn: ``count_fn(*micro_batch)`` -> how many items the micro-batch's mean is over (e.g. the tokens
            that are not padding); None counts examples. Each loss is scaled by its count over the total.
        scaler: a float16 gradient scaler (:func:`lmbook.loop.make_scaler`), or None.

    Returns:
        The whole batch's mean loss, ``sum_i (n_i / n) L_i``, detached. The gradients are *added* to what
        ``.grad`` holds: clear them first (:func:`accumulation_step` does).
    """
    micro_batches = split_micro_batches(batch, accum_steps)
    counts = [_count(count_fn, micro) for micro in micro_batches]
    total = sum(counts)
    loss_sum = None
    for micro, count in zip(micro_batches, counts, strict=True):
        loss = loss_fn(*micro)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar (mean) loss, got shape {tuple(loss.shape)}")
        weighted = loss if accum_steps == 1 else loss * (count / total)  # 1 micro-batch: the loss untouched
        scaled_backward(weighted, scaler)  # the graph of this micro-batch is freed here
        loss_sum = weighted.detach() if loss_sum is None else loss_sum + weighted.detach()
    return loss_sum


def accumulation_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    batch: torch.Tensor | Sequence[torch.Tensor],
    accum_steps: int,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
    count_fn: Callable[..., float | torch.Tensor] | None = None,
) -> tuple[torch.Tensor, float | None]:
    """One optimiser step on a batch, taken in ``accum_steps`` micro-batches.

    Clears the gradients, :func:`accumulate_gradients`, then :func:`lmbook.loop.apply_gradients` (unscale,
    clip the total norm to ``max_grad_norm``, step, schedule). With ``accum_steps=1`` it is exactly
    :func:`lmbook.loop.optimizer_step` on ``loss_fn(*batch)``.

    Returns:
        ``(loss, norm)``: the batch's mean loss (detached) and the gradient norm before clipping (None when
        ``max_grad_norm`` is None).
    """
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_gradients(loss_fn, batch, accum_steps, count_fn, scaler)
    return loss, apply_gradients(model, optimizer, scheduler, scaler, max_grad_norm)
