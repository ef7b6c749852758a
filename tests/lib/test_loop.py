"""Tests of lmbook.loop, the pieces every training loop shares, against torch written out by hand."""

import math
import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from lmbook.device import autocast_dtype, training_device
from lmbook.finetune import FinetuneConfig
from lmbook.language_model import LMTrainConfig
from lmbook.loop import (
    cpu_threads,
    evaluation_mode,
    make_optimizer,
    make_scaler,
    make_scheduler,
    num_warmup_steps,
    optimizer_step,
    param_groups,
)
from lmbook.mlm import MLMTrainConfig
from lmbook.schedules import linear_warmup_decay


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 5)
        self.out.weight = self.emb.weight  # tied, as in a language model
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_param_groups_follow_the_one_rule():
    model = Tiny()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model.conv.weight)}  # only the conv kernel: >= 2-D and not an embedding
    assert ids(no_decay["params"]) == {
        id(model.emb.weight), id(model.conv.bias), id(model.norm.weight), id(model.norm.bias), id(model.out.bias)
    }  # fmt: skip
    assert len(no_decay["params"]) == 5  # the tied weight once; frozen parameters not at all
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(model, -1.0)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_make_optimizer_steps_as_torch_with_the_groups(name):
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2).double(), nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    opt = make_optimizer(a, name, lr=0.1, weight_decay=0.3)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ref = cls([{"params": [b.weight], "weight_decay": 0.3}, {"params": [b.bias], "weight_decay": 0.0}], lr=0.1)
    x = torch.randn(4, 3, dtype=torch.float64)
    for _ in range(3):
        for model, o in ((a, opt), (b, ref)):
            o.zero_grad()
            model(x).square().sum().backward()
            o.step()
    assert_close(a.weight, b.weight, rtol=1e-12, atol=1e-14)
    assert_close(a.bias, b.bias, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(a, "rmsprop")


def test_scheduler_gives_linear_warmup_decay_times_the_peak():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = make_scheduler(opt, total=20, warmup_ratio=0.2, decay="cosine", min_factor=0.1)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert num_warmup_steps(20, 0.2) == 4
    assert_close(seen, [0.5 * linear_warmup_decay(s, 20, 4, "cosine", 0.1) for s in range(20)])
    assert seen[0] == 0.5 / 4 and seen[3] == seen[4] == 0.5 and seen[-1] > 0.05
    assert num_warmup_steps(3, 0.9) == 2  # always below the number of steps
    with pytest.raises(ValueError, match="min_factor"):
        make_scheduler(opt, 10, 0.1, decay="linear", min_factor=0.5)


def test_optimizer_step_clips_the_true_norm_and_returns_it():
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    reference = nn.Linear(4, 1).double()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 4, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    norm = optimizer_step(model(x).sum() * 100, model, opt, max_grad_norm=1.0)
    (reference(x).sum() * 100).backward()
    grads = [p.grad for p in reference.parameters()]
    full = math.sqrt(sum(float(g.square().sum()) for g in grads))
    assert math.isclose(norm, full, rel_tol=1e-12) and full > 1.0
    for p, ref, g in zip(model.parameters(), reference.parameters(), grads, strict=True):
        assert_close(p, ref - 0.1 * g / full, rtol=1e-9, atol=1e-12)  # clipped to norm 1 (up to torch's 1e-6)
    assert optimizer_step(model(x).sum(), model, opt) is None  # no clipping asked: no norm measured


def test_amp_choices_and_the_device_rule():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, "off") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16 and autocast_dtype("cpu", "fp16") == torch.float16
    with pytest.raises(ValueError, match="amp"):
        autocast_dtype(cpu, "half")
    assert make_scaler(torch.bfloat16, cpu) is None and make_scaler(None, cpu) is None
    assert training_device(nn.Linear(2, 2)) == cpu and training_device(nn.Linear(2, 2), "meta").type == "meta"


def test_threads_are_restored():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"), cpu_threads(0):
        pass


@pytest.mark.parametrize("config_class", [LMTrainConfig, MLMTrainConfig, FinetuneConfig])
@pytest.mark.parametrize(
    "field, value, words",
    [
        ("lr", 0.0, "lr must be positive"),
        ("warmup_ratio", 1.0, "warmup_ratio must be in [0, 1)"),
        ("weight_decay", -0.1, "weight_decay must not be negative"),
        ("max_grad_norm", 0.0, "max_grad_norm must be positive"),
        ("amp", "fp8", "amp"),
        ("threads", 0, "threads must be at least 1"),
    ],
)
def test_every_training_config_rejects_bad_settings_by_name(config_class, field, value, words):
    config_class()  # the defaults are valid
    with pytest.raises(ValueError, match=re.escape(words)):
        config_class(**{field: value})


@pytest.mark.parametrize("config_class", [LMTrainConfig, MLMTrainConfig])
def test_the_final_rate_factor_is_checked_where_there_is_one(config_class):
    with pytest.raises(ValueError, match=re.escape("min_lr_factor must be in [0, 1]")):
        config_class(min_lr_factor=1.5)


def test_evaluation_mode_gives_the_model_back_in_the_mode_it_had():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    with evaluation_mode(model):
        assert not model.training and not model[1].training
    assert model.training and model[1].training
    model.eval()
    with evaluation_mode(model):
        pass
    assert not model.training
    model.train()
    with pytest.raises(RuntimeError), evaluation_mode(model):
        raise RuntimeError("the block failed")
    assert model.training  # restored even when the block raises
