"""Getting data ready for training: loading, splitting, scaling, cleaning, cross-validation folds, augmentation.

Introduced in chapter 4, Training well: data, overfitting, evaluation. The one rule behind most of this module:
**anything learned from data is learned from the training split only.** That holds for the model's weights,
and equally for the mean and standard deviation used to standardise the inputs; computing them on all the data
lets information about the validation and test examples leak into training (**data leakage**), and the
held-out scores stop measuring performance on unseen data.

Everything is deterministic given ``seed`` and uses only data on disk: the tabular sets are the small ones that
ship inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmbook.testing import check_choice, check_shape

# ----- loading ----------------------------------------------------------------------------------------------

TABULAR_DATASETS = ("breast_cancer", "digits", "wine")


def load_tabular(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One of scikit-learn's bundled tabular data sets, read from the files installed with scikit-learn.

    Args:
        name: ``"breast_cancer"`` (569 tumours x 30 cell measurements; 0 = malignant, 1 = benign, as
            scikit-learn labels them), ``"digits"`` (1797 handwritten digits as 8 x 8 = 64 grey levels 0-16;
            labels 0-9) or ``"wine"`` (178 wines x 13 chemical measurements; 3 cultivars, labels 0-2).

    Returns:
        X: float64, shape ``(N, C)``. y: int64, shape ``(N,)``. feature_names: ``C`` strings.
    """
    check_choice(name, TABULAR_DATASETS, "data set")
    # Imported here, not at the top: scikit-learn takes a while to import and most of lmbook does not need it.
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
    }
    bunch = loaders[name]()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    return X, y, [str(f) for f in bunch.feature_names]


# ----- splitting ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    """A data set cut into training, validation and test examples, from :func:`train_val_test_split`.

    Attributes:
        X_train, y_train: fit the model (and any preprocessing statistics) on these only.
        X_val, y_val: compare models and settings, choose when to stop training.
        X_test, y_test: look at these once, at the very end, to report the final result.
        train_idx, val_idx, test_idx: the row numbers of each part in the original arrays, int64.
    Shapes: ``X_*`` are ``(n_part, ...)`` like the input ``X``, ``y_*`` are ``(n_part,)``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return len(self.train_idx), len(self.val_idx), len(self.test_idx)

    @classmethod
    def from_indices(cls, X: np.ndarray, y: np.ndarray, train_idx, val_idx, test_idx) -> Split:
        """The split of ``X`` and ``y`` whose parts are the rows ``train_idx``, ``val_idx`` and ``test_idx``."""
        train_idx, val_idx, test_idx = (np.asarray(idx, dtype=np.int64) for idx in (train_idx, val_idx, test_idx))
        return cls(
            X_train=X[train_idx],
            y_train=y[train_idx],
            X_val=X[val_idx],
            y_val=y[val_idx],
            X_test=X[test_idx],
            y_test=y[test_idx],
            train_idx=train_idx,
            val_idx=val_idx,
            test_idx=test_idx,
        )


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` among groups in proportion to ``counts``, in whole numbers that add up to ``total``.

    Each group gets the floor of its exact share; the examples left over go to the groups with the largest
    fractional parts (the largest remainder method), so no group is off its exact share by one or more.
    """
    exact = counts * (total / counts.sum())
    share = np.floor(exact).astype(np.int64)
    leftover = total - int(share.sum())
    if leftover > 0:
        # Stable sort on the negated remainders: ties go to the earlier group, so the result is reproducible.
        share[np.argsort(-(exact - share), kind="stable")[:leftover]] += 1
    return np.minimum(share, counts)


def train_val_test_split(X, y, val: float = 0.2, test: float = 0.2, seed: int = 0, stratify: bool = True) -> Split:
    """Shuffle the examples and cut them into training, validation and test parts.

    Args:
        X: inputs, shape ``(N, ...)``. y: labels or targets, shape ``(N,)``.
        val, test: shares of the examples for validation and test, each in ``[0, 1)`` with ``val + test < 1``;
            the parts get ``round(N * test)`` and ``round(N * val)`` examples and training gets the rest.
        seed: seed of the shuffle; the same seed gives the same split.
        stratify: keep each class's share the same in every part (up to rounding), which matters for small or
            unbalanced data sets, where a random cut can leave a rare class out of a part altogether. Needs
            class labels in ``y``; use ``stratify=False`` for regression targets.

    Returns:
        A :class:`Split`. Every example is in exactly one part, and each part is in random order.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = len(y)
    check_shape(y, (n,), "y")
    check_shape(X, (n, *([None] * (X.ndim - 1))), "X")
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise ValueError(f"val and test must be in [0, 1) with val + test < 1, got val={val}, test={test}")
    n_test, n_val = int(round(n * test)), int(round(n * val))
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} examples leave none for training with val={val} and test={test}")
    rng = np.random.default_rng(seed)
    if stratify:
        classes, group = np.unique(y, return_inverse=True)
        members = [rng.permutation(np.flatnonzero(group == c)) for c in range(len(classes))]
        counts = np.array([len(m) for m in members])
        test_counts = _apportion(counts, n_test)
        val_counts = _apportion(counts - test_counts, n_val)
        test_idx = np.concatenate([m[:t] for m, t in zip(members, test_counts, strict=True)])
        val_idx = np.concatenate([m[t : t + v] for m, t, v in zip(members, test_counts, val_counts, strict=True)])
        train_idx = np.concatenate([m[t + v :] for m, t, v in zip(members, test_counts, val_counts, strict=True)])
        # The parts were filled class by class; shuffle them so that no code can rely on that order.
        test_idx, val_idx, train_idx = (rng.permutation(part) for part in (test_idx, val_idx, train_idx))
    else:
        order = rng.permutation(n)
        test_idx, val_idx, train_idx = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Split.from_indices(X, y, train_idx, val_idx, test_idx)


def kfold_indices(n: int, k: int = 5, shuffle: bool = True, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row numbers for ``k``-fold cross-validation: every example is used for validation exactly once.

    The ``n`` examples are cut into ``k`` folds of sizes differing by at most one (the first ``n % k`` folds get
    the extra example). Round ``i`` validates on fold ``i`` and trains on the other ``k - 1``; the ``k``
    validation scores, averaged, estimate performance with less luck of the draw than one validation split.

    Args:
        n: number of examples. k: number of folds, ``2 <= k <= n``.
        shuffle: shuffle before cutting (with ``seed``); without shuffling fold 0 is the first rows, and so on.

    Returns:
        ``k`` pairs ``(train_idx, val_idx)`` of sorted int64 arrays. With ``shuffle=False`` they equal
        ``sklearn.model_selection.KFold(k).split(...)``'s.
    """
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= n, got k={k} and n={n}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    folds = []
    for i in range(k):
        val_idx = np.sort(order[bounds[i] : bounds[i + 1]])
        train_idx = np.sort(np.concatenate([order[: bounds[i]], order[bounds[i + 1] :]]))
        folds.append((train_idx.astype(np.int64), val_idx.astype(np.int64)))
    return folds


# ----- standardising ------------------------------------------------------------------------------------------


class Standardiser:
    """Rescale every feature to mean 0 and standard deviation 1, with statistics learned by :meth:`fit`.

    ``transform(X) = (X - mean_) / scale_``. Fit it on the training inputs only, then transform the training,
    validation and test inputs with those same numbers. Gradient descent converges faster on standardised
    inputs because no feature's weights need a much larger or smaller step than another's.

    Attributes (set by :meth:`fit`):
        mean_: per-feature mean, shape ``(C,)``.
        scale_: per-feature population standard deviation (divide by ``N``, not ``N - 1``), shape ``(C,)``. A
            feature that is constant in the training data gets scale 1, so it is centred and not divided by 0.

    Equivalent to ``sklearn.preprocessing.StandardScaler``.
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X) -> Standardiser:
        """Learn ``mean_`` and ``scale_`` from ``X`` of shape ``(N, C)``, ``N >= 1``; return ``self``."""
        X = np.asarray(X, dtype=np.float64)
        check_shape(X, (None, None), "X")
        if len(X) == 0:
            raise ValueError("cannot fit a Standardiser on zero examples")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        # Exactly constant features: the computed std can come out as a tiny rounding error instead of 0.
        constant = np.ptp(X, axis=0) == 0
        self.scale_ = np.where(constant, 1.0, scale)
        return self

    def _check_fitted(self, X) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError(
                "this Standardiser has not been fitted yet: call fit(X_train) first, on the training inputs only"
            )
        X = np.asarray(X, dtype=np.float64)
        check_shape(X, (None, len(self.mean_)), "X")
        return X

    def transform(self, X) -> np.ndarray:
        """Standardise ``X`` of shape ``(N, C)`` with the fitted statistics; returns a new ``(N, C)`` array."""
        X = self._check_fitted(X)
        return (X - self.mean_) / self.scale_

    def fit_transform(self, X) -> np.ndarray:
        """:meth:`fit` on ``X``, then :meth:`transform` it. Use on the training inputs only."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X) -> np.ndarray:
        """Undo :meth:`transform`: ``X * scale_ + mean_``, shape ``(N, C)``."""
        X = self._check_fitted(X)
        return X * self.scale_ + self.mean_

    def __repr__(self) -> str:
        state = "unfitted" if self.mean_ is None else f"{len(self.mean_)} features"
        return f"Standardiser({state})"


class MinMaxScaler:
    """Rescale every feature linearly so that its training minimum and maximum map to ``feature_range``.

    ``transform(X) = lo + (X - data_min_) / data_range_ * (hi - lo)`` with ``(lo, hi) = feature_range``. The
    training inputs then fill ``[lo, hi]`` exactly; new inputs can fall outside it. Because the scale rests on
    two extreme values, one outlier squeezes all other values of its feature into a sliver of the range, which
    :class:`Standardiser` (two averages) resists better. Fit on the training inputs only.

    Attributes (set by :meth:`fit`):
        data_min_, data_max_: per-feature minimum and maximum of the training inputs, shape ``(C,)``.
        data_range_: ``data_max_ - data_min_``, shape ``(C,)``; a constant feature gets range 1, so it maps to
            ``lo`` instead of dividing by 0.

    Equivalent to ``sklearn.preprocessing.MinMaxScaler(feature_range)`` (without clipping).
    """

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)) -> None:
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(f"feature_range must be (lo, hi) with lo < hi, got {feature_range}")
        self.feature_range = (float(lo), float(hi))
        self.data_min_: np.ndarray | None = None
        self.data_max_: np.ndarray | None = None
        self.data_range_: np.ndarray | None = None

    def fit(self, X) -> MinMaxScaler:
        """Learn ``data_min_``, ``data_max_`` and ``data_range_`` from ``X`` of shape ``(N, C)``; return ``self``."""
        X = _finite_table(X, "MinMaxScaler")
        self.data_min_, self.data_max_ = X.min(axis=0), X.max(axis=0)
        span = self.data_max_ - self.data_min_
        self.data_range_ = np.where(span == 0, 1.0, span)
        return self

    def _check_fitted(self, X) -> np.ndarray:
        if self.data_min_ is None:
            raise RuntimeError(
                "this MinMaxScaler has not been fitted yet: call fit(X_train) first, on the training inputs only"
            )
        X = np.asarray(X, dtype=np.float64)
        check_shape(X, (None, len(self.data_min_)), "X")
        return X

    def transform(self, X) -> np.ndarray:
        """Rescale ``X`` of shape ``(N, C)`` with the fitted minimum and range; returns a new ``(N, C)`` array."""
        X = self._check_fitted(X)
        lo, hi = self.feature_range
        return lo + (X - self.data_min_) / self.data_range_ * (hi - lo)

    def fit_transform(self, X) -> np.ndarray:
        """:meth:`fit` on ``X``, then :meth:`transform` it. Use on the training inputs only."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X) -> np.ndarray:
        """Undo :meth:`transform`, shape ``(N, C)``."""
        X = self._check_fitted(X)
        lo, hi = self.feature_range
        return (X - lo) / (hi - lo) * self.data_range_ + self.data_min_

    def __repr__(self) -> str:
        state = "unfitted" if self.data_min_ is None else f"{len(self.data_min_)} features"
        return f"MinMaxScaler({state}, feature_range={self.feature_range})"


def _finite_table(X, who: str) -> np.ndarray:
    """``X`` as a float64 ``(N, C)`` array with ``N >= 1`` and no missing (NaN) or infinite values."""
    X = np.asarray(X, dtype=np.float64)
    check_shape(X, (None, None), "X")
    if len(X) == 0:
        raise ValueError(f"cannot fit a {who} on zero examples")
    if not np.all(np.isfinite(X)):
        raise ValueError(
            f"X has {int(np.sum(~np.isfinite(X)))} missing or infinite values: fill them in first (MedianImputer)"
        )
    return X


# ----- cleaning: missing values, duplicates, outliers -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DirtyTable:
    """A clean table with the three common defects added on purpose, from :func:`make_dirty`.

    Attributes:
        X: the dirty inputs, float64, shape ``(N + n_duplicates, C)``, with NaN for missing values.
        y: the labels, shape ``(N + n_duplicates,)``.
        source_row: for each dirty row, the row of the clean table it came from, int64 ``(N + n_duplicates,)``;
            a duplicate shares its original's number.
        missing: True where a value was blanked out, bool ``(N + n_duplicates, C)``.
        outliers: True where a value was corrupted into an outlier (in an original row or its copy), bool
            ``(N + n_duplicates, C)``.
        is_duplicate: True for the rows added as copies, bool ``(N + n_duplicates,)``.
    """

    X: np.ndarray
    y: np.ndarray
    source_row: np.ndarray
    missing: np.ndarray
    outliers: np.ndarray
    is_duplicate: np.ndarray


def make_dirty(
    X, y, seed: int = 0, missing: float = 0.03, n_duplicates: int = 15, n_outliers: int = 6, factor: float = 1000.0
) -> DirtyTable:
    """Copy a clean table and add missing values, duplicated rows and outliers, reproducibly, recording where.

    Real tables arrive with such defects; scikit-learn's bundled ones have been cleaned already. Adding them
    ourselves lets a reader practise the repairs *and* check them against the truth.

    Args:
        X: clean inputs, shape ``(N, C)``. y: labels, shape ``(N,)``. seed: seeds every choice below.
        missing: the share of cells blanked out to NaN, chosen uniformly at random (missing completely at
            random), in ``[0, 1)``.
        n_duplicates: rows copied once more and inserted at random places (as a record entered twice would be).
        n_outliers: cells multiplied by ``factor``, as a value typed in the wrong unit would be; only non-zero,
            non-missing cells of original rows are chosen, so every outlier really is one.

    Returns:
        A :class:`DirtyTable`. The duplicates are copied after blanking and corrupting, so a copy has the same
        gaps and outliers as its original: they are exact duplicates, as a record entered twice by a program would be.
    """
    X = np.array(X, dtype=np.float64)
    y = np.asarray(y)
    n, c = X.shape
    check_shape(y, (n,), "y")
    if not 0.0 <= missing < 1.0 or n_duplicates < 0 or n_outliers < 0:
        raise ValueError(
            f"need 0 <= missing < 1 and non-negative counts, got missing={missing}, "
            f"n_duplicates={n_duplicates}, n_outliers={n_outliers}"
        )
    rng = np.random.default_rng(seed)
    blank = rng.random((n, c)) < missing
    outliers = np.zeros((n, c), dtype=bool)
    candidates = np.flatnonzero(~blank & (X != 0))
    outliers.flat[rng.choice(candidates, size=n_outliers, replace=False)] = True
    X[outliers] *= factor
    X[blank] = np.nan
    copies = rng.choice(n, size=n_duplicates, replace=False)
    source = np.concatenate([np.arange(n), copies])
    order = rng.permutation(n + n_duplicates)  # copies end up anywhere, not all at the bottom
    is_duplicate = np.concatenate([np.zeros(n, dtype=bool), np.ones(n_duplicates, dtype=bool)])
    return DirtyTable(
        X=X[source][order],
        y=y[source][order],
        source_row=source[order].astype(np.int64),
        missing=blank[source][order],
        outliers=outliers[source][order],
        is_duplicate=is_duplicate[order],
    )


def duplicate_rows(X) -> np.ndarray:
    """True for every row that repeats an earlier row exactly (the first occurrence counts as the original).

    Missing values (NaN) in the same places compare equal, as in ``pandas.DataFrame.duplicated()``, whose
    result this equals. Remove duplicates *before* splitting: a copy in the training split and its twin in
    the test split would let the model score on an example it has already seen.

    Args:
        X: shape ``(N, C)``. Returns: bool, shape ``(N,)``.
    """
    X = np.asarray(X, dtype=np.float64)
    check_shape(X, (None, None), "X")
    # Compare rows by their bytes: exact, and NaN equals NaN. (+ 0.0 turns -0.0 into 0.0, which are equal values.)
    rows = np.ascontiguousarray(X + 0.0).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first = np.unique(rows, return_index=True)
    repeated = np.ones(len(X), dtype=bool)
    repeated[first] = False
    return repeated


def tukey_fences(X, k: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature bounds ``Q1 - k IQR`` and ``Q3 + k IQR`` outside which a value is flagged as an outlier.

    ``Q1`` and ``Q3`` are the 25th and 75th percentiles and ``IQR = Q3 - Q1`` (Tukey, *Exploratory Data
    Analysis*, 1977, who called values beyond ``k = 3`` "far out"). Quartiles, unlike the mean and standard
    deviation, barely move when a few values are wild, so the outliers cannot hide themselves by inflating the
    bounds. Missing values are ignored. Fit on the training split; a flagged value deserves a look, not
    automatic deletion: it may be a data-entry error or a rare, real case.

    Args:
        X: shape ``(N, C)``, NaN allowed. k: the width of the fences in IQRs, > 0.

    Returns:
        low, high: shape ``(C,)`` each; flag with ``(X < low) | (X > high)``.
    """
    X = np.asarray(X, dtype=np.float64)
    check_shape(X, (None, None), "X")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    q1, q3 = np.nanpercentile(X, [25, 75], axis=0)
    return q1 - k * (q3 - q1), q3 + k * (q3 - q1)


class MedianImputer:
    """Fill in missing values (NaN) with each feature's median over the training inputs.

    The median, not the mean, because it stays put when the column still contains outliers. Fit it on the
    training split only: the filled-in values are learned from data like any other statistic. Equivalent to
    ``sklearn.impute.SimpleImputer(strategy="median")``. Filling in hides the fact that a value was missing,
    which can itself be informative; a 0/1 "was missing" column keeps it.

    Attributes (set by :meth:`fit`): medians_: shape ``(C,)``.
    """

    def __init__(self) -> None:
        self.medians_: np.ndarray | None = None

    def fit(self, X) -> MedianImputer:
        """Learn the per-feature medians of ``X`` of shape ``(N, C)``, ignoring NaN; return ``self``."""
        X = np.asarray(X, dtype=np.float64)
        check_shape(X, (None, None), "X")
        empty = np.all(np.isnan(X), axis=0)
        if len(X) == 0 or empty.any():
            raise ValueError(
                f"every feature needs at least one value to take a median of; empty: {np.flatnonzero(empty)}"
            )
        self.medians_ = np.nanmedian(X, axis=0)
        return self

    def transform(self, X) -> np.ndarray:
        """A copy of ``X`` (shape ``(N, C)``) with each NaN replaced by its feature's fitted median."""
        if self.medians_ is None:
            raise RuntimeError("this MedianImputer has not been fitted yet: call fit(X_train) first")
        X = np.array(X, dtype=np.float64)
        check_shape(X, (None, len(self.medians_)), "X")
        rows, cols = np.nonzero(np.isnan(X))
        X[rows, cols] = self.medians_[cols]
        return X

    def fit_transform(self, X) -> np.ndarray:
        """:meth:`fit` on ``X``, then :meth:`transform` it. Use on the training inputs only."""
        return self.fit(X).transform(X)


# ----- augmentation -------------------------------------------------------------------------------------------


def augment_digits(images, seed: int = 0, shift: int = 1, noise: float = 0.0) -> np.ndarray:
    """New training images made from old ones: each moved by a random few pixels, optionally with noise.

    A digit moved by one pixel is still the same digit, so these are extra labelled examples for free; a model
    trained on them learns that the position of a stroke matters less than its shape. Use the labels of the
    originals, and augment the training split only (an augmented copy of a test image is not unseen data).

    Args:
        images: shape ``(N, H, W)``, e.g. scikit-learn's digits as ``X.reshape(-1, 8, 8)`` (grey levels 0-16).
        seed: seed of the random shifts and noise.
        shift: the largest move, in pixels; each image moves by a whole number of pixels in ``[-shift, shift]``
            along each axis, independently. Pixels moved in at the border are 0 (background), nothing wraps.
        noise: standard deviation of Gaussian noise added to every pixel, in grey levels; the result is clipped
            to the range of the input's grey levels (and 0).

    Returns:
        float64 array of shape ``(N, H, W)``; ``augment_digits(images, shift=0)`` returns a copy of ``images``.
    """
    images = np.asarray(images, dtype=np.float64)
    check_shape(images, (None, None, None), "images")
    if shift < 0 or noise < 0:
        raise ValueError(f"shift and noise must not be negative, got shift={shift}, noise={noise}")
    n, height, width = images.shape
    if shift >= min(height, width):
        raise ValueError(f"shift={shift} would move a {height} x {width} image out of its frame")
    rng = np.random.default_rng(seed)
    moves = rng.integers(-shift, shift + 1, size=(n, 2))
    out = np.zeros_like(images)
    for i, (dy, dx) in enumerate(moves):
        # Copy the part of the image that stays inside the frame to its new place.
        src_rows = slice(max(0, -dy), height - max(0, dy))
        dst_rows = slice(max(0, dy), height - max(0, -dy))
        src_cols = slice(max(0, -dx), width - max(0, dx))
        dst_cols = slice(max(0, dx), width - max(0, -dx))
        out[i, dst_rows, dst_cols] = images[i, src_rows, src_cols]
    if noise > 0 and images.size:
        low = min(float(images.min()), 0.0)  # the background moved in at the border is 0
        out = np.clip(out + rng.normal(0.0, noise, size=out.shape), low, images.max())
    return out
