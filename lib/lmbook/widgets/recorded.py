"""Widgets that stay alive in the static HTML book: each picture recorded over a grid of control values.

Most readers never start a kernel. For them the build records what a widget shows for every combination of
its main controls (``record_grid``) and the page switches between those recordings in the browser, with no
kernel and no server. The mechanism is ipywidgets' own: the recordings are the children of nested
``Stack`` widgets, and each recorded control is linked to its stacks by ``jslink``, a link that the widget
manager of the HTML page runs in JavaScript. Every picture comes from the widget's own drawing code, so the
page shows exactly what the live widget would draw for those values.

In Jupyter, on Binder and on Colab nothing changes: displaying a widget shows the live one, with every
control. The recorded view replaces it only where the book is built (:func:`recording`, switched on by the
environment variable ``LMBOOK_RECORD_WIDGETS=1``, which ``make book`` sets).

A widget of a new chapter takes part in three steps (see ``docs/widgets.md``):

1. subclass :class:`~lmbook.widgets.base.InteractiveWidget`, keep its controls in ``self.controls``
   (name -> ipywidgets control) and implement ``update(**values)`` (set controls, redraw once);
2. give it a ``record_grid()`` returning ``{name: [values to record]}`` for its main controls;
3. display it as usual; the build records it.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import os
from collections.abc import Sequence

import ipywidgets as widgets
import PIL.Image

# The environment variable that switches the recorded view on (set by the book's build).
RECORD_VARIABLE = "LMBOOK_RECORD_WIDGETS"
# A page keeps its recordings under this many pictures (each one a PNG of a few tens of kB).
MAX_STATES = 160
# Colours kept per recorded picture: an adaptive palette keeps the plots' colours and antialiased text, and makes
# each PNG two to four times smaller than the full-colour one.
PALETTE_COLOURS = 128
# The class on the recorded view's outer box: the browser tests and the stylesheet find it by this name.
CSS_CLASS = "lmbook-recorded"


def recording() -> bool:
    """Whether displayed widgets show their recorded view (the book's build) instead of the live one."""
    return os.environ.get(RECORD_VARIABLE, "") == "1"


def compact_png(png: bytes, colours: int = PALETTE_COLOURS) -> bytes:
    """The same picture as a palette PNG with at most ``colours`` colours (smaller, for the page's weight)."""
    image = PIL.Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    # Fast octree quantisation without dithering: ~6 ms a picture, and flat colours stay flat (smaller files).
    image.quantize(colors=colours, method=PIL.Image.Quantize.FASTOCTREE, dither=PIL.Image.Dither.NONE).save(
        buffer, format="png"
    )
    return buffer.getvalue()


def value_label(control: widgets.ValueWidget, value) -> str:
    """How ``control`` shows ``value``: the option's label of a menu, the readout of a slider."""
    labels = getattr(control, "_options_labels", None)
    values = getattr(control, "_options_values", None)
    if labels is not None and values is not None:
        for label, option in zip(labels, values, strict=True):
            if option == value:
                return str(label)
        raise ValueError(f"{value!r} is not an option of {control.description!r}: {list(values)}")
    fmt = getattr(control, "readout_format", None)
    if fmt and isinstance(value, float):
        return format(value, fmt)
    return str(value)


def state_title(labels: dict[str, str]) -> str:
    """The text that names one recorded state, e.g. ``"weight w = 1.0, activation f = sigmoid"``."""
    return ", ".join(f"{name} = {label}" for name, label in labels.items())


def check_grid(widget, grid: dict[str, Sequence]) -> dict[str, list]:
    """Validate a record grid against the widget's controls; return it with lists of values."""
    controls = widget.controls
    unknown = [name for name in grid if name not in controls]
    if unknown:
        raise ValueError(f"record grid names {unknown}, which are not controls of {type(widget).__name__}: "
                         f"{list(controls)}")  # fmt: skip
    grid = {name: list(values) for name, values in grid.items()}
    empty = [name for name, values in grid.items() if not values]
    if empty:
        raise ValueError(f"record grid gives no values for {empty}")
    for name, values in grid.items():
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"record grid repeats a value of {name!r}: {values}")
        current = controls[name].value
        if current not in values:
            raise ValueError(
                f"the record grid of {name!r} must include the widget's current value {current!r}, so that the page "
                f"opens on what the live widget shows; got {values}"
            )
    n = math.prod(len(values) for values in grid.values())
    if n > MAX_STATES:
        sizes = " x ".join(f"{len(v)} {name}" for name, v in grid.items())
        raise ValueError(f"record grid has {n} states ({sizes}); at most {MAX_STATES} keep the page light")
    return grid


class RecordedView:
    """The recorded view of a widget: its main controls, linked in the browser to the pictures of the grid.

    Args:
        widget: an :class:`~lmbook.widgets.base.InteractiveWidget` with ``controls``, ``update`` and
            ``figure_image`` (and optionally ``status``, an HTML line recorded with each picture).
        grid: ``{control name: values to record}``; the widget's current values must be among them.

    Attributes:
        widget: the ipywidgets container to display. controls: name -> recorded control (``SelectionSlider`` or
        ``Dropdown``, whose ``index`` selects the picture). states: ``{title: (png, status html)}`` in grid
        order. stacks: the nested ``Stack`` widgets, level by level. links: the browser-side links from each
        control to the stacks of its level. fixed: ``{description: label}`` of the controls not recorded.
    """

    def __init__(self, widget, grid: dict[str, Sequence]) -> None:
        self.grid = check_grid(widget, grid)
        start = dict(widget.values)
        originals = widget.controls
        names = list(self.grid)
        self.states: dict[str, tuple[bytes, str]] = {}
        leaves: list[widgets.HTML] = []
        try:
            for combo in itertools.product(*self.grid.values()):
                values = dict(zip(names, combo, strict=True))
                widget.update(**values)
                labels = {originals[n].description: value_label(originals[n], v) for n, v in values.items()}
                title = state_title(labels)
                if title in self.states:
                    raise ValueError(f"two recorded values read the same on the controls ({title}): space them further")
                png = compact_png(widget.figure_image.image.value)
                status = getattr(getattr(widget, "status", None), "value", "")
                self.states[title] = (png, status)
                leaves.append(self._leaf(png, status, title))
        finally:
            widget.update(**{n: start[n] for n in names})
        self.controls = {name: self._control(originals[name], self.grid[name], start[name]) for name in names}
        self.links: list[widgets.Link] = []
        self.stacks = self._stacks(leaves)
        fixed = [n for n in originals if n not in self.grid]
        self.fixed = {originals[n].description: value_label(originals[n], originals[n].value) for n in fixed}
        self.widget = widgets.VBox(
            [self._note(), widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
             self.stacks[0][0]],
        )  # fmt: skip
        self.widget.add_class(CSS_CLASS)

    @staticmethod
    def _leaf(png: bytes, status: str, title: str) -> widgets.HTML:
        """One recorded state: the picture (an inline PNG whose alt text names the state) and its status line."""
        name = html.escape(title, quote=True)
        data = base64.b64encode(png).decode("ascii")
        picture = f'<img class="lmbook-recorded-figure" src="data:image/png;base64,{data}" alt="{name}" title="{name}">'
        return widgets.HTML(picture + (f'<div class="lmbook-recorded-status">{status}</div>' if status else ""))

    @staticmethod
    def _control(original, values: list, current) -> widgets.ValueWidget:
        options = [(value_label(original, v), i) for i, v in enumerate(values)]
        kind = widgets.Dropdown if isinstance(original, widgets.Dropdown) else widgets.SelectionSlider
        control = kind(options=options, value=values.index(current), description=original.description,
                       style=dict(description_width="initial"))  # fmt: skip
        return control

    def _stacks(self, leaves: list[widgets.Widget]) -> list[list[widgets.Stack]]:
        """Nested stacks, one level per control; level k holds prod(n_0..n_{k-1}) stacks, all linked to control k."""
        sizes = [len(v) for v in self.grid.values()]
        controls = list(self.controls.values())
        levels: list[list[widgets.Widget]] = [leaves]
        for size, control in zip(reversed(sizes), reversed(controls), strict=True):
            children = levels[0]
            stacks = [
                widgets.Stack(children[i : i + size], selected_index=control.value)
                for i in range(0, len(children), size)
            ]
            for stack in stacks:
                self.links.append(widgets.jslink((control, "index"), (stack, "selected_index")))
            levels.insert(0, stacks)
        return levels[:-1]

    def _note(self) -> widgets.HTML:
        moved = ", ".join(f"<i>{html.escape(c.description)}</i>" for c in self.controls.values())
        fixed = "; ".join(f"<i>{html.escape(d)}</i> = {html.escape(v)}" for d, v in self.fixed.items())
        text = (
            f"<b>Recorded when the book was built:</b> move {moved} to see the {len(self.states)} settings computed "
            "for this page."
        )
        if fixed:
            text += (
                f" The other settings stay fixed here ({fixed}). To change them, and for every value in between, run "
                "this page on Binder or Colab (the rocket button at the top)."
            )
        else:
            text += " For every value in between, run this page on Binder or Colab (the rocket button at the top)."
        return widgets.HTML(f"<div class='lmbook-recorded-note'>{text}</div>")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
