"""Positional encodings: how a transformer learns where each token is.

Introduced in chapter 7, Attention and the Transformer. Attention treats its input as a *set*: permute the
tokens and the outputs are permuted the same way, nothing else changes. To know that "dog bites man" differs
from "man bites dog", each token gets a vector that depends on its position, added to its embedding:

- :func:`sinusoidal_encoding`, the fixed encoding of Vaswani et al. (2017, "Attention Is All You Need"):
  sines and cosines of the position at geometrically spaced frequencies, like the hands of many clocks
  turning at different speeds;
- :class:`LearnedPositionalEmbedding`, one trained vector per position (GPT-2, BERT), which cannot go beyond
  the longest position seen in training.

:func:`position_similarity` compares every position with every other one; for the sinusoidal encoding the
similarity depends only on the distance between positions and falls off with it.
"""

from __future__ import annotations

import torch
from torch import nn

from lmbook.testing import check_shape


def sinusoidal_encoding(T: int, C: int, base: float = 10000.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``(T, C)`` sinusoidal position encoding: row ``pos`` is the vector added to the token at ``pos``.

    Column pairs ``(2i, 2i + 1)`` hold ``sin(pos * w_i)`` and ``cos(pos * w_i)`` with frequency
    ``w_i = base ** (-2i / C)``: the first pair turns once every ``2 pi`` positions, the last about once every
    ``2 pi * base`` positions. For odd ``C`` the last column is a sine without its cosine.

    Example:
        >>> sinusoidal_encoding(2, 4)
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    if T < 1 or C < 1:
        raise ValueError(f"T and C must be positive, got T={T}, C={C}")
    pos = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    freq = base ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # (ceil(C/2),): w_i for i = 0, 1, ...
    angles = pos * freq[None, :]  # (T, 1) * (1, ceil(C/2)) -> (T, ceil(C/2))
    P = torch.empty(T, C, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angles)  # even columns
    P[:, 1::2] = torch.cos(angles[:, : C // 2])  # odd columns
    return P.to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """The fixed encoding of :func:`sinusoidal_encoding` as a module: ``forward(T) -> (T, C)``; nothing to train.

    Args:
        max_len: the most positions it will be asked for. d_model: width ``C``.
    """

    def __init__(self, max_len: int, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.register_buffer("table", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def forward(self, T: int) -> torch.Tensor:
        if T > self.max_len:
            raise ValueError(f"asked for {T} positions, but the encoding was built for at most max_len={self.max_len}")
        return self.table[:T]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position, ``forward(T) -> (T, C)``: rows ``0 .. T - 1`` of an ``nn.Embedding``.

    Args:
        max_len: the number of positions (the longest sequence the model can read). d_model: width ``C``.

    Attributes:
        embedding: ``nn.Embedding(max_len, d_model)``; its ``weight`` is the ``(max_len, C)`` table.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, T: int) -> torch.Tensor:
        if T > self.max_len:
            raise ValueError(f"asked for {T} positions, but only max_len={self.max_len} were learned")
        return self.embedding(torch.arange(T, device=self.embedding.weight.device))  # (T,) -> (T, C)


def position_similarity(P: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """How alike every pair of positions is: ``(T, C)`` encodings -> ``(T, T)`` similarities.

    Args:
        P: one row per position, e.g. from :func:`sinusoidal_encoding` or ``LearnedPositionalEmbedding.forward``.
        kind: ``"cosine"`` (dot products of the rows scaled to length 1, between -1 and 1) or ``"dot"``.
    """
    check_shape(P, ("T", "C"), "P")
    if kind == "dot":
        return P @ P.T  # (T, C) @ (C, T) -> (T, T)
    if kind == "cosine":
        unit = P / P.norm(dim=1, keepdim=True).clamp_min(1e-12)  # each row scaled to length 1
        return unit @ unit.T  # (T, C) @ (C, T) -> (T, T)
    raise ValueError(f"kind must be 'cosine' or 'dot', got {kind!r}")
