"""Which pixels matter to a classifier's decision: gradient saliency and occlusion.

Introduced in chapter 5, Convolutional networks (looking inside a trained network). Two answers to the question
"which pixels made the network say k?", for one image ``(C, H, W)`` and any model returning logits ``(B, K)``:

- :func:`gradient_saliency`: how fast the class score changes when one pixel changes, ``|d s_k / d x_ij|``, the
  largest over the colour channels (Simonyan, Vedaldi and Zisserman, "Deep inside convolutional networks:
  visualising image classification models and saliency maps", ICLR workshop 2014). One backward pass; local: it
  says what a tiny change would do.
- :func:`occlusion_map`: how much the probability of class ``k`` drops when a patch of the image is covered
  (Zeiler and Fergus, "Visualizing and understanding convolutional networks", ECCV 2014). One forward pass per
  patch position; it measures the effect of a large change, which the gradient cannot see.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmbook.loop import evaluation_mode
from lmbook.testing import check_shape


def image_batch(model: nn.Module, image) -> torch.Tensor:
    """``image`` as a ``(1, C, H, W)`` tensor with the model's dtype and device."""
    param = next(model.parameters())
    x = torch.as_tensor(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image))
    check_shape(x, (None, None, None), "image (C, H, W)")
    return x.to(dtype=param.dtype, device=param.device).unsqueeze(0)


def gradient_saliency(model: nn.Module, image, target: int | None = None) -> tuple[np.ndarray, int]:
    """``|d logit_k / d pixel|`` for every pixel of one image, the largest over its channels.

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)``; evaluated in evaluation mode and put back after.
        image: one image ``(C, H, W)`` (array or tensor).
        target: the class ``k`` whose logit is differentiated; None: the predicted class.

    Returns:
        ``(saliency, k)``: float64 array ``(H, W)`` and the class used.
    """
    x = image_batch(model, image).requires_grad_(True)
    with evaluation_mode(model):
        logits = model(x)  # (1, K)
        k = int(logits.argmax(dim=1)) if target is None else int(target)
        (grad,) = torch.autograd.grad(logits[0, k], x)  # (1, C, H, W)
    return grad[0].abs().amax(dim=0).detach().cpu().double().numpy(), k


def occlusion_map(
    model: nn.Module, image, target: int | None = None, patch: int = 2, stride: int = 1, fill: float = 0.0
) -> tuple[np.ndarray, int]:
    """The drop in the probability of class ``k`` when a ``patch x patch`` square of the image is covered.

    Every position of the square (top-left corners ``0, stride, 2 * stride, ...`` that keep it inside the image)
    gives one covered copy of the image, set to ``fill`` under the square in every channel; all copies go through
    the model in one batch. A pixel's value is the mean drop ``p_k(image) - p_k(covered copy)`` over the copies
    whose square covers it: positive where covering hurts the prediction, negative where it helps.

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)``; evaluated in evaluation mode and put back after.
        image: one image ``(C, H, W)``. target: the class ``k``; None: the predicted class.
        patch: side of the square, 1 to ``min(H, W)``. stride: step between positions, >= 1.
        fill: the value written under the square (0: background for the book's images).

    Returns:
        ``(drop, k)``: float64 array ``(H, W)`` and the class used.
    """
    x = image_batch(model, image)
    _, C, H, W = x.shape
    if not 1 <= patch <= min(H, W):
        raise ValueError(f"patch must be between 1 and {min(H, W)} for a {H} x {W} image, got {patch}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    corners = [(r, c) for r in range(0, H - patch + 1, stride) for c in range(0, W - patch + 1, stride)]
    covered = x.repeat(len(corners), 1, 1, 1)  # (P, C, H, W): one copy per position
    for i, (r, c) in enumerate(corners):
        covered[i, :, r : r + patch, c : c + patch] = fill
    with evaluation_mode(model), torch.no_grad():
        p_image = torch.softmax(model(x), dim=1)[0]  # (K,)
        p_covered = torch.softmax(model(covered), dim=1)  # (P, K)
    k = int(p_image.argmax()) if target is None else int(target)
    drops = (p_image[k] - p_covered[:, k]).double().cpu().numpy()  # (P,)
    total, count = np.zeros((H, W)), np.zeros((H, W))
    for drop, (r, c) in zip(drops, corners, strict=True):
        total[r : r + patch, c : c + patch] += drop
        count[r : r + patch, c : c + patch] += 1
    return np.divide(total, count, out=np.zeros((H, W)), where=count > 0), k
