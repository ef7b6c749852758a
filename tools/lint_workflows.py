"""Lint the GitHub Actions workflows, offline: the schema GitHub reads them with, then zizmor's security audits.

    python tools/lint_workflows.py                  # every workflow in .github/workflows
    python tools/lint_workflows.py path/to/a.yml    # these files (or folders of workflows) only

Two checks, both from PyPI (requirements.txt) and both without a network:

- check-jsonschema with its bundled GitHub-workflow schema (``vendor.github-workflows``): a misspelt key, a job
  without ``runs-on``, a wrong type;
- ``zizmor --offline``: template injection, credentials left in the checkout, unpinned actions, excessive
  permissions and the other audits that need no GitHub API.

Exits 1 and prints each tool's report when either finds anything (or when there is no workflow to check), so that
``make lint`` fails.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCHEMA = "vendor.github-workflows"


def workflow_files(paths: list[pathlib.Path]) -> list[pathlib.Path]:
    """The workflow files among ``paths``: files as given, and every .yml/.yaml file inside a folder."""
    found: list[pathlib.Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
        else:
            found.append(path)
    return found


def tool(name: str) -> str:
    """The command ``name``, from this Python's environment first (the book's .venv), else from PATH."""
    beside = pathlib.Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"lint_workflows: {name} is not installed (pip install -r requirements.txt)")
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # zizmor is written in Rust: a Rust stack trace under its message would only bury the finding.
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def lint(files: list[pathlib.Path]) -> list[str]:
    """One message per failed check, each with the tool's own report; empty when every file passes both."""
    if not files:
        return ["no workflow files to check"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return [f"no such file: {', '.join(missing)}"]
    names = [str(f) for f in files]
    failures = []
    schema = run([tool("check-jsonschema"), "--builtin-schema", SCHEMA, *names])
    if schema.returncode != 0:
        failures.append(f"GitHub workflow schema ({SCHEMA}):\n{schema.stdout}{schema.stderr}")
    # --strict-collection: a file zizmor cannot parse is an error, not a warning it skips.
    audit = run(
        [tool("zizmor"), "--offline", "--strict-collection", "--quiet", "--no-progress", "--color", "never", *names]
    )
    if audit.returncode != 0:
        failures.append(f"zizmor --offline (exit {audit.returncode}):\n{audit.stdout}{audit.stderr}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=pathlib.Path, default=[WORKFLOWS], help="workflow files or folders")
    args = parser.parse_args(argv)
    files = workflow_files(args.paths)
    failures = lint(files)
    for failure in failures:
        print(f"lint_workflows: FAILED {failure.rstrip()}\n", file=sys.stderr)
    if not failures:
        print(f"lint_workflows: {len(files)} workflow(s) pass the GitHub schema and zizmor --offline")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
