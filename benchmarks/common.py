"""What the benchmarks share: `lakehub` run as a command (without the caller's AWS_* variables),
the resident memory of a process tree, a result written to benchmarks/results/, and the tables
of measures they print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def local_up_args(state_dir: Path, base: int, *more: str) -> list[str]:
    """The arguments of `lakehub local up` on the process runtime in `state_dir` from port
    `base`, `more` added."""
    return ["local", "up", "--runtime", "process", "--state-dir", str(state_dir), "--base-port", str(base), *more]


def lakehub(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def _label(p: psutil.Process) -> str:
    cmd = " ".join(p.cmdline())
    for needle, label in (
        ("lakehub.local.platform", "supervisor"),
        ("emulator_server", "emulator (moto)"),
        ("idp/oidc_provider.mjs", "identity provider"),
        ("configurable-http-proxy", "proxy"),
        ("jupyterhub_idle_culler", "idle culler"),
        ("jupyterhub-singleuser", "user server"),
        ("jupyterhub.singleuser", "user server"),
        ("ipykernel", "kernel"),
        ("jupyterhub", "hub"),
    ):
        if needle in cmd:
            return label
    return p.name()


def tree_rss(pid: int, breakdown: dict | None = None) -> tuple[int, int]:
    """(RSS bytes, process count) of a process and all its descendants; with `breakdown`, MB per
    kind of process (supervisor, emulator, hub, proxy, user server, kernel ...) added to it."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = 0
    for p in procs:
        try:
            rss = p.memory_info().rss
            total += rss
            if breakdown is not None:
                label = _label(p)
                breakdown[label] = round(breakdown.get(label, 0) + rss / 2**20, 1)
        except psutil.Error:
            pass
    return total, len(procs)


def save_result(name: str, result: dict) -> Path:
    """benchmarks/results/<name>.json, the result as indented JSON; its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def measure_table(title: str, *columns: str):
    """A rich table titled `title` (left-aligned): a measure column, then `columns` right-aligned."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    for column in columns:
        table.add_column(column, justify="right")
    return table


def print_measures(rows: list[tuple], rule: int) -> None:
    """(measure, value) rows as plain text under a `measure  value` header ruled `rule` wide."""
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * rule}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
