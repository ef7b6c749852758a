"""Looking inside a convolutional network: kernels, feature maps and the pixels that matter (chapter 5).

The callbacks draw nothing: :func:`tile` lays a stack of small maps out as one mosaic picture, and
:func:`cnn_view` computes what one view shows for one image (the kernels of a layer, its feature maps, the
gradient saliency or the occlusion map of :mod:`lmbook.saliency`). :class:`CNNViewer` draws the image, the
network's class probabilities and the chosen view, for any ``lmbook`` CNN and any image of a data set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from torch import nn

from lmbook import plotting
from lmbook.cnn import conv_layer_names, feature_maps
from lmbook.loop import evaluation_mode
from lmbook.saliency import gradient_saliency, image_batch, occlusion_map
from lmbook.testing import check_choice, check_shape
from lmbook.widgets.base import WIDGET_DPI, FigureImage, InteractiveWidget

VIEWS = ("kernels", "feature maps", "saliency", "occlusion")
MAX_MAPS = 16  # kernels or feature maps shown at once: a 4 x 4 mosaic stays readable at the widget's size
RECORDED_IMAGES = 8  # images in the static book's recording: 8 images x 3 layers x 4 views = 96 states
RECORDED_LAYERS = 3
# Signed values (kernels, feature maps, occlusion) in red and blue around white at 0; magnitudes (saliency) from
# black to yellow. NaN (the gaps of a mosaic) is drawn white.
_COLOURS = {
    True: matplotlib.colormaps["RdBu_r"].with_extremes(bad="white"),
    False: matplotlib.colormaps["magma"].with_extremes(bad="white"),
}


def tile(maps: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """Lay ``M`` maps of ``h x w`` out on a grid, separated by ``gap`` rows and columns of NaN (drawn blank).

    Args:
        maps: shape ``(M, h, w)``.
        columns: maps per row; None: ``ceil(sqrt(M))``, a near-square mosaic.
        gap: blank pixels between neighbouring maps, >= 0.

    Returns:
        float64 array ``(rows * (h + gap) - gap, columns * (w + gap) - gap)``, with map ``m`` at row
        ``m // columns``, column ``m % columns``.
    """
    maps = np.asarray(maps, dtype=np.float64)
    check_shape(maps, ("M", "h", "w"), "maps")
    M, h, w = maps.shape
    if M == 0:
        raise ValueError("tile needs at least one map")
    columns = math.ceil(math.sqrt(M)) if columns is None else int(columns)
    if columns < 1 or gap < 0:
        raise ValueError(f"columns must be >= 1 and gap >= 0, got columns={columns}, gap={gap}")
    rows = math.ceil(M / columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan)
    for m in range(M):
        r, c = divmod(m, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = maps[m]
    return out


@dataclass(frozen=True)
class View:
    """What :func:`cnn_view` computed for one image, layer and view.

    Attributes:
        picture: the 2-d array drawn on the right, ``(H', W')``: a mosaic (NaN gaps) or one map.
        shown: how many kernels or maps the mosaic holds (1 for saliency and occlusion). total: how many the
            layer has (1 for saliency and occlusion).
        symmetric: whether the colours are centred on 0 (signed values) rather than starting at 0.
        description: one phrase saying what the picture shows.
    """

    picture: np.ndarray
    shown: int
    total: int
    symmetric: bool
    description: str


def cnn_view(model: nn.Module, image, layer: str, view: str, max_maps: int = MAX_MAPS, patch: int = 2) -> View:
    """Compute one view of ``model`` for one image; draws nothing.

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)``. image: one image ``(C, H, W)``.
        layer: the name of one of its ``nn.Conv2d`` layers (:func:`lmbook.cnn.conv_layer_names`); used by the
            ``"kernels"`` and ``"feature maps"`` views.
        view: ``"kernels"`` (the layer's first ``max_maps`` kernels; for a layer with several input channels,
            each output map's kernel on the input channel where its weights are largest), ``"feature maps"`` (the
            layer's first ``max_maps`` outputs for the image), ``"saliency"`` (:func:`lmbook.saliency.gradient_saliency`
            of the predicted class) or ``"occlusion"`` (:func:`lmbook.saliency.occlusion_map` with ``patch``).
        max_maps: the most kernels or maps in the mosaic. patch: the occlusion square's side.

    Returns:
        A :class:`View`.
    """
    check_choice(view, VIEWS, "view")
    convs = conv_layer_names(model)
    check_choice(layer, convs, "convolution layer")
    if view == "kernels":
        weight = model.get_submodule(layer).weight.detach().cpu().double().numpy()  # (C_out, C_in, k, k)
        c_out, c_in = weight.shape[:2]
        n = min(max_maps, c_out)
        strongest = np.abs(weight[:n]).sum(axis=(2, 3)).argmax(axis=1)  # (n,): the input channel of each kernel
        kernels = weight[np.arange(n), strongest]  # (n, k, k)
        which = "" if c_in == 1 else f", each on its strongest of {c_in} input channels"
        return View(tile(kernels), n, c_out, True, f"{n} of the {c_out} kernels of {layer}{which}")
    if view == "feature maps":
        param = next(model.parameters())
        x = torch.as_tensor(np.asarray(image), dtype=param.dtype, device=param.device)[None]
        maps = feature_maps(model, x, [layer])[layer][0].cpu().double().numpy()  # (C_l, H_l, W_l)
        n = min(max_maps, len(maps))
        h, w = maps.shape[1:]
        return View(tile(maps[:n]), n, len(maps), True, f"{n} of the {len(maps)} feature maps of {layer} ({h} x {w})")
    if view == "saliency":
        sal, k = gradient_saliency(model, image)
        return View(sal, 1, 1, False, f"|gradient| of the score of class {k} for each pixel")
    drop, k = occlusion_map(model, image, patch=patch)
    return View(drop, 1, 1, True, f"drop in p(class {k}) when a {patch} x {patch} square is covered")


class CNNViewer(InteractiveWidget):
    """Pick an image, a layer and a view, and see what a convolutional network does with the image.

    Left: the image with its true class. Middle: the network's class probabilities. Right, by the ``view``
    menu: the layer's learned kernels (red positive weights, blue negative), its feature maps for this image
    (red positive, blue negative), the gradient saliency (bright where a small change of the pixel changes the
    predicted class's score most) or the occlusion map (red where covering the pixels lowers the probability of
    the predicted class, blue where it raises it).

    Args:
        model: any ``lmbook`` CNN (``nn.Module`` mapping ``(B, C, H, W)`` to logits ``(B, K)``); it is only read.
        images: the data set's images, ``(N, C, H, W)``. labels: their classes ``(N,)``, or None.
        class_names: ``K`` names for the probability bars (default ``0 .. K-1``).
        index: the image shown first. layer: the convolution shown first (default: the first).
        view: one of :data:`VIEWS`. patch: the occlusion square's side.

    Attributes:
        widget: the ipywidgets container to display. controls: ``"image"``, ``"layer"``, ``"view"`` -> control.
        status: the line under the picture. current: the latest :class:`View`. probabilities: ``(K,)`` for the
        image shown.
    """

    def __init__(
        self,
        model: nn.Module,
        images,
        labels=None,
        class_names=None,
        index: int = 0,
        layer: str | None = None,
        view: str = "feature maps",
        patch: int = 2,
    ) -> None:
        self.model = model
        self.images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
        check_shape(self.images, (None, None, None, None), "images (N, C, H, W)")
        N = len(self.images)
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64)
        if self.labels is not None:
            check_shape(self.labels, (N,), "labels")
        self.layers = conv_layer_names(model)
        if not self.layers:
            raise ValueError("the model has no nn.Conv2d layer to look at")
        layer = self.layers[0] if layer is None else layer
        check_choice(layer, self.layers, "convolution layer")
        check_choice(view, VIEWS, "view")
        self._check_index(index)
        self.patch = patch
        self.probabilities = self._probabilities(index)
        K = len(self.probabilities)
        self.class_names = [str(k) for k in range(K)] if class_names is None else [str(c) for c in class_names]
        if len(self.class_names) != K:
            raise ValueError(f"class_names has {len(self.class_names)} names for a model with {K} outputs")
        self._holding = False
        style = {"description_width": "50px"}
        self.controls = {
            "image": widgets.IntSlider(value=index, min=0, max=N - 1, description="image", style=style,
                                       continuous_update=False, layout=widgets.Layout(width="330px")),
            "layer": widgets.Dropdown(options=self.layers, value=layer, description="layer", style=style,
                                      layout=widgets.Layout(width="200px")),
            "view": widgets.Dropdown(options=list(VIEWS), value=view, description="view", style=style,
                                     layout=widgets.Layout(width="210px")),
        }  # fmt: skip
        self.status = widgets.HTML()
        self.figure_image = FigureImage(plotting.figure(8.0, 3.2, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self.redraw()
        self._connect()

    def _check_index(self, index: int) -> None:
        if not (isinstance(index, int | np.integer) and 0 <= index < len(self.images)):
            raise ValueError(f"image index must be between 0 and {len(self.images) - 1}, got {index!r}")

    def _probabilities(self, index: int) -> np.ndarray:
        x = image_batch(self.model, self.images[index])
        with evaluation_mode(self.model), torch.no_grad():
            return torch.softmax(self.model(x), dim=1)[0].cpu().double().numpy()

    def _build_figure(self) -> None:
        fig = self.figure
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.14, top=0.88, wspace=0.3)
        self.ax_image, self.ax_probs, self.ax_view = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.05, 1.6]})
        first = self.images[0]
        self._image = self.ax_image.imshow(np.zeros(first.shape[1:]), cmap="gray_r", vmin=0.0, vmax=1.0)
        self.ax_image.set_xticks([])
        self.ax_image.set_yticks([])
        K = len(self.class_names)
        self._bars = self.ax_probs.bar(range(K), np.zeros(K), color=plotting.CLASS_COLOURS[0])
        self.ax_probs.set_ylim(0, 1.0)
        self.ax_probs.set_xticks(range(K), self.class_names, fontsize="small", rotation=90 if K > 12 else 0)
        self.ax_probs.set_ylabel("probability")
        self.ax_probs.set_title("the network's answer", fontsize="medium", y=1.0)
        self._view = self.ax_view.imshow(np.zeros((2, 2)), cmap=_COLOURS[True], interpolation="nearest")
        self.ax_view.set_xticks([])
        self.ax_view.set_yticks([])
        for spine in self.ax_view.spines.values():
            spine.set_visible(False)

    def redraw(self) -> float:
        """Show the current image, layer and view; return the seconds it took (model + render)."""
        start = time.perf_counter()
        v = self.values
        index, image = v["image"], self.images[v["image"]]
        self.probabilities = p = self._probabilities(index)
        k = int(p.argmax())
        # The image's grey levels, scaled to its own range (digits are 0-1, other data may not be).
        low, high = float(image.min()), float(image.max())
        self._image.set_data(image[0] if image.shape[0] == 1 else image.mean(axis=0))
        self._image.set_clim(low, high if high > low else low + 1.0)
        truth = "" if self.labels is None else f"true {self.class_names[self.labels[index]]}, "
        self.ax_image.set_title(f"image {index}: {truth}predicted {self.class_names[k]}", fontsize="medium", y=1.0)
        for j, bar in enumerate(self._bars):
            bar.set_height(p[j])
            bar.set_color(plotting.CLASS_COLOURS[1] if j == k else plotting.CLASS_COLOURS[0])

        self.current = view = cnn_view(self.model, image, v["layer"], v["view"], patch=self.patch)
        picture = view.picture
        self._view.set_data(picture)
        h, w = picture.shape
        self._view.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
        self.ax_view.set_xlim(-0.5, w - 0.5)
        self.ax_view.set_ylim(h - 0.5, -0.5)
        largest = float(np.nanmax(np.abs(picture))) if np.isfinite(picture).any() else 0.0
        largest = largest if largest > 0 else 1.0
        self._view.set_cmap(_COLOURS[view.symmetric])
        self._view.set_clim(-largest if view.symmetric else 0.0, largest)
        self.ax_view.set_title(v["view"] + ("" if v["view"] in ("saliency", "occlusion") else f" of {v['layer']}"),
                               fontsize="medium", y=1.0)  # fmt: skip
        truth_text = "" if self.labels is None else f" (true class {self.class_names[self.labels[index]]})"
        self.status.value = (
            f"Image {index}{truth_text}: predicted <b>{self.class_names[k]}</b> with probability "
            f"<b>{p[k]:.2f}</b>. Right: {view.description}; colour scale up to {largest:.3g}."
        )
        self.figure_image.refresh()
        return time.perf_counter() - start

    def record_grid(self) -> dict:
        """Recorded for the static book: 8 images (one per class where possible) x up to 3 layers x 4 views.

        The images are the current one and the first image of each other class, in class order, until there
        are 8 (the first 8 images when there are no labels); the layers are the current one and the first and
        last convolutions (the layers between need a kernel).
        """
        v = self.values
        if self.labels is None:
            chosen = list(range(min(RECORDED_IMAGES, len(self.images))))
        else:
            chosen = [int(np.flatnonzero(self.labels == c)[0]) for c in np.unique(self.labels)]
        picked = [v["image"]] + [i for i in chosen if i != v["image"]]
        images = sorted(picked[:RECORDED_IMAGES])
        layers = [name for name in self.layers if name in {v["layer"], self.layers[0], self.layers[-1]}]
        if len(layers) < RECORDED_LAYERS:  # fill with the middle layers, in order
            extra = [name for name in self.layers if name not in layers][: RECORDED_LAYERS - len(layers)]
            layers = [name for name in self.layers if name in {*layers, *extra}]
        return {"image": images, "layer": layers, "view": list(VIEWS)}

    def _check_settings(self, settings: dict) -> None:
        """``update`` rejects an image index out of range, or an unknown layer or view, before anything moves."""
        self._check_index(settings["image"])
        check_choice(settings["layer"], self.layers, "convolution layer")
        check_choice(settings["view"], VIEWS, "view")

    def __repr__(self) -> str:
        v = self.values
        return f"{type(self).__name__}(image={v['image']}, layer={v['layer']!r}, view={v['view']!r})"
