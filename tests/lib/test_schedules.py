"""Reference tests of lmbook.schedules against torch.optim.lr_scheduler: the learning rate of every step."""

import math

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR, StepLR
from torch.testing import assert_close

from lmbook.optim import SGD
from lmbook.schedules import (
    SCHEDULES,
    constant,
    cosine_decay,
    linear_warmup,
    linear_warmup_decay,
    lr_curve,
    step_decay,
    warmup_cosine,
)


def torch_lrs(make_scheduler, base_lr: float, steps: int) -> np.ndarray:
    """The learning rate torch's optimiser uses at steps 0 .. steps - 1, scheduler stepped after each step."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize(("step_size", "gamma"), [(10, 0.1), (7, 0.5), (1, 0.9)])
def test_step_decay_matches_step_lr(step_size, gamma):
    ref = torch_lrs(lambda o: StepLR(o, step_size=step_size, gamma=gamma), 0.3, 60)
    ours = lr_curve(step_decay, 60, base_lr=0.3, step_size=step_size, gamma=gamma)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize(("total", "min_lr"), [(50, 0.0), (37, 0.01)])
def test_cosine_decay_matches_cosine_annealing_up_to_total_steps(total, min_lr):
    ref = torch_lrs(lambda o: CosineAnnealingLR(o, T_max=total, eta_min=min_lr), 0.2, total + 1)
    ours = lr_curve(cosine_decay, total + 1, base_lr=0.2, total_steps=total, min_lr=min_lr)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    assert ours[0] == 0.2 and ours[-1] == pytest.approx(min_lr, abs=1e-15)
    assert ours[total // 2] == pytest.approx((0.2 + min_lr) / 2, rel=0.1)


def test_cosine_decay_stays_at_the_minimum_after_total_steps():
    after = lr_curve(cosine_decay, 80, base_lr=0.2, total_steps=50, min_lr=0.01)[50:]
    np.testing.assert_array_equal(after, 0.01)


@pytest.mark.parametrize(("warmup", "start_factor"), [(10, 0.1), (25, 0.5), (5, 1.0), (1, 0.01)])
def test_linear_warmup_matches_linear_lr(warmup, start_factor):
    ref = torch_lrs(lambda o: LinearLR(o, start_factor=start_factor, total_iters=warmup), 0.4, 40)
    ours = lr_curve(linear_warmup, 40, base_lr=0.4, warmup_steps=warmup, start_factor=start_factor)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert ours[0] == pytest.approx(0.4 * start_factor) and np.all(ours[warmup:] == 0.4)


@pytest.mark.parametrize(("warmup", "total", "min_lr"), [(10, 50, 0.0), (3, 40, 0.02)])
def test_warmup_cosine_matches_linear_then_cosine_in_torch(warmup, total, min_lr):
    def make(o):
        warm = LinearLR(o, start_factor=0.1, total_iters=warmup)
        decay = CosineAnnealingLR(o, T_max=total - warmup, eta_min=min_lr)
        return SequentialLR(o, [warm, decay], milestones=[warmup])

    ref = torch_lrs(make, 0.5, total)
    ours = lr_curve(warmup_cosine, total, base_lr=0.5, warmup_steps=warmup, total_steps=total, min_lr=min_lr)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    assert ours.argmax() == warmup and ours.max() == 0.5


def test_constant_and_lr_curve_by_name():
    np.testing.assert_array_equal(lr_curve("constant", 5, base_lr=0.1), np.full(5, 0.1))
    assert constant(1000, 0.3) == 0.3
    np.testing.assert_array_equal(
        lr_curve("step", 6, base_lr=1.0, step_size=2, gamma=0.5), [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    )
    assert set(SCHEDULES) == {"constant", "step", "cosine", "warmup", "warmup-cosine"}
    curve = lr_curve("warmup-cosine", 30, base_lr=1.0, warmup_steps=5, total_steps=30)
    assert curve.shape == (30,) and curve.dtype == np.float64
    assert isinstance(cosine_decay(3, 1.0, 10), float)


def test_a_schedule_drives_our_optimizer_like_torchs_scheduler_drives_torchs():
    """Setting opt.lr from the schedule before each step reproduces torch's optimiser + StepLR."""
    ours = np.array([2.0, -1.0])
    opt = SGD([ours], lr=0.1, momentum=0.9)
    theirs = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([theirs], lr=0.1, momentum=0.9)
    scheduler = StepLR(topt, step_size=5, gamma=0.5)
    for step in range(30):
        opt.lr = step_decay(step, 0.1, step_size=5, gamma=0.5)
        opt.step([2 * ours * np.array([1.0, 10.0])])
        topt.zero_grad()
        torch.sum(theirs**2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).backward()
        topt.step()
        scheduler.step()
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: constant(-1, 0.1), "step must be >= 0"),
        (lambda: step_decay(0, 0.1, step_size=0), "step_size"),
        (lambda: cosine_decay(0, 0.1, total_steps=0), "total_steps"),
        (lambda: linear_warmup(0, 0.1, warmup_steps=0), "warmup_steps"),
        (lambda: linear_warmup(0, 0.1, warmup_steps=5, start_factor=0.0), "start_factor"),
        (lambda: warmup_cosine(0, 0.1, warmup_steps=10, total_steps=10), "warmup_steps < total_steps"),
        (lambda: lr_curve("exponential", 5, base_lr=0.1), "unknown schedule 'exponential'.*'cosine'"),
    ],
)
def test_bad_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cosine_decay_formula_at_a_quarter():
    assert cosine_decay(25, 1.0, 100) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


# ----- the training loops' schedule: linear warm-up, then a linear or cosine decay --------------------------


def test_schedule_values_by_hand():
    factors = [linear_warmup_decay(s, total=10, warmup=4) for s in range(11)]
    assert_close(factors, [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])
    assert [linear_warmup_decay(s, total=4, warmup=0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    # No training step is wasted with a learning rate of 0, and the peak is exactly 1.
    for total, warmup in ((7, 1), (100, 10), (57, 6)):
        f = np.array([linear_warmup_decay(s, total, warmup) for s in range(total)])
        assert f.min() > 0 and f.max() == 1.0 and np.argmax(f) == max(warmup - 1, 0)
    for bad in (dict(step=-1, total=10, warmup=2), dict(step=0, total=10, warmup=10), dict(step=0, total=0, warmup=0)):
        with pytest.raises(ValueError):
            linear_warmup_decay(**bad)


def test_cosine_decay_after_the_warmup_by_hand():
    f = [linear_warmup_decay(s, total=6, warmup=2, decay="cosine", min_factor=0.2) for s in range(8)]
    # warm-up 1/2, 1; then 0.2 + 0.8 * (1 + cos(pi * k / 4)) / 2 for k = 0 .. 3; min_factor from step 6 on
    expected = [0.5, 1.0] + [0.2 + 0.4 * (1 + math.cos(math.pi * k / 4)) for k in range(4)] + [0.2, 0.2]
    assert_close(f, expected, rtol=1e-15, atol=0)
    assert linear_warmup_decay(0, 1, 0, "cosine") == 1.0  # a run of one step trains at the peak rate
    with pytest.raises(ValueError, match="decay"):
        linear_warmup_decay(0, 10, 2, decay="step")
    with pytest.raises(ValueError, match="min_factor"):
        linear_warmup_decay(0, 10, 2, decay="linear", min_factor=0.1)
