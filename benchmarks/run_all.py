#!/usr/bin/env python3
"""Run every benchmark script in turn (`make bench`). Each prints a table and JSON lines.

The figures go in the README's Benchmarks section. These are measurements, not tests: run them
on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "build_time.py",
    "image_build.py",
    "cost_report.py",
    "hub_spawn.py",
    "local_up.py",
    "browser_journey.py",
    "durable_s3.py",
    "ecs_poll_rate.py",
]
# load_local.py (N users per tier at once) takes minutes of the whole machine: run it on its own.


def main() -> int:
    failed = []
    for name in SCRIPTS:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], timeout=1800).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
