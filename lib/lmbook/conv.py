"""Convolution and pooling from scratch in numpy, in the layout PyTorch uses: ``(B, C, H, W)`` ("NCHW").

Introduced in chapter 5, Convolutional networks (sections "Convolution from scratch" and "Pooling and the classic
architecture"). Every function here computes what its ``torch.nn.functional`` namesake computes, and the tests
compare values and gradients with torch in float64.

Two versions of the same convolution are kept on purpose:

- :func:`conv2d_loops` is the definition written as loops over images, output channels and output pixels: slow,
  but each line is one piece of the formula.
- :func:`conv2d` first copies every receptive window of the input into a column of a matrix (:func:`unfold`,
  also called *im2col*) and then does one matrix product, which is how libraries turned convolution into the
  fast matrix multiplication that BLAS and GPUs offer (Chellapilla, Puri and Simard, 2006, "High performance
  convolutional neural networks for document processing").

Like every deep-learning library, ``conv2d`` computes a *cross-correlation*: the kernel is not flipped.
:func:`convolve2d` is the convolution of mathematics and signal processing, which flips it.

Shape letters: ``B`` batch, ``C`` channels (``C_in``, ``C_out``), ``H, W`` input height and width, ``kH, kW``
kernel height and width, ``oH, oW`` output height and width, ``L = oH * oW`` output positions.
"""

from __future__ import annotations

import numpy as np

from lmbook.testing import check_shape

IntOrPair = int | tuple[int, int]


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 1)`` stays; anything else is an error naming the argument."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int | np.integer) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")


def _geometry(stride, padding, dilation):
    """The three hyper-parameters as pairs, checked: stride >= 1, padding >= 0, dilation >= 1."""
    s, p, d = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"need stride >= 1, padding >= 0 and dilation >= 1, got stride={s}, padding={p}, dilation={d}")
    return s, p, d


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Length of a convolution's (or pooling's) output along one axis of length ``n``.

    The kernel covers ``dilation * (kernel - 1) + 1`` input positions. After padding both sides by ``padding``
    it fits ``n + 2 padding - dilation (kernel - 1) - 1`` positions past its first one, and it moves ``stride``
    at a time, so the output has ``floor((n + 2 padding - dilation (kernel - 1) - 1) / stride) + 1`` positions.
    The floor means that input rows the kernel cannot reach with a full step are silently dropped.

    Raises:
        ValueError: if the (dilated) kernel is larger than the padded input, so the output would be empty.
    """
    if min(n, kernel, stride, dilation) < 1 or padding < 0:
        raise ValueError(
            f"need n, kernel, stride, dilation >= 1 and padding >= 0, got n={n}, kernel={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    span = dilation * (kernel - 1) + 1
    if span > n + 2 * padding:
        raise ValueError(
            f"the kernel spans {span} positions (kernel {kernel}, dilation {dilation}) but the padded input has "
            f"only {n + 2 * padding} (n={n}, padding={padding}): the output would be empty"
        )
    return (n + 2 * padding - span) // stride + 1


def _check_input(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    check_shape(x, ("B", "C", "H", "W"), name)
    return x


def _output_hw(hw, kernel, stride, padding, dilation):
    return tuple(conv_output_size(hw[a], kernel[a], stride[a], padding[a], dilation[a]) for a in range(2))


def _pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by ``padding = (pH, pW)`` on both sides."""
    pH, pW = padding
    return np.pad(x, ((0, 0), (0, 0), (pH, pH), (pW, pW)), constant_values=value)


def _patches(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Every window of the padded input ``xp`` (B, C, Hp, Wp), as an array (B, C, kH, kW, oH, oW).

    ``[..., i, j, r, c]`` is the input pixel that kernel position ``(i, j)`` sees at output position
    ``(r, c)``: row ``r * sH + i * dH``, column ``c * sW + j * dW``. One strided slice per kernel position, so
    the Python loop runs ``kH * kW`` times, not once per output pixel.
    """
    (kH, kW), (sH, sW), (dH, dW), (oH, oW) = kernel, stride, dilation, out_hw
    B, C = xp.shape[:2]
    cols = np.empty((B, C, kH, kW, oH, oW), dtype=xp.dtype)
    for i in range(kH):
        for j in range(kW):
            cols[:, :, i, j] = xp[
                :, :, i * dH : i * dH + sH * (oH - 1) + 1 : sH, j * dW : j * dW + sW * (oW - 1) + 1 : sW
            ]
    return cols


def _add_patches(cols: np.ndarray, padded_hw, stride, dilation) -> np.ndarray:
    """The adjoint of :func:`_patches`: add each window entry back to the pixel it came from (B, C, Hp, Wp).

    Where windows overlap, a pixel appears in several of them and receives the sum of their entries; this is
    exactly what the chain rule asks for when a pixel was used several times.
    """
    B, C, kH, kW, oH, oW = cols.shape
    (sH, sW), (dH, dW) = stride, dilation
    xp = np.zeros((B, C, *padded_hw), dtype=cols.dtype)
    for i in range(kH):
        for j in range(kW):
            xp[:, :, i * dH : i * dH + sH * (oH - 1) + 1 : sH, j * dW : j * dW + sW * (oW - 1) + 1 : sW] += cols[
                :, :, i, j
            ]
    return xp


def unfold(x, kernel_size: IntOrPair, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1):
    """im2col: each receptive window of ``x`` (B, C, H, W) as a column, like ``torch.nn.functional.unfold``.

    Returns:
        (B, C * kH * kW, L) with ``L = oH * oW``; rows ordered channel first, then kernel row, then kernel column
        (the order in which ``weight.reshape(C_out, -1)`` lists a kernel's entries).
    """
    x = _check_input(x)
    k = _pair(kernel_size, "kernel_size")
    s, p, d = _geometry(stride, padding, dilation)
    out_hw = _output_hw(x.shape[2:], k, s, p, d)
    cols = _patches(_pad(x, p), k, s, d, out_hw)  # (B, C, kH, kW, oH, oW)
    B, C = x.shape[:2]
    return cols.reshape(B, C * k[0] * k[1], out_hw[0] * out_hw[1])


def fold(cols, output_size: IntOrPair, kernel_size: IntOrPair, stride=1, padding=0, dilation=1) -> np.ndarray:
    """col2im, the adjoint of :func:`unfold`, like ``torch.nn.functional.fold``: columns back to (B, C, H, W).

    Entries of overlapping windows that come from the same pixel are added; padding is cut off.

    Args:
        cols: (B, C * kH * kW, L). output_size: ``(H, W)`` of the image the columns came from.
    """
    H, W = _pair(output_size, "output_size")
    k = _pair(kernel_size, "kernel_size")
    s, p, d = _geometry(stride, padding, dilation)
    oH, oW = _output_hw((H, W), k, s, p, d)
    cols = np.asarray(cols, dtype=np.float64)
    check_shape(cols, ("B", None, oH * oW), "cols")
    if cols.shape[1] % (k[0] * k[1]):
        raise ValueError(f"cols: axis 1 has {cols.shape[1]} rows, not a multiple of kH * kW = {k[0] * k[1]}")
    B, C = cols.shape[0], cols.shape[1] // (k[0] * k[1])
    xp = _add_patches(cols.reshape(B, C, *k, oH, oW), (H + 2 * p[0], W + 2 * p[1]), s, d)
    return xp[:, :, p[0] : p[0] + H, p[1] : p[1] + W]


def _check_conv_args(x, weight, bias):
    dims: dict[str, int] = {}
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    check_shape(x, ("B", "C_in", "H", "W"), "x", dims)
    check_shape(weight, ("C_out", "C_in", "kH", "kW"), "weight", dims)
    if bias is not None:
        bias = check_shape(np.asarray(bias, dtype=np.float64), ("C_out",), "bias", dims)
    return x, weight, bias


def conv2d_loops(x, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1):
    """The 2-D convolution layer (a cross-correlation), written as loops: the definition, one line at a time.

    ``out[b, o, r, c] = bias[o] + sum over ci, i, j of weight[o, ci, i, j] * xp[b, ci, r sH + i dH, c sW + j dW]``,
    with ``xp`` the zero-padded input. Slow (four Python loops); :func:`conv2d` computes the same faster.

    Args:
        x: (B, C_in, H, W). weight: (C_out, C_in, kH, kW). bias: (C_out,) or None.
        stride, padding, dilation: an int or a pair (height, width), as in ``torch.nn.functional.conv2d``.

    Returns:
        (B, C_out, oH, oW), with ``oH = conv_output_size(H, kH, sH, pH, dH)`` and likewise ``oW``.
    """
    x, weight, bias = _check_conv_args(x, weight, bias)
    s, p, d = _geometry(stride, padding, dilation)
    B, C_out, (kH, kW) = x.shape[0], weight.shape[0], weight.shape[2:]
    oH, oW = _output_hw(x.shape[2:], (kH, kW), s, p, d)
    xp = _pad(x, p)
    out = np.zeros((B, C_out, oH, oW))
    for b in range(B):
        for o in range(C_out):
            for r in range(oH):
                for c in range(oW):
                    top, left = r * s[0], c * s[1]
                    window = xp[b, :, top : top + d[0] * (kH - 1) + 1 : d[0], left : left + d[1] * (kW - 1) + 1 : d[1]]
                    out[b, o, r, c] = np.sum(window * weight[o])  # (C_in, kH, kW) * (C_in, kH, kW), summed
                    if bias is not None:
                        out[b, o, r, c] += bias[o]
    return out


def conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1):
    """The 2-D convolution layer, vectorised: :func:`unfold` the input, then one matrix product.

    Same arguments, result and shapes as :func:`conv2d_loops` and ``torch.nn.functional.conv2d`` (without groups).
    """
    x, weight, bias = _check_conv_args(x, weight, bias)
    B, C_out = x.shape[0], weight.shape[0]
    kernel = weight.shape[2:]
    s, p, d = _geometry(stride, padding, dilation)
    oH, oW = _output_hw(x.shape[2:], kernel, s, p, d)
    cols = unfold(x, kernel, s, p, d)  # (B, C_in kH kW, L)
    out = weight.reshape(C_out, -1) @ cols  # (C_out, C_in kH kW) @ (B, C_in kH kW, L) -> (B, C_out, L)
    if bias is not None:
        out += bias[:, None]  # one bias per output channel, the same at every position and for every image
    return out.reshape(B, C_out, oH, oW)


def conv2d_backward(grad_out, x, weight, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1):
    """Gradients of a loss through :func:`conv2d`, given ``grad_out = dL/d(out)``.

    With ``cols = unfold(x)`` and ``out = W cols + bias`` (``W`` the weight as a (C_out, C_in kH kW) matrix),
    the three gradients are those of a linear layer applied at every output position:

    - ``dL/dbias[o]`` sums ``grad_out[:, o]`` over images and positions (the bias was used at every one);
    - ``dL/dW = sum over images of grad_out @ cols^T`` (every position contributes to the shared weight);
    - ``dL/dcols = W^T grad_out``, and :func:`fold` (col2im) adds each column entry back to its pixel.

    Args:
        grad_out: (B, C_out, oH, oW). x: (B, C_in, H, W), the forward input. weight: (C_out, C_in, kH, kW).

    Returns:
        ``(grad_x, grad_weight, grad_bias)`` with the shapes of ``x``, ``weight`` and ``(C_out,)``.
    """
    x, weight, _ = _check_conv_args(x, weight, None)
    B, C_out, H, W = x.shape[0], weight.shape[0], *x.shape[2:]
    kernel = weight.shape[2:]
    s, p, d = _geometry(stride, padding, dilation)
    oH, oW = _output_hw((H, W), kernel, s, p, d)
    grad_out = check_shape(np.asarray(grad_out, dtype=np.float64), (B, C_out, oH, oW), "grad_out")
    g = grad_out.reshape(B, C_out, oH * oW)  # (B, C_out, L)
    cols = unfold(x, kernel, s, p, d)  # (B, C_in kH kW, L)
    grad_bias = g.sum(axis=(0, 2))
    grad_weight = (g @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)  # one product per image, summed
    grad_cols = weight.reshape(C_out, -1).T @ g  # (C_in kH kW, C_out) @ (B, C_out, L) -> (B, C_in kH kW, L)
    grad_x = fold(grad_cols, (H, W), kernel, s, p, d)
    return grad_x, grad_weight, grad_bias


def convolve2d(x, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1):
    """Convolution as mathematics defines it: the kernel is flipped (rotated by 180 degrees) before sliding.

    ``(x * w)[r, c] = sum over i, j of x[r - i, c - j] w[i, j]``; over the positions where the kernel fits, that
    is :func:`conv2d` with ``weight[..., ::-1, ::-1]``. (scipy.signal.convolve2d computes this one; deep-learning
    libraries call the unflipped cross-correlation "convolution", and since the kernel is learned, nothing is
    lost: the network learns the flipped kernel instead.)
    """
    weight = np.asarray(weight, dtype=np.float64)
    check_shape(weight, (None, None, None, None), "weight")
    return conv2d(x, weight[:, :, ::-1, ::-1], bias, stride, padding, dilation)


def _pool_geometry(x, kernel_size, stride, padding, dilation=1):
    """Pairs for a pooling layer; ``stride=None`` means stride = kernel, torch's default (windows do not overlap)."""
    k = _pair(kernel_size, "kernel_size")
    s, p, d = _geometry(k if stride is None else stride, padding, dilation)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        # torch's rule: with more padding, a window could hold padding only.
        raise ValueError(f"padding {p} must be at most half the kernel {k}, as in torch")
    return k, s, p, d, _output_hw(x.shape[2:], k, s, p, d)


def _max_pool_windows(x, kernel_size, stride, padding, dilation):
    x = _check_input(x)
    k, s, p, d, out_hw = _pool_geometry(x, kernel_size, stride, padding, dilation)
    cols = _patches(_pad(x, p, -np.inf), k, s, d, out_hw)  # (B, C, kH, kW, oH, oW)
    B, C = x.shape[:2]
    return x, cols.reshape(B, C, k[0] * k[1], *out_hw), (k, s, p, d, out_hw)


def max_pool2d(x, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0,
               dilation: IntOrPair = 1) -> np.ndarray:  # fmt: skip
    """The largest value of each window, like ``torch.nn.functional.max_pool2d`` (padding counts as -infinity).

    Args:
        x: (B, C, H, W). kernel_size: window size. stride: defaults to ``kernel_size``. padding: at most half
            the kernel. dilation: spacing of the window's entries.

    Returns:
        (B, C, oH, oW).
    """
    _, windows, _ = _max_pool_windows(x, kernel_size, stride, padding, dilation)
    return windows.max(axis=2)


def max_pool2d_backward(grad_out, x, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                        padding: IntOrPair = 0, dilation: IntOrPair = 1) -> np.ndarray:  # fmt: skip
    """``dL/dx`` through :func:`max_pool2d`: each window passes its gradient to its maximum, and only to it.

    Where a window holds several equal maxima, the whole gradient goes to ONE of them, the first in row-major
    order (top row first, then left to right), which is what torch does on the CPU (found by experiment; the
    tests check it). It does not spread the gradient over the tied entries. Where windows overlap, a pixel that
    is the maximum of several windows receives the sum of their gradients.

    Args:
        grad_out: (B, C, oH, oW). x: (B, C, H, W), the forward input. The other arguments as in the forward call.
    """
    x, windows, (k, s, p, d, out_hw) = _max_pool_windows(x, kernel_size, stride, padding, dilation)
    B, C, H, W = x.shape
    grad_out = check_shape(np.asarray(grad_out, dtype=np.float64), (B, C, *out_hw), "grad_out")
    winner = windows.argmax(axis=2)  # (B, C, oH, oW): np.argmax returns the first of equal maxima
    grad_windows = np.zeros_like(windows)  # (B, C, kH kW, oH, oW)
    np.put_along_axis(grad_windows, winner[:, :, None], grad_out[:, :, None], axis=2)
    grad_xp = _add_patches(grad_windows.reshape(B, C, *k, *out_hw), (H + 2 * p[0], W + 2 * p[1]), s, d)
    return grad_xp[:, :, p[0] : p[0] + H, p[1] : p[1] + W]


def _avg_divisor(x_hw, k, s, p, out_hw, count_include_pad: bool) -> np.ndarray | int:
    if count_include_pad:
        return k[0] * k[1]
    real = _patches(_pad(np.ones((1, 1, *x_hw)), p), k, s, (1, 1), out_hw)  # 1 on real pixels, 0 on padding
    return real.sum(axis=(2, 3))[0, 0]  # (oH, oW): how many real pixels each window holds


def avg_pool2d(x, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0,
               count_include_pad: bool = True) -> np.ndarray:  # fmt: skip
    """The mean of each window, like ``torch.nn.functional.avg_pool2d`` (zero padding).

    ``count_include_pad=True`` (torch's default) divides every window by ``kH * kW``, padded entries included;
    ``False`` divides by the number of real pixels in the window.
    """
    x = _check_input(x)
    k, s, p, _, out_hw = _pool_geometry(x, kernel_size, stride, padding)
    windows = _patches(_pad(x, p), k, s, (1, 1), out_hw)  # (B, C, kH, kW, oH, oW)
    return windows.sum(axis=(2, 3)) / _avg_divisor(x.shape[2:], k, s, p, out_hw, count_include_pad)


def avg_pool2d_backward(grad_out, x, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                        padding: IntOrPair = 0, count_include_pad: bool = True) -> np.ndarray:  # fmt: skip
    """``dL/dx`` through :func:`avg_pool2d`: each window shares its gradient equally among its entries.

    Args:
        grad_out: (B, C, oH, oW). x: (B, C, H, W), the forward input (only its shape is used).
    """
    x = _check_input(x)
    B, C, H, W = x.shape
    k, s, p, _, out_hw = _pool_geometry(x, kernel_size, stride, padding)
    grad_out = check_shape(np.asarray(grad_out, dtype=np.float64), (B, C, *out_hw), "grad_out")
    share = grad_out / _avg_divisor((H, W), k, s, p, out_hw, count_include_pad)  # (B, C, oH, oW)
    grad_windows = np.broadcast_to(share[:, :, None, None], (B, C, *k, *out_hw))
    grad_xp = _add_patches(np.ascontiguousarray(grad_windows), (H + 2 * p[0], W + 2 * p[1]), s, (1, 1))
    return grad_xp[:, :, p[0] : p[0] + H, p[1] : p[1] + W]
