"""The book build must fail when a notebook cell raises (Jupyter Book 1 only warns by default)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import yaml

from tests.notebook_rules import ROOT

VENDOR = ROOT / "_build" / "vendor_site"


def make_book(folder, cells):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["sphinx"]["config"]["html_extra_path"] = [str(VENDOR)]
    # The book's own static files (its stylesheet) are named relative to the book's folder; this book lives elsewhere.
    static = config["sphinx"]["config"].get("html_static_path", [])
    config["sphinx"]["config"]["html_static_path"] = [str(ROOT / path) for path in static]
    # Local Sphinx extensions are found relative to the book's folder; this book lives elsewhere.
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"].get("local_extensions", {}).items()
    }
    config["html"].pop("favicon", None)
    # The bibliography too (lib/lmbook/references.bib), or the build stops on a bibtex file it cannot open.
    config["bibtex_bibfiles"] = [str(ROOT / path) for path in config.get("bibtex_bibfiles", [])]
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: page\n")
    (folder / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Page")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, folder / "page.ipynb")


def build(folder):
    jb = shutil.which("jupyter-book", path=str(ROOT / ".venv" / "bin")) or shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed"
    return subprocess.run(
        [jb, "build", str(folder), "-W"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "HOME": str(folder)},
    )


def test_a_raising_cell_fails_the_build_and_a_clean_one_does_not(tmp_path):
    assert VENDOR.exists(), "run `make install` first: the vendored browser assets are missing"
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    make_book(good, ["x = 1 + 1", "assert x == 2"])
    make_book(bad, ["x = 1 + 1", "assert x == 3, 'deliberate failure for the test'"])
    ok = build(good)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    failed = build(bad)
    assert failed.returncode != 0
    assert "deliberate failure for the test" in failed.stdout + failed.stderr
