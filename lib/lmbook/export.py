"""Export a classifier to ONNX, serve it with ONNX Runtime, and compare every small variant of a model in one table.

Introduced in chapter 10, Small and fast models. Training code is written for flexibility: Python decides at every
call what to run. A served model only needs its forward pass, so it is written down once as a **graph**: a list of
operators (matrix products, softmax, layer norm, ...) with the weights attached. **ONNX** (Open Neural Network
Exchange) is a file format for such graphs, versioned by an **opset** (the set of operators and their meaning);
**ONNX Runtime** is an inference engine that reads one and runs it without Python or PyTorch in the loop, after
fusing operators where it can.

- :func:`export_onnx`: ``torch.onnx.export`` of a classifier (the dynamo exporter, which traces the forward pass
  with ``torch.export`` and converts each operator), with the batch and sequence axes left free;
  :func:`export_onnx_cached` stores the file, so a notebook exports once.
- :class:`OnnxClassifier`: an ONNX Runtime session that is called like the torch classifier, ``(input_ids,
  token_type_ids, attention_mask) -> logits``, so :func:`lmbook.finetune.evaluate` scores it unchanged.
- :func:`quantize_onnx`: ONNX Runtime's own dynamic int8 quantisation of an exported file.
- :class:`Variant`, :func:`measure_variants`, :func:`variant_rows`, :func:`variant_table` and
  :func:`plot_variants`: size on disk, parameters, latency and test accuracy of every variant, as rows, as a
  Markdown table and as a size-against-accuracy figure.

The export is checked, not trusted: the tests compare ONNX Runtime's logits with PyTorch's on a tiny random
BERT, and the chapter does the same on the fine-tuned classifier.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import pathlib
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ONNX_OPSET = 18
"""The ONNX opset the book exports to: the newest one that ``torch.onnx.export``'s dynamo exporter targets by
default in torch 2.13, and one that ONNX Runtime 1.32 runs in full."""

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
"""The graph's inputs, each ``(B, T)`` int64, in the order of the torch classifier's arguments."""

_EXAMPLE_TEXTS = ("a short example", "a somewhat longer example sentence for the exporter to trace")


class _GraphForward(nn.Module):
    """The classifier as the exporter traces it: the attention mask turned boolean before the model sees it.

    The book's BERT checks that a 0/1 mask holds only 0 and 1, a check that reads the tensor's values; a graph
    cannot depend on values it has not seen, so the check stays in the eager model and the graph gets a boolean
    mask, which needs no check.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids, attention_mask):
        return self.model(input_ids, token_type_ids, attention_mask == 1)


def _graph_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in evaluation mode on the fast path: torch's fused attention and layer norm.

    The from-scratch attention asks, in Python, whether any query row is fully masked (a row with no key would
    give NaN); the fused kernel (``F.scaled_dot_product_attention``, the same numbers, see
    :class:`lmbook.attention.MultiHeadAttention`) needs no such question, so it can be written into a graph.
    The from-scratch layer norm is nine operators and the fused one a single ``LayerNormalization``, with the same
    parameters: the exporter traces fewer operators and ONNX Runtime runs one kernel.
    """
    from lmbook.attention import MultiHeadAttention
    from lmbook.transformer import FusedLayerNorm, LayerNorm

    graph_model = copy.deepcopy(model).eval()
    for module in graph_model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused = True
        if type(module) is LayerNorm:
            module.__class__ = FusedLayerNorm  # a subclass that only overrides forward
    return graph_model


def _quiet_exporter() -> None:
    """Keep the exporter's notes that do not concern the book (torchvision's operators skipped) out of the output."""
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def export_onnx(model: nn.Module, tokenizer, path, opset: int = ONNX_OPSET, max_length: int = 128) -> pathlib.Path:
    """Write ``model`` to ``path`` as an ONNX graph with free batch and sequence axes; return the path.

    Args:
        model: a classifier called as ``model(input_ids, token_type_ids, attention_mask) -> (B, K) logits``, e.g.
            :class:`lmbook.finetune.BertClassifier`; it is not changed (a copy is traced, in evaluation mode).
        tokenizer: its tokenizer (``batch_encode``), used to make the example batch the exporter traces.
        path: the ``.onnx`` file to write (its folder is created). opset: the ONNX opset (:data:`ONNX_OPSET`).
        max_length: the longest sequence the graph accepts (at most the model's number of positions).

    The graph's inputs are :data:`INPUT_NAMES`, each ``(batch, sequence)`` int64; its output is ``logits``
    ``(batch, K)`` float32. The weights are stored inside the file, so its size is the model's size on disk.
    """
    from torch.export import Dim

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = tokenizer.batch_encode(list(_EXAMPLE_TEXTS), max_length=max_length)
    example = tuple(torch.as_tensor(enc[name], dtype=torch.int64) for name in INPUT_NAMES)
    batch, sequence = Dim("batch", min=1), Dim("sequence", min=1, max=max_length)
    axes = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}
    _quiet_exporter()
    with warnings.catch_warnings():
        # notes about the exporter's own internals, not about the model: an axis name reused for equal axes, and
        # a deprecation inside torch's pytree utilities
        warnings.filterwarnings("ignore", message=r"# The axis name")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        torch.onnx.export(
            _GraphForward(_graph_copy(model)).eval(),
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_shapes=axes,
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
    return path


def weights_digest(model: nn.Module) -> str:
    """A SHA-256 of a model's state dict (names, shapes, dtypes and values): two models with equal weights share it."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def export_onnx_cached(
    model: nn.Module, tokenizer, path, opset: int = ONNX_OPSET, max_length: int = 128, folder=None
) -> tuple[pathlib.Path, bool]:
    """:func:`export_onnx`, stored with :func:`lmbook.cache.cached`: the first call for these weights exports
    (tens of seconds: tracing the forward pass dominates, not the model's size), later calls copy the stored file.

    The key holds the weights (:func:`weights_digest`), ``opset``, ``max_length``, the versions of the exporter's
    packages and the source of the modules the graph is traced from.

    Returns:
        ``(path, hit)``: ``hit`` is True when the file came from the cache.
    """
    from importlib.metadata import version

    from lmbook.cache import cached, source_digest

    path = pathlib.Path(path)

    def build() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            written = export_onnx(model, tokenizer, pathlib.Path(tmp) / "model.onnx", opset, max_length)
            return {"onnx": torch.frombuffer(bytearray(written.read_bytes()), dtype=torch.uint8)}

    parts = {
        "weights": weights_digest(model),
        "opset": opset,
        "max_length": max_length,
        "packages": [version(p) for p in ("onnx", "onnxscript", "onnxruntime")],
        "source": source_digest("export", "bert", "finetune", "transformer", "attention", "positional"),
    }
    result, hit = cached("onnx-export", parts, build, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result["onnx"].numpy().tobytes())
    return path, hit


def quantize_onnx(path, out_path) -> pathlib.Path:
    """ONNX Runtime's dynamic int8 quantisation of an exported graph: 8-bit weights for its matrix products and its
    embedding look-ups, activations quantised on the fly with a scale per call.

    The graph is first pre-processed (``quant_pre_process``: shape inference and constant folding), so that weights
    computed from other weights in the graph (the fused attention's ``concat`` of ``W_q``, ``W_k``, ``W_v``) become
    constants that ``quantize_dynamic`` can quantise; without it they stay float32.

    Args:
        path: an ``.onnx`` file from :func:`export_onnx`. out_path: where to write the quantised graph.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folded = pathlib.Path(tmp) / "folded.onnx"
        quant_pre_process(str(path), str(folded), skip_symbolic_shape=True)
        quantize_dynamic(str(folded), str(out_path), weight_type=QuantType.QInt8)
    return out_path


class OnnxClassifier(nn.Module):
    """An ONNX Runtime session called like the torch classifier: ``(B, T)`` ids -> ``(B, K)`` logits (a tensor).

    It is an ``nn.Module`` without parameters, so the book's helpers that take a model take it too
    (:func:`lmbook.finetune.evaluate`, :func:`lmbook.finetune.predict_proba`); it always runs on the CPU.

    Args:
        path: an ``.onnx`` file with the inputs :data:`INPUT_NAMES` (from :func:`export_onnx`).
        threads: ONNX Runtime's threads for one operator (``intra_op_num_threads``); compare it with torch at the
            same number (:func:`lmbook.timing.measure_latency` sets torch's).
    """

    def __init__(self, path, threads: int = 1) -> None:
        super().__init__()
        import onnxruntime as ort

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {self.path}; write one with lmbook.export.export_onnx")
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise ValueError(f"{self.path}: the graph's inputs are {names}; expected {list(INPUT_NAMES)}")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """``input_ids``, ``token_type_ids``, ``attention_mask``: ``(B, T)`` each -> logits ``(B, K)`` float32."""
        from lmbook.testing import check_shape

        ids = torch.as_tensor(input_ids)
        B, T = check_shape(ids, ("B", "T"), "input_ids").shape
        types = torch.zeros_like(ids) if token_type_ids is None else torch.as_tensor(token_type_ids)
        mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask)
        feeds = {}
        for name, t in zip(INPUT_NAMES, (ids, types, mask), strict=True):
            check_shape(t, (B, T), name)
            feeds[name] = t.detach().cpu().to(torch.int64).numpy()
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)

    def file_bytes(self) -> int:
        """The size of the ``.onnx`` file in bytes: the graph and its weights, what a server loads."""
        return os.path.getsize(self.path)

    def num_parameters(self) -> int:
        """Numbers stored as floating-point or integer weights in the graph (its initializers), scales included."""
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer))


# ----- the table of variants --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One version of a model, measured: what the chapter's final table shows per row.

    Attributes:
        name: e.g. ``"float32"``, ``"int8 dynamic (torchao)"``, ``"ONNX Runtime"``.
        size_bytes: bytes on disk (``torch.save`` of the weights, or the ``.onnx`` file).
        parameters: numbers stored (weights, biases; scales and zero points of a quantised model are not counted
            unless the caller counts them).
        latency: :class:`lmbook.timing.Latency` of one call at batch 1.
        accuracy: accuracy on the test set. n_test: the test set's size.
    """

    name: str
    size_bytes: int
    parameters: int
    latency: object
    accuracy: float
    n_test: int


def _count_parameters(model: nn.Module) -> int:
    """Numbers in the weights: an ONNX graph's initializers, or a torch model's parameters."""
    if isinstance(model, OnnxClassifier):
        return model.num_parameters()
    return int(sum(p.numel() for p in model.parameters()))


def measure_variants(
    models: dict,
    tokenizer,
    texts,
    labels,
    threads: int = 1,
    sentence: str | None = None,
    warmup: int = 2,
    rounds: int = 5,
    per_round: int = 3,
    sizes: dict | None = None,
) -> list[Variant]:
    """Size, parameters, batch-1 latency and accuracy of several models: the rows of :func:`variant_table`.

    The latencies are measured in interleaved rounds: each round times ``per_round`` calls of every model in turn
    (:func:`lmbook.timing.measure_latency`), and each model's :class:`~lmbook.timing.Latency` holds all its rounds.
    On a shared machine the load drifts within seconds; timing the models one after the other would hand one model
    a quiet minute and the next a busy one, while interleaving spreads the drift over all of them.

    Args:
        models: ``{name: model}`` in the table's order; a model is a torch classifier (plain, torchao-quantised,
            pruned...) or an :class:`OnnxClassifier`.
        tokenizer, texts, labels: the test set, scored with :func:`lmbook.finetune.evaluate`.
        threads: CPU threads for torch while timing; an :class:`OnnxClassifier` must have been built with the same
            number (its session's own), or a ValueError says so.
        sentence: the batch-1 input timed; None: the first test text.
        warmup: untimed calls of each model before the first round. rounds, per_round: timed calls, as above.
        sizes: ``{name: bytes}`` for models whose size on disk is known otherwise; by default
            :func:`lmbook.inference.saved_bytes` (an :class:`OnnxClassifier`: its file's size).
    """
    from lmbook.finetune import evaluate
    from lmbook.inference import saved_bytes
    from lmbook.timing import Latency, measure_latency

    texts, sizes = list(texts), dict(sizes or {})
    for name, model in models.items():
        if isinstance(model, OnnxClassifier) and model.threads != threads:
            raise ValueError(f"{name}: its ONNX Runtime session has {model.threads} threads, torch gets {threads}")
    if rounds < 1 or per_round < 1:
        raise ValueError(f"need rounds >= 1 and per_round >= 1, got rounds={rounds}, per_round={per_round}")
    enc = tokenizer.batch_encode([texts[0] if sentence is None else sentence])
    batch = {k: torch.as_tensor(enc[k], dtype=torch.int64) for k in INPUT_NAMES}
    calls = {name: (lambda m=model: m(**batch)) for name, model in models.items()}
    times: dict[str, list[np.ndarray]] = {name: [] for name in models}
    # no_grad, not inference_mode: tensors made under inference_mode may not later become a quantised weight
    with torch.no_grad():
        accuracy = {
            name: float(evaluate(model, tokenizer, texts, labels)["accuracy"]) for name, model in models.items()
        }
        for call in calls.values():  # the warm-up; its one timed call is not kept
            measure_latency(call, warmup=warmup, repeats=1, threads=threads)
        for _ in range(rounds):
            for name, call in calls.items():
                times[name].append(measure_latency(call, warmup=0, repeats=per_round, threads=threads).times)
    variants = []
    for name, model in models.items():
        if name not in sizes:
            sizes[name] = model.file_bytes() if isinstance(model, OnnxClassifier) else saved_bytes(model)
        latency = Latency(times=np.concatenate(times[name]), threads=threads, warmup=warmup + 1)
        variants.append(
            Variant(name, int(sizes[name]), _count_parameters(model), latency, float(accuracy[name]), len(texts))
        )
    return variants


def variant_rows(variants, baseline: str = "float32") -> list[dict]:
    """The variants as plain rows (for ``benchmarks/`` and tests), with size and speed relative to ``baseline``."""
    variants = list(variants)
    by_name = {v.name: v for v in variants}
    if baseline not in by_name:
        raise ValueError(f"baseline {baseline!r} is not among the variants {list(by_name)}")
    base = by_name[baseline]
    return [
        {
            "variant": v.name,
            "size_mb": v.size_bytes / 1e6,
            "size_ratio": base.size_bytes / v.size_bytes,
            "parameters": v.parameters,
            "latency_ms": v.latency.ms,
            "latency_q1_ms": 1e3 * v.latency.q1,
            "latency_q3_ms": 1e3 * v.latency.q3,
            "speedup": base.latency.median / v.latency.median,
            "threads": v.latency.threads,
            "accuracy": v.accuracy,
            "n_test": v.n_test,
        }
        for v in variants
    ]


def variant_table(variants, baseline: str = "float32") -> str:
    """The variants as a Markdown table: size (MB = 10^6 bytes), parameters, batch-1 latency, test accuracy."""
    rows = variant_rows(variants, baseline)
    threads = sorted({r["threads"] for r in rows})
    thread_note = ", ".join(str(t) for t in threads)
    lines = [
        f"| variant | size (MB) | smaller by | parameters | latency, batch 1 (ms, {thread_note} thread"
        f"{'s' if threads != [1] else ''}) | faster by | test accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['size_mb']:.1f} | {r['size_ratio']:.1f}x | {r['parameters'] / 1e6:.1f}M "
            f"| {r['latency_ms']:.1f} ({r['latency_q1_ms']:.1f}-{r['latency_q3_ms']:.1f}) | {r['speedup']:.2f}x "
            f"| {r['accuracy']:.2f} |"
        )
    return "\n".join(lines)


def _clusters(variants, size_tolerance: float = 0.03, accuracy_tolerance: float = 0.005) -> list[list[Variant]]:
    """Variants whose points would overlap in :func:`plot_variants` (same accuracy, sizes within 3%), grouped."""
    groups: list[list[Variant]] = []
    for v in variants:
        for group in groups:
            first = group[0]
            if (
                abs(first.accuracy - v.accuracy) < accuracy_tolerance
                and abs(math.log(first.size_bytes / v.size_bytes)) < size_tolerance
            ):
                group.append(v)
                break
        else:
            groups.append([v])
    return groups


def plot_variants(variants, ax=None):
    """Size on disk (log scale) against test accuracy, one point per variant; returns the axes.

    Variants that would sit on the same spot (e.g. a model and its exact ONNX export) share one point and one label;
    labels of points at the same accuracy alternate above and below, so that they do not run into each other.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    from lmbook.plotting import figure

    variants = list(variants)
    if ax is None:
        ax = figure(6.4, 4.0).add_subplot()
    groups = sorted(_clusters(variants), key=lambda g: g[0].size_bytes)
    level_count: dict[float, int] = {}
    for group in groups:
        x, y = group[0].size_bytes / 1e6, group[0].accuracy
        ax.scatter([x], [y], s=40 + 15 * (len(group) - 1), color="C0", zorder=3)
        nth = level_count.get(round(y, 2), 0)
        level_count[round(y, 2)] = nth + 1
        above = nth % 2 == 0
        ax.annotate(
            "\n".join(v.name for v in group),
            (x, y),
            xytext=(0, 7 if above else -7),
            textcoords="offset points",
            ha="center",
            va="bottom" if above else "top",
            fontsize=8,
        )
    accuracies = [v.accuracy for v in variants]
    spread = max(max(accuracies) - min(accuracies), 0.02)
    ax.set_ylim(min(accuracies) - 0.45 * spread, max(accuracies) + 0.6 * spread)
    sizes = [v.size_bytes / 1e6 for v in variants]
    ax.set_xlim(min(sizes) / 1.35, max(sizes) * 1.35)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel(f"test accuracy ({variants[0].n_test} sentences)")
    ax.grid(True, alpha=0.3)
    return ax
