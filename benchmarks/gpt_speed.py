"""The book's GPT against a minimal reference GPT of the same size: one training step, side by side.

Run from the repository root (``benchmarks/run.py`` calls :func:`bench_gpt_speed` as one of its sections):

    .venv/bin/python benchmarks/gpt_speed.py            # both sizes, prints the rows and the targets
    .venv/bin/python benchmarks/gpt_speed.py --quick    # fewer steps, for a smoke test

A training step is forward, loss, backward and a fused AdamW step (:func:`lmbook.throughput.training_step`, the
same optimiser for every model). Three models with the same sizes and initial weights' distribution: the book's
GPT on its from-scratch path (the default, chapter 7), on its fast path (``fused_attention=True``), and
``reference_gpt.ReferenceGPT``, written from ``torch.nn`` primitives in nanoGPT's layout. They run in turns
(:func:`lmbook.throughput.time_interleaved`), one thread, after warm-up steps; a ratio is the median over rounds of
(the model's step time / the reference's step time in the same round). torch.profiler's top operators of one
small step per model say where the time goes.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
from dataclasses import replace

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

FAST_PATH_LIMIT = 1.1  # issue 14: the fast path within 1.1x of the reference at both sizes
VOCAB_SIZE = 96  # the book corpus' character vocabulary: GPTConfig.cpu(96) and GPTConfig.gpu(96)
EXPECTED_PARAMETERS = {"cpu": 110_336, "gpu": 10_782_720}


def _models(config):
    """The three contenders, each with its own fused AdamW (the book's optimiser settings for both)."""
    from reference_gpt import ReferenceGPT

    from lmbook.gpt import GPT
    from lmbook.loop import make_optimizer

    models = {
        "from-scratch": GPT(replace(config, fused_attention=False), seed=0),
        "fast path": GPT(replace(config, fused_attention=True), seed=0),
        "reference": ReferenceGPT(config, seed=0),
    }
    return {name: (m, make_optimizer(m, "adamw", 1e-3, 0.1, (0.9, 0.95))) for name, m in models.items()}


def _size(name: str, batch: int, rounds: int, warmup: int, profile_it: bool):
    import torch

    from lmbook.gpt import GPTConfig
    from lmbook.throughput import time_interleaved, top_operators, training_step

    config = getattr(GPTConfig, name)(VOCAB_SIZE)
    contenders = _models(config)
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(VOCAB_SIZE, (batch, config.max_len), generator=gen) for _ in range(2))
    counts = {key: sum(p.numel() for p in m.parameters()) for key, (m, _) in contenders.items()}
    fns = {key: (lambda m=m, o=o: training_step(m, o, x, y)) for key, (m, o) in contenders.items()}
    times = time_interleaved(fns, repeats=rounds, warmup=warmup)
    ref = times["reference"]
    rows = [
        {"size": f"GPTConfig.{name}({VOCAB_SIZE})", "model": key, "parameters": counts[key], "batch": batch,
         "context": config.max_len, "dropout": config.dropout, "threads": torch.get_num_threads(),
         "rounds": rounds, "ms_per_step": statistics.median(t) * 1e3,
         "ratio": statistics.median(a / b for a, b in zip(t, ref, strict=True))}
        for key, t in times.items()
    ]  # fmt: skip
    profiles = {key: top_operators(fns[key]) for key in fns} if profile_it else {}
    return rows, counts, profiles


def bench_gpt_speed(quick: bool = False, threads: int = 1) -> dict:
    """The book's GPT (from-scratch and fast path) against the reference at GPTConfig.cpu(96) and .gpu(96)."""
    from run import target

    from lmbook.loop import cpu_threads

    plan = [("cpu", 16, 8 if quick else 40, 3, True), ("gpu", 8, 2 if quick else 7, 1 if quick else 2, False)]
    rows, targets, profiles = [], [], {}
    with cpu_threads(threads):
        for name, batch, rounds, warmup, profile_it in plan:
            size_rows, counts, size_profiles = _size(name, batch, rounds, warmup, profile_it)
            rows += size_rows
            profiles.update({f"{name}: {key}": ops for key, ops in size_profiles.items()})
            expected = EXPECTED_PARAMETERS[name]
            targets.append(target(f"GPTConfig.{name}({VOCAB_SIZE}): every model has {expected:,} parameters",
                                  max(counts.values()), expected, "",
                                  passed=set(counts.values()) == {expected}))  # fmt: skip
            fast = next(r for r in size_rows if r["model"] == "fast path")
            targets.append(target(f"GPTConfig.{name}({VOCAB_SIZE}): fast path / reference, time per training step",
                                  fast["ratio"], FAST_PATH_LIMIT, "x"))  # fmt: skip
    return {
        "what": f"one training step (forward, loss, backward, fused AdamW) of the book's GPT on its from-scratch "
        f"path and its fast path (fused_attention=True) against a reference GPT of the same size from torch.nn "
        f"primitives in nanoGPT's layout (benchmarks/reference_gpt.py), float32, {threads} thread(s), the "
        f"models in turns after warm-up steps; ms = median step, ratio = median over rounds of the model's step "
        f"time / the reference's in the same round; profile = torch.profiler's top operators (self CPU time) "
        f"per step at the small size",
        "rows": rows,
        "profile": profiles,
        "targets": targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    result = bench_gpt_speed(args.quick, args.threads)
    for row in result["rows"]:
        print(f"{row['size']:>16}  {row['model']:>12}  {row['ms_per_step']:9.2f} ms  {row['ratio']:.3f}x")
    for key, ops in result["profile"].items():
        print(f"\n{key}")
        for op in ops:
            print(f"  {op['operator'][:48]:48}  {op['self_ms_per_step']:7.2f} ms  {op['share']:5.1%}  "
                  f"{op['calls_per_step']:5.0f} calls")  # fmt: skip
    for t in result["targets"]:
        print(f"{'ok  ' if t['passed'] else 'MISS'} {t['name']}: {t['value']:.3f} (limit {t['limit']})")


if __name__ == "__main__":
    main()
