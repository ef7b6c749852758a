"""Looking inside attention: heat maps of attention weights, and the sinusoidal position encoding (chapter 7).

The callbacks draw nothing. :func:`lmbook.attention.attention_maps` runs a model once with recording switched on in
each of its attention modules and returns every head's ``(T, T)`` weights; :func:`encoding_pictures` computes a position
encoding and the similarity of its positions. :class:`AttentionViewer` shows one head's weights for a text
typed into a box, with the characters along both axes; :class:`PositionalEncodingExplorer` shows the encoding
matrix next to its position-by-position similarity.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from torch import nn

from lmbook import plotting
from lmbook.attention import attention_maps
from lmbook.positional import position_similarity, sinusoidal_encoding
from lmbook.text import token_ids
from lmbook.widgets.base import WIDGET_DPI, FigureImage, InteractiveWidget
from lmbook.widgets.blitting import BlitFigureImage

_VISIBLE = {" ": "\u00b7", "\n": "\u21b5", "\t": "\u2192"}  # space as a middle dot, newline as a return arrow
_T_RANGE = (2, 256)
_C_RANGE = (2, 256)


def _positions(model: nn.Module) -> int | None:
    """How many positions the model has: ``config.max_len`` (a GPT or a BERT) of the model or of any module
    inside it (a :class:`lmbook.finetune.BertClassifier` holds its BERT); None if unknown."""
    for module in model.modules():
        value = getattr(getattr(module, "config", None), "max_len", None)
        if isinstance(value, int):
            return value
    return None


def _label(token: str) -> str:
    return "".join(_VISIBLE.get(ch, ch) for ch in token)


def _summary(weights: np.ndarray) -> str:
    """Where a head looks on average: the mean distance attended to, the weight on the token itself and on the
    previous one."""
    T = weights.shape[0]
    distance = np.arange(T)[:, None] - np.arange(T)[None, :]  # query position minus key position
    mean_distance = float((weights * np.abs(distance)).sum(axis=1).mean())
    on_self = float(np.trace(weights) / T)
    on_previous = float(np.trace(weights, offset=-1) / max(T - 1, 1))
    return (
        f"mean distance attended: <b>{mean_distance:.1f}</b> tokens; weight on the token itself: "
        f"<b>{on_self:.0%}</b>; on the previous token: <b>{on_previous:.0%}</b>"
    )


class AttentionViewer(InteractiveWidget):
    """Type a text and see where each head of a model looks: one head's attention weights as a heat map.

    Rows are the queries (each position of the text), columns the keys (the positions it may attend to); the
    colour is the weight, and each row sums to 1. In a causal model (GPT) everything above the diagonal is 0.

    Args:
        model: a model containing lmbook attention modules, e.g. a trained :class:`lmbook.gpt.GPT`.
        tokenizer: has ``encode(text)``, returning a list of ids (:class:`lmbook.text.CharTokenizer`) or an object
            with ``input_ids`` (:class:`lmbook.wordpiece.WordPieceTokenizer`, whose ``[CLS]`` and ``[SEP]`` are
            then shown too). Tokens are labelled with ``convert_ids_to_tokens`` where the tokenizer has it (so
            WordPiece pieces read ``"##ing"``), else with ``decode([id])``.
        text: the initial text; cut to the model's number of positions (``config.max_len``) when it is longer.
        layer, head: the head shown first.

    Attributes:
        widget: the ipywidgets container to display (displaying the viewer itself does the same).
        maps: the latest result of :func:`attention_maps`. tokens: the labels of the tokens shown.
        controls: dict ``"text"``, ``"layer"``, ``"head"`` -> control. status: the line under the heat map.
    """

    def __init__(self, model: nn.Module, tokenizer, text: str, layer: int = 0, head: int = 0) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_len = _positions(model)
        self._cut = False
        self._computed: tuple | None = None  # (text, ids, cut, maps) of the last text computed
        self._holding = False
        self._shown_text: str | None = None
        self.maps = self._compute(text)[2]
        layers = sorted({key[0] for key in self.maps})
        self._check_head(self.maps, layer, head)
        style = {"description_width": "60px"}
        self.controls = {
            "text": widgets.Text(value=text, description="text", continuous_update=False, style=style,
                                 layout=widgets.Layout(width="95%")),
            "layer": widgets.Dropdown(options=layers, value=layer, description="layer", style=style,
                                      layout=widgets.Layout(width="160px")),
            "head": widgets.Dropdown(options=self._heads(layer), value=head, description="head", style=style,
                                     layout=widgets.Layout(width="160px")),
        }  # fmt: skip
        self.status = widgets.HTML()
        self.figure_image = BlitFigureImage(plotting.figure(6.4, 5.6, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.1, right=0.9, bottom=0.1, top=0.92)
        self.ax = self.figure.add_subplot()
        # A square-root colour scale: small weights stay visible next to the weight 1 of the first query.
        self._image = self.ax.imshow(
            np.zeros((2, 2)), cmap="viridis", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest"
        )
        colorbar = self.figure.colorbar(self._image, ax=self.ax, fraction=0.04, pad=0.02)
        colorbar.set_label("attention weight")
        self.ax.set_xlabel("key: the position attended to")
        self.ax.set_ylabel("query: the position attending")
        self.ax.xaxis.set_label_coords(0.5, -0.045)  # fixed places: not re-measured on every draw
        self.ax.yaxis.set_label_coords(-0.045, 0.5)
        self.ax.set_title("attention weights (each row sums to 1)", fontsize="medium", y=1.0)
        self.figure_image.set_dynamic([self._image])
        self.tokens: list[str] = []
        self._words = False
        self._key_labels: list = []
        self._query_labels: list = []
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        self.redraw()
        self._connect([self.controls["text"], widgets.HBox([self.controls["layer"], self.controls["head"]])])

    def _compute(self, text: str) -> tuple[list[int], bool, dict[tuple[int, int], np.ndarray]]:
        """The ids of ``text`` cut to the context, whether they were cut, and their attention maps.

        The last result is kept: ``update`` computes it to check the settings, and ``redraw`` then reuses it.
        """
        if self._computed is None or self._computed[0] != text:
            if not text:
                raise ValueError("type at least one character")
            ids = token_ids(self.tokenizer, text)
            shown = ids if self.max_len is None else ids[: self.max_len]
            self._computed = (text, shown, len(shown) < len(ids), attention_maps(self.model, shown))
        return self._computed[1:]

    def _token_labels(self, ids: list[int]) -> list[str]:
        if hasattr(self.tokenizer, "convert_ids_to_tokens"):
            return [_label(t) for t in self.tokenizer.convert_ids_to_tokens(ids)]
        return [_label(self.tokenizer.decode([i])) for i in ids]

    def _heads(self, layer: int) -> list[int]:
        return sorted(h for (lay, h) in self.maps if lay == layer)

    @staticmethod
    def _check_head(maps, layer: int, head: int) -> None:
        if (layer, head) not in maps:
            layers = sorted({key[0] for key in maps})
            raise ValueError(f"no head {head} in layer {layer}; layers {layers}, heads per layer as in the model")

    def _set_tick_labels(self, labels: list[str]) -> None:
        """Write each token under its column and left of its row.

        The labels are plain text artists, created once for the longest text and then only re-written: tick
        labels would do the same job at about twice the drawing cost, which matters with 2 x 64 of them.
        """
        T = len(labels)
        if T > len(self._key_labels):
            n = max(T, min(self.max_len or 0, 64))  # a GPT's whole context at once; a BERT's 512 only when used
            below = blended_transform_factory(self.ax.transData, self.ax.transAxes)  # x in data, y in axes
            left = blended_transform_factory(self.ax.transAxes, self.ax.transData)  # x in axes, y in data
            for i in range(len(self._key_labels), n):
                key = self.ax.text(i, -0.01, "", transform=below, ha="center", va="top")
                query = self.ax.text(-0.01, i, "", transform=left, ha="right", va="center")
                self._key_labels.append(key)
                self._query_labels.append(query)
        font = FontProperties(size="small" if T <= 40 else 7)
        words = max(map(len, labels), default=1) > 1
        if words != self._words:  # words (WordPiece) need wider margins than single characters
            self._words = words
            margin, label_at = (0.18, -0.2) if words else (0.1, -0.045)
            self.figure.subplots_adjust(left=margin, bottom=margin)
            self.ax.xaxis.set_label_coords(0.5, label_at)
            self.ax.yaxis.set_label_coords(label_at, 0.5)
        rotation = 90 if words else 0  # words are written downwards under the map
        for i, (key, query) in enumerate(zip(self._key_labels, self._query_labels, strict=True)):
            text = labels[i] if i < T else ""
            for label in (key, query):
                label.set_text(text)
                label.set_visible(i < T)
                label.set_fontproperties(font)
            key.set_rotation(rotation)

    def record_grid(self) -> dict:
        """Recorded for the static book: every layer x every head, for the text shown (a new text needs a kernel)."""
        heads = sorted({h for (_layer, h) in self.maps})
        return {"layer": sorted({layer for (layer, _h) in self.maps}), "head": heads}

    def redraw(self) -> float:
        """Show the current text, layer and head; return the seconds it took (model + render)."""
        start = time.perf_counter()
        v = self.values
        if v["text"] != self._shown_text:
            ids, self._cut, self.maps = self._compute(v["text"])
            self.tokens = self._token_labels(ids)
            T = len(ids)
            self._set_tick_labels(self.tokens)
            self._image.set_extent((-0.5, T - 0.5, T - 0.5, -0.5))
            self.ax.set_xlim(-0.5, T - 0.5)
            self.ax.set_ylim(T - 0.5, -0.5)
            self._shown_text = v["text"]
            self.figure_image.invalidate()
        weights = self.maps[(v["layer"], v["head"])]
        self._image.set_data(weights)
        cut = f" (cut to the first {len(self.tokens)} tokens)" if self._cut else ""
        self.status.value = f"Layer {v['layer']}, head {v['head']}{cut}: " + _summary(weights)
        self.figure_image.refresh()
        return time.perf_counter() - start

    def _on_change(self, change) -> None:
        if self._holding:
            return
        if change["owner"] is self.controls["layer"]:
            heads = self._heads(change["new"])
            with self.holding():
                head = self.controls["head"].value
                self.controls["head"].options = heads
                self.controls["head"].value = head if head in heads else heads[0]
        try:
            self.redraw()
        except ValueError as err:  # e.g. a character the tokenizer does not know: keep the last picture
            self.status.value = f"<span style='color: #c8312b'>{err}</span>"

    def update(self, **values) -> float:
        """Set any of ``text``, ``layer``, ``head``, redraw once; return the seconds it took.

        Raises:
            ValueError: an unknown setting, an empty text, unknown characters, or a layer/head the model does
                not have; nothing is changed then.
        """
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {sorted(self.controls)}")
        settings = {**self.values, **values}
        maps = self._compute(settings["text"])[2]
        self._check_head(maps, settings["layer"], settings["head"])
        with self.holding():
            self.controls["text"].value = settings["text"]
            self.controls["layer"].value = settings["layer"]
            self.controls["head"].options = sorted(h for (lay, h) in maps if lay == settings["layer"])
            self.controls["head"].value = settings["head"]
        return self.redraw()

    def __repr__(self) -> str:
        v = self.values
        return f"{type(self).__name__}(text={v['text']!r}, layer={v['layer']}, head={v['head']})"


def encoding_pictures(T: int, C: int, kind: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The sinusoidal encoding ``(T, C)`` of :func:`lmbook.positional.sinusoidal_encoding` and its ``(T, T)``
    position similarity (:func:`lmbook.positional.position_similarity`, ``kind`` ``"cosine"`` or ``"dot"``)."""
    PositionalEncodingExplorer._check(T, C, kind)
    P = sinusoidal_encoding(int(T), int(C), dtype=torch.float64)
    return P.numpy(), position_similarity(P, kind).numpy()


class PositionalEncodingExplorer(InteractiveWidget):
    """Sliders for the number of positions ``T`` and the width ``C`` of the sinusoidal position encoding.

    Left: the encoding matrix, one row per position and one column per feature: the first columns swing
    quickly between -1 and 1 as the position grows, the last ones barely move. Right: the similarity of every
    pair of positions; it depends only on their distance (bands parallel to the diagonal) and is highest for
    neighbours.

    Args:
        T: number of positions (2 to 256). C: encoding width (2 to 256). kind: ``"cosine"`` or ``"dot"``.

    Attributes:
        widget: the ipywidgets container to display. controls: dict ``"T"``, ``"C"``, ``"kind"`` -> control.
        encoding, similarity: the latest result of :func:`encoding_pictures`. status: the line under the plots.
    """

    def __init__(self, T: int = 64, C: int = 64, kind: str = "cosine") -> None:
        self._check(T, C, kind)
        self._holding = False
        style = {"description_width": "90px"}
        self.controls = {
            "T": widgets.IntSlider(value=T, min=_T_RANGE[0], max=_T_RANGE[1], step=1, description="positions T",
                                   style=style),
            "C": widgets.IntSlider(value=C, min=_C_RANGE[0], max=_C_RANGE[1], step=1, description="width C",
                                   style=style),
            "kind": widgets.Dropdown(options=["cosine", "dot"], value=kind, description="similarity", style=style,
                                     layout=widgets.Layout(width="220px")),
        }  # fmt: skip
        self.status = widgets.HTML()
        self.figure_image = FigureImage(plotting.figure(8.0, 3.8, dpi=WIDGET_DPI, layout=None))
        self.figure.subplots_adjust(left=0.07, right=0.95, bottom=0.14, top=0.9, wspace=0.25)
        self.ax_enc, self.ax_sim = self.figure.subplots(1, 2)
        self._enc = self.ax_enc.imshow(np.zeros((2, 2)), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                                       interpolation="nearest")  # fmt: skip
        self._sim = self.ax_sim.imshow(np.zeros((2, 2)), cmap="magma", aspect="equal", interpolation="nearest")
        self._sim_bar = self.figure.colorbar(self._sim, ax=self.ax_sim, fraction=0.05, pad=0.03)
        self.ax_enc.set_xlabel("feature (column)")
        self.ax_enc.set_ylabel("position")
        # Titles at an explicit height and axis labels at fixed places are not re-measured on every draw.
        self.ax_enc.set_title("encoding: red +1, white 0, blue \u22121", fontsize="medium", y=1.0)
        self.ax_sim.set_xlabel("position")
        self.ax_sim.set_ylabel("position")
        for ax in (self.ax_enc, self.ax_sim):
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(5, integer=True))
            ax.xaxis.set_label_coords(0.5, -0.1)
            ax.yaxis.set_label_coords(-0.14, 0.5)
        self.redraw()
        self._connect()

    @staticmethod
    def _check(T: int, C: int, kind: str) -> None:
        if kind not in ("cosine", "dot"):
            raise ValueError(f"kind must be 'cosine' or 'dot', got {kind!r}")
        if not (_T_RANGE[0] <= T <= _T_RANGE[1] and _C_RANGE[0] <= C <= _C_RANGE[1]):
            raise ValueError(f"T must be in {_T_RANGE} and C in {_C_RANGE}, got T={T}, C={C}")

    def record_grid(self) -> dict:
        """Recorded for the static book: 4 lengths x 4 widths x both similarities."""
        v = self.values
        lengths, widths = sorted({16, 64, 128, 256, v["T"]}), sorted({8, 16, 64, 128, v["C"]})
        return {"T": lengths, "C": widths, "kind": ["cosine", "dot"]}

    def redraw(self) -> float:
        """Recompute and redraw with the current settings; return the seconds it took."""
        start = time.perf_counter()
        v = self.values
        T, C = v["T"], v["C"]
        self.encoding, self.similarity = encoding_pictures(T, C, v["kind"])
        self._enc.set_data(self.encoding)
        self._enc.set_extent((-0.5, C - 0.5, T - 0.5, -0.5))
        self.ax_enc.set_xlim(-0.5, C - 0.5)
        self.ax_enc.set_ylim(T - 0.5, -0.5)
        self._sim.set_data(self.similarity)
        self._sim.set_extent((-0.5, T - 0.5, T - 0.5, -0.5))
        self._sim.set_clim(float(self.similarity.min()), float(self.similarity.max()))
        self.ax_sim.set_xlim(-0.5, T - 0.5)
        self.ax_sim.set_ylim(T - 0.5, -0.5)
        self.ax_sim.set_title(f"{v['kind']} similarity of positions", fontsize="medium", y=1.0)
        row = self.similarity[0]
        self.status.value = (
            f"{T} positions, {C} features ({(C + 1) // 2} frequencies, from one turn per {2 * np.pi:.1f} positions "
            f"to one per {2 * np.pi * 10000 ** (2 * ((C + 1) // 2 - 1) / C):,.0f}). Similarity of position 0 with "
            f"position 1: <b>{row[1]:.2f}</b>, with position {T - 1}: <b>{row[T - 1]:.2f}</b>."
        )
        self.figure_image.refresh()
        return time.perf_counter() - start

    def _check_settings(self, settings: dict) -> None:
        self._check(settings["T"], settings["C"], settings["kind"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.values.items()) + ")"
