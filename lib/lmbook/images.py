"""Image data sets as ``(N, C, H, W)`` arrays for the convolutional networks: the offline digits and MNIST online.

Introduced in chapter 5, Convolutional networks. Two sources, one return type (:class:`ImageSet`):

- :func:`digits_images`: scikit-learn's 1,797 handwritten digits (8 x 8, shipped with scikit-learn, no network),
  cut by exactly the split chapter 4's digit classifiers used, ``train_val_test_split(X / 16, y, val=0.2,
  test=0.2, seed=0)``, so a convolutional net and chapter 4's MLP are scored on the same test digits.
- :func:`load_mnist`: MNIST or Fashion-MNIST (70,000 images of 28 x 28) from OpenML through scikit-learn's
  ``fetch_openml``, when OpenML answers within a few seconds (:func:`lmbook.hub.reachable`). Otherwise it says why
  and returns the offline digits instead, enlarged to 28 x 28 so that a network built for MNIST runs on them.

Pixel values are float32 in ``[0, 1]``, one grey channel: ``X`` has shape ``(N, 1, H, W)`` and labels ``y`` are
int64 of shape ``(N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmbook.hub import reachable
from lmbook.preprocessing import Split, load_tabular, train_val_test_split
from lmbook.testing import check_choice

OPENML_HOST = "www.openml.org"
# OpenML's names for the two 28 x 28 data sets; both store the 60,000 training images first, then the 10,000 test.
OPENML_NAMES = {"mnist": "mnist_784", "fashion": "Fashion-MNIST"}
FASHION_CLASSES = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


@dataclass(frozen=True)
class ImageSet:
    """Images split into training, validation and test parts, with where they came from.

    Attributes:
        name: ``"digits"``, ``"mnist"`` or ``"fashion"``: the data actually returned.
        split: a :class:`lmbook.preprocessing.Split` whose ``X_*`` are float32 ``(n_part, 1, H, W)`` in ``[0, 1]``
            and ``y_*`` int64 ``(n_part,)``.
        classes: the class names, ``classes[k]`` for label ``k``.
        message: one sentence saying what was loaded, and why the offline digits when they replace MNIST.
    """

    name: str
    split: Split
    classes: tuple[str, ...]
    message: str

    @property
    def image_size(self) -> int:
        """Height (= width) of the images."""
        return int(self.split.X_train.shape[-1])


def resize_images(X: np.ndarray, size: int) -> np.ndarray:
    """Images ``(N, C, H, W)`` resized to ``(N, C, size, size)`` by bilinear interpolation (float32)."""
    import torch
    import torch.nn.functional as F

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {X.shape}")
    if X.shape[-2:] == (size, size):
        return X.copy()
    out = F.interpolate(torch.from_numpy(X), size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp(0.0, 1.0).numpy()


def digits_images(size: int = 8, val: float = 0.2, test: float = 0.2, seed: int = 0) -> ImageSet:
    """scikit-learn's 8 x 8 digits as images ``(N, 1, size, size)`` in ``[0, 1]``, split as in chapter 4.

    Args:
        size: 8 keeps the original pixels; another size resizes every image (bilinear), e.g. 28 for a network
            built for MNIST.
        val, test, seed: passed to :func:`lmbook.preprocessing.train_val_test_split`; the defaults give chapter 4's
            split: 1,079 training, 359 validation and 359 test digits.

    Returns:
        An :class:`ImageSet` named ``"digits"``.
    """
    X, y, _ = load_tabular("digits")
    rows = train_val_test_split(X, y, val=val, test=test, seed=seed)  # which digits go where: chapter 4's cut
    images = resize_images((X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32), size)
    split = Split.from_indices(images, y.astype(np.int64), rows.train_idx, rows.val_idx, rows.test_idx)
    n_train, n_val, n_test = split.sizes
    message = f"scikit-learn's digits: {n_train} training, {n_val} validation, {n_test} test images of {size} x {size}"
    return ImageSet("digits", split, tuple(str(k) for k in range(10)), message)


def _split_openml(
    X: np.ndarray, y: np.ndarray, val_fraction: float, max_train: int | None, n_train: int = 60_000
) -> Split:
    """The standard MNIST split: the first ``n_train`` (60,000) images train, the rest (10,000) test; validation
    is the last ``val_fraction`` of the training images (as Keras's ``validation_split`` takes it)."""
    X = (np.asarray(X, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(y).astype(np.int64)
    n_val = int(round(n_train * val_fraction))
    train_idx = np.arange(n_train - n_val)
    if max_train is not None:
        train_idx = train_idx[:max_train]
    val_idx, test_idx = np.arange(n_train - n_val, n_train), np.arange(n_train, len(y))
    return Split.from_indices(X, y, train_idx, val_idx, test_idx)


def load_mnist(
    name: str = "mnist",
    timeout: float = 5.0,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    fallback_size: int = 28,
) -> ImageSet:
    """MNIST or Fashion-MNIST from OpenML when it can be reached, else the offline digits; never hangs.

    Asks first whether ``www.openml.org`` accepts a connection within ``timeout`` seconds; if not, or if the
    download fails, it returns :func:`digits_images` enlarged to ``fallback_size`` and its ``message`` says why.
    A download is about 50 MB and is cached by scikit-learn (in ``~/scikit_learn_data``) for the next call.

    Args:
        name: ``"mnist"`` (handwritten digits) or ``"fashion"`` (Fashion-MNIST: ten kinds of clothing).
        timeout: seconds to wait for OpenML to answer before falling back.
        val_fraction: share of the 60,000 training images kept for validation (the last ones).
        max_train: use only the first ``max_train`` training images (None: all), for a quicker run.
        fallback_size: height and width of the offline digits when they stand in for MNIST.

    Returns:
        An :class:`ImageSet`; its ``name`` says which data it holds.
    """
    check_choice(name, OPENML_NAMES, "data set")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    why = None
    if not reachable(OPENML_HOST, timeout):
        why = f"{OPENML_HOST} did not answer within {timeout:g} s (no network?)"
    else:
        try:
            from sklearn.datasets import fetch_openml

            X, y = fetch_openml(OPENML_NAMES[name], version=1, return_X_y=True, as_frame=False, parser="liac-arff")
        except Exception as e:  # a failed download of any kind: say so and use the offline data
            why = f"the download from OpenML failed ({type(e).__name__}: {e})"
    if why is not None:
        offline = digits_images(size=fallback_size)
        message = f"{name} is not available: {why}. Using the offline data instead: {offline.message}."
        return ImageSet(offline.name, offline.split, offline.classes, message)
    split = _split_openml(X, y, val_fraction, max_train)
    classes = FASHION_CLASSES if name == "fashion" else tuple(str(k) for k in range(10))
    n_train, n_val, n_test = split.sizes
    message = f"{name} from OpenML: {n_train} training, {n_val} validation, {n_test} test images of 28 x 28"
    return ImageSet(name, split, classes, message)
