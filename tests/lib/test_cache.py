"""Tests of lmbook.cache (build once, load after; a changed key builds again; two processes build once; a broken
file is rebuilt) and of lmbook.finetune.sentiment_classifier (a loaded model equals a freshly trained one)."""

import multiprocessing
import pathlib

import pytest
import torch

from lmbook.cache import cache_dir, cache_key, cached, source_digest, trained_once


def test_builds_once_then_loads(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(4.0), "n": 3}

    first, hit1 = cached("thing", {"a": 1}, build, tmp_path)
    second, hit2 = cached("thing", {"a": 1}, build, tmp_path)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert torch.equal(first["w"], second["w"]) and second["n"] == 3
    _, hit3 = cached("thing", {"a": 2}, build, tmp_path)  # another key: built again
    assert hit3 is False and len(calls) == 2


def test_key_depends_on_every_part_and_the_source():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 1.5})
    assert source_digest("cache") != source_digest("seeding")
    assert len(source_digest("datasets/sentiment.tsv")) == 64
    with pytest.raises(FileNotFoundError, match="no_such_module"):
        source_digest("no_such_module")


def test_a_broken_file_is_built_again(tmp_path):
    cached("thing", {}, lambda: [1, 2], tmp_path)
    (path,) = tmp_path.glob("thing-*.pt")
    path.write_bytes(b"not a torch file")
    result, hit = cached("thing", {}, lambda: [1, 2], tmp_path)
    assert (result, hit) == ([1, 2], False)


def test_bad_name_and_the_folder_variable(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="letters, digits"):
        cached("../escape", {}, lambda: 1, tmp_path)
    monkeypatch.setenv("LMBOOK_CACHE", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv("LMBOOK_CACHE")
    assert cache_dir() == pathlib.Path.home() / ".cache" / "lmbook"


def _slow_build_in_process(folder: str, log: str) -> None:
    def build():
        with open(log, "a") as handle:
            handle.write("built\n")
        import time

        time.sleep(0.5)
        return torch.ones(2)

    cached("shared", {"k": 1}, build, folder)


def test_two_processes_build_once(tmp_path):
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_slow_build_in_process, args=(str(tmp_path), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert log.read_text() == "built\n"


def test_sentiment_classifier_loaded_equals_trained(tmp_path):
    from lmbook.finetune import FinetuneConfig, sentiment_classifier

    config = FinetuneConfig.cpu(epochs=1, max_length=16, batch_size=64)
    trained, _, info1 = sentiment_classifier(config, folder=tmp_path)
    loaded, _, info2 = sentiment_classifier(config, folder=tmp_path)
    assert (info1["cached"], info2["cached"]) == (False, True)
    assert info1["val_accuracy"] == info2["val_accuracy"]
    for (name, a), (_, b) in zip(trained.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    fresh, _, info3 = sentiment_classifier(config, use_cache=False)  # trained again: the same weights
    assert info3["cached"] is False
    pairs = zip(trained.state_dict().values(), fresh.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not trained.training


def _linear(seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def test_trained_once_trains_then_loads_the_same_weights(tmp_path):
    runs = []

    def fit(model):
        def train():
            runs.append(1)
            with torch.no_grad():
                model.weight.add_(1.0)  # "training": a change a fresh model does not have
            return {"loss": 0.25, "steps": [1, 2]}

        return train

    trained = _linear(0)
    report, hit = trained_once("lin", {"seed": 0}, trained, fit(trained), tmp_path)
    assert (hit, report, len(runs)) == (False, {"loss": 0.25, "steps": [1, 2]}, 1) and not trained.training
    loaded = _linear(0)
    report2, hit2 = trained_once("lin", {"seed": 0}, loaded, fit(loaded), tmp_path)
    assert hit2 and report2 == report and len(runs) == 1  # not trained again
    assert torch.equal(loaded.weight, trained.weight) and not torch.equal(loaded.weight, _linear(0).weight)
    again = _linear(0)
    _, hit3 = trained_once("lin", {"seed": 0}, again, fit(again), tmp_path, use_cache=False)
    assert hit3 is False and len(runs) == 2  # use_cache=False always trains


def test_trained_once_refuses_a_report_that_would_hide_the_weights(tmp_path):
    model = _linear(0)
    with pytest.raises(ValueError, match="'state'"):
        trained_once("lin", {"seed": 1}, model, lambda: {"state": 1}, tmp_path)
