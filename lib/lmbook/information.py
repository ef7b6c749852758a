"""Information measures of discrete distributions: entropy, joint and conditional entropy, mutual information.

Introduced in chapter 3, Losses and gradient descent, next to the cross-entropy loss. Everything is in **nats**
(natural logarithms), the unit of the losses in this book; divide by ``ln 2`` for bits. Terms with probability 0
contribute 0, the limit of ``p ln p`` as ``p -> 0``.

Two random variables are described by their **joint distribution**, a table ``joint[i, j] = P(X = i, Y = j)``
whose rows belong to the values of ``X`` and whose columns to those of ``Y``. From it:

- ``H(Y | X) = sum_i P(X = i) H(Y | X = i)``: the uncertainty about ``Y`` that remains once ``X`` is known
  (equal to ``H(X, Y) - H(X)``, the chain rule);
- ``I(X; Y) = H(Y) - H(Y | X)``: how much knowing ``X`` reduces the uncertainty about ``Y``. It is symmetric,
  never negative, and 0 exactly when ``X`` and ``Y`` are independent; it equals ``KL(P(X, Y) || P(X) P(Y))``.

The probability primer in the appendix defines random variables and expectations; Cover and Thomas, *Elements
of Information Theory* (2nd ed., 2006), chapter 2, is the standard reference.
"""

from __future__ import annotations

import numpy as np

from lmbook.testing import check_shape


def _distribution(p, ndim: int, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    check_shape(p, (None,) * ndim, name)
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, rtol=0.0, atol=1e-9):
        raise ValueError(f"{name} must be non-negative and sum to 1, got sum {p.sum():.6g} and minimum {p.min():.6g}")
    return p


def _plogp_sum(p: np.ndarray) -> float:
    """``-sum p ln p`` over all elements, with ``0 ln 0 = 0``."""
    nonzero = p[p > 0]
    return float(-np.sum(nonzero * np.log(nonzero)))


def shannon_entropy(p) -> float:
    """Entropy ``H(p) = -sum_k p_k ln p_k`` of a discrete distribution, in nats.

    The average surprise ``E[-ln p(X)]``: 0 for a certain outcome, ``ln K`` for ``K`` equally likely ones (the
    most any distribution over ``K`` outcomes can have). Equals ``scipy.stats.entropy(p)``.

    Args:
        p: probabilities, shape ``(K,)``, non-negative, summing to 1.
    """
    return _plogp_sum(_distribution(p, 1, "p"))


def joint_entropy(joint) -> float:
    """``H(X, Y) = -sum_ij P(i, j) ln P(i, j)`` of a joint distribution table of shape ``(K_x, K_y)``."""
    return _plogp_sum(_distribution(joint, 2, "joint"))


def conditional_entropy(joint) -> float:
    """``H(Y | X)``, the entropy of ``Y`` left once ``X`` is known, in nats.

    Computed from its definition, the average over the values of ``X`` of the entropy of the row
    ``P(Y | X = i) = joint[i] / P(X = i)``, weighted by ``P(X = i)``; rows with ``P(X = i) = 0`` are skipped.

    Args:
        joint: ``joint[i, j] = P(X = i, Y = j)``, shape ``(K_x, K_y)``, rows for ``X``, columns for ``Y``.
            For ``H(X | Y)`` pass ``joint.T``.
    """
    joint = _distribution(joint, 2, "joint")
    p_x = joint.sum(axis=1)  # (K_x,)
    return float(sum(p_x[i] * _plogp_sum(joint[i] / p_x[i]) for i in np.flatnonzero(p_x > 0)))


def mutual_information(joint) -> float:
    """``I(X; Y) = H(Y) - H(Y | X)``, in nats: what knowing ``X`` tells about ``Y`` (and vice versa).

    Equals ``sklearn.metrics.mutual_info_score`` on samples whose contingency table is proportional to
    ``joint``. The result is clipped at 0, since rounding can make it ``-1e-17`` for independent variables.

    Args:
        joint: ``joint[i, j] = P(X = i, Y = j)``, shape ``(K_x, K_y)``.
    """
    joint = _distribution(joint, 2, "joint")
    h_y = _plogp_sum(joint.sum(axis=0))
    return max(0.0, h_y - conditional_entropy(joint))
