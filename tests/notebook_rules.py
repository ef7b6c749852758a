"""Static rules every committed notebook follows; shared by the tests (no pytest fixtures here)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def chapter_notebooks() -> list[pathlib.Path]:
    return sorted(p for p in ROOT.glob("chapters/**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def all_notebooks() -> list[pathlib.Path]:
    others = sorted(ROOT.glob("exercises/**/*.ipynb"))
    return chapter_notebooks() + [p for p in others if ".ipynb_checkpoints" not in p.parts]


def stored_outputs(nb) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def lmbook_exports() -> dict[str, str]:
    """Public names defined by lmbook's modules: functions, classes and UPPER_CASE constants -> module."""
    import lmbook

    names: dict[str, str] = {}
    for info in pkgutil.walk_packages(lmbook.__path__, "lmbook."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            defined_here = getattr(obj, "__module__", None) == module.__name__
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and defined_here:
                names[name] = info.name
            elif name.isupper() and not callable(obj):
                names[name] = info.name
    return names


def _python_only(source: str) -> str:
    # IPython magics and shell escapes are not Python: replace each by `pass` at its own indentation, so that a
    # magic that is the whole body of an `if` still leaves valid Python behind.
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def defined_names(source: str) -> set[str]:
    """Names a cell binds at any level: def, class, assignment targets, for-loop targets, imports-as."""
    tree = ast.parse(_python_only(source))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.alias) and node.asname:
            found.add(node.asname)
    return found


def redefinitions(nb, exports: dict[str, str]) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name in sorted(defined_names(cell.source) & exports.keys()):
            problems.append(f"cell {i} redefines {name!r}, which lmbook exports from {exports[name]}")
    return problems


def defined_functions(nb) -> set[str]:
    """Functions and classes a notebook defines, nested ones included; methods belong to their class and are not."""
    found: set[str] = set()

    def visit(node) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found.add(child.name)
            if not isinstance(child, ast.ClassDef):
                visit(child)

    for cell in nb.cells:
        if cell.cell_type == "code":
            visit(ast.parse(_python_only(cell.source)))
    return found


def shared_definitions(notebooks: dict[str, object]) -> dict[str, list[str]]:
    """Function or class names defined in more than one notebook -> those notebooks (a copy that belongs in lmbook)."""
    where: dict[str, list[str]] = {}
    for name, nb in notebooks.items():
        for fn in defined_functions(nb):
            where.setdefault(fn, []).append(name)
    return {fn: sorted(names) for fn, names in sorted(where.items()) if len(names) > 1}


def read(path: pathlib.Path):
    return nbformat.read(path, as_version=4)
