"""Calling a learner's code: time limits for endless loops, and exceptions reported with the learner's line."""

from __future__ import annotations

import ctypes
import inspect
import os
import pathlib
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from lmbook.grading.failures import CheckFailed, TimeLimitExceeded, _with_case
from lmbook.grading.values import _is_tensor, _shape_str, describe_value

#: Seconds a single call of a learner's function may take before it counts as "never returns".
DEFAULT_SECONDS = 5.0


class _Deadline(BaseException):
    """Raised inside code that ran past its time limit.

    A ``BaseException`` rather than an ``Exception`` so that a learner's ``except Exception:`` does not
    swallow it; :func:`run_with_timeout` turns it into a :class:`CheckFailed`.
    """


def _alarm_usable() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    # Never take SIGALRM away from someone else (pytest-timeout, for one, may be using it).
    current = signal.getsignal(signal.SIGALRM)
    return current in (signal.SIG_DFL, signal.SIG_IGN, None)


def _raise_at_every_line(frame, stop_code) -> None:
    """From now on, raise :class:`_Deadline` at every line of ``frame``, its callers up to ``stop_code``, and
    every function they call.

    Used when the learner's code caught the first :class:`_Deadline` (with a bare ``except:``) and looped on:
    a line event inside the ``except`` clause itself raises again, outside the ``try`` that swallowed the
    first one, so the exception cannot be kept in.
    """

    def tracer(_frame, event, _arg):
        if event in ("call", "line"):
            raise _Deadline()
        return tracer

    while frame is not None and frame.f_code is not stop_code:
        frame.f_trace_lines = True
        frame.f_trace = tracer
        frame = frame.f_back
    sys.settrace(tracer)


def _run_with_alarm(fn, args, kwargs, seconds):
    alarms = []

    def on_alarm(signum, frame):
        alarms.append(signum)
        if len(alarms) > 1:
            _raise_at_every_line(frame, _run_with_alarm.__code__)
        raise _Deadline()

    previous_trace = sys.gettrace()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            # The interval raises again every 50 ms, in case the learner's code catches the first one.
            signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
            result = fn(*args, **kwargs)
        finally:
            sys.settrace(previous_trace)
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return False, None, False
    finally:
        sys.settrace(previous_trace)
        signal.signal(signal.SIGALRM, previous)
    if alarms:
        return False, None, False
    return True, result, False


def _run_in_thread(fn, args, kwargs, seconds):
    box: dict[str, Any] = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except _Deadline:
            box["deadline"] = True
        except BaseException as err:  # handed back to the caller's thread below
            box["error"] = err

    worker = threading.Thread(target=target, name="lmbook-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        # Raise _Deadline inside the worker at its next bytecode; repeat in case it is caught and ignored.
        for _ in range(40):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_Deadline))
            worker.join(0.05)
            if not worker.is_alive():
                break
        return False, None, worker.is_alive()
    if "error" in box:
        raise box["error"]
    if "deadline" in box:
        return False, None, False
    return True, box.get("result"), False


def run_with_timeout(
    fn: Callable,
    *args,
    seconds: float = DEFAULT_SECONDS,
    name: str | None = None,
    method: str = "auto",
    **kwargs,
):
    """Call ``fn(*args, **kwargs)`` and return its result, or fail if it takes longer than ``seconds``.

    Two mechanisms, because a test must stop an infinite loop without stopping the grader:

    * ``"signal"``: a ``SIGALRM`` timer raises an exception inside ``fn`` when time is up. This interrupts any
      Python loop (also ``time.sleep``) and leaves nothing running. Should ``fn`` catch that exception and
      loop on, the next alarm makes every further line of ``fn`` raise, which no ``except`` clause can
      absorb. It needs the main thread of a Unix process, which is where Jupyter runs cells and where
      otter-grader runs tests, locally, on Binder and on Colab.
    * ``"thread"``: elsewhere (Windows, or a caller that is not the main thread) ``fn`` runs in a helper
      thread; when time is up an exception is injected into that thread, which stops ordinary Python loops
      within milliseconds. Code that swallows every exception, or is stuck in one long C call, cannot be
      stopped this way: the check still fails on time, and the message says that the code runs on.

    ``"auto"`` picks the signal when it is usable and not already taken by someone else.

    Args:
        fn: the function to call.
        *args, **kwargs: its arguments.
        seconds: the time limit.
        name: how to call ``fn`` in the message (default: its ``__name__``).
        method: ``"auto"``, ``"signal"`` or ``"thread"``.

    Raises:
        TimeLimitExceeded: (a :class:`CheckFailed`) if the time limit is exceeded. Exceptions raised by ``fn``
            propagate unchanged.
    """
    return _run_limited(fn, args, kwargs, seconds, name or getattr(fn, "__name__", "the function"), method)


def _run_limited(fn, args, kwargs, seconds, label, method="auto"):
    if method == "auto":
        method = "signal" if _alarm_usable() else "thread"
    if method == "signal":
        finished, result, still_running = _run_with_alarm(fn, args, kwargs, seconds)
    elif method == "thread":
        finished, result, still_running = _run_in_thread(fn, args, kwargs, seconds)
    else:
        raise ValueError(f"method must be 'auto', 'signal' or 'thread', got {method!r}")
    if finished:
        return result
    message = (
        f"{label} did not finish within {seconds:g} s, so it was stopped. Look for a loop that never "
        "ends (a `while` whose condition never becomes false) or far more iterations than needed."
    )
    if still_running:
        message += (
            " It could not be stopped and keeps running in the background; restart the kernel "
            "(Kernel > Restart) to stop it."
        )
    raise TimeLimitExceeded(message)


# Functions that already ran out of time: a second call would only make the learner wait again.
_TIMED_OUT: weakref.WeakSet = weakref.WeakSet()


def _own_frame(tb) -> traceback.FrameSummary | None:
    """The innermost frame of a traceback that belongs to the learner's code (not numpy, torch or lmbook)."""
    here = str(pathlib.Path(__file__).resolve().parents[1])  # all of lmbook, not only lmbook.grading
    library_dirs = {os.path.dirname(os.__file__), here}
    frames = traceback.extract_tb(tb)
    for frame in reversed(frames):
        filename = frame.filename or ""
        if "site-packages" in filename or "dist-packages" in filename:
            continue
        if any(filename.startswith(d) for d in library_dirs):
            continue
        return frame
    return None


def _args_text(fn, args, kwargs) -> str:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        items = list(bound.arguments.items())
    except (TypeError, ValueError):
        items = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    parts = []
    for key, value in items:
        if isinstance(value, np.ndarray) or _is_tensor(value):
            parts.append(f"{key} of shape {_shape_str(value.shape)}")
        elif isinstance(value, bool | int | float | str):
            parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}: {describe_value(value)}")
    return ", ".join(parts)


def call_answer(
    fn, *args, name: str | None = None, seconds: float = DEFAULT_SECONDS, case: str | None = None, **kwargs
):
    """Call a learner's function with a time limit, turning every way it can go wrong into a clear failure.

    Args:
        fn: the learner's function (``None`` when the name is undefined in the notebook).
        *args, **kwargs: the arguments.
        name: the function's name as the exercise asks for it, e.g. ``"layer_forward"``.
        seconds: time limit of this call.
        case: the test case, for the message.

    Returns:
        Whatever ``fn`` returns (checking it is the caller's job, e.g. with :func:`assert_close`).

    Raises:
        CheckFailed: ``fn`` is undefined or not callable, still the ``...`` placeholder, raised an exception
            (the message quotes the line of the learner's code), or ran out of time.
    """
    label = name or getattr(fn, "__name__", "your function")
    if fn is None:
        raise CheckFailed(
            f"`{label}` is not defined. Run the cell that defines it (and the cells above it), then check again."
        )
    if fn is Ellipsis:
        raise CheckFailed(f"`{label}` is still the `...` placeholder: write the function.")
    if not callable(fn):
        raise CheckFailed(f"`{label}` should be a function, but it is {describe_value(fn)}.")
    try:
        if fn in _TIMED_OUT:
            raise CheckFailed(
                f"{label} did not finish within the time limit in an earlier check, so it was not "
                "called again. Look for a loop that never ends, fix it and re-run its cell."
            )
    except TypeError:  # not weak-referenceable: no memory of earlier timeouts
        pass
    try:
        return _run_limited(fn, args, kwargs, seconds, label)
    except TimeLimitExceeded as err:
        try:
            _TIMED_OUT.add(fn)
        except TypeError:
            pass
        raise TimeLimitExceeded(_with_case(case, [str(err)])) from None
    except Exception as err:  # the learner's code raised: report it, never let it crash the grader
        lines = [f"calling {label}({_args_text(fn, args, kwargs)}) raised {type(err).__name__}: {err}"]
        frame = _own_frame(err.__traceback__)
        if frame is not None and frame.line:
            lines.append(f"  at line {frame.lineno} of your code: {frame.line.strip()}")
        raise CheckFailed(_with_case(case, lines)) from None
