"""Adversarial examples: the fast gradient sign method and accuracy under attack.

Introduced in chapter 11, Applications, challenges and the road ahead (section 4, "Bias, privacy and
robustness, measured"). A classifier that is right on almost every test image can be made wrong on most of them
by a change of each pixel that a person barely sees, provided the change points the right way. The fast gradient
sign method (FGSM, Goodfellow et al. 2015) takes that way from one gradient: for an input ``x`` with label ``y``
and loss ``L(f(x), y)``,

    x_adv = clamp(x + epsilon * sign(grad_x L(f(x), y)), low, high)

so every pixel moves by exactly ``epsilon`` (before clamping to the valid range) in the direction that raises the
loss fastest to first order. :func:`random_sign_noise` moves every pixel by the same ``epsilon`` in a random
direction: the baseline that shows it is the direction, not the size, that fools the model.

- :func:`loss_input_gradient`: the gradient of the mean cross-entropy with respect to the inputs;
- :func:`fgsm`: the adversarial inputs; :func:`random_sign_noise`: the same size, random signs;
- :func:`accuracy_under_attack`: accuracy for each of several epsilons (FGSM or the random baseline).

The model is evaluated in evaluation mode (dropout off, batch norm with its running statistics) and given back
in the mode it had; its parameters get no gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmbook.loop import evaluation_mode
from lmbook.testing import check_shape

ATTACKS = ("fgsm", "random")


def _inputs(model: torch.nn.Module, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as a tensor of the model's dtype and device and ``y`` as int64 labels ``(N,)``, after checks."""
    try:
        param = next(model.parameters())
    except StopIteration:
        raise ValueError("the model has no parameters to take a dtype and device from") from None
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x: expected a batch of inputs (N, ...), got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"x: expected floating-point inputs (pixel values), got dtype {x.dtype}")
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    check_shape(y, (len(x),), "y (one label per input)")
    if torch.is_floating_point(y) or y.dtype == torch.bool:
        raise TypeError(f"y: expected integer class labels, got dtype {y.dtype}")
    return x.detach().to(device=param.device, dtype=param.dtype), y.to(device=param.device, dtype=torch.int64)


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon}")
    return epsilon


def _clamp(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    if clamp is None:
        return x
    low, high = clamp
    if not low < high:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
    return x.clamp(low, high)


def loss_input_gradient(model: torch.nn.Module, x, y) -> torch.Tensor:
    """The gradient of the mean cross-entropy of ``model(x)`` against ``y`` with respect to ``x``.

    Args:
        model: maps ``(N, ...)`` inputs to ``(N, K)`` logits. Evaluated in evaluation mode, given back in its mode;
            its parameters' ``.grad`` are left untouched.
        x: inputs ``(N, ...)``, floating point (array or tensor). y: integer labels ``(N,)``.

    Returns:
        A tensor shaped like ``x``, in the model's dtype, on the model's device.
    """
    x, y = _inputs(model, x, y)
    x = x.clone().requires_grad_(True)
    with evaluation_mode(model):
        logits = model(x)
        if logits.ndim != 2 or len(logits) != len(x):
            raise ValueError(f"the model must return logits (N, K) = ({len(x)}, K), got {tuple(logits.shape)}")
        loss = F.cross_entropy(logits, y)
        (grad,) = torch.autograd.grad(loss, x)  # only x: the parameters' .grad stay as they were
    return grad.detach()


def fgsm(model: torch.nn.Module, x, y, epsilon: float, clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """The fast gradient sign method: ``clamp(x + epsilon * sign(grad_x loss), *clamp)``.

    Args:
        model: a classifier returning ``(N, K)`` logits (see :func:`loss_input_gradient`).
        x: inputs ``(N, ...)`` in the valid range, e.g. pixels in ``[0, 1]``. y: their true labels ``(N,)``.
        epsilon: the size of the step of every input value, >= 0 (0 returns ``x`` unchanged).
        clamp: ``(low, high)``, the valid range the adversarial inputs are clipped back into; None: no clipping.

    Returns:
        The adversarial inputs, a tensor shaped like ``x`` (model's dtype and device), detached.
    """
    epsilon = _check_epsilon(epsilon)
    x_t, _ = _inputs(model, x, y)
    if epsilon == 0:
        return _clamp(x_t, clamp)
    grad = loss_input_gradient(model, x_t, y)
    return _clamp(x_t + epsilon * grad.sign(), clamp).detach()


def random_sign_noise(x, epsilon: float, clamp: tuple[float, float] | None = (0.0, 1.0), seed: int = 0) -> torch.Tensor:
    """``clamp(x + epsilon * s)`` with each ``s`` an independent random sign, +1 or -1 with probability 1/2.

    The same size of change as :func:`fgsm` (every value moves by ``epsilon`` before clamping), in a direction
    that ignores the model. Args as for :func:`fgsm`; ``seed`` fixes the signs. Returns a tensor like ``x``.
    """
    epsilon = _check_epsilon(epsilon)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if not torch.is_floating_point(x):
        raise TypeError(f"x: expected floating-point inputs, got dtype {x.dtype}")
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, tuple(x.shape), generator=gen).to(device=x.device, dtype=x.dtype) * 2 - 1
    return _clamp(x + epsilon * signs, clamp)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with evaluation_mode(model), torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean().item())


def accuracy_under_attack(
    model: torch.nn.Module,
    x,
    y,
    epsilons,
    attack: str = "fgsm",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
) -> list[float]:
    """The model's accuracy on ``(x, y)`` after each input is perturbed with each ``epsilon``.

    Args:
        model, x, y, clamp: as for :func:`fgsm`.
        epsilons: a sequence of sizes >= 0; epsilon 0 gives the clean accuracy.
        attack: ``"fgsm"`` (the gradient's sign, computed once for all epsilons) or ``"random"``
            (:func:`random_sign_noise` with ``seed``, the same signs for every epsilon).

    Returns:
        One accuracy in ``[0, 1]`` per epsilon, in the order given.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {', '.join(map(repr, ATTACKS))}")
    epsilons = [_check_epsilon(e) for e in np.atleast_1d(np.asarray(epsilons, dtype=np.float64))]
    x_t, y_t = _inputs(model, x, y)
    if attack == "fgsm":
        direction = loss_input_gradient(model, x_t, y_t).sign()
    else:
        direction = random_sign_noise(torch.zeros_like(x_t).cpu(), 1.0, clamp=None, seed=seed).to(x_t)
    return [_accuracy(model, _clamp(x_t + e * direction, clamp), y_t) for e in epsilons]
