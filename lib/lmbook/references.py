"""The book's bibliography as data: the entries of ``references.bib`` and the keys a page cites.

The bibliography ships inside the package, so a notebook on Colab (where the book's folders are not on disk) can read
it too. The build renders it with sphinxcontrib-bibtex (``_config.yml``: ``bibtex_bibfiles``); this module is what the
tests and the chapters use to check it: every cited key defined, every entry cited, every entry findable.
"""

from __future__ import annotations

import importlib.resources
import pathlib
import re
from dataclasses import dataclass

BIB_PATH = pathlib.Path(str(importlib.resources.files("lmbook") / "references.bib"))
"""The one bibliography file of the book."""

CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
"""A MyST citation role, ``{cite:p}`key1,key2` `` (any of sphinxcontrib-bibtex's ``cite`` roles)."""


@dataclass(frozen=True)
class Reference:
    """One bibliography entry: its key, type (``article``, ``inproceedings``, ``book``, ``misc`` ...), fields."""

    key: str
    kind: str
    fields: dict[str, str]
    authors: tuple[str, ...]

    @property
    def year(self) -> int:
        return int(self.fields["year"])

    @property
    def title(self) -> str:
        return self.fields.get("title", "").replace("{", "").replace("}", "")

    @property
    def link(self) -> str | None:
        """Where the work can be found: its DOI, else its arXiv page, else its stable URL (None if it has none)."""
        if "doi" in self.fields:
            return f"https://doi.org/{self.fields['doi']}"
        if self.fields.get("archiveprefix", "").lower() == "arxiv" and "eprint" in self.fields:
            return f"https://arxiv.org/abs/{self.fields['eprint']}"
        return self.fields.get("url")


def load(path: str | pathlib.Path | None = None) -> dict[str, Reference]:
    """Parse the bibliography (``path``, default :data:`BIB_PATH`) into ``{key: Reference}``.

    Raises ValueError naming the key when an entry is defined twice (pybtex only warns).
    """
    from pybtex.database import parse_string

    text = pathlib.Path(path or BIB_PATH).read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", text, flags=re.MULTILINE)
    seen: set[str] = set()
    for key in keys:
        if key.lower() in seen:
            raise ValueError(f"bibliography entry {key!r} is defined twice in {path or BIB_PATH}")
        seen.add(key.lower())
    data = parse_string(text, "bibtex")
    out = {}
    for key, entry in data.entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        authors = tuple(" ".join(p.prelast_names + p.last_names) for p in people)
        fields = {name.lower(): str(value) for name, value in entry.fields.items()}
        out[key] = Reference(key=key, kind=entry.type.lower(), fields=fields, authors=authors)
    return out


def cited_keys(text: str) -> list[str]:
    """Every key cited in ``text`` by a ``{cite...}`` role, in order, with repeats."""
    return [key.strip() for match in CITE_ROLE.finditer(text) for key in match.group(1).split(",") if key.strip()]
