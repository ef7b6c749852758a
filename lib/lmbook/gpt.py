"""A small GPT: a decoder-only transformer that predicts the next token, its training call, and sampling.

Introduced in chapter 7, Attention and the Transformer. The model is the architecture of GPT-2 at toy size:

1. token embeddings plus learned position embeddings, ``(B, T)`` ids -> ``(B, T, C)`` vectors;
2. ``L`` pre-LN :class:`~lmbook.transformer.TransformerBlock` s with causal attention, so the vector at
   position ``t`` depends only on tokens ``0 .. t``;
3. a final layer norm and a linear **LM head** whose weight is the token embedding matrix itself (tied),
   giving ``(B, T, V)`` logits: at every position, scores for the next token.

Because of the causal mask, one forward pass over a window of ``T`` tokens trains ``T`` predictions at once.
:meth:`GPT.generate` then writes new text one token at a time, each sampled from the softmax of the last
position's logits, optionally sharpened or flattened by a **temperature** and restricted to the ``top_k`` most
likely tokens.

:class:`GPTConfig` has two presets: :meth:`GPTConfig.cpu` trains in well under a minute on two CPU cores, and
:meth:`GPTConfig.gpu` is the "full" model of the chapter's GPU cell. :func:`train_gpt` trains it with the
loop of :mod:`lmbook.language_model` (any next-token model), configured by an
:class:`~lmbook.language_model.LMTrainConfig` with the matching presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.language_model import LMTrainConfig, TrainLog, train_lm
from lmbook.loop import evaluation_mode
from lmbook.positional import LearnedPositionalEmbedding
from lmbook.sampling import check_sampling, sample_next
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape
from lmbook.transformer import (
    GELU_VARIANTS,
    FusedLayerNorm,
    LayerNorm,
    TransformerBlock,
    TransformerConfig,
    check_sizes,
)


@dataclass(frozen=True)
class GPTConfig:
    """The size of a :class:`GPT`.

    Attributes:
        vocab_size: ``V``. max_len: the longest input (number of learned positions; ``T <= max_len``).
        d_model: width ``C``. n_layers: blocks ``L``. n_heads: heads ``H`` (must divide ``d_model``).
        dropout: dropout probability while training. d_ff: feed-forward width, ``4 * d_model`` when None.
        tied_embeddings: the LM head reuses the token embedding matrix. bias: biases in the linear layers.
        fused_attention: the fast path: torch's fused kernels for attention and layer norm, and one product
            for Q, K and V (same result up to rounding, faster; no attention weights to record, so
            :func:`lmbook.attention.attention_maps` switches to the from-scratch path itself).
        gelu: the feed-forward's GELU: ``"exact"``, or ``"tanh"``, the approximation GPT-2 was trained with
            (:mod:`lmbook.gpt2` loads GPT-2's weights).
    """

    vocab_size: int
    max_len: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0
    d_ff: int | None = None
    tied_embeddings: bool = True
    bias: bool = True
    fused_attention: bool = False
    gelu: str = "exact"

    def __post_init__(self) -> None:
        check_sizes(self)
        check_choice(self.gelu, GELU_VARIANTS, "gelu")

    @classmethod
    def cpu(cls, vocab_size: int, **overrides) -> GPTConfig:
        """The CPU preset: about 0.1M parameters; :func:`train_gpt` with its default settings trains it in 15-30 s."""
        return replace(cls(vocab_size, max_len=64, d_model=64, n_layers=2, n_heads=4), **overrides)

    @classmethod
    def gpu(cls, vocab_size: int, **overrides) -> GPTConfig:
        """The GPU preset ("full" size for the chapter's ``gpu`` cell): about 11M parameters, ``max_len`` 256."""
        base = cls(vocab_size, max_len=256, d_model=384, n_layers=6, n_heads=6, dropout=0.1, fused_attention=True)
        return replace(base, **overrides)

    def transformer_config(self) -> TransformerConfig:
        """The same shape as a :class:`lmbook.transformer.TransformerConfig`, for counting parameters and FLOPs."""
        return TransformerConfig(
            self.vocab_size, self.max_len, self.d_model, self.n_layers, self.n_heads,
            d_ff=self.d_ff, tied_embeddings=self.tied_embeddings, bias=self.bias,
        )  # fmt: skip


class GPT(nn.Module):
    """A decoder-only transformer language model: ``(B, T)`` token ids -> ``(B, T, V)`` next-token logits.

    Args:
        config: the sizes. seed: seeds the initial weights (a private copy of torch's random state is used, so
            the caller's is left alone); None draws them from the current global state.

    Initial weights follow GPT-2: normal with standard deviation 0.02, biases 0, and the output projection of
    every residual branch scaled down by ``1 / sqrt(2 L)`` so that the residual stream does not grow with depth.

    Attributes:
        token_embedding: ``nn.Embedding(V, C)``. position_embedding: :class:`LearnedPositionalEmbedding`.
        blocks: ``nn.ModuleList`` of causal pre-LN :class:`TransformerBlock`. ln_f: the final layer norm.
        lm_head: ``nn.Linear(C, V, bias=False)``; with tied embeddings its weight *is* ``token_embedding.weight``.
    """

    def __init__(self, config: GPTConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.config = config
        # Building the layers draws their default initial weights: do it all on a private random state.
        with private_seed(seed):
            self._build()

    def _build(self) -> None:
        c = self.config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, causal=True, pre_ln=True, dropout=c.dropout, d_ff=c.d_ff,
                             bias=c.bias, fused=c.fused_attention, gelu=c.gelu)
            for _ in range(c.n_layers)
        )  # fmt: skip
        self.ln_f = (FusedLayerNorm if c.fused_attention else LayerNorm)(c.d_model)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tied_embeddings:
            self.lm_head.weight = self.token_embedding.weight  # one (V, C) matrix, used twice
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # the layers that write into the residual stream
            for layer in (block.attn.W_o, block.ffn.fc2):
                layer.weight.mul_(1.0 / math.sqrt(2 * self.config.n_layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` of shape ``(B, T)`` (``T <= max_len``) -> logits of shape ``(B, T, V)``."""
        B, T = check_shape(idx, ("B", "T"), "idx").shape
        if T > self.config.max_len:
            raise ValueError(f"the input has T={T} tokens, more than max_len={self.config.max_len}")
        x = self.token_embedding(idx) + self.position_embedding(T)  # (B, T, C) + (T, C) -> (B, T, C)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, C) -> (B, T, C), causal
        return self.lm_head(self.ln_f(x))  # (B, T, C) -> (B, T, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next-token predictions: ``idx`` and ``targets`` both ``(B, T)``."""
        dims: dict[str, int] = {}
        check_shape(idx, ("B", "T"), "idx", dims)
        check_shape(targets, ("B", "T"), "targets", dims)
        logits = self(idx)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))  # (B*T, V) vs (B*T,)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue each sequence of ``idx`` ``(B, T)`` by ``max_new_tokens`` sampled tokens -> ``(B, T + new)``.

        At each step the model reads the last ``max_len`` tokens; the logits of the last position are divided
        by ``temperature`` (below 1: more predictable text; above 1: more surprising; 0 means always the most
        likely token), cut to the ``top_k`` largest if given, and one token is drawn from their softmax with
        ``generator`` (:func:`lmbook.sampling.sample_next`). The model is put in evaluation mode meanwhile and
        then back in its previous mode.
        """
        check_shape(idx, ("B", "T"), "idx")
        check_sampling(temperature, top_k)
        with evaluation_mode(self):
            for _ in range(max_new_tokens):
                logits = self(idx[:, -self.config.max_len :])[:, -1, :]  # (B, V): the last position
                nxt = sample_next(logits, temperature, top_k, generator)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)  # (B, T) -> (B, T + 1)
        return idx


def train_gpt(model: GPT, data, config: LMTrainConfig | None = None, device=None, verbose: bool = False) -> TrainLog:
    """Train a :class:`GPT` in place on random windows of a token sequence: :func:`lmbook.language_model.train_lm`.

    The windows are ``model.config.max_len`` tokens long unless ``config.window`` says otherwise. Each step is one
    AdamW step (weight decay on the weight matrices only, :func:`lmbook.loop.param_groups`) with the gradient
    norm clipped, a linear warm-up and a cosine decay to a tenth of the peak rate, and mixed precision on a GPU.

    Args:
        model: the model, trained in place (moved to ``device``).
        data: ``(train, val)`` 1-d tensors of token ids (as from :func:`lmbook.text.train_val_split_tokens`), or
            just ``train``.
        config: an :class:`lmbook.language_model.LMTrainConfig`: :meth:`~LMTrainConfig.cpu` (the default) for
            :meth:`GPTConfig.cpu`, :meth:`~LMTrainConfig.gpu` for :meth:`GPTConfig.gpu`.
        device: where to train; where the model is when None. verbose: print a line at every measurement.

    Returns:
        A :class:`lmbook.language_model.TrainLog`, including the measured training speed in tokens per second.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"train_gpt trains a lmbook.gpt.GPT, got {type(model).__name__}; use train_lm for others")
    return train_lm(model, data, config, device=device, verbose=verbose)


# ----- chapter 7's tiny GPT, trained once -----------------------------------------------------------------------


def trained_tiny_gpt(seed: int = 0, folder=None, steps: int = 800) -> tuple[GPT, object, dict]:
    """Chapter 7's tiny GPT: :meth:`GPTConfig.cpu` trained by :func:`train_gpt` with ``LMTrainConfig.cpu(steps=800)``
    on the book's own text (:func:`lmbook.text.book_corpus`, one character per token, the first 90% to train and
    the last 10% to validate), once per machine: later calls load the stored weights.

    The key of :func:`lmbook.cache.cached` holds the configurations, ``seed``, a SHA-256 of the corpus, torch's
    version and the source of the code that trains. The corpus is made of lmbook's docstrings, so any edit of the
    package's prose trains the model again (about 15-30 s on two cores) rather than loading a model of another
    text. :meth:`LMTrainConfig.cpu` trains on one thread, so a loaded model equals a freshly trained one.

    Args:
        seed: the initial weights (:class:`GPT`) and the training windows (``LMTrainConfig.seed``).
        folder: the cache folder; None: :func:`lmbook.cache.cache_dir`. steps: optimiser steps (800: chapter 7's).

    Returns:
        ``(model, tokenizer, info)``: the model in evaluation mode on the CPU; the
        :class:`lmbook.text.CharTokenizer` of the corpus; ``info`` holds ``"val_loss"`` and ``"train_loss"``
        (nats per character, at the last measurement), ``"val_losses"`` and ``"log_steps"`` (the curve),
        ``"seconds"`` and ``"tokens"`` of the training run (whenever it happened), ``"cached"`` (True when
        loaded), and, rebuilt on every call, never stored: ``"train_ids"`` and ``"val_ids"`` (the two parts of
        the corpus as token ids) and ``"text"`` (the corpus).
    """
    import hashlib

    from lmbook.cache import source_digest, trained_once
    from lmbook.text import CharTokenizer, book_corpus, train_val_split_tokens

    text = book_corpus()
    tokenizer = CharTokenizer(text)
    train_ids, val_ids = train_val_split_tokens(tokenizer.encode(text), val_fraction=0.1)
    config = GPTConfig.cpu(tokenizer.vocab_size)
    train_config = LMTrainConfig.cpu(steps=steps, seed=seed)
    model = GPT(config, seed=seed)

    def train() -> dict:
        log = train_gpt(model, (train_ids, val_ids), train_config)
        return {
            "val_loss": float(log.val_loss[-1]),
            "train_loss": float(log.train_loss[-1]),
            "val_losses": [float(v) for v in log.val_loss],
            "log_steps": [int(s) for s in log.steps],
            "seconds": float(log.seconds),
            "tokens": int(log.tokens),
        }

    parts = {
        "config": repr(config),
        "train_config": repr(train_config),
        "seed": seed,
        "corpus": hashlib.sha256(text.encode()).hexdigest(),
        "source": source_digest(
            "gpt",
            "transformer",
            "attention",
            "positional",
            "language_model",
            "loop",
            "schedules",
            "text",
            "accumulation",
        ),
    }
    info, hit = trained_once("tiny-gpt", parts, model, train, folder)
    return model, tokenizer, {**info, "cached": hit, "train_ids": train_ids, "val_ids": val_ids, "text": text}
