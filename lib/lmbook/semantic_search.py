"""Semantic search: find the passages whose meaning is nearest a query, by the cosine of sentence vectors.

Introduced in chapter 11, Applications, challenges and the road ahead (section 1), where the book searches its own
glossary with the MiniLM sentence vectors of chapter 8 (:func:`lmbook.finetune.embed`, all-MiniLM-L6-v2, trained
for exactly this use by Reimers and Gurevych's Sentence-BERT recipe).

Each passage and each query becomes one vector; the score of a passage for a query is the cosine of the angle
between them, ``cos(q, k) = q . k / (||q|| ||k||)``, from -1 to 1, so long and short texts compete on direction
alone. :func:`cosine_top_k` computes all the cosines of ``Q`` queries against ``N`` passages as one matrix product
of the normalised vectors and keeps the ``k`` best of each row. :func:`glossary_entries` reads the book's glossary
(a Markdown table) or, where the file is absent (a notebook opened on Colab), a small copy of some of its entries
shipped here; :func:`entry_text` is what gets embedded; :func:`top_k_accuracy` scores a ranking against the
expected answers.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass
from importlib import resources

import torch

from lmbook.testing import check_shape


@dataclass(frozen=True)
class GlossaryEntry:
    """One row of the glossary: ``term`` (English), ``chinese``, ``chapter`` that introduces it, ``meaning``."""

    term: str
    chinese: str
    chapter: str
    meaning: str


SAMPLE_FILE = "datasets/glossary_sample.tsv"  # some of the glossary's entries, for when its file is not there


def _sample_entries() -> list[GlossaryEntry]:
    text = resources.files("lmbook").joinpath(*SAMPLE_FILE.split("/")).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return [GlossaryEntry(term, "", chapter, meaning) for term, chapter, meaning in rows[1:]]  # rows[0]: header


def glossary_entries(path=None) -> list[GlossaryEntry]:
    """The entries of the book's glossary, a Markdown table ``| Term | 中文 | Chapter | Meaning |``.

    Args:
        path: the glossary file (``chapters/appendix/glossary.md`` in the book's repository). When it is None or
            does not exist, a message says so and the sample of the glossary that lmbook ships is used
            (``lmbook/datasets/glossary_sample.tsv``, its entries without ``chinese``).

    Returns:
        The entries in the file's order. Rows that are not table rows, the header and its ``|---|`` rule are
        skipped; a ``|`` inside the meaning (as in ``$|w|$``) is kept, since only the first three are split on.
    """
    if path is None or not pathlib.Path(path).is_file():
        reason = "no path given" if path is None else f"{path} not found"
        sample = _sample_entries()
        print(f"glossary_entries: {reason}; using the {len(sample)} entries that lmbook ships ({SAMPLE_FILE})")
        return sample
    entries = []
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|", 3)]
        if len(cells) == 4 and cells[0] != "Term":
            entries.append(GlossaryEntry(*cells))
    if not entries:
        raise ValueError(f"{path} holds no glossary table rows of the form | Term | 中文 | Chapter | Meaning |")
    return entries


_CITATION = re.compile(r"\s*\{cite:[a-z]+\}`[^`]*`")  # a MyST citation such as {cite:p}`devlin2019bert`
_ROLE = re.compile(r"\{[a-z:]+\}`([^`<]*)(?:<[^`]*>)?`")  # any other MyST role: keep its text


def entry_text(entry: GlossaryEntry) -> str:
    """The text embedded for an entry: ``"term: meaning"``, without the Markdown marks: citations (MyST ``cite``
    roles, as in the comment above) are dropped, other roles keep their text, and ``$`` and backticks are removed."""
    meaning = _ROLE.sub(lambda m: m.group(1).strip(), _CITATION.sub("", entry.meaning))
    meaning = meaning.replace("$", "").replace("`", "")
    return f"{entry.term}: {meaning}"


def cosine_top_k(queries, keys, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` keys of largest cosine similarity to each query, best first.

    Args:
        queries: ``(Q, C)`` vectors (tensor or array). keys: ``(N, C)`` vectors of the same width ``C``, none
            of them zero (a zero vector has no direction). k: how many to keep, ``1 <= k <= N``.

    Returns:
        ``(scores, indices)``, both ``(Q, k)``: ``scores[i, j]`` is the cosine of query ``i`` and key
        ``indices[i, j]``, decreasing along each row; among equal scores the lower key index comes first.
        Differentiable in the scores.
    """
    queries, keys = torch.as_tensor(queries), torch.as_tensor(keys)
    dims: dict[str, int] = {}
    check_shape(queries, ("Q", "C"), "queries", dims)
    check_shape(keys, ("N", "C"), "keys", dims)
    if not 1 <= k <= dims["N"]:
        raise ValueError(f"k must be between 1 and the number of keys N={dims['N']}, got {k}")
    for name, x in (("queries", queries), ("keys", keys)):
        zero = (x.norm(dim=1) == 0).nonzero().flatten()
        if len(zero):
            raise ValueError(f"{name} row {int(zero[0])} is the zero vector, which has no cosine with anything")
    q = queries / queries.norm(dim=1, keepdim=True)  # (Q, C), unit length
    key = keys.to(q.dtype) / keys.norm(dim=1, keepdim=True)  # (N, C)
    scores = q @ key.T  # (Q, N): all the cosines at once
    indices = torch.argsort(scores.detach(), dim=1, descending=True, stable=True)[:, :k]  # (Q, k)
    return scores.gather(1, indices), indices


def top_k_accuracy(indices, expected: list[set[int]], k: int) -> float:
    """The share of queries with an expected answer among the first ``k`` of their ranking.

    Args:
        indices: ``(Q, K)`` ranked key indices (as :func:`cosine_top_k` returns), ``K >= k``.
        expected: for each query, the set of key indices that count as right (several synonyms may).
        k: how many ranks to look at.
    """
    indices = torch.as_tensor(indices)
    check_shape(indices, (len(expected), None), "indices (Q, K) with Q = len(expected)")
    if not 1 <= k <= indices.shape[1]:
        raise ValueError(f"k must be between 1 and the ranking's length {indices.shape[1]}, got {k}")
    hits = [bool(set(row[:k].tolist()) & want) for row, want in zip(indices, expected, strict=True)]
    return sum(hits) / len(hits)
