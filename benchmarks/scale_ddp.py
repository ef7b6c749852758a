"""DistributedDataParallel on two processes against one: time per step, and the final weights compared.

Run from the repository root (``benchmarks/run.py`` calls :func:`bench_ddp` in its ``scale`` section):

    .venv/bin/python benchmarks/scale_ddp.py            # prints the rows and the targets
    .venv/bin/python benchmarks/scale_ddp.py --quick    # fewer steps, for a smoke test

Both runs are the same worker, :func:`lmbook.data_parallel.train_data_parallel` with ``strategy="ddp"``, started by
:func:`lmbook.launch.run_workers` with one thread per process: once on one process (the whole global batch) and
once on two (half each), on the same global batch, seed and data. Each launch trains twice: in float32 for the
time per step (the median of the steps after the first two, the slowest process's) and in float64 for the
equality, whose largest weight difference must stay within float64 rounding. The float32 difference is reported
too: it is rounding of a different order of additions, amplified a little by Adam.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

FLOAT64_TOLERANCE = 1e-10  # the tolerance of tests/lib/test_data_parallel.py and of the chapter
FLOAT32_TOLERANCE = 1e-4


def _configs(quick: bool):
    from lmbook.data_parallel import DataParallelConfig

    timing = DataParallelConfig(steps=6 if quick else 20, global_batch=16, seq_len=64, n_windows=2048, dtype="float32")
    equality = DataParallelConfig(steps=4, global_batch=8, seq_len=32, n_windows=256, dtype="float64")
    return timing, equality


def ddp_runs(configs) -> list[dict]:
    """Worker: :func:`lmbook.data_parallel.train_data_parallel` with DDP, once per config, in the same processes."""
    from lmbook.data_parallel import train_data_parallel

    return [train_data_parallel("ddp", config) for config in configs]


def run_workers_ddp(nprocs: int, configs) -> list:
    """One launch of :func:`ddp_runs` on ``nprocs`` processes (one thread each), with a timeout."""
    from lmbook.launch import run_workers

    return run_workers("scale_ddp:ddp_runs", nprocs=nprocs, timeout=300, configs=configs)


def bench_ddp(quick: bool = False) -> dict:
    """DDP on 1 and 2 processes (gloo, one thread each): ms per step, tokens per second, weight differences."""
    from run import target

    from lmbook.data_parallel import max_weight_difference

    timing, equality = _configs(quick)
    results, launch_seconds = {}, {}
    for nprocs in (1, 2):
        start = time.perf_counter()
        results[nprocs] = run_workers_ddp(nprocs, (timing, equality))
        launch_seconds[nprocs] = time.perf_counter() - start
    rows = []
    for nprocs, ranks in results.items():
        seconds = max(statistics.median(r[0]["step_seconds"][2:]) for r in ranks)  # the slowest process
        rows.append({
            "processes": nprocs, "backend": ranks[0][0]["backend"], "threads_per_process": 1,
            "global_batch": timing.global_batch, "batch_per_process": timing.global_batch // nprocs,
            "context": timing.seq_len, "parameters": sum(w.numel() for w in ranks[0][0]["weights"].values()),
            "steps": timing.steps, "ms_per_step": 1e3 * seconds,
            "tokens_per_s": timing.global_batch * timing.seq_len / seconds,
            "launch_s": launch_seconds[nprocs],
        })  # fmt: skip
    rows[1]["speedup"] = rows[0]["ms_per_step"] / rows[1]["ms_per_step"]
    diff32 = max_weight_difference(results[2][0][0]["weights"], results[1][0][0]["weights"])
    diff64 = max_weight_difference(results[2][0][1]["weights"], results[1][0][1]["weights"])
    rows[1]["max_weight_diff_fp32"] = diff32
    rows[1]["max_weight_diff_fp64"] = diff64
    return {
        "what": (
            "DistributedDataParallel (gloo, one thread per process) on 2 processes against 1, the same global "
            f"batch of {timing.global_batch} windows of {timing.seq_len} characters, GPTConfig.cpu: time per step "
            f"in float32 over {timing.steps} steps, and the largest difference of the final weights after "
            f"{timing.steps} float32 and {equality.steps} float64 AdamW steps"
        ),
        "rows": rows,
        "targets": [
            target("DDP 2 processes = 1 process, float64: largest weight difference", diff64, FLOAT64_TOLERANCE, ""),
            target("DDP 2 processes = 1 process, float32: largest weight difference", diff32, FLOAT32_TOLERANCE, ""),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args()
    result = bench_ddp(args.quick)
    for row in result["rows"]:
        print(row)
    for t in result["targets"]:
        print(f"{'ok  ' if t['passed'] else 'MISS'} {t['name']}: {t['value']:.2e} (limit {t['limit']:.0e})")


if __name__ == "__main__":
    main()
