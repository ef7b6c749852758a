"""Timing a function call: the one helper behind every speed comparison of the book and its benchmarks.

Introduced in chapter 2, Neurons, forward propagation and backpropagation (backprop against finite differences,
the scalar autograd engine against torch), and used again in chapter 7 (attention from scratch against torch's
kernel) and in ``benchmarks/run.py``.

A single measurement is noisy: the first call may pay for memory allocation or lazy set-up, and other programs on
the machine interrupt some calls. So :func:`time_call` makes ``warmup`` untimed calls, then times ``repeats``
calls and reports their **median** (a typical call, robust to a few disturbed ones) or their **minimum** (the
least disturbed call: best when comparing two implementations on a busy machine).

Chapter 10, Small and fast models, adds :func:`measure_latency`, which keeps every timed call in a
:class:`Latency` (median and interquartile range) and fixes torch's CPU thread count while it measures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lmbook.loop import cpu_threads
from lmbook.testing import check_choice

_STATISTICS = {"median": statistics.median, "min": min}


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, statistic: str = "median") -> float:
    """Seconds one call of ``fn()`` takes: the ``statistic`` of ``repeats`` timed calls after ``warmup`` untimed ones.

    Args:
        fn: called with no arguments; its result is ignored.
        repeats: timed calls (at least 1). warmup: untimed calls first (0 for none).
        statistic: ``"median"`` (a typical call) or ``"min"`` (the least disturbed call).
    """
    check_choice(statistic, _STATISTICS, "statistic")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(_STATISTICS[statistic](times))


@dataclass(frozen=True, eq=False)  # eq=False: == on an array of times has no single truth value
class Latency:
    """The measured latency of one call: every timed call's seconds, and how they were measured.

    Introduced in chapter 10, Small and fast models, whose sections all report latency through it, so that every
    number says how many runs and threads it came from. The **median** is a typical call; the interquartile range
    (``q1`` to ``q3``, the middle half of the calls) says how much they spread on a busy machine.

    Attributes:
        times: seconds of each timed call, in the order they ran, shape ``(repeats,)``.
        threads: torch's CPU thread count during the calls (None if it was left as it was).
        warmup: untimed calls made before the timed ones.
    """

    times: np.ndarray
    threads: int | None
    warmup: int

    @property
    def median(self) -> float:
        """Median seconds of the timed calls."""
        return float(np.median(self.times))

    @property
    def q1(self) -> float:
        """First quartile (25th percentile) of the timed calls, in seconds."""
        return float(np.percentile(self.times, 25))

    @property
    def q3(self) -> float:
        """Third quartile (75th percentile) of the timed calls, in seconds."""
        return float(np.percentile(self.times, 75))

    @property
    def ms(self) -> float:
        """Median in milliseconds."""
        return 1e3 * self.median

    def __str__(self) -> str:
        runs = len(self.times)
        if self.threads is None:
            threads = "threads as set"
        else:
            threads = f"{self.threads} thread" + ("" if self.threads == 1 else "s")
        return (
            f"{_ms(self.median)} ms (IQR {_ms(self.q1)}-{_ms(self.q3)} ms, {runs} run{'' if runs == 1 else 's'}, "
            f"{threads})"
        )


def _ms(seconds: float) -> str:
    """Milliseconds with three significant figures, e.g. 12.3, 0.457, 1234."""
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def measure_latency(fn: Callable[[], object], warmup: int = 5, repeats: int = 30, threads: int | None = 1) -> Latency:
    """Latency of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones, with ``threads`` CPU threads.

    The thread count is part of the result: the same model can take half the time on two threads, so two latencies
    are only compared at the same count. torch's count is set for the calls and restored after
    (:func:`lmbook.loop.cpu_threads`); ``threads=None`` leaves it as it is and records None.

    Args:
        fn: called with no arguments; its result is ignored. Wrap a model call in ``torch.inference_mode()``
            inside ``fn`` if autograd should not record it.
        warmup: untimed calls first (0 for none): the first calls pay for allocation and lazy set-up.
        repeats: timed calls (at least 1).
        threads: torch's CPU threads during the calls (at least 1), or None to leave them as they are.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    with cpu_threads(threads):
        for _ in range(warmup):
            fn()
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            fn()
            times[i] = time.perf_counter() - start
    return Latency(times=times, threads=threads, warmup=warmup)
