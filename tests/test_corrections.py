"""The corrections page links every catalogued mistake of the source material to the cell that corrects it.

``../shared/design/seed-map.md`` lists 17 mistakes; each has a MyST target ``(correction-N)=`` placed right before
the cell that demonstrates the correct version, and ``chapters/appendix/corrections.md`` links each of them. The build
(``-W``) fails on a link to a target that does not exist; this test also checks that every mistake is on the page,
that each target is defined once, right before a code cell, and that the chapter the page names is where it is.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from tools.toc import ROOT, toc_entries

PAGE = ROOT / "chapters" / "appendix" / "corrections.md"
MISTAKES = range(1, 18)
TARGET = re.compile(r"^\((correction-[0-9a-z-]+)\)=\s*$", re.MULTILINE)
LINK = re.compile(r"\{ref\}`chapter (\d+)[^<`]*<(correction-[0-9a-z-]+)>`")


def _targets() -> dict[str, list[tuple[str, int, bool]]]:
    """label -> [(page, chapter number, whether a code cell follows the cell that holds it)]."""
    found: dict[str, list[tuple[str, int, bool]]] = {}
    for entry in toc_entries():
        path = ROOT / f"{entry.file}.ipynb"
        if not path.exists():
            continue
        match = re.match(r"chapters/(\d+)-", entry.file)
        chapter = int(match.group(1)) if match else -1
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            if cell.cell_type != "markdown":
                continue
            for label in TARGET.findall(cell.source):
                code_follows = any(c.cell_type == "code" for c in cells[i + 1 : i + 3])
                found.setdefault(label, []).append((entry.file, chapter, code_follows))
    return found


@pytest.fixture(scope="module")
def targets():
    return _targets()


@pytest.fixture(scope="module")
def links():
    return LINK.findall(PAGE.read_text(encoding="utf-8"))


def test_every_mistake_is_listed(links):
    rows = re.findall(r"^\| (\d+) \|", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert [int(r) for r in rows] == list(MISTAKES)
    linked = {label for _, label in links}
    missing = [n for n in MISTAKES if f"correction-{n}" not in linked]
    assert not missing, f"mistakes without a link to their cell: {missing}"


def test_every_link_has_one_target_in_the_chapter_it_names(links, targets):
    for chapter, label in links:
        places = targets.get(label, [])
        assert len(places) == 1, f"{label}: defined {len(places)} times ({places})"
        page, where, _ = places[0]
        assert where == int(chapter), f"{label}: the corrections page says chapter {chapter}, it is in {page}"


def test_each_target_sits_before_a_code_cell(targets):
    for label, places in targets.items():
        for page, _, code_follows in places:
            assert code_follows, f"{label} in {page}: no code cell follows the markdown cell that holds it"
