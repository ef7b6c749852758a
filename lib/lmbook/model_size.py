"""What makes a model large: its parameters by part, the bytes to hold and train them, and the compute to train it.

Introduced in chapter 1, What makes a model large. Everything here is arithmetic on a configuration, done by the
book's own counters: :func:`lmbook.transformer.count_parameters` (parameters component by component),
:func:`lmbook.transformer.count_flops` (a forward pass), :func:`lmbook.cost.training_memory` (bytes of the training
state) and :func:`lmbook.cost.training_flops` (``6 N D``). :func:`parameter_parts` groups the counter's components
into the four parts the chapter talks about, and :func:`size_estimate` gathers every number for one configuration
and one token budget; chapter 1's :class:`lmbook.widgets.model_size.ModelSizeExplorer` draws them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from lmbook.cost import BYTES_PER_NUMBER, training_flops, training_memory
from lmbook.testing import check_choice
from lmbook.transformer import TransformerConfig, count_flops, count_parameters

PARTS = ("embeddings", "attention", "feed_forward", "other")
"""The parts a transformer's parameters are grouped into: the embedding tables (tokens, positions, BERT's
segments), the attention projections, the feed-forward networks, and everything else (layer norms, BERT's pooler,
an output layer that is not tied to the token embeddings)."""

_PART_OF = {
    "token_embedding": "embeddings",
    "position_embedding": "embeddings",
    "token_type_embedding": "embeddings",
    "attention": "attention",
    "feed_forward": "feed_forward",
}

CHINCHILLA_TOKENS_PER_PARAMETER = 20
"""Chinchilla's own ratio of training tokens to parameters, 1.4 trillion tokens for 70 billion parameters
(Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, arXiv:2203.15556): the default token
budget of :func:`size_estimate`."""


def parameter_parts(counts: dict[str, int]) -> dict[str, int]:
    """Group the components of :func:`lmbook.transformer.count_parameters` into :data:`PARTS`.

    Args:
        counts: what ``count_parameters`` returned (its ``"total"`` and ``"non_embedding"`` are not components).

    Returns:
        ``{part: parameters}`` for each of :data:`PARTS`; the values add up to ``counts["total"]``.
    """
    missing = {"attention", "feed_forward", "total"} - set(counts)
    if missing:
        raise ValueError(f"expected the components of count_parameters(...), missing {sorted(missing)}")
    parts = dict.fromkeys(PARTS, 0)
    for name, value in counts.items():
        if name not in ("total", "non_embedding"):
            parts[_PART_OF.get(name, "other")] += value
    return parts


@dataclass(frozen=True)
class SizeEstimate:
    """Every size of one configuration (:func:`size_estimate`).

    Attributes:
        config: the :class:`~lmbook.transformer.TransformerConfig`. kind: ``"gpt"`` or ``"bert"``.
        counts: :func:`~lmbook.transformer.count_parameters`'s components. parts: the same grouped by
            :data:`PARTS`. n_params: ``N``, the total.
        weight_bytes: ``{"fp32": 4 N, "bf16": 2 N}``, the bytes to hold the weights.
        training_bytes: :func:`~lmbook.cost.training_memory` with Adam in mixed precision (weights, gradients,
            Adam's m and v, fp32 master weights; activations not included).
        forward_flops: :func:`~lmbook.transformer.count_flops` per token at the full context ``max_len``.
        tokens_per_parameter, n_tokens: the token budget ``D = tokens_per_parameter * N``.
        training_flops: ``6 N D`` (:func:`~lmbook.cost.training_flops`).
    """

    config: TransformerConfig
    kind: str
    counts: dict
    parts: dict
    n_params: int
    weight_bytes: dict
    training_bytes: dict
    forward_flops: dict
    tokens_per_parameter: float
    n_tokens: float
    training_flops: float

    @property
    def shares(self) -> dict[str, float]:
        """``{part: fraction of N}``."""
        return {part: value / self.n_params for part, value in self.parts.items()}

    @property
    def attention_share(self) -> float:
        """The fraction of a token's forward FLOPs spent on attention's own products (``Q K^T`` and the weighted
        sum of V), which grows with the context length."""
        return self.forward_flops["attention"] / self.forward_flops["forward_per_token"]


def size_estimate(
    config: TransformerConfig, kind: str = "gpt", tokens_per_parameter: float = CHINCHILLA_TOKENS_PER_PARAMETER
) -> SizeEstimate:
    """Parameters by part, weight and training memory, forward FLOPs per token and training compute of a config.

    Args:
        config: a :class:`~lmbook.transformer.TransformerConfig` (or a ``GPTConfig``).
        kind: ``"gpt"`` (decoder) or ``"bert"`` (encoder), as in :func:`~lmbook.transformer.count_parameters`.
        tokens_per_parameter: the training budget ``D / N``; 20 by default, Chinchilla's ratio.

    Raises:
        ValueError: an unknown kind, or a token budget that is not a positive number.
    """
    check_choice(kind, ("gpt", "bert"), "kind")
    if (
        isinstance(tokens_per_parameter, bool)
        or not isinstance(tokens_per_parameter, numbers.Real)
        or not tokens_per_parameter > 0
        or not math.isfinite(tokens_per_parameter)
    ):
        raise ValueError(f"tokens_per_parameter must be a positive number, got {tokens_per_parameter!r}")
    counts = count_parameters(config, kind)
    n_params = counts["total"]
    n_tokens = float(tokens_per_parameter) * n_params
    return SizeEstimate(
        config=config,
        kind=kind,
        counts=counts,
        parts=parameter_parts(counts),
        n_params=n_params,
        weight_bytes={fmt: float(BYTES_PER_NUMBER[fmt] * n_params) for fmt in ("fp32", "bf16")},
        training_bytes=training_memory(n_params, "mixed", "adam"),
        forward_flops=count_flops(config),
        tokens_per_parameter=float(tokens_per_parameter),
        n_tokens=n_tokens,
        training_flops=training_flops(n_params, n_tokens),
    )
