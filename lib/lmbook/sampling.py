"""Drawing the next token from a language model's scores: temperature, top-k and greedy decoding.

Introduced in chapter 7, Attention and the Transformer (the tiny GPT writes text), and used again in chapter 6,
Recurrent networks, by the character-level LSTM. Both models end a step with logits ``(B, V)``, one score per
token of the vocabulary for each of ``B`` sequences; what happens next is the same whatever the model, so it is
written once, here:

1. divide the logits by a **temperature** ``tau``: below 1 the softmax sharpens (more predictable text), above 1
   it flattens (more surprising text); ``tau = 0`` means *greedy* decoding, always the most likely token;
2. optionally keep only the ``top_k`` largest logits (the others get probability 0);
3. draw one token per row from the softmax, with a ``torch.Generator`` so that the same seed gives the same text.

The draw happens on the CPU whatever the model's device, so a seeded generator gives the same tokens on a CPU
and on a GPU.
"""

from __future__ import annotations

import torch

from lmbook.testing import check_shape


def check_sampling(temperature: float, top_k: int | None) -> None:
    """Raise a ValueError unless ``temperature >= 0`` and ``top_k`` is None or a positive integer."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One next token for each row of ``logits`` ``(B, V)`` -> token ids ``(B, 1)`` (int64, on the logits' device).

    Args:
        logits: unnormalised scores, one row per sequence (the last position's output of a language model).
        temperature: ``tau >= 0``; the softmax is taken of ``logits / tau``. 0 picks the largest logit (greedy),
            as does ``top_k=1``; no random number is drawn then.
        top_k: keep only the ``top_k`` largest logits of each row (ties with the ``k``-th are kept too); None
            keeps them all.
        generator: a CPU ``torch.Generator`` for reproducible draws; None uses torch's global one.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, -1.0]])
        >>> sample_next(logits, temperature=0).tolist()
        [[0]]
    """
    check_shape(logits, ("B", "V"), "logits")
    check_sampling(temperature, top_k)
    logits = logits.float()
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1): greedy
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)  # (B, 1)
