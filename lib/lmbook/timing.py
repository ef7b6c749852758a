"""Timing a function call: the one helper behind every speed comparison of the book and its benchmarks.

Introduced in chapter 2, Neurons, forward propagation and backpropagation (backprop against finite differences,
the scalar autograd engine against torch), and used again in chapter 7 (attention from scratch against torch's
kernel) and in ``benchmarks/run.py``.

A single measurement is noisy: the first call may pay for memory allocation or lazy set-up, and other programs on
the machine interrupt some calls. So :func:`time_call` makes ``warmup`` untimed calls, then times ``repeats``
calls and reports their **median** (a typical call, robust to a few disturbed ones) or their **minimum** (the
least disturbed call: best when comparing two implementations on a busy machine).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

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
