"""Getting data ready for training: loading, splitting, standardising, cross-validation folds, augmentation.

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
    test_idx, val_idx, train_idx = (part.astype(np.int64) for part in (test_idx, val_idx, train_idx))
    return Split(
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
