"""What a failed check raises, and how its message names the test case."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """A check on a learner's answer failed. The message says what was expected and what came instead."""


class TimeLimitExceeded(CheckFailed):
    """A learner's function ran longer than its time limit and was stopped."""


def _with_case(case: str | None, lines: list[str]) -> str:
    if case:
        return f"In the case {case}:\n" + "\n".join(lines)
    return "\n".join(lines)
