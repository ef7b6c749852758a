"""Reading the built book: accessible, readable in dark mode, usable on a phone, searchable offline.

Each page of the table of contents is opened once, at desktop width in the default light mode, and looked at in three
states without reloading it:

1. light mode, 1280 px: every axe-core rule; no violation of impact serious or critical;
2. a phone's width, 390 px: the prose does not scroll sideways (wide code, tables, math and figures scroll or shrink in
   their own box); the showcase pages (the intro and one page per chapter) get a full-page screenshot;
3. dark mode, switched with the theme's own button: every figure printed by a cell sits on an opaque light box; on the
   showcase pages axe's colour-contrast rule runs again and a full-page screenshot is taken and checked.

The offline search is checked apart: search.html?q=WORD, with a word taken from a page's own source, lists that page.
Screenshots go to _build/screenshots/phone/ and _build/screenshots/dark/.
"""

from __future__ import annotations

import collections
import json
import re
import urllib.parse
from dataclasses import dataclass, field

import pytest

from book_assets.lmbook_sphinx import accessible_controls
from tests.site.conftest import HTML, ROOT, SCREENSHOTS
from tests.site.pages import wait_for_widgets
from tests.site.test_site import PAGES

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def chapter_of(name: str) -> str:
    """The chapter folder of a page ("chapters/02-backprop"), or the page itself outside chapters/ (the intro)."""
    parts = name.split("/")
    return "/".join(parts[:2]) if parts[0] == "chapters" else name


def figure_count(name: str) -> int:
    path = HTML / f"{name}.html"
    return path.read_text(encoding="utf-8").count("<img") if path.exists() else 0


def showcase_pages() -> list[str]:
    """The intro and, for each chapter, its page with the most images: what the screenshots and dark-mode axe see."""
    chapters: dict[str, list[str]] = collections.defaultdict(list)
    for name in PAGES:
        if not name.startswith("exercises/"):
            chapters[chapter_of(name)].append(name)
    return [max(names, key=figure_count) for names in chapters.values()]


SHOWCASE = showcase_pages()


@dataclass
class Reading:
    axe_light: list[dict] = field(default_factory=list)
    axe_dark: list[dict] = field(default_factory=list)
    phone_width: int = 0
    phone_shot_width: int = 0
    dark: bool = False
    dark_figures: list[str] = field(default_factory=list)
    figures: int = 0
    shot_background: tuple = ()
    shot_figure_pixels: list[tuple] = field(default_factory=list)


# Runs axe, keeping each violation's rule, impact and first targets.
AXE_RUN = """async options => {
    const result = await axe.run(document, Object.assign({resultTypes: ['violations']}, options));
    return result.violations.map(v => ({
        id: v.id,
        impact: v.impact,
        count: v.nodes.length,
        targets: v.nodes.slice(0, 4).map(n => n.target.join(' ')),
    }));
}"""

# Resolves when every image of the page is decoded (or after 5 s) and two frames have been drawn since.
IMAGES_PAINTED = """async () => {
    const decoded = Promise.all(Array.from(document.images).map(img => img.decode().catch(() => null)));
    await Promise.race([decoded, new Promise(resolve => setTimeout(resolve, 5000))]);
    await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}"""

# For each image printed by a cell: the first opaque background behind it, from the image itself outwards.
FIGURE_BACKGROUNDS = """() => Array.from(document.querySelectorAll('.cell_output img')).map(img => {
    for (let el = img; el; el = el.parentElement) {
        const bg = getComputedStyle(el).backgroundColor;
        const rgba = bg.match(/[\\d.]+/g).map(Number);
        if (rgba.length === 3 || rgba[3] === 1) {
            const box = img.getBoundingClientRect();
            return {src: (img.getAttribute('src') || '').slice(0, 60), rgb: rgba.slice(0, 3),
                    box: [box.left + scrollX, box.top + scrollY, box.width, box.height]};
        }
    }
    return {src: (img.getAttribute('src') || '').slice(0, 60), rgb: null, box: null};
})"""


def luminance(rgb) -> float:
    """Relative luminance (WCAG 2) of an sRGB colour with 0-255 channels."""

    def linear(c):
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def is_light(rgb) -> bool:
    """Whether black ink on this colour has a contrast of at least 7:1 (WCAG AAA)."""
    return rgb is not None and (luminance(rgb) + 0.05) / 0.05 >= 7


def is_dark(rgb) -> bool:
    """Whether white ink on this colour has a contrast of at least 7:1 (WCAG AAA)."""
    return rgb is not None and 1.05 / (luminance(rgb) + 0.05) >= 7


def blocking(violations: list[dict]) -> list[dict]:
    """The violations a page must not have: serious or critical ones, widgets included."""
    return [v for v in violations if v["impact"] in BLOCKING]


def describe(violations: list[dict]) -> str:
    return "; ".join(f"{v['id']} ({v['impact']}, {v['count']} nodes: {', '.join(v['targets'])})" for v in violations)


def shot_path(mode: str, name: str):
    folder = SCREENSHOTS / mode
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name.replace('/', '__')}.png"


# Resolves once no CSS transition runs any more (the theme fades its colours), or after one second at most.
TRANSITIONS_DONE = """() => new Promise(done => {
    const start = performance.now();
    const running = () => document.getAnimations().some(a => a instanceof CSSTransition && a.playState === 'running');
    const check = () => (running() && performance.now() - start < 1000 ? setTimeout(check, 50) : done());
    check();
})"""


def switch_to_dark(page) -> bool:
    """Click the theme's colour-mode button until the page is dark (it cycles light, dark, system)."""
    button = page.locator(".theme-switch-button:visible").first
    for _ in range(3):
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            break
        button.click()
    # Leave the button (its tooltip would cover the page) and let the theme's colour transitions finish.
    page.mouse.move(0, DESKTOP["height"] - 1)
    page.evaluate(TRANSITIONS_DONE)
    return page.evaluate("() => document.documentElement.dataset.theme") == "dark"


def sample_screenshot(path, figure_boxes):
    """The screenshot's most frequent colour and, for each figure box, the colour 2 px inside its top-left corner."""
    from PIL import Image

    with Image.open(path) as shot:
        rgb = shot.convert("RGB")
        small = rgb.resize((max(1, rgb.width // 8), max(1, rgb.height // 8)), Image.NEAREST)
        background = collections.Counter(small.get_flattened_data()).most_common(1)[0][0]
        corners = [rgb.getpixel((int(x) + 2, int(y) + 2)) for x, y, w, h in figure_boxes if w > 4 and h > 4]
        return background, corners, rgb.width


@pytest.fixture(scope="module")
def readings(browser, site_url):
    """Open each page once and take every reading this file asserts on."""
    assert AXE.exists(), f"{AXE} is missing: npm ci installs axe-core from package.json"
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    found = {}
    for name in PAGES:
        reading = found[name] = Reading()
        page.set_viewport_size(DESKTOP)
        page.goto(f"{site_url}/{name}.html", wait_until="networkidle")
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        wait_for_widgets(page, name)
        page.add_script_tag(path=str(AXE))
        reading.axe_light = page.evaluate(AXE_RUN, {})

        page.set_viewport_size(PHONE)
        reading.phone_width = page.evaluate("() => document.documentElement.scrollWidth")
        if name in SHOWCASE:
            path = shot_path("phone", name)
            page.screenshot(path=str(path), full_page=True)
            reading.phone_shot_width = sample_screenshot(path, [])[2]

        page.set_viewport_size(DESKTOP)
        reading.dark = switch_to_dark(page)
        if name in SHOWCASE:
            reading.axe_dark = page.evaluate(AXE_RUN, {"runOnly": ["color-contrast"]})
        # axe scrolls while it checks contrast; at the top, the fixed header cannot cover a figure in the screenshot.
        page.evaluate("() => window.scrollTo(0, 0)")
        figures = page.evaluate(FIGURE_BACKGROUNDS)
        reading.figures = len(figures)
        reading.dark_figures = [f"{f['src']} on {f['rgb']}" for f in figures if not is_light(f["rgb"])]
        if name in SHOWCASE:
            path = shot_path("dark", name)
            # The figures' boxes must be where the screenshot shows them: on a loaded machine the page can still
            # be settling after the viewport and theme changes (a widget or a formula re-laid out), which moves
            # every figure below it. Take the screenshot again until the boxes before and after it agree.
            # A figure can also be caught before Chromium has painted it (a widget's picture is decoded from its
            # data URL after the widget is drawn), which shows the page's dark background at its corner: wait for
            # every image to be decoded and for two frames, and take the screenshot again (at most 4 times in all)
            # while a corner is dark. A figure that really sits on a dark background stays dark every time.
            for _ in range(4):
                page.evaluate(IMAGES_PAINTED)
                page.screenshot(path=str(path), full_page=True)
                settled = page.evaluate(FIGURE_BACKGROUNDS)
                background, corners, _ = sample_screenshot(path, [f["box"] for f in settled if f["box"]])
                boxes_agree = [f["box"] for f in settled] == [f["box"] for f in figures]
                figures = settled
                if boxes_agree and all(is_light(c) for c in corners):
                    break
            reading.shot_background, reading.shot_figure_pixels = background, corners
        page.evaluate("() => localStorage.clear()")
    yield found
    context.close()


@pytest.mark.parametrize("name", PAGES)
def test_no_serious_accessibility_violations(readings, name):
    found = blocking(readings[name].axe_light)
    assert found == [], f"{name}: axe-core found {describe(found)}"


@pytest.mark.parametrize("name", SHOWCASE)
def test_dark_mode_has_enough_contrast(readings, name):
    assert readings[name].dark, f"{name}: the theme's button did not switch the page to dark mode"
    found = blocking(readings[name].axe_dark)
    assert found == [], f"{name} in dark mode: axe-core found {describe(found)}"


@pytest.mark.parametrize("name", PAGES)
def test_figures_sit_on_a_light_box_in_dark_mode(readings, name):
    reading = readings[name]
    assert reading.dark, f"{name}: the theme's button did not switch the page to dark mode"
    assert reading.dark_figures == [], f"{name}: figures without an opaque light background in dark mode: " + ", ".join(
        reading.dark_figures
    )


@pytest.mark.parametrize("name", SHOWCASE)
def test_dark_screenshot_is_dark_with_light_figures(readings, name):
    reading = readings[name]
    assert is_dark(reading.shot_background), f"{name}: the dark screenshot's main colour is {reading.shot_background}"
    dark_corners = [c for c in reading.shot_figure_pixels if not is_light(c)]
    assert dark_corners == [], f"{name}: figure corners not light in the dark screenshot: {dark_corners}"


@pytest.mark.parametrize("name", PAGES)
def test_no_horizontal_scrolling_at_phone_width(readings, name):
    width = readings[name].phone_width
    assert width <= PHONE["width"] + 1, f"{name}: at {PHONE['width']} px wide the page is {width} px wide"


@pytest.mark.parametrize("name", SHOWCASE)
def test_phone_screenshot_is_phone_wide(readings, name):
    width = readings[name].phone_shot_width
    assert 0 < width <= PHONE["width"] + 1, f"{name}: the phone screenshot is {width} px wide"


def test_showcase_covers_every_chapter():
    assert "intro" in SHOWCASE
    chapters = {chapter_of(n) for n in PAGES if n.startswith("chapters/")}
    assert chapters == {chapter_of(n) for n in SHOWCASE if n.startswith("chapters/")}
    assert sum(figure_count(n) > 0 for n in SHOWCASE) >= len(chapters) - 1, "the showcase pages should have figures"


# ---------------------------------------------------------------------------------------------------------- search

WORD = re.compile(r"[a-z]{7,}")
# What is not prose in a page's source: math, code, roles and targets, link URLs, HTML tags.
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|```.*?```|`[^`\n]*`|\{[^}\n]*\}|\]\([^)\n]*\)|<[^>\n]*>", re.S)


def prose(name: str) -> str:
    md, nb = ROOT / f"{name}.md", ROOT / f"{name}.ipynb"
    if md.exists():
        text = md.read_text(encoding="utf-8")
    else:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return NOT_PROSE.sub(" ", text).lower()


def distinctive_words() -> dict[str, str]:
    """For each chapter's index page and showcase section: the word of its prose found in the fewest other pages."""
    words = {name: collections.Counter(WORD.findall(prose(name))) for name in PAGES}
    pages_with = collections.Counter(w for counts in words.values() for w in counts)
    targets = [n for n in PAGES if n.startswith("chapters/") and n.endswith("/index")]
    targets += [n for n in SHOWCASE if n.startswith("chapters/") and not n.endswith("/index")]
    return {name: min(words[name], key=lambda w: (pages_with[w], -words[name][w], w)) for name in targets}


SEARCHES = distinctive_words()


@pytest.fixture(scope="module")
def search_results(browser, site_url):
    """The pages that search.html lists for each word of SEARCHES."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    found = {}
    for name, word in SEARCHES.items():
        page.goto(f"{site_url}/search.html?q={urllib.parse.quote(word)}", wait_until="load")
        page.wait_for_function(
            "() => /Search finished|did not match/.test(document.querySelector('.search-summary')?.innerText || '')",
            timeout=20000,
        )
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('ul.search li > a')).map(a => a.href)")
        found[name] = [urllib.parse.urlparse(h).path.lstrip("/").removesuffix(".html") for h in hrefs]
    yield found
    context.close()


def test_search_covers_every_chapter():
    chapters = {chapter_of(n) for n in PAGES if n.startswith("chapters/")}
    assert {chapter_of(n) for n in SEARCHES if n.endswith("/index")} >= chapters - {"chapters/appendix"}
    assert len(SEARCHES) >= 2 * (len(chapters) - 1)


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_finds_the_page_by_its_own_word(search_results, name):
    word = SEARCHES[name]
    assert name in search_results[name], f"searching {word!r} (from {name}) lists {search_results[name][:10]}"


# ------------------------------------------------------------------------------------------- the theme's controls


def test_theme_controls_get_names_once():
    page = (
        '<button class="btn search-button-field search-button__button pst-js-only" title="Search" aria-label="Search">'
        '<i class="theme-switch fa-solid fa-moon fa-lg" data-mode="dark"  title="Dark"></i>'
        '<a class="current reference internal" href="#">Losses &amp; descent</a><details open="open"><summary>'
        '<summary aria-label="Toggle hidden content">'
        '<div role="list" class="citation-list"><div class="citation" id="id1" role="doc-biblioentry">'
    )
    fixed = accessible_controls(page)
    assert 'aria-label="Search Ctrl+K"' in fixed
    assert 'title="Dark"' not in fixed
    assert '<summary aria-label="Sections of Losses &amp; descent">' in fixed
    assert "Toggle hidden content" not in fixed
    assert '<div class="citation-list"><div class="citation" id="id1" role="doc-biblioentry">' in fixed
    assert accessible_controls(fixed) == fixed, "a second build must not rewrite a page again"
