"""Text for language models: a character tokenizer, the book's own corpus, and batches of next-token examples.

Introduced in chapter 7, Attention and the Transformer, where a small GPT learns to write. A language model
reads **tokens**, integers from ``0`` to ``V - 1``; the simplest tokenizer gives each distinct character its own
integer (:class:`CharTokenizer`). Real models use sub-word tokenizers with tens of thousands of tokens; the
ideas are the same.

The corpus, :func:`book_corpus`, is this project's own writing: the docstrings and comments of the ``lmbook``
package, gathered from its source files in a fixed order. It needs no download, contains no third-party text,
and is the same wherever the same version of ``lmbook`` is installed (about 150 thousand characters of technical
English; it grows a little as the package grows).

Training examples come from one long array of token ids: a window of ``seq_len`` tokens is the input and the
same window shifted by one is the target, so one window holds ``seq_len`` next-token predictions
(:func:`get_batch`).
"""

from __future__ import annotations

import ast
import functools
import io
import math
import pathlib
import tokenize
from collections import Counter

import torch

from lmbook.testing import check_shape


def token_ids(tokenizer, text: str) -> list[int]:
    """The token ids of ``text`` from any of the book's tokenizers: ``encode`` returns a list of ids
    (:class:`CharTokenizer`) or an object with ``input_ids`` (:class:`lmbook.wordpiece.WordPieceTokenizer`, with
    ``[CLS]`` and ``[SEP]``)."""
    encoded = tokenizer.encode(text)
    return list(getattr(encoded, "input_ids", encoded))


class CharTokenizer:
    """Map each character of a text to an integer and back; the vocabulary is the sorted set of characters.

    Args:
        text: the text to take the characters from (the training corpus).

    Attributes:
        vocab: the characters, in order: ``vocab[i]`` is the character of token ``i``.
        vocab_size: ``len(vocab)``, the ``V`` of the model.

    Example:
        >>> tok = CharTokenizer("hello world")
        >>> tok.encode("hello")
        [3, 2, 4, 4, 5]
        >>> tok.decode([7, 5, 6, 4, 1])
        'world'
    """

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        self.vocab: list[str] = sorted(set(text))
        self._ids = {ch: i for i, ch in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, one per character.

        Raises:
            ValueError: ``text`` has characters that are not in the vocabulary (they are listed).
        """
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self._ids})
            raise ValueError(f"characters not in the vocabulary: {unknown!r}") from None

    def decode(self, ids) -> str:
        """The text of a sequence of token ids (a list, a 1-d tensor or array)."""
        if isinstance(ids, torch.Tensor):
            ids = check_shape(ids, (None,), "ids").tolist()
        return "".join(self.vocab[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _module_text(source: str) -> str:
    """The docstrings and comments of one Python source file, in the order they appear, as paragraphs."""
    pieces: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                line = node.body[0].lineno
                pieces.append((line, doc.strip()))
    comment_lines: list[tuple[int, str, bool]] = []  # (line, text, whether the comment is alone on its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if text and not text.startswith(("noqa", "fmt:", "type:")):
                comment_lines.append((tok.start[0], text, not tok.line[: tok.start[1]].strip()))
    # Consecutive whole-line comments are one thought: join them into one paragraph starting at the first line.
    previous = None
    for line, text, whole_line in comment_lines:
        if whole_line and previous == line - 1:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + " " + text)
        else:
            pieces.append((line, text))
        previous = line if whole_line else None
    return "\n\n".join(text for _, text in sorted(pieces, key=lambda p: p[0]))


@functools.lru_cache(maxsize=1)
def book_corpus() -> str:
    """The book's own text: the docstrings and comments of every ``lmbook`` module, in a fixed order.

    Files are read in the sorted order of their paths inside the package (the exercise tests shipped with it are
    left out); within a file, docstrings and comments appear in source order, separated by blank lines.
    Deterministic for a given version of ``lmbook``, but any edit of a docstring changes it, so results computed
    from it should be checked against thresholds rather than exact values. Its size is ``len(book_corpus())``
    characters (about 150 thousand).
    """
    root = pathlib.Path(__file__).resolve().parent
    parts = []
    # The package's modules only: the tests of the exercise sets (package data) are not prose about the book.
    paths = [p for p in root.rglob("*.py") if "exercise_tests" not in p.relative_to(root).parts]
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        text = _module_text(path.read_text(encoding="utf-8"))
        if text:
            parts.append(text)
    return "\n\n".join(parts) + "\n"


def train_val_split_tokens(tokens, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-d sequence of token ids into its first part (training) and its last part (validation).

    A split in the middle of the text rather than at random positions: random windows would overlap the
    validation text with the training text and make the validation loss look better than it is.

    Returns:
        ``(train, val)``, 1-d ``torch.long`` tensors with ``len(val) = round(val_fraction * len(tokens))``.
    """
    data = torch.as_tensor(tokens, dtype=torch.long)
    check_shape(data, ("N",), "tokens")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = round(val_fraction * len(data))
    return data[: len(data) - n_val], data[len(data) - n_val :]


def get_batch(
    data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``data`` as inputs ``x`` and next-token targets ``y``, each of shape ``(B, T)``.

    ``y[b, t] = x[b, t + 1]`` inside the window, and ``y[b, -1]`` is the token after it: each window holds
    ``T`` predictions, each made from the tokens before it.

    Args:
        data: 1-d tensor of token ids, longer than ``seq_len``. batch_size: ``B``. seq_len: window length ``T``
            (at most the model's ``max_len``).
        generator: a seeded ``torch.Generator`` for reproducible batches. device: where to put the batch.
    """
    check_shape(data, ("N",), "data")
    if len(data) <= seq_len:
        raise ValueError(f"data has {len(data)} tokens; need more than seq_len={seq_len}")
    starts = torch.randint(len(data) - seq_len, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(seq_len)  # (T,)
    x = data[starts[:, None] + offsets[None, :]]  # (B, 1) + (1, T) -> (B, T) indices
    y = data[starts[:, None] + offsets[None, :] + 1]  # the same windows, one token later
    return (x, y) if device is None else (x.to(device), y.to(device))


def unigram_loss(train, val, vocab_size: int) -> float:
    """Validation cross-entropy (nats per token) of the best model that ignores context: character frequencies.

    Each token is predicted with its frequency in ``train`` (add-one smoothed, so an unseen token is not
    infinitely surprising). A language model has learned something from context only when it beats this.
    """
    train = torch.as_tensor(train).tolist()
    val = torch.as_tensor(val).tolist()
    counts = Counter(train)
    total = len(train) + vocab_size
    return -sum(math.log((counts[t] + 1) / total) for t in val) / len(val)
