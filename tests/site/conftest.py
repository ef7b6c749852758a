"""Serve the built book on loopback and drive it with Debian's Chromium through Playwright."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import pathlib
import socketserver
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The built site under test; LMBOOK_SITE names another copy (e.g. a snapshot while the book is being rebuilt).
HTML = pathlib.Path(os.environ.get("LMBOOK_SITE", ROOT / "_build" / "html"))
SCREENSHOTS = ROOT / "_build" / "screenshots"
# Debian's Chromium; LMBOOK_CHROMIUM names another Chromium-based browser (the deploy workflow uses Google Chrome).
CHROMIUM = os.environ.get("LMBOOK_CHROMIUM", "/usr/bin/chromium")
# Chromium's own background traffic (updates, sync, safe browsing) is switched off: only page requests remain.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-quic",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep test output readable
        pass


@contextlib.contextmanager
def serve(directory: pathlib.Path = HTML):
    """Serve ``directory`` on a free loopback port; yields its base URL (also used by benchmarks/run.py)."""
    assert (directory / "index.html").exists(), "build the book first: make book"
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site_url():
    with serve(HTML) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert pathlib.Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
