"""Reference tests of lmbook.metrics against scikit-learn: random cases, edge cases, and known mistakes rejected."""

import numpy as np
import pytest
from sklearn import metrics as skm

from lmbook.metrics import (
    ThresholdMetrics,
    accuracy_score,
    auc,
    confusion_matrix,
    f1,
    precision,
    precision_recall_f1,
    recall,
    roc_auc,
    roc_curve,
    threshold_metrics,
)
from lmbook.testing import ShapeError

SEEDS = range(5)


def binary_case(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    return y_true, y_pred


def scored_case(seed: int, n: int = 80, decimals: int | None = None):
    """Labels and scores that are informative but imperfect; rounding the scores creates many ties."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(1.5 * (2 * y_true - 1) + rng.normal(0, 1.5, n))))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return y_true, scores


# ----- confusion matrix and accuracy --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred = binary_case(seed)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred))


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_confusion_matrix_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    cm = confusion_matrix(y_true, y_pred)
    assert cm.shape == (5, 5) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred))
    assert cm.sum() == 200
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y_true, minlength=5))  # rows are the true classes


def test_confusion_matrix_rows_are_true_classes_not_predictions():
    # Two class-0 examples, both predicted 1: they must be counted in row 0 (truth), column 1 (prediction).
    cm = confusion_matrix([0, 0, 1], [1, 1, 1])
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])
    assert not np.array_equal(cm, cm.T)  # a transposed matrix would be caught
    y_true, y_pred = binary_case(0)
    assert not np.array_equal(confusion_matrix(y_true, y_pred).T, skm.confusion_matrix(y_true, y_pred))


def test_confusion_matrix_num_classes_adds_empty_rows_and_checks_labels():
    cm = confusion_matrix([0, 1, 1], [0, 1, 0], num_classes=4)
    np.testing.assert_array_equal(cm, skm.confusion_matrix([0, 1, 1], [0, 1, 0], labels=range(4)))
    assert cm.shape == (4, 4)
    with pytest.raises(ValueError, match="num_classes=2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)


def test_confusion_matrix_of_one_class():
    cm = confusion_matrix([1, 1, 1], [1, 1, 1])
    np.testing.assert_array_equal(cm, [[0, 0], [0, 3]])
    # Only label 0 seen: K defaults to 1; num_classes=2 gives the usual 2 x 2 table.
    np.testing.assert_array_equal(confusion_matrix([0, 0], [0, 0]), [[2]])
    np.testing.assert_array_equal(
        confusion_matrix([0, 0], [0, 0], num_classes=2), skm.confusion_matrix([0, 0], [0, 0], labels=[0, 1])
    )


def test_labels_are_checked():
    with pytest.raises(ShapeError, match="y_pred"):
        confusion_matrix([0, 1, 1], [0, 1])
    with pytest.raises(ShapeError, match="y_true"):
        accuracy_score(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="negative"):
        confusion_matrix([0, -1], [0, 1])
    # Whole-number floats, such as the output of (p > 0.5).astype(float), are accepted.
    np.testing.assert_array_equal(confusion_matrix([0.0, 1.0], np.array([1.0, 1.0])), [[0, 1], [0, 1]])


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert accuracy_score(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert accuracy_score(y_true, y_true) == 1.0
    with pytest.raises(ValueError, match="zero examples"):
        accuracy_score([], [])


# ----- precision, recall, F1 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("positive", [1, 0])
def test_precision_recall_f1_match_sklearn(seed, positive):
    y_true, y_pred = binary_case(seed)
    assert precision(y_true, y_pred, positive) == pytest.approx(skm.precision_score(y_true, y_pred, pos_label=positive))
    assert recall(y_true, y_pred, positive) == pytest.approx(skm.recall_score(y_true, y_pred, pos_label=positive))
    assert f1(y_true, y_pred, positive) == pytest.approx(skm.f1_score(y_true, y_pred, pos_label=positive))


def test_precision_and_recall_are_not_swapped():
    # 1 true positive, 3 false positives, 0 false negatives: precision 1/4, recall 1.
    y_true = np.array([1, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 1, 1, 0])
    assert precision(y_true, y_pred) == pytest.approx(0.25)
    assert recall(y_true, y_pred) == pytest.approx(1.0)
    assert f1(y_true, y_pred) == pytest.approx(2 * 0.25 * 1.0 / 1.25)
    # On random data precision and recall differ, and each matches sklearn's function of the same name only.
    y_true, y_pred = binary_case(3)
    assert precision(y_true, y_pred) != pytest.approx(skm.recall_score(y_true, y_pred))
    assert recall(y_true, y_pred) != pytest.approx(skm.precision_score(y_true, y_pred))


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([1, 0, 1, 0], [0, 0, 0, 0]),  # no positive predictions: precision 0/0
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # no positive examples: recall 0/0
        ([0, 0, 0], [0, 0, 0]),  # neither: everything 0/0
        ([1, 1, 1], [1, 1, 1]),  # all one class, all right
    ],
)
def test_zero_division_gives_zero_like_sklearn(y_true, y_pred):
    p, r, f = precision_recall_f1(y_true, y_pred)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)[:3]
    assert (p, r, f) == pytest.approx(ref)
    assert all(isinstance(v, float) for v in (p, r, f))


def test_no_positive_predictions_score_zero():
    assert precision([1, 0, 1], [0, 0, 0]) == 0.0
    assert recall([1, 0, 1], [0, 0, 0]) == 0.0
    assert f1([1, 0, 1], [0, 0, 0]) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_multiclass_averages_match_sklearn(seed, average):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 4, 90), rng.integers(0, 4, 90)
    y_pred[:5] = 4  # a class that is predicted but never true
    got = precision_recall_f1(y_true, y_pred, average=average)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)[:3]
    assert got == pytest.approx(ref)


def test_macro_f1_averages_the_per_class_f1s():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    p, r, f = precision_recall_f1(y_true, y_pred, average="macro")
    per_class_f1 = [f1(y_true, y_pred, positive=c) for c in range(3)]
    assert f == pytest.approx(np.mean(per_class_f1))
    assert f != pytest.approx(2 * p * r / (p + r))  # the F1 of the averages is a different number


def test_micro_average_equals_accuracy_for_single_label_data():
    rng = np.random.default_rng(7)
    y_true, y_pred = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    assert precision_recall_f1(y_true, y_pred, average="micro") == pytest.approx((accuracy_score(y_true, y_pred),) * 3)


def test_unknown_average_is_rejected():
    with pytest.raises(ValueError, match="'weighted'"):
        precision_recall_f1([0, 1], [0, 1], average="weighted")


# ----- ROC and AUC --------------------------------------------------------------------------------------------


def assert_roc_matches_sklearn(y_true, scores):
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(y_true, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_array_equal(thresholds, ref_thresholds)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_matches_sklearn(seed):
    y_true, scores = scored_case(seed)
    assert_roc_matches_sklearn(y_true, scores)
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_with_tied_scores_matches_sklearn(seed):
    y_true, scores = scored_case(seed, decimals=1)
    assert len(np.unique(scores)) < len(scores) // 3  # plenty of ties
    assert_roc_matches_sklearn(y_true, scores)
    _, _, thresholds = roc_curve(y_true, scores)
    assert len(thresholds) == len(np.unique(scores)) + 1  # one point per distinct score, not per example


def test_tied_scores_make_one_diagonal_step():
    # The two middle examples (one positive, one negative) share a score: both change side at once.
    fpr, tpr, thresholds = roc_curve([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.5, 0.1])
    assert roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)  # the tie counts one half


def test_roc_curve_of_one_class_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0, 0], [0.2, 0.5])
    with pytest.raises(ValueError, match="0 and 1"):
        roc_curve([0, 2, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ShapeError, match="scores"):
        roc_curve([0, 1, 1], [0.2, 0.5])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_auc_matches_sklearn(seed, decimals):
    y_true, scores = scored_case(seed, decimals=decimals)
    assert roc_auc(y_true, scores) == pytest.approx(skm.roc_auc_score(y_true, scores))


def test_roc_auc_extremes_and_invariance():
    y_true = np.array([0, 0, 1, 1, 0, 1])
    perfect = y_true + 0.1 * np.arange(6)
    assert roc_auc(y_true, perfect) == 1.0
    assert roc_auc(y_true, -perfect) == 0.0
    assert roc_auc(y_true, np.zeros(6)) == 0.5  # a constant score ranks nothing
    # The AUC only depends on the ranking: a monotonic change of the scores (probability -> logit) keeps it.
    _, scores = scored_case(1, n=6)
    assert roc_auc(y_true, scores) == pytest.approx(roc_auc(y_true, np.log(scores / (1 - scores))))


def test_auc_is_the_trapezoid_rule_like_sklearn():
    x = np.array([0.0, 0.1, 0.4, 0.4, 1.0])
    y = np.array([0.0, 0.5, 0.7, 0.9, 1.0])
    assert auc(x, y) == pytest.approx(skm.auc(x, y))
    assert auc(x[::-1], y[::-1]) == pytest.approx(skm.auc(x, y))  # a decreasing x gives the same area
    assert auc([0, 1], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="monotonic"):
        auc([0.0, 1.0, 0.5], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="2 points"):
        auc([0.0], [1.0])


# ----- one threshold ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_threshold_metrics_agree_with_the_other_metrics_and_sklearn(threshold):
    y_true, scores = scored_case(2)
    m = threshold_metrics(y_true, scores, threshold)
    assert isinstance(m, ThresholdMetrics) and m.threshold == threshold
    y_pred = (scores >= threshold).astype(int)
    np.testing.assert_array_equal(m.confusion, skm.confusion_matrix(y_true, y_pred, labels=[0, 1]))
    assert m.confusion.tolist() == [[m.tn, m.fp], [m.fn, m.tp]]
    assert m.tp + m.fp + m.tn + m.fn == len(y_true)
    assert m.precision == pytest.approx(skm.precision_score(y_true, y_pred, zero_division=0))
    assert m.recall == pytest.approx(skm.recall_score(y_true, y_pred))
    assert m.f1 == pytest.approx(skm.f1_score(y_true, y_pred))
    assert m.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m.tpr == m.recall and m.fpr == pytest.approx(m.fp / (m.fp + m.tn))


def test_threshold_metrics_lie_on_the_roc_curve():
    y_true, scores = scored_case(4, decimals=2)
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    for i in range(1, len(thresholds), 7):
        m = threshold_metrics(y_true, scores, thresholds[i])  # score == threshold counts as positive
        assert (m.fpr, m.tpr) == pytest.approx((fpr[i], tpr[i]))


def test_threshold_above_every_score_predicts_nothing_positive():
    y_true, scores = scored_case(0)
    m = threshold_metrics(y_true, scores, 2.0)
    assert m.tp == m.fp == 0 and m.precision == 0.0 and m.recall == 0.0 and m.f1 == 0.0
    m = threshold_metrics(y_true, scores, -1.0)
    assert m.tn == m.fn == 0 and m.recall == 1.0 and m.precision == pytest.approx(np.mean(y_true))


def test_raising_the_threshold_trades_recall_for_precision():
    y_true, scores = scored_case(3, n=400)
    low, high = threshold_metrics(y_true, scores, 0.3), threshold_metrics(y_true, scores, 0.8)
    assert high.recall < low.recall
    assert high.precision > low.precision


def test_compare_classifiers_against_scipy_binomtest():
    from scipy.stats import binomtest

    from lmbook.metrics import compare_classifiers

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    a = np.where(rng.random(100) < 0.85, y, 1 - y)
    b = np.where(rng.random(100) < 0.75, y, 1 - y)
    result = compare_classifiers(y, a, b)
    only_a = int(((a == y) & (b != y)).sum())
    only_b = int(((b == y) & (a != y)).sum())
    assert (result.only_a, result.only_b) == (only_a, only_b) and only_a + only_b > 0
    assert result.accuracy_a == np.mean(a == y) and result.accuracy_b == np.mean(b == y)
    expected = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    half = 1.96 * np.sqrt(result.accuracy_a * (1 - result.accuracy_a) / 100)
    assert result.interval_a == pytest.approx((result.accuracy_a - half, result.accuracy_a + half))
    same = compare_classifiers(y, a, a)
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="pred_b"):
        compare_classifiers(y, a, b[:-1])


def test_accuracy_interval_is_the_normal_approximation():
    from lmbook.metrics import accuracy_interval

    low, high = accuracy_interval(0.8, 100)
    assert (low, high) == pytest.approx((0.8 - 0.0784, 0.8 + 0.0784))  # 1.96 * sqrt(0.16 / 100)
    assert accuracy_interval(1.0, 50) == (1.0, 1.0) and accuracy_interval(0.99, 10)[1] == 1.0  # cut to [0, 1]
    with pytest.raises(ValueError, match="n >= 1"):
        accuracy_interval(0.5, 0)
