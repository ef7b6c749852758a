"""The book's interactive widgets, one module per widget family; every widget's logic lives here.

Each widget is split in two. The *callback* is a small pure function of the control values: it computes
numbers, draws nothing and is tested like any other function. The *drawing* keeps one matplotlib figure for
the widget's whole life and only changes what it shows; after each change the figure is rendered to PNG into
an ``ipywidgets.Image`` (:class:`~lmbook.widgets.base.FigureImage`), so the executed book's HTML shows each
widget's initial state without a kernel.

- :mod:`lmbook.widgets.base`: :class:`FigureImage` and the shared sizes.
- :mod:`lmbook.widgets.neuron`: :class:`NeuronExplorer` (chapter 2).
- :mod:`lmbook.widgets.boundary`: :class:`DecisionBoundaryTrainer` (chapter 2).
- :mod:`lmbook.widgets.optimizers`: :class:`OptimizerRace` (chapter 3).
- :mod:`lmbook.widgets.learning_rate`: :class:`LearningRateExplorer` (chapter 3).
- :mod:`lmbook.widgets.overfitting`: :class:`OverfittingExplorer` (chapter 4).
- :mod:`lmbook.widgets.threshold`: :class:`ThresholdExplorer` (chapter 4).
- :mod:`lmbook.widgets.cnn`: :class:`CNNViewer` (chapter 5).
- :mod:`lmbook.widgets.rnn`: :class:`GradientFlowViewer` (chapter 6).
- :mod:`lmbook.widgets.attention`: :class:`AttentionViewer`, :class:`PositionalEncodingExplorer` (chapter 7).
- :mod:`lmbook.widgets.scale`: :class:`ComputeCalculator` (chapter 9).
- :mod:`lmbook.widgets.blitting`: :class:`~lmbook.widgets.blitting.BlitFigureImage`, a faster FigureImage.
"""

from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, WIDGET_SIZE, FigureImage, InteractiveWidget
from lmbook.widgets.boundary import BoundaryResult, DecisionBoundaryTrainer, train_boundary
from lmbook.widgets.learning_rate import LearningRateExplorer, experiment_data, lr_experiment, lr_verdict
from lmbook.widgets.neuron import NeuronExplorer, flat_fraction, neuron_response
from lmbook.widgets.optimizers import RACE_OPTIMIZERS, OptimizerRace, gap_to_minimum, race
from lmbook.widgets.overfitting import OverfittingExplorer, OverfittingResult, overfitting_curves
from lmbook.widgets.threshold import ThresholdExplorer

__all__ = [
    "SLIDER_STYLE",
    "WIDGET_DPI",
    "WIDGET_SIZE",
    "BoundaryResult",
    "DecisionBoundaryTrainer",
    "FigureImage",
    "InteractiveWidget",
    "NeuronExplorer",
    "flat_fraction",
    "neuron_response",
    "train_boundary",
    "OverfittingExplorer",
    "OverfittingResult",
    "ThresholdExplorer",
    "overfitting_curves",
    "RACE_OPTIMIZERS",
    "OptimizerRace",
    "gap_to_minimum",
    "race",
    "LearningRateExplorer",
    "experiment_data",
    "lr_experiment",
    "lr_verdict",
]

from lmbook.widgets.attention import (  # noqa: E402  (chapter 7)
    AttentionViewer,
    PositionalEncodingExplorer,
    encoding_pictures,
)

__all__ += ["AttentionViewer", "PositionalEncodingExplorer", "encoding_pictures"]

from lmbook.widgets.cnn import CNNViewer, cnn_view, tile  # noqa: E402  (chapter 5)

__all__ += ["CNNViewer", "cnn_view", "tile"]

from lmbook.widgets.rnn import GradientFlowViewer, gradient_flow  # noqa: E402  (chapter 6)

__all__ += ["GradientFlowViewer", "gradient_flow"]

from lmbook.widgets.scale import ComputeCalculator, compute_estimate  # noqa: E402  (chapter 9)

__all__ += ["ComputeCalculator", "compute_estimate"]

from lmbook.widgets.compression import CompressionExplorer  # noqa: E402  (chapter 10)

__all__ += ["CompressionExplorer"]

from lmbook.widgets.model_size import ModelSizeExplorer  # noqa: E402  (chapter 1)

__all__ += ["ModelSizeExplorer"]

from lmbook.widgets.adversarial import AdversarialExplorer  # noqa: E402  (chapter 11)

__all__ += ["AdversarialExplorer"]
