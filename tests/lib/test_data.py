"""Tests of lmbook.data: shapes, types, balance, determinism, geometry, and that a small MLP can learn each set."""

import numpy as np
import pytest

from lmbook.data import DATASETS_2D, circles, make_2d, spirals, train_test_split, two_moons, xor, xor_clusters
from lmbook.mlp import MLP, accuracy, train

GENERATORS = sorted(DATASETS_2D)


def test_xor_is_the_truth_table():
    X, y = xor()
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert y.tolist() == [int(a) ^ int(b) for a, b in X]


@pytest.mark.parametrize("n", [200, 201, 7])
@pytest.mark.parametrize("name", GENERATORS)
def test_shapes_types_labels_and_balance(name, n):
    X, y = make_2d(name, n=n)
    assert X.shape == (n, 2) and y.shape == (n,)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1}
    assert abs(np.sum(y == 0) - np.sum(y == 1)) <= 1
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize("name", GENERATORS)
def test_generation_is_deterministic_given_the_seed(name):
    X1, y1 = make_2d(name, seed=3)
    X2, y2 = make_2d(name, seed=3)
    X3, _ = make_2d(name, seed=4)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", GENERATORS)
def test_examples_are_shuffled(name):
    _, y = make_2d(name, n=100)
    assert 0 < np.argmax(y != y[0]) < 10  # the first label change comes early, not at the midpoint


def test_make_2d_uses_each_generators_default_noise_and_passes_noise_on():
    for name, fn in DATASETS_2D.items():
        assert np.array_equal(make_2d(name, n=50, seed=1)[0], fn(n=50, seed=1)[0])
        assert np.array_equal(make_2d(name, n=50, noise=0.01, seed=1)[0], fn(n=50, noise=0.01, seed=1)[0])
    assert DATASETS_2D["xor"] is xor_clusters and DATASETS_2D["moons"] is two_moons


def test_make_2d_rejects_unknown_names_and_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        make_2d("mnist")
    for name in GENERATORS:
        assert repr(name) in str(info.value)


def test_noise_free_geometry():
    X, y = two_moons(n=100, noise=0.0)
    upper, lower = X[y == 0], X[y == 1]
    assert np.allclose(np.hypot(*upper.T), 1.0) and np.all(upper[:, 1] >= 0)
    assert np.allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0) and np.all(lower[:, 1] <= 0.5)

    X, y = circles(n=100, noise=0.0, factor=0.3)
    assert np.allclose(np.hypot(*X[y == 0].T), 1.0) and np.allclose(np.hypot(*X[y == 1].T), 0.3)

    X, y = xor_clusters(n=100, noise=0.0)
    assert np.all(np.abs(X) == 1.0)
    assert np.array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(int))

    X, y = spirals(n=100, noise=0.0, turns=2.0)
    assert np.hypot(*X.T).max() <= 4.0  # the radius grows by 2 per turn


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="factor"):
        circles(factor=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        two_moons(n=1)


def test_train_test_split_partitions_the_data():
    X, y = two_moons(n=200)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=0)
    assert X_train.shape == (150, 2) and X_test.shape == (50, 2) and y_train.shape == (150,)
    rows = {tuple(r) for r in np.vstack([X_train, X_test])}
    assert rows == {tuple(r) for r in X}  # every example exactly once
    pairs = dict(zip(map(tuple, X), y, strict=True))
    assert all(pairs[tuple(r)] == label for r, label in zip(X_test, y_test, strict=True))  # rows keep their labels
    again = train_test_split(X, y, test_fraction=0.25, seed=0)
    assert np.array_equal(again[1], X_test)
    assert not np.array_equal(train_test_split(X, y, test_fraction=0.25, seed=1)[1], X_test)


def test_train_test_split_refuses_bad_input():
    X, y = two_moons(n=20)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(X, y, test_fraction=1.0)
    with pytest.raises(ValueError, match="examples"):
        train_test_split(X, y[:-1])
    assert len(train_test_split(X, y, test_fraction=0.01)[1]) == 1  # never an empty test set


# ----- the data sets are learnable (this also exercises lmbook.mlp.train) ---------------------------------------


def test_a_small_mlp_learns_the_xor_truth_table():
    X, y = xor()
    model = MLP((2, 3, 1), "tanh", seed=0)
    losses = train(model, X, y, lr=0.5, steps=500)
    assert accuracy(model, X, y) == 1.0
    assert losses[-1] < 0.1 * losses[0]


def test_a_single_layer_cannot_learn_xor():
    X, y = xor()
    model = MLP((2, 1), seed=0)
    train(model, X, y, lr=0.5, steps=500)
    assert accuracy(model, X, y) <= 0.75  # no straight line separates XOR


@pytest.mark.parametrize(
    ("name", "steps", "threshold"),
    [("moons", 600, 0.97), ("xor", 600, 0.97), ("circles", 600, 0.97), ("spirals", 1000, 0.95)],
)
def test_a_small_mlp_reaches_high_training_accuracy(name, steps, threshold):
    X, y = make_2d(name, n=200, seed=0)
    model = MLP((2, 16, 16, 1), "tanh", seed=0)
    train(model, X, y, lr=0.5, steps=steps)
    assert accuracy(model, X, y) >= threshold


def test_moons_generalise_to_held_out_points_with_minibatches():
    X, y = two_moons(n=400, seed=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, seed=0)
    model = MLP((2, 16, 1), "relu", seed=0)
    train(model, X_train, y_train, lr=0.3, steps=1500, batch_size=32, seed=0)
    assert accuracy(model, X_test, y_test) >= 0.95
