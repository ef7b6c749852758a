"""The PDF of the whole book (`make pdf`, tools/pdf.py), read back the way a reader's viewer reads it.

It has a page for every page of the table of contents and bookmarks for every chapter and section under its
chapter; each page's title is text that can be found; math is typeset, not left as TeX; figures are in it; links
between pages stay inside the PDF; the Chinese of the glossary has a font; the file stays small enough to download.

The PDF is built from the site under test (LMBOOK_SITE or _build/html) unless `make pdf` already built it from that
site after the site was last built. Text is read with poppler's pdftotext (pypdf takes a minute for the whole book).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import pytest
from pypdf import PdfReader

from tests.site.conftest import HTML
from tools.pdf import OUT, SITE_KEY, build_pdf
from tools.toc import toc_entries

ENTRIES = toc_entries()
CHAPTERS = [e.file for e in ENTRIES if e.depth == 1]
MAX_MEGABYTES = 50
# Raw TeX that MathJax replaces when it typesets: in the PDF it may only come from code shown as code.
TEX_MARKERS = ["$$", "\\frac", "\\(", "\\[", "\\begin{", "\\mathbf"]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def site_title(name: str) -> str:
    """A page's first h1 in the built HTML, as text (without the theme's "#" link)."""
    page = (HTML / f"{name}.html").read_text()
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", page[page.index("<article") :], re.S)
    assert h1, f"{name}: no <h1> in the built page"
    return normalise(html.unescape(re.sub(r"<a class=\"headerlink\".*?</a>|<[^>]+>", "", h1.group(1))))


def site_code_text(name: str) -> str:
    """The text of a page's code blocks and outputs (<pre>), where TeX may legitimately appear as written."""
    page = (HTML / f"{name}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", "".join(re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S))))


@pytest.fixture(scope="module")
def pdf_path():
    site = HTML.resolve()
    fresh = OUT.exists() and OUT.stat().st_mtime >= (site / "index.html").stat().st_mtime
    if not (fresh and PdfReader(OUT).metadata.get(SITE_KEY) == str(site)):
        build_pdf(site, OUT)
    return OUT


@pytest.fixture(scope="module")
def reader(pdf_path):
    return PdfReader(pdf_path)


@pytest.fixture(scope="module")
def page_texts(pdf_path) -> list[str]:
    assert shutil.which("pdftotext"), "install poppler's pdftotext: apt-get install -y poppler-utils"
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf_path), "-"], capture_output=True, text=True).stdout
    return text.split("\f")


def outline_tree(reader: PdfReader) -> list[tuple[str, int, list]]:
    """The bookmarks as (title, page index, children)."""

    def walk(items) -> list:
        tree = []
        for item in items:
            if isinstance(item, list):
                tree[-1][2].extend(walk(item))
            else:
                tree.append((normalise(item.title), reader.get_destination_page_number(item), []))
        return tree

    return walk(reader.outline)


def flatten(tree) -> list[tuple[str, int, list]]:
    return [node for item in tree for node in [item, *flatten(item[2])]]


@pytest.fixture(scope="module")
def bookmark(reader) -> dict[str, tuple[str, int, list]]:
    """Each page of the site's bookmark: the first with its title after the previous page's (titles such as "Common
    pitfalls, summary and check your understanding" recur from chapter to chapter)."""
    nodes, found, at = flatten(outline_tree(reader)), {}, 0
    for entry in ENTRIES:
        title = site_title(entry.file)
        at = next((i for i in range(at, len(nodes)) if nodes[i][0] == title), None)
        assert at is not None, f"no bookmark for {entry.file} ({title!r}) after the previous page's, in contents order"
        found[entry.file] = nodes[at]
    return found


@pytest.fixture(scope="module")
def first_page(bookmark) -> dict[str, int]:
    """Where each page of the site starts in the PDF."""
    return {name: page for name, (_, page, _) in bookmark.items()}


def test_every_page_of_the_contents_is_printed(reader, first_page):
    # A title page and a contents page come first; every page of the site takes at least one page, in order.
    assert len(reader.pages) >= len(ENTRIES) + 2
    starts = [first_page[e.file] for e in ENTRIES]
    assert starts == sorted(set(starts)), "the pages are not in the order of the table of contents"
    first = starts[0]
    assert first >= 2 and reader.page_labels[0] == "i", "no title and contents pages before the book"
    assert reader.page_labels[first] == "1", "the book's first page is not numbered 1 in the viewer"


def test_the_outline_has_every_chapter_with_its_sections(bookmark):
    chapter = None
    for entry in ENTRIES:
        if entry.depth == 1:
            chapter = entry.file
        else:
            assert bookmark[entry.file] in bookmark[chapter][2], f"{entry.file} is not bookmarked under {chapter}"


def test_each_page_title_is_text_on_its_bookmarked_page(first_page, page_texts):
    for entry in ENTRIES:
        title = site_title(entry.file)
        text = normalise(page_texts[first_page[entry.file]])
        assert title in text, f"{entry.file}: {title!r} is not text on its first page"


@pytest.fixture(scope="module")
def page_text_of(first_page, page_texts) -> dict[str, str]:
    """Each site page's text in the PDF: from its bookmarked first page to the next site page's."""
    starts = [first_page[e.file] for e in ENTRIES] + [len(page_texts)]
    return {e.file: "\f".join(page_texts[starts[i] : starts[i + 1]]) for i, e in enumerate(ENTRIES)}


@pytest.mark.parametrize("name", [e.file for e in ENTRIES])
def test_math_is_typeset_not_raw_tex(page_text_of, name):
    text, code = page_text_of[name], site_code_text(name)
    for marker in TEX_MARKERS:
        assert text.count(marker) <= code.count(marker), (
            f"{name}: raw TeX {marker!r} printed {text.count(marker)} times, {code.count(marker)} in its code: "
            "math was not typeset (or the Markdown around a formula broke it)"
        )


def test_figures_are_in_the_pdf(reader):
    expected = sum(
        len(re.findall(r"<img\s", (HTML / f"{e.file}.html").read_text().split("<article", 1)[1])) for e in ENTRIES
    )
    images = sum(
        1
        for page in reader.pages
        for xobject in (page.get("/Resources", {}).get("/XObject") or {}).values()
        if xobject.get_object().get("/Subtype") == "/Image"
    )
    assert expected > 0 and images >= expected, f"{images} images in the PDF, {expected} in the site's pages"


def test_links_between_pages_stay_in_the_pdf(reader):
    inside = leaving = 0
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            annot = annot.get_object()
            uri = str((annot.get("/A") or {}).get("/URI", ""))
            leaving += uri.startswith(("http://127.0.0.1", "http://localhost"))
            inside += "/Dest" in annot
    assert leaving == 0, f"{leaving} links point at the local server that printed the book"
    assert inside >= len(CHAPTERS), f"only {inside} links lead to a place in the PDF"


def test_the_glossary_has_a_font_for_chinese(reader, page_texts):
    pages = [i for i, text in enumerate(page_texts) if re.search(r"[\u4e00-\u9fff]", text)]
    assert pages, "no Chinese text in the PDF (the glossary gives every term in Chinese)"
    fonts = set()
    for i in pages:
        for font in (reader.pages[i].get("/Resources", {}).get("/Font") or {}).values():
            fonts.add(str(font.get_object().get("/BaseFont", "")))
    cjk = [f for f in fonts if re.search(r"CJK|WenQuanYi|Hei|Song|Ming|Gothic|Fallback|Han", f, re.I)]
    assert cjk, f"Chinese is drawn without a Chinese font (fonts: {sorted(fonts)}): empty boxes on paper"


def test_the_file_is_small_enough_to_download(pdf_path):
    megabytes = pdf_path.stat().st_size / 1e6
    assert megabytes < MAX_MEGABYTES, f"the PDF is {megabytes:.1f} MB"
