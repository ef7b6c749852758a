"""The whole book as one PDF, printed from the built HTML by Chromium: `make pdf` writes _build/pdf/book.pdf.

    python tools/pdf.py [--site DIR] [--out FILE]

Every page of the table of contents (_toc.yml, in reading order) is opened in Debian's Chromium through Playwright
from a local HTTP server, once MathJax has typeset it and its widgets have rendered, and printed to A4 with the book's
print stylesheet (book_assets/print.css) added: no sidebars, buttons or widget controls, content at full width, code
wrapped, figures kept whole. The page PDFs are joined with pypdf behind a title page (the book's title, the build date,
the commit) and a contents page, with bookmarks for parts, chapters, sections and their headings, and with the links
between pages pointing inside the PDF.

Page numbers. Chromium's footer template numbers each printed document from 1, and every page of the site is a
document of its own; so the footer is a CSS page margin box instead (print.css), whose page counter starts where the
previous page ended. The body is numbered from 1; the title and contents pages are numbered i, ii, ... (PDF page
labels), so the numbers a viewer shows match the printed ones.

--site defaults to $LMBOOK_SITE, else _build/html. The build date honours SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: its sibling scripts are importable as tools.NAME
    sys.path.insert(0, str(ROOT))

from pypdf import PdfReader, PdfWriter  # noqa: E402
from pypdf.generic import ArrayObject, FloatObject, NameObject, NullObject  # noqa: E402

from tests.site.conftest import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402 - one home for the browser and server
from tools.toc import TocEntry, toc_entries  # noqa: E402

PRINT_CSS = ROOT / "book_assets" / "print.css"
OUT = ROOT / "_build" / "pdf" / "book.pdf"
PAGE_TIMEOUT_MS = 60_000
SITE_KEY = "/LmbookSite"  # the PDF's information entry naming the built site it was printed from
# The width of print.css's A4 text block in CSS pixels (210 mm less 2 x 16 mm of margins, at 96 px per inch): the
# browser lays the page out at this width, so what is measured before printing is what lands on the paper.
TEXT_WIDTH_PX = round((210 - 2 * 16) / 25.4 * 96)

# The page is ready to print when MathJax has started (its promise is awaited separately), every widget view has been
# rendered next to its <script> by the embed manager, and every image has loaded.
READY_JS = """() =>
  (!window.MathJax || (MathJax.startup && MathJax.startup.promise)) &&
  [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
    .every(s => s.parentElement.querySelector('.widget-subarea > *, .jupyter-widgets')) &&
  [...document.images].every(i => i.complete)"""

# Displayed equations, tables and widgets wider than the text block cannot wrap: they are scaled down to fit
# (MathJax 3 breaks no lines). Returns how many were scaled.
FIT_JS = """() => {
  let scaled = 0;
  for (const e of document.querySelectorAll(
      'article mjx-container[display="true"], article table, article .widget-subarea > .jupyter-widgets')) {
    const room = e.parentElement.clientWidth, need = e.scrollWidth;
    if (need > room + 1) { e.style.zoom = (room / need).toFixed(3); scaled += 1; }
  }
  return scaled;
}"""

# The page's title (its first h1) and its sections' headings (h2), with the ids Chromium turns into destinations.
# Every heading gets an invisible link to itself, so that Chromium records a destination for its id in the PDF.
HEADINGS_JS = """() => {
  const text = h => { const c = h.cloneNode(true); c.querySelectorAll('.headerlink').forEach(a => a.remove());
                      return c.textContent.replace(/\\s+/g, ' ').trim(); };
  const article = document.querySelector('article') || document.body;
  const h1 = article.querySelector('h1');
  const sections = [...article.querySelectorAll('section[id] > h2')]
    .map(h => ({id: h.parentElement.id, text: text(h)}));
  const links = document.createElement('div');
  links.style.display = 'none';
  for (const s of sections) { const a = document.createElement('a'); a.href = '#' + s.id; links.appendChild(a); }
  document.body.appendChild(links);
  return {title: h1 ? text(h1) : document.title, sections};
}"""


@dataclass
class PrintedPage:
    """One page of the site, printed: where it starts in the book body and where its headings landed."""

    entry: TocEntry
    path: pathlib.Path
    title: str
    sections: list[dict]  # [{"id": ..., "text": ...}] in reading order
    number: int = 0  # the printed number of its first page (the book body is numbered from 1)
    pages: int = 0
    first: int = 0  # index of its first page in the final PDF (after the front matter)
    anchors: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # id -> (page in this PDF, top)
    scaled: int = 0  # equations, tables and widgets scaled down to fit the width of the paper


def css_string(text: str) -> str:
    """A CSS string literal holding text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def page_css(first_page_number: int, running_title: str) -> str:
    """The rules that differ from page to page: where the page counter starts, and the title in the footer."""
    return (
        f"html {{ counter-reset: page {first_page_number - 1}; }}\n"
        f"@page {{ @bottom-left {{ content: {css_string(running_title)}; font: 9pt sans-serif; color: #444; }} }}"
    )


def print_site_page(page, base_url: str, entry: TocEntry, number: int, running_title: str, out: pathlib.Path):
    """Open one page of the site, wait until it is typeset and rendered, and print it to out."""
    url = f"{base_url}/{entry.file}.html"
    response = page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
    if response is None or response.status != 200:
        raise SystemExit(f"pdf: {url} answered {response.status if response else 'nothing'}; is the book built?")
    try:
        page.wait_for_function(READY_JS, timeout=PAGE_TIMEOUT_MS)
    except Exception as error:  # Playwright's TimeoutError, with the page named
        raise SystemExit(f"pdf: {entry.file}: math, widgets or images did not finish rendering ({error})") from error
    page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
    # Drop-downs (answers to quick checks) cannot be opened on paper: print them open.
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    headings = page.evaluate(HEADINGS_JS)
    page.add_style_tag(content=PRINT_CSS.read_text())
    page.add_style_tag(content=page_css(number, running_title or headings["title"]))
    page.emulate_media(media="print")
    scaled = page.evaluate(FIT_JS)
    page.pdf(path=str(out), prefer_css_page_size=True, print_background=True)
    return PrintedPage(entry, out, headings["title"], headings["sections"], scaled=scaled)


def anchors_of(reader: PdfReader) -> dict[str, tuple[int, float | None]]:
    """Chromium's named destinations of a printed page: element id -> (page index, top of the element)."""
    anchors = {}
    for name, dest in reader.named_destinations.items():
        top = dest.get("/Top")
        anchors[name.lstrip("/")] = (reader.get_destination_page_number(dest), None if top is None else float(top))
    return anchors


def git_commit() -> str:
    """The commit the book was built from, marked when the working tree has changes that are not committed."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes" if dirty else "")


def build_date() -> datetime.date:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    return now.date()


FRONT_CSS = """
@page { size: A4; margin: 25mm 22mm; }
body { font-family: sans-serif; color: #222; }
.title { margin-top: 70mm; font-size: 30pt; font-weight: 600; line-height: 1.2; }
.author { margin-top: 10mm; font-size: 14pt; color: #444; }
.cover { display: flex; flex-direction: column; height: 245mm; break-after: page; }
.build { margin-top: auto; font-size: 10pt; color: #555; line-height: 1.6; }
h1 { font-size: 20pt; font-weight: 600; margin: 0 0 8mm 0; }
.toc { font-size: 10.5pt; }
.toc div { display: flex; align-items: baseline; gap: 2mm; margin: 1.2mm 0; break-inside: avoid; }
.toc .fill { flex: 1; border-bottom: 1px dotted #999; }
.toc .part { font-weight: 600; font-size: 12pt; margin-top: 6mm; }
.toc .d1 { font-weight: 600; margin-top: 3mm; }
.toc .d2 { padding-left: 7mm; }
.toc .d3 { padding-left: 14mm; }
"""


def front_matter_html(title: str, author: str, date: datetime.date, commit: str, printed: list[PrintedPage]) -> str:
    """The title page and the contents, as one HTML document; page numbers are those of the book body."""
    rows, part = [], None
    for p in printed:
        if p.entry.part != part and p.entry.part:
            part = p.entry.part
            rows.append(f'<div class="part">{html.escape(part)}</div>')
        depth = min(p.entry.depth, 3)
        rows.append(
            f'<div class="d{depth}"><span>{html.escape(p.title)}</span><span class="fill"></span>'
            f"<span>{p.number}</span></div>"
        )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><style>{FRONT_CSS}</style></head><body>"
        f"<section class='cover'>"
        f"<div class='title'>{html.escape(title)}</div><div class='author'>{html.escape(author)}</div>"
        f"<div class='build'>Built on {date.isoformat()} from commit {html.escape(commit)}.<br>"
        f"Printed from the HTML book; its widgets are shown in their first state.</div></section>"
        f"<h1>Contents</h1><div class='toc'>{''.join(rows)}</div></body></html>"
    )


def link_targets(printed: list[PrintedPage]) -> dict[tuple[str, str | None], tuple[int, float | None]]:
    """(page file, element id or None) -> (page index in the book, top) for every place a link can point at."""
    targets = {}
    for p in printed:
        targets[(p.entry.file, None)] = (p.first, None)
        for anchor, (index, top) in p.anchors.items():
            targets[(p.entry.file, anchor)] = (p.first + index, top)
    return targets


def resolve_links(writer: PdfWriter, printed: list[PrintedPage], base_url: str) -> tuple[int, int]:
    """Point the links between pages of the site at their place in the PDF; drop links to the local server that lead
    nowhere in the book (the build's index pages, sources). Returns (links resolved, links dropped)."""
    targets = link_targets(printed)
    owner = {}  # page index in the book -> the site page it was printed from
    for p in printed:
        owner.update({i: p.entry.file for i in range(p.first, p.first + p.pages)})
    resolved = dropped = 0
    for index, pdf_page in enumerate(writer.pages):
        annots = pdf_page.get("/Annots")
        if not annots:
            continue
        kept = ArrayObject()
        for ref in annots:
            annot = ref.get_object()
            action = annot.get("/A")
            key = None
            if action is not None and action.get("/S") == "/URI" and str(action["/URI"]).startswith(base_url + "/"):
                parsed = urllib.parse.urlparse(str(action["/URI"]))
                file = parsed.path.lstrip("/").removesuffix(".html")
                key = (file, parsed.fragment or None)
            elif isinstance(annot.get("/Dest"), str) and index in owner:  # a link inside the same page, by name
                key = (owner[index], str(annot["/Dest"]).lstrip("/"))
            elif action is not None and action.get("/S") == "/GoTo" and isinstance(action.get("/D"), str):
                key = (owner.get(index), str(action["/D"]).lstrip("/"))
            if key is None:
                kept.append(ref)
                continue
            target = targets.get(key) or targets.get((key[0], None))
            if target is None:
                dropped += 1
                continue
            page_index, top = target
            annot[NameObject("/Dest")] = ArrayObject(
                [
                    writer.pages[page_index].indirect_reference,
                    NameObject("/XYZ"),
                    NullObject(),
                    NullObject() if top is None else FloatObject(top),
                    NullObject(),
                ]
            )
            if "/A" in annot:
                del annot["/A"]
            kept.append(ref)
            resolved += 1
        pdf_page[NameObject("/Annots")] = kept
    return resolved, dropped


def add_outline(writer: PdfWriter, printed: list[PrintedPage], contents_page: int) -> None:
    """Bookmarks: the contents, then each part, its chapters, their sections and the sections' headings."""
    writer.add_outline_item(title="Contents", page_number=contents_page)
    parents: dict[object, object] = {}
    for p in printed:
        parent = None
        if p.entry.part:
            if ("part", p.entry.part) not in parents:
                parents[("part", p.entry.part)] = writer.add_outline_item(title=p.entry.part, page_number=p.first)
            parent = parents[("part", p.entry.part)]
        if p.entry.depth > 1:
            parent = parents.get(("depth", p.entry.depth - 1), parent)
        item = writer.add_outline_item(title=p.title, page_number=p.first, parent=parent)
        parents[("depth", p.entry.depth)] = item
        for section in p.sections:
            if section["id"] in p.anchors:
                writer.add_outline_item(
                    title=section["text"], page_number=p.first + p.anchors[section["id"]][0], parent=item
                )


def check_fonts() -> None:
    """The glossary gives every term in Chinese: without a font for it, Chromium prints empty boxes."""
    try:
        found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        found = ""
    if not found.strip():
        raise SystemExit(
            "pdf: no font with Chinese characters (the glossary needs one): apt-get install -y fonts-wqy-microhei"
        )


def build_pdf(site: pathlib.Path, out: pathlib.Path) -> dict:
    """Print every page of the built site in contents order and join them into out. Returns a short summary."""
    from playwright.sync_api import sync_playwright

    if not (site / "index.html").exists():
        raise SystemExit(f"pdf: no built book in {site}; run `make book` first")
    if not pathlib.Path(CHROMIUM).exists():
        raise SystemExit(f"pdf: {CHROMIUM} is missing; install Debian's chromium: apt-get install -y chromium")
    check_fonts()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    book_title, author = config["title"], config.get("author", "")
    entries = toc_entries()
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lmbook-pdf-") as tmp, serve(site) as base_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Light colours whatever the machine prefers: paper is white.
        context = browser.new_context(viewport={"width": TEXT_WIDTH_PX, "height": 1000}, color_scheme="light")
        page = context.new_page()
        printed: list[PrintedPage] = []
        number, chapter_title = 1, book_title
        for i, entry in enumerate(entries):
            # A chapter's footer carries its own title; its sections carry the chapter's, read when it was printed.
            running = None if entry.depth == 1 else chapter_title
            result = print_site_page(page, base_url, entry, number, running, pathlib.Path(tmp) / f"{i:03d}.pdf")
            reader = PdfReader(result.path)
            result.number, result.pages, result.anchors = number, len(reader.pages), anchors_of(reader)
            if entry.depth == 1:
                chapter_title = result.title
            number += result.pages
            printed.append(result)
            print(f"pdf: [{i + 1}/{len(entries)}] {entry.file}: {result.pages} pages", file=sys.stderr, flush=True)

        # The contents lists body page numbers, known now; the front matter's own length only shifts page indices.
        front = pathlib.Path(tmp) / "front.pdf"
        page.set_content(front_matter_html(book_title, author, build_date(), git_commit(), printed), wait_until="load")
        page.emulate_media(media="print")
        page.pdf(path=str(front), prefer_css_page_size=True, print_background=True)
        front_pages = len(PdfReader(front).pages)
        for p_ in printed:
            p_.first = front_pages + p_.number - 1
        browser.close()

        writer = PdfWriter()
        writer.append(str(front), import_outline=False)
        for p_ in printed:
            writer.append(str(p_.path), import_outline=False)
        resolved, dropped = resolve_links(writer, printed, base_url)
    add_outline(writer, printed, contents_page=1)
    writer.set_page_label(0, front_pages - 1, style="/r")
    writer.set_page_label(front_pages, len(writer.pages) - 1, style="/D", start=1)
    writer.page_mode = "/UseOutlines"
    writer.add_metadata(
        {
            "/Title": book_title,
            "/Author": author,
            "/Subject": f"Built from commit {git_commit()}",
            SITE_KEY: str(site),  # which built site it was printed from (tests/site/test_pdf.py reuses a fresh PDF)
        }
    )
    with out.open("wb") as f:
        writer.write(f)
    return {
        "pdf": str(out),
        "site_pages": len(printed),
        "pdf_pages": len(writer.pages),
        "links_resolved": resolved,
        "links_dropped": dropped,
        "scaled_to_fit": {p_.entry.file: p_.scaled for p_ in printed if p_.scaled},
        "megabytes": round(out.stat().st_size / 1e6, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--site", type=pathlib.Path, default=pathlib.Path(os.environ.get("LMBOOK_SITE", ROOT / "_build" / "html"))
    )
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    print(json.dumps(build_pdf(args.site.resolve(), args.out.resolve()), indent=1))


if __name__ == "__main__":
    main()
