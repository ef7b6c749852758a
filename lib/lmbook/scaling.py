"""Scaling laws: how a language model's loss falls with its size, its data and its compute, fitted and published.

Introduced in chapter 9, Compute, memory and scale. Over a wide range, the loss ``L`` of a well-trained language
model falls as a **power law** of the number of parameters ``N``: ``L(N) = A N^-alpha``, a straight line of slope
``-alpha`` on log-log axes. Real curves bend towards a floor, the loss no model can beat on that data (the
entropy of the text itself), written ``E``: ``L(N) = E + A N^-alpha``.

- :func:`fit_power_law`: ``L = A x^-alpha`` by least squares on ``(ln x, ln L)``, with t-based confidence
  intervals for ``alpha`` and ``A``.
- :func:`fit_power_law_offset`: ``L = E + A x^-alpha`` by variable projection (for a fixed ``alpha`` the model is
  linear in ``E`` and ``A``), with a residual-bootstrap spread.
- :data:`CHINCHILLA`, :func:`chinchilla_loss` and :func:`compute_optimal`: the parametric law of Hoffmann et al.
  2022 and the model size and token count it recommends for a compute budget, beside their 20 tokens per
  parameter rule of thumb.
- :func:`family_configs` and :func:`train_family`: a family of :class:`lmbook.gpt.GPT` s of growing width, each
  trained on the same tokens with :func:`lmbook.gpt.train_gpt`, measured as :class:`ScalingRun` rows, and
  :func:`compute_frontier`, the lowest loss reached for each amount of compute along their learning curves.

Sources: Kaplan et al. 2020, *Scaling Laws for Neural Language Models*, arXiv:2001.08361 (loss against
non-embedding parameters and against compute, ``alpha_N`` about 0.076 and ``alpha_C`` about 0.050); Hoffmann et
al. 2022, *Training Compute-Optimal Large Language Models*, arXiv:2203.15556 (``L(N, D) = E + A / N^alpha +
B / D^beta``, and about 20 training tokens per parameter at the compute optimum).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, stats

from lmbook.cost import training_flops
from lmbook.gpt import GPT, GPTConfig, train_gpt
from lmbook.language_model import LMTrainConfig
from lmbook.testing import check_choice
from lmbook.transformer import count_parameters

KAPLAN_ALPHA_N = 0.076
"""Exponent of loss against non-embedding parameters, ``L(N) = (N_c / N)^alpha_N`` (Kaplan et al. 2020, eq. 1.1)."""

KAPLAN_ALPHA_C = 0.050
"""Exponent of loss against compute on the compute-efficient frontier, ``alpha_C^min`` (Kaplan et al. 2020)."""

TOKENS_PER_PARAMETER = 20.0
"""Hoffmann et al. 2022's rule of thumb: a compute-optimal model sees about 20 training tokens per parameter."""


@dataclass(frozen=True)
class ChinchillaLaw:
    """The parametric loss ``L(N, D) = E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022, their approach 3).

    ``E`` is the loss of a perfect model of the data; ``A / N^alpha`` what a finite model loses; ``B / D^beta``
    what finite data loses. Losses are in nats per token of their tokenizer and data (MassiveText), so the
    constants do not carry over to another tokenizer or corpus; the exponents are what one compares.
    """

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28


CHINCHILLA = ChinchillaLaw()
"""The fitted constants that Hoffmann et al. 2022 report for their approach 3."""


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted ``L(x) = E + A x^-alpha`` (``E = 0`` for a pure power law) with the uncertainty of each constant.

    Attributes:
        exponent: ``alpha``. constant: ``A``. irreducible: ``E`` (0.0 when the fit has no such term).
        exponent_interval, constant_interval, irreducible_interval: ``(low, high)`` at ``confidence``;
            ``irreducible_interval`` is None for a pure power law.
        confidence: e.g. 0.95. method: how the intervals were made (``"t"`` or ``"bootstrap"``).
        n_points: points fitted. rms_residual: root-mean-square residual (of ``ln L`` for the pure power law, of
            ``L`` for the fit with ``E``). at_bound: the best exponent lies on the edge of the allowed range,
            so the data do not pin it down.
    """

    exponent: float
    constant: float
    irreducible: float
    exponent_interval: tuple[float, float]
    constant_interval: tuple[float, float]
    irreducible_interval: tuple[float, float] | None
    confidence: float
    method: str
    n_points: int
    rms_residual: float
    at_bound: bool = False

    def predict(self, x) -> np.ndarray:
        """The fitted curve at ``x`` (any positive numbers): ``E + A x^-alpha``."""
        x = np.asarray(x, dtype=float)
        return self.irreducible + self.constant * x ** (-self.exponent)

    def __str__(self) -> str:
        lo, hi = self.exponent_interval
        text = f"alpha = {self.exponent:.3f} [{lo:.3f}, {hi:.3f}], A = {self.constant:.3g}"
        if self.irreducible_interval is not None:
            e_lo, e_hi = self.irreducible_interval
            text += f", E = {self.irreducible:.3f} [{e_lo:.3f}, {e_hi:.3f}]"
        return text + f" ({self.confidence:.0%} {self.method} interval, {self.n_points} points)"


def _check_points(x, y, minimum: int, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as 1-d float arrays of the same length, at least ``minimum`` long, finite and positive."""
    arrays = []
    for values, name in ((x, x_name), (y, y_name)):
        a = np.asarray(values, dtype=float)
        if a.ndim != 1:
            raise ValueError(f"{name} must be a 1-d sequence of numbers, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {a.tolist()}")
        if np.any(a <= 0):
            bad = a[a <= 0][0]
            raise ValueError(f"{name} must be positive (a power law is fitted to logarithms), got {bad:g}")
        arrays.append(a)
    x, y = arrays
    if len(x) != len(y):
        raise ValueError(f"{x_name} and {y_name} must have the same length, got {len(x)} and {len(y)}")
    if len(x) < minimum:
        raise ValueError(f"this fit needs at least {minimum} points, got {len(x)}")
    if len(np.unique(x)) < 2:
        raise ValueError(f"{x_name} must take at least two different values, got only {x[0]:g}")
    return x, y


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def fit_power_law(x, y, confidence: float = 0.95, x_name: str = "x", y_name: str = "y") -> PowerLawFit:
    """Fit ``y = A x^-alpha`` by ordinary least squares on the logarithms: ``ln y = ln A - alpha ln x``.

    A straight line through ``(ln x, ln y)``: the slope is ``-alpha`` and the intercept ``ln A``. Their
    standard errors come from the residuals with ``n - 2`` degrees of freedom, and the intervals use Student's t
    quantile, so they are honest about few points (with 5 points the 95% quantile is 3.18, not 1.96). The
    interval for ``A`` is that of ``ln A`` mapped through ``exp``.

    Args:
        x: positive values of the size (parameters, compute...), at least 3 points.
        y: positive losses, one per ``x``. confidence: of the intervals, e.g. 0.95.
        x_name, y_name: what ``x`` and ``y`` are called in error messages.

    Raises:
        ValueError: fewer than 3 points, a value that is not positive and finite, lengths that differ, or all
            ``x`` equal.
    """
    x, y = _check_points(x, y, 3, x_name, y_name)
    _check_confidence(confidence)
    u, v = np.log(x), np.log(y)
    n = len(u)
    design = np.stack([np.ones(n), u], axis=1)  # (n, 2): intercept, slope
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    residuals = v - design @ coef
    dof = n - 2
    sigma2 = residuals @ residuals / dof if dof > 0 else 0.0
    covariance = sigma2 * np.linalg.inv(design.T @ design)  # (2, 2): of (ln A, -alpha)
    se_intercept, se_slope = np.sqrt(np.diag(covariance))
    q = stats.t.ppf(0.5 + confidence / 2, dof)
    intercept, slope = coef
    return PowerLawFit(
        exponent=float(-slope),
        constant=float(math.exp(intercept)),
        irreducible=0.0,
        exponent_interval=(float(-slope - q * se_slope), float(-slope + q * se_slope)),
        constant_interval=(
            float(math.exp(intercept - q * se_intercept)),
            float(math.exp(intercept + q * se_intercept)),
        ),
        irreducible_interval=None,
        confidence=confidence,
        method="t",
        n_points=n,
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
    )


def _floor_and_scale(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of ``y ~ E + A z`` with ``E, A >= 0``, for every row of ``z`` ``(G, n)`` at once.

    For a fixed exponent the model is a straight line in ``z = x^-alpha``: the ordinary regression line, unless
    its intercept or slope is negative; then the best non-negative fit lies on an edge (``A = 0``, the mean; or
    ``E = 0``, a line through the origin), and the better edge is taken. Returns ``E``, ``A``, the residual sum
    of squares, each ``(G,)``.
    """
    y_mean = y.mean()
    z_mean = z.mean(axis=1, keepdims=True)  # (G, 1)
    s_zz = ((z - z_mean) ** 2).sum(axis=1)  # (G,)
    s_zy = ((z - z_mean) * (y - y_mean)).sum(axis=1)
    A = np.divide(s_zy, s_zz, out=np.zeros_like(s_zz), where=s_zz > 1e-300)  # alpha = 0: z is constant, A is 0
    E = y_mean - A * z_mean[:, 0]
    feasible = (A >= 0) & (E >= 0)
    A_origin = np.maximum((z @ y) / (z * z).sum(axis=1), 0.0)  # edge E = 0
    rss_origin = ((y - A_origin[:, None] * z) ** 2).sum(axis=1)
    rss_mean = np.full_like(A, ((y - y_mean) ** 2).sum())  # edge A = 0
    use_origin = rss_origin < rss_mean
    E = np.where(feasible, E, np.where(use_origin, 0.0, y_mean))
    A = np.where(feasible, A, np.where(use_origin, A_origin, 0.0))
    rss = ((y - E[:, None] - A[:, None] * z) ** 2).sum(axis=1)
    return E, A, rss


def _offset_least_squares(x_scaled: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[float, float, float, float]:
    """Best ``(alpha, E, A_scaled, rss)`` of ``y = E + A_scaled x_scaled^-alpha`` with ``E, A_scaled >= 0``.

    Variable projection: for a fixed ``alpha`` the best ``E`` and ``A`` solve a linear least-squares problem
    (:func:`_floor_and_scale`), so only ``alpha`` is searched: on ``grid`` first (the residual need not have a
    single minimum), then by Brent's bounded method between the grid neighbours of the best point.
    """

    def rss_at(alpha: float) -> float:
        return float(_floor_and_scale(x_scaled[None, :] ** (-alpha), y)[2][0])

    rss = _floor_and_scale(x_scaled[None, :] ** (-grid[:, None]), y)[2]  # (G,)
    best = int(np.argmin(rss))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    result = optimize.minimize_scalar(rss_at, bounds=(low, high), method="bounded", options={"xatol": 1e-10})
    alpha = float(result.x) if result.fun <= rss[best] else float(grid[best])
    E, A, r = _floor_and_scale(x_scaled[None, :] ** (-alpha), y)
    return alpha, float(E[0]), float(A[0]), float(r[0])


def fit_power_law_offset(
    x,
    y,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
    exponent_bounds: tuple[float, float] = (0.0, 2.0),
    x_name: str = "x",
    y_name: str = "y",
) -> PowerLawFit:
    """Fit ``y = E + A x^-alpha`` (a power law falling to a floor ``E``) by least squares on ``y`` itself.

    The method is **variable projection** (Golub and Pereyra 1973, *The Differentiation of Pseudo-Inverses and
    Nonlinear Least Squares Problems Whose Variables Separate*): for a fixed exponent the model is linear in
    ``E`` and ``A``, whose best non-negative values are a linear least-squares solution, so the search is over
    ``alpha`` alone (grid, then Brent's method). ``x`` is divided by its geometric mean first so that the
    column ``x^-alpha`` stays well scaled; ``A`` is mapped back afterwards.

    The spread is a **residual bootstrap** (Efron and Tibshirani 1993, *An Introduction to the Bootstrap*,
    chapter 9): ``n_bootstrap`` times, add the fit's residuals (rescaled by ``sqrt(n / (n - 3))``, as fitting
    three constants makes them too small), drawn with replacement, to the fitted curve, refit, and report the
    central ``confidence`` share of the refitted constants. With a handful of points it is a rough spread, not
    an exact interval.

    Args:
        x: positive sizes, at least 4 points (3 constants and one degree of freedom). y: positive losses.
        confidence: share of the bootstrap fits inside each interval. n_bootstrap: refits (0: no interval).
        seed: of the bootstrap draws. exponent_bounds: ``(low, high)``, the range searched for ``alpha``.
        x_name, y_name: what ``x`` and ``y`` are called in error messages.

    Raises:
        ValueError: fewer than 4 points, a value that is not positive and finite, lengths that differ, all
            ``x`` equal, or bad bounds.
    """
    x, y = _check_points(x, y, 4, x_name, y_name)
    _check_confidence(confidence)
    low, high = exponent_bounds
    if not 0.0 <= low < high:
        raise ValueError(f"exponent_bounds must be (low, high) with 0 <= low < high, got {exponent_bounds}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be 0 or more, got {n_bootstrap}")
    x_ref = float(np.exp(np.mean(np.log(x))))
    x_scaled = x / x_ref
    grid = np.linspace(low, high, 201)
    alpha, E, A_scaled, rss = _offset_least_squares(x_scaled, y, grid)
    fitted = E + A_scaled * x_scaled ** (-alpha)
    # Fitting 3 constants shrinks the residuals; rescaled by sqrt(n / (n - 3)) they have the noise's variance.
    residuals = (y - fitted) * math.sqrt(len(y) / (len(y) - 3))
    step = grid[1] - grid[0]
    at_bound = alpha < low + step / 2 or alpha > high - step / 2

    def constant(alpha_: float, A_scaled_: float) -> float:
        return A_scaled_ * x_ref**alpha_  # A_scaled (x / x_ref)^-alpha = (A_scaled x_ref^alpha) x^-alpha

    intervals: list[tuple[float, float]] = [(alpha, alpha), (E, E), (constant(alpha, A_scaled),) * 2]
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = np.empty((n_bootstrap, 3))
        for i in range(n_bootstrap):
            y_star = fitted + rng.choice(residuals, size=len(y), replace=True)
            a_star, e_star, s_star, _ = _offset_least_squares(x_scaled, y_star, grid)
            draws[i] = a_star, e_star, constant(a_star, s_star)
        tail = 100 * (1 - confidence) / 2
        lows, highs = np.percentile(draws, [tail, 100 - tail], axis=0)
        intervals = [(float(lo), float(hi)) for lo, hi in zip(lows, highs, strict=True)]
    return PowerLawFit(
        exponent=alpha,
        constant=float(constant(alpha, A_scaled)),
        irreducible=E,
        exponent_interval=intervals[0],
        constant_interval=intervals[2],
        irreducible_interval=intervals[1],
        confidence=confidence,
        method="bootstrap",
        n_points=len(x),
        rms_residual=float(np.sqrt(rss / len(x))),
        at_bound=bool(at_bound),
    )


def _check_positive_array(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be positive and finite, got {values!r}")
    return a


def chinchilla_loss(n_params, n_tokens, law: ChinchillaLaw = CHINCHILLA):
    """Predicted loss ``E + A / N^alpha + B / D^beta`` of a model of ``n_params`` trained on ``n_tokens``.

    With the default :data:`CHINCHILLA` constants, nats per token on Hoffmann et al. 2022's data and tokenizer.
    Numbers or arrays (broadcast); returns a float for numbers.
    """
    N = _check_positive_array(n_params, "n_params")
    D = _check_positive_array(n_tokens, "n_tokens")
    loss = law.E + law.A / N**law.alpha + law.B / D**law.beta
    return float(loss) if loss.ndim == 0 else loss


COMPUTE_OPTIMAL_RULES = ("fit", "ratio")
"""``"fit"``: minimise :func:`chinchilla_loss` at fixed compute; ``"ratio"``: a fixed number of tokens per parameter."""


def compute_optimal(
    flops: float,
    rule: str = "fit",
    law: ChinchillaLaw = CHINCHILLA,
    tokens_per_parameter: float = TOKENS_PER_PARAMETER,
) -> tuple[float, float]:
    """The model size and token count ``(n_params, n_tokens)`` to spend ``flops`` of training compute on.

    Both rules spend the budget exactly: ``6 N D = flops`` (:func:`lmbook.cost.training_flops`).

    - ``rule="ratio"``: ``D = r N`` with ``r = tokens_per_parameter`` (20, Hoffmann et al.'s rule of thumb), so
      ``6 r N^2 = flops`` and ``N = sqrt(flops / (6 r))``.
    - ``rule="fit"``: minimise ``A / N^alpha + B / D^beta`` subject to ``6 N D = flops``. Setting the derivative
      along the constraint to zero gives ``N = G (flops / 6)^(beta / (alpha + beta))`` and
      ``D = (flops / 6)^(alpha / (alpha + beta)) / G`` with ``G = (alpha A / (beta B))^(1 / (alpha + beta))``.

    Args:
        flops: the training budget ``C`` in FLOPs (positive). rule: ``"fit"`` or ``"ratio"``.
        law: the constants of the fit. tokens_per_parameter: ``r`` of the ratio rule.
    """
    check_choice(rule, COMPUTE_OPTIMAL_RULES, "rule")
    if isinstance(flops, bool) or not isinstance(flops, int | float) or not math.isfinite(flops) or flops <= 0:
        raise ValueError(f"flops must be a positive number, got {flops!r}")
    if rule == "ratio":
        if not tokens_per_parameter > 0:
            raise ValueError(f"tokens_per_parameter must be positive, got {tokens_per_parameter}")
        n_params = math.sqrt(flops / (6.0 * tokens_per_parameter))
        return n_params, tokens_per_parameter * n_params
    a, b = law.alpha, law.beta
    G = (a * law.A / (b * law.B)) ** (1.0 / (a + b))
    n_params = G * (flops / 6.0) ** (b / (a + b))
    return n_params, flops / (6.0 * n_params)


@dataclass(frozen=True)
class ScalingRun:
    """One trained member of a family: its size, its budget and its losses.

    Attributes:
        d_model, n_layers: the shape. seed: of the initial weights and of the windows drawn.
        n_params: all parameters. non_embedding: without the token and position embeddings (Kaplan et al.'s N).
        n_tokens: training tokens ``D``. flops: ``6 N D`` with the non-embedding ``N``.
        train_loss: mean training loss over the last measurement interval. val_loss: validation loss at the end.
        seconds: wall-clock seconds of the run, its validation measurements included.
        curve_tokens, curve_val_loss: the learning curve: tokens seen and validation loss at every measurement
            of the run (the last is ``n_tokens`` and ``val_loss``), for :func:`compute_frontier`.
    """

    d_model: int
    n_layers: int
    seed: int
    n_params: int
    non_embedding: int
    n_tokens: int
    flops: float
    train_loss: float
    val_loss: float
    seconds: float
    curve_tokens: tuple[int, ...] = ()
    curve_val_loss: tuple[float, ...] = ()


def family_configs(
    vocab_size: int, widths: Sequence[int], n_layers: int = 2, head_size: int = 16, max_len: int = 64
) -> list[GPTConfig]:
    """:meth:`GPTConfig.cpu` models that differ only in width: ``d_model`` from ``widths``, ``d_model // head_size``
    heads (at least one, so each head has about ``head_size`` dimensions), the same depth and context for all.
    """
    if not widths:
        raise ValueError("widths must name at least one d_model")
    configs = []
    for width in widths:
        n_heads = max(1, width // head_size)
        if width % n_heads:
            raise ValueError(
                f"d_model={width} does not split into {n_heads} heads of about {head_size}: choose a multiple of "
                f"{n_heads}, or another head_size"
            )
        configs.append(GPTConfig.cpu(vocab_size, d_model=width, n_layers=n_layers, n_heads=n_heads, max_len=max_len))
    return configs


def train_family(
    configs: Sequence[GPTConfig],
    data,
    train_config: LMTrainConfig | None = None,
    seeds: Sequence[int] = (0,),
    device=None,
    verbose: bool = False,
) -> list[ScalingRun]:
    """Train every configuration once per seed on the same data with the same budget; one row per run.

    Every run uses :func:`lmbook.gpt.train_gpt` with ``train_config`` (:meth:`LMTrainConfig.cpu` when None),
    its seed replaced by the run's seed, so all models see the same number of tokens and the same schedule.
    ``flops`` is ``6 N D`` with ``N`` the non-embedding parameters, the convention of Kaplan et al. 2020.

    Args:
        configs: the sizes (e.g. from :func:`family_configs`). data: ``(train, val)`` token ids.
        train_config: the shared training settings. seeds: one run per seed per configuration.
        device: where to train. verbose: print one line per run.
    """
    train_config = LMTrainConfig.cpu() if train_config is None else train_config
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise ValueError("data must be (train, val) token ids: the validation loss is what the family is fitted on")
    runs = []
    for config in configs:
        counts = count_parameters(config)
        for seed in seeds:
            model = GPT(config, seed=seed)
            start = time.perf_counter()
            log = train_gpt(model, data, replace(train_config, seed=seed), device=device)
            run = ScalingRun(
                d_model=config.d_model,
                n_layers=config.n_layers,
                seed=seed,
                n_params=counts["total"],
                non_embedding=counts["non_embedding"],
                n_tokens=log.tokens,
                flops=training_flops(counts["non_embedding"], log.tokens),
                train_loss=log.train_loss[-1],
                val_loss=log.val_loss[-1],
                seconds=time.perf_counter() - start,
                curve_tokens=tuple(step * log.tokens // train_config.steps for step in log.steps),
                curve_val_loss=tuple(log.val_loss),
            )
            runs.append(run)
            if verbose:
                print(format_runs([run], header=False))
    return runs


def format_runs(runs: Sequence[ScalingRun], header: bool = True) -> str:
    """The runs as a fixed-width text table, one line per run."""
    lines = []
    if header:
        lines.append(
            f"{'d_model':>7} {'layers':>6} {'seed':>4} {'n_params':>9} {'non-emb.':>9} {'tokens':>9} "
            f"{'flops':>9} {'train':>6} {'val':>6} {'seconds':>7}"
        )
    for r in runs:
        lines.append(
            f"{r.d_model:>7} {r.n_layers:>6} {r.seed:>4} {r.n_params:>9,} {r.non_embedding:>9,} {r.n_tokens:>9,} "
            f"{r.flops:>9.2e} {r.train_loss:>6.3f} {r.val_loss:>6.3f} {r.seconds:>7.1f}"
        )
    return "\n".join(lines)


def compute_frontier(runs: Sequence[ScalingRun]) -> tuple[np.ndarray, np.ndarray]:
    """The best validation loss reached for each amount of compute, over every point of every learning curve.

    Every measurement of every run is a point ``(6 N D_t, L_t)`` with ``D_t`` the tokens seen so far. The
    **compute frontier** keeps the points that no cheaper point beats: sorted by compute, each kept point has a
    lower loss than all the points before it. Kaplan et al. 2020 fit ``L(C)`` to such a frontier. Caveat: a point
    in the middle of a run was measured before its learning-rate schedule finished, so it understates what a
    model trained for exactly that many tokens reaches (the point Hoffmann et al. 2022 make against it).

    Returns:
        ``(flops, val_loss)``, two 1-d arrays sorted by compute.
    """
    points = []
    for run in runs:
        if len(run.curve_tokens) != len(run.curve_val_loss):
            raise ValueError(f"run of d_model={run.d_model}: curve_tokens and curve_val_loss differ in length")
        points += [
            (training_flops(run.non_embedding, d), loss)
            for d, loss in zip(run.curve_tokens, run.curve_val_loss, strict=True)
        ]
    if not points:
        raise ValueError("the runs have no learning curves: train them with train_family")
    points.sort()
    flops, losses, best = [], [], math.inf
    for c, loss in points:
        if loss < best:
            flops.append(c)
            losses.append(loss)
            best = loss
    return np.array(flops), np.array(losses)
