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
