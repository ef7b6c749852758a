"""Checks for questions answered with a value rather than a function: a number, or a choice of letters.

Every exercise set asks a few such questions (``q7_answer = ...``). Their tests call these two checks, so that
all of them read an answer the same way and word their messages the same way: not set yet, not an answer of
the right kind (with an example of one), or not right (with the explanation of the recognised mistake).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from lmbook.grading.failures import CheckFailed


def _is_unset(answer) -> bool:
    return answer is None or answer is Ellipsis


def check_numeric_answer(
    answer,
    expected: float,
    *,
    name: str,
    example: str,
    explain: str,
    atol: float = 0.0,
    mistakes: Sequence[tuple[float, str]] = (),
) -> None:
    """Fail unless ``answer`` is a number within ``atol`` of ``expected``.

    Args:
        answer: the learner's answer, e.g. the value of ``q7_answer`` (a string holding a number is read too).
        expected: the right value.
        name: the variable the learner sets, e.g. ``"q7_answer"``.
        example: a number of the expected form, for the messages, e.g. ``"1.234"`` or ``"1234567"``.
        explain: what a wrong answer is told, after "... is not right.": how to get the right value.
        atol: the error allowed, e.g. ``5e-5`` when the question asks for 4 decimal places; 0 for a count.
        mistakes: ``(value, explanation)`` of known wrong answers, tried in order; the first one within
            ``atol`` of the answer adds its explanation to the message.

    Raises:
        CheckFailed: the answer is not set, not a number (booleans, text, NaN and infinity are not), or wrong.
    """
    if _is_unset(answer):
        raise CheckFailed(f"{name} is not set yet: replace the ... with a number, e.g. {name} = {example}.")
    try:
        value = None if isinstance(answer, bool) else float(answer)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        raise CheckFailed(f"{name} should be a number such as {example}; got {answer!r}.")
    if abs(value - expected) <= atol:
        return
    shown = repr(answer) if isinstance(answer, int | float) else repr(value)
    parts = [f"{shown} is not right.", explain]
    parts += [next((why for wrong, why in mistakes if abs(value - wrong) <= atol), "")]
    raise CheckFailed(" ".join(p for p in parts if p))


def _letters(options: Iterable[str]) -> str:
    """``'a', 'b', 'c' or 'd'``."""
    quoted = [repr(o) for o in sorted(options)]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _chosen_letters(answer) -> set[str] | None:
    """The set of letters in ``{"a", "c"}``, ``["a", "(c)"]``, ``"ac"`` or ``"a, c"``; None for anything else."""
    if isinstance(answer, str):
        tokens = [t for t in re.split("[^a-z]+", answer.lower()) if t]
        return set(tokens[0]) if len(tokens) == 1 else set(tokens)
    if isinstance(answer, set | frozenset | list | tuple):
        return {str(x).strip().strip("()").lower() for x in answer}
    return None


def check_multiple_choice(answer, right: str | set[str], *, name: str, why: Mapping[str, str]) -> None:
    """Fail unless ``answer`` is the right letter, or, when ``right`` is a set, exactly the right set of letters.

    Args:
        answer: the learner's answer: a letter such as ``"b"`` (also ``"(b)"`` or ``"B"``), or for a question
            with several right options a set (list, tuple) of letters, or a string such as ``"a, c"``.
        right: the right letter (one answer) or the set of right letters (choose all that apply).
        name: the variable the learner sets, e.g. ``"q6_answer"``.
        why: letter -> why that option is right or wrong, shown for every option the answer gets wrong. The
            options are the letters of ``why`` and ``right`` together.

    Raises:
        CheckFailed: the answer is not set, names no option, or is wrong; the message gives the explanation
            of each option chosen wrongly (and, for several right options, of each one left out).
    """
    several = not isinstance(right, str)
    options = set(why) | ({*right} if several else {right})
    if _is_unset(answer):
        example = '{"a", "b"}' if several else '"a"'
        kind = "a set of letters" if several else "a letter"
        raise CheckFailed(f"{name} is not set yet: replace the ... with {kind}, e.g. {name} = {example}.")
    if not several:
        letter = str(answer).strip().strip("()").lower()
        if letter not in options:
            raise CheckFailed(f"{name} should be one of {_letters(options)}; got {answer!r}.")
        if letter != right:
            raise CheckFailed(f"({letter}) is not right. {why[letter]}")
        return
    chosen = _chosen_letters(answer)
    if not chosen or not chosen <= options:
        first, last = min(options), max(options)
        raise CheckFailed(
            f"{name} should be a set of letters from {first!r} to {last!r}, such as {{'a', 'b'}}; got {answer!r}."
        )
    if chosen == set(right):
        return
    message = f"{sorted(chosen)} is not right."
    for letter in sorted(chosen - set(right)):
        message += f" ({letter}) should not be chosen: {why[letter]}"
    for letter in sorted(set(right) - chosen):
        message += f" ({letter}) should be chosen too: {why[letter]}"
    raise CheckFailed(message)
