"""Small two-dimensional data sets, generated (never downloaded), and a train/test split.

Introduced in chapter 2, Neurons, forward propagation and backpropagation. Two input features mean every
example is a point in the plane, so we can draw the data and the decision boundary a network learns. Each
set is chosen to need a different kind of boundary: XOR needs two lines, circles a closed curve, moons a
bent curve and spirals a curve that winds around the origin.

All generators return ``X`` of shape ``(n, 2)`` (float64) and ``y`` of shape ``(n,)`` (int64, labels 0 and 1,
balanced: the two classes differ in size by at most one), shuffled, and are deterministic given ``seed``.
"""

from __future__ import annotations

import numpy as np

from lmbook.testing import check_choice


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The XOR truth table: the four points of ``{0, 1}^2``, labelled 1 when exactly one input is 1.

    No single line separates the two classes, so a network needs a hidden layer to learn it.

    Returns:
        X: shape ``(4, 2)``, float64. y: shape ``(4,)``, int64, ``[0, 1, 1, 0]``.
    """
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y


def _class_sizes(n: int, k: int = 2) -> list[int]:
    """Split ``n`` examples into ``k`` groups whose sizes differ by at most one."""
    if n < k:
        raise ValueError(f"need at least {k} examples, got n={n}")
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _finish(parts: list[np.ndarray], labels: list[int], noise: float, rng: np.random.Generator):
    """Stack the groups of points, add Gaussian noise and shuffle, so that examples come in no useful order."""
    X = np.concatenate(parts)
    y = np.concatenate([np.full(len(p), label, dtype=np.int64) for p, label in zip(parts, labels, strict=True)])
    X = X + rng.normal(0.0, noise, size=X.shape)
    order = rng.permutation(len(X))
    return X[order], y[order]


def xor_clusters(n: int = 200, noise: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy XOR: ``n`` points in four clusters around ``(+-1, +-1)``, labelled 1 where the signs differ.

    Args:
        n: number of points. noise: standard deviation of the Gaussian scatter. seed: random seed.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    labels = [0, 0, 1, 1]
    # Interleave the sizes so that each class gets two clusters and the classes stay balanced.
    sizes_by_class = _class_sizes(n)
    sizes = [*_class_sizes(sizes_by_class[0]), *_class_sizes(sizes_by_class[1])]
    parts = [np.repeat(c[None, :], m, axis=0) for c, m in zip(centres, sizes, strict=True)]
    return _finish(parts, labels, noise, rng)


def two_moons(n: int = 200, noise: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interlocking half circles ("moons"): the upper one is class 0, the lower one class 1.

    Args:
        n: number of points. noise: standard deviation of the Gaussian scatter. seed: random seed.
    """
    rng = np.random.default_rng(seed)
    n0, n1 = _class_sizes(n)
    t0 = rng.uniform(0.0, np.pi, n0)
    t1 = rng.uniform(0.0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    # The lower moon is the upper one flipped and shifted, so its tips reach into the upper moon's bowl.
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    return _finish([upper, lower], [0, 1], noise, rng)


def circles(n: int = 200, noise: float = 0.08, factor: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: the outer one (radius 1) is class 0, the inner one (radius ``factor``) class 1.

    Args:
        n: number of points. noise: standard deviation of the Gaussian scatter.
        factor: radius of the inner circle, between 0 and 1. seed: random seed.
    """
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be between 0 and 1, got {factor}")
    rng = np.random.default_rng(seed)
    n0, n1 = _class_sizes(n)
    t0 = rng.uniform(0.0, 2 * np.pi, n0)
    t1 = rng.uniform(0.0, 2 * np.pi, n1)
    outer = np.column_stack([np.cos(t0), np.sin(t0)])
    inner = factor * np.column_stack([np.cos(t1), np.sin(t1)])
    return _finish([outer, inner], [0, 1], noise, rng)


def spirals(n: int = 200, noise: float = 0.2, turns: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spiral arms, one per class, each winding ``turns`` times around the origin.

    The radius grows by 2 per turn and the second arm is the first rotated by half a turn, so neighbouring
    arms of different classes are 1 apart: ``noise`` is measured against that gap.

    Args:
        n: number of points. noise: standard deviation of the Gaussian scatter.
        turns: how many times each arm winds around. seed: random seed.
    """
    rng = np.random.default_rng(seed)
    arms = []
    for label, m in enumerate(_class_sizes(n)):
        # sqrt spreads the points evenly along the arm: the outer part of an arm is longer than the inner part.
        angle = np.sqrt(rng.uniform(0.0, 1.0, m)) * turns * 2 * np.pi
        radius = angle / np.pi
        angle = angle + label * np.pi
        arms.append(np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]))
    return _finish(arms, [0, 1], noise, rng)


DATASETS_2D = {"xor": xor_clusters, "moons": two_moons, "circles": circles, "spirals": spirals}


def make_2d(name: str, n: int = 200, noise: float | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate one of :data:`DATASETS_2D` by name; ``noise=None`` keeps that data set's default noise.

    ``"xor"`` here is :func:`xor_clusters`, a noisy XOR with ``n`` points; :func:`xor` is the 4-point truth table.
    """
    check_choice(name, DATASETS_2D, "data set")
    kwargs = {} if noise is None else {"noise": noise}
    return DATASETS_2D[name](n=n, seed=seed, **kwargs)


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.25, seed: int = 0):
    """Shuffle the examples and hold out ``test_fraction`` of them for testing.

    The test examples are never used for training, so accuracy on them estimates how the model does on new
    data; accuracy on the training examples alone can be flattering.

    Args:
        X: inputs, shape ``(n, C)``. y: labels, shape ``(n,)``.
        test_fraction: share of examples in the test set, strictly between 0 and 1 (at least one example
            ends up on each side).
        seed: seed of the shuffle.

    Returns:
        ``X_train, X_test, y_train, y_test``.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} examples but y has {len(y)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    n = len(X)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
