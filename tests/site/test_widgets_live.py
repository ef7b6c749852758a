"""The widgets of the built book respond without a kernel: each main control moved in Chromium shows the picture
recorded for that value (lmbook.widgets.recorded), and each widget page stays within its weight budget.

What the page shows is compared with what the build stored: the widget state embedded in the page's HTML
holds every recorded picture, named by its alt text (e.g. ``weight w = 2.0, bias b = 0.0, activation f = tanh``).
After a move, the picture on screen must carry the name made of the controls' new readouts, and be byte for
byte the one recorded under that name.
"""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.site.conftest import HTML
from tests.site.pages import FIGURE, RECORDED, page_weight, recorded_views, wait_for_widgets
from tests.site.test_site import PAGES, WIDGET_PAGES

# Issue 11: a page with widgets weighs at most this much, as GitHub Pages sends it (text compressed with gzip).
PAGE_BUDGET_BYTES = 6_000_000


def widget_state(name: str) -> dict:
    """The widget models stored in a built page: {model id: model}."""
    text = (HTML / f"{name}.html").read_text(encoding="utf-8")
    found = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', text, re.S)
    assert found, f"{name}: no widget state in the page"
    return json.loads(found.group(1))["state"]


def recorded_pictures(state: dict, model_id: str) -> dict[str, str]:
    """{alt text: data URI} of every picture recorded under one recorded view (its model and all below it)."""
    pictures, todo = {}, [model_id]
    while todo:
        model = state[todo.pop()]
        value = model["state"].get("value")
        if model["model_name"] == "HTMLModel" and isinstance(value, str) and "lmbook-recorded-figure" in value:
            alt = html.unescape(re.search(r'alt="([^"]*)"', value).group(1))
            assert alt not in pictures, f"two recorded pictures are named {alt!r}"
            pictures[alt] = re.search(r'src="([^"]+)"', value).group(1)
        todo += [child.removeprefix("IPY_MODEL_") for child in model["state"].get("children", [])]
    return pictures


def view_model_id(view) -> str:
    """The model id of the widget a cell output displays (myst-nb writes it next to the rendered view)."""
    script = view.locator("xpath=ancestor::div[contains(@class, 'cell_output')][1]").locator(
        "script[type='application/vnd.jupyter.widget-view+json']"
    )
    return json.loads(script.first.inner_text())["model_id"]


def pages_with_recordings() -> list[str]:
    return [name for name in PAGES if recorded_views(name)]


def shown(view) -> tuple[str, str]:
    """(alt, src) of the one picture a recorded view shows."""
    pictures = view.locator(FIGURE)
    visible = [p for p in pictures.all() if p.is_visible()]
    assert len(visible) == 1, f"{len(visible)} recorded pictures visible at once"
    return visible[0].get_attribute("alt"), visible[0].get_attribute("src")


def readouts(view) -> str:
    """The state name the controls spell: 'description = shown value' for each control, in order."""
    parts = []
    for control in view.locator(":scope > .widget-hbox").first.locator(":scope > .widget-inline-hbox").all():
        label = control.locator(".widget-label").first.inner_text().strip()
        if control.locator("select").count():
            value = control.locator("select option:checked").inner_text().strip()
        else:
            value = control.locator(".widget-readout").inner_text().strip()
        parts.append(f"{label} = {value}")
    return ", ".join(parts).replace("\xa0", " ")  # a menu shows the spaces of its options as non-breaking ones


def movable(control) -> bool:
    """Whether a control has more than one value to move between (a model with one layer has one to show)."""
    menu = control.locator("select")
    if menu.count():
        return menu.locator("option").count() > 1
    handle = control.locator(".noUi-handle")
    return handle.get_attribute("aria-valuemin") != handle.get_attribute("aria-valuemax")


def move(page, control) -> None:
    """Move one control to its next value (the previous one at the end of its range), as a reader would."""
    menu = control.locator("select")
    if menu.count():
        options = menu.locator("option").count()
        current = menu.evaluate("s => s.selectedIndex")
        menu.select_option(index=(current + 1) % options)
        return
    handle = control.locator(".noUi-handle")
    handle.focus()
    at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")


@pytest.fixture(scope="module")
def live_pages(browser, site_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = {}
    for name in pages_with_recordings():
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{site_url}/{name}.html", wait_until="load")
        wait_for_widgets(page, name)
        opened[name] = (page, errors)
    yield opened
    context.close()


def test_every_widget_page_has_recorded_widgets():
    assert sorted(pages_with_recordings()) == sorted(WIDGET_PAGES)


@pytest.mark.parametrize("name", sorted(WIDGET_PAGES))
def test_moving_each_control_shows_the_recorded_picture_for_its_value(live_pages, name):
    page, errors = live_pages[name]
    state = widget_state(name)
    views = page.locator(RECORDED)
    assert views.count() >= 1
    for v in range(views.count()):
        view = views.nth(v)
        recorded = recorded_pictures(state, view_model_id(view))
        alt, src = shown(view)
        assert alt == readouts(view), f"{name}: the page opened on {alt!r}, but its controls read {readouts(view)!r}"
        assert recorded[alt] == src
        controls = view.locator(":scope > .widget-hbox").first.locator(":scope > .widget-inline-hbox")
        assert controls.count() >= 1, f"{name}: a recorded widget without controls"
        assert any(movable(controls.nth(c)) for c in range(controls.count())), f"{name}: nothing to move"
        for c in range(controls.count()):
            if not movable(controls.nth(c)):
                continue
            before = shown(view)
            move(page, controls.nth(c))
            page.wait_for_function(
                "([view, alt]) => Array.from(view.querySelectorAll('img.lmbook-recorded-figure'))"
                ".some(img => img.offsetParent !== null && img.alt !== alt)",
                arg=[view.element_handle(), before[0]],
                timeout=5000,
            )
            alt, src = shown(view)
            assert alt == readouts(view), (
                f"{name}: after a move the picture is {alt!r}, the controls read {readouts(view)!r}"
            )
            assert alt in recorded, f"{name}: {alt!r} is not a recorded state"
            assert src == recorded[alt], f"{name}: the picture shown for {alt!r} is not the one recorded for it"
    assert errors == [], f"{name}: errors in the page: {errors}"


@pytest.mark.parametrize("name", sorted(WIDGET_PAGES))
def test_widget_pages_stay_within_their_weight_budget(browser, site_url, name):
    weight = page_weight(browser, site_url, name)
    assert weight.sent_bytes <= PAGE_BUDGET_BYTES, (
        f"{name}: {weight.sent_bytes / 1e6:.2f} MB sent ({weight.raw_bytes / 1e6:.2f} MB uncompressed), "
        f"budget {PAGE_BUDGET_BYTES / 1e6:.0f} MB; largest: {weight.largest(3)}"
    )
