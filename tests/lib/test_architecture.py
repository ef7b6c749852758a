"""lmbook.architecture: receptive fields checked by autograd, layer costs checked against FlopCounterMode."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lmbook.architecture import FieldLayer, field_layers, layer_table, receptive_field

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stack(dilation=1):
    return nn.Sequential(
        nn.Conv2d(1, 2, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(2, 2, 3, stride=2, padding=1, dilation=dilation),
        nn.AvgPool2d(3, stride=1),
        nn.Conv2d(2, 1, (3, 1)),
    )


def _measured_field(model, size=64, axis=0):
    """Rows (or columns) of the input that one output unit depends on, found with autograd: (first, last) row."""
    with torch.no_grad():
        for m in model.modules():  # positive weights and inputs: no gradient cancels to exactly zero
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(0.1)
                m.bias.zero_()
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = model.double()(x)
    out[0, 0, 1, 1].backward()  # the unit at output position (1, 1)
    touched = x.grad[0, 0].abs().sum(dim=1 - axis).nonzero().flatten()
    return int(touched.min()), int(touched.max())


@pytest.mark.parametrize("dilation", [1, 2])
def test_receptive_field_matches_autograd(dilation):
    model = _stack(dilation)
    rows = receptive_field(field_layers(model))
    last = rows[-1]
    first, end = _measured_field(model)
    # The unit at output index 1 is centred at start + jump; its field reaches (size - 1) / 2 either side.
    centre = last.start + last.jump
    lo, hi = centre - (last.size - 1) / 2, centre + (last.size - 1) / 2
    assert (first, end) == (lo, hi), (rows, first, end)
    assert [r.name for r in rows] == ["input", "0", "2", "3", "4", "5"]


def test_receptive_field_of_the_width_axis_and_by_hand():
    model = _stack()
    width = receptive_field(field_layers(model, axis=1))
    assert width[-1].size == receptive_field(field_layers(model))[-2].size  # the last (3, 1) kernel adds no width
    first, end = _measured_field(model, axis=1)
    assert end - first + 1 == width[-1].size
    # Two 3 x 3 convolutions see 5 x 5, three see 7 x 7 (VGG's argument); a 2 x 2 pool doubles the jump.
    assert [r.size for r in receptive_field([FieldLayer("c", 3)] * 3)] == [1, 3, 5, 7]
    assert receptive_field([FieldLayer("p", 2, 2), FieldLayer("c", 3)])[-1].size == 6


def test_receptive_field_rejects_bad_layers():
    with pytest.raises(ValueError, match="need kernel, stride"):
        receptive_field([FieldLayer("bad", 0)])
    with pytest.raises(ValueError, match="adaptive pooling"):
        field_layers(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)))


def _mixed_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, groups=2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_flops_equal_torch_flop_counter(batch):
    model = _mixed_model()
    table = layer_table(model, (batch, 3, 28, 28))
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, 3, 28, 28))
    assert table.flops == counter.get_total_flops()
    assert table.params == sum(p.numel() for p in model.parameters()) == table.model_params


def test_layer_rows_shapes_params_and_macs_by_hand():
    table = layer_table(_mixed_model(), (2, 3, 28, 28))
    rows = {r.name: r for r in table.rows}
    assert rows["0"].output_shape == (2, 8, 28, 28) and rows["0"].params == 3 * 8 * 9 + 8
    assert rows["0"].macs == 2 * 8 * 28 * 28 * 3 * 9
    assert rows["1"].params == 16 and rows["1"].other_ops == 2 * 2 * 8 * 28 * 28  # batch norm: scale and shift
    assert rows["3"].output_shape == (2, 8, 14, 14) and rows["3"].other_ops == 2 * 8 * 14 * 14 * 4
    assert rows["4"].macs == 2 * 16 * 6 * 6 * 4 * 9  # groups=2: each output sees 8 / 2 input channels
    assert rows["9"].macs == 2 * 32 * 5 and rows["9"].flops == 2 * rows["9"].macs
    text = str(table)
    assert "FLOPs = 2 x multiply-adds" in text and f"{table.params:,}" in text


def test_a_layer_called_twice_counts_its_parameters_once_and_unknown_layers_are_listed():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.odd = nn.PixelShuffle(1)

        def forward(self, x):
            return self.odd(self.fc(self.fc(x))[:, :, None, None])

    table = layer_table(Twice(), (1, 4))
    assert [r.name for r in table.rows] == ["fc", "fc", "odd"]
    assert table.params == 20 and table.macs == 32
    assert table.uncounted == ("odd (PixelShuffle)",)
    assert "not costed" in str(table)


def test_layer_table_leaves_the_model_in_training_mode():
    model = _mixed_model().train()
    layer_table(model, (1, 3, 28, 28))
    assert model.training and model[1].training
