"""Which tokens a text classifier's decision rests on: gradient saliency, attention, and a deletion test.

Introduced in chapter 11, Outlook (what a model looks at). Chapter 5's :mod:`lmbook.saliency` differentiates a
class score with respect to pixels; text has no pixels, and token ids are integers that cannot be nudged, so the
gradient is taken with respect to each token's **embedding vector** ``e_t`` (the row of the embedding table the
token looks up), for a classifier such as :class:`lmbook.finetune.BertClassifier`:

- :func:`embedding_gradients`: ``g_t = d s_k / d e_t`` for every token of every sentence in a batch, where
  ``s_k`` is the logit of class ``k`` (the predicted class unless given).
- :func:`token_saliency`: one score per token from them: ``"grad_norm"``, ``||g_t||`` (how sensitive the score
  is to the token's vector), or ``"grad_x_input"``, ``g_t . e_t`` (the first-order estimate of how much the
  score would fall if the vector were set to zero; signed).
- :func:`attention_importance`: the attention each token *receives* in one layer, averaged over heads and over
  the query positions, the usual "attention as explanation" reading of a model.
- :func:`leave_one_out`: the fall of the predicted class's probability when each token alone is removed.
- :func:`deletion_effects` and :func:`deletion_test`: remove the top-``k`` tokens of a ranking and measure how
  far the probability of the predicted class falls; a ranking that finds what the decision rests on makes it
  fall further than a random one.
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
OUTPUTS = ("logit", "log_prob")
"""What is differentiated: the class's logit ``s_k``, or its log-probability ``log p_k = s_k - logsumexp(s)``."""


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
    model: nn.Module,
    input_ids,
    attention_mask=None,
    target=None,
    output: str = "logit",
    embedding: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient of each sentence's class logit with respect to each of its token embeddings.

    A forward hook on the embedding table swaps its output ``E`` (``(B, T, C)``) for a copy that requires a
    gradient; one backward pass of ``sum_b s_{b, k_b}`` then gives every sentence's gradient at once (sentences
    do not interact in evaluation mode, so the sum's gradient at sentence ``b`` is ``d s_{b, k_b} / d E_b``).

    Args:
        model: maps ``(input_ids, token_type_ids, attention_mask)`` to logits ``(B, K)``; run in evaluation mode
            and put back after. input_ids: ``(B, T)`` token ids. attention_mask: ``(B, T)``, 1 on real tokens and
            0 on padding (None: all real). target: the class per sentence, an int or ``(B,)``; None: the
            predicted class. output: ``"logit"`` differentiates ``s_k``; ``"log_prob"`` differentiates
            ``log p_k``, which also counts what the token does to the other classes' logits (with two classes
            it is a function of ``s_k - s_j`` alone; a change that raises both logits alike leaves it unchanged).
            embedding: the table to differentiate at; None: :func:`word_embedding`.

    Returns:
        ``(E, G, k)``: embeddings and gradients ``(B, T, C)`` (detached, the model's dtype) and classes ``(B,)``.
        Padding positions get a zero gradient.
    """
    check_choice(output, OUTPUTS, "output")
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
            scores = logits if output == "logit" else torch.log_softmax(logits, dim=1)
            (grad,) = torch.autograd.grad(scores.gather(1, k[:, None]).sum(), captured[0])
    finally:
        handle.remove()
    return captured[0].detach(), grad.detach(), k.detach()


def token_saliency(
    model: nn.Module,
    input_ids,
    attention_mask=None,
    target=None,
    method: str = "grad_norm",
    output: str = "logit",
    embedding: nn.Module | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One saliency score per token: ``||g_t||`` (``"grad_norm"``) or ``g_t . e_t`` (``"grad_x_input"``).

    Args:
        model, input_ids, attention_mask, target, output, embedding: as for :func:`embedding_gradients`. With a
            BERT, ``"grad_x_input"`` at the token table (the default) is not informative: a layer norm follows
            the sum ``x_t = e_t + p_t + s_t`` of token, position and segment vectors, and a layer norm's output
            does not change when its input is scaled, so ``g_t . x_t = 0`` and ``g_t . e_t = -g_t . (p_t + s_t)``.
            Take it at ``model.bert.embeddings`` (the vectors that enter the first block) instead.
        method: one of :data:`SALIENCY_METHODS`.

    Returns:
        ``(scores, k)``: float64 ``(B, T)`` (0 on padding) and the classes ``(B,)``.
    """
    check_choice(method, SALIENCY_METHODS, "saliency method")
    E, G, k = embedding_gradients(model, input_ids, attention_mask, target, output, embedding)
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


def class_probabilities(
    model: nn.Module, sequences: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 64
) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of token-id sequences of any lengths, in the order given.

    The sequences are sorted by length and run in padded, masked batches of ``batch_size`` (little padding), in
    evaluation mode without gradients.
    """
    if len(sequences) == 0 or min(len(s) for s in sequences) == 0:
        raise ValueError("need at least one sequence, and no empty one")
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out = []
    with evaluation_mode(model), torch.no_grad():
        for first in range(0, len(order), batch_size):
            ids, mask = _pad_batch([sequences[i] for i in order[first : first + batch_size]], pad_id)
            out.append(torch.softmax(model(ids, torch.zeros_like(ids), mask).double(), dim=1).cpu().numpy())
    proba = np.empty((len(sequences), out[0].shape[1]))
    proba[order] = np.concatenate(out)
    return proba


def _check_ranking(name: str, order: Sequence[int], k: int, length: int) -> None:
    if not 1 <= k <= len(order):
        raise ValueError(f"k must be between 1 and the length of ranking {name!r} ({len(order)}), got {k}")
    if len(set(order)) != len(order) or not all(0 <= p < length for p in order):
        raise ValueError(f"ranking {name!r} must hold distinct positions in 0..{length - 1}, got {list(order)}")


def without_tokens(input_ids: Sequence[int], positions) -> list[int]:
    """``input_ids`` with the tokens at ``positions`` removed (the sentence gets shorter)."""
    gone = set(map(int, positions))
    return [int(t) for p, t in enumerate(input_ids) if p not in gone]


def leave_one_out(model: nn.Module, sentences: Sequence[Sequence[int]], pad_id: int = 0) -> list[np.ndarray]:
    """For each sentence, the fall of its predicted class's probability when one token is removed, per token.

    Every token but the first and the last (``[CLS]`` and ``[SEP]``, which stay) is removed in turn; all the
    shortened sentences run in batches (:func:`class_probabilities`).

    Returns:
        One float64 array of length ``T`` per sentence; entries 0 and ``T - 1`` are 0 (never removed).
    """
    variants: list[list[int]] = []
    for ids in sentences:
        if len(ids) < 3:
            raise ValueError(f"a sentence needs a token between [CLS] and [SEP], got {len(ids)} tokens")
        variants += [list(map(int, ids))] + [without_tokens(ids, [p]) for p in range(1, len(ids) - 1)]
    proba = class_probabilities(model, variants, pad_id)
    falls, row = [], 0
    for ids in sentences:
        n = len(ids) - 2
        cls = int(proba[row].argmax())
        fall = np.zeros(len(ids))
        fall[1:-1] = proba[row, cls] - proba[row + 1 : row + 1 + n, cls]
        falls.append(fall)
        row += 1 + n
    return falls


def deletion_test(
    model: nn.Module,
    sentences: Sequence[Sequence[int]],
    rankings: Sequence[dict[str, Sequence[int]]],
    ks: Sequence[int],
    pad_id: int = 0,
) -> dict[str, np.ndarray]:
    """:func:`deletion_effects` for many sentences and several ``k`` at once, batched.

    Args:
        model, pad_id: as for :func:`class_probabilities`. sentences: ``N`` id lists. rankings: one
            ``{name: positions}`` per sentence, with the same names for all. ks: the numbers of tokens to remove.

    Returns:
        ``{name: (N, len(ks)) array}`` of the falls in the probability of each sentence's predicted class.
    """
    if len(sentences) != len(rankings):
        raise ValueError(f"need one ranking dict per sentence: {len(sentences)} sentences, {len(rankings)} rankings")
    names = list(rankings[0]) if rankings else []
    variants: list[list[int]] = []
    for ids, ranks in zip(sentences, rankings, strict=True):
        if list(ranks) != names:
            raise ValueError(f"every sentence needs the rankings {names}, got {list(ranks)}")
        variants.append(list(map(int, ids)))
        for name in names:
            for k in ks:
                _check_ranking(name, ranks[name], k, len(ids))
                variants.append(without_tokens(ids, ranks[name][:k]))
    proba = class_probabilities(model, variants, pad_id).reshape(len(sentences), 1 + len(names) * len(ks), -1)
    cls = proba[:, 0].argmax(axis=1)  # (N,) the predicted class of each whole sentence
    p = proba[np.arange(len(sentences)), :, cls]  # (N, 1 + names * ks)
    falls = p[:, :1] - p[:, 1:]
    return {name: falls[:, i * len(ks) : (i + 1) * len(ks)] for i, name in enumerate(names)}


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
    result = deletion_test(model, [input_ids], [dict(rankings)], [k], pad_id)
    return {name: float(falls[0, 0]) for name, falls in result.items()}


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
