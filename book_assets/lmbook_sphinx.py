"""A small Sphinx extension for the book's HTML (loaded through ``local_extensions`` in ``_config.yml``).

sphinx-thebe and sphinx-togglebutton register their inline scripts both with the application and with the
builder; Sphinx 7.4 then lists each of them twice (once with filename ``None``, once with ``""``), so the page
declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError on every page. This extension drops
duplicate scripts from each page's script list before the page is written.

It also lets ``nb_merge_streams`` show a cell's printed lines as one block without corrupting the executed notebook:
myst-nb 1.4 merges the stream outputs of a cell in place, on the very output objects it then writes to
``_build/jupyter_execute``, so every line printed after the first interruption (a warning on stderr, a figure) was
written there twice. The merge here works on a copy; the page shows the merged block, the notebook keeps its outputs.

It reads glued numpy numbers: a cell that glues ``np.float64(0.98)`` stores its text form, which numpy 2 writes as
``'np.float64(0.98)'``; myst-nb 1.4 then cannot apply a format such as ``:.2f`` to it (the build stops) and, without
a format, would print ``np.float64(0.98)`` into the prose. ``format_plain_text`` reads such a number as the number.

Finally it gives a few controls of the theme the accessible names that axe-core asks for (tests/site/test_reading.py),
by rewriting each written page once the build has finished (``accessible_controls``): the theme renders them from its
own templates, so there is no earlier place to change them.
"""

from __future__ import annotations

import copy
import pathlib
import re

from myst_nb.core import render as _myst_nb_render
from myst_nb.core import variables as _myst_nb_variables
from myst_nb.core.utils import coalesce_streams
from myst_nb.ext.glue import crossref as _glue_crossref
from myst_nb.ext.glue import roles as _glue_roles

_myst_nb_format_plain_text = _myst_nb_variables.format_plain_text
# numpy 2's text form of a scalar: np.float64(0.98), np.int64(3), np.True_; the group is the plain number.
_NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint|complex|longdouble)\w*\((.*)\)|np\.(True|False)_")


def coalesce_streams_copy(outputs):
    """myst-nb's ``coalesce_streams`` on a deep copy, so that the notebook's own outputs are left unchanged."""
    return coalesce_streams(copy.deepcopy(outputs))


def format_plain_text(text: str, fmt_spec: str) -> str:
    """myst-nb's ``format_plain_text`` for glued text, with numpy 2's scalar form (``np.float64(0.98)``) read as
    the plain number it stands for."""
    scalar = _NUMPY_SCALAR.fullmatch(text.strip())
    if scalar:
        text = scalar.group(1) or scalar.group(2)
    return _myst_nb_format_plain_text(text, fmt_spec)


def _key(script) -> tuple:
    # The same inline script can be registered once with filename None and once with "" (Sphinx copies the
    # registry's scripts into the builder with `filename or ""`), so compare the content, not the object.
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", script) or ""
    return filename, tuple(sorted((k, str(v)) for k, v in attributes.items()))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: other extensions still add page scripts to this same list


# (pattern, replacement) pairs; each matches only the theme's original markup, so a page is never rewritten twice.
_ACCESSIBLE_CONTROLS = [
    # The search button shows "Search Ctrl+K" but was named "Search": a speech-input user saying what they see
    # would not reach it (WCAG 2.5.3, axe's label-content-name-mismatch).
    (
        re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*) aria-label="Search"'),
        r'\1 aria-label="Search Ctrl+K"',
    ),
    # Font Awesome turns each titled icon of the colour-mode button into text ("Light Dark System Settings") that the
    # button's name, "Color mode", does not contain; the icons are decoration next to that name.
    (re.compile(r'(<i class="theme-switch [^"]*" data-mode="\w+") +title="[^"]*"'), r"\1"),
    # A chapter's expand/collapse arrow in the sidebar is a <summary> holding only an icon: it had no name at all.
    (
        re.compile(r'(<a class="[^"]*reference internal" href="[^"]*">([^<"]+)</a><details[^>]*>)<summary>'),
        r'\1<summary aria-label="Sections of \2">',
    ),
    # A hidden cell's toggle reads "Show code cell source"; its aria-label said something else.
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    # Docutils marks the bibliography's list role="list" but its entries role="doc-biblioentry", not "listitem":
    # a list whose items a screen reader cannot find (axe's aria-required-children). The entries keep their role.
    (re.compile(r'<div role="list" class="citation-list">'), '<div class="citation-list">'),
]


def accessible_controls(html: str) -> str:
    """The page with the theme's controls named as they appear (see ``_ACCESSIBLE_CONTROLS``)."""
    for pattern, replacement in _ACCESSIBLE_CONTROLS:
        html = pattern.sub(replacement, html)
    return html


def rewrite_pages(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in pathlib.Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = accessible_controls(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app):
    # render.py looks the name up in its module globals at each call, so replacing it there is enough.
    _myst_nb_render.coalesce_streams = coalesce_streams_copy
    _glue_roles.format_plain_text = format_plain_text  # both modules imported it by name
    _glue_crossref.format_plain_text = format_plain_text
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("build-finished", rewrite_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
