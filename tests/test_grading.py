"""Unit tests of lmbook.grading: the checks behind the auto-graded exercises, and their messages."""

from __future__ import annotations

import pathlib
import signal
import threading
import time

import numpy as np
import pytest
import torch

from lmbook import grading
from lmbook.grading import CheckFailed, TimeLimitExceeded, check_multiple_choice, check_numeric_answer
from lmbook.grading.limits import _alarm_usable


def failure(fn, *args, **kwargs) -> str:
    """The message of the CheckFailed that ``fn(*args, **kwargs)`` raises (the test fails without one)."""
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    # otter shows messages inside HTML <pre> blocks, where a "<" could start a tag and hide text.
    assert "<" not in message, message
    return message


# ----- where the tests live ---------------------------------------------------------------------------------


def test_tests_dir_finds_the_shipped_tests_of_each_set():
    sets = grading.exercise_sets()
    assert "backprop" in sets
    for name in sets:
        folder = pathlib.Path(grading.tests_dir(name))
        assert folder.is_dir() and sorted(p.name for p in folder.glob("q*.py"))
        # inside the installed lmbook package (lmbook/exercise_tests/<set>), so that Colab finds them too
        assert folder.is_relative_to(pathlib.Path(grading.__file__).parents[1])


def test_tests_dir_of_an_unknown_set_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="backprop"):
        grading.tests_dir("no-such-set")


# ----- describing and converting ---------------------------------------------------------------------------


def test_describe():
    assert grading.describe_value(None) == "None"
    assert grading.describe_value(np.zeros((4, 3))) == "a float64 array of shape (4, 3)"
    assert grading.describe_value(torch.zeros(2, dtype=torch.float32)) == "a torch float32 tensor of shape (2,)"
    assert grading.describe_value((1, 2, 3)) == "a tuple of 3 items"
    assert grading.describe_value({"W": 1}) == "a dict with keys 'W'"
    assert grading.describe_value(np.float64(2.5)) == "the number 2.5"


def test_to_numpy_accepts_tensors_lists_and_numbers():
    t = torch.arange(3.0, requires_grad=True) * 2
    np.testing.assert_array_equal(grading.to_numpy(t), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(grading.to_numpy([[1, 2]]), [[1, 2]])
    assert grading.to_numpy(3.5).shape == ()


def test_to_numpy_rejects_none_ellipsis_and_non_numbers():
    assert "return" in failure(grading.to_numpy, None, "Z")
    assert "placeholder" in failure(grading.to_numpy, ..., "Z")
    assert "numeric" in failure(grading.to_numpy, "abc", "Z")
    assert "array" in failure(grading.to_numpy, [[1, 2], [3]], "Z")


# ----- shape, dtype, finiteness -----------------------------------------------------------------------------


def test_check_shape_passes_and_returns_its_argument():
    x = np.zeros((4, 3))
    assert grading.assert_shape(x, (4, 3)) is x
    assert grading.assert_shape(x, (None, 3)) is x


@pytest.mark.parametrize(
    ("actual", "expected", "words"),
    [
        ((3, 2), (2, 3), ["expected (2, 3), got (3, 2)", "transposed"]),
        ((4, 1), (4,), ["expected (4,), got (4, 1)", "extra axis of size 1"]),
        ((4,), (4, 1), ["missing"]),
        ((3,), (4, 3), ["lost axis 0"]),
        ((5,), (2,), ["wrong axis"]),
        ((2, 6), (3, 4), ["reshape or transpose"]),
    ],
)
def test_check_shape_message_names_both_shapes_and_guesses_the_cause(actual, expected, words):
    message = failure(grading.assert_shape, np.zeros(actual), expected, "db", "case A")
    assert message.startswith("In the case case A:\ndb has the wrong shape")
    for word in words:
        assert word in message


def test_check_dtype():
    grading.assert_dtype(np.zeros(2), "floating")
    grading.assert_dtype(np.zeros(2, dtype=np.float32), "float32")
    grading.assert_dtype(torch.zeros(2), torch.float32)
    assert "astype(float)" in failure(grading.assert_dtype, np.zeros(2) > 0, "floating", "relu_prime(z)")
    assert "int64" in failure(grading.assert_dtype, np.zeros(2, dtype=np.int64), "floating")
    assert "should have dtype float64, but it has dtype float32" in failure(
        grading.assert_dtype, torch.zeros(2), torch.float64, "logits"
    )
    assert "float32" in failure(grading.assert_dtype, np.zeros(2, dtype=np.float32), np.float64)


def test_check_finite_counts_and_locates():
    a = np.zeros((2, 3))
    a[1, 2] = np.nan
    a[0, 1] = np.inf
    message = failure(grading.assert_finite, a, "dW")
    assert "1 NaN and 1 infinite" in message and "index (0, 1)" in message
    grading.assert_finite(np.ones(3))
    grading.assert_finite(np.ones(3, dtype=int))


# ----- assert_close -----------------------------------------------------------------------------------------


def test_assert_close_passes_within_tolerance_and_for_tensors():
    x = np.linspace(-1, 1, 7)
    grading.assert_close(x + 1e-10, x)
    grading.assert_close(torch.tensor(x), x)
    grading.assert_close(2.0, 2.0)


def test_assert_close_reports_largest_error_index_and_values():
    expected = np.arange(12.0).reshape(3, 4)
    actual = expected.copy()
    actual[2, 1] += 0.5
    actual[0, 0] += 0.1
    message = failure(grading.assert_close, actual, expected, name="Z", case="a batch of 3")
    assert "In the case a batch of 3:" in message
    assert "largest error: 0.5 at index (2, 1): got 9.5, expected 9" in message
    assert "elements off: 2 of 12" in message
    assert "expected:" in message and "got:" in message  # small arrays are shown in full


def test_assert_close_where_shows_the_input_at_the_worst_index():
    z = np.array([-1.0, 0.0, 1.0])
    message = failure(grading.assert_close, (z >= 0).astype(float), (z > 0).astype(float), where={"z": z})
    assert "(where z = 0)" in message


def test_assert_close_hints_at_sign_and_constant_factors():
    x = np.array([0.5, -1.0, 2.0, 3.0])
    assert "wrong sign" in failure(grading.assert_close, -x, x)
    message = failure(grading.assert_close, x / 4, x)
    assert "0.25 times" in message and "axis of size 4" in message
    assert "transpose" in failure(grading.assert_close, np.arange(4.0).reshape(2, 2).T, np.arange(4.0).reshape(2, 2))


def test_assert_close_gives_no_factor_hint_for_a_single_number_unless_the_sign_flipped():
    assert "hint" not in failure(grading.assert_close, 0.9, 1.0)
    assert "wrong sign" in failure(grading.assert_close, -0.5, 0.5)


def test_assert_close_recognises_a_known_mistake():
    x = np.array([1.0, 2.0])
    message = failure(grading.assert_close, x * 0 + 7, x, mistakes={"You returned sevens.": np.array([7.0, 7.0])})
    assert "hint: You returned sevens." in message


def test_assert_close_nan_and_dtype():
    x = np.array([1.0, 2.0, 3.0])
    assert "NaN" in failure(grading.assert_close, np.array([1.0, np.nan, 3.0]), x)
    grading.assert_close(np.array([1.0, np.nan]), np.array([1.0, np.nan]))  # NaN where NaN is expected is fine
    assert "dtype is bool" in failure(grading.assert_close, np.array([True, False]), np.array([1.0, 0.0]))
    grading.assert_close(np.array([1, 0]), np.array([1.0, 0.0]), dtype=None)
    assert "float64" in failure(grading.assert_close, torch.ones(2), np.ones(2), dtype=torch.float64)


def test_assert_close_checks_shape_before_values():
    assert "wrong shape" in failure(grading.assert_close, np.zeros((4, 1)), np.zeros(4))


def test_assert_equal():
    grading.assert_equal(3, 3)
    assert "expected 3, got 4" in failure(grading.assert_equal, 4, 3, name="n")


def test_check_sequence_and_mapping():
    assert grading.assert_sequence((1, 2, 3), 3) == [1, 2, 3]
    assert "3 items (dX, dW, db), but it has 2" in failure(grading.assert_sequence, (1, 2), 3, items=("dX", "dW", "db"))
    assert "is None" in failure(grading.assert_sequence, None, 3)
    assert "a tuple of 3 items" in failure(grading.assert_sequence, np.zeros(3), 3)
    grading.assert_mapping({"W": 1, "b": 2}, ("W", "b"))
    assert "lacks the key(s) 'b'" in failure(grading.assert_mapping, {"W": 1}, ("W", "b"))
    assert "should be a dict" in failure(grading.assert_mapping, [1], ("W",))


# ----- gradients --------------------------------------------------------------------------------------------


def dense(X, W, b):
    return X @ W + b


def dense_point(seed=0):
    rng = np.random.default_rng(seed)
    X, W, b, dZ = (
        rng.normal(size=(4, 3)),
        rng.normal(size=(3, 2)),
        rng.normal(size=2),
        rng.normal(size=(4, 2)),
    )
    return {"X": X, "W": W, "b": b}, dZ


def test_numerical_and_autograd_gradients_agree_with_the_formulas():
    inputs, dZ = dense_point()
    X, W = inputs["X"], inputs["W"]
    formulas = {"X": dZ @ W.T, "W": X.T @ dZ, "b": dZ.sum(axis=0)}
    numeric = grading.numerical_gradients(dense, inputs, dZ)
    auto = grading.autograd_gradients(dense, inputs, dZ)
    for key, value in formulas.items():
        torch.testing.assert_close(torch.tensor(auto[key]), torch.tensor(value), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.tensor(numeric[key]), torch.tensor(value), rtol=1e-6, atol=1e-8)
    # The inputs are restored after the finite differences.
    np.testing.assert_array_equal(inputs["X"], X)


@pytest.mark.parametrize("method", ["finite", "autograd"])
def test_assert_gradients_accepts_right_and_rejects_wrong_gradients(method):
    inputs, dZ = dense_point(1)
    X, W = inputs["X"], inputs["W"]
    right = {"X": dZ @ W.T, "W": X.T @ dZ, "b": dZ.sum(axis=0)}
    grading.assert_gradients(dense, inputs, right, upstream=dZ, method=method)

    wrong_axis = dict(right, b=dZ.sum(axis=1))
    message = failure(grading.assert_gradients, dense, inputs, wrong_axis, upstream=dZ, method=method, case="c")
    assert "the gradient db has the wrong shape: expected (2,), got (4,)" in message
    assert ("finite differences" if method == "finite" else "torch autograd") in message

    halved = dict(right, W=right["W"] / 4)
    message = failure(grading.assert_gradients, dense, inputs, halved, upstream=dZ, method=method)
    assert "the gradient dW has wrong values" in message and "largest error" in message and "0.25 times" in message

    explained = failure(
        grading.assert_gradients,
        dense,
        inputs,
        halved,
        upstream=dZ,
        method=method,
        mistakes={"dW divided by B.": {"W": right["W"] / 4}},
    )
    assert "hint: dW divided by B." in explained

    assert "lacks the key(s) 'b'" in failure(grading.assert_gradients, dense, inputs, {"X": 0, "W": 0}, upstream=dZ)


def test_assert_gradients_spots_results_in_the_wrong_order():
    inputs, dZ = dense_point(2)
    X, W = inputs["X"], inputs["W"]
    swapped = {"X": X.T @ dZ, "W": dZ @ W.T, "b": dZ.sum(axis=0)}
    message = failure(grading.assert_gradients, dense, inputs, swapped, upstream=dZ)
    assert "dX has shape (3, 2), which is the shape of dW" in message and "order" in message


def test_assert_gradients_of_a_scalar_loss():
    inputs = {"w": np.array([0.3, -1.2])}
    grading.assert_gradients(lambda w: (w**3).sum(), inputs, {"w": 3 * inputs["w"] ** 2})
    message = failure(grading.assert_gradients, lambda w: (w**3).sum(), inputs, {"w": 3 * inputs["w"]})
    assert "dw" in message


# ----- time limits and calling a learner's function ---------------------------------------------------------


def endless():
    while True:
        pass


STOP = threading.Event()  # lets a loop that a helper thread could not stop end when the test is over


def stubborn():
    # Swallows every exception, including the first timeout, and loops on: the worst a learner can write.
    while not STOP.is_set():
        try:
            while not STOP.is_set():
                pass
        except BaseException:  # noqa: B036
            pass


@pytest.fixture(autouse=True)
def _stop_leftover_loops():
    STOP.clear()
    yield
    STOP.set()


@pytest.mark.parametrize("method", ["signal", "thread"])
@pytest.mark.parametrize("fn", [endless, stubborn])
def test_run_with_timeout_stops_endless_loops(method, fn):
    start = time.perf_counter()
    with pytest.raises(TimeLimitExceeded, match="did not finish within 0.3 s"):
        grading.run_with_timeout(fn, seconds=0.3, method=method)
    # The thread method may try for 2 s more (40 injections 50 ms apart); the margin is for a busy machine.
    assert time.perf_counter() - start < 6.0


def test_run_with_timeout_returns_results_and_propagates_exceptions():
    assert grading.run_with_timeout(lambda a, b=1: a + b, 2, b=3) == 5
    assert grading.run_with_timeout(lambda: 7, method="thread") == 7
    with pytest.raises(ZeroDivisionError):
        grading.run_with_timeout(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        grading.run_with_timeout(lambda: 1 / 0, method="thread")


def test_run_with_timeout_leaves_the_alarm_as_it_found_it():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(TimeLimitExceeded):
        grading.run_with_timeout(endless, seconds=0.1, method="signal")
    grading.run_with_timeout(lambda: None, seconds=0.1, method="signal")
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_run_with_timeout_from_another_thread_falls_back_to_a_thread():
    outcome = {}

    def worker():
        try:
            grading.run_with_timeout(endless, seconds=0.2)
        except TimeLimitExceeded as err:
            outcome["message"] = str(err)

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert "did not finish" in outcome.get("message", "")


def test_auto_does_not_take_over_a_foreign_alarm_handler():
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        assert not _alarm_usable()
        with pytest.raises(TimeLimitExceeded):
            grading.run_with_timeout(endless, seconds=0.2)
    finally:
        signal.signal(signal.SIGALRM, previous)


def learner_function(X, W):
    Z = W @ X  # the classic order mistake
    return Z


def test_call_answer_reports_an_exception_with_the_learners_line():
    message = failure(
        grading.call_answer,
        learner_function,
        np.ones((4, 3)),
        np.ones((3, 2)),
        name="layer_forward",
        case="B=4",
    )
    assert message.startswith("In the case B=4:\ncalling layer_forward(X of shape (4, 3), W of shape (3, 2))")
    assert "raised ValueError" in message
    assert "of your code: Z = W @ X" in message


def test_call_answer_explains_undefined_placeholder_and_non_callable():
    assert "is not defined" in failure(grading.call_answer, None, name="relu_prime")
    assert "placeholder" in failure(grading.call_answer, ..., name="relu_prime")
    assert "should be a function, but it is the number 3" in failure(grading.call_answer, 3, name="relu_prime")


def test_call_answer_remembers_a_function_that_timed_out():
    def again():
        while True:
            pass

    with pytest.raises(TimeLimitExceeded):
        grading.call_answer(again, seconds=0.2)
    start = time.perf_counter()
    message = failure(grading.call_answer, again, seconds=5)
    assert "earlier check" in message
    assert time.perf_counter() - start < 0.5


def test_call_answer_returns_the_result():
    assert grading.call_answer(lambda x: x * 2, 21, name="double") == 42


# ----- answers given as a number or as letters -------------------------------------------------------------


def test_check_numeric_answer_accepts_the_value_within_the_tolerance():
    check_numeric_answer(0.0513, 0.05129, name="q6_answer", example="1.2345", explain="", atol=5e-5)
    check_numeric_answer("0.0513", 0.05129, name="q6_answer", example="1.2345", explain="", atol=5e-5)
    check_numeric_answer(7087872, 7087872, name="q8_answer", example="1234567", explain="")
    check_numeric_answer(7087872.0, 7087872, name="q8_answer", example="1234567", explain="")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (None, ["q8_answer is not set yet", "q8_answer = 1234567"]),
        (..., ["q8_answer is not set yet"]),
        ("about 7 million", ["q8_answer should be a number such as 1234567", "'about 7 million'"]),
        (True, ["should be a number"]),
        (float("nan"), ["should be a number"]),
        ([1, 2], ["should be a number"]),
        (7087873, ["7087873 is not right. Count the parts."]),
        (12 * 768 * 768, ["7077888 is not right. Count the parts. The weight matrices alone."]),
    ],
)
def test_check_numeric_answer_messages(answer, words):
    mistakes = [(12 * 768 * 768, "The weight matrices alone."), (12 * 768 * 768, "Never shown: the first match wins.")]
    message = failure(
        check_numeric_answer,
        answer,
        7087872,
        name="q8_answer",
        example="1234567",
        explain="Count the parts.",
        mistakes=mistakes,
    )
    for word in words:
        assert word in message
    assert "Never shown" not in message


def test_check_numeric_answer_tolerance_applies_to_the_mistakes_too():
    message = failure(
        check_numeric_answer,
        0.0223,
        0.0513,
        name="q",
        example="1.2345",
        explain="",
        atol=5e-5,
        mistakes=[(0.02228, "That is the base-10 logarithm.")],
    )
    assert message == "0.0223 is not right. That is the base-10 logarithm."


WHY = {"a": "it leaks.", "b": "it does not leak.", "c": "it leaks too.", "d": "it does not leak either."}


@pytest.mark.parametrize("answer", ["b", "B", "(b)", " b "])
def test_check_multiple_choice_one_letter_accepts_its_spellings(answer):
    check_multiple_choice(answer, "b", name="q6_answer", why=WHY)


@pytest.mark.parametrize("answer", [{"a", "c"}, ["c", "a"], ("(a)", "C"), "ac", "a, c", frozenset("ac")])
def test_check_multiple_choice_several_letters_accepts_its_spellings(answer):
    check_multiple_choice(answer, {"a", "c"}, name="q6_answer", why=WHY)


@pytest.mark.parametrize(
    ("answer", "right", "words"),
    [
        (None, "b", ["q6_answer is not set yet", 'a letter, e.g. q6_answer = "a"']),
        (None, {"a", "c"}, ['a set of letters, e.g. q6_answer = {"a", "b"}']),
        ("a", "b", ["(a) is not right. it leaks."]),
        ("e", "b", ["q6_answer should be one of 'a', 'b', 'c' or 'd'; got 'e'."]),
        ({"a"}, {"a", "c"}, ["['a'] is not right.", "(c) should be chosen too: it leaks too."]),
        ("a, b, c", {"a", "c"}, ["['a', 'b', 'c'] is not right.", "(b) should not be chosen: it does not leak."]),
        ("the first and the third", {"a", "c"}, ["should be a set of letters from 'a' to 'd'"]),
        (set(), {"a", "c"}, ["should be a set of letters"]),
        (3, {"a", "c"}, ["should be a set of letters", "got 3"]),
    ],
)
def test_check_multiple_choice_messages(answer, right, words):
    message = failure(check_multiple_choice, answer, right, name="q6_answer", why=WHY)
    for word in words:
        assert word in message, message
