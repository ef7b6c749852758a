"""Grade a folder of submitted exercise notebooks, without Docker: `make grade SUBMISSIONS=dir`.

    python tools/grade.py SUBMISSIONS [--out DIR] [--jobs N] [--timeout S] [--cell-timeout S] [--tests DIR]

Every ``*.ipynb`` under SUBMISSIONS is executed in a Jupyter kernel of its own (a fresh process, in a scratch
folder of its own) and graded by otter-grader with the *full* tests of its exercise set (public and hidden),
built fresh from the master notebook in exercises/source/. The exercise set is read from the notebook's
metadata (``otter.assignment_name``), or else from its file name. ``--jobs`` grader processes (default: one
per core) take the submissions one after another; each has imported otter once, so a submission costs a
kernel and its own cells, not another start of the grader.

Time limits, from the inside out: every call of a student's function in a test has its own limit (see
``lmbook.grading``); every notebook cell is interrupted after ``--cell-timeout`` seconds (a runaway cell
loses its own work, the next cells still run); a whole submission is killed after ``--timeout`` seconds.

Results go to ``OUT/grades.csv`` (one row per submission, one column per question) and ``OUT/grades.json``
(the same plus every test case's message), and a table is printed. The exit status is 0 when every submission
could be graded (whatever its score) and 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: its sibling scripts are importable as tools.NAME
    sys.path.insert(0, str(ROOT))
DEFAULT_OUT = ROOT / "_build" / "grades"
DEFAULT_JOBS = os.cpu_count() or 1


# ----- one submission, in its own process ----------------------------------------------------------------


def _results_to_dict(results) -> dict[str, Any]:
    questions = {}
    for name in sorted(results.results):
        test_file = results.results[name]
        questions[name] = {
            "score": float(test_file.score),
            "possible": float(test_file.possible),
            "cases": [
                {
                    "name": r.test_case.name,
                    "hidden": bool(r.test_case.hidden),
                    "points": float(r.test_case.points or 0),
                    "passed": bool(r.passed),
                    "message": (r.message or "").strip(),
                }
                for r in test_file.test_case_results
            ],
        }
    error = results.catastrophic_error if results.has_catastrophic_failure() else None
    return {"questions": questions, "error": None if error is None else f"{type(error).__name__}: {error}"}


# Importing nbformat imports jsonschema, which, when the optional package rfc3987-syntax is installed (Jupyter
# pulls it in), compiles a Lark grammar for checking IRIs at import time: about 4 s of CPU in every process, the
# largest single cost of grading a submission. Nothing here validates IRIs, so the grader's process and each
# submission's kernel hide that package (jsonschema then simply skips the "iri" format).
_SLOW_OPTIONAL_MODULE = "rfc3987_syntax"
_HIDE_IN_KERNEL = f"--IPKernelApp.exec_lines=import sys; sys.modules.setdefault({_SLOW_OPTIONAL_MODULE!r}, None)"


_ORIGINAL: dict[str, type] = {}


def grade_one(notebook: pathlib.Path, tests: pathlib.Path, cell_timeout: int) -> dict[str, Any]:
    """Execute ``notebook`` with otter-grader against every test in ``tests``; return the results as a dict.

    Runs in a scratch folder holding a copy of the notebook, so files a submission writes go nowhere.
    """
    sys.modules.setdefault(_SLOW_OPTIONAL_MODULE, None)  # before nbformat is first imported
    import nbconvert.preprocessors
    from otter.execute import grade_notebook

    # The original class: a worker grades many submissions, and each call of grade_one replaces it again.
    base = _ORIGINAL.setdefault("ExecutePreprocessor", nbconvert.preprocessors.ExecutePreprocessor)

    class TimedExecutePreprocessor(base):
        # otter builds its ExecutePreprocessor without a cell time limit; a cell with an endless loop would
        # hold the whole submission. This one interrupts such a cell and lets the remaining cells run.
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.timeout = cell_timeout
            # A kernel that has not answered within nbclient's 60 s is slow to start on a busy machine (a class
            # graded two at a time beside other work), not broken: give it three minutes before giving up.
            self.startup_timeout = max(self.startup_timeout, 180)
            self.extra_arguments = [*self.extra_arguments, _HIDE_IN_KERNEL]
            self.interrupt_on_timeout = True
            self.error_on_timeout = {
                "ename": "CellTimeoutError",
                "evalue": f"this cell ran longer than {cell_timeout} s and was interrupted",
                "traceback": [],
            }

    nbconvert.preprocessors.ExecutePreprocessor = TimedExecutePreprocessor  # what otter's grade_notebook imports
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        work = pathlib.Path(scratch)
        shutil.copy(notebook, work / "submission.ipynb")
        os.chdir(work)  # the kernel starts here; restored before the scratch folder is deleted
        test_files = sorted(str(p) for p in tests.glob("*.py"))
        try:
            results = grade_notebook("submission.ipynb", tests_glob=test_files, test_dir=str(tests), cwd=str(work))
        except Exception as err:  # the submission broke the execution itself; report it, never crash
            if type(err).__name__ == "DeadKernelError":
                reason = (
                    "the kernel died while running the notebook (a cell ended Python, crashed it, or used "
                    "too much memory)"
                )
            else:
                reason = f"{type(err).__name__}: {err}"
            return {"questions": {}, "error": reason}
        finally:
            os.chdir(home)
    return _results_to_dict(results)


def possible_points(tests: pathlib.Path) -> dict[str, float]:
    """Question name -> points possible, read from a folder of otter test files."""
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    points = {}
    for path in sorted(tests.glob("*.py")):
        test_file = create_test_file(str(path), NBMetadataConfig())
        points[test_file.name] = float(test_file.possible)
    return points


# ----- the whole folder -------------------------------------------------------------------------------------


def exercise_set_of(notebook: pathlib.Path, known: list[str]) -> str | None:
    """The exercise set of a submission: its otter metadata, else the longest set name in its file name."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
        name = meta.get("otter", {}).get("assignment_name")
        if name in known:
            return name
    except (OSError, ValueError):
        pass
    matches = [k for k in known if k in notebook.stem]
    return max(matches, key=len) if matches else None


_DONE = "@@lmbook-grade-done@@"  # a worker prints this line when the result of its current job is written


def _worker_loop(cell_timeout: int) -> None:
    """The body of a worker process: grade the submission of each line of stdin, one after another.

    A line is a JSON object ``{"notebook": ..., "tests": ..., "result": ...}``; the result goes to the file
    ``result``, then the worker prints :data:`_DONE`. Importing nbconvert and otter, about a second of CPU,
    happens once per worker instead of once per submission; each submission still runs in a kernel of its own.
    """
    for line in sys.stdin:
        job = json.loads(line)
        result = grade_one(pathlib.Path(job["notebook"]), pathlib.Path(job["tests"]), cell_timeout)
        pathlib.Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
        print(f"\n{_DONE}", flush=True)


class _Worker:
    """A grader process, started on first use, that grades submissions one at a time under a time limit.

    The process runs in a session of its own: when a submission runs past its limit, the whole process group is
    killed (its kernel, which notices that its parent is gone, exits too) and the next submission gets a fresh
    worker. A worker that dies on its own is replaced in the same way.
    """

    def __init__(self, cell_timeout: int) -> None:
        self.cell_timeout = cell_timeout
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> None:
        cmd = [
            sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--worker",
            "--cell-timeout",
            str(self.cell_timeout),
        ]
        env = dict(os.environ)
        # The lmbook of this repository matches the tests built from its sources.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "lib"), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()

        def pump(stream, lines):
            for line in stream:
                lines.put(line)
            lines.put(None)  # end of output: the worker exited

        threading.Thread(target=pump, args=(self.proc.stdout, self.lines), daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def grade(self, notebook: pathlib.Path, tests: pathlib.Path, timeout: int) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        start = time.perf_counter()
        log: list[str] = []
        with tempfile.TemporaryDirectory(prefix="grade-result-") as tmp:
            result_path = pathlib.Path(tmp) / "result.json"
            job = {"notebook": str(notebook), "tests": str(tests), "result": str(result_path)}
            try:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.flush()
            except OSError:
                pass  # the worker died; its end of output below says so
            while True:
                try:
                    line = self.lines.get(timeout=max(0.0, start + timeout - time.perf_counter()))
                except queue.Empty:
                    self.stop()
                    return {
                        "status": "timeout",
                        "error": f"grading took longer than {timeout} s and was stopped",
                        "questions": {},
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                if line is None or line.strip() == _DONE:
                    break
                log.append(line)
            seconds = round(time.perf_counter() - start, 1)
            if line is None or not result_path.exists():
                status = self.proc.wait()
                self.proc = None
                return {
                    "status": "error",
                    "error": f"the grader failed (exit status {status}):\n" + "".join(log)[-3000:],
                    "questions": {},
                    "seconds": seconds,
                }
            result = json.loads(result_path.read_text(encoding="utf-8"))
        result["status"] = "error" if result.get("error") else "ok"
        result["seconds"] = seconds
        return result


def grade_folder(
    submissions: pathlib.Path,
    out: pathlib.Path | None = DEFAULT_OUT,
    jobs: int = DEFAULT_JOBS,
    timeout: int = 600,
    cell_timeout: int = 60,
    tests: pathlib.Path | None = None,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Grade every notebook under ``submissions``; write grades.csv and grades.json to ``out`` (unless None).

    Args:
        submissions: a folder of .ipynb files (searched recursively).
        out: where to write the reports; ``None`` writes nothing.
        jobs: submissions graded at the same time.
        timeout: seconds for one whole submission.
        cell_timeout: seconds for one notebook cell.
        tests: a folder of test files to use for every submission instead of building them from the sources.
        quiet: no progress lines.

    Returns:
        One dict per submission: file, exercise_set, status (``ok``, ``timeout``, ``error``), error, score,
        possible, questions (per question: score, possible and the result of every test case).
    """
    from tools import exercises

    known = exercises.exercise_sets()
    notebooks = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        raise SystemExit(f"no .ipynb files under {submissions}")
    with tempfile.TemporaryDirectory(prefix="autograders-") as scratch:
        tests_for: dict[str, pathlib.Path] = {}
        plan = []
        for nb in notebooks:
            name = exercise_set_of(nb, known)
            if tests is not None:
                tests_for.setdefault(name or "?", tests)
            elif name is not None and name not in tests_for:
                gen = exercises.build(name)
                tests_for[name] = exercises.write_dist(gen, pathlib.Path(scratch)) / "tests"
            plan.append((nb, name))

        def work(item):
            nb, name = item
            rel = str(nb.relative_to(submissions))
            folder = tests_for.get(name or "?")
            if folder is None:
                result = {
                    "status": "error",
                    "questions": {},
                    "error": f"unknown exercise set; expected one of {', '.join(known)}",
                }
            else:
                if not hasattr(local, "worker"):
                    local.worker = _Worker(cell_timeout)
                    workers.append(local.worker)
                result = local.worker.grade(nb, folder, timeout)
                if not result["questions"]:  # nothing was graded: every question scores 0 of its points
                    result["questions"] = {
                        q: {"score": 0.0, "possible": p, "cases": []} for q, p in possible_points(folder).items()
                    }
            result["file"], result["exercise_set"] = rel, name
            result["score"] = sum(q["score"] for q in result["questions"].values())
            result["possible"] = sum(q["possible"] for q in result["questions"].values())
            if not quiet:
                print(
                    f"graded {rel}: {result['score']:g}/{result['possible']:g} ({result['status']})",
                    flush=True,
                )
            return result

        local, workers = threading.local(), []  # one worker process per thread of the pool
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                results = list(pool.map(work, plan))
        finally:
            for worker in workers:
                worker.stop()
    if out is not None:
        write_reports(results, out)
    return results


def _question_names(results: list[dict[str, Any]]) -> list[str]:
    names = {q for r in results for q in r["questions"]}
    return sorted(names, key=lambda q: (len(q), q))


def write_reports(results: list[dict[str, Any]], out: pathlib.Path) -> None:
    """grades.csv (scores only) and grades.json (everything, including each test case's message)."""
    out.mkdir(parents=True, exist_ok=True)
    questions = _question_names(results)
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "exercise_set", *questions, "total", "possible", "status"])
        for r in results:
            scores = [f"{r['questions'][q]['score']:g}" if q in r["questions"] else "" for q in questions]
            writer.writerow(
                [
                    r["file"],
                    r["exercise_set"] or "",
                    *scores,
                    f"{r['score']:g}",
                    f"{r['possible']:g}",
                    r["status"],
                ]
            )
    (out / "grades.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def table(results: list[dict[str, Any]]) -> str:
    """The scores as a plain-text table, one row per submission."""
    questions = _question_names(results)
    header = ["submission", *questions, "total", "status"]
    rows = [header]
    for r in results:
        cells = [r["file"]]
        for q in questions:
            info = r["questions"].get(q)
            cells.append(f"{info['score']:g}/{info['possible']:g}" if info else "-")
        cells += [f"{r['score']:g}/{r['possible']:g}", r["status"]]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", nargs="?", type=pathlib.Path, help="folder of submitted notebooks")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, help=f"submissions in parallel (default {DEFAULT_JOBS}, one per core)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one whole submission")
    parser.add_argument("--cell-timeout", type=int, default=60, help="seconds for one notebook cell")
    parser.add_argument("--tests", type=pathlib.Path, help="use these test files instead of building them")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a grader process started by _Worker
        _worker_loop(args.cell_timeout)
        return 0
    if args.submissions is None or not args.submissions.is_dir():
        parser.error("give the folder of submissions, e.g. make grade SUBMISSIONS=path/to/folder")
    results = grade_folder(
        args.submissions.resolve(),
        args.out,
        args.jobs,
        args.timeout,
        args.cell_timeout,
        args.tests.resolve() if args.tests else None,
    )
    print()
    print(table(results))
    print(f"\nwrote {args.out / 'grades.csv'} and {args.out / 'grades.json'}")
    failed = [r for r in results if r["status"] != "ok"]
    for r in failed:
        print(f"could not grade {r['file']} completely: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
