"""Two-dimensional loss surfaces on which to watch optimisers move, and the paths they take.

Introduced in chapter 3, Losses and gradient descent. A real network's loss depends on millions of
parameters, so nobody can draw it; these functions of two parameters ``(x, y)`` each isolate one difficulty
that real losses have:

- ``"ill-conditioned quadratic"``: ``f = (x² + 20 y²) / 2``, a long narrow valley. Curvature 20 times larger
  across the valley than along it: a learning rate small enough not to bounce off the walls crawls along the
  floor.
- ``"rosenbrock"``: ``f = (1 - x)² + 100 (y - x²)²``, a curved banana-shaped valley whose floor is almost flat,
  a classic test of optimisers; minimum at ``(1, 1)``.
- ``"saddle"``: ``f = x² / 2 + y⁴ / 4 - y² / 2``, a saddle point at the origin between two minima at
  ``(0, ±1)``. Starting just beside the ridge, the gradient is tiny at first and plain gradient descent
  lingers near the saddle.

:func:`trajectory` runs an optimiser from :mod:`lmbook.optim` on a surface and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lmbook.optim import OPTIMIZERS, make_optimizer
from lmbook.testing import check_choice, check_shape

# An iterate farther than this from the origin counts as diverged: it has left every plot for good and would
# overflow to infinity within a few more steps.
DIVERGENCE_RADIUS = 1e6


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Surface:
    """A loss function of two parameters, with its gradient and what is needed to plot it.

    Attributes:
        name: its key in :data:`SURFACES`.
        f: the loss; takes points of shape ``(..., 2)`` and returns shape ``(...)`` (a grid at once).
        grad: the gradient; takes ``(..., 2)`` and returns ``(..., 2)``, e.g. ``(2,) -> (2,)``.
        xlim, ylim: the region to plot, ``(low, high)`` each.
        start: the default starting point, shape ``(2,)``.
        minimum: a global minimum, shape ``(2,)`` (the one the default start rolls into).
        formula: the loss in LaTeX, for titles.
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray], np.ndarray]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    start: np.ndarray
    minimum: np.ndarray
    formula: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _frozen(self.start))
        object.__setattr__(self, "minimum", _frozen(self.minimum))
        check_shape(self.start, (2,), "start")
        check_shape(self.minimum, (2,), "minimum")

    def grid(self, resolution: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(xx, yy, zz)``: the plot region sampled on a ``resolution x resolution`` grid, and ``f`` there."""
        xx, yy = np.meshgrid(np.linspace(*self.xlim, resolution), np.linspace(*self.ylim, resolution))
        return xx, yy, self.f(np.stack([xx, yy], axis=-1))


def _split(p) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64)
    if p.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {p.shape}")
    return p[..., 0], p[..., 1]


# Ill-conditioned quadratic: curvatures 1 (along x) and _CONDITION (along y).
_CONDITION = 20.0


def _quadratic(p):
    x, y = _split(p)
    return 0.5 * (x**2 + _CONDITION * y**2)


def _quadratic_grad(p):
    x, y = _split(p)
    return np.stack([x, _CONDITION * y], axis=-1)


def _rosenbrock(p):
    x, y = _split(p)
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _rosenbrock_grad(p):
    x, y = _split(p)
    return np.stack([-2.0 * (1.0 - x) - 400.0 * x * (y - x**2), 200.0 * (y - x**2)], axis=-1)


def _saddle(p):
    x, y = _split(p)
    return 0.5 * x**2 + 0.25 * y**4 - 0.5 * y**2


def _saddle_grad(p):
    x, y = _split(p)
    return np.stack([x, y**3 - y], axis=-1)


SURFACES: dict[str, Surface] = {
    "ill-conditioned quadratic": Surface(
        name="ill-conditioned quadratic",
        f=_quadratic,
        grad=_quadratic_grad,
        xlim=(-5.0, 5.0),
        ylim=(-2.0, 2.0),
        start=(-4.5, 1.2),
        minimum=(0.0, 0.0),
        formula=r"$f = (x^2 + 20\,y^2)\,/\,2$",
    ),
    "rosenbrock": Surface(
        name="rosenbrock",
        f=_rosenbrock,
        grad=_rosenbrock_grad,
        xlim=(-2.0, 2.0),
        ylim=(-1.0, 3.0),
        start=(-1.5, 2.5),
        minimum=(1.0, 1.0),
        formula=r"$f = (1 - x)^2 + 100\,(y - x^2)^2$",
    ),
    "saddle": Surface(
        name="saddle",
        f=_saddle,
        grad=_saddle_grad,
        xlim=(-3.0, 3.0),
        ylim=(-2.0, 2.0),
        start=(-2.5, 0.01),
        minimum=(0.0, 1.0),
        formula=r"$f = x^2/2 + y^4/4 - y^2/2$",
    ),
}


def get_surface(surface: str | Surface) -> Surface:
    """Look up a surface by name in :data:`SURFACES`, or pass a :class:`Surface` through.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    if isinstance(surface, Surface):
        return surface
    check_choice(surface, SURFACES, "surface")
    return SURFACES[surface]


def trajectory(
    surface: str | Surface,
    optimizer: str,
    lr: float,
    steps: int,
    momentum: float = 0.9,
    start=None,
) -> np.ndarray:
    """Run an optimiser on a surface and return the points it visits.

    Args:
        surface: a :class:`Surface` or its name in :data:`SURFACES`.
        optimizer: a name in :data:`lmbook.optim.OPTIMIZERS`: ``"sgd"``, ``"momentum"``, ``"rmsprop"``,
            ``"adam"`` (or ``"adamw"``); each with PyTorch's default hyper-parameters except ``lr``.
        lr: the learning rate. steps: the number of optimisation steps.
        momentum: the momentum of ``"momentum"`` (SGD with momentum); the other optimisers ignore it.
        start: the starting point, shape ``(2,)``; the surface's own ``start`` by default.

    Returns:
        The path, shape ``(steps + 1, 2)``: the start, then the point after each step. If the iterate
        diverges (a coordinate becomes inf or NaN, or the point leaves the disc of radius
        :data:`DIVERGENCE_RADIUS`), the run stops and the path is **truncated**: it ends with the last point
        inside, so ``len(path) < steps + 1`` tells that the run diverged.
    """
    s = get_surface(surface)
    check_choice(optimizer, OPTIMIZERS, "optimiser")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    theta = np.array(s.start if start is None else start, dtype=np.float64)
    check_shape(theta, (2,), "start")
    kwargs = {"momentum": momentum} if optimizer == "momentum" else {}
    opt = make_optimizer(optimizer, [theta], lr, **kwargs)
    path = np.empty((int(steps) + 1, 2))
    path[0] = theta
    # A learning rate that is too large is part of the lesson, not an error: no overflow warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, int(steps) + 1):
            opt.step([s.grad(theta)])
            # hypot is inf or NaN if a coordinate is, and the comparison is then False as well.
            if not math.hypot(theta[0], theta[1]) <= DIVERGENCE_RADIUS:
                return path[:k]
            path[k] = theta
    return path
