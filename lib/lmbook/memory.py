"""Memory as actually allocated: the bytes of a model's training state and of the activations kept for backward.

Introduced in chapter 9, Compute, memory and scale, to check the formulas of :mod:`lmbook.cost` against what
torch really holds. Two things are measured:

- the **training state**, :func:`training_state_bytes`: the storages behind the parameters, their gradients and
  the optimiser's states. A storage is the block of memory a tensor looks into; tensors that share one (a GPT's
  output layer tied to its token embeddings, views of one buffer) are counted once;
- the **activations**, :func:`activation_bytes`: the tensors that autograd saves during the forward pass because
  the backward pass will need them, seen through ``torch.autograd.graph.saved_tensors_hooks``, each storage
  once. On a GPU it also reports the peak of allocated memory during the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def _storage_key(t: torch.Tensor) -> tuple:
    """What identifies the memory behind ``t``: its storage's address and device."""
    storage = t.untyped_storage()
    return (storage.device.type, storage.device.index, storage.data_ptr(), storage.nbytes())


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind ``tensors``, each storage counted once.

    A view (a slice, a transpose, a tied weight) looks into another tensor's storage and adds nothing; a storage
    is counted whole even when only a view of part of it is given, since the whole block stays allocated.
    """
    seen: dict[tuple, int] = {}
    for t in tensors:
        if t is None:
            continue
        key = _storage_key(t)
        seen[key] = key[-1]
    return sum(seen.values())


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters, each storage once (tied weights count once)."""
    return tensor_bytes(model.parameters())


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of the gradients now held in the parameters' ``.grad`` (0 before the first backward)."""
    return tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of an optimiser's state, split into per-parameter states and the rest.

    Returns:
        ``{"per_parameter": ..., "other": ...}``: states shaped like their parameter (Adam's m and v, SGD's
        momentum buffer) and the other tensors (such as Adam's step counters, one small tensor per parameter
        tensor). Empty before the first step: torch creates the states lazily.
    """
    per_parameter, other = [], []
    for param, state in optimizer.state.items():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                (per_parameter if value.shape == param.shape else other).append(value)
    return {"per_parameter": tensor_bytes(per_parameter), "other": tensor_bytes(other)}


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """The training state as allocated: ``{"weights", "gradients", "optimizer", "optimizer_other", "total"}``.

    ``"optimizer"`` is the per-parameter states (what :func:`lmbook.cost.training_memory` counts) and
    ``"optimizer_other"`` the small rest (step counters). Measure after a first ``optimizer.step()``; before it
    the gradients and states do not exist yet.
    """
    state = optimizer_state_bytes(optimizer) if optimizer is not None else {"per_parameter": 0, "other": 0}
    memory = {
        "weights": parameter_bytes(model),
        "gradients": gradient_bytes(model),
        "optimizer": state["per_parameter"],
        "optimizer_other": state["other"],
    }
    memory["total"] = sum(memory.values())
    return memory


@dataclass
class ActivationMemory:
    """What :func:`activation_bytes` measured during one call.

    Attributes:
        saved_bytes: bytes of the storages autograd saved for the backward pass (each storage once).
        n_saved: how many tensors were saved (several may share a storage).
        cuda_peak_bytes: on a GPU, the peak of allocated memory during the call above what was allocated when
            it started (saved tensors and temporaries alike); None when no CUDA device is in use.
        output: what the call returned (e.g. the loss, ready for ``.backward()``).
    """

    saved_bytes: int
    n_saved: int
    cuda_peak_bytes: int | None
    output: Any


def activation_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> ActivationMemory:
    """Run ``fn()`` and measure the tensors that autograd saves for the backward pass meanwhile.

    Every tensor that an operation saves (its input, its output, a mask...) passes through a
    ``torch.autograd.graph.saved_tensors_hooks`` pack hook, which here notes its storage and returns the tensor
    unchanged, so the backward pass works as usual afterwards. Storages are counted once however many
    operations save them. With activation checkpointing (``torch.utils.checkpoint``) only the checkpointed
    regions' inputs are saved, so the count falls; that is what it is for.

    Args:
        fn: a function of no arguments that runs a forward pass (and returns e.g. the loss).
        exclude: tensors whose storages are not activations and are not counted, typically
            ``model.parameters()``: a matrix product saves its weight too, but the weight is already held as a
            parameter.

    Returns:
        :class:`ActivationMemory`. On a CUDA device (when ``torch.cuda.is_available()``) ``cuda_peak_bytes`` is
        measured with ``torch.cuda.max_memory_allocated`` after resetting the peak statistics.
    """
    excluded = {_storage_key(t) for t in exclude}
    saved: dict[tuple, torch.UntypedStorage] = {}
    n_saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal n_saved
        n_saved += 1
        key = _storage_key(t)
        if key not in excluded:
            saved[key] = t.untyped_storage()  # held until the end, so no address is reused by another storage
        return t

    on_cuda = torch.cuda.is_available()
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = fn()
    peak = None
    if on_cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - start
    return ActivationMemory(sum(key[-1] for key in saved), n_saved, peak, output)
