"""Links of the built book, read from its HTML files with Python's html.parser (no browser, no network).

- every internal link (``href``/``src`` to a file of the site, with or without ``#anchor``) resolves to an existing
  file, and an anchor to an element of the target page with that ``id`` (or an ``<a name>``);
- every page of the table of contents is reachable from the site's root page by following links;
- each notebook page's Binder and Colab buttons open that notebook, and every page's "repository" and "issues"
  buttons open the repository, all derived from ``repository.url`` and ``branch`` in ``_config.yml``;
- external links are not followed, but all of them use https.

The checks are functions of a site folder, so that the tests at the end can show each one failing on a tiny site.
"""

from __future__ import annotations

import html.parser
import pathlib
import posixpath
import urllib.parse
from collections import deque
from dataclasses import dataclass, field

import pytest

from tests.site.conftest import HTML
from tests.site.test_site import BRANCH, NOTEBOOK_PAGES, REPO_URL, toc_files

# Files sphinx copies verbatim: _static holds the theme's Jinja templates (webpack-macros.html), not pages.
NOT_PAGES = ("_static/",)
# The titles sphinx-book-theme gives its header buttons.
BINDER, COLAB, REPOSITORY, ISSUES = "Launch on Binder", "Launch on Colab", "Source repository", "Open an issue"
LOCAL_SCHEMES = ("data", "blob", "about", "javascript", "mailto")


@dataclass
class Page:
    """What the checks need from one HTML file."""

    links: list[str] = field(default_factory=list)  # href and src values, in document order
    anchors: set[str] = field(default_factory=set)  # ids, and names of <a name=...>
    buttons: dict[str, list[str]] = field(default_factory=dict)  # title of an <a title=...> -> its hrefs


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if "id" in a:
            self.page.anchors.add(a["id"])
        if tag == "a" and "name" in a:
            self.page.anchors.add(a["name"])
        self.page.links += [a[k] for k in ("href", "src") if k in a]
        # <meta http-equiv="refresh" content="0; url=intro.html">: the root index.html is such a redirect.
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh" and "url=" in a.get("content", ""):
            self.page.links.append(a["content"].split("url=", 1)[1].strip())
        if tag == "a" and "title" in a and "href" in a:
            self.page.buttons.setdefault(a["title"], []).append(a["href"])


def parse_page(text: str) -> Page:
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    return parser.page


def read_site(site: pathlib.Path) -> dict[str, Page]:
    """Every HTML page of the site, keyed by its path relative to the site folder ("chapters/x/y.html")."""
    files = (f.relative_to(site).as_posix() for f in sorted(site.rglob("*.html")))
    return {
        name: parse_page((site / name).read_text(encoding="utf-8")) for name in files if not name.startswith(NOT_PAGES)
    }


def is_external(url: str) -> bool:
    return url.startswith("//") or bool(urllib.parse.urlsplit(url).scheme)


def resolve(page: str, url: str) -> tuple[str, str]:
    """The site-relative file a local link on ``page`` points at (``page`` itself for "#x") and its anchor."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if path else page
    return target, urllib.parse.unquote(parts.fragment)


def broken_links(site: pathlib.Path, pages: dict[str, Page]) -> list[str]:
    """One line per internal link that does not resolve: "page: link (why)" (a link repeated on a page, once)."""
    problems = []
    for name, page in pages.items():
        for url in dict.fromkeys(page.links):
            if is_external(url):
                continue
            target, anchor = resolve(name, url)
            if target.startswith("../") or target == "..":
                problems.append(f"{name}: {url!r} leaves the site")
            elif not (site / target).is_file():
                problems.append(f"{name}: {url!r} (no file {target})")
            elif anchor and target.endswith(".html"):
                anchors = pages[target].anchors if target in pages else parse_page((site / target).read_text()).anchors
                if anchor not in anchors:
                    problems.append(f"{name}: {url!r} (no element with id {anchor!r} in {target})")
    return problems


def external_links(pages: dict[str, Page]) -> dict[str, str]:
    """Each link to another host (http, https or scheme-relative), with the first page that has it."""
    found: dict[str, str] = {}
    for name, page in pages.items():
        for url in page.links:
            if is_external(url) and urllib.parse.urlsplit(url).scheme not in LOCAL_SCHEMES:
                found.setdefault(url, name)
    return found


def reachable_pages(pages: dict[str, Page], root: str = "index.html") -> set[str]:
    """The pages a reader reaches from ``root`` by following links (the sidebar's included)."""
    seen, queue = {root}, deque([root])
    while queue:
        name = queue.popleft()
        for url in pages[name].links if name in pages else []:
            if not is_external(url):
                target, _ = resolve(name, url)
                if target in pages and target not in seen:
                    seen.add(target)
                    queue.append(target)
    return seen


@dataclass(frozen=True)
class Repository:
    """The book's public repository (``repository.url`` and ``branch`` in _config.yml) and the URLs made from it."""

    url: str
    branch: str

    @property
    def org_repo(self) -> str:
        return urllib.parse.urlsplit(self.url).path.strip("/")

    def binder(self, notebook: str) -> str:
        return f"https://mybinder.org/v2/gh/{self.org_repo}/{self.branch}?urlpath=lab/tree/{notebook}"

    def colab(self, notebook: str) -> str:
        return f"https://colab.research.google.com/github/{self.org_repo}/blob/{self.branch}/{notebook}"


def button_problems(page_name: str, page: Page, repo: Repository, notebook: str | None) -> list[str]:
    """What is wrong with the header buttons of one page; ``notebook`` is its source notebook, if it has one."""
    problems = []
    expected = {REPOSITORY: repo.url}
    if notebook is not None:
        expected |= {BINDER: repo.binder(notebook), COLAB: repo.colab(notebook)}
    for title, url in expected.items():
        if page.buttons.get(title) != [url]:
            problems.append(f"{page_name}: button {title!r} opens {page.buttons.get(title)}, expected [{url!r}]")
    for title in (BINDER, COLAB):
        if notebook is None and title in page.buttons:
            problems.append(f"{page_name}: a page without a notebook has a {title!r} button")
    issues = page.buttons.get(ISSUES, [])
    if len(issues) != 1 or not issues[0].startswith(f"{repo.url}/issues/new?"):
        problems.append(f"{page_name}: button {ISSUES!r} opens {issues}, expected one {repo.url}/issues/new?...")
    return problems


# ---- the built book ---------------------------------------------------------------------------------------------

PAGES = toc_files()
REPO = Repository(REPO_URL, BRANCH)


@pytest.fixture(scope="module")
def site() -> dict[str, Page]:
    assert (HTML / "index.html").exists(), "build the book first: make book"
    return read_site(HTML)


def test_every_internal_link_and_anchor_resolves(site):
    problems = broken_links(HTML, site)
    assert problems == [], f"{len(problems)} broken internal links:\n" + "\n".join(problems)


def test_every_toc_page_is_reachable_from_the_root_page(site):
    reached = reachable_pages(site)
    unreachable = [f"{name}.html" for name in PAGES if f"{name}.html" not in reached]
    assert unreachable == [], f"not reachable by links from index.html: {unreachable}"


def test_external_links_use_https(site):
    links = external_links(site)
    assert any(url.startswith("https://mybinder.org/") for url in links), "the external links were not collected"
    insecure = [f"{page}: {url}" for url, page in links.items() if not url.startswith("https://")]
    assert insecure == [], "links that are not https:\n" + "\n".join(insecure)


def test_buttons_open_this_notebook_and_the_repository(site):
    problems = []
    for name in PAGES:
        notebook = f"{name}.ipynb" if name in NOTEBOOK_PAGES else None
        problems += button_problems(f"{name}.html", site[f"{name}.html"], REPO, notebook)
    assert problems == [], "\n".join(problems)


def test_a_broken_anchor_in_a_real_page_is_reported(site):
    name = f"{NOTEBOOK_PAGES[0]}.html"
    text = (HTML / name).read_text()
    anchor = next(a for a in site[name].links if a.startswith("#") and len(a) > 1)
    edited = dict(site, **{name: parse_page(text.replace(f'href="{anchor}"', 'href="#no-such-section"', 1))})
    new = set(broken_links(HTML, edited)) - set(broken_links(HTML, site))
    assert new == {f"{name}: '#no-such-section' (no element with id 'no-such-section' in {name})"}


# ---- each check fails where it should, on a tiny site -------------------------------------------------------------

FAKE_REPO = Repository("https://github.com/someone/a-book", "main")


def button(title: str, href: str) -> str:
    return f'<a title="{title}" href="{href}">{title}</a>'


def write_fake_site(folder: pathlib.Path) -> None:
    """index.html redirects to intro.html, which links to part/nb.html; part/lost.html is linked from nowhere."""
    (folder / "part").mkdir()
    common = button(REPOSITORY, FAKE_REPO.url) + button(ISSUES, f"{FAKE_REPO.url}/issues/new?title=x")
    pages = {
        "index.html": '<meta http-equiv="Refresh" content="0; url=intro.html" />',
        "intro.html": f'<h1 id="top">Intro</h1><a href="part/nb.html#cells">notebook</a>{common}',
        "part/nb.html": (
            f'<a name="cells"></a><img src="../intro.html"><a href="#top">up</a>{common}'
            + button(BINDER, FAKE_REPO.binder("part/nb.ipynb"))
            + button(COLAB, FAKE_REPO.colab("part/nb.ipynb"))
        ),
        "part/lost.html": '<a href="../intro.html#top">intro</a><a href="http://example.org/">plain http</a>',
    }
    for name, text in pages.items():
        (folder / name).write_text(text)


def test_the_checks_find_every_fault_of_a_tiny_site(tmp_path):
    write_fake_site(tmp_path)
    pages = read_site(tmp_path)
    assert broken_links(tmp_path, pages) == ["part/nb.html: '#top' (no element with id 'top' in part/nb.html)"]
    assert reachable_pages(pages) == {"index.html", "intro.html", "part/nb.html"}
    assert external_links(pages)["http://example.org/"] == "part/lost.html"
    assert button_problems("part/nb.html", pages["part/nb.html"], FAKE_REPO, "part/nb.ipynb") == []
    assert button_problems("intro.html", pages["intro.html"], FAKE_REPO, None) == []


def test_a_missing_file_and_a_link_out_of_the_site_are_reported(tmp_path):
    write_fake_site(tmp_path)
    (tmp_path / "intro.html").write_text('<a href="part/gone.html">x</a><img src="../../etc/passwd">')
    assert broken_links(tmp_path, read_site(tmp_path)) == [
        "intro.html: 'part/gone.html' (no file part/gone.html)",
        "intro.html: '../../etc/passwd' leaves the site",
        "part/lost.html: '../intro.html#top' (no element with id 'top' in intro.html)",
        "part/nb.html: '#top' (no element with id 'top' in part/nb.html)",
    ]


def test_launch_buttons_for_another_notebook_or_repository_are_reported(tmp_path):
    write_fake_site(tmp_path)
    page = read_site(tmp_path)["part/nb.html"]
    problems = button_problems("part/nb.html", page, FAKE_REPO, "part/other.ipynb")
    assert [p.split(" opens")[0] for p in problems] == [
        "part/nb.html: button 'Launch on Binder'",
        "part/nb.html: button 'Launch on Colab'",
    ]
    moved = Repository("https://github.com/someone-else/a-book", "main")
    problems = button_problems("part/nb.html", page, moved, "part/nb.ipynb")
    assert len(problems) == 4, problems  # repository, Binder, Colab and issues all name the old repository
    assert button_problems("part/nb.html", page, FAKE_REPO, None) == [
        "part/nb.html: a page without a notebook has a 'Launch on Binder' button",
        "part/nb.html: a page without a notebook has a 'Launch on Colab' button",
    ]
