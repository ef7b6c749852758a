"""Tests of lmbook.tuning: grids against scikit-learn's ParameterGrid, random draws against their distributions,
and the search bookkeeping on objectives whose minimum is known."""

import math

import numpy as np
import pytest
from sklearn.model_selection import ParameterGrid

from lmbook.tuning import Range, SearchResult, grid_points, random_points, run_search

SPACE = {"lr": Range(1e-4, 1.0, log=True), "width": Range(2, 64, log=True, integer=True), "p": Range(0.0, 0.5)}


def test_grid_is_every_combination_within_the_budget():
    for budget, k in [(8, 2), (26, 2), (27, 3), (63, 3), (64, 4)]:
        points = grid_points(SPACE, budget)
        assert len(points) == k**3 <= budget
        axes = {name: r.grid(k) for name, r in SPACE.items()}
        as_tuples = {tuple(p[name] for name in SPACE) for p in points}
        reference = {tuple(p[name] for name in SPACE) for p in ParameterGrid(axes)}
        assert as_tuples == reference
        for name in SPACE:
            assert len({p[name] for p in points}) == k  # only k distinct values of each hyper-parameter


def test_grid_values_are_evenly_spaced_in_the_right_scale():
    assert Range(1e-3, 1e1, log=True).grid(5) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0])
    assert Range(0.0, 1.0).grid(3) == pytest.approx([0.0, 0.5, 1.0])
    assert Range(2, 64, log=True, integer=True).grid(6) == [2, 4, 8, 16, 32, 64]
    assert Range(1e-2, 1.0, log=True).grid(1) == pytest.approx([0.1])
    assert grid_points({"a": Range(0.0, 1.0)}, 1) == [{"a": 0.5}]


def test_random_points_stay_in_range_are_reproducible_and_have_the_right_distribution():
    points = random_points(SPACE, 4000, seed=0)
    assert len(points) == 4000 and points == random_points(SPACE, 4000, seed=0)
    assert points != random_points(SPACE, 4000, seed=1)
    lr = np.array([p["lr"] for p in points])
    width = [p["width"] for p in points]
    drop = np.array([p["p"] for p in points])
    assert lr.min() >= 1e-4 and lr.max() <= 1.0 and drop.min() >= 0.0 and drop.max() <= 0.5
    assert all(isinstance(w, int) and 2 <= w <= 64 for w in width)
    # log-uniform: each decade of the learning rate gets about a quarter of the draws; uniform: half below 0.25
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1, 0])[0] / len(lr)
    assert np.all(np.abs(decades - 0.25) < 0.03)
    assert abs(np.mean(drop < 0.25) - 0.5) < 0.03
    assert len(np.unique(lr)) == 4000  # every trial tries a new learning rate


def test_run_search_finds_the_best_setting_and_tracks_the_running_best():
    def bowl(lr, width, p):
        return (math.log10(lr) + 2) ** 2 + 0.001 * width + p

    result = run_search(bowl, random_points(SPACE, 50, seed=3))
    assert isinstance(result, SearchResult) and result.scores.shape == (50,)
    assert result.best_score == min(bowl(**pt) for pt in result.points)
    assert bowl(**result.best_point) == result.best_score
    running = result.best_so_far()
    assert running[-1] == result.best_score and np.all(np.diff(running) <= 0) and running[0] == result.scores[0]
    grid = run_search(bowl, grid_points(SPACE, 27))
    assert grid.best_point["lr"] == pytest.approx(1e-2)  # on the 3-value grid 1e-4, 1e-2, 1


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="low < high"):
        Range(1.0, 1.0)
    with pytest.raises(ValueError, match="low > 0"):
        Range(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="whole-number"):
        Range(0.5, 4, integer=True)
    with pytest.raises(ValueError, match="budget"):
        grid_points(SPACE, 0)
    with pytest.raises(TypeError, match="Range"):
        random_points({"lr": (0.0, 1.0)}, 3)
    with pytest.raises(ValueError, match="NaN"):
        run_search(lambda a: float("nan"), [{"a": 1.0}])
