"""The book's table of contents, read from _toc.yml in reading order, for the tools and tests that walk the book.

Each entry is a page (a file name without its suffix, as _toc.yml writes it) with its depth: the root page and the
chapters are at depth 1, their sections at depth 2, and so on. ``part`` is the caption of the part the page is in.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"


@dataclass(frozen=True)
class TocEntry:
    file: str  # e.g. "chapters/02-backprop/01-neuron"
    depth: int  # 1 for the root page and the chapters, 2 for their sections, ...
    part: str | None  # the caption of the part the page belongs to; None for the root page


def toc_entries(toc_path: pathlib.Path = TOC) -> list[TocEntry]:
    """Every page of the table of contents, in reading order."""
    toc = yaml.safe_load(toc_path.read_text())
    entries = [TocEntry(toc["root"], 1, None)]

    def walk(items: list[dict], depth: int, part: str | None) -> None:
        for item in items:
            if "file" in item:
                entries.append(TocEntry(item["file"], depth, part))
            walk(item.get("sections", []), depth + 1, part)
            walk(item.get("chapters", []), depth, part)

    for part in toc.get("parts", []):
        walk(part.get("chapters", []), 1, part.get("caption"))
    walk(toc.get("chapters", []), 1, None)
    return entries


def toc_files(toc_path: pathlib.Path = TOC) -> list[str]:
    """The page names of the table of contents, in reading order (e.g. ``["intro", "chapters/02-backprop/index"]``)."""
    return [entry.file for entry in toc_entries(toc_path)]
