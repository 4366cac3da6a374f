"""Container runtime benchmark (issue 17): the local platform on containers vs processes.

For each runtime (`lakehub local up --runtime container`, then `--runtime process`; per-user
mode, a fresh state folder, free loopback ports):

- **up**: wall time of `lakehub local up` (the command's whole run, as `make local` runs it),
  with the hub image already built and cached (`lakehub.local.images.ensure_hub_image` is called
  first and its own time reported separately: a cache check, or the first build when there was
  no image);
- **sign-in -> ready**: for each of N users of the pii tier, one after the other: the clock
  starts at the first request of the sign-in through the identity provider's login form and stops
  when the hub's REST API says the user's server is ready (tests/hubclient.py); the median and
  the spread are reported;
- **RSS per user server**: once every user's server is ready and idle, the resident memory summed
  over the processes of each user's task: on containers every process in the container (the tree
  under the container's init, `podman inspect`'s State.Pid), on processes the agent's task process
  and its descendants (state.json's task records).

Then `lakehub local down`. Prints a table and writes
benchmarks/results/container_runtime-n<N>-<date>.json.

    .venv/bin/python benchmarks/container_runtime.py [--users 3] [--runtimes container,process]

Heavy: run it alone on the machine (the tests' e2e lock: `flock /work/e2e.lock ...`).
"""

from __future__ import annotations

import argparse
import datetime
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402

from hubclient import api_token, oidc_sign_in, wait_ready  # noqa: E402
from common import lakehub, save_result, tree_rss  # noqa: E402


def container_pid(task_arn: str) -> int | None:
    out = subprocess.run(
        ["podman", "ps", "--filter", f"label=lakehub.task={task_arn}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    if not out:
        return None
    pid = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Pid}}", out[0]], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    return int(pid) if pid.isdigit() and int(pid) > 0 else None


def user_tasks(state: dict) -> dict[str, str]:
    """{user: task ARN} of the running user-server tasks."""
    from local.helpers import running_tasks  # tests/local/helpers.py

    return {tags["lakehub:user"]: task["taskArn"] for task, tags in running_tasks(state) if "lakehub:user" in tags}


def one_runtime(runtime: str, users: int) -> dict:
    state_dir = Path(tempfile.mkdtemp(prefix=f"lakehub-bench-{runtime}-"))
    from lakehub.local.platform import free_base_port

    row: dict = {"runtime": runtime}
    try:
        started = time.monotonic()
        up = lakehub(
            "local",
            "up",
            "--runtime",
            runtime,
            "--state-dir",
            str(state_dir),
            "--base-port",
            str(free_base_port()),
            "--demo-users",
            str(users),
            timeout=1800,
        )
        row["up_seconds"] = round(time.monotonic() - started, 1)
        if up.returncode != 0:
            row["error"] = (up.stderr.strip().splitlines() or ["no message"])[-1]
            return row
        state = json.loads((state_dir / "state.json").read_text())
        tier = next(t for t in state["tiers"] if t["name"] == "pii")
        ready = []
        for user in tier["users"][:users]:
            t0 = time.monotonic()
            session, response = oidc_sign_in(tier["url"], user["username"], user["password"])
            response.raise_for_status()
            token = api_token(session, tier["url"], user["username"])
            wait_ready(tier["url"], user["username"], token, timeout=300, retry_failed=False)
            ready.append(round(time.monotonic() - t0, 2))
        row["sign_in_to_ready_s"] = ready
        row["sign_in_to_ready_median_s"] = round(statistics.median(ready), 2)
        time.sleep(5)  # the servers settle (their first requests answered)
        state = json.loads((state_dir / "state.json").read_text())
        rss = {}
        for user, arn in user_tasks(state).items():
            if runtime == "container":
                pid = container_pid(arn)
            else:
                pid = (state.get("tasks") or {}).get(arn, {}).get("pid")
            if pid:
                total, count = tree_rss(int(pid))
                rss[user] = {"rss_mb": round(total / 2**20, 1), "processes": count}
        row["rss_per_user"] = rss
        values = [v["rss_mb"] for v in rss.values()]
        row["rss_per_user_median_mb"] = round(statistics.median(values), 1) if values else None
        return row
    finally:
        down = lakehub("local", "down", "--state-dir", str(state_dir), "--no-export", timeout=300)
        row["down_returncode"] = down.returncode
        shutil.rmtree(state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3, help="users of the pii tier who start a server (default 3)")
    parser.add_argument("--runtimes", default="container,process")
    args = parser.parse_args(argv)
    from lakehub.local.images import hub_image

    t0 = time.monotonic()
    image = hub_image(say=lambda line: print(f"  {line}", file=sys.stderr))
    result = {
        "benchmark": "container_runtime",
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "server_mode": "per-user",
        "users": args.users,
        "hub_image": image.ref,
        "hub_image_size_mb": round(image.size_bytes / 2**20),
        "image_step_seconds": round(time.monotonic() - t0, 1),
        "image_built": image.built,
        "runs": [one_runtime(r.strip(), args.users) for r in args.runtimes.split(",") if r.strip()],
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"local platform: containers vs processes ({args.users} pii users, per-user mode; "
        f"image step {result['image_step_seconds']} s{' (built)' if image.built else ' (cached)'})"
    )
    for column in ("runtime", "up (s)", "sign-in -> ready median (s)", "each (s)", "RSS per user server median (MB)"):
        table.add_column(column)
    for run in result["runs"]:
        table.add_row(
            run["runtime"],
            str(run.get("up_seconds")),
            str(run.get("sign_in_to_ready_median_s", run.get("error", ""))),
            " ".join(map(str, run.get("sign_in_to_ready_s", []))),
            str(run.get("rss_per_user_median_mb")),
        )
    Console(width=160).print(table)
    save_result(f"container_runtime-n{args.users}-{result['date']}", result)
    print(json.dumps(result))
    return 0 if all("error" not in r for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
