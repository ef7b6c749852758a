"""A small GPT: a decoder-only transformer that predicts the next token, its training loop, and sampling.

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
:meth:`GPTConfig.gpu` is the "full" model of the chapter's GPU cell.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from lmbook.device import autocast_dtype
from lmbook.positional import LearnedPositionalEmbedding
from lmbook.schedules import warmup_cosine
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape
from lmbook.text import get_batch
from lmbook.transformer import GELU_VARIANTS, LayerNorm, TransformerBlock, TransformerConfig, check_sizes


@dataclass(frozen=True)
class GPTConfig:
    """The size of a :class:`GPT`.

    Attributes:
        vocab_size: ``V``. max_len: the longest input (number of learned positions; ``T <= max_len``).
        d_model: width ``C``. n_layers: blocks ``L``. n_heads: heads ``H`` (must divide ``d_model``).
        dropout: dropout probability while training. d_ff: feed-forward width, ``4 * d_model`` when None.
        tied_embeddings: the LM head reuses the token embedding matrix. bias: biases in the linear layers.
        fused_attention: use torch's fused attention kernel (same result, faster; no attention weights to
            record, so :func:`lmbook.attention.attention_maps` switches to the from-scratch path itself).
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
        self.ln_f = LayerNorm(c.d_model)
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
        ``generator``. The model is put in evaluation mode meanwhile and then back in its previous mode.
        """
        check_shape(idx, ("B", "T"), "idx")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits = self(idx[:, -self.config.max_len :])[:, -1, :].float()  # (B, V): the last position
                if temperature == 0 or top_k == 1:
                    nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1): greedy
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    probs = torch.softmax(logits, dim=-1)  # (B, V)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)  # (B, T) -> (B, T + 1)
        finally:
            self.train(was_training)
        return idx


@dataclass
class TrainLog:
    """What :func:`train_gpt` measured.

    Attributes:
        steps: the steps (1-based) at which the losses were measured.
        train_loss: mean training loss over the steps since the previous measurement.
        val_loss: validation loss at those steps (empty without validation data).
        seconds: wall-clock time of the training steps (evaluation excluded).
        tokens: tokens processed by the training steps (``steps * batch_size * max_len``).
        tokens_per_second: ``tokens / seconds``.
        lr: the learning rate of every step.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    tokens_per_second: float = 0.0
    lr: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        last = f"train_loss={self.train_loss[-1]:.3f}" if self.train_loss else "no steps"
        if self.val_loss:
            last += f", val_loss={self.val_loss[-1]:.3f}"
        return (
            f"TrainLog(steps={self.steps[-1] if self.steps else 0}, {last}, {self.seconds:.1f} s, "
            f"{self.tokens_per_second:,.0f} tokens/s)"
        )


@torch.no_grad()
def evaluate_loss(model: GPT, data: torch.Tensor, batch_size: int = 32, max_batches: int | None = 8) -> float:
    """Mean next-token loss of ``model`` on ``data`` (1-d token ids), over consecutive non-overlapping windows.

    Deterministic: the windows start at ``0, T, 2T, ...`` with ``T = model.config.max_len``; at most
    ``max_batches`` batches of ``batch_size`` windows are used (None: all of ``data``). Evaluation mode meanwhile.
    """
    check_shape(data, ("N",), "data")
    T = model.config.max_len
    n_windows = (len(data) - 1) // T
    if n_windows < 1:
        raise ValueError(f"data has {len(data)} tokens, too few for one window of {T} + 1")
    if max_batches is not None:
        n_windows = min(n_windows, batch_size * max_batches)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for first in range(0, n_windows, batch_size):
            starts = torch.arange(first, min(first + batch_size, n_windows)) * T  # (b,)
            index = starts[:, None] + torch.arange(T)[None, :]  # (b, T)
            x, y = data[index].to(device), data[index + 1].to(device)
            total += model.loss(x, y).item() * len(starts)
            count += len(starts)
    finally:
        model.train(was_training)
    return total / count


def train_gpt(
    model: GPT,
    data,
    *,
    steps: int = 600,
    batch_size: int = 16,
    lr: float = 5e-3,
    device=None,
    amp_dtype: torch.dtype | None = None,
    log_every: int = 100,
    warmup_steps: int | None = None,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    eval_batches: int = 8,
    seed: int = 0,
    verbose: bool = False,
) -> TrainLog:
    """Train a :class:`GPT` in place on random windows of a token sequence with AdamW; measure as it goes.

    Each step draws ``batch_size`` windows of ``max_len`` tokens (:func:`lmbook.text.get_batch`), takes one
    AdamW step on the mean next-token loss with the gradient norm clipped to ``grad_clip``, and follows a
    warm-up + cosine learning-rate schedule (:func:`lmbook.schedules.warmup_cosine`, down to ``lr / 10``).
    Weight decay applies to the weight matrices of the linear layers only, not to biases, layer norms or
    embeddings. Every ``log_every`` steps, and after the last, it records
    the mean training loss since the previous record and the validation loss (:func:`evaluate_loss`).

    Args:
        model: the model, trained in place (moved to ``device``).
        data: ``(train, val)`` 1-d tensors of token ids (as from :func:`lmbook.text.train_val_split_tokens`), or
            just ``train``.
        steps, batch_size, lr: the optimisation. device: where to train; the model's device when None.
        amp_dtype: mixed precision with ``torch.autocast``: None picks :func:`lmbook.device.autocast_dtype`
            (bfloat16 or float16 on a GPU, nothing on the CPU); ``torch.float32`` turns it off.
        log_every: steps between measurements. warmup_steps: ``steps // 20`` when None.
        weight_decay, grad_clip: AdamW's decoupled weight decay; the gradient-norm limit (None: no clipping).
        eval_batches: batches of the validation estimate. seed: seeds the batches and dropout.
        verbose: print a line at every measurement.

    Returns:
        A :class:`TrainLog`, including the measured training speed in tokens per second.
    """
    train, val = data if isinstance(data, tuple | list) else (data, None)
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.to(device)
    amp_dtype = autocast_dtype(device) if amp_dtype is None else amp_dtype
    use_amp = amp_dtype is not None and amp_dtype != torch.float32
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    warmup = max(1, steps // 20) if warmup_steps is None else warmup_steps
    generator = torch.Generator().manual_seed(seed)
    seq_len = model.config.max_len
    log = TrainLog()
    running, since = 0.0, 0
    model.train()
    with private_seed(seed, devices=[device]):  # dropout masks
        for step in range(steps):
            start = time.perf_counter()
            step_lr = warmup_cosine(step, lr, min(warmup, steps - 1), steps, min_lr=lr / 10)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            x, y = get_batch(train, batch_size, seq_len, generator, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = model.loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            running += loss.item()  # .item() waits for the GPU, so the timing below is honest
            since += 1
            log.seconds += time.perf_counter() - start
            log.lr.append(step_lr)
            if (step + 1) % log_every == 0 or step + 1 == steps:
                log.steps.append(step + 1)
                log.train_loss.append(running / since)
                running, since = 0.0, 0
                if val is not None:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                        log.val_loss.append(evaluate_loss(model, val, batch_size, eval_batches))
                if verbose:
                    print(_progress_line(log))
    log.tokens = steps * batch_size * seq_len
    log.tokens_per_second = log.tokens / max(log.seconds, 1e-9)
    return log


def _progress_line(log: TrainLog) -> str:
    """One line for the latest measurement of a :class:`TrainLog`: step, losses, elapsed time."""
    line = f"step {log.steps[-1]:5d}  train loss {log.train_loss[-1]:.3f}"
    if log.val_loss:
        line += f"  val loss {log.val_loss[-1]:.3f}"
    return line + f"  ({log.seconds:.1f} s)"
