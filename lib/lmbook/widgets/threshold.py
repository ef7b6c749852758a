"""A classifier's decision threshold on a slider: confusion matrix, precision, recall, F1 and ROC (chapter 4).

The callback is :func:`lmbook.metrics.threshold_metrics`, a pure function of the threshold; the ROC curve does
not depend on the threshold and is computed once. :class:`ThresholdExplorer` draws the counts as a heat map,
the scores of each class with the threshold cutting through them, and the operating point on the ROC curve.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np

from lmbook import plotting
from lmbook.metrics import ThresholdMetrics, roc_auc, roc_curve, threshold_metrics
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, WIDGET_SIZE, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

_SLIDER_STEPS = 200  # the threshold slider moves in this many steps from the lowest to the highest score
_HISTOGRAM_BINS = 30


class ThresholdExplorer(InteractiveWidget):
    """A threshold slider over a binary classifier's scores, with everything that the threshold decides.

    Left: the confusion matrix (rows the true class, columns the prediction) as a heat map with its counts.
    Middle: the distribution of the scores of each class, the threshold, and the side predicted positive.
    Right: the ROC curve, which is the same for every threshold, with the current operating point on it.
    The line under the plot gives precision, recall, F1 and accuracy. Raising the threshold predicts fewer
    positives: false positives fall (precision tends to rise) while false negatives grow (recall falls).

    Args:
        y_true: labels 0 and 1, shape ``(N,)``; both classes must occur.
        scores: the classifier's scores, larger meaning "more likely positive" (probabilities or logits),
            shape ``(N,)``.
        threshold: initial threshold; by default 0.5 when the scores lie in [0, 1] (probabilities), else the
            median score. The prediction is positive when ``score >= threshold``.
        class_names: names of class 0 and class 1 for the labels, e.g. ``("benign", "malignant")``.

    Attributes:
        widget: the ipywidgets container to display (displaying the explorer itself does the same).
        figure_image: the :class:`~lmbook.widgets.blitting.BlitFigureImage` holding the figure.
        threshold_slider, status: the slider and the line of text under the plot.
        metrics: the latest :class:`~lmbook.metrics.ThresholdMetrics`.
        fpr, tpr, thresholds, auc: the ROC curve and the area under it.
    """

    def __init__(
        self,
        y_true,
        scores,
        threshold: float | None = None,
        class_names: tuple[str, str] = ("negative", "positive"),
    ) -> None:
        # roc_curve checks the labels, the shapes and that both classes occur.
        self.fpr, self.tpr, self.thresholds = roc_curve(y_true, scores)
        self.y_true = np.asarray(y_true).astype(np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.auc = roc_auc(self.y_true, self.scores)
        self.class_names = tuple(class_names)
        low, high = float(self.scores.min()), float(self.scores.max())
        if low == high:
            low, high = low - 0.5, high + 0.5  # one score for everything: still give the slider some room
        if threshold is None:
            threshold = 0.5 if 0.0 <= low and high <= 1.0 else float(np.median(self.scores))
        self.low, self.high = low, high
        self._check_threshold(threshold)
        self._holding = False
        self.threshold_slider = widgets.FloatSlider(
            value=threshold,
            min=low,
            max=high,
            step=(high - low) / _SLIDER_STEPS,
            description="threshold",
            readout_format=".3g",
            continuous_update=True,
            style=SLIDER_STYLE,
            layout=widgets.Layout(width="420px"),
        )
        self.controls = {"threshold": self.threshold_slider}
        self.status = widgets.HTML()
        # Fixed margins instead of a layout engine: nothing in the figure changes size. Only the artists that
        # the threshold moves are redrawn (blitting), which keeps a slider move well under 100 ms.
        self.figure_image = BlitFigureImage(plotting.figure(*WIDGET_SIZE, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.085, right=0.985, bottom=0.15, top=0.88, wspace=0.42)
        self._build_figure()
        self.figure_image.set_dynamic(
            [
                self._cm_image,
                *self._cm_texts.values(),
                self._positive_side,
                self._threshold_line,
                self._operating_point,
            ]
        )
        self.metrics: ThresholdMetrics | None = None
        self.redraw()
        self.threshold_slider.observe(self._on_change, names="value")
        self.widget = widgets.VBox([self.threshold_slider, self.figure_image.image, self.status])

    @property
    def values(self) -> dict:
        """The current control value: ``{"threshold": ...}``."""
        return {"threshold": self.threshold_slider.value}

    def _check_threshold(self, threshold: float) -> None:
        if not self.low <= threshold <= self.high:
            raise ValueError(
                f"threshold must lie between the lowest and highest score, {self.low:.4g} and {self.high:.4g}; "
                f"got {threshold}"
            )

    def record_grid(self) -> dict:
        """Recorded for the static book: 41 thresholds evenly spread from the lowest to the highest score.

        The grid point nearest the current threshold is replaced by it, so that the page opens on the live
        widget's picture and no two recorded thresholds read the same.
        """
        current = self.values["threshold"]
        thresholds = [float(t) for t in np.linspace(self.low, self.high, 41)]
        thresholds[int(np.argmin(np.abs(np.asarray(thresholds) - current)))] = current
        return {"threshold": sorted(thresholds)}

    def _build_figure(self) -> None:
        fig = self.figure
        self.ax_cm, self.ax_hist, self.ax_roc = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.8, 1.15, 1.0]})
        blue, red = plotting.CLASS_COLOURS
        negative, positive = self.class_names

        ax = self.ax_cm
        # The colour scale ends at the larger class's size, the most any one cell can hold.
        self._cm_max = int(max(np.sum(self.y_true == 0), np.sum(self.y_true == 1)))
        self._cm_image = ax.imshow(np.zeros((2, 2)), cmap="Blues", vmin=0, vmax=self._cm_max)
        self._cm_texts = {}
        cells = {(0, 0): "TN", (0, 1): "FP", (1, 0): "FN", (1, 1): "TP"}
        for (row, col), name in cells.items():
            self._cm_texts[row, col] = ax.text(col, row, name, ha="center", va="center", fontsize="medium")
        ax.set_xticks([0, 1], [negative, positive])
        ax.set_yticks([0, 1], [negative, positive], rotation=90, va="center")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title("confusion matrix", fontsize="medium")

        ax = self.ax_hist
        edges = np.linspace(self.low, self.high, _HISTOGRAM_BINS + 1)
        tallest = 1
        for label, colour, name in ((0, blue, negative), (1, red, positive)):
            counts, _ = np.histogram(self.scores[self.y_true == label], bins=edges)
            ax.stairs(counts, edges, color=colour, fill=True, alpha=0.35, label=f"true {name}")
            ax.stairs(counts, edges, color=colour, linewidth=1.2)
            tallest = max(tallest, int(counts.max()))
        self._positive_side = ax.axvspan(0.0, 1.0, color="0.5", alpha=0.15, linewidth=0, label="predicted positive")
        self._threshold_line = ax.axvline(0.0, color="black", linewidth=1.6)
        ax.set_xlim(self.low, self.high)
        ax.set_ylim(0, 1.5 * tallest)  # head room for the legend above the bars
        ax.set_xlabel("score")
        ax.set_ylabel("examples")
        ax.set_title("scores of each class", fontsize="medium")
        ax.legend(loc="upper center", fontsize="x-small", frameon=False)

        ax = self.ax_roc
        ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1.0)
        ax.plot(self.fpr, self.tpr, color=plotting.CLASS_COLOURS[0], linewidth=1.8, drawstyle="default")
        (self._operating_point,) = ax.plot([0.0], [0.0], marker="o", markersize=8, color="black", linestyle="none")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate (recall)")
        ax.set_title(f"ROC curve, AUC = {self.auc:.3f}", fontsize="medium")

    def redraw(self) -> float:
        """Evaluate the current threshold and redraw; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        t = self.threshold_slider.value
        self.metrics = m = threshold_metrics(self.y_true, self.scores, t)
        self._cm_image.set_data(m.confusion)
        for (row, col), text in self._cm_texts.items():
            count = int(m.confusion[row, col])
            name = text.get_text().split("\n")[0]
            text.set_text(f"{name}\n{count}")
            # Dark cells get white text, light cells black, so every count stays readable.
            text.set_color("white" if count > 0.6 * self._cm_max else "black")
        self._threshold_line.set_xdata([t, t])
        self._positive_side.set_x(t)
        self._positive_side.set_width(self.high - t)
        self._operating_point.set_data([m.fpr], [m.tpr])
        self.status.value = self.status_text(m)
        self.figure_image.refresh()
        return time.perf_counter() - start

    @staticmethod
    def status_text(m: ThresholdMetrics) -> str:
        """The line under the plot for the metrics ``m`` at one threshold."""
        return (
            f"threshold <b>{m.threshold:.3g}</b>: precision <b>{m.precision:.3f}</b>, recall "
            f"<b>{m.recall:.3f}</b>, F1 <b>{m.f1:.3f}</b>, accuracy {m.accuracy:.3f} "
            f"(TP {m.tp}, FP {m.fp}, TN {m.tn}, FN {m.fn})"
        )

    def _on_change(self, change) -> None:
        if not self._holding:
            self.redraw()

    def update(self, threshold: float | None = None) -> float:
        """Move the threshold slider, redraw once, and return the seconds the redraw took."""
        if threshold is not None:
            self._check_threshold(threshold)
            # Without holding, the slider's observer would redraw as well.
            with self.holding():
                self.threshold_slider.value = threshold
        return self.redraw()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold_slider.value!r}, n={len(self.y_true)})"
