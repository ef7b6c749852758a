"""How far must a digit move to fool a CNN: the adversarial-example explorer of chapter 11.

The reader picks a test digit, a step size epsilon and an attack: the fast gradient sign method
(:func:`lmbook.robustness.fgsm`), which moves every pixel by epsilon in the direction that raises the loss most, or
random signs of the same size (:func:`lmbook.robustness.random_sign_noise`). The widget shows the digit, the change
and the attacked digit with the CNN's probabilities for it, and the accuracy of the whole test set under both attacks
against epsilon, with the current epsilon marked. Every image and curve is computed from the model it is given; the
accuracy curves once, when the widget is built.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import numpy as np
import torch

from lmbook import plotting
from lmbook.loop import evaluation_mode
from lmbook.robustness import accuracy_under_attack, fgsm, random_sign_noise
from lmbook.testing import check_choice
from lmbook.widgets.base import SLIDER_STYLE, WIDGET_DPI, FigureImage, InteractiveWidget

EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
"""Step sizes on the slider, in units of the pixel range [0, 1]."""
ATTACK_OPTIONS = (("fast gradient sign (FGSM)", "fgsm"), ("random signs, same size", "random"))
N_EXAMPLES = 4
"""How many test digits the menu offers (the first of each of the first classes found in the test set)."""


def example_indices(y, n: int = N_EXAMPLES) -> list[int]:
    """Indices of the first test example of each of the first ``n`` classes, in class order."""
    y = np.asarray(y)
    classes = sorted(set(y.tolist()))[:n]
    return [int(np.flatnonzero(y == k)[0]) for k in classes]


class AdversarialExplorer(InteractiveWidget):
    """A test digit, a step size and an attack -> the attacked digit, the CNN's answer, and accuracy against epsilon.

    Args:
        model: a classifier of images ``(N, 1, H, W)`` in ``[0, 1]`` returning ``(N, K)`` logits (chapter 5's CNN,
            :func:`lmbook.cnn.trained_digits_cnn`).
        x, y: test images and labels; the accuracy curves use all of them, the menu offers :func:`example_indices`.
        class_names: the label of each class (default ``"0"`` .. ``"K-1"``).
        seed: the random signs of the baseline attack.

    Attributes:
        widget, controls (``"example"``, ``"epsilon"``, ``"attack"``), status: as for every book widget.
        curves: ``{attack: accuracies at EPSILONS}``. probabilities: the model's probabilities for the attacked
        digit shown last.
    """

    def __init__(self, model: torch.nn.Module, x, y, class_names=None, seed: int = 0) -> None:
        self.model = model
        self.x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        self.y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
        if self.x.ndim != 4 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"x must be images (N, C, H, W) and y their N labels; got x {tuple(self.x.shape)}, "
                f"y {tuple(self.y.shape)}"
            )
        self.seed = seed
        self.curves = {
            attack: accuracy_under_attack(model, self.x, self.y, EPSILONS, attack=attack, seed=seed)
            for _, attack in ATTACK_OPTIONS
        }
        indices = example_indices(self.y.numpy())
        n_classes = int(self.y.max()) + 1
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
        self.controls = {
            "example": widgets.Dropdown(
                options=[(f"test digit {self.class_names[int(self.y[i])]} (#{i})", i) for i in indices],
                value=indices[0],
                description="digit",
                style=SLIDER_STYLE,
            ),
            "epsilon": widgets.SelectionSlider(
                options=list(EPSILONS),
                value=0.1,
                description="step epsilon",
                continuous_update=False,
                style=SLIDER_STYLE,
            ),  # fmt: skip
            "attack": widgets.Dropdown(
                options=list(ATTACK_OPTIONS), value="fgsm", description="attack", style=SLIDER_STYLE
            ),  # fmt: skip
        }
        self.status = widgets.HTML()
        self.figure_image = FigureImage(plotting.figure(8.6, 2.6, dpi=WIDGET_DPI, layout=None))
        self._build_figure()
        self.redraw()
        self._connect()

    def _check_settings(self, settings: dict) -> None:
        check_choice(settings["epsilon"], EPSILONS, "epsilon")
        check_choice(settings["attack"], [a for _, a in ATTACK_OPTIONS], "attack")
        allowed = [i for _, i in self.controls["example"].options]
        if settings["example"] not in allowed:
            raise ValueError(f"example must be one of the offered test indices {allowed}, got {settings['example']!r}")

    def record_grid(self) -> dict:
        # 4 digits x 7 step sizes x 2 attacks = 56 recorded pictures.
        return {
            "example": [i for _, i in self.controls["example"].options],
            "epsilon": list(EPSILONS),
            "attack": [a for _, a in ATTACK_OPTIONS],
        }

    def _build_figure(self) -> None:
        fig = self.figure
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.2, top=0.85, wspace=0.45)
        grid = fig.add_gridspec(1, 5, width_ratios=[1, 1, 1, 1.4, 1.9])
        self._axes = [fig.add_subplot(grid[0, i]) for i in range(5)]
        blank = np.zeros(tuple(self.x.shape[2:]))
        self._images = []
        for ax, title, cmap, limits in zip(
            self._axes[:3],
            ("the digit", "the change", "attacked"),
            ("gray_r", "RdBu_r", "gray_r"),
            ((0, 1), (-0.3, 0.3), (0, 1)),
            strict=True,
        ):
            self._images.append(ax.imshow(blank, cmap=cmap, vmin=limits[0], vmax=limits[1]))
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        bars_ax = self._axes[3]
        self._bars = bars_ax.bar(range(len(self.class_names)), np.zeros(len(self.class_names)), color="0.6")
        bars_ax.set_ylim(0, 1)
        bars_ax.set_xticks(range(len(self.class_names)), self.class_names, fontsize=7)
        bars_ax.set_title("P(class | attacked)", fontsize=9)
        bars_ax.tick_params(labelsize=7)
        curve_ax = self._axes[4]
        for (_label, attack), colour in zip(ATTACK_OPTIONS, ("#c8312b", "0.45"), strict=True):
            curve_ax.plot(EPSILONS, self.curves[attack], marker="o", markersize=3, color=colour,
                          label="FGSM" if attack == "fgsm" else "random signs")  # fmt: skip
        (self._marker,) = curve_ax.plot([], [], "o", markersize=9, markerfacecolor="none", color="black")
        curve_ax.set_ylim(0, 1.02)
        curve_ax.set_xlabel("epsilon", fontsize=8)
        curve_ax.set_title("test accuracy", fontsize=9)
        curve_ax.tick_params(labelsize=7)
        curve_ax.legend(fontsize=7, loc="lower left")

    def attacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the chosen digit ``(1, C, H, W)``, the same digit after the chosen attack)."""
        i, epsilon, attack = (
            self.controls["example"].value,
            self.controls["epsilon"].value,
            self.controls["attack"].value,
        )
        x, y = self.x[i : i + 1], self.y[i : i + 1]
        if attack == "fgsm":
            return x, fgsm(self.model, x, y, epsilon)
        return x, random_sign_noise(x, epsilon, seed=self.seed + i)

    def redraw(self) -> float:
        """Attack the chosen digit and redraw; return the seconds it took (compute + render)."""
        start = time.perf_counter()
        x, x_adv = self.attacked()
        with evaluation_mode(self.model), torch.no_grad():
            self.probabilities = torch.softmax(self.model(x_adv.to(self.x.dtype)), dim=1)[0].double().numpy()
        predicted = int(self.probabilities.argmax())
        label = int(self.y[self.controls["example"].value])
        for image, picture in zip(self._images, (x, x_adv - x, x_adv), strict=True):
            image.set_data(picture[0, 0].double().numpy())
        for k, bar in enumerate(self._bars):
            bar.set_height(self.probabilities[k])
            bar.set_color("#1f5fa8" if k == label else ("#c8312b" if k == predicted else "0.7"))
        epsilon, attack = self.controls["epsilon"].value, self.controls["attack"].value
        self._marker.set_data([epsilon], [self.curves[attack][EPSILONS.index(epsilon)]])
        verdict = "still right" if predicted == label else "<b>fooled</b>"
        self.status.value = (
            f"true class <b>{self.class_names[label]}</b>, the CNN says <b>{self.class_names[predicted]}</b> "
            f"with probability {self.probabilities[predicted]:.2f} ({verdict}); test accuracy at epsilon "
            f"{epsilon:g}: {self.curves[attack][EPSILONS.index(epsilon)]:.3f} under this attack"
        )
        self.figure_image.refresh()
        return time.perf_counter() - start
