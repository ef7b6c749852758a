"""Gradient-descent optimisers written from scratch in numpy: SGD (with momentum), RMSprop, Adam and AdamW.

Introduced in chapter 3, Losses and gradient descent. Each optimiser follows the update rule of its namesake in
``torch.optim`` exactly (same hyper-parameters, same defaults, same order of operations), and the tests check
this step by step against PyTorch in float64.

An optimiser holds a list of parameter arrays and changes them **in place**; the gradients are handed to
:meth:`Optimizer.step` rather than stored on the parameters, because numpy arrays have no ``.grad``::

    w, b = np.zeros(3), np.zeros(1)
    opt = Adam([w, b], lr=0.01)
    for _ in range(100):
        dw, db = gradients(w, b)
        opt.step([dw, db])          # w and b now hold the updated values

The optimiser itself is separate from the model: the same network can be trained by any of them, and the
same optimiser trains any model whose parameters are arrays.
"""

from __future__ import annotations

import numpy as np

from lmbook.testing import check_choice, check_shape


def _buffer(state: dict, key: str, p: np.ndarray, initial=None) -> np.ndarray:
    """The buffer ``state[key]``, created on first use as an array shaped like ``p``: zeros, or a copy of ``initial``.

    Every buffer is a numpy array, also for a 0-dimensional ``p``, because the updates change it in place
    (``buf *= momentum``). Arithmetic on 0-d arrays returns numpy scalars, and ``*=`` on a scalar only rebinds
    the local name: a buffer stored as a scalar would silently never change. ``np.array`` always makes an array.
    """
    if key not in state:
        state[key] = np.zeros_like(p) if initial is None else np.array(initial, dtype=p.dtype)
    return state[key]


class Optimizer:
    """Base class: keeps the parameters, the learning rate, the step counter and per-parameter state.

    Args:
        params: the arrays to optimise, each a float64 numpy array; they are updated in place.
        lr: the learning rate, >= 0.

    Attributes:
        params: the list of parameter arrays (the caller's own arrays, not copies).
        lr: the learning rate used by the next :meth:`step`; a schedule may change it between steps.
        t: number of steps taken so far (the first step is ``t = 1`` while it runs, as in Adam's formulas).
        state: one dict of buffers per parameter, in the order of ``params``; the keys are those of
            ``torch.optim`` (``"momentum_buffer"``, ``"square_avg"``, ``"exp_avg"``, ``"exp_avg_sq"``).
    """

    def __init__(self, params, lr: float) -> None:
        params = list(params)
        if not params:
            raise ValueError("the optimiser got an empty list of parameters")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"params[{i}] must be a float numpy array (it is updated in place), got {kind}")
        if not lr >= 0:
            raise ValueError(f"the learning rate must be >= 0, got {lr}")
        self.params = params
        self.lr = float(lr)
        self.t = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in params]

    def _checked(self, grads) -> list[np.ndarray]:
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, one per parameter, got {len(grads)}")
        out = []
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            g = np.asarray(g, dtype=np.float64)
            if g.shape != p.shape:
                check_shape(g, p.shape, f"grads[{i}]")  # raises, naming both shapes
            out.append(g)
        return out

    def step(self, grads) -> None:
        """Update every parameter in place from its gradient.

        Args:
            grads: one array per parameter, each with that parameter's shape.

        Raises:
            ValueError: the wrong number of gradients, or a gradient whose shape differs from its parameter's
                (a :class:`~lmbook.testing.ShapeError` naming the expected and the actual shape).
        """
        grads = self._checked(grads)
        self.t += 1
        for p, g, state in zip(self.params, grads, self.state, strict=True):
            self._update(p, g, state)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(str(p.shape) for p in self.params)
        return f"{type(self).__name__}(lr={self.lr:g}, params=[{shapes}], t={self.t})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum and L2 weight decay (= ``torch.optim.SGD``).

    One step, with gradient ``g`` of parameter ``θ``::

        g = g + weight_decay * θ                   (if weight_decay)
        v = g                     on the first step
        v = momentum * v + (1 - dampening) * g     afterwards      (if momentum)
        g = g + momentum * v  (nesterov)  or  g = v                (if momentum)
        θ = θ - lr * g

    With ``momentum = 0`` this is plain gradient descent, ``θ -= lr * g``. With momentum, ``v`` is a running
    sum of past gradients: directions that agree from step to step build up speed, directions that flip sign
    (the walls of a narrow valley) cancel out.

    Args:
        params: arrays to optimise (updated in place). lr: learning rate.
        momentum: factor in [0, 1) by which the velocity is kept. dampening: damps the new gradient's share.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        weight_decay: L2 penalty coefficient added to the gradient.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _update(self, p, g, state) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            if "momentum_buffer" not in state:
                buf = _buffer(state, "momentum_buffer", p, initial=g)  # v = g on the first step
            else:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class MomentumSGD(SGD):
    """:class:`SGD` whose momentum defaults to 0.9: what ``OPTIMIZERS["momentum"]`` builds.

    ``MomentumSGD(params, lr)`` is exactly ``SGD(params, lr, momentum=0.9)``, i.e.
    ``torch.optim.SGD(params, lr, momentum=0.9)`` (heavy-ball momentum, no dampening, not Nesterov).
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, momentum, dampening, nesterov, weight_decay)


class RMSprop(Optimizer):
    """RMSprop: divide each gradient coordinate by a running root-mean-square of its size (= ``torch.optim.RMSprop``).

    One step::

        g = g + weight_decay * θ                      (if weight_decay)
        s = alpha * s + (1 - alpha) * g²              (s starts at 0)
        u = g / (sqrt(s) + eps)
        v = momentum * v + u;  u = v                  (if momentum; v starts at 0)
        θ = θ - lr * u

    Coordinates with consistently large gradients take smaller steps and flat coordinates larger ones, so
    every coordinate moves at roughly the speed ``lr``.

    Args:
        params, lr: as for :class:`SGD`. alpha: decay of the squared-gradient average.
        eps: added to the root mean square, so that a zero gradient does not divide by zero.
        weight_decay: L2 penalty. momentum: momentum on the normalised update.
    """

    def __init__(
        self,
        params,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps} and {weight_decay}")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.momentum = float(momentum)

    def _update(self, p, g, state) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        square_avg = _buffer(state, "square_avg", p)
        square_avg *= self.alpha
        square_avg += (1.0 - self.alpha) * g * g
        avg = np.sqrt(square_avg) + self.eps
        if self.momentum:
            buf = _buffer(state, "momentum_buffer", p)
            buf *= self.momentum
            buf += g / avg
            p -= self.lr * buf
        else:
            # (-lr * g) / avg rather than lr * (g / avg): the same number, rounded as PyTorch rounds it.
            p += (-self.lr * g) / avg


class Adam(Optimizer):
    """Adam: momentum plus RMSprop's per-coordinate scaling, with bias correction (= ``torch.optim.Adam``).

    One step ``t = 1, 2, ...``::

        g = g + weight_decay * θ                  (if weight_decay: L2 penalty added to the gradient)
        m = beta1 * m + (1 - beta1) * g           (first moment, starts at 0)
        v = beta2 * v + (1 - beta2) * g²          (second moment, starts at 0)
        m_hat = m / (1 - beta1**t)                (bias correction)
        v_hat = v / (1 - beta2**t)
        θ = θ - lr * m_hat / (sqrt(v_hat) + eps)

    Because ``m`` and ``v`` start at zero, they underestimate the gradient's moments during the first steps;
    dividing by ``1 - beta**t`` undoes exactly that shrinkage (on step 1, ``m_hat = g`` and ``v_hat = g²``,
    so the first update is ``lr * sign(g)``). Without the correction the update ``m / sqrt(v)`` is off by the
    factor ``(1 - beta1**t) / sqrt(1 - beta2**t)``: with the default betas the early steps are several times too
    large (3.2 times on step 1, 6.6 times on step 12), and the error fades only after thousands of steps.

    Args:
        params, lr: as for :class:`SGD`. betas: decay rates ``(beta1, beta2)`` of the two moments.
        eps: added to ``sqrt(v_hat)``. weight_decay: L2 penalty added to the gradient (see :class:`AdamW`
            for the decoupled version).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps} and {weight_decay}")
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    def _gradient(self, p, g):
        return g + self.weight_decay * p if self.weight_decay else g

    def _update(self, p, g, state) -> None:
        beta1, beta2 = self.betas
        g = self._gradient(p, g)
        m = _buffer(state, "exp_avg", p)
        v = _buffer(state, "exp_avg_sq", p)
        # m = beta1 * m + (1 - beta1) * g, written as m + (1 - beta1) * (g - m): the same number, rounded the
        # way PyTorch (torch.lerp) rounds it, so that 100 steps agree to the last few digits.
        m += (1.0 - beta1) * (g - m)
        v *= beta2
        v += (1.0 - beta2) * g * g
        bias_correction1 = 1.0 - beta1**self.t
        bias_correction2 = 1.0 - beta2**self.t
        # lr * m_hat / (sqrt(v_hat) + eps), arranged as PyTorch arranges it so the rounding agrees too.
        denom = np.sqrt(v) / np.sqrt(bias_correction2) + self.eps
        p += (-(self.lr / bias_correction1) * m) / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (= ``torch.optim.AdamW``).

    Instead of adding ``weight_decay * θ`` to the gradient (where Adam's scaling would then shrink it for
    coordinates with large gradients), AdamW first shrinks the parameter directly, ``θ = θ * (1 - lr *
    weight_decay)``, and then takes a plain Adam step on the unmodified gradient.

    Args:
        as for :class:`Adam`; the weight decay defaults to 0.01, as in PyTorch.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _gradient(self, p, g):
        return g

    def _update(self, p, g, state) -> None:
        if self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        super()._update(p, g, state)


# The optimisers by name, for widgets and experiments. "momentum" is SGD with heavy-ball momentum 0.9
# (MomentumSGD: the same as SGD(params, lr, momentum=0.9) and torch.optim.SGD(params, lr, momentum=0.9));
# "sgd" is plain gradient descent without momentum unless one is passed.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": MomentumSGD,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(name: str, params, lr: float, **kwargs) -> Optimizer:
    """Build the optimiser ``OPTIMIZERS[name]`` for ``params``; ``kwargs`` are its other hyper-parameters.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    check_choice(name, OPTIMIZERS, "optimiser")
    return OPTIMIZERS[name](params, lr=lr, **kwargs)
