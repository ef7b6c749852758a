"""Are the graders right? Tests for every exercise set, discovered from exercises/source/*.ipynb.

For each set, generated from its master notebook:

* the committed student notebook and public tests are fresh, and generating is deterministic;
* the student notebook starts with the set-up cell and a grader that reads the tests shipped in lmbook;
* graded by tools/grade.py (a kernel per submission, with time limits), the solutions score full marks and
  the untouched student notebook scores zero on every question without an error;
* every typical mistake recorded in the master notebook (raw cells starting with ``# IGNORE``, see
  docs/exercises.md) fails its question in a *public* test, so a learner sees it, with a message that
  contains the words the mistake names and comes from a check (not from a crash of the test code);
* for every function a question asks for, the generic failures (it raises, returns None, never returns,
  returns the wrong shape, returns NaN) fail cleanly with a clear message, and a notebook cell that never ends
  or a kernel that dies does not stop the grader.

Nothing here names a chapter: a new master notebook in exercises/source/ is picked up automatically.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
from dataclasses import dataclass, field

import nbformat
import pytest
import yaml

from tools import exercises, grade, setup_cell

ROOT = pathlib.Path(__file__).resolve().parents[1]


SETS = exercises.exercise_sets()
# While working on one set, `LMBOOK_EXERCISE_SETS=compression pytest tests/test_exercises.py` grades only the named
# sets (comma-separated): `-k` alone still builds and grades every set's submissions in the session fixture.
ONLY_SETS = [name for name in os.environ.get("LMBOOK_EXERCISE_SETS", "").split(",") if name]
if ONLY_SETS:
    unknown = sorted(set(ONLY_SETS) - set(SETS))
    if unknown:
        raise ValueError(f"LMBOOK_EXERCISE_SETS names no exercise set {unknown}; the sets are {SETS}")
    SETS = [name for name in SETS if name in ONLY_SETS]
# A cell that never ends and a kernel that dies test tools/grade.py itself, whatever the set: one set is enough, and
# each endless cell costs the grader its whole cell time limit (20 s).
GRADER_SET = SETS[0] if SETS else None

MIN_QUESTIONS = 4  # the chapter standard: at least four auto-graded questions per exercise set
MIN_MISTAKES = 3  # typical wrong implementations per coding question


# ----- reading a master notebook ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    question: str
    what: str
    expect: tuple[str, ...]
    code: str


@dataclass
class Question:
    name: str
    functions: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)


@dataclass
class Master:
    questions: dict[str, Question]
    mistakes: list[Mistake]


def _raw_marker(cell, marker: str) -> bool:
    return cell.cell_type == "raw" and cell.source.lstrip().upper().startswith(marker)


def read_master(name: str) -> Master:
    nb = nbformat.read(exercises.SOURCE_DIR / f"{name}.ipynb", as_version=4)
    questions: dict[str, Question] = {}
    mistakes: list[Mistake] = []
    current, in_solution = None, False
    for cell in nb.cells:
        if _raw_marker(cell, "# BEGIN QUESTION"):
            config = yaml.safe_load(cell.source.split("\n", 1)[1])
            current = questions.setdefault(config["name"], Question(config["name"]))
        elif _raw_marker(cell, "# END QUESTION"):
            current = None
        elif _raw_marker(cell, "# BEGIN SOLUTION"):
            in_solution = True
        elif _raw_marker(cell, "# END SOLUTION"):
            in_solution = False
        elif in_solution and current is not None and cell.cell_type == "code":
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    current.functions.append(node.name)
                elif isinstance(node, ast.Assign):
                    current.variables += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif _raw_marker(cell, "# IGNORE") and "\n---\n" in cell.source:
            header, code = cell.source.split("\n---\n", 1)
            meta = yaml.safe_load(header.split("\n", 1)[1])
            mistakes.append(Mistake(meta["question"], meta["mistake"], tuple(meta["expect"]), code))
    return Master(questions, mistakes)


# ----- building submissions -------------------------------------------------------------------------------


def answer_cell(nb, question: Question):
    """The code cell of a generated notebook that defines the answer to ``question``."""
    wanted = set(question.functions or question.variables)
    for cell in nb.cells:
        if cell.cell_type == "code" and "otter_assign_solution_cell" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            names |= {
                t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
            }
            if wanted & names:
                return cell
    raise LookupError(f"no answer cell for {question.name}")


def _wrap(function: str, body: str) -> str:
    # Replaces the learner's function by a broken one that may call the original (kept under another name).
    return f"\n\n_original_{function} = {function}\n\n\ndef {function}(*args, **kwargs):\n{body}\n"


GENERIC_FAILURES = {
    # name: (code appended after the answer, words the message must contain)
    "raises": (
        lambda f: _wrap(f, "    ones = np.ones((2, 3))\n    return ones @ ones"),
        ("raised ValueError", "of your code"),
    ),
    "returns-none": (lambda f: _wrap(f, f"    _original_{f}(*args, **kwargs)"), ("is None", "return")),
    "never-returns": (lambda f: _wrap(f, "    while True:\n        pass"), ("did not finish within",)),
    "wrong-shape": (
        lambda f: _wrap(f, f"    return _broken(_original_{f}(*args, **kwargs), 'shape')"),
        ("shape",),
    ),
    "nan": (lambda f: _wrap(f, f"    return _broken(_original_{f}(*args, **kwargs), 'nan')"), ("NaN",)),
}

BREAK_HELPER = '''

def _broken(value, how):
    """A result with every array, tensor (or number) given an extra axis, or filled with NaN."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):  # a tensor; torch not imported
        return value[..., None] if how == "shape" else value * float("nan")
    if isinstance(value, np.ndarray) or isinstance(value, float):
        value = np.asarray(value, dtype=float)
        return value[..., None] if how == "shape" else np.full(value.shape, np.nan)
    if isinstance(value, (list, tuple)):
        return type(value)(_broken(v, how) for v in value)
    if isinstance(value, dict):
        return {k: _broken(v, how) for k, v in value.items()}
    return value
'''


def write_submissions(name: str, master: Master, gen, folder: pathlib.Path) -> dict[str, dict]:
    """Write every variant of one exercise set to ``folder``; return variant -> what it should score."""
    plan: dict[str, dict] = {}

    def save(variant: str, nb, expect: dict) -> None:
        nbformat.write(nb, folder / f"{name}__{variant}.ipynb")
        plan[variant] = expect

    def solution():
        return nbformat.reads(gen.solution_notebook, as_version=4)

    save("solution", solution(), {"kind": "full"})
    save("untouched", nbformat.reads(gen.student_notebook, as_version=4), {"kind": "zero"})

    by_question: dict[str, list[Mistake]] = {}
    for m in master.mistakes:
        by_question.setdefault(m.question, []).append(m)
    for k in range(max((len(v) for v in by_question.values()), default=0)):
        nb, broken = solution(), {}
        for q, ms in by_question.items():
            if k < len(ms):
                answer_cell(nb, master.questions[q]).source += "\n\n" + ms[k].code
                broken[q] = ms[k]
        save(f"mistakes-{k}", nb, {"kind": "mistakes", "broken": broken})

    coding = {q: question for q, question in master.questions.items() if question.functions}
    for variant, (make, words) in GENERIC_FAILURES.items():
        nb = solution()
        for question in coding.values():
            cell = answer_cell(nb, question)
            cell.source += BREAK_HELPER + "".join(make(f) for f in question.functions)
        save(variant, nb, {"kind": "generic", "questions": sorted(coding), "words": words})

    if name == GRADER_SET:
        nb = solution()
        nb.cells.insert(3, nbformat.v4.new_code_cell("while True:  # a cell that never ends\n    pass"))
        save("endless-cell", nb, {"kind": "full"})
        nb = solution()
        nb.cells.insert(3, nbformat.v4.new_code_cell("import os\n\nos._exit(1)  # the kernel dies"))
        save("dead-kernel", nb, {"kind": "error"})
    return plan


@pytest.fixture(scope="session")
def generated():
    return {name: exercises.build(name) for name in SETS}


@pytest.fixture(scope="session")
def graded(generated, tmp_path_factory):
    """Every variant of every exercise set, graded once, in one run of tools/grade.py (one job per core)."""
    folder = tmp_path_factory.mktemp("submissions")
    plans = {name: write_submissions(name, read_master(name), generated[name], folder) for name in SETS}
    nbformat.write(nbformat.v4.new_notebook(), folder / "stray.ipynb")  # belongs to no exercise set
    results = grade.grade_folder(
        folder, out=tmp_path_factory.mktemp("grades"), timeout=300, cell_timeout=20, quiet=True
    )
    by_file = {r["file"]: r for r in results}
    graded = {name: {v: (by_file[f"{name}__{v}.ipynb"], plan) for v, plan in plans[name].items()} for name in SETS}
    graded[None] = {"stray": (by_file["stray.ipynb"], {"kind": "error"})}
    return graded


def first_public_failure(question_result: dict) -> str | None:
    for case in question_result["cases"]:
        if not case["passed"] and not case["hidden"]:
            return case["message"]
    return None


def from_a_check(message: str) -> bool:
    # A failure raised by lmbook.grading's checks, not an error in the test code itself.
    return "\nCheckFailed: " in message or "\nTimeLimitExceeded: " in message


# ----- static checks --------------------------------------------------------------------------------------


def test_there_is_an_exercise_set():
    assert SETS, "no master notebooks in exercises/source/"


@pytest.mark.parametrize("name", SETS)
def test_generated_files_are_committed_and_fresh(name, generated):
    assert exercises.stale_files(generated[name]) == [], "run `make exercises` and commit the result"
    assert exercises.orphaned_sets() == []


@pytest.mark.parametrize("name", SETS)
def test_the_freshness_check_can_fail(name, generated):
    gen = generated[name]
    edited = dataclasses.replace(gen, student_notebook=gen.student_notebook + " ")
    assert exercises.stale_files(edited) == [f"stale: exercises/{name}.ipynb"]
    extra = dataclasses.replace(gen, public_tests={**gen.public_tests, "q99.py": "OK_FORMAT = False"})
    assert f"missing: lib/lmbook/exercise_tests/{name}/q99.py" in exercises.stale_files(extra)
    fewer = dataclasses.replace(gen, public_tests=dict(list(gen.public_tests.items())[1:]))
    assert any(p.startswith("orphaned:") for p in exercises.stale_files(fewer))


def test_a_submission_is_matched_to_its_set_by_metadata_or_file_name(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"otter": {"assignment_name": SETS[0]}})
    nbformat.write(nb, tmp_path / "anything.ipynb")
    assert grade.exercise_set_of(tmp_path / "anything.ipynb", SETS) == SETS[0]
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"Copy of {SETS[0]} (2).ipynb")
    assert grade.exercise_set_of(tmp_path / f"Copy of {SETS[0]} (2).ipynb", SETS) == SETS[0]
    assert grade.exercise_set_of(tmp_path / "anything.ipynb", []) is None


@pytest.mark.parametrize("name", SETS)
def test_generation_is_deterministic(name, generated):
    again = exercises.build(name)
    assert again.committed() == generated[name].committed()
    assert again.solution_notebook == generated[name].solution_notebook
    assert again.all_tests == generated[name].all_tests


@pytest.mark.parametrize("name", SETS)
def test_student_notebook_starts_with_setup_and_grader(name, generated):
    nb = nbformat.reads(generated[name].student_notebook, as_version=4)
    first, second = nb.cells[0], nb.cells[1]
    assert first.source == setup_cell.expected_for(exercises.STUDENT_DIR / f"{name}.ipynb").rstrip("\n")
    assert first.metadata.get("tags") == ["setup", "remove-cell"] == setup_cell.TAGS
    assert '"otter-grader>=6"' in first.source
    assert f'otter.Notebook(tests_dir=tests_dir("{name}"))' in second.source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", SETS)
def test_questions_tests_and_mistakes_are_there(name, generated):
    master = read_master(name)
    assert len(master.questions) >= MIN_QUESTIONS
    for q in master.questions:
        public = generated[name].public_tests.get(f"{q}.py", "")
        assert "hidden=False" in public, f"{q} has no public test case"
    assert any("hidden=True" in t for t in generated[name].all_tests.values()), "no hidden test case at all"
    assert not any("hidden=True" in t for t in generated[name].public_tests.values()), "a hidden test leaked"
    for q, question in master.questions.items():
        if question.functions:
            n = sum(m.question == q for m in master.mistakes)
            assert n >= MIN_MISTAKES, f"{q} records {n} typical mistakes; at least {MIN_MISTAKES} are needed"
    assert {m.question for m in master.mistakes} <= set(master.questions)


# Typical mistakes that an issue requires a set's graders to reject, by (set, question, the recorded mistake's
# description). Each one recorded in the master is graded by test_typical_mistake_fails_with_a_helpful_public_message;
# this test keeps it from being dropped from the master unnoticed.
REQUIRED_MISTAKES = {
    "cnn": [  # issue 12
        ("q2", "the kernel flipped: the mathematical convolution instead of cross-correlation"),
        ("q2", "the stride ignored (every window position kept)"),
        ("q2", "the padding added on one side only (top and left)"),
        ("q2", "one bias for the whole batch (bias[0]) instead of one per output channel"),
        ("q2", "the bias picked by the example of the batch instead of the output channel"),
        ("q3", "the stride ignored"),
        ("q4", "the gradient spread evenly over the whole window (average pooling's gradient)"),
    ],
    "rnn": [  # issue 13
        ("q1", "tanh forgotten"),
        ("q1", "W_h applied to the input (W_x and W_h swapped)"),
        ("q4", "the forget gate used as (1 - f)"),
        ("q5", "clipping per element instead of by the global norm"),
        ("q6", "the last padded step taken instead of the last real one"),
    ],
    "scale": [  # issue 14
        ("q1", "2ND instead of 6ND (the forward pass only)"),
        ("q2", "the per-device batch used as the global batch"),
        ("q3", "Adam's two states forgotten"),
        ("q3", "m and v counted in bf16 under mixed precision"),
        ("q4", "accumulation without dividing the loss"),
        ("q4", "the loss divided twice"),
        ("q5", "P instead of (P - 1) / P (2n)"),
        ("q6", "(p - 1) / m for the bubble"),
        ("q7", "ZeRO-1 sharding the gradients"),
    ],
    "compression": [  # issue 15
        ("q1", "the zero point overflows int8 (the range without 0, the zero point not clamped)"),
        ("q1", "the zero point not rounded"),
        ("q2", "rounding before scaling"),
        ("q2", "no clamp into the integer range"),
        ("q3", "one scale for the whole tensor"),
        ("q4", "the scales left out"),
        ("q5", "pruning by signed value instead of magnitude"),
        ("q6", "a distillation loss without the T^2 factor"),
        ("q7", "no warm-up calls"),
        ("q7", "the mean instead of the median"),
    ],
    "large-models": [  # issue 16
        ("q1", "the biases left out"),
        ("q1", "the output layer counted although it is tied"),
        ("q2", "2ND instead of 6ND"),
        ("q3", "Adam's two states forgotten"),
        ("q3", "the master weights forgotten"),
        ("q4", "log10 instead of log2"),
        ("q5", "ImageNet taken for a model"),
        ("q6", "BERT taken for a translator"),
    ],
    "outlook": [  # issue 16
        ("q1", "the step down the loss instead of up"),
        ("q1", "no clipping into [0, 1]"),
        ("q2", "the comparison reversed (high loss guessed member)"),
        ("q3", "the PUE left out"),
        ("q4", "the dot product without normalising"),
        ("q5", "the gap taken as B minus A"),
        ("q6", "an interval containing 0 read as no bias"),
    ],
}


@pytest.mark.parametrize(
    ("name", "question", "what"),
    [(name, q, what) for name, required in REQUIRED_MISTAKES.items() if name in SETS for q, what in required],
)
def test_required_mistakes_are_recorded(name, question, what):
    recorded = [m.what for m in read_master(name).mistakes if m.question == question]
    assert what in recorded, f"{name} {question}: the required mistake {what!r} is not recorded; found {recorded}"


@pytest.mark.parametrize("name", SETS)
def test_solutions_are_stripped_from_the_student_notebook(name, generated):
    master = read_master(name)
    nb = nbformat.reads(generated[name].student_notebook, as_version=4)
    solution = nbformat.reads(generated[name].solution_notebook, as_version=4)
    for question in master.questions.values():
        student_cell, solution_cell = answer_cell_in_student(nb, question), answer_cell(solution, question)
        assert "..." in student_cell.source
        assert student_cell.source != solution_cell.source


def answer_cell_in_student(nb, question: Question):
    names = question.functions or question.variables
    for cell in nb.cells:
        if cell.cell_type == "code" and "otter_answer_cell" in cell.metadata.get("tags", []):
            if any(f"def {n}(" in cell.source or cell.source.startswith(f"{n} =") for n in names):
                return cell
    raise LookupError(question.name)


@pytest.mark.parametrize("name", SETS)
def test_public_tests_ship_inside_lmbook(name, generated):
    from lmbook.grading import exercise_sets, tests_dir

    assert name in exercise_sets()
    shipped = {p.name: p.read_text() for p in pathlib.Path(tests_dir(name)).glob("*.py")}
    assert shipped == generated[name].public_tests


# ----- grading ---------------------------------------------------------------------------------------------


def _variants(kind: str) -> list[tuple[str, str]]:
    found = []
    for name in SETS:
        master = read_master(name)
        if kind == "mistake":
            found += [(name, f"{m.question}: {m.what}") for m in master.mistakes]
        elif kind == "generic":
            found += [(name, v) for v in GENERIC_FAILURES]
    return found


@pytest.mark.parametrize("name", SETS)
def test_solutions_score_full_marks(name, graded):
    result, _ = graded[name]["solution"]
    assert result["status"] == "ok", result["error"]
    for q, info in result["questions"].items():
        failures = [c["message"] for c in info["cases"] if not c["passed"]]
        assert info["score"] == info["possible"] > 0, f"{q}: {failures}"
    assert set(result["questions"]) == set(read_master(name).questions)


@pytest.mark.parametrize("name", SETS)
def test_untouched_student_notebook_scores_zero_without_crashing(name, graded):
    result, _ = graded[name]["untouched"]
    assert result["status"] == "ok", result["error"]
    assert set(result["questions"]) == set(read_master(name).questions)
    for q, info in result["questions"].items():
        assert info["score"] == 0, q
        message = first_public_failure(info)
        assert message and from_a_check(message), f"{q}: {message}"


@pytest.mark.parametrize(("name", "label"), _variants("mistake"))
def test_typical_mistake_fails_with_a_helpful_public_message(name, label, graded):
    question, what = label.split(": ", 1)
    found = [
        (variant, result, plan)
        for variant, (result, plan) in graded[name].items()
        if plan["kind"] == "mistakes" and plan["broken"].get(question, Mistake("", "", (), "")).what == what
    ]
    assert len(found) == 1, f"{label} was not graded"
    variant, result, plan = found[0]
    assert result["status"] == "ok", result["error"]
    info = result["questions"][question]
    assert info["score"] < info["possible"], f"{label}: the grader accepted this mistake"
    message = first_public_failure(info)
    assert message is not None, f"{label}: only hidden tests catch it, so the learner never sees why"
    assert from_a_check(message), message
    for word in plan["broken"][question].expect:
        assert word.lower() in message.lower(), f"{label}: {word!r} is not in the message:\n{message}"
    # The other questions of that submission were answered correctly and must not suffer.
    for q, other in result["questions"].items():
        if q not in plan["broken"]:
            assert other["score"] == other["possible"], f"{q} lost points in {variant}"


@pytest.mark.parametrize(("name", "failure"), _variants("generic"))
def test_broken_code_fails_cleanly_with_a_clear_message(name, failure, graded):
    result, plan = graded[name][failure]
    assert result["status"] == "ok", result["error"]
    for q in plan["questions"]:
        info = result["questions"][q]
        # A function that raises or never returns earns nothing; one whose side effects are right (a training
        # step that updates the model but returns a badly shaped loss) may keep the points of that part.
        if failure in ("raises", "never-returns"):
            assert info["score"] == 0, f"{q}: {failure} earned points"
        assert info["score"] < info["possible"], f"{q}: {failure} earned full marks"
        message = first_public_failure(info)
        assert message and from_a_check(message), f"{q}: {message}"
        for word in plan["words"]:
            assert word in message, f"{q}: {word!r} is not in the message:\n{message}"


def test_a_cell_that_never_ends_does_not_stop_the_grader(graded):
    result, _ = graded[GRADER_SET]["endless-cell"]
    assert result["status"] == "ok", result["error"]
    assert result["score"] == result["possible"] > 0


def test_a_dead_kernel_is_reported_not_fatal(graded):
    result, _ = graded[GRADER_SET]["dead-kernel"]
    assert result["status"] == "error"
    assert result["score"] == 0
    assert result["error"]


def test_a_notebook_of_no_known_set_is_reported(graded):
    result, _ = graded[None]["stray"]
    assert result["status"] == "error" and "unknown exercise set" in result["error"]
    assert result["exercise_set"] is None and result["score"] == 0


def test_score_table_and_reports(graded, tmp_path):
    results = [r for variants in graded.values() for r, _ in variants.values()]
    grade.write_reports(results, tmp_path)
    rows = (tmp_path / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("file,exercise_set,q1,") and rows[0].endswith(",total,possible,status")
    assert len(rows) == len(results) + 1
    text = grade.table(results)
    assert "submission" in text.splitlines()[0] and len(text.splitlines()) == len(results) + 2
