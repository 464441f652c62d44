"""The house style, checked by the ecosystem's own tools with the settings in pyproject.toml: ruff
(lint and format) over the Python code, snakefmt over the workflow. A new author gets the feedback
the maintainers get; a finding fails here with the tool's own report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON_TREES = ["src", "tests", "benchmarks", "examples"]


def tool(name: str) -> list[str]:
    """The tool installed beside this Python (the test extras install both)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: README's test command installs it (requirements/lock-test.txt)")
    return [found]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO)


def test_ruff_finds_nothing():
    done = run(*tool("ruff"), "check", *PYTHON_TREES)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_would_change_nothing():
    done = run(*tool("ruff"), "format", "--check", *PYTHON_TREES)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_snakefmt_would_change_nothing():
    done = run(*tool("snakefmt"), "--check", "workflow/")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_checks_can_fail(tmp_path):
    """The same tools and settings do report a finding (so a pass above means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=[1,2 ,3]\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = subprocess.run([*tool("ruff"), "check", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    fmt = subprocess.run([*tool("ruff"), "format", "--check", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert lint.returncode == 1 and "F401" in lint.stdout
    assert fmt.returncode == 1
    smk = tmp_path / "Snakefile"
    smk.write_text("rule a:\n    output: 'x'\n    shell: 'touch {output}'\n")
    snake = subprocess.run([*tool("snakefmt"), "--check", str(smk)], capture_output=True, text=True, cwd=tmp_path)
    assert snake.returncode != 0
