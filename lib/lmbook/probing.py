"""Looking inside a fine-tuned model (chapter 8): what changed in its weights and its attention, and which
words its decision rests on.

Fine-tuning moves every weight of a pre-trained encoder a little. :func:`relative_change` measures how far each
part moved, :func:`attention_change` how much each layer's attention patterns changed on a set of texts, and
:func:`attention_share` how much weight each layer puts on the first and the last token (``[CLS]`` and
``[SEP]`` in BERT). :func:`word_occlusion` asks the model itself: it deletes one word at a time and records how
the probability of a class moves, an explanation that, unlike an attention map, is tied to the output.

Linear probes of every layer are in :func:`lmbook.finetune.embed_layers`.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from lmbook.attention import attention_maps
from lmbook.text import token_ids


def parameter_group(name: str) -> str:
    """The part of a BERT (or of a :class:`lmbook.finetune.BertClassifier`) that a parameter belongs to:
    ``"embeddings"``, ``"block 0"``, ``"block 1"``, ..., ``"pooler"``, ``"classifier"``."""
    name = name.removeprefix("bert.")
    block = re.match(r"encoder\.blocks\.(\d+)\.", name)
    return f"block {block.group(1)}" if block else name.split(".")[0]


@torch.no_grad()
def relative_change(before: nn.Module, after: nn.Module, group=parameter_group) -> dict[str, float]:
    """How far each part of a model moved: ``||w_after - w_before|| / ||w_before||`` over its parameters.

    Args:
        before, after: two copies of the same architecture (e.g. a deep copy taken before fine-tuning).
        group: maps a parameter's name to the name of its part (default :func:`parameter_group`).

    Returns:
        ``{part: relative change}`` in the order the parts first appear; the norms are Frobenius norms over all
        the part's parameters together. A part whose weights are all 0 before gets ``inf`` if it moved.

    Raises:
        ValueError: the two models do not have the same parameter names and shapes.
    """
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    if old.keys() != new.keys():
        raise ValueError(f"the models differ: {sorted(old.keys() ^ new.keys())[:5]} ... are in only one of them")
    squares: dict[str, list[float]] = {}
    for name, w in old.items():
        if w.shape != new[name].shape:
            raise ValueError(f"{name}: shape {tuple(w.shape)} before, {tuple(new[name].shape)} after")
        sums = squares.setdefault(group(name), [0.0, 0.0])  # [sum of squared changes, sum of squared weights]
        sums[0] += float(((new[name] - w).double() ** 2).sum())
        sums[1] += float((w.double() ** 2).sum())
    return {part: (np.sqrt(d / s) if s > 0 else (0.0 if d == 0 else np.inf)) for part, (d, s) in squares.items()}


def _layer_stacks(model: nn.Module, tokenizer, text: str) -> list[np.ndarray]:
    """Every layer's attention for one text: a list of ``(H, T, T)`` arrays."""
    maps = attention_maps(model, token_ids(tokenizer, text))
    layers = sorted({layer for layer, _ in maps})
    return [np.stack([maps[key] for key in sorted(maps) if key[0] == layer]) for layer in layers]


def _mean_over_texts(measure, texts) -> np.ndarray:
    """The mean of ``measure(text)`` (an array, the same shape for every text) over ``texts``."""
    texts = list(texts)
    if not texts:
        raise ValueError("expected at least one text")
    return sum(measure(text) for text in texts) / len(texts)


def attention_change(model_a: nn.Module, model_b: nn.Module, tokenizer, texts) -> np.ndarray:
    """How different two models' attention is, layer by layer: shape ``(L,)``.

    For each text, layer, head and query position, the **total variation distance** between the two
    attention rows, ``0.5 * sum_k |a_k - b_k|``: 0 when the head attends in the same way, 1 when the two rows
    share no weight at all. The result is the mean over texts, heads and positions.
    """

    def distance(text: str) -> np.ndarray:
        a, b = _layer_stacks(model_a, tokenizer, text), _layer_stacks(model_b, tokenizer, text)
        if len(a) != len(b):
            raise ValueError(f"the models have {len(a)} and {len(b)} attention layers")
        return np.array([0.5 * np.abs(x - y).sum(axis=-1).mean() for x, y in zip(a, b, strict=True)])

    return _mean_over_texts(distance, texts)


def attention_share(model: nn.Module, tokenizer, texts) -> np.ndarray:
    """The mean attention weight on the first and on the last token, per layer: shape ``(L, 2)``.

    With a WordPiece tokenizer these are ``[CLS]`` and ``[SEP]``. The mean is over texts, heads and query
    positions; a uniform head would give ``1 / T`` to each.
    """

    def share(text: str) -> np.ndarray:
        return np.array([[w[..., 0].mean(), w[..., -1].mean()] for w in _layer_stacks(model, tokenizer, text)])

    return _mean_over_texts(share, texts)


def word_occlusion(predict, text: str, label: int = 1) -> list[tuple[str, float]]:
    """What each word contributes to one class: delete it and see how that class's probability moves.

    Args:
        predict: ``predict(texts) -> (N, K)`` class probabilities, e.g.
            ``lambda texts: lmbook.finetune.predict_proba(model, tokenizer, texts)``.
        text: the sentence; its words are the pieces between spaces (punctuation stays with its word).
        label: the class whose probability is watched.

    Returns:
        ``[(word, p(text) - p(text without the word))]`` in the order of the words: positive when the word
        pushed the prediction towards ``label``, negative when it pushed away from it.
    """
    words = text.split()
    if not words:
        raise ValueError("the text has no words")
    variants = [text] + [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    proba = np.asarray(predict(variants))
    if proba.ndim != 2 or proba.shape[0] != len(variants) or not 0 <= label < proba.shape[1]:
        raise ValueError(f"predict must return ({len(variants)}, K) probabilities with K > {label}, got {proba.shape}")
    return [(word, float(proba[0, label] - p)) for word, p in zip(words, proba[1:, label], strict=True)]
