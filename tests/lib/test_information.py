"""Tests of lmbook.information against scipy, scikit-learn and closed forms."""

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import mutual_info_score

from lmbook.information import conditional_entropy, joint_entropy, mutual_information, shannon_entropy
from lmbook.testing import ShapeError


def random_joint(seed: int, shape=(3, 4), zeros: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    joint = rng.random(shape)
    if zeros:
        joint[rng.random(shape) < 0.3] = 0.0
    return joint / joint.sum()


def binary_entropy(eps: float) -> float:
    return -eps * np.log(eps) - (1 - eps) * np.log(1 - eps)


@pytest.mark.parametrize("seed", range(3))
def test_entropy_matches_scipy(seed):
    p = np.random.default_rng(seed).random(6)
    p[seed] = 0.0  # a zero-probability outcome contributes 0
    p /= p.sum()
    assert shannon_entropy(p) == pytest.approx(scipy.stats.entropy(p), abs=1e-14)


def test_entropy_closed_forms():
    assert shannon_entropy([1.0, 0.0, 0.0]) == 0.0
    assert shannon_entropy(np.full(8, 1 / 8)) == pytest.approx(np.log(8), abs=1e-15)
    assert shannon_entropy([0.5, 0.5]) == pytest.approx(np.log(2), abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_chain_rule_and_mutual_information_identities(seed):
    joint = random_joint(seed, zeros=seed % 2 == 1)
    p_x, p_y = joint.sum(axis=1), joint.sum(axis=0)
    h_x, h_y, h_xy = shannon_entropy(p_x), shannon_entropy(p_y), joint_entropy(joint)
    assert conditional_entropy(joint) == pytest.approx(h_xy - h_x, abs=1e-14)  # H(Y|X) = H(X,Y) - H(X)
    assert conditional_entropy(joint.T) == pytest.approx(h_xy - h_y, abs=1e-14)  # H(X|Y)
    mi = mutual_information(joint)
    assert mi == pytest.approx(h_x + h_y - h_xy, abs=1e-14)
    assert mi == pytest.approx(mutual_information(joint.T), abs=1e-14)  # symmetric
    nz = joint > 0
    kl = np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_x, p_y)[nz]))
    assert mi == pytest.approx(kl, abs=1e-14)  # KL(P(X,Y) || P(X)P(Y))
    assert 0.0 < mi and conditional_entropy(joint) < h_y  # knowing X helps, for a generic table


@pytest.mark.parametrize("seed", range(3))
def test_mutual_information_matches_sklearn_on_samples(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=500)
    y = (x + rng.integers(0, 2, size=500)) % 4  # depends on x
    table = np.zeros((3, 4))
    np.add.at(table, (x, y), 1)
    assert mutual_information(table / table.sum()) == pytest.approx(mutual_info_score(x, y), abs=1e-12)


def test_independent_variables_share_no_information():
    joint = np.outer([0.2, 0.3, 0.5], [0.1, 0.6, 0.3])
    assert mutual_information(joint) == pytest.approx(0.0, abs=1e-15)
    assert conditional_entropy(joint) == pytest.approx(shannon_entropy([0.1, 0.6, 0.3]), abs=1e-15)


def test_copy_and_noisy_channel_closed_forms():
    p_x = np.array([0.25, 0.75])
    copy = np.diag(p_x)  # Y = X
    assert conditional_entropy(copy) == 0.0
    assert mutual_information(copy) == pytest.approx(shannon_entropy(p_x), abs=1e-15)
    eps = 0.1  # a fair bit sent through a channel that flips it with probability eps
    channel = 0.5 * np.array([[1 - eps, eps], [eps, 1 - eps]])
    assert conditional_entropy(channel) == pytest.approx(binary_entropy(eps), abs=1e-15)
    assert mutual_information(channel) == pytest.approx(np.log(2) - binary_entropy(eps), abs=1e-15)


def test_rejects_tables_that_are_not_distributions():
    with pytest.raises(ValueError, match="sum to 1"):
        shannon_entropy([0.5, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        mutual_information(np.array([[0.7, -0.1], [0.2, 0.2]]))
    with pytest.raises(ShapeError):
        conditional_entropy([0.5, 0.5])
