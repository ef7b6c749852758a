"""A :class:`~lmbook.widgets.base.FigureImage` that redraws only what changes (used by chapter 4's widgets).

Most of the time it takes matplotlib to draw a figure goes into the parts that never change while a slider
moves: axes, ticks and their labels, legends. **Blitting** draws those once, keeps the rendered pixels, and on
each refresh pastes them back and draws only the changing artists on top, which makes an update several times
faster. The figure itself is not altered, so saving or displaying it still draws everything.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lmbook.widgets.base import FigureImage


class BlitFigureImage(FigureImage):
    """A figure shown as a PNG in an ``ipywidgets.Image``, re-rendering only its changing artists.

    Use as :class:`FigureImage`, and in addition name the artists that change with :meth:`set_dynamic`. They
    are drawn after, so on top of, everything else, in the order given. Call :meth:`invalidate` after changing
    anything that is not dynamic (a static label, the axis limits), so that the next refresh draws it all.

    Args: as :class:`FigureImage`.

    Attributes:
        dynamic: the artists redrawn on every refresh.
        full_draws: how many times the static background has been drawn.
    """

    def __init__(self, figure=None, **kwargs) -> None:
        super().__init__(figure, **kwargs)
        self.dynamic: list = []
        self.full_draws = 0
        self._background = None

    def set_dynamic(self, artists) -> None:
        """Set the artists (lines, texts, images, patches of this figure) that change between refreshes."""
        self.dynamic = list(artists)
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the saved background: the next refresh draws the whole figure again."""
        self._background = None

    def relayout(self) -> None:
        super().relayout()
        self.invalidate()

    def to_png(self) -> bytes:
        """Render the figure (the dynamic artists over the saved background) and return the PNG bytes."""
        canvas = self.figure.canvas
        if not isinstance(canvas, FigureCanvasAgg):
            canvas = FigureCanvasAgg(self.figure)
        if self._background is None:
            # Draw the background with the dynamic artists fully transparent rather than hidden: a hidden
            # artist is also left out of the layout, and an axes title would then move to another place.
            alphas = [artist.get_alpha() for artist in self.dynamic]
            for artist in self.dynamic:
                artist.set_alpha(0.0)
            try:
                canvas.draw()
            finally:
                for artist, alpha in zip(self.dynamic, alphas, strict=True):
                    artist.set_alpha(alpha)
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            self.full_draws += 1
        else:
            canvas.restore_region(self._background)
        renderer = canvas.get_renderer()
        for artist in self.dynamic:
            if artist.get_visible():
                artist.draw(renderer)
        pixels = np.asarray(canvas.buffer_rgba())
        if self.figure.get_facecolor()[3] == 1.0:
            pixels = pixels[:, :, :3]  # an opaque figure's alpha channel carries nothing
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buffer, format="png", compress_level=3)  # as FigureImage.to_png
        return buffer.getvalue()
