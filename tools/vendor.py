"""Copy the book's browser assets from node_modules into ``_build/vendor_site/vendor``.

Sphinx's ``html_extra_path`` then ships that folder with the site, so MathJax 3, require.js and the ipywidgets
embed manager are served by the book itself: viewing a page makes no request to any other host.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ROOT / "node_modules"
OUT = ROOT / "_build" / "vendor_site" / "vendor"
# Sphinx 7.4 neither overwrites an extra file that already exists in the built site with different content nor
# copies anything when no page is out of date, so an existing built site gets the fresh copy from here.
BUILT = ROOT / "_build" / "html" / "vendor"

# (source inside node_modules, destination inside vendor/); a directory is copied whole.
ASSETS = [
    ("mathjax/es5", "mathjax"),
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "."),
]
# Source maps and the non-AMD bundle are not used by the pages.
# The book's own browser code, copied beside the vendored packages.
OWN = ROOT / "book_assets"
SKIP = shutil.ignore_patterns("*.map", "embed.js", "embed.js.LICENSE.txt", "sre")


def main() -> int:
    missing = [src for src, _ in ASSETS if not (MODULES / src).exists()]
    if missing:
        print(f"vendor: missing {', '.join(missing)} in node_modules; run `npm ci` first", file=sys.stderr)
        return 1
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    for src, dst in ASSETS:
        source, target = MODULES / src, OUT / dst
        if source.is_dir():
            shutil.copytree(source, target, ignore=SKIP, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    for own in sorted(OWN.glob("*.js")):
        shutil.copy2(own, OUT / own.name)
    if BUILT.parent.exists():
        shutil.rmtree(BUILT, ignore_errors=True)
        shutil.copytree(OUT, BUILT)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"vendor: {len(list(OUT.rglob('*')))} files, {size / 1e6:.1f} MB in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
