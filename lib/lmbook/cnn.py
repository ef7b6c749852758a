"""The book's convolutional networks, as ``torch.nn`` modules with seeded initial weights.

Introduced in chapter 5, Convolutional networks (sections 3-6). Every builder returns a model that maps images of
shape ``(B, C, H, W)`` (batch, channels, height, width: PyTorch's channel-first order) to logits of shape
``(B, K)``; the loss applies the softmax itself, so no model ends in one. The layers of the sequential models are
named (``conv1``, ``pool1``, ``fc1``, ...), so per-layer tables and feature-map captures can refer to them.

- :func:`lenet5`: the LeNet-style network of LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied
  to document recognition", Proc. IEEE 86(11), 1998: two convolution and subsampling stages, then three dense
  layers (6 and 16 feature maps, 120, 84 and 10 units).
- :func:`sources_cnn`: the Keras digit classifier of the book's sources, redone in PyTorch:
  Conv(32, 3x3)-MaxPool-Conv(64, 3x3)-MaxPool-Dense(128)-Dense(10), valid (unpadded) convolutions as Keras's
  default.
- :func:`digits_cnn`: a small network for scikit-learn's 8 x 8 digits.
- :func:`plain_cnn` and :func:`residual_cnn`: deep stacks of the same 3 x 3 convolution blocks, without and with
  the identity shortcut of He, Zhang, Ren and Sun, "Deep residual learning for image recognition", CVPR 2016, each
  with or without the batch normalisation of Ioffe and Szegedy, "Batch normalization: accelerating deep network
  training by reducing internal covariate shift", ICML 2015.

The models use float32 by default (unlike :func:`lmbook.training.torch_mlp`'s float64): convolutions are where a
CPU spends its time, and float32 runs them about twice as fast; the reference tests pass ``dtype=torch.float64``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lmbook.seeding import private_seed
from lmbook.testing import check_choice

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _flat_size(features: nn.Module, in_channels: int, image_size: int, who: str) -> int:
    """Number of values the convolutional part ``features`` outputs for one image, found by one dry run.

    A dry run (rather than the output-size formula) follows whatever padding, stride and pooling the layers use,
    and turns an image too small for them into a readable error instead of PyTorch's.
    """
    param = next(features.parameters())
    x = torch.zeros(1, in_channels, image_size, image_size, dtype=param.dtype)
    try:
        with torch.no_grad():
            out = features(x)
    except RuntimeError as e:
        raise ValueError(f"{who}: a {image_size} x {image_size} image is too small for its layers ({e})") from None
    if out.numel() == 0:
        raise ValueError(f"{who}: a {image_size} x {image_size} image leaves no feature map after its layers")
    return int(out.numel())


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def lenet5(
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    activation: str = "tanh",
    pool: str = "avg",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A LeNet-5-style network (LeCun et al. 1998) with seeded initial weights.

    ``conv1`` (6 maps, 5 x 5, padding 2, so a 28 x 28 image keeps its size as the original's 32 x 32 input did
    without padding) -> ``pool1`` (2 x 2) -> ``conv2`` (16 maps, 5 x 5) -> ``pool2`` (2 x 2) -> ``fc1`` (120)
    -> ``fc2`` (84) -> ``fc3`` (``num_classes`` logits), with ``activation`` after every layer but the last.
    The original's sparse connection table in C3 and its RBF output layer are replaced by full connections and
    logits, as every modern re-implementation does.

    Args:
        in_channels: colour channels of the input images (1 for grey).
        image_size: height = width of the input images, at least 12 (smaller images vanish in the pooling).
        num_classes: number of logits ``K``.
        activation: ``"tanh"`` (the original's squashing function) or ``"relu"``.
        pool: ``"avg"`` (the original subsampled by averaging) or ``"max"``.
        seed: seeds the initial weights (PyTorch's default initialisation).
        dtype: the parameters' dtype.

    Returns:
        An ``nn.Sequential`` mapping ``(B, in_channels, image_size, image_size)`` to ``(B, num_classes)``.
    """
    _check_sizes(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
    check_choice(activation, _ACTIVATIONS, "activation")
    check_choice(pool, _POOLS, "pool")
    act, pooling = _ACTIVATIONS[activation], _POOLS[pool]
    with private_seed(seed):
        features = OrderedDict(
            conv1=nn.Conv2d(in_channels, 6, kernel_size=5, padding=2, dtype=dtype),
            act1=act(),
            pool1=pooling(2),
            conv2=nn.Conv2d(6, 16, kernel_size=5, dtype=dtype),
            act2=act(),
            pool2=pooling(2),
        )
        flat = _flat_size(nn.Sequential(features), in_channels, image_size, "lenet5")
        head = OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(flat, 120, dtype=dtype),
            act3=act(),
            fc2=nn.Linear(120, 84, dtype=dtype),
            act4=act(),
            fc3=nn.Linear(84, num_classes, dtype=dtype),
        )
    return nn.Sequential(OrderedDict(**features, **head))


def sources_cnn(
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """The sources' Keras digit classifier in PyTorch, with seeded initial weights.

    ``conv1`` (32 maps, 3 x 3) -> ReLU -> ``pool1`` (max, 2 x 2) -> ``conv2`` (64 maps, 3 x 3) -> ReLU ->
    ``pool2`` (max, 2 x 2) -> flatten -> ``fc1`` (128) -> ReLU -> ``fc2`` (``num_classes`` logits). The
    convolutions are unpadded, as Keras's ``Conv2D`` is by default: 28 -> 26 -> 13 -> 11 -> 5, so ``fc1`` sees
    64 * 5 * 5 = 1600 values. Two things differ from the Keras model on purpose: the last layer outputs logits
    (``torch.nn.functional.cross_entropy`` applies the softmax; a softmax inside the model as well would apply it
    twice), and PyTorch flattens channel-first, so the order of ``fc1``'s inputs (not their number) differs.

    Args:
        in_channels, image_size, num_classes: input channels, height = width (at least 10) and ``K`` logits.
        seed: seeds the initial weights (PyTorch's default initialisation, not Keras's Glorot-uniform).
        dtype: the parameters' dtype.

    Returns:
        An ``nn.Sequential`` mapping ``(B, in_channels, image_size, image_size)`` to ``(B, num_classes)``.
    """
    _check_sizes(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
    with private_seed(seed):
        features = OrderedDict(
            conv1=nn.Conv2d(in_channels, 32, kernel_size=3, dtype=dtype),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, kernel_size=3, dtype=dtype),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
        )
        flat = _flat_size(nn.Sequential(features), in_channels, image_size, "sources_cnn")
        head = OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(flat, 128, dtype=dtype),
            relu3=nn.ReLU(),
            fc2=nn.Linear(128, num_classes, dtype=dtype),
        )
    return nn.Sequential(OrderedDict(**features, **head))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable values in ``model`` (the entries of every parameter tensor that requires gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
