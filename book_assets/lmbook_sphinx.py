"""A small Sphinx extension for the book's HTML (loaded through ``local_extensions`` in ``_config.yml``).

sphinx-thebe and sphinx-togglebutton register their inline scripts both with the application and with the
builder; Sphinx 7.4 then lists each of them twice (once with filename ``None``, once with ``""``), so the page
declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError on every page. This extension drops
duplicate scripts from each page's script list before the page is written.
"""

from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
