"""Activation checkpointing: keep only some activations in the forward pass, recompute the rest in the backward.

Introduced in chapter 9, Compute, memory and scale (section 3, fitting a larger model on one device). Not to be
confused with :mod:`lmbook.checkpoint`, which saves a model's weights to a file: "checkpointing" here means
*activation* checkpointing, also called rematerialisation or recomputation (Chen et al. 2016, *Training Deep
Nets with Sublinear Memory Cost*, arXiv:1604.06174).

Backpropagation needs, for each operation, tensors from the forward pass (its inputs, its outputs, masks). A
plain forward pass of a GPT keeps them all until the backward pass has used them: for each of the ``L`` blocks,
:func:`block_activation_bytes`, which grows with the batch, the window and the width. Wrapping a run of blocks
(a **segment**) in ``torch.utils.checkpoint.checkpoint`` keeps only the segment's input; when the backward pass
reaches the segment, it runs the segment's forward pass again, this time keeping its tensors, and
back-propagates through it. The gradients are the same; the price is one more forward pass of the checkpointed
blocks (about a third more arithmetic for a training step).

- :func:`checkpoint_blocks` and :func:`restore_blocks`: switch a :class:`lmbook.gpt.GPT`'s blocks to
  checkpointed segments and back; :func:`checkpointed` does both around a ``with`` block;
- :func:`block_activation_bytes`: what one from-scratch transformer block saves for the backward pass;
- :func:`checkpointed_peak_bytes`: what the whole stack of blocks needs at the peak, with segments of ``s``
  blocks: the segment inputs stored, plus one segment's tensors while it is recomputed; :func:`best_segment`.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_ORIGINAL = "_lmbook_original_forward"  # where checkpoint_blocks keeps a block's own forward


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise TypeError(
            f"checkpoint_blocks needs a model with a non-empty nn.ModuleList `blocks` (a lmbook.gpt.GPT), "
            f"got {type(model).__name__}"
        )
    return blocks


def is_checkpointed(model: nn.Module) -> bool:
    """Whether :func:`checkpoint_blocks` has switched ``model``'s blocks (and :func:`restore_blocks` not back)."""
    return any(hasattr(block, _ORIGINAL) for block in _blocks(model))


def checkpoint_blocks(model: nn.Module, segment: int = 1) -> nn.Module:
    """Run ``model.blocks`` as checkpointed segments of ``segment`` consecutive blocks; returns ``model``.

    Each segment keeps only its input during the forward pass and is recomputed in the backward pass
    (``torch.utils.checkpoint.checkpoint``, non-reentrant, with the random state restored so that dropout draws
    the same masks again). ``segment=1`` checkpoints every block; ``segment=len(model.blocks)`` the whole stack
    at once. The parameters, their names and the ``state_dict`` are unchanged: only the blocks' ``forward`` is
    replaced on the instances (the first block of a segment runs the whole segment, the others pass their input
    through), and :func:`restore_blocks` puts it back. The model must call its blocks one after the other, as
    :class:`lmbook.gpt.GPT` does. Without gradients (evaluation) the blocks simply run.

    Raises ValueError when ``segment`` is not between 1 and the number of blocks, or when the blocks are
    already checkpointed.
    """
    blocks = _blocks(model)
    if isinstance(segment, bool) or not isinstance(segment, int) or not 1 <= segment <= len(blocks):
        raise ValueError(f"segment must be an integer from 1 to n_layers={len(blocks)}, got {segment!r}")
    if is_checkpointed(model):
        raise ValueError("the blocks are already checkpointed: call restore_blocks(model) first")
    for first in range(0, len(blocks), segment):
        members = list(blocks[first : first + segment])
        forwards = [block.forward for block in members]  # the blocks' own (bound) forward methods

        def run_segment(x, *args, _forwards=forwards, **kwargs):
            for forward in _forwards:
                x = forward(x, *args, **kwargs)
            return x

        def checkpointed_forward(x, *args, _run=run_segment, **kwargs):
            if not torch.is_grad_enabled():
                return _run(x, *args, **kwargs)
            return checkpoint(_run, x, *args, use_reentrant=False, **kwargs)

        for i, block in enumerate(members):
            setattr(block, _ORIGINAL, forwards[i])
            block.forward = checkpointed_forward if i == 0 else _pass_through
    return model


def _pass_through(x, *args, **kwargs):
    return x  # this block already ran inside the checkpointed segment that its first block runs


def restore_blocks(model: nn.Module) -> nn.Module:
    """Undo :func:`checkpoint_blocks`: each block runs its own forward again, keeping its tensors; returns ``model``."""
    for block in _blocks(model):
        if hasattr(block, _ORIGINAL):
            delattr(block, _ORIGINAL)
            del block.forward  # the instance attribute; the class's forward shows through again
    return model


@contextlib.contextmanager
def checkpointed(model: nn.Module, segment: int = 1):
    """Inside the ``with`` block, ``model``'s blocks are checkpointed (:func:`checkpoint_blocks`); restored after."""
    checkpoint_blocks(model, segment)
    try:
        yield model
    finally:
        restore_blocks(model)


def block_activation_bytes(
    batch_size: int, seq_len: int, d_model: int, n_heads: int, d_ff: int | None = None, bytes_per_number: int = 4
) -> int:
    """Bytes one from-scratch pre-LN causal block (:class:`lmbook.transformer.TransformerBlock`) saves for backward.

    Without dropout, with ``B = batch_size``, ``T = seq_len``, ``C = d_model``, ``H = n_heads``,
    ``d_ff = 4 C`` by default, it is ``bytes_per_number * (12 B T C + 2 B T d_ff + B H T^2 + 2 B T) + T^2``:

    - ``12 B T C``: in each of the two layer norms, ``x - mean`` twice (it is computed once for the variance
      and once for the output) and the normalised value that the scale multiplies (2 x 3); the attention's
      input (read by ``W_q``, ``W_k``, ``W_v``), its queries, keys and values, and the merged heads that enter
      ``W_o`` (5); the feed-forward's input (1);
    - ``2 B T d_ff``: the hidden layer before the GELU and after it (the input of ``fc2``);
    - ``B H T^2``: the attention weights (the softmax output, needed by its backward and by ``weights @ v``);
    - ``2 B T``: each layer norm's ``sqrt(var + eps)``, one per token; ``T^2``: the causal mask, one byte each.

    Counted from the tensors that autograd saves (:func:`lmbook.memory.activation_bytes` measures the same). The
    ``T^2`` terms are why long windows are expensive; the others grow with the width. A checkpointed block keeps
    only its input, ``bytes_per_number * B T C``.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("d_model", d_model), ("n_heads", n_heads)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    d_ff = 4 * d_model if d_ff is None else d_ff
    B, T, C, H = batch_size, seq_len, d_model, n_heads
    return bytes_per_number * (12 * B * T * C + 2 * B * T * d_ff + B * H * T * T + 2 * B * T) + T * T


def checkpointed_peak_bytes(n_layers: int, segment: int | None, per_block: float, per_boundary: float) -> float:
    """Activation bytes of a stack of ``n_layers`` blocks at the peak of the backward pass.

    Args:
        n_layers: ``L``. segment: blocks per checkpointed segment ``s``; None for no checkpointing.
        per_block: what one block saves (:func:`block_activation_bytes`). per_boundary: one block's input
            (``bytes_per_number * B T C``), what a segment keeps.

    Returns:
        Without checkpointing ``L * per_block``; with segments of ``s``: ``ceil(L / s) * per_boundary`` kept
        through the forward pass, plus ``s * per_block`` while one segment is recomputed. The sum is smallest
        near ``s = sqrt(L * per_boundary / per_block)`` (:func:`best_segment`): for a plain chain of equal layers
        (``per_block = per_boundary``) that is ``sqrt(L)``, and the memory grows as ``2 sqrt(L)`` instead of ``L``.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    if segment is None:
        return n_layers * per_block
    if not 1 <= segment <= n_layers:
        raise ValueError(f"segment must be from 1 to n_layers={n_layers} (or None), got {segment}")
    return math.ceil(n_layers / segment) * per_boundary + segment * per_block


def best_segment(n_layers: int, per_block: float, per_boundary: float) -> int:
    """The segment length ``s`` in ``1 .. n_layers`` with the smallest :func:`checkpointed_peak_bytes`."""
    return min(range(1, n_layers + 1), key=lambda s: checkpointed_peak_bytes(n_layers, s, per_block, per_boundary))
