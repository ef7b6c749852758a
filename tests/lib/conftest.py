"""Shared fixtures of the library tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module, restored afterwards for the other modules.

    The models in these tests are small: a second thread only adds overhead, and on a busy 2-core machine the
    threads' waiting for each other makes them several times slower. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer whose vocabulary is every whole word of the book's sentiment sentences.

    Every word is one token and the embedding table is small, so a tiny random BERT on it trains and exports in
    seconds (the tests of lmbook.finetune, distill, export and compression_pitfalls use it).
    """
    from lmbook.sentiment import SPLITS, load_sentiment
    from lmbook.wordpiece import SPECIAL_TOKENS, WordPieceTokenizer, basic_tokenize

    words = sorted({w for split in SPLITS for text in load_sentiment(split)[0] for w in basic_tokenize(text)})
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n", encoding="utf-8")
    return WordPieceTokenizer(path)
