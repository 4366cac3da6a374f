"""ruff over the whole project (pyproject.toml [tool.ruff]): undefined names, unused imports and
variables, syntax errors. These are bugs a test run can miss when the line is not reached."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        ruff = shutil.which("ruff")
    if not ruff:
        pytest.fail("ruff is not installed: run `make setup` (it is in the dev extra)")
    proc = subprocess.run(
        [str(ruff), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
