"""Tests of lmbook.surfaces: gradients against torch autograd, and trajectories against torch.optim on the surface."""

import warnings

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.surfaces import DIVERGENCE_RADIUS, SURFACES, Surface, get_surface, trajectory

# The same functions written with torch, to differentiate them with autograd.
TORCH_F = {
    "ill-conditioned quadratic": lambda x, y: 0.5 * (x**2 + 20.0 * y**2),
    "rosenbrock": lambda x, y: (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2,
    "saddle": lambda x, y: 0.5 * x**2 + 0.25 * y**4 - 0.5 * y**2,
}

TORCH_OPTIMIZERS = {
    "sgd": lambda p, lr, momentum: torch.optim.SGD(p, lr=lr),
    "momentum": lambda p, lr, momentum: torch.optim.SGD(p, lr=lr, momentum=momentum),
    "rmsprop": lambda p, lr, momentum: torch.optim.RMSprop(p, lr=lr),
    "adam": lambda p, lr, momentum: torch.optim.Adam(p, lr=lr),
}


def test_the_three_surfaces_are_there():
    assert set(SURFACES) == set(TORCH_F)
    for name, surface in SURFACES.items():
        assert isinstance(surface, Surface) and surface.name == name and get_surface(name) is surface
        assert surface.start.shape == surface.minimum.shape == (2,)
        assert surface.formula.startswith("$")


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_values_and_gradients_match_torch(name):
    s = SURFACES[name]
    points = np.random.default_rng(1).uniform(-2, 2, size=(50, 2))
    pt = torch.tensor(points, requires_grad=True)
    values = TORCH_F[name](pt[:, 0], pt[:, 1])
    (grad,) = torch.autograd.grad(values.sum(), pt)
    assert_close(torch.from_numpy(s.f(points)), values.detach())
    assert_close(torch.from_numpy(s.grad(points)), grad)
    assert s.grad(points[0]).shape == (2,)  # a single point (2,) -> (2,)
    assert_close(torch.from_numpy(s.grad(points[0])), grad[0])


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_minimum_is_stationary_and_lowest_on_the_grid(name):
    s = SURFACES[name]
    np.testing.assert_allclose(s.grad(s.minimum), [0.0, 0.0], atol=1e-12)
    xx, yy, zz = s.grid(60)
    assert xx.shape == yy.shape == zz.shape == (60, 60)
    assert s.f(s.minimum) <= zz.min() + 1e-12
    assert s.xlim[0] <= s.start[0] <= s.xlim[1] and s.ylim[0] <= s.start[1] <= s.ylim[1]


def test_the_saddle_point_is_flat_but_not_a_minimum():
    s = SURFACES["saddle"]
    np.testing.assert_array_equal(s.grad(np.zeros(2)), [0.0, 0.0])
    assert s.f(np.array([0.0, 0.5])) < s.f(np.zeros(2)) < s.f(np.array([0.5, 0.0]))


def test_surface_points_are_read_only():
    with pytest.raises(ValueError):
        SURFACES["rosenbrock"].start[0] = 0.0


def torch_trajectory(name, optimizer, lr, steps, momentum=0.9):
    s = SURFACES[name]
    p = torch.tensor(np.array(s.start), requires_grad=True)
    opt = TORCH_OPTIMIZERS[optimizer]([p], lr, momentum)
    path = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        TORCH_F[name](p[0], p[1]).backward()
        opt.step()
        path.append(p.detach().clone())
    return torch.stack(path)


@pytest.mark.parametrize("optimizer", sorted(TORCH_OPTIMIZERS))
@pytest.mark.parametrize(("name", "lr"), [("ill-conditioned quadratic", 0.04), ("rosenbrock", 1e-3), ("saddle", 0.05)])
def test_trajectory_matches_torch_optim_on_the_surface(name, optimizer, lr):
    path = trajectory(name, optimizer, lr=lr, steps=100, momentum=0.8)
    assert path.shape == (101, 2)
    np.testing.assert_array_equal(path[0], SURFACES[name].start)
    assert_close(torch.from_numpy(path), torch_trajectory(name, optimizer, lr, 100, momentum=0.8))


def test_momentum_changes_only_the_momentum_optimizer():
    a = trajectory("saddle", "adam", 0.05, 20, momentum=0.5)
    np.testing.assert_array_equal(a, trajectory("saddle", "adam", 0.05, 20, momentum=0.0))
    m0 = trajectory("saddle", "momentum", 0.05, 20, momentum=0.0)
    np.testing.assert_array_equal(m0, trajectory("saddle", "sgd", 0.05, 20))
    assert not np.allclose(trajectory("saddle", "momentum", 0.05, 20, momentum=0.9), m0)


def test_start_can_be_given_and_a_surface_object_works_too():
    path = trajectory(SURFACES["ill-conditioned quadratic"], "sgd", 0.1, 3, start=(1.0, 1.0))
    # x shrinks by (1 - 0.1) per step, y by (1 - 0.1 * 20) = -1: it bounces between the walls.
    np.testing.assert_allclose(path, [[1.0, 1.0], [0.9, -1.0], [0.81, 1.0], [0.729, -1.0]])


def test_a_diverging_run_is_truncated_at_the_last_point_inside():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings reach the reader
        path = trajectory("ill-conditioned quadratic", "sgd", lr=0.5, steps=200)
    assert len(path) < 201
    assert np.all(np.isfinite(path)) and np.all(np.hypot(path[:, 0], path[:, 1]) <= DIVERGENCE_RADIUS)
    # The next step from the last point would leave the disc.
    last = path[-1]
    nxt = last - 0.5 * SURFACES["ill-conditioned quadratic"].grad(last)
    assert np.hypot(*nxt) > DIVERGENCE_RADIUS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = trajectory("rosenbrock", "sgd", lr=0.05, steps=200)
    assert 1 <= len(path) < 201


def test_lessons_the_race_shows():
    """What the optimiser race is meant to show, as numbers."""
    quad = SURFACES["ill-conditioned quadratic"]
    sgd = trajectory(quad, "sgd", lr=0.01, steps=100)
    mom = trajectory(quad, "momentum", lr=0.01, steps=100, momentum=0.9)
    assert quad.f(mom[-1]) < 1e-3 * quad.f(sgd[-1])  # momentum speeds up the slow direction
    # Just below 2 / 20 = 0.1 SGD converges; just above it, it bounces ever higher across the steep direction.
    below = trajectory(quad, "sgd", lr=0.099, steps=300)
    above = trajectory(quad, "sgd", lr=0.101, steps=300)
    assert abs(below[-1, 1]) < 0.01 < 100 < abs(above[-1, 1])
    saddle = SURFACES["saddle"]
    slow = trajectory(saddle, "sgd", lr=0.01, steps=200)
    fast = trajectory(saddle, "adam", lr=0.05, steps=200)
    assert abs(slow[-1, 1]) < 0.5 < abs(fast[-1, 1])  # plain GD still lingers near the saddle's ridge


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"surface": "himmelblau"}, "unknown surface 'himmelblau'.*'rosenbrock'"),
        ({"optimizer": "lbfgs"}, "unknown optimiser 'lbfgs'"),
        ({"steps": -1}, "steps"),
        ({"start": (1.0, 2.0, 3.0)}, r"start: expected shape \(2,\), got \(3,\)"),
        ({"lr": -0.1}, "learning rate"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    settings = {"surface": "saddle", "optimizer": "sgd", "lr": 0.1, "steps": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        trajectory(**settings)
