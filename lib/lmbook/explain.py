"""Which tokens a text classifier's decision rests on: gradient saliency, attention, and a deletion test.

Introduced in chapter 11, Outlook (what a model looks at). Chapter 5's :mod:`lmbook.saliency` differentiates a
class score with respect to pixels; text has no pixels, and token ids are integers that cannot be nudged, so the
gradient is taken with respect to each token's **embedding vector** ``e_t`` (the row of the embedding table the
token looks up), for a classifier such as :class:`lmbook.finetune.BertClassifier`:

- :func:`embedding_gradients`: ``g_t = d s_k / d e_t`` for every token of every sentence in a batch, where
  ``s_k`` is the logit of class ``k`` (the predicted class unless given).
- :func:`token_saliency`: one score per token from them: ``"grad_norm"``, ``||g_t||`` (how sensitive the score
  is to the token's vector), or ``"grad_x_input"``, ``g_t . e_t`` (the first-order estimate of how much the
  score would change if the vector were set to zero; signed).
- :func:`attention_importance`: the attention each token *receives* in one layer, averaged over heads and over
  the query positions, the usual "attention as explanation" reading of a model.
- :func:`deletion_effects`: remove the top-``k`` tokens of a ranking and measure how far the probability of the
  predicted class falls; a ranking that finds what the decision rests on makes it fall further than chance.
- :func:`kendall_tau` and :func:`spearman_rho` compare two rankings; :func:`bootstrap_mean` puts a percentile
  bootstrap interval on a mean over sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lmbook.attention import attention_maps
from lmbook.loop import evaluation_mode
from lmbook.testing import check_choice, check_shape

SALIENCY_METHODS = ("grad_norm", "grad_x_input")


def word_embedding(model: nn.Module) -> nn.Embedding:
    """The token-embedding table of a BERT classifier: lmbook's ``embeddings.token`` or Hugging Face's
    ``embeddings.word_embeddings`` (searched in ``model.bert`` when there is one)."""
    bert = getattr(model, "bert", model)
    embeddings = getattr(bert, "embeddings", None)
    for name in ("token", "word_embeddings"):
        table = getattr(embeddings, name, None)
        if isinstance(table, nn.Embedding):
            return table
    raise ValueError(f"{type(model).__name__} has no embeddings.token or embeddings.word_embeddings table")


def embedding_gradients(
    model: nn.Module, input_ids, attention_mask=None, target=None, embedding: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient of each sentence's class logit with respect to each of its token embeddings.

    A forward hook on the embedding table swaps its output ``E`` (``(B, T, C)``) for a copy that requires a
    gradient; one backward pass of ``sum_b s_{b, k_b}`` then gives every sentence's gradient at once (sentences
    do not interact in evaluation mode, so the sum's gradient at sentence ``b`` is ``d s_{b, k_b} / d E_b``).

    Args:
        model: maps ``(input_ids, token_type_ids, attention_mask)`` to logits ``(B, K)``; run in evaluation mode
            and put back after. input_ids: ``(B, T)`` token ids. attention_mask: ``(B, T)``, 1 on real tokens and
            0 on padding (None: all real). target: the class per sentence, an int or ``(B,)``; None: the
            predicted class. embedding: the table to differentiate at; None: :func:`word_embedding`.

    Returns:
        ``(E, G, k)``: embeddings and gradients ``(B, T, C)`` (detached, the model's dtype) and classes ``(B,)``.
        Padding positions get a zero gradient.
    """
    input_ids = torch.as_tensor(input_ids)
    B, T = check_shape(input_ids, ("B", "T"), "input_ids").shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = check_shape(torch.as_tensor(attention_mask), (B, T), "attention_mask")
    table = word_embedding(model) if embedding is None else embedding
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = table.register_forward_hook(hook)
    try:
        with evaluation_mode(model), torch.enable_grad():
            logits = model(input_ids, torch.zeros_like(input_ids), attention_mask)  # (B, K)
            K = logits.shape[1]
            if target is None:
                k = logits.argmax(dim=1)
            else:
                k = torch.as_tensor(target, dtype=torch.long).expand(B).clone()
                if bool(((k < 0) | (k >= K)).any()):
                    raise ValueError(f"target must be a class in 0..{K - 1}, got {k.tolist()}")
            (grad,) = torch.autograd.grad(logits.gather(1, k[:, None]).sum(), captured[0])
    finally:
        handle.remove()
    return captured[0].detach(), grad.detach(), k.detach()


def token_saliency(
    model: nn.Module, input_ids, attention_mask=None, target=None, method: str = "grad_norm"
) -> tuple[np.ndarray, np.ndarray]:
    """One saliency score per token: ``||g_t||`` (``"grad_norm"``) or ``g_t . e_t`` (``"grad_x_input"``).

    Args:
        model, input_ids, attention_mask, target: as for :func:`embedding_gradients`.
        method: one of :data:`SALIENCY_METHODS`.

    Returns:
        ``(scores, k)``: float64 ``(B, T)`` (0 on padding) and the classes ``(B,)``.
    """
    check_choice(method, SALIENCY_METHODS, "saliency method")
    E, G, k = embedding_gradients(model, input_ids, attention_mask, target)
    scores = G.double().norm(dim=-1) if method == "grad_norm" else (G.double() * E.double()).sum(dim=-1)
    return scores.cpu().numpy(), k.cpu().numpy()


def attention_importance(model: nn.Module, input_ids: Sequence[int], layer: int = -1) -> np.ndarray:
    """The attention each token receives in ``layer``, averaged over heads and query positions: ``(T,)``.

    With the weights ``a^h_{ij}`` (query ``i`` to key ``j`` in head ``h``) this is
    ``(1 / (H T)) sum_h sum_i a^h_{ij}``; it sums to 1 over the tokens. For a classifier that averages the last
    layer's outputs (mean pooling), it is how much each token's value vector enters the pooled vector through
    that layer's attention.

    Args:
        model: a model made of lmbook attention modules (:func:`lmbook.attention.attention_maps`).
        input_ids: one sentence's ids, ``(T,)``. layer: which layer, counted as a list index (-1: the last).
    """
    maps = attention_maps(model, list(map(int, input_ids)))
    layers = sorted({key[0] for key in maps})
    chosen = layers[layer]
    heads = np.stack([w for (lay, _), w in sorted(maps.items()) if lay == chosen])  # (H, T, T)
    return heads.mean(axis=(0, 1))


def _pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), T), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def class_probabilities(model: nn.Module, sequences: Sequence[Sequence[int]], pad_id: int = 0) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of token-id sequences of any lengths (padded into one batch, masked)."""
    ids, mask = _pad_batch(sequences, pad_id)
    with evaluation_mode(model), torch.no_grad():
        logits = model(ids, torch.zeros_like(ids), mask)
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


def deletion_effects(
    model: nn.Module, input_ids: Sequence[int], rankings: dict[str, Sequence[int]], k: int, pad_id: int = 0
) -> dict[str, float]:
    """How far the predicted class's probability falls when the top-``k`` tokens of each ranking are removed.

    Args:
        model: as for :func:`class_probabilities`. input_ids: one sentence's ids, ``[CLS] ... [SEP]``.
        rankings: ``{name: positions}``, each a list of positions of ``input_ids``, most important first (e.g.
            ``np.argsort(-scores)`` restricted to the word tokens). k: how many to remove, 1 to the shortest
            ranking's length.

    Returns:
        ``{name: p_k(sentence) - p_k(sentence without the top-k tokens)}`` where ``k`` is the class the model
        predicts for the whole sentence: positive when the removal weakens the prediction.
    """
    ids = list(map(int, input_ids))
    for name, order in rankings.items():
        if not 1 <= k <= len(order):
            raise ValueError(f"k must be between 1 and the length of ranking {name!r} ({len(order)}), got {k}")
        if len(set(order)) != len(order) or not all(0 <= p < len(ids) for p in order):
            raise ValueError(f"ranking {name!r} must hold distinct positions in 0..{len(ids) - 1}, got {list(order)}")
    variants = [ids] + [
        [t for p, t in enumerate(ids) if p not in set(map(int, order[:k]))] for order in rankings.values()
    ]
    proba = class_probabilities(model, variants, pad_id)
    cls = int(proba[0].argmax())
    return {name: float(proba[0, cls] - proba[i + 1, cls]) for i, name in enumerate(rankings)}


# ----- comparing rankings, and uncertainty ------------------------------------------------------------------------


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2, got shapes {a.shape} and {b.shape}")
    return a, b


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two score vectors: (concordant - discordant pairs), corrected for ties.

    ``+1``: the same order, ``-1``: reversed, ``0``: no relation. NaN when either vector is constant.
    """
    a, b = _pair(a, b)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)  # pairs not tied in a, not tied in b
    if n_a == 0 or n_b == 0:
        return float("nan")
    return float((da * db).sum() / np.sqrt(n_a * n_b))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(a, b) -> float:
    """Spearman's rank correlation: the Pearson correlation of the two vectors' ranks (ties: mean ranks)."""
    a, b = _pair(a, b)
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def bootstrap_mean(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` and a percentile bootstrap interval for it.

    Each of ``n_boot`` rounds draws ``n`` values with replacement and takes their mean; the interval holds the
    central ``level`` share of those means. It reflects the variation between the sentences measured, not that
    of a model trained again.

    Returns:
        ``(mean, low, high)``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"values must be a 1-D array of at least 2 finite numbers, got shape {x.shape}")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and level in (0, 1), got {n_boot} and {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(x.mean()), float(low), float(high)
