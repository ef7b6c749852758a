"""Pruning: setting a model's least important weights to zero, one at a time or whole neurons at once.

Introduced in chapter 10, Small and fast models. A trained network has many weights close to zero; removing them
changes its outputs little. **Magnitude pruning** (Han, Pool, Tran and Dally 2015, *Learning both Weights and
Connections for Efficient Neural Networks*, arXiv:1506.02626) keeps the weights of largest absolute value ``|w|``
and zeroes the rest. The fraction of zeros is the **sparsity**, from 0 (nothing pruned) to 1 (everything).

- **Unstructured** pruning (:func:`magnitude_mask`) zeroes single weights wherever they are. The matrix keeps its
  shape, so a dense matrix multiply does exactly the same work: the zeros save time only with a sparse format and a
  kernel that skips them, and a sparse format stores an index beside every value kept.
- **Structured** pruning (:func:`structured_mask`) zeroes whole rows: the output neurons of a layer, chosen by the
  L2 norm of their weights (Li et al. 2017, *Pruning Filters for Efficient ConvNets*, arXiv:1608.08710, use the L1
  norm of convolution filters). A neuron whose weights and bias are zero computes nothing, so it can be cut out and
  the matrices become smaller (:func:`shrink_feedforward`): fewer bytes and fewer multiply-adds with any kernel.

Both are checked in the tests against ``torch.nn.utils.prune`` (``l1_unstructured``, ``ln_structured`` and
``global_unstructured``). :func:`prune_model` prunes a copy of a model layer by layer (or with one global threshold,
:func:`global_magnitude_masks`) and :func:`sparsity_of` measures the result.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from lmbook.testing import check_choice
from lmbook.transformer import FeedForward

PRUNE_SCOPES = ("layer", "global")
"""Where :func:`prune_model` applies the sparsity: to each layer on its own (``"layer"``: every layer ends with the
same sparsity) or to all the layers' weights together (``"global"``: one magnitude threshold for every layer, so
layers of small weights lose more)."""

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _check_sparsity(sparsity) -> None:
    """Raise ValueError unless ``sparsity`` is a real number in [0, 1]."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be a fraction of zeros in [0, 1], got {sparsity!r}")


def _count_to_prune(sparsity: float, n: int) -> int:
    """How many of ``n`` entries a sparsity removes: ``round(sparsity * n)``, Python's rounding, as torch does."""
    return round(sparsity * n)


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest entries of the 1-D ``scores``; among entries equal to the ``k``-th smallest,
    the lower indices are taken first. ``kthvalue`` finds the threshold without sorting everything."""
    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    threshold = torch.kthvalue(scores, k).values
    below = (scores < threshold).nonzero().flatten()
    tied = (scores == threshold).nonzero().flatten()[: k - len(below)]  # nonzero() lists indices in order
    return torch.cat([below, tied])


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask that keeps the weights of largest magnitude ``|w|`` and removes a fraction ``sparsity`` of them.

    ``round(sparsity * weight.numel())`` weights are removed, as ``torch.nn.utils.prune.l1_unstructured`` does.
    Where several weights share the magnitude at the threshold, the ones earlier in memory order are removed first;
    torch picks among such ties with ``torch.topk``, whose order for equal values is not specified, so the two masks
    can differ only in which of the tied weights go, never in how many.

    Args:
        weight: any shape. sparsity: the fraction to remove, in [0, 1].

    Returns:
        A bool tensor of ``weight``'s shape: True where the weight is kept.
    """
    _check_sparsity(sparsity)
    k = _count_to_prune(sparsity, weight.numel())
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[_smallest(weight.detach().abs().flatten(), k)] = False  # by |w|: a large negative weight matters too
    return mask.view_as(weight)


def global_magnitude_masks(weights: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """One magnitude threshold for several tensors: remove a fraction ``sparsity`` of all their weights together.

    The same as ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``: the tensors are flattened and
    joined, :func:`magnitude_mask` is taken of the whole, and the result is cut back into one mask per tensor.

    Args:
        weights: the tensors (any shapes). sparsity: in [0, 1].

    Returns:
        A list of bool masks, one per tensor, of its shape (True: kept).
    """
    if not weights:
        raise ValueError("weights must hold at least one tensor")
    joined = torch.cat([w.detach().flatten() for w in weights])
    flat = magnitude_mask(joined, sparsity)
    return [m.view_as(w) for m, w in zip(flat.split([w.numel() for w in weights]), weights, strict=True)]


def structured_mask(weight: torch.Tensor, sparsity: float, dim: int = 0) -> torch.Tensor:
    """The mask that removes whole slices of ``weight`` along ``dim``: those of smallest L2 norm.

    For a ``nn.Linear`` weight ``(out, in)`` and ``dim=0`` a slice is a row, the incoming weights of one output
    neuron; for a convolution ``(C_out, C_in, k, k)`` it is one filter. ``round(sparsity * weight.shape[dim])``
    slices are removed, as ``torch.nn.utils.prune.ln_structured(..., n=2, dim=dim)`` does (ties: lower index first,
    see :func:`magnitude_mask`).

    Args:
        weight: at least 1-D. sparsity: the fraction of slices to remove, in [0, 1]. dim: the axis of the slices.

    Returns:
        A bool tensor of ``weight``'s shape, constant along every slice (True: kept).
    """
    _check_sparsity(sparsity)
    if not -weight.dim() <= dim < weight.dim():
        raise ValueError(f"dim must be an axis of a weight of shape {tuple(weight.shape)}, got dim={dim}")
    dim = dim % weight.dim()
    others = [d for d in range(weight.dim()) if d != dim]
    norms = torch.linalg.vector_norm(weight.detach(), ord=2, dim=others) if others else weight.detach().abs()
    keep = torch.ones(weight.shape[dim], dtype=torch.bool, device=weight.device)
    keep[_smallest(norms, _count_to_prune(sparsity, weight.shape[dim]))] = False
    shape = [1] * weight.dim()
    shape[dim] = -1
    return keep.view(shape).expand_as(weight).clone()


# ----- whole models -------------------------------------------------------------------------------------------


def prunable_layers(model: nn.Module, structured: bool = False) -> list[str]:
    """The names of the layers that :func:`prune_model` prunes unless told otherwise.

    - A model with an ``encoder`` (BERT, :class:`lmbook.finetune.BertClassifier`): unstructured, every
      ``nn.Linear`` inside the encoder (attention's ``W_q``, ``W_k``, ``W_v``, ``W_o`` and the feed-forward
      ``fc1`` and ``fc2``); structured, the first layer ``fc1`` of every :class:`lmbook.transformer.FeedForward`
      there, whose rows are the feed-forward neurons. The embeddings (half of MiniLM's parameters, and a look-up
      that zeros would not speed up), the pooler and the classification head are left alone.
    - Any other model: every ``nn.Linear`` and convolution except the last one, the output layer.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, _WEIGHTED)]
    in_encoder = [name for name in names if "encoder" in name.split(".")]
    if not in_encoder:
        return names[:-1]
    if not structured:
        return in_encoder
    ffn = [name for name, module in model.named_modules() if isinstance(module, FeedForward)]
    return [f"{name}.fc1" for name in ffn if f"{name}.fc1" in in_encoder]


def prune_model(
    model: nn.Module,
    sparsity: float,
    structured: bool = False,
    scope: str = "layer",
    layers: Sequence[str] | None = None,
    keep_masks: bool = False,
) -> nn.Module:
    """A pruned deep copy of ``model`` (the model itself is left unchanged).

    Unstructured: each layer's weight is multiplied by its :func:`magnitude_mask` (``scope="layer"``) or by its
    share of one :func:`global_magnitude_masks` (``scope="global"``). Structured: a fraction ``sparsity`` of each
    layer's output neurons (rows, :func:`structured_mask` with ``dim=0``) is removed, weights and bias, so the
    neuron's output is exactly zero before the activation (a batch norm right after the layer would still add its
    shift to it: fold the norm into the layer first if the channel is to be cut out).

    Args:
        model: any ``nn.Module``. sparsity: in [0, 1]. structured: neurons (True) or single weights (False).
        scope: one of :data:`PRUNE_SCOPES`; ``"global"`` only for unstructured pruning.
        layers: names of the ``nn.Linear``/convolution layers to prune; None: :func:`prunable_layers`.
        keep_masks: attach the masks with ``torch.nn.utils.prune.custom_from_mask``, so that fine-tuning the copy
            keeps the pruned weights at zero (the weight becomes ``weight_orig * weight_mask``); call
            :func:`make_permanent` afterwards. False: the zeros are written into the weights.

    Returns:
        The pruned copy, in the same training/evaluation mode as ``model``.
    """
    _check_sparsity(sparsity)
    check_choice(scope, PRUNE_SCOPES, "scope")
    if structured and scope == "global":
        raise ValueError("scope='global' is for unstructured pruning; structured pruning removes neurons per layer")
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    names = prunable_layers(pruned, structured) if layers is None else list(layers)
    for name in names:
        check_choice(name, [n for n, m in modules.items() if isinstance(m, _WEIGHTED)], "layer")
    targets = [modules[name] for name in names]
    if structured:
        weight_masks = [structured_mask(m.weight, sparsity, dim=0) for m in targets]
    elif scope == "global":
        weight_masks = global_magnitude_masks([m.weight for m in targets], sparsity)
    else:
        weight_masks = [magnitude_mask(m.weight, sparsity) for m in targets]
    for module, mask in zip(targets, weight_masks, strict=True):
        masks = {"weight": mask}
        if structured and module.bias is not None:
            masks["bias"] = mask.flatten(1)[:, 0]  # a removed neuron loses its bias too
        for param_name, m in masks.items():
            if keep_masks:
                torch_prune.custom_from_mask(module, param_name, m)
            else:
                with torch.no_grad():
                    getattr(module, param_name).mul_(m)
    return pruned


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the masks that ``prune_model(..., keep_masks=True)`` attached into plain weights, in place; returns
    ``model``. Afterwards the model has ordinary ``weight`` parameters again (and its zeros can move if trained)."""
    for module in model.modules():
        for param_name in ("weight", "bias"):
            if torch_prune.is_pruned(module) and hasattr(module, f"{param_name}_mask"):
                torch_prune.remove(module, param_name)
    return model


def sparsity_of(model_or_tensor: nn.Module | torch.Tensor, layers: Sequence[str] | None = None) -> float:
    """The fraction of zeros: in a tensor, or in a model's weight matrices.

    For a model, the weights of every ``nn.Linear`` and convolution (or of ``layers``, by name) are counted
    together; biases, norms and embeddings are not. A layer pruned with masks attached counts its masked weight.
    """
    if isinstance(model_or_tensor, torch.Tensor):
        if model_or_tensor.numel() == 0:
            raise ValueError("the sparsity of an empty tensor is undefined")
        return float((model_or_tensor == 0).sum()) / model_or_tensor.numel()
    if not isinstance(model_or_tensor, nn.Module):
        raise TypeError(f"expected an nn.Module or a torch.Tensor, got {type(model_or_tensor).__name__}")
    modules = dict(model_or_tensor.named_modules())
    weighted = [n for n, m in modules.items() if isinstance(m, _WEIGHTED)]
    names = weighted if layers is None else list(layers)
    if not names:
        raise ValueError("the model has no Linear or convolution layer to measure")
    zeros = total = 0
    for name in names:
        check_choice(name, weighted, "layer")
        w = modules[name].weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total


def shrink_feedforward(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose feed-forward layers have lost their pruned neurons: smaller matrices.

    In each :class:`lmbook.transformer.FeedForward`, a neuron whose row of ``fc1.weight`` and ``fc1.bias`` entry are
    zero outputs ``GELU(0) = 0``, so its column of ``fc2.weight`` multiplies zero. Removing the row and the column
    gives ``fc1: C -> d_ff'`` and ``fc2: d_ff' -> C`` with the same outputs (up to the order of the additions).
    Neurons with a nonzero weight or bias are kept, however small.
    """
    small = copy.deepcopy(model)
    for ffn in small.modules():
        if not isinstance(ffn, FeedForward):
            continue
        fc1, fc2 = ffn.fc1, ffn.fc2
        alive = (fc1.weight != 0).any(dim=1)  # (d_ff,)
        if fc1.bias is not None:
            alive |= fc1.bias != 0
        keep = alive.nonzero().flatten()
        new1 = nn.Linear(fc1.in_features, len(keep), bias=fc1.bias is not None, device=keep.device,
                         dtype=fc1.weight.dtype)  # fmt: skip
        new2 = nn.Linear(len(keep), fc2.out_features, bias=fc2.bias is not None, device=keep.device,
                         dtype=fc2.weight.dtype)  # fmt: skip
        with torch.no_grad():
            new1.weight.copy_(fc1.weight[keep])  # (d_ff', C): the kept rows
            if fc1.bias is not None:
                new1.bias.copy_(fc1.bias[keep])
            new2.weight.copy_(fc2.weight[:, keep])  # (C, d_ff'): the matching columns
            if fc2.bias is not None:
                new2.bias.copy_(fc2.bias)
        ffn.fc1, ffn.fc2 = new1, new2
    return small
