"""Attention from scratch: scaled dot-product attention, masks, one attention head, and multi-head attention.

Introduced in chapter 7, Attention and the Transformer. Every token of a sequence asks a question (its
**query**), every token offers a description of itself (its **key**) and a content (its **value**). Each query is
compared with every key by a dot product; a softmax turns one query's scores into **attention weights** that are
positive and sum to 1; the output for that query is the weighted average of the values::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D)) V

Shapes follow one convention throughout the book's transformer code: ``B`` batch, ``T`` time (sequence length),
``C`` model width, ``H`` heads, ``D`` head size (``C = H * D``). Three details decide whether an implementation
is right, and the tests check each of them against ``torch.nn.functional.scaled_dot_product_attention``:

- the scores are divided by ``sqrt(D)`` (without it, long vectors give huge scores and a saturated softmax);
- a mask sets the forbidden scores to ``-inf`` *before* the softmax, so that the remaining weights still sum
  to 1 (zeroing weights after the softmax leaves rows that no longer sum to 1);
- the output is ``weights @ V``: row ``i`` of the weights mixes the rows (tokens) of ``V``. ``V @ weights``
  mixes features instead, and only has a shape that works when ``T`` happens to equal ``D``.

Masks are boolean tensors in which **True means "may attend"**. (``torch.nn.MultiheadAttention`` uses the
opposite convention for its boolean masks; :func:`scaled_dot_product_attention` of torch.nn.functional uses
this one.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.loop import evaluation_mode
from lmbook.testing import ShapeError, check_shape


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> None:
    """A mask must be boolean and broadcast to the scores' shape without making it larger."""
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected a boolean tensor (True = may attend), got dtype {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != scores_shape:
        # A (B, 1, 1, T) mask against (B, T, T) scores would silently broadcast to (B, B, T, T).
        raise ShapeError(
            f"mask: shape {tuple(mask.shape)} does not broadcast to the scores' shape {tuple(scores_shape)}"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    dropout: float = 0.0,
    return_weights: bool = False,
):
    """Scaled dot-product attention, written out: scores, mask, softmax, weighted sum of the values.

    Args:
        q: queries, shape ``(..., T_q, D)``; ``...`` is any number of batch axes, e.g. ``(B, H)``.
        k: keys, shape ``(..., T_k, D)``. v: values, shape ``(..., T_k, D_v)``.
        mask: optional boolean tensor broadcastable to ``(..., T_q, T_k)``; True where query ``i`` may attend
            to key ``j``. Masked scores become ``-inf`` before the softmax. A query whose whole row is masked
            attends to nothing: its weights and its output are 0 (not NaN).
        scale: multiplies the scores; ``1 / sqrt(D)`` by default.
        dropout: probability of zeroing each attention weight (after the softmax, before the values are mixed),
            as ``torch.nn.functional.dropout`` in training mode; 0 turns it off.
        return_weights: also return the attention weights (before dropout).

    Returns:
        ``out`` of shape ``(..., T_q, D_v)``, and ``weights`` of shape ``(..., T_q, T_k)`` if ``return_weights``.
    """
    dims: dict[str, int] = {}
    check_shape(q, (*q.shape[:-2], "T_q", "D"), "q", dims)
    check_shape(k, (*q.shape[:-2], "T_k", "D"), "k", dims)
    check_shape(v, (*q.shape[:-2], "T_k", "D_v"), "v", dims)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, D) @ (..., D, T_k) -> (..., T_q, T_k)
    if mask is not None:
        _check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))  # forbidden pairs get no weight after the softmax
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    if mask is not None and not bool(mask.any(dim=-1).all()):
        # A row with every key masked is softmax(-inf, ..., -inf) = NaN; it attends to nothing instead.
        weights = weights.masked_fill(~mask, 0.0)
    mixed = F.dropout(weights, dropout) if dropout > 0 else weights
    out = mixed @ v  # (..., T_q, T_k) @ (..., T_k, D_v) -> (..., T_q, D_v): row i mixes the values of all tokens
    return (out, weights) if return_weights else out


def causal_mask(T: int, device=None) -> torch.Tensor:
    """The ``(T, T)`` boolean mask of a left-to-right model: position ``i`` may attend to positions ``j <= i``.

    Example:
        >>> causal_mask(3).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(lengths, T: int, device=None) -> torch.Tensor:
    """The ``(B, 1, 1, T)`` boolean key mask of a padded batch: True on the real tokens, False on padding.

    Args:
        lengths: the real length of each sequence, shape ``(B,)`` (a list or tensor of ints, each ``<= T``).
        T: the padded length.

    The two singleton axes let it broadcast against multi-head scores ``(B, H, T, T)``: every head and every
    query ignores the padded keys. For single-head scores ``(B, T, T)`` use ``padding_mask(...)[:, 0]``,
    shape ``(B, 1, T)``.
    """
    lengths = torch.as_tensor(lengths, device=device)
    check_shape(lengths, ("B",), "lengths")
    if bool((lengths > T).any()) or bool((lengths < 0).any()):
        raise ValueError(f"lengths must be between 0 and T={T}, got {lengths.tolist()}")
    real = torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)
    return real[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Combine boolean masks: a pair may attend only if every mask allows it (logical AND, with broadcasting).

    ``None`` entries are skipped; the result is None when all are None. Example: ``combine_masks(causal_mask(T),
    padding_mask(lengths, T))`` has shape ``(B, 1, T, T)``: causal, and never attending to padding.
    """
    result = None
    for m in masks:
        if m is not None:
            result = m if result is None else result & m
    return result


class SelfAttention(nn.Module):
    """One attention head: queries, keys and values are three learned linear maps of the same tokens.

    Args:
        d_model: width ``C`` of the input tokens.
        d_head: head size ``D``, the width of queries, keys, values and of the output; ``d_model`` by default.
        bias: whether the three projections have biases (none by default: ``Q = X W_q``, as in the chapter).

    Attributes:
        W_q, W_k, W_v: ``nn.Linear(C, D)`` each. d_model, d_head: the sizes ``C`` and ``D``.
        record: set to True to keep the attention weights of every forward pass in ``last_weights``.
        last_weights: the latest attention weights, shape ``(B, T, T)`` (detached), or None.
    """

    causal = False

    def __init__(self, d_model: int, d_head: int | None = None, *, bias: bool = False) -> None:
        super().__init__()
        d_head = d_model if d_head is None else d_head
        self.d_model, self.d_head = d_model, d_head
        self.W_q = nn.Linear(d_model, d_head, bias=bias)
        self.W_k = nn.Linear(d_model, d_head, bias=bias)
        self.W_v = nn.Linear(d_model, d_head, bias=bias)
        self.record = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` of shape ``(B, T, C)`` -> ``(B, T, D)``; ``mask`` broadcastable to ``(B, T, T)`` (True = attend)."""
        B, T, _ = check_shape(x, ("B", "T", self.d_model), "x").shape
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # (B, T, C) -> (B, T, D) each
        if self.causal:
            mask = combine_masks(causal_mask(T, x.device), mask)  # (T, T), or combined with the caller's mask
        out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)  # (B, T, D), (B, T, T)
        if self.record:
            self.last_weights = weights.detach()
        return out


class CausalSelfAttention(SelfAttention):
    """One attention head that cannot look ahead: token ``t`` attends only to tokens ``0 .. t`` (a causal mask)."""

    causal = True


def split_heads(x: torch.Tensor, H: int) -> torch.Tensor:
    """Cut the width of every token into ``H`` heads: ``(B, T, C)`` -> ``(B, H, T, D)`` with ``D = C // H``."""
    B, T, C = check_shape(x, ("B", "T", "C"), "x").shape
    if C % H:
        raise ValueError(f"the width C={C} must be divisible by the number of heads H={H}")
    return x.view(B, T, H, C // H).transpose(1, 2)  # (B, T, C) -> (B, T, H, D) -> (B, H, T, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo :func:`split_heads`: ``(B, H, T, D)`` -> ``(B, T, H * D)``, the heads side by side in each token."""
    B, H, T, D = check_shape(x, ("B", "H", "T", "D"), "x").shape
    return x.transpose(1, 2).reshape(B, T, H * D)  # (B, H, T, D) -> (B, T, H, D) -> (B, T, C)


class MultiHeadAttention(nn.Module):
    """``H`` attention heads side by side, each of size ``D = C // H``, followed by an output projection.

    The heads are computed together: one ``C -> C`` projection each for queries, keys and values, whose outputs
    are cut into heads (:func:`split_heads`), attended in parallel, put back side by side (:func:`merge_heads`)
    and mixed by ``W_o``. It costs the same as one head of width ``C`` but lets each head attend differently.

    Args:
        d_model: model width ``C``. n_heads: number of heads ``H`` (must divide ``d_model``).
        causal: apply a causal mask (a decoder, such as GPT) or not (an encoder, such as BERT).
        bias: biases in the four projections.
        dropout: dropout on the attention weights while training (as ``nn.MultiheadAttention``).
        fused: the fast path: one matrix product with ``W_q``, ``W_k``, ``W_v`` stacked makes Q, K and V, and
            ``torch.nn.functional.scaled_dot_product_attention`` (kernels such as FlashAttention on a GPU) replaces
            :func:`scaled_dot_product_attention`; the same result up to rounding. Attention weights are only
            available from the from-scratch path, so recording always uses it.

    Attributes:
        W_q, W_k, W_v, W_o: ``nn.Linear(C, C)`` each. d_model, n_heads, d_head: the sizes ``C``, ``H`` and ``D``.
        record, last_weights: as in :class:`SelfAttention`; ``last_weights`` has shape ``(B, H, T, T)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.causal, self.dropout, self.fused = causal, dropout, fused
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)
        self.record = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` of shape ``(B, T, C)`` -> ``(B, T, C)``; ``mask`` broadcastable to ``(B, H, T, T)`` (True = attend)."""
        B, T, _ = check_shape(x, ("B", "T", self.d_model), "x").shape
        if mask is not None:
            _check_mask(mask, torch.Size((B, self.n_heads, T, T)))
        if self.fused and not self.record:
            return self._fused_forward(x, mask)  # the same numbers from torch's kernels
        q = split_heads(self.W_q(x), self.n_heads)  # (B, T, C) -> (B, H, T, D)
        k = split_heads(self.W_k(x), self.n_heads)  # (B, T, C) -> (B, H, T, D)
        v = split_heads(self.W_v(x), self.n_heads)  # (B, T, C) -> (B, H, T, D)
        p = self.dropout if self.training else 0.0
        if self.causal:
            mask = combine_masks(causal_mask(T, x.device), mask)  # (T, T) broadcasts over B and H
        out, weights = scaled_dot_product_attention(q, k, v, mask, dropout=p, return_weights=True)
        if self.record:
            self.last_weights = weights.detach()  # (B, H, T, T)
        return self.W_o(merge_heads(out))  # (B, H, T, D) -> (B, T, C) -> (B, T, C)

    def _fused_forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # One (B*T, C) @ (C, 3C) product instead of three (C, C) ones: fewer, larger kernels, and one weight
        # gradient product instead of three in the backward pass. W_q, W_k, W_v stay the parameters, so
        # checkpoints and the from-scratch path are unchanged; the stacking costs one small copy per call.
        C, T = self.d_model, x.shape[1]
        weight = torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight])  # 3 x (C, C) -> (3C, C)
        bias = None if self.W_q.bias is None else torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias])
        q, k, v = (split_heads(t, self.n_heads) for t in F.linear(x, weight, bias).split(C, dim=-1))  # (B, H, T, D)
        p = self.dropout if self.training else 0.0
        is_causal = self.causal and mask is None  # the kernel skips the masked half itself; no mask is built
        if self.causal and mask is not None:
            mask = combine_masks(causal_mask(T, x.device), mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)
        return self.W_o(merge_heads(out))  # (B, H, T, D) -> (B, T, C) -> (B, T, C)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (same ``d_model`` and ``n_heads``) into this module.

        After loading, ``self(x)`` equals ``mha(x, x, x)[0]`` for ``batch_first=True`` and the same mask. Returns
        ``self``. The torch module stores the three input projections stacked in one ``(3C, C)`` matrix
        ``in_proj_weight`` (rows: queries, then keys, then values) and one ``(3C,)`` bias.
        """
        C = self.d_model
        if mha.embed_dim != C or mha.num_heads != self.n_heads:
            raise ValueError(f"need embed_dim={C}, num_heads={self.n_heads}; got {mha.embed_dim}, {mha.num_heads}")
        if not mha._qkv_same_embed_dim:
            raise ValueError("only nn.MultiheadAttention without kdim/vdim (one stacked in_proj_weight) is supported")
        if (mha.in_proj_bias is None) != (self.W_q.bias is None):
            raise ValueError("bias mismatch: build both modules with the same bias setting")
        w = check_shape(mha.in_proj_weight, (3 * C, C), "in_proj_weight")
        # No transposes: nn.Linear and nn.MultiheadAttention both store a weight as (out_features, in_features)
        # and compute x @ weight.T + bias, so each (C, C) block of rows is a Linear weight as it is.
        for i, layer in enumerate((self.W_q, self.W_k, self.W_v)):
            layer.weight.copy_(w[i * C : (i + 1) * C])  # rows i*C .. (i+1)*C - 1: (C, C) = (out, in)
            if layer.bias is not None:
                layer.bias.copy_(check_shape(mha.in_proj_bias, (3 * C,), "in_proj_bias")[i * C : (i + 1) * C])
        self.W_o.weight.copy_(check_shape(mha.out_proj.weight, (C, C), "out_proj.weight"))  # (out, in) as well
        if self.W_o.bias is not None:
            self.W_o.bias.copy_(mha.out_proj.bias)
        return self


# ----- looking inside: every head's attention weights ------------------------------------------------------------

_ATTENTION_TYPES = (SelfAttention, MultiHeadAttention)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The lmbook attention modules (:class:`SelfAttention`, :class:`MultiHeadAttention`) of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, _ATTENTION_TYPES)]


def _as_model_input(tokens) -> torch.Tensor:
    """Token ids as a ``(1, T)`` batch; any other tensor (e.g. ``(B, T, C)`` vectors) is passed on unchanged."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() == 1 and not tokens.is_floating_point():
            return tokens[None, :]  # (T,) -> (1, T)
        return tokens
    return torch.as_tensor(list(tokens), dtype=torch.long)[None, :]  # list of ids -> (1, T)


@torch.no_grad()
def attention_maps(model: nn.Module, tokens) -> dict[tuple[int, int], np.ndarray]:
    """Every head's attention weights for one input: ``{(layer, head): weights of shape (T, T)}``.

    Works for any ``nn.Module`` that contains lmbook attention modules: each :class:`SelfAttention` or
    :class:`MultiHeadAttention` found by ``model.modules()`` is one layer, numbered in that order. Recording is
    switched on for the one forward pass (in evaluation mode, without gradients) and everything is put back as
    it was afterwards.

    Args:
        model: the model, e.g. a :class:`lmbook.gpt.GPT`.
        tokens: the input of the first sequence: token ids as a list or a ``(T,)`` tensor (made a batch of
            one), or any tensor the model accepts, e.g. ``(B, T, C)`` vectors for a bare attention module.

    Returns:
        Row ``i`` of ``maps[(layer, head)]`` holds how much position ``i`` attends to each position (it sums
        to 1); the weights of the first sequence of the batch, as float64 numpy arrays.
    """
    modules = attention_modules(model)
    if not modules:
        name = type(model).__name__
        raise ValueError(f"{name} contains no lmbook attention module (SelfAttention, MultiHeadAttention)")
    x = _as_model_input(tokens)
    try:
        x = x.to(next(model.parameters()).device)
    except StopIteration:
        pass
    previous = [m.record for m in modules]
    maps: dict[tuple[int, int], np.ndarray] = {}
    try:
        for m in modules:
            m.record = True
            m.last_weights = None
        with evaluation_mode(model):
            model(x)
        for layer, m in enumerate(modules):
            if m.last_weights is None:
                continue  # a module the forward pass did not use
            w = m.last_weights[0].double().cpu().numpy()  # (H, T, T) or (T, T) for a single head
            heads = w[None] if w.ndim == 2 else w
            for head, weights in enumerate(heads):
                maps[(layer, head)] = weights
    finally:
        for m, rec in zip(modules, previous, strict=True):
            m.record = rec
    return maps
