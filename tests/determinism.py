"""Determinism of notebook cells tagged ``nbval-check-output``: what they print is recorded, and every build must match.

Notebooks are stored without outputs, so the text of each tagged cell is kept in ``tests/notebook_outputs.json``
(notebook -> cell id -> text). The book build executes every notebook once, into Jupyter Book's execution cache
(``_build/.jupyter_cache``), from which the pages are rendered; ``tests/site/test_executed_outputs.py`` compares the
cached outputs with the record. (Not ``_build/jupyter_execute``: myst-nb 1.4 writes the notebook it read there, so a
page rendered from the cache leaves a copy without outputs.) A cell that draws from an unseeded generator,
or whose number changed, prints something else than the record and fails, naming the cell and both texts. Executing
every notebook a second time only to compare two runs (what this check did before) doubled the notebook time of
``make test``.

After an intended change of output: ``make record-outputs`` rewrites the record from the last build; commit it with
the change, so that the diff shows what the reader will see differently.

``pytest --nbval-lax chapters/...`` (``make test-notebooks``) still runs notebooks in a fresh kernel; the repository's
conftest.py compares their tagged cells with the same record.
"""

from __future__ import annotations

import difflib
import json
import pathlib

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
RECORD = ROOT / "tests" / "notebook_outputs.json"
TAG = "nbval-check-output"
HOW_TO_RECORD = "if the change is intended, run `make record-outputs` and commit tests/notebook_outputs.json"


def text_of(outputs) -> str:
    """The text a reader sees: streams and text/plain results, in order (images and widgets are not compared)."""
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" not in data:
                parts.append(data.get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


def tagged_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and TAG in c.get("metadata", {}).get("tags", [])]


def load_record(path: pathlib.Path = RECORD) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def executed_copy(notebook: pathlib.Path, cache_path: pathlib.Path = CACHE):
    """The notebook with the outputs the book build computed for its current code (from the execution cache)."""
    from jupyter_cache import get_cache

    name = notebook.relative_to(ROOT).as_posix()
    assert (cache_path / "global.db").exists(), f"no execution cache in {cache_path}: build the book first (make book)"
    try:
        _, executed = get_cache(str(cache_path)).merge_match_into_notebook(nbformat.read(notebook, as_version=4))
    except KeyError:
        raise AssertionError(
            f"{name} has not been executed with its current code: build the book first (make book)"
        ) from None
    return executed


def record_from_build(notebooks: list[pathlib.Path], cache_path: pathlib.Path = CACHE) -> dict[str, dict]:
    """notebook (relative path) -> cell id -> printed text, for every tagged cell of the book build's execution."""
    record = {}
    for notebook in notebooks:
        name = notebook.relative_to(ROOT).as_posix()
        cells = tagged_cells(executed_copy(notebook, cache_path))
        if cells:
            record[name] = {cell.id: text_of(cell.get("outputs", [])) for cell in cells}
    return record


def differences(expected: dict[str, str], got: dict[str, str], name: str) -> list[str]:
    """What differs between the recorded and the new text of one notebook's tagged cells, as readable messages."""
    problems = []
    for cell_id in sorted(expected.keys() - got.keys()):
        problems.append(f"{name}: cell {cell_id} is in the record but no longer a tagged cell of the notebook")
    for cell_id in sorted(got.keys() - expected.keys()):
        problems.append(f"{name}: tagged cell {cell_id} has no recorded output")
    for cell_id in sorted(expected.keys() & got.keys()):
        if expected[cell_id] != got[cell_id]:
            diff = difflib.unified_diff(
                expected[cell_id].splitlines(), got[cell_id].splitlines(), "recorded", "this run", lineterm="", n=1
            )
            problems.append(f"{name}: cell {cell_id} printed something else than recorded:\n" + "\n".join(diff))
    return problems


def check_cell(notebook: pathlib.Path, cell, outputs, record: dict | None = None) -> None:
    """Raise AssertionError unless ``outputs`` print the recorded text of ``cell`` (used by the nbval hook)."""
    name = notebook.relative_to(ROOT).as_posix()
    recorded = (load_record() if record is None else record).get(name, {})
    assert cell.get("id") in recorded, f"{TAG}: {name} cell {cell.get('id')} has no recorded output; {HOW_TO_RECORD}"
    problems = differences({cell.id: recorded[cell.id]}, {cell.id: text_of(outputs or [])}, name)
    assert not problems, "non-deterministic or changed cell: " + "\n".join(problems) + f"\n{HOW_TO_RECORD}"


def main() -> None:
    """``python -m tests.determinism``: write the record from the last book build."""
    from tests.notebook_rules import chapter_notebooks

    record = record_from_build(chapter_notebooks())
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"recorded {sum(map(len, record.values()))} tagged cells of {len(record)} notebooks in {RECORD}")


if __name__ == "__main__":
    main()
