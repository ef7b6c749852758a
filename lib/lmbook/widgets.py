"""Interactive widgets for exploring a single neuron and watching a small network learn a decision boundary.

Introduced in chapter 2, Neurons, forward propagation and backpropagation.

Each widget is split in two. The *callback* is a small pure function of the control values
(:func:`neuron_response`, :func:`train_boundary`): it computes numbers, draws nothing and is tested like any
other function. The *drawing* keeps one matplotlib figure for the widget's whole life and only changes what it
shows; after each change the figure is rendered to PNG into an ``ipywidgets.Image`` (:class:`FigureImage`).

Why a PNG in an Image widget and not an interactive matplotlib backend: the image is part of the widget's
state, and the book's HTML build stores that state, so a page read without a running kernel still shows the
picture each widget had when the notebook was executed. Each widget therefore draws a meaningful picture as
soon as it is constructed (:class:`DecisionBoundaryTrainer` trains once with its default settings).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lmbook import plotting
from lmbook.activations import ACTIVATIONS, Activation, get_activation
from lmbook.data import DATASETS_2D, make_2d
from lmbook.mlp import MLP, accuracy, train

# Rendering resolution of the widget figures: 8 x 3.5 inches at 90 dpi is a 720 x 315 pixel PNG, sharp
# enough to read and small enough to re-render and send to the browser in a few tens of milliseconds.
WIDGET_DPI = 90
WIDGET_SIZE = (8.0, 3.5)

_SLIDER_STYLE = {"description_width": "initial"}


def _check_dataset(name: str) -> None:
    if name not in DATASETS_2D:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(map(repr, DATASETS_2D))}")


class FigureImage:
    """A matplotlib figure shown through an ``ipywidgets.Image`` that is refreshed after every change.

    Args:
        figure: the figure to show; by default a new one of ``width`` x ``height`` inches.
        width, height: size of the default figure, in inches.
        dpi: resolution of the default figure, and so of the PNG.

    Attributes:
        figure: the matplotlib ``Figure``; draw into its axes, then call :meth:`refresh`.
        image: the ``ipywidgets.Image`` that displays the latest rendering.
        renders: how many times the figure has been rendered.
    """

    def __init__(
        self,
        figure=None,
        width: float = WIDGET_SIZE[0],
        height: float = WIDGET_SIZE[1],
        dpi: float = WIDGET_DPI,
    ) -> None:
        self.figure = plotting.figure(width, height, dpi=dpi) if figure is None else figure
        # Shown at its own size (a box would stretch it, blurring it), but never wider than the page.
        self.image = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", height="auto", align_self="flex-start")
        )
        self.renders = 0

    def to_png(self) -> bytes:
        """Render the figure and return the PNG bytes."""
        # Drawing on the Agg canvas directly, rather than through savefig, draws the figure once; savefig
        # draws it twice whenever the figure has ever had a layout engine.
        canvas = self.figure.canvas
        if not isinstance(canvas, FigureCanvasAgg):
            canvas = FigureCanvasAgg(self.figure)
        canvas.draw()
        buffer = io.BytesIO()
        pixels = np.asarray(canvas.buffer_rgba())
        if self.figure.get_facecolor()[3] == 1.0:
            pixels = pixels[:, :, :3]  # an opaque figure's alpha channel carries nothing: ~10% smaller PNG
        # A middling compression level gives about the default's size in two thirds of the time.
        PIL.Image.fromarray(pixels).save(buffer, format="png", compress_level=3)
        return buffer.getvalue()

    def relayout(self) -> None:
        """Lay the figure out once (constrained layout), then fix the positions of its axes.

        Constrained layout measures every label on each draw, which costs more than the drawing itself. The
        widgets' axes keep their place while only the data change, so they lay out once (and again when
        something that changes the labels' size happens) and render without a layout engine in between.
        """
        self.figure.set_layout_engine("constrained")
        self.figure.draw_without_rendering()
        self.figure.set_layout_engine("none")

    def refresh(self, relayout: bool = False) -> float:
        """Re-render the figure into the image (after :meth:`relayout` if asked); return the seconds taken."""
        start = time.perf_counter()
        if relayout:
            self.relayout()
        self.image.value = self.to_png()
        self.renders += 1
        return time.perf_counter() - start

    def _repr_mimebundle_(self, **kwargs):
        return self.image._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# A single neuron
# ---------------------------------------------------------------------------------------------------------


def neuron_response(x, w, b: float, activation: str | Activation) -> tuple[np.ndarray, np.ndarray]:
    """The pre-activation and output of one neuron: ``z = x w + b`` and ``a = f(z)``.

    Args:
        x: inputs, shape ``(N,)`` for a neuron with one input (then ``w`` is a number), or ``(N, C)`` for a
            neuron with ``C`` inputs (then ``w`` has shape ``(C,)``).
        w: the weight(s). b: the bias, a number.
        activation: a name such as ``"sigmoid"`` or an :class:`~lmbook.activations.Activation`.

    Returns:
        z, a: both of shape ``(N,)``, float64.
    """
    act = get_activation(activation)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim == 1 and w.ndim == 0:
        z = x * w + b
    elif x.ndim == 2 and w.shape == (x.shape[1],):
        z = x @ w + b
    else:
        raise ValueError(
            f"x has shape {x.shape} and w has shape {w.shape}; expected x (N,) with a number w, "
            "or x (N, C) with w (C,)"
        )
    return z, act.f(z)


def flat_fraction(z: np.ndarray, activation: str | Activation, threshold: float = 0.1) -> float:
    """Share of the pre-activations ``z`` (shape ``(N,)``) where ``f'(z)`` is below ``threshold`` x its peak.

    Where the derivative is (nearly) zero, a neuron passes (almost) no gradient back, so it barely learns from
    those inputs: a saturated sigmoid or tanh, or a ReLU on its flat side.
    """
    act = get_activation(activation)
    slopes = np.abs(act.df(np.asarray(z, dtype=np.float64)))
    peak = float(np.max(np.abs(act.df(np.linspace(-10.0, 10.0, 2001)))))
    return float(np.mean(slopes < threshold * peak))


class NeuronExplorer:
    """Sliders for the weight and bias of one neuron and a menu of activations, with a live plot.

    The left panel shows the neuron's output ``a = f(w x + b)`` for inputs ``x`` in ``x_range``; the right
    panel shows the activation ``f`` and its derivative, with the band of pre-activations ``z`` that those
    inputs reach. A large ``|w|`` stretches the band into the flat parts of a sigmoid or tanh, where the
    derivative, and with it the gradient, is nearly zero.

    Args:
        w, b: initial weight and bias. activation: initial activation name.
        x_range: the inputs drawn on the left, ``(low, high)``.

    Attributes:
        widget: the ipywidgets container to display (displaying the explorer itself does the same).
        figure_image: the :class:`FigureImage` holding the figure.
        w_slider, b_slider, activation_menu, status: the controls and the status line.
    """

    Z_LIMIT = 8.0  # the right panel draws f over z in [-Z_LIMIT, Z_LIMIT]

    def __init__(
        self,
        w: float = 1.0,
        b: float = 0.0,
        activation: str = "sigmoid",
        x_range: tuple[float, float] = (-4.0, 4.0),
    ) -> None:
        get_activation(activation)  # fail early, with the list of valid names
        self._holding = False
        self.x = np.linspace(x_range[0], x_range[1], 241)
        self.z_grid = np.linspace(-self.Z_LIMIT, self.Z_LIMIT, 321)
        self.w_slider = widgets.FloatSlider(
            value=w,
            min=-5.0,
            max=5.0,
            step=0.1,
            description="weight w",
            readout_format=".1f",
            style=_SLIDER_STYLE,
        )
        self.b_slider = widgets.FloatSlider(
            value=b,
            min=-5.0,
            max=5.0,
            step=0.1,
            description="bias b",
            readout_format=".1f",
            style=_SLIDER_STYLE,
        )
        self.activation_menu = widgets.Dropdown(
            options=list(ACTIVATIONS), value=activation, description="activation f", style=_SLIDER_STYLE
        )
        self.status = widgets.HTML()
        # Fixed margins instead of a layout engine: the axes stay put when the activation (and with it the
        # y tick labels) changes, and no layout pass slows down each redraw.
        self.figure_image = FigureImage(plotting.figure(*WIDGET_SIZE, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.085, right=0.99, bottom=0.15, top=0.9, wspace=0.14)
        self._build_figure()
        self.redraw()
        for control in (self.w_slider, self.b_slider, self.activation_menu):
            control.observe(self._on_change, names="value")
        controls = widgets.HBox(
            [self.w_slider, self.b_slider, self.activation_menu], layout=widgets.Layout(flex_flow="row wrap")
        )
        self.widget = widgets.VBox([controls, self.figure_image.image, self.status])

    @property
    def figure(self):
        return self.figure_image.figure

    @property
    def values(self) -> dict:
        """The current control values: ``{"w": ..., "b": ..., "activation": ...}``."""
        return {"w": self.w_slider.value, "b": self.b_slider.value, "activation": self.activation_menu.value}

    def _build_figure(self) -> None:
        fig = self.figure
        self.ax_out, self.ax_act = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1.0]})
        ax = self.ax_out
        ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
        (self._a_line,) = ax.plot(
            self.x, np.zeros_like(self.x), color=plotting.CLASS_COLOURS[0], linewidth=2.2
        )
        self._threshold_line = ax.axvline(0.0, color="0.3", linestyle=":", linewidth=1.4)
        # A label that travels with the dotted line, instead of a legend that the curve could run into.
        self._threshold_text = ax.text(
            0.0, 0.97, " $z = 0$", transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize="small",
            color="0.3",
        )  # fmt: skip
        ax.set_xlim(self.x[0], self.x[-1])
        ax.set_xlabel("input $x$")
        ax.set_ylabel("output $a = f(wx + b)$")

        ax = self.ax_act
        ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        ax.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
        zeros = np.zeros_like(self.z_grid)
        (self._f_line,) = ax.plot(
            self.z_grid, zeros, color=plotting.CLASS_COLOURS[0], linewidth=2.2, label="$f(z)$"
        )
        (self._df_line,) = ax.plot(
            self.z_grid, zeros, color="#e08214", linewidth=1.8, linestyle="--", label="$f'(z)$"
        )
        self._band = ax.axvspan(
            -1.0,
            1.0,
            color="#7a7a7a",
            alpha=0.18,
            linewidth=0,
            label=f"$z$ reached by $x \\in [{self.x[0]:g}, {self.x[-1]:g}]$",
        )
        ax.set_xlim(-self.Z_LIMIT, self.Z_LIMIT)
        ax.set_xlabel("pre-activation $z$")
        ax.set_title("activation and its slope", fontsize="medium")
        self._act_legend = ax.legend(loc="upper left", fontsize="small")

    def redraw(self) -> float:
        """Redraw the figure for the current control values; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        w, b, name = self.w_slider.value, self.b_slider.value, self.activation_menu.value
        act = get_activation(name)
        z, a = neuron_response(self.x, w, b, act)
        self._a_line.set_ydata(a)
        # z = 0 at x = -b / w: there a sigmoid gives 0.5, a tanh 0, and a ReLU starts to rise.
        crossing = -b / w if w != 0 else np.nan
        self._threshold_line.set_xdata([crossing, crossing])
        shown = bool(np.isfinite(crossing) and self.x[0] <= crossing <= self.x[-1])
        self._threshold_line.set_visible(shown)
        self._threshold_text.set_visible(shown)
        if shown:
            self._threshold_text.set_x(crossing)
        f, df = act.f(self.z_grid), act.df(self.z_grid)
        self._f_line.set_ydata(f)
        self._df_line.set_ydata(df)
        self._act_legend.get_texts()[0].set_text(f"$f(z)$ = {name}")
        low, high = float(z.min()), float(z.max())
        self._band.set_x(max(low, -self.Z_LIMIT))
        self._band.set_width(max(min(high, self.Z_LIMIT) - max(low, -self.Z_LIMIT), 0.0))
        bottom, top = min(f.min(), df.min()), max(f.max(), df.max())
        pad = 0.08 * (top - bottom)
        self.ax_act.set_ylim(bottom - pad, top + pad)
        # The output panel keeps the same y range as the activation over [-Z_LIMIT, Z_LIMIT], so the two
        # panels read on the same scale and the y axis does not jump as the sliders move.
        self.ax_out.set_ylim(f.min() - pad, f.max() + pad)
        self.ax_out.set_title(
            f"$a = $ {name}$({w:.1f}\\,x {'+' if b >= 0 else '-'} {abs(b):.1f})$", fontsize="medium"
        )
        self.status.value = self.status_text(z, act)
        self.figure_image.refresh()
        return time.perf_counter() - start

    def status_text(self, z: np.ndarray, activation: Activation) -> str:
        """The status line under the plot, for pre-activations ``z`` (shape ``(N,)``)."""
        flat = flat_fraction(z, activation)
        return (
            f"z = w·x + b runs from <b>{z.min():.1f}</b> to <b>{z.max():.1f}</b> for x in "
            f"[{self.x[0]:g}, {self.x[-1]:g}]; the activation is nearly flat (slope below 10% of its "
            f"peak) for <b>{flat:.0%}</b> of these inputs."
        )

    def _on_change(self, change) -> None:
        if not self._holding:
            self.redraw()

    def update(self, w: float | None = None, b: float | None = None, activation: str | None = None) -> float:
        """Set any of the controls, redraw once, and return the seconds the redraw took."""
        if activation is not None:
            get_activation(activation)
        # Setting three controls would otherwise trigger three redraws through the observers.
        self._holding = True
        try:
            if w is not None:
                self.w_slider.value = w
            if b is not None:
                self.b_slider.value = b
            if activation is not None:
                self.activation_menu.value = activation
        finally:
            self._holding = False
        return self.redraw()

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"{type(self).__name__}({settings})"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# A small network learning a decision boundary
# ---------------------------------------------------------------------------------------------------------


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


class DecisionBoundaryTrainer:
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
            layout=widgets.Layout(
                grid_template_columns="repeat(auto-fill, minmax(260px, 1fr))", grid_gap="2px 12px"
            ),
        )
        self.widget = widgets.VBox([grid, self.figure_image.image, self.status])

    @property
    def figure(self):
        return self.figure_image.figure

    @property
    def values(self) -> dict:
        """The current settings, as keyword arguments of :func:`train_boundary` (plus ``layers``)."""
        return {name: control.value for name, control in self.controls.items()}

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
        self._diverged_text.set_text(
            f"diverged at step {len(losses)}:\nlearning rate too large" if r.diverged else ""
        )
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
        self._holding = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._holding = False
        return self.train()

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"{type(self).__name__}({settings})"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
