"""Mistakes in compressing a model, each made measurable: the helpers behind chapter 10's pitfalls.

Introduced in chapter 10, Small and fast: quantisation, pruning, distillation (section 6). The quantisation itself is
:mod:`lmbook.quantize`'s; this module adds what the two quantisation pitfalls need around it.

- **Static activation quantisation** needs a range for each layer's input, fixed before the model runs on new data
  (its **calibration**): :func:`record_inputs` runs calibration batches (:func:`length_batches`, no padding) and
  keeps what each ``nn.Linear`` layer received; :func:`activation_ranges` turns that into a clipping range per
  layer at a percentile; :func:`static_activation_quantization` fake-quantises every layer's input with those fixed
  ranges while the block runs. Choosing the percentile by test accuracy leaks the test set into the model;
  :func:`selection_optimism` measures how much that flatters the reported number, over many random splits.
- **Per-layer sensitivity**: :func:`layer_groups` names the parts of a :class:`lmbook.finetune.BertClassifier`
  (the embeddings, each block's attention and feed-forward layers, the head); :func:`fake_quantized_weights`
  quantises the weights of some of them for the duration of a block and restores them after; :func:`layer_sensitivity`
  quantises one group at a time and measures how far the output distribution moves (the mean KL divergence from
  the float model's).
- **Fair latencies**: :func:`interleaved_latencies` times several functions in turns, with one thread count, and
  returns each one's :class:`lmbook.timing.Latency`; on a busy machine, timing one after the other lets a burst
  of load land on one contender only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmbook.finetune import BertClassifier, predict_proba
from lmbook.loop import cpu_threads
from lmbook.quantize import fake_quantize, quant_params
from lmbook.testing import check_shape
from lmbook.throughput import time_interleaved
from lmbook.timing import Latency

# ----- static activation quantisation ---------------------------------------------------------------------------


def length_batches(tokenizer, texts: Sequence[str], max_length: int = 128) -> list[dict[str, torch.Tensor]]:
    """The texts encoded and grouped by their length in tokens: one batch per length, so no batch holds padding.

    Calibration should see the activations of real tokens only; padded positions also pass through every
    ``Linear`` layer and would enter the recorded ranges.
    """
    enc = tokenizer.batch_encode(list(texts), max_length=max_length)
    lengths = enc["attention_mask"].sum(dim=1)  # (N,)
    batches = []
    for length in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == length)[:, 0]
        batches.append({key: value[rows, :length] for key, value in enc.items()})
    return batches


def _linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def record_inputs(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    """Every value each ``nn.Linear`` layer of ``model`` receives while ``model(**batch)`` runs over ``batches``.

    Returns:
        layer name -> 1-D float32 array of all the input values the layer saw (layers that never ran, such as
        BERT's pooler under mean pooling, are left out).
    """
    seen: dict[str, list[np.ndarray]] = {}

    def keep(name: str):
        def hook(module, args):
            seen.setdefault(name, []).append(args[0].detach().reshape(-1).float().numpy())

        return hook

    handles = [layer.register_forward_pre_hook(keep(name)) for name, layer in _linear_layers(model).items()]
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: np.concatenate(values) for name, values in seen.items()}


def activation_ranges(inputs: dict[str, np.ndarray], percentile: float = 100.0) -> dict[str, tuple[float, float]]:
    """Each layer's calibrated input range ``(lo, hi)``: the ``100 - percentile`` and ``percentile`` percentiles.

    ``percentile=100`` is the minimum and maximum (what PyTorch's ``MinMaxObserver`` records); a lower percentile
    clips the rarest, largest values, so that the ``2^b`` levels are spent on where most values lie.

    Args:
        inputs: from :func:`record_inputs`. percentile: in ``(50, 100]``.
    """
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    return {
        name: (float(np.percentile(x, 100.0 - percentile)), float(np.percentile(x, percentile)))
        for name, x in inputs.items()
    }


@contextlib.contextmanager
def static_activation_quantization(
    model: nn.Module, ranges: dict[str, tuple[float, float]], bits: int = 8
) -> Iterator[nn.Module]:
    """While the block runs, the input of every ``nn.Linear`` named in ``ranges`` is fake-quantised to ``bits`` bits
    (affine, per tensor) with the scale and zero point of its calibrated range; values outside it are clamped.

    The range is fixed in advance (static quantisation), not taken from each new batch (dynamic quantisation,
    as torchao's int8-dynamic does). The weights are not touched.
    """
    layers = _linear_layers(model)
    unknown = sorted(set(ranges) - set(layers))
    if unknown:
        raise ValueError(f"ranges name no Linear layer of the model: {', '.join(map(repr, unknown))}")

    def quantizer(scale: torch.Tensor, zero_point: torch.Tensor):
        def hook(module, args):
            return (fake_quantize(args[0], bits, scale=scale, zero_point=zero_point), *args[1:])

        return hook

    handles = []
    try:
        for name, (lo, hi) in ranges.items():
            scale, zero_point = quant_params(torch.tensor([lo, hi], dtype=torch.float32), bits, "affine")
            handles.append(layers[name].register_forward_pre_hook(quantizer(scale, zero_point)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class SelectionOptimism:
    """How much choosing a setting on the set that reports its accuracy flatters that accuracy.

    Attributes:
        leaky: ``(n_splits,)`` accuracy on the reporting half of the setting that is best *there*.
        honest: ``(n_splits,)`` accuracy on the reporting half of the setting that is best on the other half.
    """

    leaky: np.ndarray
    honest: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """``leaky - honest`` per split; never negative."""
        return self.leaky - self.honest

    @property
    def mean(self) -> float:
        """The average flattery, in accuracy (0.02 is two points)."""
        return float(self.gaps.mean())


def pick_best(correct: np.ndarray) -> int:
    """The setting with the highest accuracy: ``correct`` ``(K, N)`` booleans -> its row; ties go to the first."""
    return int(np.argmax(np.asarray(correct).mean(axis=1)))


def selection_optimism(correct, n_report: int | None = None, n_splits: int = 1000, seed: int = 0) -> SelectionOptimism:
    """Split the examples at random, many times, into a reporting half and a choosing half, and compare the
    accuracy reported after choosing the setting on the reporting half itself (leaky) with the one reported after
    choosing it on the other half (honest).

    Args:
        correct: ``(K, N)`` booleans, whether setting ``k`` classifies example ``n`` right.
        n_report: examples in the reporting half (default ``N // 2``); the rest choose.
        n_splits: random splits. seed: their generator's seed.
    """
    correct = np.asarray(correct, dtype=bool)
    K, N = check_shape(correct, ("K", "N"), "correct").shape
    n_report = N // 2 if n_report is None else n_report
    if not 0 < n_report < N:
        raise ValueError(f"n_report must be between 1 and N - 1 = {N - 1}, got {n_report}")
    rng = np.random.default_rng(seed)
    leaky, honest = np.empty(n_splits), np.empty(n_splits)
    for i in range(n_splits):
        order = rng.permutation(N)
        report, choose = correct[:, order[:n_report]], correct[:, order[n_report:]]
        leaky[i] = report.mean(axis=1).max()
        honest[i] = report[pick_best(choose)].mean()
    return SelectionOptimism(leaky, honest)


# ----- per-layer sensitivity ------------------------------------------------------------------------------------


def layer_groups(model: BertClassifier) -> dict[str, list[str]]:
    """The parts of a :class:`~lmbook.finetune.BertClassifier` that one would quantise or keep together.

    Returns:
        group name -> module names: ``"embeddings"`` (token, position and segment tables), ``"block l attention"``
        (``W_q``, ``W_k``, ``W_v``, ``W_o``), ``"block l feed-forward"`` (``fc1``, ``fc2``), ``"pooler"`` (only under
        ``pooling="pooler"``; otherwise its output is never used) and ``"head"`` (the classifier).
    """
    if not isinstance(model, BertClassifier) or not hasattr(model.bert, "encoder"):
        raise TypeError(f"model must be a BertClassifier around lmbook.bert.BertModel, got {type(model).__name__}")
    groups = {"embeddings": ["bert.embeddings.token", "bert.embeddings.position.embedding", "bert.embeddings.segment"]}
    for i in range(len(model.bert.encoder.blocks)):
        prefix = f"bert.encoder.blocks.{i}"
        groups[f"block {i} attention"] = [f"{prefix}.attn.{w}" for w in ("W_q", "W_k", "W_v", "W_o")]
        groups[f"block {i} feed-forward"] = [f"{prefix}.ffn.fc1", f"{prefix}.ffn.fc2"]
    if model.pooling == "pooler":
        groups["pooler"] = ["bert.pooler"]
    groups["head"] = ["classifier"]
    return groups


@contextlib.contextmanager
def fake_quantized_weights(
    model: nn.Module, names: Iterable[str], bits: int = 4, scheme: str = "symmetric", axis: int | None = None
) -> Iterator[nn.Module]:
    """While the block runs, the weights of the modules ``names`` hold their fake-quantised values
    (:func:`lmbook.quantize.fake_quantize` with ``bits``, ``scheme``, ``axis``); the float weights come back after,
    even when the block raises."""
    modules = dict(model.named_modules())
    names = list(names)
    missing = [n for n in names if not isinstance(getattr(modules.get(n), "weight", None), torch.Tensor)]
    if missing:
        raise ValueError(f"no module with a weight named {', '.join(map(repr, missing))}")
    saved = {n: modules[n].weight.detach().clone() for n in names}
    try:
        with torch.no_grad():
            for n in names:
                modules[n].weight.copy_(fake_quantize(saved[n], bits, scheme, axis))
        yield model
    finally:
        with torch.no_grad():
            for n in names:
                modules[n].weight.copy_(saved[n])


def mean_kl(p: np.ndarray, q: np.ndarray) -> float:
    """The mean over rows of ``KL(p || q) = sum_k p_k (log p_k - log q_k)``: ``(N, K)`` probabilities each."""
    p, q = torch.as_tensor(np.asarray(p, dtype=np.float64)), torch.as_tensor(np.asarray(q, dtype=np.float64))
    check_shape(q, tuple(p.shape), "q")
    return float(torch.special.xlogy(p, p).sum() - (p * torch.log(q.clamp_min(1e-300))).sum()) / p.shape[0]


def layer_sensitivity(
    model: BertClassifier,
    tokenizer,
    texts: Sequence[str],
    groups: dict[str, list[str]] | None = None,
    bits: int = 4,
    scheme: str = "symmetric",
    axis: int | None = None,
) -> dict[str, float]:
    """How far each group alone moves the model's predictions when its weights are quantised.

    Args:
        model, tokenizer, texts: a classifier and the sentences to measure on (validation, never test).
        groups: from :func:`layer_groups` (the default). bits, scheme, axis: as for
            :func:`lmbook.quantize.fake_quantize`.

    Returns:
        group -> :func:`mean_kl` of the float model's class probabilities and those with only that group quantised
        (0 when nothing changes; in nats).
    """
    groups = layer_groups(model) if groups is None else groups
    reference = predict_proba(model, tokenizer, texts)
    result = {}
    for group, names in groups.items():
        with fake_quantized_weights(model, names, bits, scheme, axis):
            result[group] = mean_kl(reference, predict_proba(model, tokenizer, texts))
    return result


# ----- fair latencies -------------------------------------------------------------------------------------------


def interleaved_latencies(
    fns: dict[str, Callable[[], object]], warmup: int = 3, repeats: int = 20, threads: int | None = 1
) -> dict[str, Latency]:
    """The :class:`~lmbook.timing.Latency` of each function, measured in turns with ``threads`` CPU threads.

    :func:`lmbook.throughput.time_interleaved` runs ``warmup`` untimed rounds, then ``repeats`` rounds in which
    every function runs once, so a burst of load on a shared machine is spread over all of them; the thread count
    is set for the whole measurement and restored after (:func:`lmbook.loop.cpu_threads`).
    """
    with cpu_threads(threads):
        seconds = time_interleaved(fns, repeats=repeats, warmup=warmup)
    return {name: Latency(times=np.asarray(t), threads=threads, warmup=warmup) for name, t in seconds.items()}
