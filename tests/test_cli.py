"""The `lakehub` command: every subcommand is part of the package, and the library under it
neither parses arguments nor prints tables (lakehub/cli does both). `python -m lakehub.cli`:
tests/test_layout.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_layout import imports_of  # one AST import scan for the layout rules and this one

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["build", "publish", "deploy", "local", "restore-home", "cost"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehub.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_command_is_offered_in_order():
    from lakehub.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == COMMANDS


def test_a_users_mistake_is_one_line_and_a_non_zero_exit():
    proc = _cli("deploy", "--parameter", "no-equals-sign", "--region", "us-east-1")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "lakehub: error: --parameter 'no-equals-sign' is not Key=Value; write it as --parameter DomainName=lakehub.example.com"
    ]


def test_only_lakehub_cli_registers_commands_or_draws_tables():
    """argparse subcommands and rich output live in lakehub/cli; the library returns data.
    (Programs of their own, run with `python -m` by the local platform, keep their argparse.)"""
    offenders = []
    for path in sorted((ROOT / "lakehub").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("lakehub/cli/"):
            continue
        text = path.read_text()
        if any(name == "rich" or name.startswith("rich.") for name in imports_of(path)):
            offenders.append(f"{rel}: imports rich")
        if "add_subparsers" in text or "add_parser(" in text or "def register(subparsers" in text:
            offenders.append(f"{rel}: defines a subcommand")
    assert not offenders, offenders


@pytest.mark.slow
def test_output_cut_short_by_a_closed_pipe_is_no_traceback():
    """`lakehub local resource-types | head -1`: the reader closes the pipe before all is written
    (here before anything is: the read end is closed at the start)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lakehub.cli", "local", "resource-types"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.returncode != 0
