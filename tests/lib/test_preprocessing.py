"""Tests of lmbook.preprocessing: the Standardiser against scikit-learn, leakage, splits, folds, loading, augmenting."""

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from lmbook.preprocessing import (
    TABULAR_DATASETS,
    Split,
    Standardiser,
    augment_digits,
    kfold_indices,
    load_tabular,
    train_val_test_split,
)
from lmbook.testing import ShapeError


def features(seed: int = 0, n: int = 50, c: int = 4) -> np.ndarray:
    """Columns on very different scales and offsets, as real measurements often are."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, c)) * np.logspace(-2, 3, c) + np.linspace(-50, 50, c)


# ----- Standardiser -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_standardiser_matches_sklearn_standard_scaler(seed):
    X_train, X_new = features(seed), features(seed + 100, n=20)
    ours, ref = Standardiser().fit(X_train), StandardScaler().fit(X_train)
    np.testing.assert_allclose(ours.mean_, ref.mean_)
    np.testing.assert_allclose(ours.scale_, ref.scale_)
    np.testing.assert_allclose(ours.transform(X_new), ref.transform(X_new))
    np.testing.assert_allclose(ours.inverse_transform(X_new), ref.inverse_transform(X_new))
    np.testing.assert_allclose(Standardiser().fit_transform(X_train), ref.transform(X_train))


def test_standardised_training_data_has_mean_zero_and_std_one_and_round_trips():
    X = features(1)
    Z = Standardiser().fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0)  # population std, ddof = 0
    s = Standardiser().fit(X)
    np.testing.assert_allclose(s.inverse_transform(s.transform(X)), X)
    assert s.scale_ == pytest.approx(X.std(axis=0))
    assert not np.allclose(s.scale_, X.std(axis=0, ddof=1))  # not the sample std


def test_constant_feature_gets_scale_one_like_sklearn():
    X = features(2)
    X[:, 1] = 0.1  # a constant whose computed std would be a rounding error, not 0
    s = Standardiser().fit(X)
    assert s.scale_[1] == 1.0
    np.testing.assert_allclose(s.transform(X)[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(s.transform(X), StandardScaler().fit_transform(X))
    assert np.all(np.isfinite(s.transform(X)))


def test_transform_before_fit_is_a_clear_error():
    s = Standardiser()
    with pytest.raises(RuntimeError, match="fit"):
        s.transform(features())
    with pytest.raises(RuntimeError, match="fit"):
        s.inverse_transform(features())
    assert repr(s) == "Standardiser(unfitted)"


def test_standardiser_checks_shapes():
    s = Standardiser().fit(features(c=4))
    assert repr(s) == "Standardiser(4 features)"
    with pytest.raises(ShapeError, match=r"expected shape \(\*, 4\), got \(5, 3\)"):
        s.transform(np.zeros((5, 3)))
    with pytest.raises(ShapeError):
        Standardiser().fit(np.zeros(5))
    with pytest.raises(ValueError, match="zero examples"):
        Standardiser().fit(np.zeros((0, 3)))


def test_fitting_on_all_data_leaks_the_held_out_statistics():
    """Fitted on the training split only, the statistics do not depend on the test examples; fitted on all
    the data, they do, and the test set no longer looks like unseen data (it is centred exactly at 0)."""
    X, y, _ = load_tabular("wine")
    split = train_val_test_split(X, y, seed=0)
    X_all = np.concatenate([split.X_train, split.X_val, split.X_test])
    right = Standardiser().fit(split.X_train)
    leaky = Standardiser().fit(X_all)
    assert not np.allclose(right.mean_, leaky.mean_)
    assert not np.allclose(right.scale_, leaky.scale_)
    # Changing the test examples changes the leaky statistics but not the right ones.
    shifted_test = split.X_test + 10.0 * split.X_test.std(axis=0)
    leaky_shifted = Standardiser().fit(np.concatenate([split.X_train, split.X_val, shifted_test]))
    assert not np.allclose(leaky_shifted.mean_, leaky.mean_)
    np.testing.assert_array_equal(Standardiser().fit(split.X_train).mean_, right.mean_)
    # The right statistics leave the training data at mean 0 and the held-out data only near it.
    Z_all_leaky = leaky.transform(X_all)
    np.testing.assert_allclose(Z_all_leaky.mean(axis=0), 0.0, atol=1e-12)
    assert np.abs(right.transform(np.concatenate([split.X_val, split.X_test])).mean(axis=0)).max() > 0.01


# ----- train / validation / test split ------------------------------------------------------------------------


def test_split_sizes_cover_every_example_once():
    X, y, _ = load_tabular("breast_cancer")
    s = train_val_test_split(X, y, val=0.2, test=0.2, seed=0)
    assert isinstance(s, Split)
    n = len(y)
    assert s.sizes == (n - 2 * round(0.2 * n), round(0.2 * n), round(0.2 * n))
    all_idx = np.concatenate([s.train_idx, s.val_idx, s.test_idx])
    np.testing.assert_array_equal(np.sort(all_idx), np.arange(n))  # no overlap, nothing lost
    assert len(np.intersect1d(s.train_idx, s.test_idx)) == 0
    assert len(np.intersect1d(s.train_idx, s.val_idx)) == 0
    assert len(np.intersect1d(s.val_idx, s.test_idx)) == 0
    for part in ("train", "val", "test"):
        idx = getattr(s, f"{part}_idx")
        np.testing.assert_array_equal(getattr(s, f"X_{part}"), X[idx])
        np.testing.assert_array_equal(getattr(s, f"y_{part}"), y[idx])
        assert idx.dtype == np.int64


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_deterministic_given_the_seed(stratify):
    X, y, _ = load_tabular("wine")
    a = train_val_test_split(X, y, seed=3, stratify=stratify)
    b = train_val_test_split(X, y, seed=3, stratify=stratify)
    c = train_val_test_split(X, y, seed=4, stratify=stratify)
    np.testing.assert_array_equal(a.test_idx, b.test_idx)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(np.sort(a.test_idx), np.sort(c.test_idx))


def test_stratified_split_keeps_class_shares():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [140, 50, 10])  # unbalanced, with a rare class
    X = rng.normal(size=(200, 3))
    s = train_val_test_split(X, y, val=0.25, test=0.25, seed=1)
    assert s.sizes == (100, 50, 50)
    for part, expected in ((s.y_train, [70, 25, 5]), (s.y_val, [35, 12.5, 2.5]), (s.y_test, [35, 12.5, 2.5])):
        counts = np.bincount(part, minlength=3)
        assert np.all(np.abs(counts - np.array(expected)) <= 1)
        assert counts[2] >= 2  # the rare class is in every part
    # The parts are shuffled, not sorted by class.
    assert not np.all(np.diff(s.y_train) >= 0)


def test_unstratified_split_of_a_rare_class_can_miss_it():
    y = np.array([1] * 3 + [0] * 97)
    X = np.arange(100.0)[:, None]
    missed = [
        np.sum(train_val_test_split(X, y, val=0.1, test=0.1, seed=seed, stratify=False).y_test) == 0
        for seed in range(20)
    ]
    assert any(missed)
    assert all(np.sum(train_val_test_split(X, y, val=0.1, test=0.1, seed=seed).y_train) in (2, 3) for seed in range(20))


def test_split_works_on_regression_targets_and_images_without_stratifying():
    X = np.zeros((30, 8, 8))
    y = np.linspace(0, 1, 30)
    s = train_val_test_split(X, y, val=0.0, test=0.3, stratify=False)
    assert s.sizes == (21, 0, 9) and s.X_train.shape == (21, 8, 8) and s.X_val.shape == (0, 8, 8)


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.2, 1.0)])
def test_split_rejects_bad_shares(val, test):
    with pytest.raises(ValueError, match="val"):
        train_val_test_split(np.zeros((10, 2)), np.zeros(10), val=val, test=test)


def test_split_checks_that_X_and_y_match():
    with pytest.raises(ShapeError, match="X"):
        train_val_test_split(np.zeros((10, 2)), np.zeros(9))


# ----- k-fold -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(10, 5), (11, 3), (7, 7), (100, 4)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_kfold_validates_every_example_exactly_once(n, k, shuffle):
    folds = kfold_indices(n, k, shuffle=shuffle, seed=2)
    assert len(folds) == k
    val_all = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(val_all), np.arange(n))
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


@pytest.mark.parametrize(("n", "k"), [(10, 5), (11, 3), (23, 4)])
def test_kfold_without_shuffling_equals_sklearn(n, k):
    ours = kfold_indices(n, k, shuffle=False)
    ref = list(KFold(n_splits=k).split(np.zeros((n, 1))))
    for (train, val), (ref_train, ref_val) in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(train, ref_train)
        np.testing.assert_array_equal(val, ref_val)


def test_kfold_shuffling_is_seeded():
    a, b, c = kfold_indices(20, 4, seed=1), kfold_indices(20, 4, seed=1), kfold_indices(20, 4, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0][1], np.arange(5))


def test_kfold_rejects_bad_k():
    with pytest.raises(ValueError, match="k"):
        kfold_indices(5, 1)
    with pytest.raises(ValueError, match="k"):
        kfold_indices(5, 6)


# ----- loading ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10), ("wine", (178, 13), 3)],
)
def test_load_tabular_returns_the_documented_shapes(name, shape, classes, monkeypatch):
    # Offline: any attempt to open a network connection fails the test.
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("load_tabular tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    X, y, names = load_tabular(name)
    assert X.shape == shape and X.dtype == np.float64
    assert y.shape == (shape[0],) and y.dtype == np.int64
    np.testing.assert_array_equal(np.unique(y), np.arange(classes))
    assert len(names) == shape[1] and all(isinstance(f, str) for f in names)
    assert name in TABULAR_DATASETS


def test_load_tabular_rejects_unknown_names():
    with pytest.raises(ValueError, match="'mnist'.*'digits'"):
        load_tabular("mnist")


# ----- augmentation -------------------------------------------------------------------------------------------


def digit_images(n: int = 12) -> np.ndarray:
    X, _, _ = load_tabular("digits")
    return X[:n].reshape(-1, 8, 8)


def test_augment_digits_shifts_by_whole_pixels_without_wrapping():
    images = digit_images()
    out = augment_digits(images, seed=0, shift=1)
    assert out.shape == images.shape and out.dtype == np.float64
    for original, moved in zip(images, out, strict=True):
        matches = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                expected = np.zeros((8, 8))
                expected[max(0, dy) : 8 + min(0, dy), max(0, dx) : 8 + min(0, dx)] = original[
                    max(0, -dy) : 8 + min(0, -dy), max(0, -dx) : 8 + min(0, -dx)
                ]
                matches.append(np.array_equal(moved, expected))
        assert any(matches)
    assert not np.array_equal(out, images)


def test_augment_digits_is_seeded_and_shift_zero_copies():
    images = digit_images()
    np.testing.assert_array_equal(augment_digits(images, seed=5), augment_digits(images, seed=5))
    assert not np.array_equal(augment_digits(images, seed=5), augment_digits(images, seed=6))
    same = augment_digits(images, shift=0)
    np.testing.assert_array_equal(same, images)
    assert same is not images


def test_augment_digits_noise_stays_in_the_grey_range():
    images = digit_images()
    out = augment_digits(images, shift=0, noise=2.0, seed=1)
    assert out.min() >= 0.0 and out.max() <= images.max()
    assert 0.5 < np.abs(out - images).mean() < 2.0


def test_augment_digits_rejects_bad_arguments():
    with pytest.raises(ShapeError):
        augment_digits(np.zeros((5, 64)))
    with pytest.raises(ValueError, match="negative"):
        augment_digits(digit_images(), noise=-1.0)
    with pytest.raises(ValueError, match="frame"):
        augment_digits(digit_images(), shift=8)


def test_split_from_indices_takes_the_rows_it_names():
    X, y = np.arange(20).reshape(10, 2), np.arange(10) * 10
    split = Split.from_indices(X, y, [7, 1], [0], [9, 4])
    assert split.X_train.tolist() == [[14, 15], [2, 3]] and split.y_test.tolist() == [90, 40]
    assert split.y_val.tolist() == [0] and split.sizes == (2, 1, 2)
    assert split.train_idx.dtype == np.int64
