"""Measuring a built page as a reader's browser loads it: its weight and the time until its widgets respond.

Shared by the site tests (the weight budget) and the benchmark harness (``benchmarks/run.py --only pages``).
"""

from __future__ import annotations

import gzip
import pathlib
import urllib.parse
from dataclasses import dataclass, field
from functools import cache

from tests.site.conftest import HTML

# Files a web server such as GitHub Pages compresses with gzip on the way; images and fonts are sent as they are.
COMPRESSED_SUFFIXES = (".html", ".js", ".css", ".svg", ".json", ".txt", ".map", ".ttf", ".eot")


@cache
def _sent_size(path: pathlib.Path) -> int:
    data = path.read_bytes()
    return len(gzip.compress(data, compresslevel=6)) if path.suffix in COMPRESSED_SUFFIXES else len(data)


@dataclass
class Weight:
    """What one page load fetched from the site: ``{path: (raw bytes, bytes sent)}``."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def raw_bytes(self) -> int:
        return sum(raw for raw, _ in self.files.values())

    @property
    def sent_bytes(self) -> int:
        return sum(sent for _, sent in self.files.values())

    def largest(self, n: int) -> list[str]:
        rows = sorted(self.files.items(), key=lambda item: -item[1][1])[:n]
        return [f"{path} {sent / 1e3:.0f} kB" for path, (_, sent) in rows]


def page_weight(browser, site_url: str, name: str) -> Weight:
    """Load ``name`` (e.g. ``chapters/02-backprop/01-neuron``) in a fresh context, with an empty cache, and add up
    every file it fetched: raw, and as sent with gzip where a server compresses it."""
    context = browser.new_context()
    page = context.new_page()
    urls: list[str] = []
    page.on("requestfinished", lambda request: urls.append(request.url))
    page.goto(f"{site_url}/{name}.html", wait_until="networkidle")
    context.close()
    weight = Weight()
    for url in urls:
        if not url.startswith(site_url + "/"):
            continue
        path = HTML / urllib.parse.unquote(urllib.parse.urlparse(url).path).lstrip("/")
        if path.is_file():
            weight.files[path.relative_to(HTML).as_posix()] = (path.stat().st_size, _sent_size(path))
    return weight


# A recorded widget (lmbook.widgets.recorded.CSS_CLASS) and the picture it shows.
RECORDED = ".lmbook-recorded"
FIGURE = "img.lmbook-recorded-figure"
RECORDED_FIGURE = f"{RECORDED} {FIGURE}"


def recorded_views(name: str) -> int:
    """How many recorded widgets a built page holds (each names its class once in the page's widget state)."""
    return (HTML / f"{name}.html").read_text(encoding="utf-8").count('"lmbook-recorded"')


def wait_for_widgets(page, name: str, timeout_ms: float = 30000) -> None:
    """Wait until every recorded widget of the page shows its picture: the widget manager renders them after
    the page's load event, and a measurement taken before would see the page's layout shift under it."""
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[RECORDED_FIGURE, recorded_views(name)],
        timeout=timeout_ms,
    )


def seconds_to_interactive(browser, site_url: str, name: str) -> float:
    """Seconds from the start of navigation until every recorded widget of the page shows its controls and
    picture, measured in the page's own clock."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site_url}/{name}.html", wait_until="commit")
    assert recorded_views(name) >= 1, f"{name} has no recorded widget"
    wait_for_widgets(page, name)
    elapsed = page.evaluate("() => performance.now()") / 1000.0
    context.close()
    return elapsed
