"""The built book, opened in headless Chromium the way a reader opens it.

Every page in the table of contents loads with no request to another host, no failed request and no console
error; math is typeset by the book's own MathJax; the widgets show their initial state; figures have alt text.
Links and launch buttons: test_links.py; moving the widgets: test_widgets_live.py; reading comfort: test_reading.py.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

import pytest
import yaml

from tests.site.conftest import HTML, ROOT, SCREENSHOTS
from tests.site.pages import wait_for_widgets
from tools.toc import toc_files

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
ORG_REPO = urllib.parse.urlparse(REPO_URL).path.strip("/")


def has_math(name: str) -> bool:
    """Whether the page's source has MyST math ($...$ or $$...$$) in its prose."""
    md, nb = ROOT / f"{name}.md", ROOT / f"{name}.ipynb"
    if md.exists():
        return "$" in md.read_text()
    import nbformat

    return any(c.cell_type == "markdown" and "$" in c.source for c in nbformat.read(nb, as_version=4).cells)


PAGES = toc_files()
MATH_PAGES = [f for f in PAGES if has_math(f)]
NOTEBOOK_PAGES = [f for f in PAGES if (ROOT / f"{f}.ipynb").exists()]
# Pages with widgets, recorded for the static book (lmbook.widgets.recorded): (pictures, sliders and dropdowns) at
# least. A new widget page is added here; tests/site/test_widgets_live.py then moves its controls in Chromium.
WIDGET_PAGES = {
    "chapters/01-large-models/02-what-makes-large": (1, 3),
    "chapters/02-backprop/01-neuron": (1, 2),
    "chapters/02-backprop/04-training": (1, 2),
    "chapters/03-gradient-descent/02-linear-regression": (1, 2),
    "chapters/03-gradient-descent/04-optimizers": (1, 3),
    "chapters/04-training-well/02-overfitting": (1, 2),
    "chapters/04-training-well/04-evaluation": (1, 1),
    "chapters/05-cnn/05-looking-inside": (1, 3),
    "chapters/06-rnn/02-backprop-through-time": (1, 2),
    "chapters/07-attention/03-multi-head": (1, 2),
    "chapters/07-attention/06-looking-inside": (1, 2),
    "chapters/08-bert/06-looking-inside": (1, 2),
    "chapters/09-scale/01-counting-the-cost": (1, 4),
    "chapters/10-compression/05-export-and-serve": (1, 4),
    "chapters/11-outlook/04-bias-privacy-robustness": (1, 3),
}


def leaves_site(url: str, site_url: str) -> bool:
    """Whether a request goes to another host. data: and blob: URLs (widget images made in the page) stay local."""
    if url.startswith(("data:", "blob:" + site_url + "/", "about:")):
        return False
    return not url.startswith(site_url + "/")


@dataclass
class Visit:
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def visits(browser, site_url):
    """Open each page once; keep the page objects for the per-page checks."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = {}
    for name in PAGES:
        page = context.new_page()
        visit = Visit()
        page.on("request", lambda r, v=visit: v.external.append(r.url) if leaves_site(r.url, site_url) else None)
        page.on("requestfailed", lambda r, v=visit: v.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r, v=visit: v.failed.append(f"{r.url} ({r.status})") if r.status >= 400 else None)
        page.on("console", lambda m, v=visit: v.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, v=visit: v.console_errors.append(str(e)))
        page.goto(f"{site_url}/{name}.html", wait_until="networkidle")
        # MathJax typesets asynchronously; wait until it says it is done.
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
        page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
        wait_for_widgets(page, name)
        page.screenshot(path=str(SCREENSHOTS / f"{name.replace('/', '__')}.png"), full_page=True)
        opened[name] = (page, visit)
    yield opened
    context.close()


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_offline_without_errors(visits, name):
    page, visit = visits[name]
    assert page.title(), f"{name}: empty title"
    assert visit.external == [], f"{name}: requests left the site: {visit.external}"
    assert visit.failed == [], f"{name}: failed requests: {visit.failed}"
    assert visit.console_errors == [], f"{name}: console errors: {visit.console_errors}"
    assert page.locator(".output.traceback, .output.error").count() == 0, f"{name}: an error output is shown"


@pytest.mark.parametrize("name", MATH_PAGES)
def test_math_is_typeset(visits, name):
    page, _ = visits[name]
    raw_math = page.locator(".math").count()
    assert raw_math > 0, f"{name}: its source has math but the page has none"
    assert page.locator("mjx-container").count() >= raw_math, f"{name}: math left untypeset"
    assert page.locator("mjx-merror").count() == 0, f"{name}: MathJax reported a TeX error"
    # TeX that Markdown broke apart (e.g. a line of a formula read as a list item) is left as raw text.
    raw_tex = page.evaluate(
        r"""() => {
            const main = document.querySelector('main').cloneNode(true);
            main.querySelectorAll('pre, code, mjx-container, script, .cell_input').forEach(e => e.remove());
            return (main.textContent.match(/\\(mathbf|mathrm|frac|sum|cdot|top|sqrt|left|right)\b[^\n]{0,40}/g) || []);
        }"""
    )
    assert raw_tex == [], f"{name}: TeX shown as text: {raw_tex[:3]}"


def test_the_chapter_pages_have_math():
    assert len([n for n in MATH_PAGES if n.startswith("chapters/02-backprop/0")]) >= 4


@pytest.mark.parametrize("name", sorted(WIDGET_PAGES))
def test_widgets_show_their_initial_state(visits, name):
    page, _ = visits[name]
    assert name in visits, f"{name} is not in the table of contents"
    page.wait_for_selector(".jupyter-widgets img", timeout=15000)
    widget_images = page.locator(".jupyter-widgets img")
    min_images, min_controls = WIDGET_PAGES[name]
    assert widget_images.count() >= min_images
    for i in range(widget_images.count()):
        width = widget_images.nth(i).evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 100, f"{name}: widget image {i} did not render"
    controls = page.locator(".jupyter-widgets .widget-slider, .jupyter-widgets .widget-dropdown").count()
    assert controls >= min_controls, f"{name}: {controls} sliders or dropdowns rendered, expected {min_controls}"


def test_fine_tuning_progress_is_one_bar(visits):
    # In Jupyter, lmbook.finetune shows a widget bar; a text bar would leave one output line per refresh on the page.
    page, _ = visits["chapters/08-bert/04-finetuning"]
    page.wait_for_selector(".jupyter-widgets .widget-hprogress", timeout=15000)
    assert page.locator(".jupyter-widgets .widget-hprogress").count() == 1
    width = page.locator(".jupyter-widgets .widget-hprogress").evaluate("bar => bar.getBoundingClientRect().width")
    assert width > 200, f"the progress bar is only {width:.0f} px wide"
    outputs = page.locator(".cell_output pre").all_inner_texts()
    assert not any("step/s]" in text for text in outputs), "text progress bars in the page"
    assert any("epoch 3: train loss" in text for text in outputs)


@pytest.mark.parametrize("name", PAGES)
def test_tables_printed_by_cells_are_rendered(visits, name):
    # A Markdown table displayed by a cell must become an HTML table, not a paragraph of pipes and dashes.
    page, _ = visits[name]
    leaked = [t for t in page.locator(".cell_output p").all_inner_texts() if re.search(r"\|\s*[-\u2014:]{2,}", t)]
    assert not leaked, f"{name}: Markdown table shown as text: {leaked[0][:120]!r}"


@pytest.mark.parametrize("name", PAGES)
def test_images_have_alt_text(visits, name):
    page, _ = visits[name]
    missing = page.evaluate(
        "() => Array.from(document.querySelectorAll('main img'))"
        ".filter(i => !i.closest('.jupyter-widgets') && !(i.getAttribute('alt') || '').trim())"
        ".map(i => i.getAttribute('src'))"
    )
    assert missing == [], f"{name}: images without alt text: {missing}"


def test_leaves_site_tells_local_from_external_requests():
    site = "http://127.0.0.1:8000"
    assert not leaves_site(f"{site}/_static/x.js", site)
    assert not leaves_site(f"blob:{site}/8f644ca6", site)
    assert not leaves_site("data:image/png;base64,AAAA", site)
    assert leaves_site("https://unpkg.com/thebe@0.8.2/lib/index.js", site)
    assert leaves_site("blob:https://cdn.example.org/1", site)
    assert leaves_site("http://127.0.0.1:8000.evil.org/x.js", site)


def test_every_toc_page_was_built():
    missing = [n for n in PAGES if not (HTML / f"{n}.html").exists()]
    assert missing == []
