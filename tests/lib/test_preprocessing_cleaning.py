"""Tests of lmbook.preprocessing's min-max scaling and cleaning helpers, against scikit-learn, pandas and the
defects that make_dirty records."""

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler as SkMinMaxScaler

from lmbook.preprocessing import (
    MedianImputer,
    MinMaxScaler,
    duplicate_rows,
    load_tabular,
    make_dirty,
    tukey_fences,
)
from lmbook.testing import ShapeError
from tests.lib.test_preprocessing import features  # columns on very different scales, shared with those tests

# ----- MinMaxScaler --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_min_max_scaler_matches_sklearn(feature_range):
    X_train, X_new = features(0), features(1, n=20)
    X_train[:, 2] = 7.0  # a constant feature
    ours, ref = MinMaxScaler(feature_range).fit(X_train), SkMinMaxScaler(feature_range).fit(X_train)
    np.testing.assert_allclose(ours.data_min_, ref.data_min_)
    np.testing.assert_allclose(ours.data_range_[[0, 1, 3]], ref.data_range_[[0, 1, 3]])
    np.testing.assert_allclose(ours.transform(X_new), ref.transform(X_new), atol=1e-12)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X_new)), X_new, rtol=1e-12, atol=1e-9)
    scaled = MinMaxScaler(feature_range).fit_transform(X_train)
    lo, hi = feature_range
    assert np.allclose(scaled[:, [0, 1, 3]].min(axis=0), lo) and np.allclose(scaled[:, [0, 1, 3]].max(axis=0), hi)
    assert np.all(scaled[:, 2] == lo)  # the constant feature maps to lo, without a division by 0


def test_one_outlier_squeezes_min_max_scaling():
    X = features(2, n=200)
    X[0, 0] = X[:, 0].max() * 1000
    scaled = MinMaxScaler().fit_transform(X)
    assert np.ptp(scaled[1:, 0]) < 0.01  # every other value of that feature is squeezed near 0


def test_min_max_scaler_checks_its_input():
    with pytest.raises(RuntimeError, match="not been fitted"):
        MinMaxScaler().transform(features())
    with pytest.raises(ValueError, match="lo < hi"):
        MinMaxScaler((1.0, 0.0))
    with pytest.raises(ValueError, match="missing"):
        MinMaxScaler().fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ShapeError):
        MinMaxScaler().fit(features()).transform(features(c=3))


# ----- cleaning --------------------------------------------------------------------------------------------------


def dirty(seed: int = 0) -> tuple[np.ndarray, np.ndarray, object]:
    X, y, _ = load_tabular("breast_cancer")
    return X, y, make_dirty(X, y, seed=seed)


def test_make_dirty_adds_what_it_records_and_is_reproducible():
    X, y, table = dirty(0)
    n, c = X.shape
    assert table.X.shape == (n + 15, c) and table.is_duplicate.sum() == 15
    assert np.array_equal(np.isnan(table.X), table.missing)
    assert 0.02 < table.missing.mean() < 0.04
    assert table.outliers[~table.is_duplicate].sum() == 6 and not np.any(table.outliers & table.missing)
    copies = table.source_row[table.is_duplicate]
    originals = np.flatnonzero(~table.is_duplicate)
    for row, source in zip(np.flatnonzero(table.is_duplicate), copies, strict=True):  # a copy carries its defects
        twin = originals[table.source_row[originals] == source][0]
        assert np.array_equal(table.outliers[row], table.outliers[twin])
    clean_rows = X[table.source_row]
    ok = ~table.missing & ~table.outliers
    assert np.array_equal(table.X[ok], clean_rows[ok])  # everything else untouched
    np.testing.assert_allclose(table.X[table.outliers], 1000 * clean_rows[table.outliers])
    assert np.array_equal(table.y, y[table.source_row])
    again = make_dirty(X, y, seed=0)
    assert np.array_equal(again.X, table.X, equal_nan=True)
    assert not np.array_equal(make_dirty(X, y, seed=1).X, table.X, equal_nan=True)


def test_duplicate_rows_finds_the_copies_and_matches_pandas():
    pd = pytest.importorskip("pandas")  # installed with otter-grader
    _, _, table = dirty(0)
    found = duplicate_rows(table.X)
    assert found.sum() == 15
    assert np.array_equal(found, pd.DataFrame(table.X).duplicated().to_numpy())
    # Each flagged row has the same source as an earlier row.
    for i in np.flatnonzero(found):
        assert table.source_row[i] in table.source_row[:i]


def test_duplicate_rows_small_cases():
    X = np.array([[1.0, np.nan], [2.0, 3.0], [1.0, np.nan], [0.0, 1.0], [-0.0, 1.0], [2.0, 3.0 + 1e-15]])
    assert duplicate_rows(X).tolist() == [False, False, True, False, True, False]
    assert not duplicate_rows(features()).any()


def test_tukey_fences_closed_form_and_flags_the_injected_outliers():
    X = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [np.nan]])
    low, high = tukey_fences(X, k=1.5)  # Q1 = 2, Q3 = 4, IQR = 2
    np.testing.assert_allclose(low, [-1.0])
    np.testing.assert_allclose(high, [7.0])
    _, _, table = dirty(3)
    low, high = tukey_fences(table.X)
    flagged = (table.X < low) | (table.X > high)
    assert np.all(flagged[table.outliers])  # every unit slip is caught
    with pytest.raises(ValueError, match="positive"):
        tukey_fences(X, k=0.0)


def test_median_imputer_matches_sklearn_and_fills_only_the_gaps():
    _, _, table = dirty(0)
    X_train, X_new = table.X[:400], table.X[400:]
    ours, ref = MedianImputer().fit(X_train), SimpleImputer(strategy="median").fit(X_train)
    np.testing.assert_allclose(ours.medians_, ref.statistics_)
    filled = ours.transform(X_new)
    np.testing.assert_allclose(filled, ref.transform(X_new))
    assert not np.isnan(filled).any() and np.isnan(X_new).any()  # a copy: the input keeps its gaps
    known = ~np.isnan(X_new)
    assert np.array_equal(filled[known], X_new[known])


def test_median_imputer_checks_its_input():
    with pytest.raises(RuntimeError, match="not been fitted"):
        MedianImputer().transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least one value"):
        MedianImputer().fit(np.array([[1.0, np.nan], [2.0, np.nan]]))
