"""lmbook.conv against torch.nn.functional: values and gradients in float64, ties in max pooling, error messages."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d as scipy_convolve2d
from torch.testing import assert_close

from lmbook.conv import (
    avg_pool2d,
    avg_pool2d_backward,
    conv2d,
    conv2d_backward,
    conv2d_loops,
    conv_output_size,
    convolve2d,
    fold,
    max_pool2d,
    max_pool2d_backward,
    unfold,
)
from lmbook.testing import ShapeError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (B, C_in, C_out, H, W, kernel, stride, padding, dilation): square and rectangular images and kernels, int and
# pair arguments, a batch of one and of several, one and several channels.
CONV_CASES = [
    (1, 1, 1, 5, 5, 3, 1, 0, 1),
    (2, 3, 4, 7, 6, 3, 1, 1, 1),
    (3, 2, 5, 8, 9, (3, 2), 2, 0, 1),
    (2, 1, 2, 9, 9, 3, (2, 3), (1, 2), 1),
    (1, 2, 3, 10, 8, 3, 1, 2, 2),
    (2, 3, 2, 11, 7, (2, 3), (3, 1), (0, 1), (2, 1)),
    (4, 1, 1, 6, 6, 1, 1, 0, 1),
    (1, 4, 2, 5, 5, 5, 1, 2, 1),
]


def _case(B, C_in, C_out, H, W, k, seed=0):
    rng = np.random.default_rng(seed)
    kH, kW = (k, k) if isinstance(k, int) else k
    return rng.normal(size=(B, C_in, H, W)), rng.normal(size=(C_out, C_in, kH, kW)), rng.normal(size=C_out)


def _torch_conv(x, w, b, stride, padding, dilation, grad_out=None):
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation)
    if grad_out is None:
        return out.detach().numpy()
    out.backward(torch.tensor(grad_out))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("B, C_in, C_out, H, W, k, s, p, d", CONV_CASES)
def test_conv2d_and_loops_equal_torch(B, C_in, C_out, H, W, k, s, p, d):
    x, w, b = _case(B, C_in, C_out, H, W, k)
    expected = _torch_conv(x, w, b, s, p, d)
    assert_close(conv2d(x, w, b, s, p, d), expected)
    assert_close(conv2d_loops(x, w, b, s, p, d), expected)
    assert_close(conv2d(x, w, None, s, p, d), _torch_conv(x, w, 0 * b, s, p, d))


@pytest.mark.parametrize("B, C_in, C_out, H, W, k, s, p, d", CONV_CASES)
def test_conv2d_backward_equals_torch_autograd(B, C_in, C_out, H, W, k, s, p, d):
    x, w, b = _case(B, C_in, C_out, H, W, k)
    grad_out = np.random.default_rng(1).normal(size=conv2d(x, w, b, s, p, d).shape)
    grads = conv2d_backward(grad_out, x, w, s, p, d)
    for ours, theirs, name in zip(grads, _torch_conv(x, w, b, s, p, d, grad_out), ("x", "weight", "bias"), strict=True):
        assert_close(ours, theirs, msg=lambda m, name=name: f"gradient of {name}: {m}")


def test_unfold_and_fold_equal_torch():
    x, _, _ = _case(2, 3, 1, 7, 8, 3)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    cols = unfold(x, **kw)
    assert_close(cols, F.unfold(torch.tensor(x), **kw).numpy())
    assert_close(fold(cols, (7, 8), **kw), F.fold(torch.tensor(cols), (7, 8), **kw).numpy())


def test_output_size_formula_matches_torch_for_many_settings():
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, 3):
                    for d in range(1, 3):
                        if d * (k - 1) + 1 > n + 2 * p:
                            with pytest.raises(ValueError, match="output would be empty"):
                                conv_output_size(n, k, s, p, d)
                            continue
                        out = F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
                        assert conv_output_size(n, k, s, p, d) == out.shape[-1], (n, k, s, p, d)


def test_convolve2d_flips_the_kernel_like_scipy():
    x, w, _ = _case(1, 1, 1, 6, 7, (3, 2))
    assert_close(convolve2d(x, w)[0, 0], scipy_convolve2d(x[0, 0], w[0, 0], mode="valid"))
    # An asymmetric kernel: cross-correlation and convolution differ.
    assert np.abs(convolve2d(x, w) - conv2d(x, w)).max() > 0.1


POOL_CASES = [  # (B, C, H, W, kernel, stride, padding)
    (1, 1, 4, 4, 2, None, 0),
    (2, 3, 7, 6, 3, 2, 1),
    (2, 2, 8, 9, (2, 3), (1, 2), (1, 0)),
    (1, 2, 6, 6, 3, 1, 0),
    (3, 1, 5, 7, 2, 1, 1),
]


def _torch_pool(fn, x, grad_out, **kw):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt, **kw)
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("B, C, H, W, k, s, p", POOL_CASES)
def test_max_pool_equals_torch(B, C, H, W, k, s, p):
    x = np.random.default_rng(2).normal(size=(B, C, H, W))
    out = max_pool2d(x, k, s, p)
    grad_out = np.random.default_rng(3).normal(size=out.shape)
    expected, expected_grad = _torch_pool(F.max_pool2d, x, grad_out, kernel_size=k, stride=s, padding=p)
    assert_close(out, expected)
    assert_close(max_pool2d_backward(grad_out, x, k, s, p), expected_grad)


def test_max_pool_with_dilation_equals_torch():
    x = np.random.default_rng(4).normal(size=(2, 2, 9, 8))
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=2)
    out = max_pool2d(x, **kw)
    grad_out = np.ones_like(out)
    expected, expected_grad = _torch_pool(F.max_pool2d, x, grad_out, **kw)
    assert_close(out, expected)
    assert_close(max_pool2d_backward(grad_out, x, **kw), expected_grad)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("B, C, H, W, k, s, p", POOL_CASES)
def test_avg_pool_equals_torch(B, C, H, W, k, s, p, count_include_pad):
    x = np.random.default_rng(5).normal(size=(B, C, H, W))
    out = avg_pool2d(x, k, s, p, count_include_pad)
    grad_out = np.random.default_rng(6).normal(size=out.shape)
    expected, expected_grad = _torch_pool(
        F.avg_pool2d, x, grad_out, kernel_size=k, stride=s, padding=p, count_include_pad=count_include_pad
    )
    assert_close(out, expected)
    assert_close(avg_pool2d_backward(grad_out, x, k, s, p, count_include_pad), expected_grad)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_ties_send_the_gradient_to_one_entry_like_torch(stride):
    # Integer-valued images with many equal values: most windows hold several tied maxima.
    x = np.random.default_rng(7).integers(0, 2, size=(2, 2, 6, 6)).astype(np.float64)
    x[0, 0] = 1.0  # every window of this map is one big tie
    out = max_pool2d(x, 2, stride)
    grad_out = np.random.default_rng(8).normal(size=out.shape)
    expected, expected_grad = _torch_pool(F.max_pool2d, x, grad_out, kernel_size=2, stride=stride)
    ours = max_pool2d_backward(grad_out, x, 2, stride)
    assert_close(ours, expected_grad)
    # One entry per window gets the gradient: the top-left one where all four tie, not a quarter to each.
    if stride == 2:
        assert_close(ours[0, 0, ::2, ::2], grad_out[0, 0])
        assert not ours[0, 0, 1::2].any() and not ours[0, 0, :, 1::2].any()


def test_overlapping_max_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre is the maximum of all four 2 x 2 windows
    grad = max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, 1)
    assert grad[0, 0, 1, 1] == 4.0 and grad.sum() == 4.0


def test_shape_errors_name_expected_and_actual_shapes():
    x, w, b = _case(2, 3, 4, 6, 6, 3)
    with pytest.raises(
        ShapeError, match=r"weight: expected shape \(C_out, C_in, kH, kW\), got \(4, 2, 3, 3\) \[C_in=3\]"
    ):
        conv2d(x, w[:, :2], b)
    with pytest.raises(ShapeError, match=r"bias: expected shape \(C_out,\), got \(3,\) \[C_out=4\]"):
        conv2d(x, w, b[:3])
    with pytest.raises(ShapeError, match=r"x: expected shape \(B, C_in, H, W\), got \(3, 6, 6\)"):
        conv2d_loops(x[0], w, b)
    with pytest.raises(ShapeError, match=r"grad_out: expected shape \(2, 4, 4, 4\), got \(2, 4, 5, 5\)"):
        conv2d_backward(np.zeros((2, 4, 5, 5)), x, w)
    with pytest.raises(ShapeError, match=r"grad_out: expected shape \(2, 3, 3, 3\), got \(2, 3, 6, 6\)"):
        max_pool2d_backward(x, x, 2)


def test_argument_errors_are_readable():
    x, w, _ = _case(1, 1, 1, 4, 4, 5)
    with pytest.raises(ValueError, match=r"kernel spans 5 positions .* padded input has only 4"):
        conv2d(x, w)
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        conv2d(x, w, stride=(1, 2, 3), padding=2)
    with pytest.raises(ValueError, match="need stride >= 1"):
        conv2d(x, w, stride=0, padding=2)
    with pytest.raises(ValueError, match="at most half the kernel"):
        max_pool2d(x, 2, padding=2)
