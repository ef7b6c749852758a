"""Benchmark of chapter 10, Small and fast models: every variant of the classifier, at one thread and at all threads.

``bench_compression()`` returns one section of ``benchmarks/run.py``'s results (``what``, ``rows``, ``targets``). It
rebuilds the chapter's variant table (section 5) from the same library calls as the notebook: chapter 8's float32
classifier, torchao's three quantisations (:func:`lmbook.quantize.quantize_model`), structured pruning of half of
the feed-forward neurons, shrunk (:mod:`lmbook.prune`), the distilled student (:func:`lmbook.distill.distilled_student`)
and the classifier exported to ONNX and run with ONNX Runtime, in float32 and in ONNX Runtime's dynamic int8
(:mod:`lmbook.export`). Each variant's size on disk, parameters and test accuracy are measured once; its batch-1
latency (:func:`lmbook.export.measure_variants`, interleaved rounds) at one thread and at every CPU thread, and the
batch-100 latency of the float and int8 variants at both counts.
"""

from __future__ import annotations

import os
import tempfile

try:  # run as part of benchmarks/run.py (its folder is on sys.path) or imported from the repository root
    from run import target
except ImportError:  # pragma: no cover
    from benchmarks.run import target

BATCH_VARIANTS = ("float32", "int8 dynamic (torchao)", "ONNX Runtime", "ONNX Runtime int8")
"""The variants also timed on the whole test set at once (batch 100): float against quantised, in both engines."""


def _torch_variants(model):
    """The chapter's torch variants of ``model``, by their table names."""
    from lmbook.distill import distilled_student
    from lmbook.prune import prune_model, shrink_feedforward
    from lmbook.quantize import VARIANT_NAMES, quantize_model

    variants = {"float32": model}
    variants.update(
        {VARIANT_NAMES[m]: quantize_model(model, m) for m in ("int8-dynamic", "int8-weight", "int4-weight")}
    )
    variants["pruned 50% (structured)"] = shrink_feedforward(prune_model(model, 0.5, structured=True))
    variants["distilled student"] = distilled_student()[0]
    return variants


def bench_compression(quick: bool = False) -> dict:
    """The variant table at 1 thread and at all threads, the batch-100 latencies, and the export's equality."""
    import torch

    from lmbook.export import OnnxClassifier, export_onnx_cached, measure_variants, quantize_onnx, variant_rows
    from lmbook.finetune import sentiment_classifier
    from lmbook.sentiment import load_sentiment
    from lmbook.timing import measure_latency

    rounds, per_round, batch_repeats = (2, 2, 1) if quick else (5, 4, 3)
    all_threads = os.cpu_count() or 1
    thread_counts = sorted({1, all_threads})
    model, tokenizer, _ = sentiment_classifier()
    texts, labels = load_sentiment("test")
    rows, targets = [], []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, _ = export_onnx_cached(model, tokenizer, os.path.join(tmp, "classifier.onnx"))
        int8_path = quantize_onnx(onnx_path, os.path.join(tmp, "classifier-int8.onnx"))
        torch_variants = _torch_variants(model)
        batch = tokenizer.batch_encode(texts)
        with torch.no_grad():
            gap = float((OnnxClassifier(onnx_path)(**batch) - model(**batch)).abs().max())
        targets.append(target("ONNX Runtime's logits equal PyTorch's (100 test sentences), largest difference",
                              gap, 1e-4, ""))  # fmt: skip
        for threads in thread_counts:
            models = dict(torch_variants)
            models["ONNX Runtime"] = OnnxClassifier(onnx_path, threads=threads)
            models["ONNX Runtime int8"] = OnnxClassifier(int8_path, threads=threads)
            variants = measure_variants(
                models, tokenizer, texts, labels, threads=threads, rounds=rounds, per_round=per_round
            )
            table = {row["variant"]: row for row in variant_rows(variants)}
            with torch.no_grad():
                for name in BATCH_VARIANTS:
                    latency = measure_latency(
                        lambda m=models[name]: m(**batch), warmup=1, repeats=batch_repeats, threads=threads
                    )
                    table[name]["latency_batch100_ms"] = latency.ms
            for row in table.values():
                rows.append({"threads": threads, **row})
            if threads == 1:
                float_row = table["float32"]
                onnx_accuracy = table["ONNX Runtime"]["accuracy"]
                same = onnx_accuracy == float_row["accuracy"]
                targets.append(target("ONNX Runtime's test accuracy equals float32's", onnx_accuracy,
                                      float_row["accuracy"], "", passed=same))  # fmt: skip
                for name in ("int8 dynamic (torchao)", "ONNX Runtime int8"):
                    drop = float_row["accuracy"] - table[name]["accuracy"]
                    targets.append(target(f"{name}: test accuracy lost against float32", round(drop, 2), 0.03, ""))
                ratio = table["ONNX Runtime int8"]["size_ratio"]
                targets.append(target("ONNX Runtime int8 at least 3.5x smaller than float32", round(ratio, 2), 3.5,
                                      "x", passed=ratio >= 3.5))  # fmt: skip
    return {
        "what": "chapter 10's variant table (section 5): chapter 8's fine-tuned MiniLM classifier in float32, "
        "quantised by torchao (int8 dynamic, int8 and int4 weight-only, head in float32), 50% of the feed-forward "
        "neurons pruned and removed (no fine-tuning), the 3-block distilled student, and exported to ONNX Runtime "
        "(float32 and its dynamic int8). Size on disk (torch.save or the .onnx file, MB = 1e6 bytes), parameters, "
        f"test accuracy (100 sentences), batch-1 latency (median of {rounds} interleaved rounds of {per_round} calls "
        f"after a warm-up) and batch-100 latency (median of {batch_repeats}) of {', '.join(BATCH_VARIANTS)}, at "
        f"{' and at '.join(f'{t} thread' + ('s' if t > 1 else '') for t in thread_counts)} "
        "(torch's threads and ONNX Runtime's intra-op threads set to the same count)",
        "rows": rows,
        "targets": targets,
    }


if __name__ == "__main__":  # a quick look: .venv/bin/python benchmarks/compression.py
    import json

    print(json.dumps(bench_compression(quick=True), indent=1, default=str))
