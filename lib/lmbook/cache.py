"""A small on-disk cache for results that cost seconds to compute and never change: build once, then load.

Introduced in chapter 10, Small and fast models, where every section starts from the same fine-tuned sentiment
classifier of chapter 8 (:func:`lmbook.finetune.sentiment_classifier`). Fine-tuning it takes about twenty seconds
on two CPU cores; six notebooks that each fine-tuned it again would spend two minutes producing the same weights.

:func:`cached` stores what ``build()`` returns under a **key** that names everything the result depends on (the
configuration, the library's source that computes it, torch's version): change any of them and the key changes,
so a stale result is never loaded. The file is written to a temporary name and renamed, so a reader never sees
half a file, and a lock file makes a second process that asks for the same key wait for the first one's result
instead of computing it twice (the book executes two notebooks at once).

The folder is ``$LMBOOK_CACHE`` if that is set, else ``~/.cache/lmbook``. Deleting it is always safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from importlib import resources

import torch

CACHE_VARIABLE = "LMBOOK_CACHE"


def cache_dir() -> pathlib.Path:
    """The cache folder: ``$LMBOOK_CACHE``, else ``~/.cache/lmbook`` (created when first written)."""
    folder = os.environ.get(CACHE_VARIABLE)
    return pathlib.Path(folder) if folder else pathlib.Path.home() / ".cache" / "lmbook"


def source_digest(*modules: str) -> str:
    """A SHA-256 of the source files of ``lmbook`` modules (e.g. ``"finetune"``, ``"bert"``), for a cache key."""
    digest = hashlib.sha256()
    for name in modules:
        path = resources.files("lmbook").joinpath(*name.split("/"))
        if not name.endswith((".py", ".tsv")):
            path = resources.files("lmbook").joinpath(f"{name}.py")
        if not path.is_file():
            raise FileNotFoundError(f"lmbook has no file {name!r} to put in a cache key (looked for {path})")
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(parts: dict) -> str:
    """A short, stable name for ``parts`` (a JSON-serialisable dict), with torch's version added."""
    text = json.dumps({**parts, "torch": torch.__version__}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, parts: dict, build: Callable[[], object], folder=None) -> tuple[object, bool]:
    """``build()``'s result, loaded from the cache when an earlier call stored it under the same key.

    Args:
        name: what is cached, used in the file name (letters, digits, ``-`` and ``_``).
        parts: everything the result depends on (JSON-serialisable); its :func:`cache_key` names the file.
        build: computes the result when it is not in the cache; it must return something ``torch.save`` can
            store and ``torch.load(weights_only=True)`` can read back (tensors, numbers, strings, lists, dicts).
        folder: the cache folder; None: :func:`cache_dir`.

    Returns:
        ``(result, hit)``: ``hit`` is True when the result came from the cache.
    """
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name must hold only letters, digits, '-' and '_', got {name!r}")
    folder = cache_dir() if folder is None else pathlib.Path(folder)
    path = folder / f"{name}-{cache_key(parts)}.pt"
    with _locked(folder / f"{path.name}.lock"):
        if path.is_file():
            try:
                return torch.load(path, weights_only=True), True
            except Exception:  # a file from an interrupted or older write: compute it again
                path.unlink(missing_ok=True)
        result = build()
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}-", suffix=".tmp", delete=False) as tmp:
            torch.save(result, tmp)
        os.replace(tmp.name, path)
    return result, False


def trained_once(
    name: str, parts: dict, model: torch.nn.Module, train: Callable[[], dict], folder=None, use_cache: bool = True
) -> tuple[dict, bool]:
    """Train ``model`` once per machine: the first call runs ``train()``, later calls load the stored weights.

    ``train()`` trains ``model`` in place and returns what the chapter reports about the run (accuracies, seconds:
    numbers, strings and lists of them). The weights and that report are stored together with :func:`cached` under
    ``name`` and ``parts``; on a later call with the same key the weights are loaded into ``model`` instead. Either
    way ``model`` ends in evaluation mode.

    Args:
        name, parts, folder: as for :func:`cached`. model: the freshly built model that ``train`` trains.
        train: trains ``model``; returns the report (a dict without the key ``"state"``).
        use_cache: False always trains and stores nothing.

    Returns:
        ``(report, cached)``: ``cached`` is True when the weights were loaded.
    """

    def build() -> dict:
        report = train()
        if "state" in report:
            raise ValueError(f"{name}: train() must not return a 'state' entry; the weights are stored under it")
        return {"state": {key: t.detach().clone() for key, t in model.state_dict().items()}, **report}

    result, hit = cached(name, parts, build, folder) if use_cache else (build(), False)
    if hit:
        model.load_state_dict(result["state"])
    model.eval()
    return {key: value for key, value in result.items() if key != "state"}, hit
