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
- :func:`digits_cnn`: a small network for scikit-learn's 8 x 8 digits, and :func:`train_digits_cnn`, the
  chapter's recipe for training it (with shifted copies of the training digits), timed.
- :func:`plain_cnn` and :func:`residual_cnn`: deep stacks of the same 3 x 3 convolution blocks, without and with
  the identity shortcut of He, Zhang, Ren and Sun, "Deep residual learning for image recognition", CVPR 2016, each
  with or without the batch normalisation of Ioffe and Szegedy, "Batch normalization: accelerating deep network
  training by reducing internal covariate shift", ICML 2015.

The models use float32 by default (unlike :func:`lmbook.training.torch_mlp`'s float64): convolutions are where a
CPU spends its time, and float32 runs them about twice as fast; the reference tests pass ``dtype=torch.float64``.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmbook.loop import evaluation_mode
from lmbook.preprocessing import Split, augment_digits
from lmbook.regularisation import EarlyStopping
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape
from lmbook.training import History, fit_classifier

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


def digits_cnn(
    channels: tuple[int, int] = (32, 64),
    num_classes: int = 10,
    batch_norm: bool = True,
    dropout: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A small network for scikit-learn's 8 x 8 digits, with seeded initial weights.

    ``conv1`` and ``conv2`` (``channels[0]`` maps, 3 x 3, padding 1) -> ``pool1`` (max, 8 -> 4) -> ``conv3``
    (``channels[1]`` maps) -> ``pool2`` (4 -> 2) -> ``dropout`` -> ``fc`` (``num_classes`` logits), with a ReLU after
    every convolution and, with ``batch_norm``, a ``BatchNorm2d`` between each convolution and its ReLU. Padding
    keeps the border pixels, which carry much of an 8 x 8 digit. With the defaults it has 30,890 parameters.

    Args:
        channels: feature maps of the first two convolutions and of the third.
        num_classes: number of logits ``K``.
        batch_norm: add batch normalisation after each convolution (Ioffe and Szegedy 2015).
        dropout: probability of the ``nn.Dropout`` before the last layer, in ``[0, 1)``.
        seed: seeds the initial weights. dtype: the parameters' dtype.

    Returns:
        An ``nn.Sequential`` mapping ``(B, 1, 8, 8)`` to ``(B, num_classes)``.
    """
    c1, c2 = channels
    _check_sizes(c1=c1, c2=c2, num_classes=num_classes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    def norm(c: int) -> nn.Module:
        return nn.BatchNorm2d(c, dtype=dtype) if batch_norm else nn.Identity()

    with private_seed(seed):
        layers = OrderedDict(
            conv1=nn.Conv2d(1, c1, kernel_size=3, padding=1, dtype=dtype),
            bn1=norm(c1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(c1, c1, kernel_size=3, padding=1, dtype=dtype),
            bn2=norm(c1),
            relu2=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv3=nn.Conv2d(c1, c2, kernel_size=3, padding=1, dtype=dtype),
            bn3=norm(c2),
            relu3=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            dropout=nn.Dropout(dropout),
            fc=nn.Linear(c2 * 2 * 2, num_classes, dtype=dtype),
        )
    return nn.Sequential(layers)


def with_shifted_copies(images, labels, copies: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images followed by ``copies`` copies shifted by up to one pixel in each direction
    (:func:`lmbook.preprocessing.augment_digits`, copy ``i`` with seed ``seed + 1 + i``), and the labels to match.

    Args:
        images: ``(N, 1, H, W)``. labels: ``(N,)``. copies: >= 0.

    Returns:
        ``(X, y)``: float32 ``((copies + 1) * N, 1, H, W)`` and ``((copies + 1) * N,)``, originals first.
    """
    images = np.asarray(images)
    check_shape(images, ("N", 1, None, None), "images (N, 1, H, W)")
    check_shape(np.asarray(labels), (len(images),), "labels")
    if copies < 0:
        raise ValueError(f"copies must not be negative, got {copies}")
    shifted = [augment_digits(images[:, 0], seed=seed + 1 + i, shift=1)[:, None] for i in range(copies)]
    X = np.concatenate([images, *shifted]).astype(np.float32)
    return X, np.tile(np.asarray(labels), copies + 1)


@dataclass(frozen=True, eq=False)
class DigitsRun:
    """One run of :func:`train_digits_cnn`: the trained model (in evaluation mode, with the weights of its best
    validation epoch), its :class:`lmbook.training.History`, the seconds ``fit_classifier`` took and the number
    of training images (originals and shifted copies)."""

    model: nn.Sequential
    history: History
    seconds: float
    train_images: int


def train_digits_cnn(
    split: Split,
    batch_norm: bool = True,
    copies: int = 2,
    epochs: int = 15,
    lr: float = 3e-3,
    batch_size: int = 64,
    patience: int = 5,
    seed: int = 0,
) -> DigitsRun:
    """The chapter's recipe for the digits: :func:`digits_cnn` trained by :func:`lmbook.training.fit_classifier`
    with Adam on the training images and ``copies`` shifted copies of them, keeping the weights of the epoch
    with the lowest validation loss (early stopping with ``patience``). The test images are not used.

    Args:
        split: images ``(n, 1, 8, 8)`` in ``[0, 1]`` and labels, e.g. ``lmbook.images.digits_images().split``.
        batch_norm: passed to :func:`digits_cnn`. copies: shifted copies of each training image (0: none).
        epochs, lr, batch_size, patience: the training settings. seed: the initial weights, the copies, the
            mini-batch order and the dropout masks.

    Returns:
        A :class:`DigitsRun`; ``seconds`` is the wall-clock time of the training alone.
    """
    X, y = with_shifted_copies(split.X_train, split.y_train, copies=copies, seed=seed)
    model = digits_cnn(batch_norm=batch_norm, seed=seed)
    start = time.perf_counter()
    history = fit_classifier(
        model, X, y, split.X_val, split.y_val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        early_stopping=EarlyStopping(patience=patience),
    )  # fmt: skip
    return DigitsRun(model, history, time.perf_counter() - start, len(y))


# ----- deep networks: plain and residual ----------------------------------------------------------------------


class ConvBlock(nn.Module):
    """Two 3 x 3 convolutions that keep the shape ``(B, C, H, W)``, with or without an identity shortcut.

    Plain: ``relu(N2(conv2(relu(N1(conv1(x))))))``. Residual (He et al. 2016, figure 2): the block adds its input
    before the last ReLU, ``relu(x + N2(conv2(relu(N1(conv1(x))))))``, so it only has to learn a correction to
    ``x``, and the gradient reaches ``x`` through the ``+`` unchanged whatever the convolutions do. ``N1`` and
    ``N2`` are ``BatchNorm2d`` with ``batch_norm`` and the identity without. The shortcut adds no parameters.

    Args:
        width: channels ``C`` in and out. residual: add the shortcut. batch_norm: normalise after each convolution.
        dtype: the parameters' dtype.
    """

    def __init__(self, width: int, residual: bool, batch_norm: bool, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(width, dtype=dtype) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(width, dtype=dtype) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))  # (B, C, H, W)
        out = self.bn2(self.conv2(out))  # (B, C, H, W)
        if self.residual:
            out = out + x
        return torch.relu(out)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def _deep_cnn(num_blocks, width, residual, batch_norm, in_channels, num_classes, seed, dtype) -> nn.Sequential:
    _check_sizes(num_blocks=num_blocks, width=width, in_channels=in_channels, num_classes=num_classes)
    with private_seed(seed):
        layers = OrderedDict(
            stem=nn.Conv2d(in_channels, width, kernel_size=3, padding=1, dtype=dtype),
            stem_bn=nn.BatchNorm2d(width, dtype=dtype) if batch_norm else nn.Identity(),
            stem_relu=nn.ReLU(),
        )
        for i in range(1, num_blocks + 1):
            layers[f"block{i}"] = ConvBlock(width, residual, batch_norm, dtype=dtype)
        layers.update(
            pool=nn.AdaptiveAvgPool2d(1),  # (B, C, H, W) -> (B, C, 1, 1): one mean per feature map
            flatten=nn.Flatten(),
            fc=nn.Linear(width, num_classes, dtype=dtype),
        )
    return nn.Sequential(layers)


def plain_cnn(
    num_blocks: int = 8,
    width: int = 16,
    batch_norm: bool = False,
    in_channels: int = 1,
    num_classes: int = 10,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A deep plain network: ``stem`` convolution, ``num_blocks`` plain :class:`ConvBlock`s, global average pooling,
    ``fc``. It has ``2 * num_blocks + 1`` convolutions, all 3 x 3 with ``width`` maps and padding 1, so it takes
    images of any size ``(B, in_channels, H, W)`` and returns ``(B, num_classes)``. Its parameters are exactly those
    of :func:`residual_cnn` with the same arguments and seed: only the shortcuts differ.
    """
    return _deep_cnn(num_blocks, width, False, batch_norm, in_channels, num_classes, seed, dtype)


def residual_cnn(
    num_blocks: int = 8,
    width: int = 16,
    batch_norm: bool = False,
    in_channels: int = 1,
    num_classes: int = 10,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """:func:`plain_cnn` with an identity shortcut around every block (He et al. 2016); the same parameters."""
    return _deep_cnn(num_blocks, width, True, batch_norm, in_channels, num_classes, seed, dtype)


# ----- looking inside -----------------------------------------------------------------------------------------


def conv_layer_names(model: nn.Module) -> list[str]:
    """The names (as in ``model.named_modules()``) of every ``nn.Conv2d`` in ``model``, from input to output."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def feature_maps(model: nn.Module, x: torch.Tensor, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The outputs of the named layers of ``model`` for the input ``x``, captured with forward hooks.

    The model runs once, in evaluation mode and without gradients; the hooks are removed afterwards (also when
    the forward pass fails), and the model is put back in the mode it was in.

    Args:
        model: any ``nn.Module``. x: its input, e.g. images ``(B, C, H, W)``.
        layers: names from ``model.named_modules()`` (``"conv1"``, ``"block2.conv1"``); None: every convolution
            (:func:`conv_layer_names`).

    Returns:
        ``{name: output}`` in the order of ``layers``, each detached, e.g. ``(B, C_l, H_l, W_l)`` for a
        convolution with ``C_l`` maps.
    """
    modules = dict(model.named_modules())
    layers = conv_layer_names(model) if layers is None else list(layers)
    for name in layers:
        check_choice(name, [n for n in modules if n], "layer")
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            captured[name] = output.detach()

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {name: captured[name] for name in layers}


def gradient_norms(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The norm of the cross-entropy loss's gradient for each convolution's and linear layer's weight.

    One forward and backward pass on the batch ``(X, y)`` in training mode (batch norm normalises with the batch's
    statistics, as in training), on a copy of ``model``: the model itself, its ``.grad`` fields and its batch-norm
    running statistics are left as they were. Dropout, if the model has any, draws its masks as in training.

    Args:
        model: returns logits ``(B, K)``. X: inputs ``(B, ...)``. y: integer labels ``(B,)``.

    Returns:
        ``{layer name: ||dL/dW||}`` from input to output, where ``W`` is the layer's ``weight``.
    """
    model = copy.deepcopy(model).train()
    named = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    loss = nn.functional.cross_entropy(model(X), y)
    grads = torch.autograd.grad(loss, [w for _, w in named])
    return {name: float(g.norm()) for (name, _), g in zip(named, grads, strict=True)}


# ----- chapter 5's digits CNN, trained once ---------------------------------------------------------------------


def trained_digits_cnn(seed: int = 0, folder=None, epochs: int = 15) -> tuple[nn.Sequential, dict]:
    """Chapter 5's digits CNN, trained by :func:`train_digits_cnn` with its default (the chapter's) settings on
    :func:`lmbook.images.digits_images`'s split, once per machine: later calls load the stored weights.

    The weights are stored with :func:`lmbook.cache.cached` under a key that holds ``seed``, ``epochs``, torch's
    version and the source of the code that trains (this module, :mod:`lmbook.training`, the data and the
    preprocessing), so a changed recipe trains again. The training runs on one CPU thread, so a loaded model
    equals a freshly trained one. Later chapters use it as a ready digit classifier (chapter 11's applications,
    adversarial examples).

    Args:
        seed: passed to :func:`train_digits_cnn`. folder: the cache folder; None: :func:`lmbook.cache.cache_dir`.
        epochs: the most epochs (early stopping may stop sooner); 15 is the chapter's.

    Returns:
        ``(model, info)``: the model in evaluation mode on the CPU, mapping ``(B, 1, 8, 8)`` images in ``[0, 1]``
        to ``(B, 10)`` logits; ``info`` holds ``"test_accuracy"`` and ``"val_accuracy"`` (of the kept epoch),
        ``"seconds"`` (of the training run, whenever it happened), ``"train_images"``, ``"cached"`` (True when
        loaded) and ``"split"``, the :class:`lmbook.preprocessing.Split` it was trained and tested on (rebuilt
        by ``digits_images().split``, never stored).
    """
    from lmbook.cache import source_digest, trained_once
    from lmbook.images import digits_images
    from lmbook.loop import cpu_threads
    from lmbook.training import predict_labels

    split = digits_images().split
    model = digits_cnn(batch_norm=True, seed=seed)

    def train() -> dict:
        with cpu_threads(1):
            run = train_digits_cnn(split, seed=seed, epochs=epochs)
        model.load_state_dict(run.model.state_dict())  # train_digits_cnn trains a model of its own, built alike
        best = run.history.best_epoch
        return {
            "test_accuracy": float(np.mean(predict_labels(run.model, split.X_test) == split.y_test)),
            "val_accuracy": float(run.history.val_acc[best]),
            "seconds": float(run.seconds),
            "train_images": int(run.train_images),
        }

    parts = {
        "seed": seed,
        "epochs": epochs,
        "source": source_digest("cnn", "training", "loop", "preprocessing", "images", "regularisation"),
    }
    info, hit = trained_once("digits-cnn", parts, model, train, folder)
    return model, {**info, "cached": hit, "split": split}
