"""Hyper-parameter search: grid search and random search with the same budget of trials.

Introduced in chapter 4, Training well: data, overfitting, evaluation. A **hyper-parameter** is a setting chosen
rather than learned (a learning rate, a width, a penalty strength); a search tries ``budget`` settings, scores
each on validation data, and keeps the best. **Grid search** tries every combination of a few values per
hyper-parameter; **random search** draws each setting independently at random. Bergstra and Bengio (2012),
"Random search for hyper-parameter optimization", JMLR 13: 281-305, showed why random search usually wins for
the same budget: when only some hyper-parameters matter, a grid of ``k ** d`` points tries just ``k`` distinct
values of each, while ``budget`` random points try ``budget`` distinct values of every one.

A search space is a dict from names to :class:`Range`; a setting is a dict from the same names to values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Range:
    """The values one hyper-parameter may take: ``low`` to ``high``, inclusive.

    Attributes:
        low, high: the bounds, ``low < high`` (both > 0 when ``log``).
        log: spread the values evenly in ``log`` (for scale-like settings such as learning rates, where 1e-3 to
            1e-2 matters as much as 0.1 to 1).
        integer: round the values to whole numbers (e.g. a layer width); the bounds must be whole numbers.
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an integer range needs whole-number bounds, got {self.low} and {self.high}")

    def _finish(self, values: np.ndarray) -> list:
        if self.integer:
            return [int(v) for v in np.clip(np.round(values), self.low, self.high)]
        return [float(v) for v in values]

    def grid(self, k: int) -> list:
        """``k`` evenly spaced values from ``low`` to ``high`` (evenly in log for a log range); ``k = 1`` gives
        the middle. Integer ranges are rounded, so neighbouring values can coincide when the range is short."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if k == 1:
            middle = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
            return self._finish(np.array([middle]))
        spaced = np.geomspace(self.low, self.high, k) if self.log else np.linspace(self.low, self.high, k)
        return self._finish(spaced)

    def sample(self, rng: np.random.Generator, size: int) -> list:
        """``size`` values drawn independently: uniform on ``[low, high]``, or log-uniform for a log range."""
        if self.log:
            return self._finish(np.exp(rng.uniform(math.log(self.low), math.log(self.high), size)))
        return self._finish(rng.uniform(self.low, self.high, size))


def _check_space(space: dict[str, Range], budget: int) -> None:
    if not space:
        raise ValueError("the search space is empty")
    for name, r in space.items():
        if not isinstance(r, Range):
            raise TypeError(f"space[{name!r}] must be a Range, got {type(r).__name__}")
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")


def grid_points(space: dict[str, Range], budget: int) -> list[dict]:
    """The largest full grid that fits the budget: ``k`` values per hyper-parameter, ``k ** d <= budget``.

    Args:
        space: ``d`` named :class:`Range` objects. budget: the most trials allowed.

    Returns:
        ``k ** d`` settings (dicts), every combination of :meth:`Range.grid` values, the last name varying
        fastest. With ``budget = 16`` and ``d = 2`` that is a 4 x 4 grid; ``budget = 20`` gives the same 16.
    """
    _check_space(space, budget)
    d = len(space)
    k = max(1, int(math.floor(budget ** (1.0 / d) + 1e-9)))
    while (k + 1) ** d <= budget:  # guard against rounding in the root
        k += 1
    axes = [r.grid(k) for r in space.values()]
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*axes)]


def random_points(space: dict[str, Range], budget: int, seed: int = 0) -> list[dict]:
    """``budget`` settings, each hyper-parameter drawn independently by :meth:`Range.sample` (seeded)."""
    _check_space(space, budget)
    rng = np.random.default_rng(seed)
    columns = {name: r.sample(rng, budget) for name, r in space.items()}
    return [{name: columns[name][i] for name in space} for i in range(budget)]


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The outcome of :func:`run_search`: every setting tried and its score (lower is better).

    Attributes:
        points: the settings, in the order tried. scores: float64, shape ``(len(points),)``.
    """

    points: list[dict]
    scores: np.ndarray

    @property
    def best_index(self) -> int:
        """Position of the lowest score (the first one on ties)."""
        return int(np.argmin(self.scores))

    @property
    def best_point(self) -> dict:
        return self.points[self.best_index]

    @property
    def best_score(self) -> float:
        return float(self.scores[self.best_index])

    def best_so_far(self) -> np.ndarray:
        """The lowest score among the first ``t`` trials, for ``t = 1 .. len(points)``: shape ``(len(points),)``."""
        return np.minimum.accumulate(self.scores)


def run_search(objective: Callable[..., float], points: list[dict]) -> SearchResult:
    """Score every setting with ``objective(**setting)`` (a validation loss or error: lower is better).

    The objective trains a model with the given hyper-parameters and returns its score on validation data, never
    on test data: choosing by test scores turns the test set into a second validation set.
    """
    if not points:
        raise ValueError("no settings to try")
    scores = np.array([float(objective(**point)) for point in points], dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"the objective returned NaN for {int(np.isnan(scores).sum())} settings; return inf instead")
    return SearchResult(points=list(points), scores=scores)
