"""Where the bytes go when a trained model answers: its weights, its activations and a decoder's KV cache.

Introduced in chapter 10, Small and fast models, section 1, whose later sections make each of these smaller.
At inference there are no gradients and no optimiser states (those are chapter 9's training memory,
:mod:`lmbook.memory`); what is left is

- the **weights**: :func:`bytes_by_dtype` counts them in memory, split by number format (a quantised weight of
  torchao is opened up into its integers and its scales), and :func:`saved_bytes` counts the bytes of the file
  that ``torch.save`` writes;
- the **activations** of one forward pass: :func:`live_activation_bytes` watches every tensor that the pass
  creates and reports the most bytes alive at once (the peak), the largest single tensor and the sum of all of
  them. Without a backward pass to serve, torch frees each intermediate as soon as nothing needs it, so the
  peak is far below the sum;
- the **KV cache** of a decoder. A GPT writes one token at a time; without a cache every new token runs the
  whole text through the model again. Each layer's keys and values of the tokens already read do not change
  (the causal mask keeps earlier positions from seeing later ones), so :class:`KVCache` keeps them and
  :func:`cached_forward` computes only the new tokens, with the model's own modules and parameters. The cache
  costs :func:`kv_cache_bytes` = ``2 L B H T D`` numbers, which grows with the text and, for a long context or a
  large batch, can outgrow the weights.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lmbook.attention import causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from lmbook.gpt import GPT
from lmbook.loop import evaluation_mode
from lmbook.memory import tensor_bytes
from lmbook.sampling import check_sampling, sample_next
from lmbook.testing import check_shape

# ----- weights ---------------------------------------------------------------------------------------------------


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


def _plain_tensors(t: torch.Tensor) -> Iterable[torch.Tensor]:
    """The ordinary tensors that hold ``t``'s numbers: ``t`` itself, or the parts of a tensor subclass.

    A torchao quantised weight reports the dtype of the float weight it stands for (float32) and a storage of that
    size, but holds an int8 tensor and float scales inside; ``__tensor_flatten__`` names those parts.
    """
    if type(t) in (torch.Tensor, nn.Parameter) or not hasattr(t, "__tensor_flatten__"):
        yield t
        return
    names, _ = t.__tensor_flatten__()
    for name in names:
        yield from _plain_tensors(getattr(t, name))


def bytes_by_dtype(model: nn.Module) -> dict[str, int]:
    """Bytes of a model's parameters and buffers in memory, by number format, e.g. ``{"float32": 90_866_688}``.

    Each storage is counted once (:func:`lmbook.memory.tensor_bytes`), so tied weights count once; a torchao
    quantised weight counts as its parts (``int8`` data, ``float32`` scales, ...). Formats sorted by name.
    """
    by_dtype: dict[str, list[torch.Tensor]] = {}
    for t in (*model.parameters(), *model.buffers()):
        for part in _plain_tensors(t):
            by_dtype.setdefault(str(part.dtype).removeprefix("torch."), []).append(part)
    return {dtype: tensor_bytes(tensors) for dtype, tensors in sorted(by_dtype.items())}


# ----- activations -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveActivations:
    """The memory of the tensors that one call creates, as measured by :func:`live_activation_bytes`.

    Attributes:
        peak: the most bytes alive at once. largest: the bytes of the largest single tensor.
        largest_op: the torch operation that made it, e.g. ``"aten.bmm.default"``.
        total: the bytes of every tensor created, as if none were ever freed. n_tensors: how many were created.
    """

    peak: int
    largest: int
    largest_op: str
    total: int
    n_tensors: int


class _LiveTensors(TorchDispatchMode):
    """Sees the output of every torch operation; counts each new storage while a tensor still looks into it."""

    def __init__(self, exclude: Iterable[torch.Tensor]) -> None:
        super().__init__()
        self.owned = {t.untyped_storage().data_ptr() for t in exclude}
        self.refs: dict[int, int] = {}  # storage address -> live tensors that look into it
        self.nbytes: dict[int, int] = {}
        self.live = self.peak = self.total = self.largest = self.n_tensors = 0
        self.largest_op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, str(func))
        return out

    def _track(self, t: torch.Tensor, op: str) -> None:
        key = t.untyped_storage().data_ptr()
        if key == 0 or key in self.owned:  # an empty tensor, or a view of a weight or an input
            return
        if key not in self.refs:  # a new block of memory
            n = t.untyped_storage().nbytes()
            self.refs[key], self.nbytes[key] = 0, n
            self.live += n
            self.total += n
            self.n_tensors += 1
            self.peak = max(self.peak, self.live)
            if n > self.largest:
                self.largest, self.largest_op = n, op
        self.refs[key] += 1
        # The tensor's Python object lives as long as the tensor itself: when the last one that looks into this
        # storage is freed, so is the storage.
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.nbytes.pop(key)
            del self.refs[key]


def live_activation_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> LiveActivations:
    """The memory of the tensors that ``fn()`` creates: their peak alive at once, the largest one, and their sum.

    Every torch operation's output is seen (with a ``TorchDispatchMode``); a new storage is counted from the
    operation that makes it until the last tensor looking into it is freed. Views of the tensors in ``exclude``
    (pass the model's parameters and the inputs) are not counted, as they add no memory. The result ``fn``
    returns is still alive at the end, so it is part of the peak. Run it under ``torch.inference_mode()`` (or
    ``no_grad``) to measure inference: with autograd on, the tensors saved for backward stay alive too.
    """
    tracker = _LiveTensors(exclude)
    with tracker:
        fn()
    return LiveActivations(tracker.peak, tracker.largest, tracker.largest_op, tracker.total, tracker.n_tensors)


# ----- the KV cache of a decoder ---------------------------------------------------------------------------------


def kv_cache_bytes(
    n_layers: int, n_heads: int, d_head: int, seq_len: int, batch_size: int = 1, bytes_per_number: float = 4
) -> float:
    """Bytes of a decoder's KV cache: a key and a value of ``D`` numbers per head, layer, token and sequence.

    ``2 * L * H * D * T * B * bytes_per_number``; with ``H * D = d_model`` it is ``2 L C`` numbers per token.
    """
    for name, value in (("n_layers", n_layers), ("n_heads", n_heads), ("d_head", d_head), ("seq_len", seq_len),
                        ("batch_size", batch_size)):  # fmt: skip
        if value < 0:
            raise ValueError(f"{name} must be at least 0, got {value}")
    if bytes_per_number <= 0:
        raise ValueError(f"bytes_per_number must be positive, got {bytes_per_number}")
    return 2 * n_layers * n_heads * d_head * seq_len * batch_size * bytes_per_number


class KVCache:
    """Every layer's keys and values of the tokens read so far, in tensors allocated once for ``capacity`` tokens.

    Args:
        n_layers, batch_size, n_heads, capacity, d_head: the sizes ``L``, ``B``, ``H``, ``T_max``, ``D``.
        dtype, device: of the stored numbers (the model's).

    Attributes:
        keys, values: ``(L, B, H, T_max, D)``; positions ``0 .. length - 1`` are filled.
        length: tokens stored so far.
    """

    def __init__(
        self, n_layers: int, batch_size: int, n_heads: int, capacity: int, d_head: int, dtype=None, device=None
    ) -> None:
        shape = (n_layers, batch_size, n_heads, capacity, d_head)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @classmethod
    def for_model(cls, model: GPT, batch_size: int, capacity: int | None = None) -> KVCache:
        """An empty cache for ``model``, for ``capacity`` tokens (the model's ``max_len`` by default)."""
        c = model.config
        capacity = c.max_len if capacity is None else capacity
        if not 1 <= capacity <= c.max_len:
            raise ValueError(f"capacity must be between 1 and the model's max_len={c.max_len}, got {capacity}")
        weight = model.token_embedding.weight
        return cls(c.n_layers, batch_size, c.n_heads, capacity, c.d_model // c.n_heads, weight.dtype, weight.device)

    @property
    def capacity(self) -> int:
        """The most tokens the cache can hold, ``T_max``."""
        return self.keys.shape[3]

    @property
    def nbytes(self) -> int:
        """Bytes of memory that the cache holds (both tensors, whole, however much is filled)."""
        return tensor_bytes([self.keys, self.values])

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new tokens' keys and values of one layer; return all the keys and values so far.

        Args:
            layer: which layer, ``0 .. L - 1``. k, v: ``(B, H, T_new, D)``, the tokens at positions
                ``length .. length + T_new - 1``.

        Returns:
            ``(K, V)``, each ``(B, H, length + T_new, D)``: views into the cache, no copy. Call :meth:`advance`
            once every layer has been updated.
        """
        _, B, H, _, D = self.keys.shape
        dims: dict[str, int] = {}
        check_shape(k, (B, H, "T_new", D), "k", dims)
        check_shape(v, (B, H, "T_new", D), "v", dims)
        end = self.length + dims["T_new"]
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} tokens; {self.length} + {dims['T_new']} do not fit")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark ``n`` more tokens as stored (after every layer's :meth:`update`)."""
        self.length += n


def cached_forward(model: GPT, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """The logits of ``model`` for new tokens ``idx`` ``(B, T_new)`` that follow the ``cache.length`` cached ones.

    The same computation as ``model(all_tokens)[:, -T_new:]``, block by block with the model's own modules, except
    that each layer's keys and values are computed for the new tokens only and the earlier ones are read from the
    cache (which then holds the new ones too). A new token at position ``p`` attends to positions ``0 .. p``.
    Dropout is not applied: call it on a model in evaluation mode.

    Returns:
        logits of shape ``(B, T_new, V)``.
    """
    c = model.config
    B, T_new = check_shape(idx, (cache.keys.shape[1], "T_new"), "idx").shape
    start, end = cache.length, cache.length + T_new
    if end > c.max_len:
        raise ValueError(f"the text would have {end} tokens, more than the model's max_len={c.max_len}")
    positions = torch.arange(start, end, device=idx.device)
    x = model.token_embedding(idx) + model.position_embedding.embedding(positions)  # (B, T_new, C)
    # New token i (position start + i) may attend to the cached keys 0 .. start - 1 and to new keys 0 .. i.
    mask = causal_mask(end, idx.device)[start:end]  # (T_new, start + T_new)
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        h = block.ln1(x)  # pre-LN, as the GPT's blocks
        q = split_heads(attn.W_q(h), attn.n_heads)  # (B, T_new, C) -> (B, H, T_new, D)
        k = split_heads(attn.W_k(h), attn.n_heads)  # (B, H, T_new, D)
        v = split_heads(attn.W_v(h), attn.n_heads)  # (B, H, T_new, D)
        K, V = cache.update(layer, k, v)  # (B, H, start + T_new, D) each
        out = scaled_dot_product_attention(q, K, V, mask)  # (B, H, T_new, D)
        x = x + attn.W_o(merge_heads(out))  # (B, T_new, C)
        x = x + block.ffn(block.ln2(x))
    cache.advance(T_new)
    return model.lm_head(model.ln_f(x))  # (B, T_new, C) -> (B, T_new, V)


@torch.no_grad()
def generate_cached(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:meth:`lmbook.gpt.GPT.generate` with a KV cache: ``idx`` ``(B, T)`` -> ``(B, T + max_new_tokens)``.

    The prompt is read in one pass that fills the cache; then each new token is one pass over that token alone.
    The tokens are those of ``model.generate`` with the same arguments (and the same ``generator`` state), as long
    as the whole text fits in the model's ``max_len`` positions (``generate`` then slides a window, which a cache
    of learned positions cannot follow).
    """
    B, T = check_shape(idx, ("B", "T"), "idx").shape
    check_sampling(temperature, top_k)
    if T + max_new_tokens > model.config.max_len:
        raise ValueError(
            f"prompt T={T} plus max_new_tokens={max_new_tokens} exceeds the model's max_len={model.config.max_len}"
        )
    cache = KVCache.for_model(model, B, T + max_new_tokens)
    with evaluation_mode(model):
        logits = cached_forward(model, idx, cache)[:, -1]  # (B, V): the last prompt position
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)  # (B, T) -> (B, T + 1)
            if step < max_new_tokens - 1:
                logits = cached_forward(model, nxt, cache)[:, -1]
    return idx
