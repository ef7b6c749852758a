"""Tests of lmbook.sentiment: the book's sentiment sentences (sizes, balance, fixed disjoint splits, no duplicates or
near-duplicates, licence, package data) and the SST-2 loader's fall-back, with the network always simulated."""

import hashlib
import itertools
import re
import socket
import sys
import time
import types
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import lmbook.hub
import lmbook.sentiment as sentiment
from lmbook.sentiment import LABELS, SPLITS, SentimentData, load_sentiment, load_sst2

ROOT = Path(__file__).resolve().parents[2]
# Fingerprint of every (split, label, text) row: the splits are fixed, so changing the data must be deliberate
# (update this value in the same change, and say why in its message).
ROWS_SHA256 = "a95ad23500cbde7c9d94f407f42b0d03b97cef8ec37a87fa461cd136f8f9379d"


def all_rows():
    return [(split, text, int(label)) for split in SPLITS for text, label in zip(*load_sentiment(split), strict=True)]


def words(text):
    return set(re.findall(r"[a-z']+", text.lower()))


def test_sizes_and_balance():
    sizes = {}
    for split in SPLITS:
        texts, labels = load_sentiment(split)
        assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
        assert labels.dtype == np.int64 and labels.shape == (len(texts),)
        assert set(labels.tolist()) == {0, 1}
        assert labels.sum() * 2 == len(labels), f"{split} is not exactly half positive"
        sizes[split] = len(texts)
    assert sizes == {"train": 300, "val": 100, "test": 100}
    assert sum(sizes.values()) >= 440


def test_splits_are_disjoint_and_texts_unique():
    rows = all_rows()
    texts = [text for _, text, _ in rows]
    assert len(set(texts)) == len(texts)
    # Unique also after ignoring case, spaces and punctuation.
    normalised = [" ".join(re.findall(r"[a-z0-9']+", t.lower())) for t in texts]
    assert len(set(normalised)) == len(normalised)
    by_split = {split: {t for s, t, _ in rows if s == split} for split in SPLITS}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not by_split[a] & by_split[b]


def test_no_near_duplicates():
    texts = [text for _, text, _ in all_rows()]
    sets = [words(t) for t in texts]
    close = [
        (texts[i], texts[j])
        for i, j in itertools.combinations(range(len(texts)), 2)
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.5
    ]
    assert not close, f"sentences sharing half or more of their words: {close[:3]}"


def test_splits_are_fixed():
    first = all_rows()
    assert all_rows() == first
    digest = hashlib.sha256("\n".join(f"{s}\t{y}\t{t}" for s, t, y in first).encode()).hexdigest()
    assert digest == ROWS_SHA256, "the sentiment data or its split changed"


def test_returns_fresh_copies():
    texts, labels = load_sentiment("val")
    texts.append("extra")
    labels[0] = 7
    again_texts, again_labels = load_sentiment("val")
    assert len(again_texts) == 100 and again_labels.max() == 1


def test_variety_negation_and_contrast():
    rows = all_rows()
    lengths = [len(t.split()) for _, t, _ in rows]
    assert min(lengths) <= 2 and max(lengths) >= 15 and 6 <= np.mean(lengths) <= 14
    negation = re.compile(r"\b(not|never|no|nothing|n't)\b|n't\b", re.IGNORECASE)
    contrast = re.compile(r"\b(but|yet|though|although)\b", re.IGNORECASE)
    for label in (0, 1):
        texts = [t for _, t, y in rows if y == label]
        assert sum(bool(negation.search(t)) for t in texts) >= 15, f"too few negations in class {LABELS[label]}"
        assert sum(bool(contrast.search(t)) for t in texts) >= 15, f"too few contrasts in class {LABELS[label]}"
    for text in ("Not bad at all for the price.", "The opening hour drags, but the ending is superb."):
        assert (text, 1) in {(t, y) for _, t, y in rows}
    for _, text, _ in rows:
        assert text == text.strip() and "\t" not in text and text[-1] in ".!?"


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_sentiment("validation")


def test_licence_and_package_data():
    header = resources.files("lmbook").joinpath("datasets", "sentiment.tsv").read_text(encoding="utf-8")
    header_lines = [line for line in header.splitlines() if line.startswith("#")]
    assert any("CC0-1.0" in line for line in header_lines)
    assert any("written for the book" in line for line in header_lines)
    assert "CC0-1.0" in sentiment.__doc__ and "chapter 8" in sentiment.__doc__
    package_data = re.search(r"^lmbook = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert package_data and '"datasets/*.tsv"' in package_data.group(1), "the data file must ship with the package"


# ----- the SST-2 loader, never touching the network -------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test; the hub-offline variables are unset."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def fake_datasets(monkeypatch, load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


def assert_book_fallback(data, out, reason):
    assert isinstance(data, SentimentData) and data.source == "lmbook"
    assert data.train[0] == load_sentiment("train")[0] and len(data.val[0]) == len(data.test[0]) == 100
    assert "SST-2 is not available" in out and reason in out and "book's own sentiment sentences" in out


def test_sst2_falls_back_when_datasets_is_missing(monkeypatch, capsys, no_network):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    start = time.perf_counter()
    data = load_sst2(timeout=10.0)
    assert time.perf_counter() - start < 2.0
    assert_book_fallback(data, capsys.readouterr().out, "`datasets` package is not installed")


def test_sst2_falls_back_within_the_timeout_when_the_hub_hangs(monkeypatch, capsys, no_network):
    def never_called(*args, **kwargs):
        raise AssertionError("load_dataset must not be called without a network")

    fake_datasets(monkeypatch, never_called)

    def hang(*args, **kwargs):  # a connection attempt that never answers in time (e.g. a stuck DNS look-up)
        time.sleep(3.0)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    data = load_sst2(timeout=0.3)
    assert time.perf_counter() - start < 1.5
    assert_book_fallback(data, capsys.readouterr().out, "did not answer within 0.3 s")


def test_sst2_falls_back_when_loading_fails(monkeypatch, capsys, no_network):
    def broken(name):
        raise ConnectionError("couldn't reach the hub")

    fake_datasets(monkeypatch, broken)
    monkeypatch.setattr(lmbook.hub, "reachable", lambda host, timeout: True)
    data = load_sst2()
    assert_book_fallback(data, capsys.readouterr().out, "ConnectionError: couldn't reach the hub")
    # Offline mode skips the probe and tries the local cache only.
    monkeypatch.setattr(lmbook.hub, "reachable", lambda host, timeout: pytest.fail("probed in offline mode"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert load_sst2().source == "lmbook"


def test_sst2_success_path_with_a_fake_hub(monkeypatch, no_network):
    rng = np.random.default_rng(0)
    fake = {
        "train": {"sentence": [f"phrase {i}" for i in range(50)], "label": rng.integers(0, 2, 50).tolist()},
        "validation": {"sentence": [f"sentence {i}" for i in range(8)], "label": [0, 1] * 4},
    }
    calls = []

    def load_dataset(name):
        calls.append(name)
        return fake

    fake_datasets(monkeypatch, load_dataset)
    monkeypatch.setattr(lmbook.hub, "reachable", lambda host, timeout: True)
    data = load_sst2(val_size=10, max_train=30, seed=1)
    assert calls == [sentiment.SST2_NAME] and data.source == "sst2"
    assert len(data.train[0]) == 30 and len(data.val[0]) == 10
    assert data.test[0] == fake["validation"]["sentence"] and data.test[1].dtype == np.int64
    assert not set(data.train[0]) & set(data.val[0])
    lookup = dict(zip(fake["train"]["sentence"], fake["train"]["label"], strict=True))
    for texts, labels in (data.train, data.val):
        assert [lookup[t] for t in texts] == labels.tolist()
    assert repr(data) == "SentimentData(source='sst2', train=30, val=10, test=8)"
