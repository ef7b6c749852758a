"""Tests of lmbook.timing.time_call with a fake clock: the warm-up calls are not timed, and the median and the
minimum are those of the timed calls."""

import pytest

import lmbook.timing as timing
from lmbook.timing import time_call


@pytest.fixture
def fake_clock(monkeypatch):
    """A clock that advances only inside fn: call number i (from 0) lasts durations[i] seconds."""
    state = {"now": 0.0, "calls": 0}

    def perf_counter():
        return state["now"]

    monkeypatch.setattr(timing.time, "perf_counter", perf_counter)

    def make(durations):
        def fn():
            state["now"] += durations[state["calls"]]
            state["calls"] += 1

        return fn, state

    return make


def test_median_of_the_timed_calls_after_the_warm_up(fake_clock):
    fn, state = fake_clock([100.0, 3.0, 1.0, 2.0, 50.0, 4.0])  # the first call (a slow warm-up) is not timed
    assert time_call(fn, repeats=5, warmup=1) == 3.0
    assert state["calls"] == 6


def test_minimum_and_no_warm_up(fake_clock):
    fn, state = fake_clock([0.5, 3.0, 0.25, 9.0])
    assert time_call(fn, repeats=4, warmup=0, statistic="min") == 0.25
    assert state["calls"] == 4


def test_times_a_real_call():
    import time

    seconds = time_call(lambda: time.sleep(0.01), repeats=3, warmup=0)
    assert 0.009 < seconds < 0.5


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown statistic 'mean'; choose one of 'median', 'min'"):
        time_call(lambda: None, statistic="mean")
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_call(lambda: None, repeats=0)


def test_measure_latency_keeps_every_timed_call_after_the_warm_up(fake_clock):
    from lmbook.timing import measure_latency

    fn, state = fake_clock([100.0, 100.0, 0.004, 0.001, 0.002, 0.003, 0.005])  # two slow warm-up calls, not timed
    latency = measure_latency(fn, warmup=2, repeats=5, threads=None)
    assert state["calls"] == 7
    assert latency.times.tolist() == pytest.approx([0.004, 0.001, 0.002, 0.003, 0.005])
    assert latency.median == pytest.approx(0.003) and latency.ms == pytest.approx(3.0)
    assert latency.q1 == pytest.approx(0.002) and latency.q3 == pytest.approx(0.004)
    assert (latency.warmup, latency.threads) == (2, None)
    assert str(latency) == "3 ms (IQR 2-4 ms, 5 runs, threads as set)"


def test_latency_string_names_runs_and_threads():
    import numpy as np

    from lmbook.timing import Latency

    latency = Latency(times=np.array([0.0119, 0.0123, 0.0128]), threads=1, warmup=5)
    assert str(latency) == "12.3 ms (IQR 12.1-12.6 ms, 3 runs, 1 thread)"
    slow = Latency(times=np.array([0.2534]), threads=2, warmup=0)
    assert str(slow) == "253 ms (IQR 253-253 ms, 1 run, 2 threads)"
    with pytest.raises(AttributeError):
        latency.threads = 2  # frozen


def test_measure_latency_sets_the_thread_count_and_restores_it():
    import torch

    from lmbook.timing import measure_latency

    before = torch.get_num_threads()
    seen = []
    latency = measure_latency(lambda: seen.append(torch.get_num_threads()), warmup=1, repeats=3, threads=1)
    assert seen == [1, 1, 1, 1] and latency.threads == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be at least 1"):
        measure_latency(lambda: None, threads=0)
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(lambda: None, repeats=0)
    assert torch.get_num_threads() == before


def test_measure_latency_times_a_real_call():
    import time

    from lmbook.timing import measure_latency

    latency = measure_latency(lambda: time.sleep(0.01), warmup=0, repeats=3)
    assert 0.009 < latency.median < 0.5 and latency.q1 <= latency.median <= latency.q3
