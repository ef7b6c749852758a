"""Checks for auto-graded exercises that understand arrays, tensors, gradients and runaway code.

Introduced with the exercises of chapter 2, Neurons, forward propagation and backpropagation, and used by
the exercise set of every later chapter. The tests of an exercise (run by otter-grader when a learner calls
``grader.check("q1")``) call these helpers instead of bare ``assert`` statements, so that a wrong answer
fails with a message the learner can act on:

* which case failed (the inputs it used),
* the expected and the actual value, the largest error and the index where it occurs,
* a wrong shape or dtype, named as such (with a guess at the usual cause: a transpose, an extra axis, a sum
  over the wrong axis),
* NaN or infinite values, and where the first one is,
* an exception raised by the learner's code, with the line of *their* code that raised it,
* a function that never returns: every call runs under a time limit (:func:`run_with_timeout`), so an
  infinite loop fails that one check instead of freezing the notebook or the grader,
* for a question answered with a number or with letters, one check each (:func:`check_numeric_answer`,
  :func:`check_multiple_choice`).

Every failure is a :class:`CheckFailed`, a subclass of ``AssertionError``.

The package is split by concern; import everything from ``lmbook.grading``:

* :mod:`~lmbook.grading.failures`: :class:`CheckFailed` and :class:`TimeLimitExceeded`;
* :mod:`~lmbook.grading.values`: describing a value; its kind, shape, dtype and finiteness;
* :mod:`~lmbook.grading.compare`: :func:`assert_close` and :func:`assert_equal`, with hints;
* :mod:`~lmbook.grading.gradients`: gradients against finite differences or torch autograd;
* :mod:`~lmbook.grading.limits`: calling the learner's code with a time limit;
* :mod:`~lmbook.grading.answers`: numeric and multiple-choice answers;
* :mod:`~lmbook.grading.locate`: where the tests live.

The tests of each exercise set ship inside lmbook (``lmbook/exercise_tests/<set>/``), so that
:func:`tests_dir` finds them wherever ``lmbook`` is installed, including on Google Colab, where the
notebook's own folder is not on disk.
"""

from lmbook.grading.answers import check_multiple_choice, check_numeric_answer
from lmbook.grading.compare import assert_close, assert_equal
from lmbook.grading.failures import CheckFailed, TimeLimitExceeded
from lmbook.grading.gradients import assert_gradients, autograd_gradients, numerical_gradients
from lmbook.grading.limits import DEFAULT_SECONDS, call_answer, run_with_timeout
from lmbook.grading.locate import exercise_sets, tests_dir
from lmbook.grading.values import (
    assert_dtype,
    assert_finite,
    assert_mapping,
    assert_sequence,
    assert_shape,
    describe_value,
    to_numpy,
)

__all__ = [
    "DEFAULT_SECONDS",
    "CheckFailed",
    "TimeLimitExceeded",
    "assert_close",
    "assert_dtype",
    "assert_equal",
    "assert_finite",
    "assert_gradients",
    "assert_mapping",
    "assert_sequence",
    "assert_shape",
    "autograd_gradients",
    "call_answer",
    "check_multiple_choice",
    "check_numeric_answer",
    "describe_value",
    "exercise_sets",
    "numerical_gradients",
    "run_with_timeout",
    "tests_dir",
    "to_numpy",
]
