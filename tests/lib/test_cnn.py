"""Tests of lmbook.cnn, lmbook.images and lmbook.saliency: output shapes, parameter counts against a count by hand,
seeding, the plain and residual blocks, feature maps and gradient norms against torch, the image loaders and the
offline fall-back of the MNIST loader, and the saliency maps against finite differences and a direct loop."""

import time

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook import images
from lmbook.cnn import (
    ConvBlock,
    conv_layer_names,
    count_parameters,
    digits_cnn,
    feature_maps,
    gradient_norms,
    lenet5,
    plain_cnn,
    residual_cnn,
    sources_cnn,
)
from lmbook.preprocessing import load_tabular, train_val_test_split
from lmbook.saliency import gradient_saliency, occlusion_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def conv(c_in, c_out, k):
    """Parameters of a k x k convolution: one k x k kernel per (input, output) channel pair, one bias per output."""
    return c_in * c_out * k * k + c_out


def dense(c_in, c_out):
    return c_in * c_out + c_out


# ----- models -------------------------------------------------------------------------------------------------


def test_sources_cnn_matches_the_keras_model_count():
    # Keras's summary of Conv32-Pool-Conv64-Pool-Dense128-Dense10 on 28 x 28 x 1: 28 -> 26 -> 13 -> 11 -> 5.
    expected = conv(1, 32, 3) + conv(32, 64, 3) + dense(64 * 5 * 5, 128) + dense(128, 10)
    model = sources_cnn()
    assert expected == 225_034
    assert count_parameters(model) == expected
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model.fc1.in_features == 1600


def test_sources_cnn_on_other_sizes_and_channels():
    # 32 x 32 x 3: 32 -> 30 -> 15 -> 13 -> 6, so fc1 sees 64 * 6 * 6 values.
    model = sources_cnn(in_channels=3, image_size=32, num_classes=5)
    assert model.fc1.in_features == 64 * 6 * 6
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="too small"):
        sources_cnn(image_size=8)


def test_lenet5_count_and_shapes():
    # 28 x 28 with padding 2: 28 -> 28 -> 14 -> 10 -> 5; 16 * 5 * 5 = 400 inputs to fc1.
    expected = conv(1, 6, 5) + conv(6, 16, 5) + dense(400, 120) + dense(120, 84) + dense(84, 10)
    model = lenet5()
    assert count_parameters(model) == expected == 61_706
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(model.pool1, torch.nn.AvgPool2d) and isinstance(model.act1, torch.nn.Tanh)
    relu_max = lenet5(activation="relu", pool="max")
    assert isinstance(relu_max.pool1, torch.nn.MaxPool2d) and isinstance(relu_max.act1, torch.nn.ReLU)
    with pytest.raises(ValueError, match="unknown pool 'median'"):
        lenet5(pool="median")
    with pytest.raises(ValueError, match="too small|no feature map"):
        lenet5(image_size=8)


def test_digits_cnn_count_and_shapes():
    c1, c2 = 32, 64
    convs = conv(1, c1, 3) + conv(c1, c1, 3) + conv(c1, c2, 3)
    batch_norms = 2 * (c1 + c1 + c2)  # a scale and a shift per channel
    expected = convs + batch_norms + dense(c2 * 2 * 2, 10)
    assert count_parameters(digits_cnn()) == expected == 30_890
    assert count_parameters(digits_cnn(batch_norm=False)) == expected - batch_norms
    assert digits_cnn()(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(ValueError, match="dropout"):
        digits_cnn(dropout=1.0)


@pytest.mark.parametrize("build", [lenet5, sources_cnn, digits_cnn, plain_cnn, residual_cnn])
def test_seed_fixes_the_weights_and_leaves_the_global_state(build):
    state = torch.random.get_rng_state()
    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        if name.endswith("weight") and pa.ndim > 1:
            assert not torch.equal(pa, pc), name


def test_dtype_reaches_every_parameter():
    model = digits_cnn(dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}


# ----- deep networks ------------------------------------------------------------------------------------------


def test_plain_and_residual_share_parameters_and_differ_only_by_the_shortcut():
    plain, residual = plain_cnn(num_blocks=3, seed=1), residual_cnn(num_blocks=3, seed=1)
    width = 16
    block = 2 * conv(width, width, 3)
    assert count_parameters(plain) == conv(1, width, 3) + 3 * block + dense(width, 10)
    for (n1, p1), (n2, p2) in zip(plain.named_parameters(), residual.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(5, 1, 8, 8)
    assert residual(x).shape == (5, 10)
    assert not torch.allclose(plain(x), residual(x))
    with_bn = residual_cnn(num_blocks=3, batch_norm=True)
    assert count_parameters(with_bn) == count_parameters(residual) + 2 * width * (1 + 2 * 3)


def test_conv_block_against_its_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    for residual in (False, True):
        block = ConvBlock(4, residual=residual, batch_norm=False, dtype=torch.float64)
        f = torch.nn.functional
        inner = f.conv2d(
            f.relu(f.conv2d(x, block.conv1.weight, block.conv1.bias, padding=1)),
            block.conv2.weight,
            block.conv2.bias,
            padding=1,
        )
        expected = f.relu(inner + x) if residual else f.relu(inner)
        assert_close(block(x), expected)


def test_shortcut_keeps_gradients_alive_in_a_deep_plain_stack():
    torch.manual_seed(0)
    X, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    plain = gradient_norms(plain_cnn(num_blocks=8), X, y)
    residual = gradient_norms(residual_cnn(num_blocks=8), X, y)
    assert list(plain) == ["stem"] + [f"block{i}.conv{j}" for i in range(1, 9) for j in (1, 2)] + ["fc"]
    assert plain["stem"] < 1e-4 * plain["fc"]  # vanished on the way down
    assert residual["stem"] > 1e-2 * residual["fc"]


def test_gradient_norms_match_autograd_and_leave_the_model_alone():
    model = digits_cnn(dropout=0.0, dtype=torch.float64)
    torch.manual_seed(0)
    X, y = torch.rand(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    model.eval()
    norms = gradient_norms(model, X, y)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert int(model.bn1.num_batches_tracked) == 0 and torch.equal(model.bn1.running_mean, torch.zeros(32))
    model.train()
    torch.nn.functional.cross_entropy(model(X), y).backward()
    assert norms.keys() == {"conv1", "conv2", "conv3", "fc"}
    for name in norms:
        assert norms[name] == pytest.approx(float(model.get_submodule(name).weight.grad.norm()), rel=1e-9)


# ----- looking inside -----------------------------------------------------------------------------------------


def test_feature_maps_are_the_layer_outputs():
    model = digits_cnn(dtype=torch.float64)
    model.train()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    maps = feature_maps(model, x)
    assert list(maps) == conv_layer_names(model) == ["conv1", "conv2", "conv3"]
    assert model.training  # put back
    assert not model.conv1._forward_hooks  # hooks removed
    assert_close(maps["conv1"], model.conv1(x))
    model.eval()
    assert_close(feature_maps(model, x, ["relu2"])["relu2"], model[:6](x))
    assert maps["conv3"].shape == (3, 64, 4, 4)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        feature_maps(model, x, ["conv9"])


def test_conv_layer_names_of_a_residual_net():
    names = conv_layer_names(residual_cnn(num_blocks=2))
    assert names == ["stem", "block1.conv1", "block1.conv2", "block2.conv1", "block2.conv2"]


def test_gradient_saliency_against_finite_differences():
    model = digits_cnn(batch_norm=False, dtype=torch.float64, seed=2)
    image = torch.rand(1, 8, 8, dtype=torch.float64)
    saliency, k = gradient_saliency(model, image, target=3)
    assert k == 3 and saliency.shape == (8, 8)
    model.eval()
    eps = 1e-6
    numeric = np.zeros((8, 8))
    for i in range(8):
        for j in range(8):
            step = torch.zeros_like(image)
            step[0, i, j] = eps
            with torch.no_grad():
                up, down = model((image + step)[None])[0, 3], model((image - step)[None])[0, 3]
            numeric[i, j] = abs(float(up - down)) / (2 * eps)
    np.testing.assert_allclose(saliency, numeric, rtol=1e-5, atol=1e-9)


def test_gradient_saliency_takes_the_largest_channel_and_the_predicted_class():
    model = sources_cnn(in_channels=3, image_size=12, dtype=torch.float64)
    image = torch.rand(3, 12, 12, dtype=torch.float64)
    saliency, k = gradient_saliency(model, image)
    x = image[None].clone().requires_grad_(True)
    logits = model(x)
    assert k == int(logits.argmax())
    logits[0, k].backward()
    assert_close(torch.from_numpy(saliency), x.grad[0].abs().amax(dim=0))


def test_occlusion_against_a_direct_loop():
    model = digits_cnn(dtype=torch.float64, seed=1)
    model.train()  # the function must evaluate in eval mode and put the mode back
    image = torch.rand(1, 8, 8, dtype=torch.float64)
    drop, k = occlusion_map(model, image, patch=3, stride=2, fill=0.0)
    assert model.training
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(image[None]), dim=1)[0]
        assert k == int(p.argmax())
        expected_total, count = np.zeros((8, 8)), np.zeros((8, 8))
        for r in (0, 2, 4):
            for c in (0, 2, 4):
                covered = image.clone()
                covered[:, r : r + 3, c : c + 3] = 0.0
                d = float(p[k] - torch.softmax(model(covered[None]), dim=1)[0, k])
                expected_total[r : r + 3, c : c + 3] += d
                count[r : r + 3, c : c + 3] += 1
    expected = np.divide(expected_total, count, out=np.zeros((8, 8)), where=count > 0)
    np.testing.assert_allclose(drop, expected, rtol=1e-10, atol=1e-12)
    assert drop[7, 7] == 0.0  # no 3 x 3 square at stride 2 covers the last row and column
    with pytest.raises(ValueError, match="patch"):
        occlusion_map(model, image, patch=9)


# ----- data ---------------------------------------------------------------------------------------------------


def test_digits_images_use_chapter_4s_split():
    X, y, _ = load_tabular("digits")
    chapter4 = train_val_test_split(X / 16.0, y, val=0.2, test=0.2, seed=0)
    data = images.digits_images()
    assert data.name == "digits" and data.image_size == 8
    for part in ("train", "val", "test"):
        got = getattr(data.split, f"X_{part}")
        assert got.dtype == np.float32 and got.shape[1:] == (1, 8, 8)
        np.testing.assert_array_equal(got.reshape(len(got), 64), getattr(chapter4, f"X_{part}").astype(np.float32))
        np.testing.assert_array_equal(getattr(data.split, f"y_{part}"), getattr(chapter4, f"y_{part}"))
    assert data.split.sizes == (1079, 359, 359)


def test_digits_images_resized():
    data = images.digits_images(size=28)
    assert data.split.X_test.shape == (359, 1, 28, 28)
    assert 0.0 <= data.split.X_test.min() and data.split.X_test.max() <= 1.0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        images.resize_images(np.zeros((8, 8)), 4)


def test_load_mnist_falls_back_offline_and_says_why(monkeypatch):
    monkeypatch.setattr(images, "reachable", lambda host, timeout: False)
    data = images.load_mnist("fashion", timeout=0.5)
    assert data.name == "digits" and data.image_size == 28
    assert "fashion is not available" in data.message and "www.openml.org" in data.message
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        images.load_mnist("cifar")


def test_load_mnist_falls_back_when_the_download_fails(monkeypatch):
    import sklearn.datasets

    def broken(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(images, "reachable", lambda host, timeout: True)
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", broken)
    data = images.load_mnist(fallback_size=8)
    assert data.name == "digits" and data.image_size == 8 and "connection reset" in data.message


def test_load_mnist_returns_within_its_timeout_here():
    # On a machine without a network (as where the book is built) the real check must give up in time.
    if images.reachable(images.OPENML_HOST, timeout=1.0):
        pytest.skip("OpenML is reachable from here: the offline path cannot be timed")
    start = time.perf_counter()
    data = images.load_mnist(timeout=1.0)
    assert time.perf_counter() - start < 3.0
    assert data.name == "digits"


def test_openml_split_is_the_standard_one():
    X = np.arange(700, dtype=np.float64)[:, None].repeat(784, axis=1) % 256
    y = np.arange(700) % 10
    assert images._split_openml(X, y, val_fraction=0.1, max_train=None, n_train=600).sizes == (540, 60, 100)
    split = images._split_openml(X, y, val_fraction=0.1, max_train=100, n_train=600)
    assert split.sizes == (100, 60, 100)
    assert split.test_idx[0] == 600 and split.val_idx[0] == 540
    np.testing.assert_array_equal(split.y_test, y[600:])
    assert split.X_train.shape == (100, 1, 28, 28) and split.X_train.max() <= 1.0


# ----- the chapter's training recipe --------------------------------------------------------------------------


def test_with_shifted_copies_appends_augmented_copies():
    from lmbook.cnn import with_shifted_copies
    from lmbook.preprocessing import augment_digits

    split = images.digits_images().split
    X, y = with_shifted_copies(split.X_train[:20], split.y_train[:20], copies=2, seed=0)
    assert X.shape == (60, 1, 8, 8) and X.dtype == np.float32 and y.shape == (60,)
    np.testing.assert_array_equal(X[:20], split.X_train[:20])
    np.testing.assert_allclose(X[40:, 0], augment_digits(split.X_train[:20, 0], seed=2, shift=1), rtol=1e-6)
    np.testing.assert_array_equal(y, np.tile(split.y_train[:20], 3))
    assert not np.array_equal(X[20:40], X[:20])
    with pytest.raises(ValueError, match=r"images \(N, 1, H, W\)"):
        with_shifted_copies(split.X_train[:, 0], split.y_train)


def test_train_digits_cnn_keeps_the_best_validation_epoch_and_never_sees_the_test_set():
    from lmbook.cnn import train_digits_cnn

    split = images.digits_images().split
    small = {"X_train": split.X_train[:200], "y_train": split.y_train[:200], "train_idx": split.train_idx[:200]}
    poisoned = split.__class__(**{**vars(split), **small, "X_test": np.full_like(split.X_test, np.nan)})
    run = train_digits_cnn(poisoned, copies=1, epochs=3, patience=1)
    assert run.train_images == 400 and run.seconds > 0
    assert 1 <= run.history.epochs_run <= 3 and not run.model.training
    with torch.no_grad():
        logits = run.model(torch.as_tensor(split.X_val))
    val_loss = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(split.y_val)))
    assert val_loss == pytest.approx(run.history.val_loss.min(), rel=1e-4)
