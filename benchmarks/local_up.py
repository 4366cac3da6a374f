"""Local environment benchmark: time from `lakehub local up` to every hub answering, and the
memory the whole local platform holds.

Runs `lakehub local up --runtime process` (background mode, a fresh state folder, free loopback
ports) N times; the container runtime's figures are benchmarks/container_runtime.py's.
For each run the clock starts when the command is launched and stops when every tier's hub
answers /hub/health with 200 (polled every 100 ms, independently of the command's own wait).
Memory is the resident set (RSS) summed over the supervisor and all its descendants (emulator,
identity provider, hubs, proxies, idle culler), measured after the hubs answer, with no user
server running; then once more with one user server per tier started (per-user mode, run by
the local agent). Each run ends with `lakehub local down`.

    .venv/bin/python benchmarks/local_up.py [--runs 1] [--with-servers] [--json-only]

Prints a table, then one JSON line. Target: under 60 s to all hubs answering on 2 cores.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import requests  # noqa: E402

from lakehub.local.platform import free_base_port, plan_ports, tiers_from_template  # noqa: E402
from common import lakehub, local_up_args, print_measures, tree_rss  # noqa: E402


def one_run(with_servers: bool) -> dict:
    state_dir = Path(tempfile.mkdtemp(prefix="lakehub-bench-local-"))
    base = free_base_port()
    tiers = tiers_from_template()
    plan_ports(base, tiers)
    urls = [f"http://127.0.0.1:{t.port}/hub/health" for t in tiers]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehub.cli", *local_up_args(state_dir, base)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answering: set[str] = set()
    deadline = started + 600
    while len(answering) < len(urls) and time.monotonic() < deadline:
        for url in urls:
            if url in answering:
                continue
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    answering.add(url)
            except requests.RequestException:
                pass
        if proc.poll() not in (None, 0):
            break
        time.sleep(0.1)
    hubs_seconds = time.monotonic() - started
    out, err = proc.communicate(timeout=600)
    command_seconds = time.monotonic() - started
    result: dict = {"base_port": base}
    try:
        if proc.returncode != 0 or len(answering) < len(urls):
            log = state_dir / "emulator.log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"lakehub local up failed ({proc.returncode}): {err.strip()[-500:]}\n{tail}")
        state = json.loads((state_dir / "state.json").read_text())
        time.sleep(2)  # let start-up transients settle
        breakdown: dict = {}
        rss, count = tree_rss(int(state["pid"]), breakdown)
        result["rss_mb_by_process"] = breakdown
        result.update(
            up_to_hubs_answering_s=round(hubs_seconds, 2),
            up_command_s=round(command_seconds, 2),
            supervisor_ready_s=state.get("ready_seconds"),
            platform_rss_mb=round(rss / 2**20, 1),
            processes=count,
            tiers=len(tiers),
        )
        if with_servers:
            sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
            from tests.local.helpers import user_server

            for tier in state["tiers"]:
                user_server(tier, tier["users"][0])
            time.sleep(2)
            rss2, count2 = tree_rss(int(state["pid"]))
            result.update(platform_rss_with_one_server_per_tier_mb=round(rss2 / 2**20, 1), processes_with_servers=count2)
    finally:
        lakehub("local", "down", "--state-dir", str(state_dir), "--no-export", timeout=180)
        shutil.rmtree(state_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--with-servers", action="store_true", help="also measure with one user server per tier")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    runs = [one_run(args.with_servers) for _ in range(args.runs)]
    ups = [r["up_to_hubs_answering_s"] for r in runs]
    result = {
        "benchmark": "local_up",
        "cpus": os.cpu_count(),
        "runs": len(runs),
        "up_to_all_hubs_answering_s_median": round(statistics.median(ups), 2),
        "up_to_all_hubs_answering_s_max": round(max(ups), 2),
        "target_s": 60,
        "platform_rss_mb_median": round(statistics.median(r["platform_rss_mb"] for r in runs), 1),
        "processes": runs[-1]["processes"],
        "tiers": runs[-1]["tiers"],
        "details": runs,
    }
    if args.with_servers:
        result["platform_rss_with_one_server_per_tier_mb_median"] = round(
            statistics.median(r["platform_rss_with_one_server_per_tier_mb"] for r in runs), 1
        )
    if not args.json_only:
        rows = [
            ("CPUs", result["cpus"]),
            ("runs", result["runs"]),
            ("up -> all hubs answering, median (s)", result["up_to_all_hubs_answering_s_median"]),
            ("up -> all hubs answering, max (s)", result["up_to_all_hubs_answering_s_max"]),
            ("target (s)", 60),
            ("tiers (hubs)", result["tiers"]),
            ("processes (supervisor tree)", result["processes"]),
            ("platform RSS, idle (MB)", result["platform_rss_mb_median"]),
        ]
        if args.with_servers:
            rows.append(("platform RSS, one server per tier (MB)", result["platform_rss_with_one_server_per_tier_mb_median"]))
        print(f"local up benchmark ({os.cpu_count()} CPUs)")
        print_measures(rows, rule=10)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
