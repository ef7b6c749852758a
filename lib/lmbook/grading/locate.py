"""Where the public tests of each exercise set live: inside lmbook, so that Colab finds them too."""

from __future__ import annotations

import pathlib


def _tests_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1] / "exercise_tests"


def exercise_sets() -> list[str]:
    """Names of the exercise sets whose tests ship with this copy of lmbook, e.g. ``["backprop"]``."""
    root = _tests_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("q*.py")))


def tests_dir(exercise_set: str) -> str:
    """Folder of the public tests of ``exercise_set``: ``otter.Notebook(tests_dir=tests_dir("backprop"))``.

    Raises:
        FileNotFoundError: if this copy of lmbook has no tests for that set (usually an old lmbook).
    """
    path = _tests_root() / exercise_set
    if not path.is_dir():
        known = ", ".join(exercise_sets()) or "none"
        raise FileNotFoundError(
            f"this lmbook has no tests for the exercise set {exercise_set!r} (it has: {known}); "
            "install a newer lmbook, e.g. %pip install --upgrade lmbook from the book's repository"
        )
    return str(path)
