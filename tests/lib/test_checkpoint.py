"""Tests of lmbook.checkpoint, the generic shape-checked loader that lmbook.bert and lmbook.gpt2 use: conversions,
the report, and each error (an unmapped parameter, a wrong shape, a missing or unexplained entry)."""

import pytest
import torch
from torch import nn

from lmbook.checkpoint import LoadReport, load_mapped, read_state_dict
from lmbook.testing import ShapeError


def tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))


def checkpoint() -> dict[str, torch.Tensor]:
    return {
        "dense.w": torch.arange(6.0).reshape(3, 2),  # stored (in, out)
        "dense.b": torch.tensor([1.0, 2.0]),
        "norm.gamma": torch.tensor([3.0, 4.0]),
        "norm.beta": torch.tensor([5.0, 6.0]),
        "buffer.mask": torch.ones(2, 2),
    }


NAME_MAP = {
    "0.weight": ("dense.w", lambda w: w.T),  # (in, out) -> nn.Linear's (out, in)
    "0.bias": "dense.b",
    "1.weight": "norm.gamma",
    "1.bias": "norm.beta",
}


def test_copies_converts_and_reports():
    model = tiny()
    report = load_mapped(model, checkpoint(), NAME_MAP, documented={r"buffer\..*": "a mask, not a weight"})
    assert torch.equal(model[0].weight, torch.arange(6.0).reshape(3, 2).T)
    assert torch.equal(model[1].bias, torch.tensor([5.0, 6.0]))
    assert report.loaded[0] == ("0.weight", "dense.w") and len(report.loaded) == 4
    assert report.unused == ["buffer.mask"] and report.unexpected == [] and report.missing == []
    assert str(report) == "loaded 4 tensors\nnot used, as documented: ['buffer.mask']"


def test_errors_name_what_is_wrong():
    with pytest.raises(KeyError, match=r"no checkpoint name for our parameters \['1.bias'\]"):
        load_mapped(tiny(), checkpoint(), {k: v for k, v in NAME_MAP.items() if k != "1.bias"})
    with pytest.raises(ShapeError, match=r"checkpoint dense.w has shape \(3, 2\), but our 0.weight has shape \(2, 3\)"):
        load_mapped(tiny(), checkpoint(), dict(NAME_MAP, **{"0.weight": "dense.w"}))  # the transpose forgotten
    with pytest.raises(KeyError, match=r"NOT USED, unexpected: \['buffer.mask'\]"):
        load_mapped(tiny(), checkpoint(), NAME_MAP)  # the mask is not documented this time
    partial = {k: v for k, v in checkpoint().items() if k != "norm.beta"}
    with pytest.raises(KeyError, match=r"missing \(not in the checkpoint\): \['1.bias'\]"):
        load_mapped(tiny(), partial, NAME_MAP, {r"buffer\..*": ""})
    report = load_mapped(tiny(), partial, NAME_MAP, {r"buffer\..*": ""}, optional=["1.bias"])
    assert isinstance(report, LoadReport) and report.missing == ["1.bias"]


def test_read_state_dict_from_files_and_folders(tmp_path):
    from safetensors.torch import save_file

    save_file(checkpoint(), str(tmp_path / "model.safetensors"))
    assert torch.equal(read_state_dict(tmp_path)["dense.b"], torch.tensor([1.0, 2.0]))
    torch.save(checkpoint(), tmp_path / "weights.bin")
    assert sorted(read_state_dict(tmp_path / "weights.bin")) == sorted(checkpoint())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        read_state_dict(tmp_path / "empty")
