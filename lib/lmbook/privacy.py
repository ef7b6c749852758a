"""Membership inference: does a model give away which examples it was trained on?

Introduced in chapter 11, Applications, challenges and the road ahead (section 4, "Bias, privacy and
robustness, measured"). A model that overfits has a lower loss on its training examples ("members") than on
examples it never saw ("non-members"). The attack of Yeom et al. (2018) needs nothing more: guess "member"
when the model's loss on an example is below a threshold. Its success is measured as for any binary
classifier, with members as the positive class:

- true-positive rate (TPR): the fraction of members guessed "member";
- false-positive rate (FPR): the fraction of non-members guessed "member";
- membership advantage ``TPR - FPR`` (0 for a guess that ignores the model, 1 for a perfect attack);
- balanced accuracy ``(TPR + 1 - FPR) / 2``, the accuracy on equally many members and non-members;
- the area under the ROC curve over all thresholds (:func:`attack_auc`), 0.5 for no leak.

Functions: :func:`example_losses` (per-example cross-entropy), :func:`threshold_attack`, :func:`best_threshold`,
:func:`attack_roc`, :func:`attack_auc` and :func:`bootstrap_interval` (a percentile interval for any of them).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmbook.loop import evaluation_mode
from lmbook.metrics import roc_auc, roc_curve
from lmbook.testing import check_shape


def example_losses(model: torch.nn.Module, x, y, batch_size: int = 4096) -> np.ndarray:
    """The cross-entropy of each example, ``-log softmax(model(x_i))[y_i]``, in evaluation mode, no gradients.

    Args:
        model: maps ``(N, ...)`` inputs to ``(N, K)`` logits; given back in the mode it had.
        x: inputs ``(N, ...)`` (array or tensor), converted to the model's dtype. y: integer labels ``(N,)``.
        batch_size: examples per forward pass.

    Returns:
        float64 array ``(N,)``, each >= 0: the same numbers as ``F.cross_entropy(logits, y, reduction="none")``.
    """
    try:
        param = next(model.parameters())
    except StopIteration:
        raise ValueError("the model has no parameters to take a dtype and device from") from None
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x: expected at least one example along the first axis, got shape {tuple(x.shape)}")
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    check_shape(y, (len(x),), "y (one label per example)")
    if torch.is_floating_point(y) or y.dtype == torch.bool:
        raise TypeError(f"y: expected integer class labels, got dtype {y.dtype}")
    x = x.to(device=param.device, dtype=param.dtype)
    y = y.to(device=param.device, dtype=torch.int64)
    out = []
    with evaluation_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size])
            if logits.ndim != 2 or len(logits) != len(x[i : i + batch_size]):
                raise ValueError(f"the model must return logits (B, K), got {tuple(logits.shape)}")
            out.append(F.cross_entropy(logits, y[i : i + batch_size], reduction="none").double().cpu())
    return torch.cat(out).numpy()


def _losses(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    check_shape(values, (None,), name)
    if len(values) == 0:
        raise ValueError(f"{name}: need at least one loss, got none")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: losses must be finite numbers")
    return values


def _labels_scores(member_losses, nonmember_losses) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 member, 0 non-member) and scores (minus the loss: larger means "more likely a member")."""
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    labels = np.concatenate([np.ones(len(m), np.int64), np.zeros(len(n), np.int64)])
    return labels, -np.concatenate([m, n])


def threshold_attack(member_losses, nonmember_losses, threshold: float) -> dict:
    """Guess "member" for every example whose loss is below ``threshold`` (strictly) and score the guesses.

    Args:
        member_losses: losses ``(N_m,)`` of examples the model was trained on.
        nonmember_losses: losses ``(N_n,)`` of examples it never saw (held out from the same distribution).
        threshold: a loss; lower guesses fewer members.

    Returns:
        ``{"threshold", "tpr", "fpr", "advantage", "accuracy"}``: the rates defined in the module docstring;
        ``advantage = tpr - fpr`` and ``accuracy = (tpr + 1 - fpr) / 2`` (balanced, whatever ``N_m / N_n``).
    """
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    threshold = float(threshold)
    tpr = float(np.mean(m < threshold))
    fpr = float(np.mean(n < threshold))
    return {"threshold": threshold, "tpr": tpr, "fpr": fpr, "advantage": tpr - fpr, "accuracy": (tpr + 1 - fpr) / 2}


def best_threshold(member_losses, nonmember_losses) -> dict:
    """The threshold with the largest advantage, searched over every distinct loss (and +inf, guess all).

    The attacker would choose it on data of its own (for instance a shadow model); choosing it on the very
    losses it is scored on, as here, gives the most the attack can reach, an optimistic number.

    Returns:
        :func:`threshold_attack`'s dict at that threshold (the smallest threshold on a tie).
    """
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    # "loss < t" changes only when t passes a loss, so candidate thresholds just above each distinct loss suffice.
    candidates = np.unique(np.concatenate([m, n]))
    above = np.nextafter(candidates, np.inf)
    tpr = np.searchsorted(np.sort(m), above, side="left") / len(m)
    fpr = np.searchsorted(np.sort(n), above, side="left") / len(n)
    adv = tpr - fpr
    best = int(np.argmax(adv))
    if adv[best] <= 0:  # no threshold beats guessing: report the trivial threshold that guesses no one
        return threshold_attack(m, n, float(candidates[0]))
    return threshold_attack(m, n, float(above[best]))


def attack_roc(member_losses, nonmember_losses) -> tuple[np.ndarray, np.ndarray]:
    """The attack's ROC curve over all thresholds: ``(fpr, tpr)``, each ``(M + 1,)``, from (0, 0) to (1, 1)."""
    labels, scores = _labels_scores(member_losses, nonmember_losses)
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def attack_auc(member_losses, nonmember_losses) -> float:
    """Area under the attack's ROC curve: the probability that a random member has a lower loss than a random
    non-member (ties count one half). 0.5: the losses tell members from non-members no better than a coin."""
    labels, scores = _labels_scores(member_losses, nonmember_losses)
    return roc_auc(labels, scores)


def _loss_table(values, name: str) -> np.ndarray:
    """Losses ``(N,)``, or ``(N, M)`` for ``M`` models scored on the same ``N`` examples (one row per example)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2) or len(values) == 0:
        raise ValueError(f"{name}: expected losses of shape (N,) or (N, M) with N >= 1, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: losses must be finite numbers")
    return values


def bootstrap_interval(
    statistic, member_losses, nonmember_losses, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval for ``statistic(member_losses, nonmember_losses)``.

    Each of ``n_boot`` rounds resamples the members and the non-members with replacement (each group keeps its
    size) and recomputes the statistic; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of those values. It shows how much the number depends on which examples were drawn, not how much
    it depends on the training run.

    Args:
        statistic: a function of the two loss arrays returning a number, e.g. :func:`attack_auc` or
            ``lambda m, n: best_threshold(m, n)["advantage"]``.
        member_losses, nonmember_losses: ``(N_m,)`` and ``(N_n,)``; or ``(N_m, M)`` and ``(N_n, M)``, the losses
            of ``M`` models on the same examples, whose rows are resampled together (a paired bootstrap, for a
            difference between models: ``lambda m, n: attack_auc(m[:, 0], n[:, 0]) - attack_auc(m[:, 1], n[:, 1])``).
        n_boot: rounds, >= 1. level: in (0, 1). seed: seeds the resampling.

    Returns:
        ``(low, high)``.
    """
    m = _loss_table(member_losses, "member_losses")
    n = _loss_table(nonmember_losses, "nonmember_losses")
    if m.shape[1:] != n.shape[1:]:
        raise ValueError(f"member_losses {m.shape} and nonmember_losses {n.shape} must have the same columns")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            float(statistic(m[rng.integers(0, len(m), len(m))], n[rng.integers(0, len(n), len(n))]))
            for _ in range(n_boot)
        ]
    )
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
