"""Learning-rate schedules: the learning rate as a pure function of the step number.

Introduced in chapter 3, Losses and gradient descent. Convention: ``step = 0`` is the first optimisation step,
and ``schedule(step, base_lr, ...)`` is the learning rate that step uses. In a training loop::

    for step in range(total_steps):
        opt.lr = warmup_cosine(step, base_lr=0.1, warmup_steps=100, total_steps=total_steps)
        opt.step(grads)

This equals PyTorch's convention where the scheduler's ``.step()`` is called after each optimiser step: the
learning rate of step ``k`` is what the scheduler shows after ``k`` calls. The tests check each schedule against
its ``torch.optim.lr_scheduler`` counterpart.

The book's training loops from chapter 7 on (:mod:`lmbook.loop`) all use one of them,
:func:`linear_warmup_decay`: a factor of the peak rate, with a linear warm-up that never wastes a step at rate 0,
then a linear (fine-tuning) or cosine (pre-training) decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lmbook.testing import check_choice


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0 (step 0 is the first step), got {step}")


def constant(step: int, base_lr: float) -> float:
    """The same learning rate ``base_lr`` at every step."""
    _check_step(step)
    return float(base_lr)


def step_decay(step: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps (= ``torch.optim.lr_scheduler.StepLR``).

    ``lr = base_lr * gamma ** (step // step_size)``: a staircase, e.g. 0.1 for steps 0-29, 0.01 for 30-59, ...
    """
    _check_step(step)
    if step_size < 1:
        raise ValueError(f"step_size must be at least 1, got {step_size}")
    return float(base_lr * gamma ** (step // step_size))


def cosine_decay(step: int, base_lr: float, total_steps: int, min_lr: float = 0.0) -> float:
    """Half a cosine wave from ``base_lr`` at step 0 down to ``min_lr`` at ``total_steps``.

    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2``, the same values as
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)`` for steps 0 to
    ``total_steps``. After ``total_steps`` it stays at ``min_lr`` (PyTorch's would climb back up the cosine).
    The decay is gentle at first, fastest in the middle and gentle again at the end.
    """
    _check_step(step)
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    progress = min(step, total_steps) / total_steps
    return float(min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0)


def linear_warmup(step: int, base_lr: float, warmup_steps: int, start_factor: float = 0.1) -> float:
    """Rise linearly from ``start_factor * base_lr`` at step 0 to ``base_lr`` at ``warmup_steps``, then stay there.

    ``lr = base_lr * (start_factor + (1 - start_factor) * min(step, warmup_steps) / warmup_steps)``, which is
    ``torch.optim.lr_scheduler.LinearLR(start_factor=start_factor, end_factor=1.0, total_iters=warmup_steps)``.
    The first step never uses a learning rate of exactly zero (that step would be wasted): ``start_factor`` must
    lie in (0, 1], as in PyTorch.

    Warm-up protects the first steps, when the weights are random and the gradients large and unreliable (and,
    for Adam, the second-moment estimate is still based on very few gradients).
    """
    _check_step(step)
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be at least 1, got {warmup_steps}")
    if not 0.0 < start_factor <= 1.0:
        raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
    fraction = min(step, warmup_steps) / warmup_steps
    return float(base_lr * (start_factor + (1.0 - start_factor) * fraction))


def warmup_cosine(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 0.0,
    start_factor: float = 0.1,
) -> float:
    """Linear warm-up for ``warmup_steps`` steps, then a cosine decay to ``min_lr`` at ``total_steps``.

    Steps ``0 .. warmup_steps - 1`` follow :func:`linear_warmup`; from step ``warmup_steps`` on, the rate is
    ``cosine_decay(step - warmup_steps, base_lr, total_steps - warmup_steps, min_lr)``, so it peaks at
    ``base_lr`` exactly at ``step = warmup_steps``. This is the schedule most large language models are
    trained with (PyTorch: ``SequentialLR`` of ``LinearLR`` and ``CosineAnnealingLR`` with milestone
    ``warmup_steps``).
    """
    _check_step(step)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if step < warmup_steps:
        return linear_warmup(step, base_lr, warmup_steps, start_factor)
    return cosine_decay(step - warmup_steps, base_lr, total_steps - warmup_steps, min_lr)


def linear_warmup_decay(step: int, total: int, warmup: int, decay: str = "linear", min_factor: float = 0.0) -> float:
    """The learning-rate *factor* of step ``step`` (0-based) of ``total``: a linear warm-up, then a decay.

    This is the one warm-up schedule of the book's training loops (:mod:`lmbook.loop`); multiply by the peak
    learning rate, or hand it to ``torch.optim.lr_scheduler.LambdaLR`` (which :func:`lmbook.loop.make_scheduler`
    does).

    - Warm-up: ``(step + 1) / warmup`` for the first ``warmup`` steps, rising to 1 at step ``warmup - 1``. No
      training step gets a learning rate of 0, which would waste it (Hugging Face's
      ``get_linear_schedule_with_warmup`` gives step 0 a rate of 0 and so peaks one step later).
    - ``decay="linear"`` (BERT fine-tuning): ``(total - step) / (total - warmup)``, from 1 at step ``warmup``
      down to ``1 / (total - warmup)`` at the last step, ``total - 1``; 0 from step ``total`` on.
      ``min_factor`` must then be 0.
    - ``decay="cosine"`` (pre-training, as GPT-2 and most language models): half a cosine from 1 at step
      ``warmup`` down towards ``min_factor`` at step ``total``, and ``min_factor`` from then on.

    Args:
        step: >= 0. total: number of training steps, >= 1. warmup: warm-up steps, ``0 <= warmup < total``.
        decay: ``"linear"`` or ``"cosine"``. min_factor: the floor of the cosine decay, in ``[0, 1]``.
    """
    _check_step(step)
    if not 0 <= warmup < total:
        raise ValueError(f"need 0 <= warmup < total, got warmup={warmup}, total={total}")
    check_choice(decay, ("linear", "cosine"), "decay")
    if not 0.0 <= min_factor <= 1.0 or (decay == "linear" and min_factor != 0.0):
        raise ValueError(f"min_factor must be in [0, 1] (and 0 for the linear decay), got {min_factor}")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "linear":
        return max(0.0, (total - step) / (total - warmup))
    progress = min(step - warmup, total - warmup) / (total - warmup)  # 0 at the peak, 1 at step `total`
    return min_factor + (1.0 - min_factor) * (1.0 + math.cos(math.pi * progress)) / 2.0


# The schedules by name, for :func:`lr_curve` and widgets.
SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step_decay,
    "cosine": cosine_decay,
    "warmup": linear_warmup,
    "warmup-cosine": warmup_cosine,
}


def lr_curve(schedule: str | Callable[..., float], steps: int, **kwargs) -> np.ndarray:
    """The learning rate of steps ``0 .. steps - 1`` as an array of shape ``(steps,)``, for plotting.

    Args:
        schedule: one of the functions above, or its name in :data:`SCHEDULES`.
        steps: how many steps to evaluate.
        kwargs: the schedule's other arguments, e.g. ``base_lr=0.1, total_steps=1000``.

    Example:
        >>> lr_curve(step_decay, 6, base_lr=1.0, step_size=2, gamma=0.5)
        array([1.  , 1.  , 0.5 , 0.5 , 0.25, 0.25])
    """
    if isinstance(schedule, str):
        check_choice(schedule, SCHEDULES, "schedule")
        schedule = SCHEDULES[schedule]
    return np.array([schedule(step, **kwargs) for step in range(int(steps))], dtype=np.float64)
