"""Loading a published checkpoint into the book's own models: an explicit name map, a shape check for every tensor,
and a report of what was loaded, missing or left unused.

Introduced in chapter 8, BERT: pre-training and fine-tuning (:func:`lmbook.bert.load_hf_weights`), and used for
GPT-2 in chapter 7 (:func:`lmbook.gpt2.load_gpt2_weights`). A checkpoint is a ``{name: tensor}`` dictionary. A
model loads it through a **name map** ``{our parameter name: source}``, where a source is a checkpoint name, or a
checkpoint name and a function that turns the stored tensor into ours (a transpose, a slice of a fused matrix).
Every tensor is shape-checked before it is copied, so a wrong mapping fails loudly instead of giving a model that
runs and computes nonsense; a square matrix stored transposed has the right shape, which is why the tests also
compare the loaded model's outputs with the original implementation's.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from lmbook.testing import ShapeError

Source = str | tuple[str, Callable[[torch.Tensor], torch.Tensor]]  # a checkpoint name [, how to convert it]


@dataclass
class LoadReport:
    """What a load did (:func:`load_mapped`).

    Attributes:
        loaded: ``(our name, checkpoint name)`` pairs that were copied.
        missing: our parameters that the checkpoint does not have (left as they were).
        unused: checkpoint entries that were not copied. unexpected: those of them that ``documented`` does not
            explain (an empty list is what a correct load gives).
        documented: ``{regular expression: reason}`` for checkpoint entries that are deliberately not loaded.
    """

    loaded: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    documented: dict[str, str] = field(default_factory=dict, repr=False)

    def is_documented(self, key: str) -> bool:
        return any(re.fullmatch(pattern, key) for pattern in self.documented)

    @property
    def unexpected(self) -> list[str]:
        return [k for k in self.unused if not self.is_documented(k)]

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing (not in the checkpoint): {self.missing}")
        documented = [k for k in self.unused if self.is_documented(k)]
        if documented:
            lines.append(f"not used, as documented: {documented}")
        if self.unexpected:
            lines.append(f"NOT USED, unexpected: {self.unexpected}")
        return "\n".join(lines)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint: a ``.safetensors`` or ``.bin`` file, or a folder holding ``model.safetensors`` or
    ``pytorch_model.bin``."""
    path = pathlib.Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_mapped(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    name_map: dict[str, Source],
    documented: dict[str, str] | None = None,
    optional: Iterable[str] = (),
    strict: bool = True,
) -> LoadReport:
    """Copy ``state_dict`` into ``model`` through ``name_map``, checking every shape.

    Args:
        model: the model to fill; every one of its parameters must have an entry in ``name_map``.
        state_dict: ``{checkpoint name: tensor}``.
        name_map: ``{our parameter name: source}``; a source is a checkpoint name, or ``(name, convert)`` where
            ``convert(tensor)`` gives our tensor (e.g. ``lambda w: w.T``). Each tensor is converted to the
            parameter's dtype.
        documented: ``{regular expression: reason}`` of checkpoint entries that are deliberately not used.
        optional: our parameters that may be missing even when ``strict``.
        strict: raise ``KeyError`` when a parameter that is not ``optional`` is missing, or when the checkpoint
            has entries that ``documented`` does not explain.

    Raises:
        ShapeError: a (converted) checkpoint tensor has another shape than our parameter; the message names both.
    """
    ours = dict(model.named_parameters())
    unmapped = set(ours) - set(name_map)
    if unmapped:
        raise KeyError(f"no checkpoint name for our parameters {sorted(unmapped)}")
    report = LoadReport(documented=dict(documented or {}))
    with torch.no_grad():
        for our_name, source in name_map.items():
            name, convert = (source, None) if isinstance(source, str) else source
            if name not in state_dict:
                report.missing.append(our_name)
                continue
            param, tensor = ours[our_name], state_dict[name]
            if convert is not None:
                tensor = convert(tensor)
            if tuple(tensor.shape) != tuple(param.shape):
                converted = " after conversion" if convert is not None else ""
                raise ShapeError(
                    f"checkpoint {name} has shape {tuple(tensor.shape)}{converted}, but our {our_name} has shape "
                    f"{tuple(param.shape)} (a transposed weight, another model size, or a wrong mapping?)"
                )
            param.copy_(tensor.to(param.dtype))
            report.loaded.append((our_name, name))
    used = {name for _, name in report.loaded}
    report.unused = sorted(k for k in state_dict if k not in used)
    optional = set(optional)
    if strict and ([m for m in report.missing if m not in optional] or report.unexpected):
        raise KeyError(f"incomplete load:\n{report}")
    return report
