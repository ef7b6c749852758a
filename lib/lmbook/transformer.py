"""The transformer block and the arithmetic of transformer sizes: layer norm, feed-forward, parameters, FLOPs.

Introduced in chapter 7, Attention and the Transformer. A transformer is a stack of identical **blocks**. Each
block lets the tokens exchange information (multi-head attention) and then processes every token on its own
(a two-layer feed-forward network, applied position by position), and wraps both in a **residual connection**
and a **layer normalisation**:

- pre-LN (GPT-2 and most models since): ``x = x + attn(ln1(x))``, then ``x = x + ffn(ln2(x))``;
- post-LN (the original transformer, BERT): ``x = ln1(x + attn(x))``, then ``x = ln2(x + ffn(x))``.

The feed-forward network is ``Linear(C, 4C) -> GELU -> Linear(4C, C)``: two layers with a nonlinearity between
them. A single ``ReLU(Linear(x)) + x`` is a different, much smaller thing.

The second half of the module counts: :func:`count_parameters` adds up every weight of a GPT- or BERT-shaped
model from its :class:`TransformerConfig`, :data:`KNOWN_MODELS` holds the configurations of GPT-2 and BERT with
their published sizes, and :func:`count_flops` estimates the arithmetic of a forward pass.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.attention import MultiHeadAttention
from lmbook.testing import check_choice, check_shape


class LayerNorm(nn.Module):
    """Layer normalisation from scratch: normalise each token's ``C`` features, then scale and shift them.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with the mean and the (biased) variance taken over the
    last axis of each token separately, so it does not depend on the batch. Same parameters, same names and
    same results as ``torch.nn.LayerNorm(d_model, eps)``.

    Args:
        d_model: number of features ``C``. eps: added to the variance, so that a constant token does not divide by 0.
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(..., C)`` -> the same shape."""
        check_shape(x, (*x.shape[:-1], self.d_model), "x")
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1): divided by C, not C - 1
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FusedLayerNorm(LayerNorm):
    """:class:`LayerNorm` computed by ``torch.nn.functional.layer_norm``: one kernel forward and one backward
    instead of about ten, with the same parameters and names; the fast path of a ``fused`` block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(..., C)`` -> the same shape."""
        check_shape(x, (*x.shape[:-1], self.d_model), "x")
        return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)


# GELU variants by the book's name -> torch's ``approximate`` argument of nn.GELU.
GELU_VARIANTS = {"exact": "none", "tanh": "tanh"}


class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``Linear(C, d_ff) -> GELU -> Linear(d_ff, C)`` [-> Dropout].

    Each token goes through the same two-layer network on its own; no information moves between tokens here.

    Args:
        d_model: model width ``C``. d_ff: width of the middle layer, ``4 * d_model`` by default.
        dropout: dropout on the output while training. bias: biases in both layers.
        gelu: ``"exact"`` (``x * Phi(x)`` with the normal CDF, as BERT) or ``"tanh"`` (the tanh approximation of
            Hendrycks and Gimpel 2016 that GPT-2 was trained with; the two differ by less than 1e-3).
    """

    def __init__(
        self, d_model: int, d_ff: int | None = None, dropout: float = 0.0, bias: bool = True, gelu: str = "exact"
    ) -> None:
        super().__init__()
        check_choice(gelu, GELU_VARIANTS, "gelu")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU(approximate=GELU_VARIANTS[gelu])
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(..., C)`` -> ``(..., C)``."""
        return self.drop(self.fc2(self.act(self.fc1(x))))  # (..., C) -> (..., d_ff) -> (..., C)


class TransformerBlock(nn.Module):
    """One transformer block: multi-head attention and a feed-forward network, each with a residual and a norm.

    Args:
        d_model: model width ``C``. n_heads: attention heads ``H``. causal: mask the future (decoder) or not (encoder).
        pre_ln: True for pre-LN (``x + attn(ln1(x))``), False for post-LN (``ln1(x + attn(x))``).
        dropout: on the attention weights and on each branch's output, while training.
        d_ff: width of the feed-forward layer, ``4 * d_model`` by default. bias: biases in the linear layers.
        fused: the fast path: torch's fused kernels for attention (:class:`lmbook.attention.MultiHeadAttention`)
            and the layer norms (:class:`FusedLayerNorm`); the same result up to rounding.
        eps: the layer norms' ``eps`` (BERT uses ``1e-12``). gelu: the feed-forward's GELU, ``"exact"`` or
            ``"tanh"`` (see :class:`FeedForward`).

    Attributes:
        ln1, attn, ln2, ffn: the four parts, in the order the pre-LN block uses them.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool = False,
        pre_ln: bool = True,
        dropout: float = 0.0,
        d_ff: int | None = None,
        bias: bool = True,
        fused: bool = False,
        eps: float = 1e-5,
        gelu: str = "exact",
    ) -> None:
        super().__init__()
        self.pre_ln = pre_ln
        norm = FusedLayerNorm if fused else LayerNorm
        self.ln1 = norm(d_model, eps)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=causal, bias=bias, dropout=dropout, fused=fused)
        self.ln2 = norm(d_model, eps)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout, bias=bias, gelu=gelu)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` of shape ``(B, T, C)`` -> ``(B, T, C)``; ``mask`` as in :class:`MultiHeadAttention`."""
        if self.pre_ln:
            x = x + self.drop(self.attn(self.ln1(x), mask))  # tokens exchange information
            x = x + self.ffn(self.ln2(x))  # each token is processed on its own
        else:
            x = self.ln1(x + self.drop(self.attn(x, mask)))
            x = self.ln2(x + self.ffn(x))
        return x


# ----- sizes -----------------------------------------------------------------------------------------------

SIZE_NAMES = ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff")
"""The names every config of the book uses for a transformer's sizes (see the notation appendix)."""


def check_sizes(config) -> None:
    """Check the sizes of any transformer config (:class:`TransformerConfig`, ``GPTConfig``, ``BertConfig``).

    Every config's ``__post_init__`` calls this one function, so the rules and the messages are the same
    everywhere: ``vocab_size``, ``max_len``, ``d_model``, ``n_layers``, ``n_heads`` (and ``d_ff`` when it is set)
    are positive integers, ``d_model`` is divisible by ``n_heads`` (each head gets ``D = d_model / n_heads``
    features), and ``dropout``, where the config has one, lies in ``[0, 1)``.

    Raises:
        ValueError: naming the config, the field, the rule and the value that breaks it.
    """
    owner = type(config).__name__
    for name in SIZE_NAMES:
        value = getattr(config, name)
        if value is None and name == "d_ff":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    if config.d_model % config.n_heads:
        raise ValueError(
            f"{owner}: d_model={config.d_model} must be divisible by n_heads={config.n_heads} "
            f"(each head gets D = d_model / n_heads features)"
        )
    dropout = getattr(config, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}")


@dataclass(frozen=True)
class TransformerConfig:
    """The shape of a GPT- or BERT-like transformer: everything its parameter count depends on.

    Attributes:
        vocab_size: number of tokens ``V``. max_len: number of positions (the longest input, ``T <= max_len``).
        d_model: model width ``C``. n_layers: number of blocks ``L``. n_heads: heads per block ``H``.
        d_ff: feed-forward width, ``4 * d_model`` when None. tied_embeddings: a GPT's output layer reuses the
            token embedding matrix (no extra parameters). bias: biases in the linear layers.
        type_vocab_size: BERT's segment embeddings (sentence A / sentence B).
    """

    vocab_size: int
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int | None = None
    tied_embeddings: bool = True
    bias: bool = True
    type_vocab_size: int = 2

    def __post_init__(self) -> None:
        check_sizes(self)

    @property
    def ffn_width(self) -> int:
        """The feed-forward width actually used: ``d_ff``, or ``4 * d_model``."""
        return 4 * self.d_model if self.d_ff is None else self.d_ff


def _as_transformer_config(config) -> TransformerConfig:
    """Accept a :class:`TransformerConfig` or anything with its fields (a :class:`lmbook.gpt.GPTConfig`)."""
    if isinstance(config, TransformerConfig):
        return config
    to_config = getattr(config, "transformer_config", None)
    if to_config is None:
        raise TypeError(f"expected a TransformerConfig or GPTConfig, got {type(config).__name__}")
    return to_config()


def count_parameters(config, kind: str = "gpt") -> dict[str, int]:
    """Count the parameters of a GPT (decoder) or BERT (encoder) of the given shape, component by component.

    ``kind="gpt"`` is the layout of :class:`lmbook.gpt.GPT` and GPT-2: token and position embeddings, ``L``
    pre-LN blocks, a final layer norm, and an output layer that is free when tied to the token embeddings.
    ``kind="bert"`` is the layout of BERT's encoder (Hugging Face ``BertModel``): token, position and segment
    embeddings with a layer norm, ``L`` post-LN blocks, and the pooler (``Linear(C, C)``); the pre-training
    heads are not counted.

    Per block: attention ``4 (C^2 + C)`` (Q, K, V and output projections with biases), feed-forward
    ``2 C F + F + C``, two layer norms ``2 * 2C``.

    Args:
        config: a :class:`TransformerConfig` (or a :class:`lmbook.gpt.GPTConfig`). kind: ``"gpt"`` or ``"bert"``.

    Returns:
        ``{component: count}``; ``"total"`` is the sum of the components and ``"non_embedding"`` leaves out the
        token, position and segment embeddings (the number scaling laws are stated in).
    """
    c = _as_transformer_config(config)
    if kind not in ("gpt", "bert"):
        raise ValueError(f"kind must be 'gpt' or 'bert', got {kind!r}")
    C, F, L, V = c.d_model, c.ffn_width, c.n_layers, c.vocab_size
    b = 1 if c.bias else 0
    counts = {"token_embedding": V * C, "position_embedding": c.max_len * C}
    if kind == "bert":
        counts["token_type_embedding"] = c.type_vocab_size * C
        counts["embedding_layer_norm"] = 2 * C
    counts["attention"] = L * 4 * (C * C + b * C)
    counts["feed_forward"] = L * (2 * C * F + b * (F + C))
    counts["layer_norms"] = L * 2 * (2 * C)
    if kind == "gpt":
        counts["final_layer_norm"] = 2 * C
        counts["lm_head"] = 0 if c.tied_embeddings else V * C
    else:
        counts["pooler"] = C * C + C
    total = sum(counts.values())
    embeddings = counts["token_embedding"] + counts["position_embedding"] + counts.get("token_type_embedding", 0)
    counts["total"] = total
    counts["non_embedding"] = total - embeddings
    return counts


def count_flops(config, tokens: int = 1, seq_len: int | None = None) -> dict[str, int]:
    """Estimate the floating-point operations of a GPT's forward pass (a multiply-add counts as 2 FLOPs).

    Per token, with ``N = L (4 C^2 + 2 C F)`` the weights of the blocks' matrix multiplications:

    - ``2 N`` for the linear layers (each weight is used once per token: one multiply, one add);
    - ``4 L T C`` for attention at sequence length ``T``: ``Q K^T`` and ``weights @ V`` each cost ``2 T C`` per
      token and layer. This is what dense attention computes; a causal mask throws away about half of it,
      which is why Kaplan et al. (2020, "Scaling laws for neural language models") count ``2 L T C``;
    - ``2 C V`` for the output layer (logits).

    Layer norms, softmax, GELU, biases and embedding look-ups are left out: they are a small fraction. So the
    forward pass costs about ``2N`` per token plus the attention term, and training (forward and backward)
    about three times that: the well-known ``6 N`` FLOPs per training token.

    Args:
        config: a :class:`TransformerConfig` or :class:`lmbook.gpt.GPTConfig`.
        tokens: how many tokens the totals are for (e.g. the number of training tokens ``D``).
        seq_len: the sequence length ``T`` the attention term is computed at; ``config.max_len`` by default.

    Returns:
        ``{"linear", "attention", "lm_head", "forward_per_token", "forward", "training"}``: the first four
        per token, ``"forward"`` for ``tokens`` tokens, ``"training"`` = 3 x ``"forward"``.
    """
    c = _as_transformer_config(config)
    T = c.max_len if seq_len is None else seq_len
    C, F, L, V = c.d_model, c.ffn_width, c.n_layers, c.vocab_size
    flops = {
        "linear": 2 * L * (4 * C * C + 2 * C * F),
        "attention": 4 * L * T * C,
        "lm_head": 2 * C * V,
    }
    flops["forward_per_token"] = sum(flops.values())
    flops["forward"] = flops["forward_per_token"] * tokens
    flops["training"] = 3 * flops["forward"]
    return flops


@dataclass(frozen=True)
class KnownModel:
    """A published model: its configuration, its kind (``"gpt"`` or ``"bert"``), its stated size and the source."""

    config: TransformerConfig
    kind: str
    published: int
    source: str


# How close count_parameters must come to a published size: published sizes are rounded ("110M", "340M"), and
# BERT-large's "340M" is 1.4% above the exact count of its encoder.
PUBLISHED_TOLERANCE = 0.02

KNOWN_MODELS: dict[str, KnownModel] = {
    "GPT-2 small": KnownModel(TransformerConfig(50257, 1024, 768, 12, 12), "gpt", 124_000_000, "OpenAI GPT-2 (124M)"),
    "GPT-2 medium": KnownModel(TransformerConfig(50257, 1024, 1024, 24, 16), "gpt", 355_000_000, "OpenAI GPT-2 (355M)"),
    "GPT-2 large": KnownModel(TransformerConfig(50257, 1024, 1280, 36, 20), "gpt", 774_000_000, "OpenAI GPT-2 (774M)"),
    "GPT-2 XL": KnownModel(TransformerConfig(50257, 1024, 1600, 48, 25), "gpt", 1_558_000_000, "OpenAI GPT-2 (1.5B)"),
    "BERT-base": KnownModel(TransformerConfig(30522, 512, 768, 12, 12), "bert", 110_000_000, "Devlin et al. 2019"),
    "BERT-large": KnownModel(TransformerConfig(30522, 512, 1024, 24, 16), "bert", 340_000_000, "Devlin et al. 2019"),
}
