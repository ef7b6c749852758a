"""The drawing surface shared by the book's widgets: a matplotlib figure shown as a PNG in an ipywidgets Image.

Why a PNG in an Image widget and not an interactive matplotlib backend: the image is part of the widget's
state, and the book's HTML build stores that state, so a page read without a running kernel still shows the
picture each widget had when the notebook was executed. Each widget therefore draws a meaningful picture as
soon as it is constructed.
"""

from __future__ import annotations

import contextlib
import io
import time

import ipywidgets as widgets
import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lmbook import plotting

# Rendering resolution of the widget figures: 8 x 3.5 inches at 90 dpi is a 720 x 315 pixel PNG, sharp
# enough to read and small enough to re-render and send to the browser in a few tens of milliseconds.
WIDGET_DPI = 90
WIDGET_SIZE = (8.0, 3.5)

# Slider and dropdown labels keep their full width instead of being cut to ellipses.
SLIDER_STYLE = {"description_width": "initial"}


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


class InteractiveWidget:
    """What every widget of the book shares; a widget class sets ``self.widget`` (the ipywidgets container to
    show) and ``self.figure_image`` (its picture), and either ``self.controls`` (a dict name -> control) or its
    own ``values``.

    Displaying the object displays ``self.widget``; its repr lists the settings. Observers of the controls
    skip their redraw while :meth:`holding` is active, so that ``update(...)`` can set several controls and
    redraw once.
    """

    _holding = False

    @property
    def figure(self):
        """The matplotlib figure behind the picture."""
        return self.figure_image.figure

    @property
    def values(self) -> dict:
        """The current settings: ``{name: value}`` of every control."""
        return {name: control.value for name, control in self.controls.items()}

    @contextlib.contextmanager
    def holding(self):
        """Inside this block, changing controls does not redraw; the caller redraws once afterwards."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"{type(self).__name__}({settings})"

    def _connect(self, rows: list | None = None) -> None:
        """Redraw when a control moves (:meth:`_on_change`), and set ``self.widget``: ``rows`` (default: one
        wrapping row of every control), then the picture, then ``self.status``."""
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        if rows is None:
            rows = [widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))]
        self.widget = widgets.VBox([*rows, self.figure_image.image, self.status])

    def _on_change(self, change) -> None:
        """A control moved: redraw, unless :meth:`holding` is active (``update`` then redraws once)."""
        if not self._holding:
            self.redraw()

    def _check_settings(self, settings: dict) -> None:
        """Raise ValueError if the complete settings ``{name: value}`` are not valid; a widget with rules
        beyond its controls' own ranges and options overrides this."""

    def update(self, **values) -> float:
        """Set any of the controls by name, redraw once; return the seconds the redraw took.

        Raises:
            ValueError: an unknown setting or an invalid value (:meth:`_check_settings`); nothing is changed then.
        """
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {sorted(self.controls)}")
        self._check_settings({**self.values, **values})
        with self.holding():
            for name, value in values.items():
                self.controls[name].value = value
        return self.redraw()

    def record_grid(self) -> dict:
        """The main controls and the values of each that the static book records: ``{name: [values]}``.

        Each widget class chooses them so that the page stays light (see :mod:`lmbook.widgets.recorded`).
        """
        raise NotImplementedError(f"{type(self).__name__} has no record_grid(): it cannot be recorded for the book")

    def recorded(self, grid: dict | None = None):
        """The :class:`~lmbook.widgets.recorded.RecordedView` of this widget over ``grid`` (or ``record_grid()``)."""
        from lmbook.widgets.recorded import RecordedView

        return RecordedView(self, self.record_grid() if grid is None else grid)

    def _repr_mimebundle_(self, **kwargs):
        from lmbook.widgets.recorded import recording

        if recording():
            # The book's build: the page gets the recorded view, whose main controls work without a kernel.
            if getattr(self, "_recorded_view", None) is None:
                self._recorded_view = self.recorded()
            return self._recorded_view._repr_mimebundle_(**kwargs)
        return self.widget._repr_mimebundle_(**kwargs)
