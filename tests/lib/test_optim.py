"""Reference tests of lmbook.optim against torch.optim in float64: the same parameters after every one of 100 steps.

Both sides start from the same parameters and, at every step, get the gradient of the same loss at their own
current parameters (computed by torch autograd), so any difference in the update rule shows up and compounds.
"""

import itertools

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.optim import OPTIMIZERS, SGD, Adam, AdamW, MomentumSGD, Optimizer, RMSprop, make_optimizer
from lmbook.testing import ShapeError

STEPS = 100
RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 4))
Y = RNG.normal(size=(20, 3))
START = [RNG.normal(size=(4, 3)), RNG.normal(size=3)]


def loss_of(W, b):
    """A small non-quadratic loss of a weight matrix and a bias (torch tensors), so gradients change every step."""
    Z = torch.from_numpy(X) @ W + b
    return torch.mean((torch.tanh(Z) - torch.from_numpy(Y)) ** 2) + 0.01 * torch.sum(W**4)


def grads_at(params: list[np.ndarray]) -> list[np.ndarray]:
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    return [g.numpy() for g in torch.autograd.grad(loss_of(*ts), ts)]


def run_both(make_ours, torch_cls, kwargs, steps=STEPS, lrs=None):
    """Step our optimiser and torch's side by side; compare the parameters after every step.

    ``lrs`` optionally gives the learning rate of every step (set on both optimisers before the step).
    """
    ours = [p.copy() for p in START]
    opt = make_ours(ours)
    theirs = [torch.tensor(p, requires_grad=True) for p in START]
    topt = torch_cls(theirs, **kwargs)
    for step in range(steps):
        if lrs is not None:
            opt.lr = lrs[step]
            for group in topt.param_groups:
                group["lr"] = lrs[step]
        opt.step(grads_at(ours))
        topt.zero_grad()
        loss_of(*theirs).backward()
        topt.step()
        for mine, ref in zip(ours, theirs, strict=True):
            assert_close(torch.from_numpy(mine), ref.detach(), msg=lambda m, s=step: f"step {s + 1}: {m}")
    return ours, opt


SETTINGS = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
    (SGD, torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.005, "momentum": 0.9}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.003, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.003, "alpha": 0.95, "momentum": 0.5, "weight_decay": 0.01}),
    (Adam, torch.optim.Adam, {"lr": 0.01}),
    (Adam, torch.optim.Adam, {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
    (AdamW, torch.optim.AdamW, {"lr": 0.01}),
    (AdamW, torch.optim.AdamW, {"lr": 0.02, "betas": (0.85, 0.995), "weight_decay": 0.3}),
]


@pytest.mark.parametrize(("cls", "torch_cls", "kwargs"), SETTINGS, ids=[f"{c.__name__}-{k}" for c, _, k in SETTINGS])
def test_matches_torch_step_for_step(cls, torch_cls, kwargs):
    params, opt = run_both(lambda p: cls(p, **kwargs), torch_cls, kwargs)
    assert opt.t == STEPS
    # The parameters really moved: a do-nothing optimiser would fail the comparison above anyway,
    # but this keeps the test honest about what it checks.
    assert not np.allclose(params[0], START[0])


@pytest.mark.parametrize(
    ("name", "torch_cls", "kwargs"),
    [
        ("sgd", torch.optim.SGD, {"lr": 0.1}),
        ("momentum", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
        ("rmsprop", torch.optim.RMSprop, {"lr": 0.01}),
        ("adam", torch.optim.Adam, {"lr": 0.01}),
        ("adamw", torch.optim.AdamW, {"lr": 0.01}),
    ],
)
def test_optimizers_by_name_use_torch_defaults(name, torch_cls, kwargs):
    """OPTIMIZERS[name](params, lr) with only a learning rate equals torch's optimiser with its defaults."""
    run_both(lambda p: OPTIMIZERS[name](p, lr=kwargs["lr"]), torch_cls, kwargs)
    run_both(lambda p: make_optimizer(name, p, lr=kwargs["lr"]), torch_cls, kwargs, steps=5)


def test_momentum_entry_is_sgd_with_momentum_09():
    assert OPTIMIZERS["momentum"] is MomentumSGD and issubclass(MomentumSGD, SGD)
    opt = OPTIMIZERS["momentum"]([np.zeros(2)], lr=0.1)
    assert opt.momentum == 0.9 and not opt.nesterov and opt.dampening == 0.0
    assert OPTIMIZERS["sgd"]([np.zeros(2)], lr=0.1).momentum == 0.0


@pytest.mark.parametrize(
    ("cls", "torch_cls", "kwargs"),
    [
        (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        (RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
        (Adam, torch.optim.Adam, {"lr": 0.01}),
        (AdamW, torch.optim.AdamW, {"lr": 0.01}),
    ],
)
def test_learning_rate_can_change_between_steps(cls, torch_cls, kwargs):
    lrs = kwargs["lr"] * (0.5 + 0.5 * np.cos(np.linspace(0, np.pi, 40)))
    run_both(lambda p: cls(p, **kwargs), torch_cls, kwargs, steps=40, lrs=lrs)


# ----- every parameter shape: 0-d, 1-d and n-d ------------------------------------------------------------
# A 0-d parameter (a numpy scalar array, as in a one-feature regression) once slipped through: arithmetic on 0-d
# arrays returns numpy scalars, and SGD stored its momentum buffer as one, so ``buf *= momentum`` never changed it.
# Every optimiser and every option is therefore checked on each shape, parameters and optimiser state alike.

SHAPES = {"0d": (), "1d": (5,), "nd": (2, 3, 2)}


def _options(**choices):
    """Every combination of the given option values, as dicts."""
    keys = list(choices)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*choices.values())]


SHAPE_SETTINGS = (
    [
        (SGD, torch.optim.SGD, {"lr": 0.05, **o})
        for o in _options(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True], weight_decay=[0.0, 0.01])
        if not (o["nesterov"] and (o["momentum"] == 0 or o["dampening"] != 0))
    ]
    + [
        (RMSprop, torch.optim.RMSprop, {"lr": 0.01, **o})
        for o in _options(alpha=[0.99, 0.9], eps=[1e-8, 1e-3], momentum=[0.0, 0.5], weight_decay=[0.0, 0.1])
    ]
    + [
        (cls, torch_cls, {"lr": 0.02, **o})
        for cls, torch_cls in [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)]
        for o in _options(betas=[(0.9, 0.999), (0.8, 0.99)], eps=[1e-8, 1e-3], weight_decay=[0.0, 0.1])
    ]
)


def shape_loss(p, c, target):
    """A non-quadratic loss of one parameter of any shape (torch tensors), so that its gradient changes every step."""
    return torch.sum((torch.tanh(c * p) - target) ** 2) + 0.01 * torch.sum(p**4)


def compare_state(opt, topt, theirs, step):
    """Our optimiser state equals torch's for every buffer torch keeps (the same keys: "momentum_buffer", ...)."""
    for mine, ref in zip(opt.state, theirs, strict=True):
        tstate = {k: v for k, v in topt.state[ref].items() if k != "step" and v is not None}
        assert set(mine) == set(tstate), f"step {step}: state keys {sorted(mine)}, torch has {sorted(tstate)}"
        for key, buf in mine.items():
            assert isinstance(buf, np.ndarray) and buf.shape == ref.shape, f"step {step}: {key} is {buf!r}"
            assert_close(torch.from_numpy(buf), tstate[key], msg=lambda m, k=key, s=step: f"step {s}, {k}: {m}")


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize(
    ("cls", "torch_cls", "kwargs"),
    SHAPE_SETTINGS,
    ids=[f"{c.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr") for c, _, kw in SHAPE_SETTINGS],
)
def test_every_option_matches_torch_on_every_parameter_shape(cls, torch_cls, kwargs, shape):
    rng = np.random.default_rng(len(shape))
    start, c, target = (rng.normal(size=shape) for _ in range(3))
    assert np.ndim(start) == len(shape)  # default_rng(...).normal(size=()) is a 0-d array, not a float
    ours = start.copy()
    opt = cls([ours], **kwargs)
    theirs = torch.tensor(start, requires_grad=True)
    topt = torch_cls([theirs], **kwargs)
    c_t, target_t = torch.from_numpy(c), torch.from_numpy(target)
    for step in range(1, 9):
        mine = torch.tensor(ours, requires_grad=True)
        (grad,) = torch.autograd.grad(shape_loss(mine, c_t, target_t), [mine])
        opt.step([grad.numpy()])
        topt.zero_grad()
        shape_loss(theirs, c_t, target_t).backward()
        topt.step()
        assert isinstance(opt.params[0], np.ndarray) and opt.params[0] is ours and ours.shape == shape
        assert_close(torch.from_numpy(ours), theirs.detach(), msg=lambda m, s=step: f"step {s}: {m}")
        compare_state(opt, topt, [theirs], step)
    assert not np.allclose(ours, start)


def test_the_reported_0d_momentum_case():
    """The case from the report: three steps of gradient 1, momentum 0.9, weight decay 0.01, from 1.0 with lr 0.1."""
    p = np.array(1.0)
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    t = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        opt.step([np.array(1.0)])
        t.grad = torch.ones((), dtype=torch.float64)
        topt.step()
    assert_close(torch.from_numpy(p), t.detach())  # 0.4339 (the bug left 0.5156)
    assert_close(torch.from_numpy(opt.state[0]["momentum_buffer"]), topt.state[t]["momentum_buffer"])  # 2.733


# ----- seed-map mistake 13: Adam's update ----------------------------------------------------------------


def adam_variant(params, grads_fn, lr, steps, bias_correction=True, sqrt=True, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam written out by hand, with switches for the two ways of getting it wrong."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        for i, g in enumerate(grads_fn(params)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g**2
            m_hat = m[i] / (1 - beta1**t) if bias_correction else m[i]
            v_hat = v[i] / (1 - beta2**t) if bias_correction else v[i]
            params[i] = params[i] - lr * m_hat / ((np.sqrt(v_hat) if sqrt else v_hat) + eps)
    return params


def torch_adam(steps, lr):
    theirs = [torch.tensor(p, requires_grad=True) for p in START]
    topt = torch.optim.Adam(theirs, lr=lr)
    for _ in range(steps):
        topt.zero_grad()
        loss_of(*theirs).backward()
        topt.step()
    return [t.detach() for t in theirs]


def test_the_written_out_adam_update_matches_torch():
    """The correct rule: m, v moving averages; m_hat, v_hat bias-corrected; lr * m_hat / (sqrt(v_hat) + eps)."""
    ours = adam_variant(START, grads_at, lr=0.01, steps=50)
    for mine, ref in zip(ours, torch_adam(50, 0.01), strict=True):
        assert_close(torch.from_numpy(mine), ref)


@pytest.mark.parametrize(
    "mistake", [{"bias_correction": False}, {"sqrt": False}], ids=["no-bias-correction", "no-square-root"]
)
def test_wrong_adam_updates_do_not_match_torch(mistake):
    """Seed-map mistake 13: dropping the bias correction, or dividing by v_hat instead of its square root."""
    wrong = adam_variant(START, grads_at, lr=0.01, steps=50, **mistake)
    with pytest.raises(AssertionError):
        assert_close(torch.from_numpy(wrong[0]), torch_adam(50, 0.01)[0])


def test_first_adam_step_has_size_lr_in_every_coordinate():
    """With bias correction, step 1 moves each coordinate by lr * g / (|g| + eps): almost exactly lr."""
    p = np.array([1.0, -2.0, 3.0])
    g = np.array([1e-3, -50.0, 7.0])
    Adam([p], lr=0.1).step([g])
    np.testing.assert_allclose(p, [1.0 - 0.1, -2.0 + 0.1, 3.0 - 0.1], atol=1e-5)


# ----- the interface ---------------------------------------------------------------------------------------


def test_parameters_are_updated_in_place_and_state_is_kept_per_parameter():
    w, b = np.ones((2, 3)), np.zeros(3)
    opt = Adam([w, b], lr=0.1)
    w_id = id(w)
    opt.step([np.ones((2, 3)), np.ones(3)])
    assert id(opt.params[0]) == w_id and opt.params[0] is w
    assert np.all(w < 1.0) and np.all(b < 0.0)
    assert opt.t == 1 and len(opt.state) == 2
    assert set(opt.state[0]) == {"exp_avg", "exp_avg_sq"} and opt.state[1]["exp_avg"].shape == (3,)
    sgd = SGD([np.zeros(2)], lr=0.1, momentum=0.9)
    sgd.step([np.ones(2)])
    np.testing.assert_allclose(sgd.state[0]["momentum_buffer"], [1.0, 1.0])
    rms = RMSprop([np.zeros(2)], momentum=0.5)
    rms.step([np.ones(2)])
    assert set(rms.state[0]) == {"square_avg", "momentum_buffer"}


def test_plain_sgd_is_theta_minus_lr_times_gradient():
    p = np.array([1.0, 2.0])
    SGD([p], lr=0.5).step([np.array([2.0, -4.0])])
    np.testing.assert_allclose(p, [0.0, 4.0])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_gradient_of_the_wrong_shape_is_rejected_with_both_shapes(name):
    opt = make_optimizer(name, [np.zeros((2, 3)), np.zeros(3)], lr=0.1)
    with pytest.raises(ShapeError, match=r"grads\[0\]: expected shape \(2, 3\), got \(3, 2\)"):
        opt.step([np.zeros((3, 2)), np.zeros(3)])
    with pytest.raises(ValueError, match="expected 2 gradients"):
        opt.step([np.zeros((2, 3))])
    assert opt.t == 0  # a rejected step changes nothing


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SGD([], lr=0.1), "empty list"),
        (lambda: SGD([np.zeros(2, dtype=int)], lr=0.1), "float numpy array"),
        (lambda: SGD([[0.0, 1.0]], lr=0.1), "float numpy array"),
        (lambda: SGD([np.zeros(2)], lr=-1.0), "learning rate"),
        (lambda: SGD([np.zeros(2)], lr=0.1, momentum=1.0), "momentum"),
        (lambda: SGD([np.zeros(2)], lr=0.1, nesterov=True), "Nesterov"),
        (lambda: SGD([np.zeros(2)], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda: RMSprop([np.zeros(2)], alpha=1.0), "alpha"),
        (lambda: Adam([np.zeros(2)], betas=(0.9, 1.0)), "betas"),
        (lambda: AdamW([np.zeros(2)], weight_decay=-0.1), "weight_decay"),
        (lambda: make_optimizer("lbfgs", [np.zeros(2)], lr=0.1), "unknown optimiser 'lbfgs'.*'adam'"),
    ],
)
def test_bad_settings_are_rejected(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_every_optimizer_is_an_optimizer_and_has_a_readable_repr():
    for cls in OPTIMIZERS.values():
        assert issubclass(cls, Optimizer)
    opt = SGD([np.zeros((2, 3)), np.zeros(3)], lr=0.1)
    assert repr(opt) == "SGD(lr=0.1, params=[(2, 3), (3,)], t=0)"
