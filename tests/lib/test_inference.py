"""Tests of lmbook.inference: the saved bytes of a model against the bytes of its numbers, for float and
torchao-quantised weights."""

import copy
import logging

import pytest
import torch
from torch import nn

from lmbook.inference import saved_bytes
from lmbook.memory import parameter_bytes


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64))


def test_saved_bytes_are_the_numbers_plus_a_small_overhead():
    model = _mlp()
    numbers = parameter_bytes(model)  # 4 bytes per float32 parameter
    assert numbers == 4 * (256 * 256 + 256 + 256 * 64 + 64)
    size = saved_bytes(model)
    assert numbers < size < numbers + 8_000
    assert saved_bytes(model.state_dict()) == size
    half = copy.deepcopy(model).to(torch.float16)
    assert numbers / 2 < saved_bytes(half) < numbers / 2 + 8_000


def test_saved_bytes_of_a_torchao_int8_model():
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = _mlp()
    quantised = copy.deepcopy(model)
    quantize_(quantised, Int8WeightOnlyConfig())
    weights = 256 * 256 + 256 * 64  # one byte each, plus a float scale per output channel and the float biases
    assert weights < saved_bytes(quantised) < weights + 4 * (256 + 64) * 2 + 16_000
    assert saved_bytes(quantised) < saved_bytes(model) / 3


def test_saved_bytes_rejects_other_objects():
    with pytest.raises(TypeError, match="nn.Module or a state dict, got list"):
        saved_bytes([torch.zeros(3)])
