"""Browser benchmark: how long a data scientist waits in JupyterLab, in a real browser.

Runs the browser suite (tests/browser: Playwright driving Debian's chromium) N times and reads
the step timings it records for each server mode (per-user on `lakehub local up`, shared on the
hub image's config). The clock of each step runs from the person's action to what they wait for:

  sign-in to lab       submitting the identity provider's form -> JupyterLab's file browser shown
                       (includes starting the user's server: choosing a size, the task, the proxy)
  open notebook        double-click on shared/examples/python_data_lake.ipynb -> cells shown,
                       kernel idle (includes starting the kernel)
  first cell result    Shift+Enter on a new notebook's cell reading the tier's data with pandas
                       -> its output shown
  run all (Python/R)   Run > Run All Cells on the example notebooks -> every cell done
  colleague opens      the second person double-clicks the notebook copied into shared/

    .venv/bin/python benchmarks/browser_journey.py [--runs 3] [--json-only]

Prints a table (medians, with min-max over runs), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("per-user", "shared")
# (label, person in the suite, timing key)
STEPS = [
    ("sign-in to lab", "member", "sign_in_to_lab_s"),
    ("open notebook", "member", "open_python_data_lake.ipynb_s"),
    ("first cell result", "member", "first_cell_result_s"),
    ("run all, Python example", "member", "run_all_python_data_lake.ipynb_s"),
    ("colleague: sign-in to lab", "colleague", "sign_in_to_lab_s"),
    ("colleague opens the shared copy", "colleague", "open_quarterly-analysis.ipynb_s"),
    ("run all, R example", "colleague", "run_all_r_data_lake.ipynb_s"),
]


def one_run(artifacts: Path) -> dict:
    env = dict(os.environ, LAKEHUB_TEST_ARTIFACTS=str(artifacts))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"browser_journey: the browser suite failed (exit {proc.returncode}); screenshots in {artifacts}")
    result = {}
    for mode in MODES:
        path = artifacts / "browser" / mode / "timings.json"
        if path.exists():
            result[mode] = json.loads(path.read_text())  # {"member": {...}, "colleague": {...}}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    samples: dict[tuple[str, str], list[float]] = {}
    work = Path(tempfile.mkdtemp(prefix="lakehub-browser-bench-"))
    try:
        for n in range(args.runs):
            run = one_run(work / f"run{n}")
            for mode, people in run.items():
                for label, person, key in STEPS:
                    if key in people.get(person, {}):
                        samples.setdefault((mode, label), []).append(people[person][key])
            if not args.json_only:
                print(f"run {n + 1}/{args.runs} done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = {}
    for (mode, label), values in samples.items():
        figures.setdefault(mode, {})[label] = {
            "median_s": round(statistics.median(values), 2),
            "min_s": min(values),
            "max_s": max(values),
            "n": len(values),
        }
    if not args.json_only:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"JupyterLab in a real browser: seconds, median (min-max) of {args.runs} runs")
        table.add_column("step")
        for mode in MODES:
            table.add_column(f"{mode} mode", justify="right")
        for label, _, _ in STEPS:
            cells = []
            for mode in MODES:
                f = figures.get(mode, {}).get(label)
                cells.append(f"{f['median_s']:.1f} ({f['min_s']:.1f}-{f['max_s']:.1f})" if f else "-")
            table.add_row(label, *cells)
        Console().print(table)
    print(json.dumps({"benchmark": "browser_journey", "runs": args.runs, "figures": figures}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
