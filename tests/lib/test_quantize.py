"""Tests of lmbook.quantize: the integer ranges, the scales and zero points against PyTorch's observers, the
integers against torch.quantize_per_tensor / quantize_per_channel, the rounding-error bound, fake quantisation and
its straight-through gradient against torch.fake_quantize_per_tensor_affine / per_channel_affine."""

import copy

import pytest
import torch
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from lmbook.quantize import (
    QUANT_METHODS,
    VARIANT_NAMES,
    QuantizedLinear,
    dequantize,
    fake_quantize,
    integer_matmul,
    load_torchao,
    quant_params,
    quant_range,
    quantize,
    quantize_model,
)
from lmbook.testing import ShapeError

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # torch's quantized tensors are deprecated as a tool; here they are only the reference for the integers.
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor.*deprecated:UserWarning"),
]


def _weights(seed=0, shape=(16, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * torch.rand(shape[0], 1, generator=g) * 3


def test_quant_range():
    assert quant_range(8) == (-128, 127)
    assert quant_range(4) == (-8, 7)
    assert quant_range(2) == (-2, 1)
    assert quant_range(8, signed=False) == (0, 255)
    info = torch.iinfo(torch.int8)
    assert quant_range(8) == (info.min, info.max)
    for bad in (1, 17, 8.0, True, "8"):
        with pytest.raises(ValueError, match="bits must be an integer from 2 to 16"):
            quant_range(bad)


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_per_tensor_params_and_integers_match_torch(scheme):
    x = _weights(1) + 0.7  # shifted, so the affine zero point is not 0
    qscheme = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
    observer = MinMaxObserver(dtype=torch.qint8, qscheme=qscheme)
    observer(x)
    ref_scale, ref_zero = observer.calculate_qparams()
    scale, zero_point = quant_params(x, 8, scheme)
    assert scale.shape == () and zero_point.shape == () and zero_point.dtype == torch.int32
    torch.testing.assert_close(scale, ref_scale[0] if ref_scale.ndim else ref_scale)
    assert int(zero_point) == int(ref_zero)
    q = quantize(x, scale, zero_point)
    assert q.dtype == torch.int8
    ref = torch.quantize_per_tensor(x, float(scale), int(zero_point), torch.qint8)
    assert torch.equal(q, ref.int_repr())
    torch.testing.assert_close(dequantize(q, scale, zero_point), ref.dequantize())


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_per_channel_params_and_integers_match_torch(scheme):
    x = _weights(2) - 0.3
    qscheme = torch.per_channel_affine if scheme == "affine" else torch.per_channel_symmetric
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=qscheme)
    observer(x)
    ref_scale, ref_zero = observer.calculate_qparams()
    scale, zero_point = quant_params(x, 8, scheme, axis=0)
    assert scale.shape == (16, 1) and zero_point.shape == (16, 1)
    torch.testing.assert_close(scale.flatten(), ref_scale.float())
    assert torch.equal(zero_point.flatten().long(), ref_zero.long())
    q = quantize(x, scale, zero_point)
    ref = torch.quantize_per_channel(x, scale.flatten().double(), zero_point.flatten().long(), 0, torch.qint8)
    assert torch.equal(q, ref.int_repr())
    torch.testing.assert_close(dequantize(q, scale, zero_point), ref.dequantize())


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_fake_quantize_values_and_gradient_match_torch_per_tensor(bits, scheme):
    # float32 like torch's kernel: the straight-through gradient is a 0/1 mask, exact in any precision.
    x = torch.randn(200, generator=torch.Generator().manual_seed(bits)).requires_grad_()
    q_min, q_max = quant_range(bits)
    scale, zero_point = quant_params(x, bits, scheme)
    ours = fake_quantize(x, bits, scheme)
    ref_x = x.detach().float().requires_grad_()
    ref = torch.fake_quantize_per_tensor_affine(ref_x, float(scale), int(zero_point), q_min, q_max)
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn(200, generator=torch.Generator().manual_seed(99))
    ours.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(x.grad, ref_x.grad)


def test_fake_quantize_gradient_is_zero_where_clamped_like_torch():
    # Parameters calibrated on a narrower tensor: the outer values of x are clamped and get no gradient.
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    scale, zero_point = quant_params(x.detach()[30:70], 8, "affine")
    ours = fake_quantize(x, 8, scale=scale, zero_point=zero_point)
    ref_x = x.detach().float().requires_grad_()
    ref = torch.fake_quantize_per_tensor_affine(ref_x, float(scale), int(zero_point), -128, 127)
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    assert torch.equal(x.grad, ref_x.grad)
    assert 0 < x.grad.sum() < 101  # some clamped, some not


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_fake_quantize_per_channel_values_and_gradient_match_torch(scheme):
    x = _weights(3).requires_grad_()
    scale, zero_point = quant_params(x, 4, scheme, axis=0)
    ours = fake_quantize(x, 4, scheme, axis=0)
    ref_x = x.detach().float().requires_grad_()
    ref = torch.fake_quantize_per_channel_affine(
        ref_x, scale.flatten().float(), zero_point.flatten().int(), 0, *quant_range(4)
    )
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    ours.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(x.grad, ref_x.grad)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("axis", [None, 0])
def test_error_at_most_half_a_scale_and_zero_exact(bits, scheme, axis):
    x = _weights(4)
    x[0, 0] = 0.0
    scale, zero_point = quant_params(x, bits, scheme, axis)
    q_min, q_max = quant_range(bits)
    assert ((zero_point >= q_min) & (zero_point <= q_max)).all()
    x_hat = dequantize(quantize(x, scale, zero_point, bits), scale, zero_point)
    # s / 2 up to float32 rounding of x / s (a few ulps of x)
    assert ((x - x_hat).abs() <= scale / 2 + 4e-7 * x.abs()).all()
    assert x_hat[0, 0] == 0.0


def test_constant_and_zero_tensors_do_not_divide_by_zero():
    for x in (torch.zeros(5, 3), torch.full((5, 3), 2.5), torch.full((5, 3), -1.0)):
        for scheme in ("affine", "symmetric"):
            for axis in (None, 0):
                scale, zero_point = quant_params(x, 8, scheme, axis)
                assert torch.isfinite(scale).all() and (scale > 0).all()
                x_hat = fake_quantize(x, 8, scheme, axis)
                assert torch.isfinite(x_hat).all()
                torch.testing.assert_close(x_hat, x, atol=float(scale.max()) / 2, rtol=0)
    w = _weights(6)
    w[3] = 0.0  # one dead output channel
    scale, _ = quant_params(w, 8, "symmetric", axis=0)
    assert scale[3] == torch.finfo(torch.float32).eps


def test_order_of_operations_round_after_scaling_and_clamp_last():
    scale, zero_point = torch.tensor(0.5), torch.tensor(-100, dtype=torch.int32)
    x = torch.tensor([0.74, 0.76, 1000.0, -1000.0])
    # 0.74/0.5 = 1.48 -> 1; rounding x first would give 1/0.5 = 2. Outside the range: saturate, never wrap.
    assert quantize(x, scale, zero_point).tolist() == [-99, -98, 127, -128]


def test_affine_zero_point_inside_range_for_one_signed_tensors():
    positive = torch.rand(100) + 1.0  # all > 0: the range is [0, max], z = q_min
    negative = -positive
    _, z_pos = quant_params(positive, 8, "affine")
    _, z_neg = quant_params(negative, 8, "affine")
    assert int(z_pos) == -128 and int(z_neg) == 127


def test_bad_arguments_name_the_argument():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="unknown scheme 'asym'; choose one of 'affine', 'symmetric'"):
        quant_params(x, scheme="asym")
    with pytest.raises(ValueError, match="axis must be None"):
        quant_params(x, axis=2)
    with pytest.raises(TypeError, match="float tensor"):
        quant_params(torch.arange(4))
    with pytest.raises(ValueError, match="zero_point must lie in q_min..q_max = -128..127"):
        quantize(x, 0.1, 200)
    with pytest.raises(ValueError, match="scale must be positive"):
        quantize(x, 0.0, 0)
    with pytest.raises(ValueError, match="give both"):
        fake_quantize(x, scale=torch.tensor(0.1))


def test_integer_matmul_is_exact():
    g = torch.Generator().manual_seed(7)
    a = torch.randint(-128, 128, (5, 300), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (300, 17), generator=g, dtype=torch.int8)
    a[0] = -128
    b[:, 0] = -128  # the largest product, 300 times: 4,915,200 needs more than 16 bits
    c = integer_matmul(a, b)
    assert c.dtype == torch.int32
    assert torch.equal(c.long(), a.long() @ b.long())
    assert c[0, 0] == 300 * 128 * 128
    with pytest.raises(TypeError, match="int8"):
        integer_matmul(a.float(), b)
    with pytest.raises(ShapeError, match=r"b: expected shape \(K, N\), got \(17, 300\) \[K=300\]"):
        integer_matmul(a, b.t().contiguous())


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_matches_torchao_exactly(bias):
    tq = load_torchao()
    torch.manual_seed(0)
    linear = nn.Linear(96, 40, bias=bias)
    x = torch.randn(3, 7, 96)
    ours = QuantizedLinear(linear)
    reference = copy.deepcopy(linear)
    # torchao's int8 x int8 path with one activation scale per tensor (its default is one per token)
    tq.quantize_(reference, tq.Int8DynamicActivationInt8WeightConfig(granularity=[tq.PerTensor(), tq.PerRow()]))
    assert torch.equal(ours.weight_q, reference.weight.qdata)
    assert torch.equal(ours.weight_scale, reference.weight.scale)
    with torch.no_grad():
        y, y_ref, y_float = ours(x), reference(x), linear(x)
    assert y.shape == (3, 7, 40)
    assert torch.equal(y, y_ref)  # the same integers and the same rescaling, bit for bit
    assert 0 < (y - y_float).abs().max() < 0.05 * y_float.abs().max()


def test_quantized_linear_checks_its_input():
    layer = QuantizedLinear(nn.Linear(8, 4))
    with pytest.raises(ShapeError, match=r"x: expected shape \(\*, C_in\), got \(2, 5\) \[C_in=8\]"):
        layer(torch.randn(2, 5))
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantizedLinear(nn.Conv1d(2, 2, 1))


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
        self.classifier = nn.Linear(64, 2)

    def forward(self, x):
        return self.classifier(self.encoder(x))


@pytest.mark.parametrize("method", QUANT_METHODS)
def test_quantize_model_is_a_quantised_copy(method):
    model = _Tiny().eval()
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        quantized = quantize_model(model, method)
        after = quantized(x)
    assert type(model.encoder[0].weight) is nn.Parameter and type(model.encoder[0].weight.data) is torch.Tensor
    assert torch.equal(model(x), before)  # the original is untouched
    assert type(quantized.encoder[0].weight.data) is not torch.Tensor  # a torchao tensor subclass
    assert type(quantized.classifier.weight.data) is torch.Tensor  # the head is skipped by default
    tolerance = 0.05 if method.startswith("int8") else 0.25
    assert 0 < (after - before).abs().max() < tolerance * before.abs().max()


def test_variant_names_cover_the_methods():
    assert list(VARIANT_NAMES) == list(QUANT_METHODS)
    assert len(set(VARIANT_NAMES.values())) == len(QUANT_METHODS)


def test_quantize_model_skip():
    model = _Tiny().eval()
    everything = quantize_model(model, "int8-weight", skip=())
    assert type(everything.classifier.weight.data) is not torch.Tensor
    partly = quantize_model(model, "int8-weight", skip=["encoder.0"])
    assert type(partly.encoder[0].weight.data) is torch.Tensor
    assert type(partly.encoder[2].weight.data) is not torch.Tensor
    with pytest.raises(ValueError, match="skip names no module of the model: 'head'"):
        quantize_model(model, "int8-weight", skip=["head"])
    with pytest.raises(ValueError, match="unknown method 'int3'; choose one of 'int8-dynamic', 'int8-weight'"):
        quantize_model(model, "int3")


def test_more_than_8_bits_use_int16():
    x = _weights(8)
    scale, zero_point = quant_params(x, 12, "affine")
    q = quantize(x, scale, zero_point, bits=12)
    assert q.dtype == torch.int16 and int(q.min()) >= -2048 and int(q.max()) <= 2047
    assert q.min() == -2048 and q.max() == 2047  # affine uses the whole range
    assert ((dequantize(q, scale, zero_point) - x).abs() <= scale / 2 + 4e-7 * x.abs()).all()
