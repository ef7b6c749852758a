"""Stamp the Colab set-up cell into every notebook, from the repository URL in ``_config.yml``.

    python tools/setup_cell.py            # print the set-up cell
    python tools/setup_cell.py --write    # rewrite the first cell of every notebook under chapters/ and exercises/
    python tools/setup_cell.py --check    # exit 1 and list notebooks whose first cell is missing or stale

The first cell of each notebook installs ``lmbook`` only when it runs on Google Colab, where the notebook's
folder is not on disk. It never reinstalls torch: the package only sets a lower bound that Colab's torch meets.
The cell is tagged ``remove-cell`` as well, so that the HTML book (myst-nb) does not show it above the page title;
it still runs when the book is built, and it stays visible in Jupyter and on Colab.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
TAG = "setup"
# The tags of the set-up cell: ``setup`` finds it again, ``remove-cell`` hides it (input and output) in the HTML.
TAGS = [TAG, "remove-cell"]


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def setup_source(extra_packages: str = "") -> str:
    url, branch = repository()
    packages = f'"lmbook @ git+{url}@{branch}"' + (f" {extra_packages}" if extra_packages else "")
    return (
        "# Set-up. On Google Colab this installs the book's helper package, lmbook (Colab's own torch is kept).\n"
        "# On Binder or a local install lmbook is already there, and this cell does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f"    %pip install --quiet {packages}\n"
    )


def notebooks() -> list[pathlib.Path]:
    found = sorted(ROOT.glob("chapters/**/*.ipynb")) + sorted(ROOT.glob("exercises/*.ipynb"))
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def expected_for(path: pathlib.Path) -> str:
    # Exercise notebooks also need the grading engine on Colab.
    return setup_source('"otter-grader>=6"' if path.parent.name == "exercises" else "")


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
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(expected_for(path).rstrip("\n"), metadata={"tags": list(TAGS)})
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
