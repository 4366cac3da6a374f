"""Load benchmark of the local platform: N users per tier sign in at once, start their servers
and save a notebook each.

Brings up `lakehub local up --runtime process --demo-users N` (per-user mode by default: every server is an
emulated ECS task that the local agent runs; a fresh state folder and free loopback ports), or
uses one that runs already (`--state-dir`, started with at least N demo users per tier). Then
every demo user of every tier, all at once (one thread each, the project's own HTTP client,
tests/hubclient.py), signs in through the identity provider's real login form, makes an API
token, asks for their server and waits until the hub reports it ready, then saves a notebook
through the Jupyter contents API and reads it back.

Measured per user: sign-in -> ready (the clock starts at the first request of the sign-in and
stops when the hub's REST API says the server is ready), and whether the whole journey
succeeded. Per hub (one process per tier): CPU seconds (user + system) spent during the run and
peak resident memory (RSS, sampled every 0.5 s). Prints a table (rich) and writes the JSON to
benchmarks/results/load_local-<mode>-n<N>-<date>.json.

    .venv/bin/python benchmarks/load_local.py --users 10 [--state-dir DIR] [--server-mode per-user]

Heavy: run it alone on the machine (the tests' e2e lock: `flock /work/e2e.lock ...`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psutil  # noqa: E402

from hubclient import UserServer, api_token, oidc_sign_in, wait_ready  # noqa: E402
from common import lakehub, local_up_args, measure_table, save_result  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def hub_processes(supervisor_pid: int) -> dict[str, psutil.Process]:
    """The tier hubs among the supervisor's children: `jupyterhub -f ...`, by their HOME (hubs/<tier>)."""
    found = {}
    for p in psutil.Process(supervisor_pid).children(recursive=True):
        try:
            cmd = p.cmdline()
            if any(Path(c).name == "jupyterhub" for c in cmd[:2]):
                found[Path(p.cwd()).name] = p
        except psutil.Error:
            pass
    return found


class HubSampler(threading.Thread):
    """Peak RSS of each hub process, sampled every `interval` s; CPU seconds from start to stop."""

    def __init__(self, hubs: dict[str, psutil.Process], interval: float = 0.5):
        super().__init__(daemon=True)
        self.hubs, self.interval = hubs, interval
        self.stop_event = threading.Event()
        self.peak_rss = {name: 0 for name in hubs}
        self.cpu_start = {name: self._cpu(p) for name, p in hubs.items()}
        self.cpu_end: dict[str, float] = {}

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def run(self) -> None:
        while not self.stop_event.is_set():
            for name, p in self.hubs.items():
                try:
                    self.peak_rss[name] = max(self.peak_rss[name], p.memory_info().rss)
                except psutil.Error:
                    pass
            self.stop_event.wait(self.interval)

    def finish(self) -> dict:
        self.stop_event.set()
        self.join(5)
        out = {}
        for name, p in self.hubs.items():
            try:
                cpu = self._cpu(p) - self.cpu_start[name]
                alive = p.is_running()
            except psutil.Error:
                cpu, alive = None, False
            out[name] = {
                "cpu_s": None if cpu is None else round(cpu, 2),
                "peak_rss_mb": round(self.peak_rss[name] / 2**20, 1),
                "alive_at_end": alive,
            }
        return out


def journey(tier: dict, user: dict, timeout: float, barrier: threading.Barrier) -> dict:
    name = user["username"]
    row: dict = {"tier": tier["name"], "user": name, "ok": False}
    try:
        barrier.wait(60)  # everyone starts together
    except threading.BrokenBarrierError:
        pass
    started = time.monotonic()
    try:
        session, response = oidc_sign_in(tier["url"], name, user["password"])
        response.raise_for_status()
        row["signed_in_s"] = round(time.monotonic() - started, 2)
        token = api_token(session, tier["url"], name)
        wait_ready(tier["url"], name, token, timeout, retry_failed=False, interval=0.25)
        row["sign_in_to_ready_s"] = round(time.monotonic() - started, 2)
        server = UserServer(tier["url"], name, token)
        path = f"load-{name}.ipynb"
        server.save_notebook(path, [f"print('hello from {name}')"])
        back = server.api("GET", f"contents/{path}")
        back.raise_for_status()
        if f"hello from {name}" not in json.dumps(back.json().get("content")):
            raise RuntimeError("the saved notebook read back differs")
        row["saved_s"] = round(time.monotonic() - started, 2)
        row["ok"] = True
    except Exception as exc:  # noqa: BLE001 - a failed journey is a result, with its cause
        row["error"] = f"{type(exc).__name__}: {exc}"[:400]
        request = getattr(exc, "request", None)
        if request is not None:  # which server the HTTP error came from
            row["error_url"] = f"{request.method} {request.url}"[:300]
        row["failed_after_s"] = round(time.monotonic() - started, 2)
    return row


def hub_log_lines(path: Path, user: str, keep: int = 6) -> list[str]:
    """The hub's last warning and error lines about a user: why a journey failed."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    words = ("error", "timeout", "failed", "exited", "stopped", "warning")
    mine = [line[:300] for line in lines if (user in line or f"/user/{user}/" in line) and any(w in line.lower() for w in words)]
    return mine[-keep:]


def run_load(state: dict, users_per_tier: int, timeout: float) -> dict:
    tiers = state["tiers"]
    for t in tiers:
        if len(t["users"]) < users_per_tier:
            raise SystemExit(
                f"tier {t['name']} has {len(t['users'])} demo users; start the platform with --demo-users {users_per_tier}"
            )
    work = [(t, u) for t in tiers for u in t["users"][:users_per_tier]]
    hubs = hub_processes(int(state["pid"]))
    sampler = HubSampler(hubs)
    sampler.start()
    barrier = threading.Barrier(len(work))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        rows = list(pool.map(lambda tu: journey(tu[0], tu[1], timeout, barrier), work))
    wall = time.monotonic() - started
    hub_figures = sampler.finish()
    ready = [r["sign_in_to_ready_s"] for r in rows if "sign_in_to_ready_s" in r]
    ok = [r for r in rows if r["ok"]]
    errors: dict[str, int] = {}
    for r in rows:
        if not r["ok"]:
            key = r["error"].split(":")[0] + ": " + r["error"].split(":", 1)[-1][:80].strip()
            errors[key] = errors.get(key, 0) + 1
    return {
        "users_per_tier": users_per_tier,
        "tiers": len(tiers),
        "users": len(rows),
        "succeeded": len(ok),
        "success_rate": round(len(ok) / len(rows), 3),
        "sign_in_to_ready_p50_s": percentile(ready, 50),
        "sign_in_to_ready_p95_s": percentile(ready, 95),
        "sign_in_to_ready_max_s": max(ready) if ready else None,
        "sign_in_to_ready_mean_s": round(statistics.mean(ready), 2) if ready else None,
        "wall_s": round(wall, 1),
        "hubs": hub_figures,
        "errors": errors,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10, help="users per tier (default 10)")
    parser.add_argument("--state-dir", help="a running platform's state folder (default: start one, then stop it)")
    parser.add_argument("--server-mode", choices=("per-user", "shared"), default="per-user")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each user waits for their server")
    parser.add_argument("--keep", action="store_true", help="leave the platform it started running")
    args = parser.parse_args(argv)

    own = args.state_dir is None
    result: dict = {}
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="lakehub-bench-load-"))
    up_seconds = None
    try:
        if own:
            from lakehub.local.platform import free_base_port

            t0 = time.monotonic()
            load = ("--demo-users", str(args.users), "--server-mode", args.server_mode, "--timeout", "900")
            proc = lakehub(*local_up_args(state_dir, free_base_port(), *load), timeout=900)
            up_seconds = round(time.monotonic() - t0, 1)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
        state = json.loads((state_dir / "state.json").read_text())
        if state.get("phase") != "ready":
            raise SystemExit(f"the platform in {state_dir} is not ready ({state.get('phase')})")
        result.update(
            {
                "benchmark": "load_local",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "cpus": os.cpu_count(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "server_mode": state.get("server_mode"),
                "client": "threads + tests/hubclient.py (requests)",
                "up_seconds": up_seconds,
            }
        )
        try:
            result.update(run_load(state, args.users, args.timeout))
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return 1
        for row in result["rows"]:
            if not row["ok"]:
                row["hub_log"] = hub_log_lines(state_dir / "hubs" / row["tier"] / "hub.log", row["user"])
    finally:
        if own and not args.keep:
            lakehub("local", "down", "--state-dir", str(state_dir), "--no-export", timeout=600)
            if result.get("success_rate") == 1:
                shutil.rmtree(state_dir, ignore_errors=True)
            else:  # the hubs', agent's and identity provider's logs say why
                print(f"logs kept in {state_dir}", file=sys.stderr)

    out = save_result(f"load_local-{result['server_mode']}-n{args.users}-{result['date'][:10]}", result)

    from rich.console import Console

    table = measure_table(
        f"load_local: {args.users} users per tier x {result['tiers']} tiers, {result['server_mode']} "
        f"servers, {result['cpus']} CPUs / {result['memory_gb']} GB",
        "value",
    )
    table.add_row(
        "success (server ready + notebook saved)", f"{result['succeeded']}/{result['users']} ({result['success_rate']:.0%})"
    )
    for key in ("sign_in_to_ready_p50_s", "sign_in_to_ready_p95_s", "sign_in_to_ready_max_s", "wall_s"):
        table.add_row(key.replace("_", " "), str(result[key]))
    for name, h in result["hubs"].items():
        table.add_row(f"{name} hub CPU (s) / peak RSS (MB)", f"{h['cpu_s']} / {h['peak_rss_mb']}")
    for err, count in result["errors"].items():
        table.add_row(f"failed: {err}", str(count))
    Console(width=160).print(table)
    print(f"written to {out.relative_to(ROOT)}")
    return 0 if result["success_rate"] == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
