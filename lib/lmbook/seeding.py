"""Seeding without side effects: draw from a private copy of torch's random state.

Introduced in chapter 4 (small torch classifiers) and used by every model builder and training loop after it, so
that building or training a model with ``seed=...`` is reproducible and never reseeds the caller's generator.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def private_seed(seed: int | None, devices=()):
    """Inside the block, torch's global generator is seeded with ``seed``; afterwards its old state is back.

    Args:
        seed: the seed; None leaves the global random state alone (the block then draws from it as usual).
        devices: the devices the block computes on (``torch.device`` or names such as ``"cuda:0"``); the
            generators of the CUDA ones among them are forked and restored too (the CPU's always is).
    """
    if seed is None:
        yield
        return
    cuda = [torch.device(d) for d in devices if torch.device(d).type == "cuda"]
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
