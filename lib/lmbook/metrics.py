"""Classification metrics written out from their definitions: confusion matrix, precision, recall, F1, ROC.

Introduced in chapter 4, Training well: data, overfitting, evaluation. Accuracy alone hides what kind of
mistakes a classifier makes; every metric here is a different way of reading the same table of counts, the
**confusion matrix**. Each function gives the same number as its scikit-learn namesake (the tests check this),
so after the chapter the reader can use scikit-learn knowing what it computes.

Conventions (the same as scikit-learn's):

- Labels are integers. For the binary metrics the labels are 0 and 1 and ``positive`` names the class whose
  detection we score (by default 1).
- ``confusion[i, j]`` counts the examples whose **true** class is ``i`` and whose **predicted** class is ``j``:
  rows are the truth, columns the prediction. For two classes that puts ``[[TN, FP], [FN, TP]]`` in the matrix.
- A ratio whose denominator is zero (precision when nothing is predicted positive, recall when there is no
  positive example) is 0.0, as scikit-learn's ``zero_division=0``; no warning is raised.
- A score threshold ``t`` predicts the positive class when ``score >= t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmbook.testing import check_shape


def _labels(y_true, y_pred, name_pred: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as 1-D int64 arrays of the same length; reject floats that are not whole numbers."""
    arrays = []
    for a, name in ((y_true, "y_true"), (y_pred, name_pred)):
        a = np.asarray(a)
        check_shape(a, (None,), name)
        if a.dtype.kind == "f":
            if not np.all(a == np.round(a)):
                raise ValueError(f"{name} must hold integer class labels, got non-integer values such as {a[0]}")
        elif a.dtype.kind not in "iub":
            raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype}")
        arrays.append(a.astype(np.int64))
    y_true, y_pred = arrays
    check_shape(y_pred, (len(y_true),), name_pred)
    if (y_true < 0).any() or (y_pred < 0).any():
        raise ValueError("class labels must be 0, 1, 2, ...; got a negative label")
    return y_true, y_pred


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return float(numerator / denominator) if denominator > 0 else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Count every (true class, predicted class) pair.

    Args:
        y_true: true labels ``0 .. K-1``, shape ``(N,)``.
        y_pred: predicted labels, shape ``(N,)``.
        num_classes: ``K``; by default one more than the largest label seen in either array.

    Returns:
        ``(K, K)`` int64 array; ``confusion[i, j]`` = number of examples of true class ``i`` predicted as ``j``.
        Row sums are the class sizes, column sums the number of predictions of each class, and the diagonal
        the correct predictions.
    """
    y_true, y_pred = _labels(y_true, y_pred)
    largest = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(f"label {largest} does not fit num_classes={num_classes} (labels run from 0 to K-1)")
    # Each pair (i, j) becomes the single number i*K + j; counting those numbers counts the pairs.
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accuracy_score(y_true, y_pred) -> float:
    """Share of the examples whose predicted label equals the true label, in [0, 1].

    Named ``accuracy_score`` (like scikit-learn's) because :func:`lmbook.mlp.accuracy` already takes a model.
    Shapes: ``(N,)`` each, with ``N >= 1``.
    """
    y_true, y_pred = _labels(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of zero examples is undefined")
    return float(np.mean(y_true == y_pred))


def _binary_counts(y_true, y_pred, positive: int) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` with ``positive`` as the positive class and every other label as negative."""
    y_true, y_pred = _labels(y_true, y_pred)
    actual = y_true == positive
    predicted = y_pred == positive
    tp = int(np.sum(actual & predicted))
    fp = int(np.sum(~actual & predicted))
    tn = int(np.sum(~actual & ~predicted))
    fn = int(np.sum(actual & ~predicted))
    return tp, fp, tn, fn


def precision(y_true, y_pred, positive: int = 1) -> float:
    """Of the examples predicted positive, the share that really are: ``TP / (TP + FP)``.

    Answers "when the model raises the alarm, how often is it right?". 0.0 when nothing is predicted positive.
    Shapes: ``(N,)`` each.
    """
    tp, fp, _, _ = _binary_counts(y_true, y_pred, positive)
    return _ratio(tp, tp + fp)


def recall(y_true, y_pred, positive: int = 1) -> float:
    """Of the truly positive examples, the share the model finds: ``TP / (TP + FN)``.

    Also called sensitivity or true-positive rate. 0.0 when there is no positive example. Shapes: ``(N,)`` each.
    """
    tp, _, _, fn = _binary_counts(y_true, y_pred, positive)
    return _ratio(tp, tp + fn)


def f1(y_true, y_pred, positive: int = 1) -> float:
    """Harmonic mean of precision and recall, ``2 P R / (P + R)`` = ``2 TP / (2 TP + FP + FN)``.

    The harmonic mean is small as soon as either of the two is small, so a model cannot score well by
    predicting everything positive (recall 1, poor precision). 0.0 when ``TP = 0``. Shapes: ``(N,)`` each.
    """
    tp, fp, _, fn = _binary_counts(y_true, y_pred, positive)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def precision_recall_f1(y_true, y_pred, average: str = "binary", positive: int = 1) -> tuple[float, float, float]:
    """Precision, recall and F1 together, for two classes or averaged over several.

    Args:
        y_true, y_pred: labels, shape ``(N,)`` each.
        average: ``"binary"``: the scores of class ``positive`` only. ``"macro"``: compute the three scores for
            every class (that class against the rest) and take the plain mean, so each class counts the same
            however rare it is; the macro F1 is the mean of the per-class F1s, not the F1 of the mean precision
            and recall. ``"micro"``: add up TP, FP and FN over the classes first; with one label per example
            all three then equal the accuracy. The classes are the labels that occur in either array.
        positive: the positive class for ``average="binary"``.

    Returns:
        ``(precision, recall, f1)`` as floats.
    """
    if average == "binary":
        return precision(y_true, y_pred, positive), recall(y_true, y_pred, positive), f1(y_true, y_pred, positive)
    if average not in ("macro", "micro"):
        raise ValueError(f"average must be 'binary', 'macro' or 'micro', got {average!r}")
    y_true, y_pred = _labels(y_true, y_pred)
    classes = np.union1d(y_true, y_pred)
    cm = confusion_matrix(y_true, y_pred)[np.ix_(classes, classes)]
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp  # predicted as the class (its column) but true class elsewhere
    fn = cm.sum(axis=1) - tp  # truly the class (its row) but predicted elsewhere
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    per_class = np.array(
        [[_ratio(t, t + p), _ratio(t, t + n), _ratio(2 * t, 2 * t + p + n)] for t, p, n in zip(tp, fp, fn, strict=True)]
    )
    p, r, f = per_class.mean(axis=0)
    return float(p), float(r), float(f)


def _binary_scores(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    check_shape(y_true, (None,), "y_true")
    check_shape(scores, (len(y_true),), "scores")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"y_true must hold the labels 0 and 1, got {np.unique(y_true)}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers")
    return y_true.astype(np.int64), scores


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The receiver operating characteristic: false- and true-positive rate at every useful threshold.

    Sort the examples by score, highest first, and lower the threshold past one distinct score at a time:
    each step turns every example with that score into a positive prediction, adding its positives to TP
    and its negatives to FP. Examples with equal scores always change side together, so a tie makes one
    diagonal step, not a staircase.

    Args:
        y_true: labels 0 and 1, shape ``(N,)``; both classes must occur.
        scores: any score that is larger for "more likely positive" (a probability, a logit), shape ``(N,)``.

    Returns:
        fpr, tpr: false-positive rate ``FP / (FP + TN)`` and true-positive rate (recall) ``TP / (TP + FN)``,
            shape ``(M + 1,)`` for ``M`` distinct scores; both start at 0 and end at 1.
        thresholds: shape ``(M + 1,)``, decreasing: ``inf`` (nothing predicted positive), then each distinct
            score; point ``i`` is what predicting "positive when ``score >= thresholds[i]``" gives.

    The same arrays as ``sklearn.metrics.roc_curve(y_true, scores, drop_intermediate=False)``.
    """
    y_true, scores = _binary_scores(y_true, scores)
    num_pos = int(y_true.sum())
    num_neg = len(y_true) - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError("the ROC curve needs both classes in y_true: with only one, one of its rates is 0 / 0")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], y_true[order]
    # The last example of each run of equal scores: after it, all examples with that score are positive.
    last_of_run = np.flatnonzero(np.diff(sorted_scores) != 0)
    ends = np.append(last_of_run, len(scores) - 1)
    tp = np.cumsum(sorted_labels)[ends]
    fp = (ends + 1) - tp  # examples predicted positive so far, minus the true positives among them
    tpr = np.concatenate([[0.0], tp / num_pos])
    fpr = np.concatenate([[0.0], fp / num_neg])
    thresholds = np.concatenate([[np.inf], sorted_scores[ends]])
    return fpr, tpr, thresholds


def auc(x, y) -> float:
    """Area under the piecewise-linear curve through the points ``(x[i], y[i])`` (the trapezoid rule).

    Args:
        x: shape ``(M,)``, increasing or decreasing (not necessarily strictly). y: shape ``(M,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_shape(x, (None,), "x")
    check_shape(y, (len(x),), "y")
    if len(x) < 2:
        raise ValueError(f"need at least 2 points to compute an area, got {len(x)}")
    dx = np.diff(x)
    if (dx < 0).any() and (dx > 0).any():
        raise ValueError("x must be monotonic (all increasing or all decreasing)")
    area = float(np.sum(dx * (y[1:] + y[:-1]) / 2.0))
    return abs(area)


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve, in [0, 1]; equals ``sklearn.metrics.roc_auc_score``.

    It is the probability that a randomly chosen positive example gets a higher score than a randomly chosen
    negative one (a tie counts one half): 0.5 for random scores, 1.0 for a perfect ranking. It judges the
    ranking, so it does not depend on any threshold. Shapes: ``(N,)`` each; both classes must occur.
    """
    fpr, tpr, _ = roc_curve(y_true, scores)
    return auc(fpr, tpr)


@dataclass(frozen=True, eq=False)
class ThresholdMetrics:
    """Everything about a binary classifier at one threshold, from :func:`threshold_metrics`.

    Attributes:
        threshold: the threshold; the prediction is positive when ``score >= threshold``.
        confusion: ``(2, 2)`` int64, ``[[tn, fp], [fn, tp]]`` (rows true class, columns predicted class).
        tp, fp, tn, fn: the four counts.
        precision, recall, f1, accuracy: as the functions of the same names.
    """

    threshold: float
    confusion: np.ndarray
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float

    @property
    def fpr(self) -> float:
        """False-positive rate ``FP / (FP + TN)``, the x coordinate of this operating point on the ROC curve."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def tpr(self) -> float:
        """True-positive rate, the same as recall: the y coordinate on the ROC curve."""
        return self.recall


def threshold_metrics(y_true, scores, threshold: float) -> ThresholdMetrics:
    """Turn scores into predictions with ``score >= threshold`` and evaluate them.

    Args:
        y_true: labels 0 and 1, shape ``(N,)``.
        scores: scores, larger meaning "more likely positive", shape ``(N,)``.
        threshold: a number; raising it predicts fewer positives (precision tends up, recall down).
    """
    y_true, scores = _binary_scores(y_true, scores)
    y_pred = (scores >= threshold).astype(np.int64)
    cm = confusion_matrix(y_true, y_pred, num_classes=2)
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    return ThresholdMetrics(
        threshold=float(threshold),
        confusion=cm,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp + tn, len(y_true)),
    )


@dataclass(frozen=True)
class PairedComparison:
    """Two classifiers scored on the same examples (:func:`compare_classifiers`).

    Attributes:
        accuracy_a, accuracy_b: their accuracies. only_a: examples that only ``a`` gets right; only_b: those
        that only ``b`` gets right. p_value: two-sided exact McNemar test of "both are equally accurate".
        interval_a, interval_b: approximate 95% intervals of each accuracy (:func:`accuracy_interval`).
    """

    accuracy_a: float
    accuracy_b: float
    only_a: int
    only_b: int
    p_value: float
    interval_a: tuple[float, float]
    interval_b: tuple[float, float]


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n - k) for X ~ Binomial(n, 1/2) with k <= n / 2: the exact two-sided p-value."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """An approximate 95% interval of an accuracy measured on ``n`` examples (the normal approximation):
    ``accuracy +- 1.96 sqrt(accuracy (1 - accuracy) / n)``, cut to [0, 1]."""
    if n < 1 or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"expected an accuracy in [0, 1] and n >= 1, got accuracy={accuracy}, n={n}")
    half = 1.96 * math.sqrt(accuracy * (1 - accuracy) / n)
    return max(0.0, accuracy - half), min(1.0, accuracy + half)


def compare_classifiers(y_true, pred_a, pred_b) -> PairedComparison:
    """Is classifier ``a`` really more accurate than ``b``, or is the difference luck of the test set?

    On ``N`` test examples an accuracy is uncertain by about ``sqrt(acc (1 - acc) / N)`` (0.04 for 0.8 on 100
    examples). When two classifiers see the *same* examples, only the examples on which they disagree say
    which is better: McNemar's test asks whether ``only_a`` and ``only_b`` could be two halves of a fair coin's
    ``only_a + only_b`` tosses.

    Args:
        y_true: true labels, shape ``(N,)``. pred_a, pred_b: the two classifiers' predictions, shape ``(N,)``.
    """
    y_true, pred_a = _labels(y_true, pred_a, "pred_a")
    _, pred_b = _labels(y_true, pred_b, "pred_b")
    if len(y_true) == 0:
        raise ValueError("expected at least one example")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    acc_a, acc_b = float(right_a.mean()), float(right_b.mean())
    return PairedComparison(
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        only_a=only_a,
        only_b=only_b,
        p_value=_binomial_two_sided(min(only_a, only_b), only_a + only_b),
        interval_a=accuracy_interval(acc_a, len(y_true)),
        interval_b=accuracy_interval(acc_b, len(y_true)),
    )
