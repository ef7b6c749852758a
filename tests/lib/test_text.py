"""Tests of lmbook.text: the tokenizer, the book's own corpus, splits and batches, and the unigram baseline."""

import math
import pathlib
import re

import pytest
import torch

import lmbook
from lmbook.text import CharTokenizer, book_corpus, get_batch, train_val_split_tokens, unigram_loss


def test_tokenizer_round_trip_on_the_corpus():
    text = book_corpus()
    tok = CharTokenizer(text)
    assert tok.vocab == sorted(set(text)) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text) and min(ids) == 0 and max(ids) == tok.vocab_size - 1
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids[:50])) == text[:50]


def test_tokenizer_small_example_and_unknown_characters():
    tok = CharTokenizer("abca")
    assert tok.vocab == ["a", "b", "c"] and tok.encode("cab") == [2, 0, 1]
    with pytest.raises(ValueError, match=r"\['x', 'z'\]"):
        tok.encode("axzb")
    with pytest.raises(ValueError):
        CharTokenizer("")
    assert repr(tok) == "CharTokenizer(vocab_size=3)"


def test_corpus_is_deterministic_and_substantial():
    text = book_corpus()
    book_corpus.cache_clear()
    assert book_corpus() == text
    assert len(text) > 50_000
    assert "Attention" in text and "chapter 7" in text


def normalise(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("#", " ")).strip()


def test_corpus_is_only_the_projects_own_text():
    """Every paragraph of the corpus occurs in lmbook's own source files (up to spacing and comment marks)."""
    root = pathlib.Path(lmbook.__file__).parent
    modules = [p for p in sorted(root.rglob("*.py")) if "exercise_tests" not in p.parts]
    sources = normalise(" ".join(p.read_text(encoding="utf-8") for p in modules))
    paragraphs = [p for p in book_corpus().split("\n\n") if p.strip()]
    missing = [p[:80] for p in paragraphs if normalise(p) not in sources]
    assert not missing, missing[:5]
    assert len(paragraphs) > 500


def test_train_val_split():
    train, val = train_val_split_tokens(list(range(100)), 0.1)
    assert train.dtype == torch.long and len(train) == 90 and len(val) == 10
    assert torch.equal(torch.cat([train, val]), torch.arange(100))
    with pytest.raises(ValueError):
        train_val_split_tokens(list(range(10)), 1.0)


def test_get_batch_targets_are_the_inputs_shifted_by_one():
    data = torch.arange(1000)
    x, y = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)  # data[i] = i
    x2, _ = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    assert int(y.max()) <= 999
    with pytest.raises(ValueError, match="seq_len"):
        get_batch(torch.arange(16), 2, 16)


def test_unigram_loss():
    assert math.isclose(unigram_loss([0, 1, 2, 3], [0, 1, 2, 3], 4), math.log(4))  # uniform counts
    # counts a: 3, b: 1, add-one over V = 3 tokens: p(a) = 4/7, p(b) = 2/7, p(c) = 1/7
    expected = -(math.log(4 / 7) + math.log(1 / 7)) / 2
    assert math.isclose(unigram_loss([0, 0, 0, 1], [0, 2], 3), expected)


def test_token_ids_from_either_tokenizer():
    from lmbook.hub import offline_model_path
    from lmbook.text import token_ids
    from lmbook.wordpiece import WordPieceTokenizer

    chars = CharTokenizer("hello world")
    assert token_ids(chars, "hello") == chars.encode("hello")
    wordpiece = WordPieceTokenizer(offline_model_path() / "vocab.txt")
    assert token_ids(wordpiece, "hello world") == wordpiece.encode("hello world").input_ids
    assert wordpiece.convert_ids_to_tokens(token_ids(wordpiece, "hi"))[::2] == ["[CLS]", "[SEP]"]
