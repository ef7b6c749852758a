"""How fast a model trains: seconds per training step, tokens per second, and model FLOPs utilisation (MFU).

Introduced in chapter 9, Compute, memory and scale. A training step of a language model on ``B`` windows of
``T`` tokens does about ``6 N`` FLOPs per token for its ``N`` weights, plus attention
(:func:`lmbook.transformer.count_flops`). Divided by the seconds the step took, that is the **achieved** FLOP
rate; divided by the device's **peak** rate, it is the model FLOPs utilisation of Chowdhery et al. (2022,
"PaLM: Scaling language modeling with pathways"), the share of the hardware's arithmetic that goes into the model.

A GPU's peak comes from its maker's data sheet (:data:`lmbook.hardware.PEAK_TFLOPS`, dense, no sparsity). A CPU has
no such single number, so :func:`device_peak` measures one: the rate of a large matrix product in the same
precision, the best a real kernel reaches on that machine (and so an upper bound that is actually attainable).

Timings on a shared machine are noisy: :func:`time_interleaved` runs the contenders in turns, so that a busy
moment slows all of them alike, and reports each one's median.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lmbook.hardware import PEAK_TFLOPS, SOURCE, match_gpu
from lmbook.language_model import next_token_loss
from lmbook.loop import autocast, optimizer_step
from lmbook.testing import check_choice

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The dtype each precision name computes in (with autocast, the matrix products; weights stay fp32)."""


@dataclass(frozen=True)
class Peak:
    """A device's peak FLOP rate: ``flops`` per second, and where the number comes from (``source``)."""

    flops: float
    source: str


def device_name(device) -> str:
    """A readable name of ``device``: the GPU's name, or the CPU's model with torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.lower().startswith("model name")), "")
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model or device.type.upper()} ({threads} thread{'s' if threads != 1 else ''})"


def synchronize(device) -> None:
    """Wait until ``device`` has finished its queued work (GPU kernels run asynchronously); nothing on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device, precision: str = "fp32", n: int = 1024, repeats: int = 5) -> float:
    """The FLOP rate of an ``n x n`` by ``n x n`` matrix product (``2 n^3`` FLOPs) in ``precision``: the fastest
    of ``repeats`` calls after one warm-up call, the rate a real, well-tuned kernel reaches on this device."""
    check_choice(precision, PRECISION_DTYPES, "precision")
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device, PRECISION_DTYPES[precision]) for _ in range(2))
    seconds = time_interleaved({"matmul": lambda: a @ b}, repeats=repeats, warmup=1, device=device)["matmul"]
    return 2 * n**3 / min(seconds)


def device_peak(device, precision: str = "fp32", n: int = 1024) -> Peak:
    """The peak FLOP rate of ``device`` in ``precision``: a GPU's data-sheet figure from
    :data:`lmbook.hardware.PEAK_TFLOPS`, or, for a CPU or a GPU the table does not list, a measured
    :func:`matmul_flops_per_second` (named as measured)."""
    check_choice(precision, PRECISION_DTYPES, "precision")
    device = torch.device(device)
    name = device_name(device)
    if device.type == "cuda":
        key = match_gpu(name)
        if key is not None and precision in PEAK_TFLOPS[key]:
            return Peak(PEAK_TFLOPS[key][precision] * 1e12, SOURCE.format(name=key, precision=precision))
    rate = matmul_flops_per_second(device, precision, n)
    return Peak(rate, f"measured: a {n} x {n} matrix product in {precision} on {name}")


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, device=None
) -> dict[str, list[float]]:
    """Seconds of each call of each function, measured in turns: ``warmup`` untimed rounds, then ``repeats``
    rounds in which every function runs once. Returns ``{name: [seconds of each timed call]}``.

    Taking turns spreads the machine's busy moments over all contenders, so their ratio is fairer than timing
    one after the other. With a GPU ``device``, each call is timed until its kernels have finished.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device("cpu") if device is None else device
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp_dtype=None
) -> torch.Tensor:
    """One training step of a next-token model on the batch ``x``, ``y`` (both ``(B, T)``): forward and loss
    (under autocast with ``amp_dtype``, None for plain fp32), backward, and an optimiser step
    (:func:`lmbook.loop.optimizer_step`, without clipping). Returns the loss (detached)."""
    with autocast(x.device, amp_dtype):
        loss = next_token_loss(model, x, y)
    optimizer_step(loss, model, optimizer)
    return loss.detach()


@dataclass(frozen=True)
class StepSpeed:
    """The speed of one training step: seconds (median), tokens per second, achieved FLOP/s and MFU."""

    seconds: float
    tokens_per_second: float
    achieved_flops: float
    mfu: float


def step_speed(seconds: list[float], tokens_per_step: int, flops_per_token: float, peak: Peak) -> StepSpeed:
    """Turn measured step times into speeds: the median step, ``tokens_per_step / seconds`` tokens per second,
    ``flops_per_token`` times that (achieved FLOP/s), and that divided by ``peak.flops`` (the MFU)."""
    median = statistics.median(seconds)
    tokens_per_second = tokens_per_step / median
    achieved = flops_per_token * tokens_per_second
    return StepSpeed(median, tokens_per_second, achieved, achieved / peak.flops)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send what C++ code writes to file descriptor 2 to the null device meanwhile (the profiler prints a line
    when it starts and one when it stops); Python's own errors are raised as usual."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def top_operators(fn: Callable[[], object], steps: int = 3, top: int | None = 8) -> list[dict]:
    """Where the time of ``fn()`` goes: torch.profiler's ``top`` operators (None: all) with the most self CPU time
    over ``steps`` calls (after one untimed call), as ``[{"operator", "self_ms_per_step", "share",
    "calls_per_step"}]``, largest first; ``share`` is of all the profiled self time, so the shares of all operators
    add up to 1. (On a GPU the CPU time is mostly kernel launches.)"""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {"operator": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
         "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
        for e in (events if top is None else events[:top])
    ]  # fmt: skip
