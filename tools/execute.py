"""Execute the book's notebooks side by side into Jupyter Book's execution cache; the build then only renders them.

Jupyter Book 1.x executes notebooks one after another. The chapters' notebooks run on one torch thread each
(``lmbook.setup``), so on a machine with several cores they can run side by side. This script fills the very cache
the build reads (jupyter-cache in ``_build/.jupyter_cache``) with the very call myst-nb makes
(``jupyter_cache.executors.utils.single_nb_execution``, in the notebook's folder, with the book's timeout), so the
pages show exactly what the build would have computed itself. A notebook whose code is already in the cache is not
run again; one that raises stops the script with its traceback, as it would stop the build.

    python tools/execute.py [--jobs N] [notebook ...]

Notebooks are started longest first (times from the last run, else from benchmarks/results.json), which keeps the
slowest one from starting last. Each kernel gets its share of the cores (OMP_NUM_THREADS and the BLAS thread
variables set to cores // jobs): two kernels that each spin up a thread per core on a 2-core machine run several
times slower than one thread each (a chapter 3 notebook that trains with torch took 26 s instead of 5).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import multiprocessing
import os
import pathlib
import sys
import time

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
TIMES = ROOT / "_build" / ".notebook-times.json"
BENCHMARKS = ROOT / "benchmarks" / "results.json"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# lmbook.widgets.recorded.RECORD_VARIABLE (not imported: lmbook would load torch into this process for one name).
RECORD_VARIABLE = "LMBOOK_RECORD_WIDGETS"


def book_notebooks() -> list[pathlib.Path]:
    """The notebooks the build executes: every .ipynb in _toc.yml, less _config.yml's execute.exclude_patterns."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    excluded = config.get("execute", {}).get("exclude_patterns", [])
    files: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))
    paths = [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]
    return [p for p in paths if not any(fnmatch.fnmatch(p.relative_to(ROOT).as_posix(), pat) for pat in excluded)]


def book_timeout() -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return int(config.get("execute", {}).get("timeout", 300))


def known_times() -> dict[str, float]:
    """Seconds per notebook from the last run of this script, else from the benchmark results (for ordering only)."""
    if TIMES.exists():
        return json.loads(TIMES.read_text(encoding="utf-8"))
    try:
        rows = json.loads(BENCHMARKS.read_text(encoding="utf-8"))["sections"]["notebooks"]["rows"]
        return {row["notebook"]: row["total_s"] for row in rows}
    except (OSError, KeyError, ValueError):
        return {}


def _execute(path: str, timeout: int) -> tuple[str, float, str | None]:
    """Run one notebook in a fresh kernel, in its own folder (a worker process). Returns (notebook JSON, s, error)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(pathlib.Path(path).parent), timeout=timeout, allow_errors=False)
    return nbformat.writes(result.nb), result.time, result.exc_string


# Artefacts that several notebooks load from lmbook's on-disk cache (lmbook.cache), built once before those notebooks
# run: the call a notebook makes -> the code that builds (or loads) it. Without this, the first two notebooks that
# need one, started side by side, would both wait for it (the second on the cache's lock).
SHARED_ARTEFACTS = {
    "sentiment_classifier(": "from lmbook.finetune import sentiment_classifier; sentiment_classifier()",
    "trained_digits_cnn(": "from lmbook.cnn import trained_digits_cnn; trained_digits_cnn()",
    "trained_tiny_gpt(": "from lmbook.gpt import trained_tiny_gpt; trained_tiny_gpt()",
}


def prepare(todo: list[pathlib.Path], jobs: int = 1) -> None:
    """Build (or load) the shared artefacts the notebooks in ``todo`` use, ``jobs`` at a time, each in a fresh
    process with its share of the cores, timed."""
    import subprocess

    sources = [p.read_text(encoding="utf-8") for p in todo]
    wanted = [(call, code) for call, code in SHARED_ARTEFACTS.items() if any(call in s for s in sources)]
    env = {**os.environ, **{name: str(max(1, (os.cpu_count() or 1) // max(1, jobs))) for name in THREAD_VARIABLES}}
    running: list[tuple[str, subprocess.Popen, float]] = []

    def finish(entry) -> None:
        call, process, begin = entry
        if process.wait() != 0:
            raise SystemExit(f"execute: preparing {call[:-1]} failed (exit {process.returncode})")
        print(f"execute: {time.perf_counter() - begin:6.1f} s  prepared {call[:-1]} (lmbook.cache)", flush=True)

    for call, code in wanted:
        if len(running) >= max(1, jobs):
            finish(running.pop(0))
        running.append((call, subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env), time.perf_counter()))
    for entry in running:
        finish(entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path, help="default: every notebook the book executes")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="notebooks run at once (default: cores)")
    args = parser.parse_args(argv)

    cache = get_cache(str(CACHE))
    todo = []
    for path in [p.resolve() for p in args.notebooks] or book_notebooks():
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            todo.append(path)
    times = known_times()
    todo.sort(key=lambda p: -times.get(p.relative_to(ROOT).as_posix(), 0.0))
    print(f"execute: {len(todo)} notebook(s) to run, {args.jobs} at a time; the others are in the cache", flush=True)
    if not todo:
        return 0

    start, failed = time.perf_counter(), []
    share = str(max(1, (os.cpu_count() or 1) // args.jobs))
    for name in THREAD_VARIABLES:  # inherited by the worker processes and the kernels they start
        os.environ.setdefault(name, share)
    prepare(todo, args.jobs)
    # The pages are the book: each widget is displayed as its recording (lmbook.widgets.recorded), whose main
    # controls keep working in the static HTML.
    os.environ[RECORD_VARIABLE] = "1"
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {pool.submit(_execute, str(p), book_timeout()): p for p in todo}
        for future in concurrent.futures.as_completed(futures):
            path = futures[future]
            name = path.relative_to(ROOT).as_posix()
            text, seconds, error = future.result()
            times[name] = seconds
            if error:
                failed.append(name)
                print(f"execute: FAILED {name} after {seconds:.1f} s\n{error}", file=sys.stderr)
                continue
            bundle = CacheBundleIn(nbformat.reads(text, as_version=4), str(path), data={"execution_seconds": seconds})
            cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            print(f"execute: {seconds:6.1f} s  {name}", flush=True)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"execute: {len(todo) - len(failed)} notebook(s) in {time.perf_counter() - start:.1f} s wall time")
    if failed:
        print("execute: these notebooks raised (the build stops on them too): " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
