"""Where the bytes go when a trained model answers: its weights, its activations and a decoder's KV cache.

Introduced in chapter 10, Small and fast models, section 1, whose later sections make each of these smaller.
At inference there are no gradients and no optimiser states (those are chapter 9's training memory,
:mod:`lmbook.memory`); what is left is

- the **weights**: :func:`bytes_by_dtype` counts them in memory, split by number format, and :func:`saved_bytes`
  counts the bytes of the file that ``torch.save`` writes, which is what a quantised model shrinks;
"""

from __future__ import annotations

import io

import torch
from torch import nn


def saved_bytes(model_or_state_dict: nn.Module | dict) -> int:
    """Bytes that ``torch.save`` writes for a model's state dict (or for a state dict given directly).

    The save goes to memory, not to disk; the count includes the file format's small overhead (names, shapes, a
    zip directory: a few kB). It works for models quantised with torchao, whose weights are tensor subclasses that
    save their integer data and scales.
    """
    state = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    if not isinstance(state, dict):
        raise TypeError(f"saved_bytes takes an nn.Module or a state dict, got {type(model_or_state_dict).__name__}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes
