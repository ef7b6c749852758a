"""The deploy workflow passes tools/lint_workflows.py, and the linter fails on broken copies of it."""

from __future__ import annotations

import re

import pytest
import yaml

from tools.lint_workflows import WORKFLOWS, lint, main, workflow_files

DEPLOY = WORKFLOWS / "deploy.yml"


def test_the_real_workflows_pass():
    files = workflow_files([WORKFLOWS])
    assert DEPLOY in files
    assert lint(files) == []


# Each edit breaks the deploy workflow in one way; the linter must name the tool that caught it.
BREAKAGES = {
    "misspelt key": ("    permissions:\n      contents: read", "    permisions:\n      contents: read", "schema"),
    "no runs-on": ("    runs-on: ubuntu-24.04\n    timeout-minutes: 90\n", "    timeout-minutes: 90\n", "schema"),
    "template injection": (
        "run: make book pdf",
        'run: make book pdf "${{ github.event.head_commit.message }}"',
        "zizmor",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_fails(tmp_path, breakage, capsys):
    old, new, caught_by = BREAKAGES[breakage]
    text = DEPLOY.read_text()
    assert text.count(old) == 1, f"the edit {breakage!r} no longer applies to {DEPLOY.name}"
    broken = tmp_path / "deploy.yml"
    broken.write_text(text.replace(old, new))
    failures = lint([broken])
    assert failures, f"{breakage}: the linter passed a broken workflow"
    assert any(caught_by in f for f in failures), failures
    assert main([str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().err


def test_no_workflow_is_a_failure(tmp_path):
    assert lint(workflow_files([tmp_path])) == ["no workflow files to check"]


def test_the_deploy_workflow_builds_the_book_and_its_pdf_and_publishes_with_nojekyll():
    workflow = yaml.safe_load(DEPLOY.read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = [step.get("run", "") for step in build["steps"]]
    uses = [step.get("uses", "").split("@")[0] for step in build["steps"]]
    assert "make book pdf" in runs
    # .nojekyll is written after the build and before the upload, and the upload keeps dot-files.
    assert (
        runs.index("make book pdf")
        < runs.index("touch _build/html/.nojekyll")
        < uses.index("actions/upload-pages-artifact")
    )
    upload = build["steps"][uses.index("actions/upload-pages-artifact")]["with"]
    assert upload == {"path": "_build/html", "include-hidden-files": True}
    # Least privilege: nothing at the top, write access to Pages only in the deploy job.
    assert workflow["permissions"] == {}
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_every_action_is_pinned_to_a_commit():
    steps = [s for job in yaml.safe_load(DEPLOY.read_text())["jobs"].values() for s in job["steps"]]
    unpinned = [
        s["uses"] for s in steps if "uses" in s and not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", s["uses"])
    ]
    assert unpinned == []
