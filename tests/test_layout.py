"""The package's layout (issue 20): one package per job, and the import rules between them.

- `lakehub/stacks` (the templates) never imports `lakehub/checks` (the rules that read them), nor
  the local platform, the release tools or the command line;
- the top of `lakehub/` holds only what every wing shares (settings, assets, errors, the poll helper);
- every module the project starts with `python -m lakehub...` can be started so.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lakehub"
SHARED_TOP = {"__init__.py", "assets.py", "errors.py", "settings.py", "waiting.py"}
WINGS = {"cli", "stacks", "cfn", "checks", "cost", "release", "local"}
# What each wing may not import (the arrows of README "The code: one package per job").
FORBIDDEN = {
    "stacks": ("lakehub.checks", "lakehub.local", "lakehub.release", "lakehub.cli", "lakehub.cost"),
    "cfn": ("lakehub.stacks", "lakehub.checks", "lakehub.local", "lakehub.release", "lakehub.cli", "lakehub.cost"),
    "checks": ("lakehub.local", "lakehub.release", "lakehub.cli", "lakehub.cost"),
    "cost": ("lakehub.local", "lakehub.release", "lakehub.cli", "lakehub.checks"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_top_of_the_package_holds_only_what_every_wing_shares():
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top == SHARED_TOP, f"modules at the top of lakehub/ that belong in a wing: {sorted(top - SHARED_TOP)}"
    assert folders == WINGS, f"packages: {sorted(folders)}"


@pytest.mark.parametrize("wing", sorted(FORBIDDEN))
def test_a_wing_does_not_import_what_it_must_not(wing):
    bad = []
    for path in sorted((PACKAGE / wing).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[wing]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_import_rules_catch_a_stack_that_imports_the_checks(tmp_path):
    """The AST scan sees both import forms, at the top and inside a function."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lakehub.checks.rules import refs\n    import lakehub.checks.iam\n")
    assert {"lakehub.checks.rules", "lakehub.checks.iam"} <= imports_of(module)


def started_modules() -> set[str]:
    """Modules the project starts as `python -m lakehub...` (code, tests, docs, Makefile)."""
    pattern = re.compile(r"""(?:"-m",\s*"|-m\s+)(lakehub(?:\.\w+)+)""")
    found: set[str] = set()
    for folder in ("lakehub", "tests", "benchmarks", "docs", "hub_images"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md") and ".venv" not in path.parts:
                found.update(pattern.findall(path.read_text(errors="replace")))
    found.update(pattern.findall((ROOT / "README.md").read_text()))
    found.update(pattern.findall((ROOT / "Makefile").read_text()))
    return found


def test_every_module_the_project_starts_with_dash_m_can_be_started():
    modules = started_modules()
    assert "lakehub.cli" in modules and "lakehub.local.emulator_server" in modules, modules
    for name in sorted(modules):
        path = PACKAGE.joinpath(*name.split(".")[1:])
        if path.is_dir():
            assert (path / "__main__.py").exists(), f"`python -m {name}`: the package {name} has no __main__.py"
        else:
            text = path.with_suffix(".py").read_text()
            assert 'if __name__ == "__main__":' in text, f"`python -m {name}` runs nothing: no main block"


def test_python_dash_m_lakehub_cli_runs_the_command():
    proc = subprocess.run([sys.executable, "-m", "lakehub.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("lakehub "), proc.stdout + proc.stderr
