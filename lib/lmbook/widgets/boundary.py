"""A small network learning a decision boundary on a 2-D data set, trained on a button press (chapter 2).

The callback, :func:`train_boundary`, trains and evaluates and draws nothing; :class:`DecisionBoundaryTrainer`
draws what it returns. The widget trains once with its default settings when it is built, so the page shows
a learned boundary even without a running kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.activations import ACTIVATIONS, get_activation
from lmbook.data import DATASETS_2D, make_2d
from lmbook.mlp import MLP, accuracy, train
from lmbook.testing import check_choice
from lmbook.widgets.base import FigureImage, InteractiveWidget


def _check_dataset(name: str) -> None:
    check_choice(name, DATASETS_2D, "data set")


class _Diverged(Exception):
    """Raised inside training to stop it once the loss is no longer a finite number."""


@dataclass(frozen=True, eq=False)
class BoundaryResult:
    """What :func:`train_boundary` returns: the trained network's probabilities over a grid, and its history.

    Attributes:
        dataset, sizes, activation, lr, steps, seed: the settings that produced it.
        X: the training points, shape ``(n, 2)``. y: their labels, shape ``(n,)``.
        xx, yy: grid coordinates, shape ``(R, R)`` each. probs: probability of class 1 there, ``(R, R)``.
        losses: training loss at every step, length ``steps`` (shorter if training diverged).
        train_accuracy: accuracy on the training points after training, in [0, 1].
        model: the trained :class:`~lmbook.mlp.MLP`.
    """

    dataset: str
    sizes: tuple[int, ...]
    activation: str
    lr: float
    steps: int
    seed: int
    X: np.ndarray
    y: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    probs: np.ndarray
    losses: tuple[float, ...]
    train_accuracy: float
    model: MLP

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def diverged(self) -> bool:
        """Whether the loss overflowed to infinity or NaN, which stopped the training early."""
        return not np.isfinite(self.final_loss)


def train_boundary(
    dataset: str,
    hidden,
    lr: float,
    activation: str,
    steps: int,
    seed: int = 0,
    n: int = 200,
    resolution: int = 80,
) -> BoundaryResult:
    """Train a fresh MLP on a 2-D data set by full-batch gradient descent and evaluate it over the plane.

    Args:
        dataset: ``"xor"``, ``"moons"``, ``"circles"`` or ``"spirals"`` (see :data:`lmbook.data.DATASETS_2D`).
        hidden: hidden layer widths: an int for one hidden layer, or a tuple such as ``(16, 16)``.
        lr: learning rate, > 0.
        activation: hidden activation name.
        steps: number of gradient steps, >= 1.
        seed: seeds both the data and the initial weights.
        n: number of data points.
        resolution: grid points along each axis of the probability map.
    """
    _check_dataset(dataset)
    act = get_activation(activation)
    hidden = (int(hidden),) if np.isscalar(hidden) else tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must give at least one layer of at least one unit, got {hidden}")
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    X, y = make_2d(dataset, n=n, seed=seed)
    model = MLP((2, *hidden, 1), activation=act, seed=seed)
    losses: list[float] = []

    def record(step: int, loss: float, model: MLP) -> None:
        losses.append(loss)
        if not np.isfinite(loss):
            raise _Diverged

    # Too large a learning rate makes the weights overflow. That is a lesson for the reader, shown in the
    # status line, so numpy's overflow warnings are silenced and training stops at the first bad loss.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            train(model, X, y, lr=lr, steps=int(steps), callback=record)
        except _Diverged:
            pass
        xx, yy, points = plotting.decision_grid(X, resolution=resolution)
        probs = model.predict_proba(points).reshape(xx.shape)
        train_accuracy = accuracy(model, X, y)
    return BoundaryResult(
        dataset=dataset,
        sizes=model.sizes,
        activation=act.name,
        lr=float(lr),
        steps=int(steps),
        seed=seed,
        X=X,
        y=y,
        xx=xx,
        yy=yy,
        probs=probs,
        losses=tuple(losses),
        train_accuracy=train_accuracy,
        model=model,
    )


class DecisionBoundaryTrainer(InteractiveWidget):
    """Controls for a data set and a small MLP, a Train button, and the learned boundary with its loss curve.

    Pressing Train runs :func:`train_boundary` with the current settings and redraws the same figure. The
    trainer trains once when it is constructed, so it shows a trained boundary from the start.

    Args:
        dataset, hidden, layers, lr, activation, steps, seed: initial settings (``hidden`` units in each of
            ``layers`` hidden layers). The sliders allow 1-32 units, 1-3 layers, learning rates from 0.001
            to 10, 50-3000 steps and seeds 0-9.
        n: number of data points.

    Attributes:
        widget: the ipywidgets container to display (displaying the trainer itself does the same).
        result: the latest :class:`BoundaryResult`.
        timings: ``{"train_s": ..., "redraw_s": ...}`` of the latest training.
        controls: dict name -> control widget; ``train_button`` and ``status`` as well.
    """

    def __init__(
        self,
        dataset: str = "moons",
        hidden: int = 16,
        layers: int = 2,
        lr: float = 0.3,
        activation: str = "tanh",
        steps: int = 500,
        seed: int = 0,
        n: int = 200,
    ) -> None:
        _check_dataset(dataset)
        get_activation(activation)
        self.n = n
        self._holding = False
        wide = widgets.Layout(width="auto")
        style = {"description_width": "100px"}  # one width for all, so the sliders line up in columns
        self.controls = {
            "dataset": widgets.Dropdown(
                options=list(DATASETS_2D),
                value=dataset,
                description="data set",
                style=style,
                layout=wide,
            ),
            "activation": widgets.Dropdown(
                options=list(ACTIVATIONS),
                value=activation,
                description="activation",
                style=style,
                layout=wide,
            ),
            "hidden": widgets.IntSlider(
                value=hidden,
                min=1,
                max=32,
                description="hidden units",
                style=style,
                layout=wide,
            ),
            "layers": widgets.IntSlider(
                value=layers, min=1, max=3, description="hidden layers", style=style, layout=wide
            ),
            # A log slider: useful learning rates span several orders of magnitude.
            "lr": widgets.FloatLogSlider(
                value=lr,
                base=10,
                min=-3,
                max=1,
                step=0.1,
                description="learning rate",
                readout_format=".3g",
                style=style,
                layout=wide,
            ),
            "steps": widgets.IntSlider(
                value=steps, min=50, max=3000, step=50, description="steps", style=style, layout=wide
            ),
            "seed": widgets.IntSlider(value=seed, min=0, max=9, description="seed", style=style, layout=wide),
        }
        self.train_button = widgets.Button(
            description="Train",
            button_style="primary",
            tooltip="train a new network with these settings",
            layout=widgets.Layout(width="120px", margin="2px 0 2px 104px"),
        )
        self.train_button.on_click(lambda _button: self.train())
        self.status = widgets.HTML()
        self.figure_image = FigureImage()
        self._build_figure()
        self.result: BoundaryResult | None = None
        self.timings: dict[str, float] = {}
        self.train()
        for name in ("dataset", "activation", "hidden", "layers", "lr", "steps", "seed"):
            self.controls[name].observe(self._on_change, names="value")
        c = self.controls
        order = ["dataset", "activation", "hidden", "layers", "lr", "steps", "seed"]
        grid = widgets.GridBox(
            [c[name] for name in order] + [self.train_button],
            # As many columns as fit: three on a book page, fewer on a narrow screen.
            layout=widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(260px, 1fr))", grid_gap="2px 12px"),
        )
        self.widget = widgets.VBox([grid, self.figure_image.image, self.status])

    def record_grid(self) -> dict:
        """Recorded for the static book: every data set x every activation (16 trainings, ~0.3 s each)."""
        return {"dataset": list(DATASETS_2D), "activation": list(ACTIVATIONS)}

    def _build_figure(self) -> None:
        self.ax_boundary, self.ax_loss = self.figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1.0]})
        ax = self.ax_loss
        (self._loss_line,) = ax.plot([], [], color=plotting.CLASS_COLOURS[1], linewidth=1.8)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.set_title("loss while training", fontsize="medium")
        ax.grid(True, which="major", color="0.9")
        self._diverged_text = ax.text(
            0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", color=plotting.CLASS_COLOURS[1]
        )

    def _settings(self) -> dict:
        v = self.values
        return {
            "dataset": v["dataset"],
            "hidden": (v["hidden"],) * v["layers"],
            "lr": v["lr"],
            "activation": v["activation"],
            "steps": v["steps"],
            "seed": v["seed"],
            "n": self.n,
        }

    def train(self) -> float:
        """Train a new network with the current settings and redraw; return the total seconds.

        The split between training and drawing is kept in :attr:`timings`.
        """
        self.train_button.disabled = True
        try:
            start = time.perf_counter()
            self.result = train_boundary(**self._settings())
            train_s = time.perf_counter() - start
            redraw_s = self.redraw(relayout=True)
        finally:
            self.train_button.disabled = False
        self.timings = {"train_s": train_s, "redraw_s": redraw_s}
        self.status.value = self.status_text(self.result) + f" <small>(trained in {train_s:.2f} s)</small>"
        return train_s + redraw_s

    def status_text(self, result: BoundaryResult) -> str:
        """One line summarising a training run."""
        if result.diverged:
            return (
                f"<b>Training diverged</b> at step {len(result.losses)} of {result.steps}: the loss became "
                f"{result.final_loss}. The learning rate ({result.lr:.3g}) is too large for this network."
            )
        return (
            f"train accuracy <b>{result.train_accuracy:.2f}</b> after {result.steps} steps, "
            f"final loss <b>{result.final_loss:.3g}</b>; network {' → '.join(map(str, result.sizes))}, "
            f"{result.model.num_parameters()} parameters."
        )

    def redraw(self, relayout: bool = False) -> float:
        """Redraw the figure from the latest result; return the seconds it took (drawing + PNG).

        ``relayout=True`` also recomputes the space around the axes, as a new data set or network needs.
        """
        start = time.perf_counter()
        r = self.result
        ax = self.ax_boundary
        ax.clear()
        title = f"{r.dataset}, {r.activation}, {len(r.sizes) - 2} × {r.sizes[1]} hidden"
        # A diverged network has no probabilities to show: draw an undecided 0.5 map under the data.
        probs = np.where(np.isfinite(r.probs), r.probs, 0.5)
        plotting.draw_probability_map(
            ax, r.xx, r.yy, probs, r.X, r.y, title=title + (" (diverged)" if r.diverged else "")
        )
        ax.title.set_fontsize("medium")
        ax.set_aspect("equal", adjustable="box")
        losses = np.asarray(r.losses)
        self._loss_line.set_data(np.arange(1, len(losses) + 1), losses)
        self.ax_loss.set_xlim(0, r.steps)
        finite = losses[np.isfinite(losses)]
        low, high = (finite.min(), finite.max()) if len(finite) else (0.1, 1.0)
        self.ax_loss.set_ylim(max(low, 1e-4) / 1.5, min(high, 1e6) * 1.5)
        self._diverged_text.set_text(f"diverged at step {len(losses)}:\nlearning rate too large" if r.diverged else "")
        self.figure_image.refresh(relayout=relayout)
        return time.perf_counter() - start

    def _on_change(self, change) -> None:
        if not self._holding:
            self.status.value = "Settings changed: press <b>Train</b> to train a new network."

    def update(self, **values) -> float:
        """Set any controls (names as in :attr:`values`), train and redraw; return the total seconds."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {list(self.controls)}")
        if "dataset" in values:
            _check_dataset(values["dataset"])
        if "activation" in values:
            get_activation(values["activation"])
        with self.holding():
            for name, value in values.items():
                self.controls[name].value = value
        return self.train()
