"""A small sentiment data set written for the book, and an online upgrade to SST-2.

Introduced in chapter 8, BERT: pre-training and fine-tuning, where a pre-trained BERT is fine-tuned to tell
positive opinions from negative ones.

**The book's sentences** (``lmbook/datasets/sentiment.tsv``): 500 short English opinions, 250 positive and 250
negative, about films, books, food, products, places, services, apps, the weather and more. They were written for
this book (none is copied from a corpus or a website) and are released under **CC0-1.0** (public domain
dedication, https://creativecommons.org/publicdomain/zero/1.0/), as the file's header says. They range from one
word to about twenty, from mild ("A decent meal at a reasonable price.") to strong ("Dreadful."), and include
the cases that defeat counting good and bad words: negation ("Not bad at all for the price.") and contrast
("The opening hour drags, but the ending is superb."). No two sentences share half or more of their words.

The split is stored in the file, so it never changes: a stratified 60/20/20 split into ``train`` (300
sentences), ``val`` (100) and ``test`` (100), each exactly half positive. Labels follow SST-2: 1 = positive,
0 = negative (:data:`LABELS`).

**The online upgrade** :func:`load_sst2` fetches SST-2 (the Stanford Sentiment Treebank's binary task, 67k
labelled training phrases from film reviews) through the ``datasets`` package when it is installed and the
Hugging Face hub answers; otherwise it says why and returns the book's sentences within seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from lmbook.hub import DEFAULT_TIMEOUT, hub_unavailable, offline_mode
from lmbook.testing import check_choice

SPLITS = ("train", "val", "test")
LABELS = ("negative", "positive")  # LABELS[label]: 0 = negative, 1 = positive, as in SST-2
SST2_NAME = "stanfordnlp/sst2"  # on the Hugging Face hub: columns idx, sentence, label; the test labels are hidden
_DATA_FILE = ("datasets", "sentiment.tsv")
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, int, str], ...]:
    """Every ``(split, label, text)`` row of the data file, in file order."""
    path = resources.files("lmbook").joinpath(*_DATA_FILE)
    rows = []
    header_seen = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not header_seen:
            if fields != ["split", "label", "text"]:
                raise ValueError(f"{path}: expected the header 'split<TAB>label<TAB>text', got {line!r}")
            header_seen = True
            continue
        if len(fields) != 3 or fields[0] not in SPLITS or fields[1] not in ("0", "1") or not fields[2]:
            raise ValueError(f"{path}, line {number}: expected split, label 0/1 and a text, got {line!r}")
        rows.append((fields[0], int(fields[1]), fields[2]))
    return tuple(rows)


def load_sentiment(split: str = "train") -> tuple[list[str], np.ndarray]:
    """One split of the book's sentiment sentences.

    Args:
        split: ``"train"`` (300 sentences), ``"val"`` (100) or ``"test"`` (100); each is half positive.

    Returns:
        texts: list of ``N`` strings. labels: int64 array of shape ``(N,)``, 1 = positive, 0 = negative.
        The order is fixed (the file's), with the two classes mixed; a new list and array on every call.
    """
    check_choice(split, SPLITS, "split")
    rows = [row for row in _rows() if row[0] == split]
    return [text for _, _, text in rows], np.array([label for _, label, _ in rows], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SentimentData:
    """A sentiment data set in three splits, as :func:`load_sst2` returns it.

    Attributes:
        train, val, test: ``(texts, labels)`` pairs as :func:`load_sentiment` returns them: a list of ``N``
            strings and an int64 array of shape ``(N,)`` (1 = positive, 0 = negative).
        source: ``"sst2"`` or ``"lmbook"`` (the book's own sentences), so a notebook can say what it trained on.
    """

    train: tuple[list[str], np.ndarray]
    val: tuple[list[str], np.ndarray]
    test: tuple[list[str], np.ndarray]
    source: str

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name)[0])}" for name in SPLITS)
        return f"SentimentData(source={self.source!r}, {sizes})"


def _book_data() -> SentimentData:
    return SentimentData(*(load_sentiment(split) for split in SPLITS), source="lmbook")


def _fallback(reason: str) -> SentimentData:
    data = _book_data()
    print(
        f"SST-2 is not available: {reason}. Using the book's own sentiment sentences instead "
        f"({len(data.train[0])} train / {len(data.val[0])} val / {len(data.test[0])} test)."
    )
    return data


def load_sst2(
    timeout: float = DEFAULT_TIMEOUT, val_size: int = 1000, max_train: int | None = None, seed: int = 0
) -> SentimentData:
    """SST-2 from the Hugging Face hub when possible, else the book's sentences (with a message saying why).

    SST-2's own test labels are hidden, so its labelled validation set (872 sentences) serves as the test split
    here, and ``val_size`` examples drawn at random from its training set serve as the validation split.

    Args:
        timeout: seconds to wait for ``huggingface.co`` to answer before giving up; no call hangs longer (the
            download itself, once the hub has answered, takes as long as it takes: about 7 MB).
        val_size: training examples held out for validation.
        max_train: keep at most this many of the remaining training examples (a random subset), e.g. to fit
            a CPU time budget; None keeps all (about 66k).
        seed: seeds the choice of the validation and the training subset.

    Returns:
        A :class:`SentimentData` whose ``source`` is ``"sst2"``, or ``"lmbook"`` after a fall-back. Falls back
        when the ``datasets`` package is missing (``pip install datasets``), when the hub does not answer within
        ``timeout`` seconds, or when loading fails for any other reason. With ``HF_DATASETS_OFFLINE=1`` (or
        ``HF_HUB_OFFLINE=1``) the network is not tried and a copy in the local cache is used if there is one.
    """
    try:
        import datasets
    except ImportError:
        return _fallback("the `datasets` package is not installed (pip install datasets)")
    if not offline_mode(_OFFLINE_VARIABLES):  # in offline mode, load_dataset looks in the local cache only
        reason = hub_unavailable(timeout, _OFFLINE_VARIABLES)
        if reason is not None:
            return _fallback(reason)
    try:
        dataset = datasets.load_dataset(SST2_NAME)
        train_texts = list(dataset["train"]["sentence"])
        train_labels = np.asarray(dataset["train"]["label"], dtype=np.int64)
        test = (list(dataset["validation"]["sentence"]), np.asarray(dataset["validation"]["label"], dtype=np.int64))
    except Exception as error:  # offline without a cached copy, a changed hub, a broken download, ...
        return _fallback(f"loading {SST2_NAME} failed ({type(error).__name__}: {error})")
    if not 0 < val_size < len(train_texts):
        raise ValueError(f"val_size must be between 1 and {len(train_texts) - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(len(train_texts))
    val_idx, train_idx = order[:val_size], order[val_size:]
    if max_train is not None:
        train_idx = train_idx[:max_train]

    def take(idx: np.ndarray) -> tuple[list[str], np.ndarray]:
        return [train_texts[i] for i in idx], train_labels[idx]

    return SentimentData(train=take(train_idx), val=take(val_idx), test=test, source="sst2")
