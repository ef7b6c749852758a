"""A minimal GPT built from ``torch.nn`` primitives: the yardstick the book's GPT is timed against.

It mirrors the layout of nanoGPT's ``model.py`` (Andrej Karpathy, MIT licence, github.com/karpathy/nanoGPT) without
its code: token and position embeddings, pre-LN blocks whose attention makes queries, keys and values with *one*
``nn.Linear(C, 3C)`` and calls ``F.scaled_dot_product_attention(..., is_causal=True)``, ``nn.LayerNorm``, an
``nn.GELU`` feed-forward, a final layer norm and an output layer tied to the token embeddings. Initial weights as
GPT-2 (normal, standard deviation 0.02, biases 0, residual output projections scaled by ``1 / sqrt(2 L)``).

It takes a :class:`lmbook.gpt.GPTConfig`, so both models have the same sizes and the same parameter count
(:func:`count_parameters` checks it). It exists only for ``benchmarks/gpt_speed.py`` and its test; the book's
model is :class:`lmbook.gpt.GPT`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceAttention(nn.Module):
    """Causal multi-head attention with one fused ``C -> 3C`` projection for queries, keys and values."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, 3C) -> 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, D)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B, T, C)))  # (B, T, C)


class ReferenceBlock(nn.Module):
    """A pre-LN block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = ReferenceAttention(d_model, n_heads, dropout, bias)
        self.ln2 = nn.LayerNorm(d_model, bias=bias)
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU()
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.drop(self.proj(self.act(self.fc(self.ln2(x)))))


class ReferenceGPT(nn.Module):
    """``(B, T)`` token ids -> ``(B, T, V)`` logits, with the sizes of a :class:`lmbook.gpt.GPTConfig`."""

    def __init__(self, config, seed: int = 0) -> None:
        super().__init__()
        c = config
        d_ff = 4 * c.d_model if c.d_ff is None else c.d_ff
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.wte = nn.Embedding(c.vocab_size, c.d_model)
            self.wpe = nn.Embedding(c.max_len, c.d_model)
            self.drop = nn.Dropout(c.dropout)
            self.blocks = nn.ModuleList(
                ReferenceBlock(c.d_model, c.n_heads, d_ff, c.dropout, c.bias) for _ in range(c.n_layers)
            )
            self.ln_f = nn.LayerNorm(c.d_model, bias=c.bias)
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight  # tied
            self._init_weights(c.n_layers)
        finally:
            torch.random.set_rng_state(generator_state)

    @torch.no_grad()
    def _init_weights(self, n_layers: int) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            for layer in (block.attn.proj, block.proj):
                nn.init.normal_(layer.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy, as :meth:`lmbook.gpt.GPT.loss`."""
        logits = self(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def count_parameters(model: nn.Module) -> int:
    """Trainable numbers, each shared tensor (the tied embedding) once."""
    return sum(p.numel() for p in model.parameters())
