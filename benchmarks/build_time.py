#!/usr/bin/env python3
"""Benchmark: generate every template and lint it with cfn-lint for four regions.

Target (issue 2): under 30 s on a 2-core machine. Prints a table and a JSON line.
Usage: .venv/bin/python benchmarks/build_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lakehub.release.build import LINT_REGIONS, lint, render_all, write_all  # noqa: E402
from lakehub.settings import load_settings  # noqa: E402


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        rendered = render_all(load_settings(None))
        write_all(rendered, out)
        t1 = time.perf_counter()
        findings = lint(sorted(out.glob("*.template.yaml")), LINT_REGIONS)
        t2 = time.perf_counter()
    if findings:
        raise SystemExit("cfn-lint findings:\n" + "\n".join(findings))
    return {"generate_s": t1 - t0, "lint_s": t2 - t1, "total_s": t2 - t0, "templates": len(rendered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("generate_s", "lint_s", "total_s")}
    print(f"templates: {runs[0]['templates']}, regions: {', '.join(LINT_REGIONS)}, runs: {args.runs}")
    print(f"{'step':<10}{'median s':>10}")
    for k in ("generate_s", "lint_s", "total_s"):
        print(f"{k[:-2]:<10}{med[k]:>10.2f}")
    print(json.dumps({"benchmark": "build_time", **{k: round(v, 3) for k, v in med.items()}, "target_s": 30}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
