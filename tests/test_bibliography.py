"""The bibliography: every cited key is defined, every entry is cited, every entry can be found.

Pages cite through sphinxcontrib-bibtex roles (``{cite:p}`key` ``) so that the build resolves each citation against
``lib/lmbook/references.bib``; a citation written as plain text ("Smith et al. 2020") would bypass that check, so
prose may not contain one. Keys are collected from every page of the table of contents (markdown, and code cells,
where a cell displays Markdown that cites) and from lmbook's own source (tables such as ``lmbook.landmarks`` carry
keys that the chapters render).
"""

from __future__ import annotations

import pathlib
import re

import nbformat
import pytest

from lmbook import references
from tools.toc import ROOT, toc_entries

PAGES = [
    path
    for entry in toc_entries()
    for path in (ROOT / f"{entry.file}.md", ROOT / f"{entry.file}.ipynb")
    if path.exists()
]
# lmbook.references documents the role syntax with made-up keys; it cites nothing.
LIBRARY = sorted(p for p in (ROOT / "lib" / "lmbook").rglob("*.py") if p.name != "references.py")
# Where the bibliography is printed; it must appear exactly once (a second copy duplicates every entry's target).
BIBLIOGRAPHY_DIRECTIVE = re.compile(r"^```\{bibliography\}", re.MULTILINE)
# A citation written out by hand: "Vaswani et al." or "(Hochreiter and Schmidhuber, 1997)".
BARE_CITATION = re.compile(r"\bet al\b|\(\s*[A-Z][A-Za-z'-]+ and [A-Z][A-Za-z'-]+,? (?:19|20)\d\d\b")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _texts(path: pathlib.Path) -> tuple[str, str]:
    """(markdown, code) of a page: a .md file is all markdown; a notebook's cells are split by type."""
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8"), ""
    nb = nbformat.read(path, as_version=4)
    markdown = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return markdown, code


def _cited_in_pages() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for path in PAGES:
        markdown, code = _texts(path)
        for key in references.cited_keys(markdown + "\n" + code):
            where.setdefault(key, []).append(str(path.relative_to(ROOT)))
    return where


def _cited_in_library() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for path in LIBRARY:
        for key in references.cited_keys(path.read_text(encoding="utf-8")):
            where.setdefault(key, []).append(str(path.relative_to(ROOT)))
    try:
        from lmbook.landmarks import LANDMARKS
    except ImportError:
        LANDMARKS = ()
    for row in LANDMARKS:
        where.setdefault(row.cite, []).append(f"lmbook.landmarks: {row.name}")
    return where


@pytest.fixture(scope="module")
def bib():
    return references.load()


@pytest.fixture(scope="module")
def cited():
    where = _cited_in_pages()
    for key, places in _cited_in_library().items():
        where.setdefault(key, []).extend(places)
    return where


def test_pages_were_found():
    assert len(PAGES) > 50, f"only {len(PAGES)} pages found from _toc.yml"


def test_every_cited_key_is_defined(bib, cited):
    undefined = {key: places for key, places in cited.items() if key not in bib}
    assert not undefined, "cited but not in lib/lmbook/references.bib: " + "; ".join(
        f"{key} ({', '.join(sorted(set(places)))})" for key, places in sorted(undefined.items())
    )


def test_every_entry_is_cited(bib, cited):
    uncited = sorted(set(bib) - set(cited))
    assert not uncited, f"entries that no page cites (cite them or remove them): {', '.join(uncited)}"


def test_every_entry_can_be_found(bib):
    missing = sorted(key for key, ref in bib.items() if not ref.link)
    assert not missing, f"entries without a doi, an arXiv eprint or a url: {', '.join(missing)}"


def test_every_entry_has_author_title_year(bib):
    for key, ref in bib.items():
        assert ref.authors or ref.fields.get("organization") or ref.fields.get("publisher"), f"{key}: no author"
        assert ref.title, f"{key}: no title"
        assert 1800 < ref.year <= 2026, f"{key}: year {ref.year}"


def test_keys_follow_the_convention(bib):
    for key, ref in bib.items():
        assert re.fullmatch(r"[a-z]+\d{4}[a-z0-9]+", key), f"{key}: not surname + year + title word, lowercase"
        assert str(ref.year) in key, f"{key}: the key's year is not the entry's year ({ref.year})"


def test_arxiv_identifiers_are_well_formed(bib):
    for key, ref in bib.items():
        if ref.fields.get("archiveprefix", "").lower() == "arxiv":
            assert re.fullmatch(r"\d{4}\.\d{4,5}", ref.fields.get("eprint", "")), f"{key}: eprint {ref.fields}"


def test_a_duplicate_key_is_refused(tmp_path):
    text = references.BIB_PATH.read_text(encoding="utf-8")
    first = re.search(r"^@\w+\s*\{[^@]+", text, flags=re.MULTILINE).group(0)
    doubled = tmp_path / "doubled.bib"
    doubled.write_text(first + "\n" + first, encoding="utf-8")
    with pytest.raises(ValueError, match="defined twice"):
        references.load(doubled)


def test_the_checks_catch_an_undefined_and_an_uncited_key(bib):
    """The two checks above are not vacuous: a made-up key is undefined, and an entry nobody cites is reported."""
    cited = {"nosuchauthor2099nothing": ["page"], **{key: ["page"] for key in list(bib)[1:]}}
    assert [k for k in cited if k not in bib] == ["nosuchauthor2099nothing"]
    assert sorted(set(bib) - set(cited)) == [list(bib)[0]]


def test_prose_cites_through_the_bibliography():
    offenders = []
    for path in PAGES:
        markdown, _ = _texts(path)
        prose = CODE.sub("", markdown)
        for match in BARE_CITATION.finditer(prose):
            start = max(0, match.start() - 50)
            offenders.append(f"{path.relative_to(ROOT)}: ...{prose[start : match.end() + 20]!r}")
    assert not offenders, "citations written by hand (use {cite:p}`key`):\n" + "\n".join(offenders)


def test_the_bibliography_is_printed_once():
    pages = [p for p in PAGES if BIBLIOGRAPHY_DIRECTIVE.search(_texts(p)[0])]
    assert [str(p.relative_to(ROOT)) for p in pages] == ["chapters/appendix/references.md"]


def test_every_entry_formats_in_the_books_style(bib):
    """The build renders the list with pybtex's plain style, which refuses an entry that lacks a field its type
    needs (a book without a publisher): find that here, in a second, rather than at the end of the build."""
    from pybtex.database import parse_file
    from pybtex.plugin import find_plugin

    style = find_plugin("pybtex.style.formatting", "plain")()
    problems = []
    for key, entry in parse_file(str(references.BIB_PATH)).entries.items():
        try:
            list(style.format_entries([entry]))
        except Exception as error:  # pybtex's FieldIsMissing and friends
            problems.append(f"{key}: {error}")
    assert not problems, "\n".join(problems)
