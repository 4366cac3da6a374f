"""Hub spawn benchmark: time from sign-in to a ready user server, and memory of an idle server.

Runs the real stack on loopback, as the end-to-end tests do: JupyterHub with
hub_images/jupyterhub_config.py, configurable-http-proxy, moto (S3) and the loopback identity
provider (OpenID Connect by default, or slapd over LDAPS). N different users sign in one after
another through the provider's login form; for each, the clock runs from the first request of
the sign-in to the hub reporting the server ready (poll every 50 ms). Then, with every server
idle (no kernel), it reads each server's resident memory (RSS, the server process and its
children).

    .venv/bin/python benchmarks/hub_spawn.py [--spawns 10] [--idp oidc|ldap] [--json-only]

As root (CI, the image) each server runs as its own new Unix user, so the first-spawn time
includes creating that user. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "hub")]

import psutil  # noqa: E402
import requests  # noqa: E402

import hub_harness as H  # noqa: E402
from common import print_measures  # noqa: E402
from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, emulator_client, start_moto_server  # noqa: E402


def wait_ready_fast(hub_url: str, user: str, token: str, timeout: float = 120.0) -> None:
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = (requests.get(f"{hub_url}/hub/api/users/{user}", headers=headers, timeout=10).json().get("servers") or {}).get(
            ""
        )
        if server and server.get("ready"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{user}'s server was not ready within {timeout:.0f} s")


def server_rss(user: str) -> int:
    """RSS in bytes of the user's single-user server process and its children (none when idle)."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "jupyterhub.singleuser" in " ".join(cmd) and proc.environ().get("JUPYTERHUB_USER") == user:
                return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            continue
    raise RuntimeError(f"no server process found for {user}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawns", type=int, default=10)
    parser.add_argument("--idp", choices=["oidc", "ldap"], default="oidc")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="wait before measuring memory")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)

    run = uuid.uuid4().hex[:6]
    users = [f"bench{run}{i:02d}" for i in range(args.spawns)]
    passwords = {u: "pw-" + secrets.token_urlsafe(10) for u in users}
    groups = {"analysts": users}
    work = Path(tempfile.mkdtemp(prefix="lakehub-bench-"))
    work.chmod(0o755)
    moto = idp = hub = creds = None
    changed = []
    before = H.unix_users_with_prefix()
    try:
        changed = H.open_interpreter_path() if os.geteuid() == 0 else []
        moto = start_moto_server(log_path=work / "moto.log")
        s3 = emulator_client("s3", moto.endpoint_url)
        bucket = f"lakehub-bench-{run}"
        s3.create_bucket(Bucket=bucket)
        creds = H.CredentialsEndpoint(EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY)
        port = H.free_port()
        idp, extra, sign_in = H.start_idp(args.idp, passwords, groups, port, work)
        extra["LAKEHUB_ALLOWED_GROUPS"] = "analysts"
        env = H.base_hub_env("bench", bucket, "tiers/bench", port, work, moto.endpoint_url, creds.url, extra)
        t0 = time.monotonic()
        hub = H.start_hub(env, work)
        hub_start = time.monotonic() - t0
        hub.unix_users.update(H.unix_username_guess(u) for u in users)

        spawn_times = []
        for user in users:
            t0 = time.monotonic()
            session, response = sign_in(hub.url, user, passwords[user])
            if response.status_code != 200:
                raise RuntimeError(f"{user} sign-in failed: {response.status_code}\n{hub.log()[-2000:]}")
            token = H.api_token(session, hub.url, user)
            wait_ready_fast(hub.url, user, token)
            spawn_times.append(time.monotonic() - t0)

        time.sleep(args.idle_seconds)
        rss = [server_rss(u) for u in users]
        hub_rss = psutil.Process(hub.process.pid).memory_info().rss
        proxy_rss = sum(
            c.memory_info().rss
            for c in psutil.Process(hub.process.pid).children()
            if "configurable-http-proxy" in " ".join(c.cmdline())
        )
        mib = 1024 * 1024
        result = {
            "idp": args.idp,
            "spawns": len(spawn_times),
            "runs_as_separate_unix_users": os.geteuid() == 0,
            "hub_start_s": round(hub_start, 2),
            "sign_in_to_ready_s": {
                "median": round(statistics.median(spawn_times), 2),
                "min": round(min(spawn_times), 2),
                "max": round(max(spawn_times), 2),
                "all": [round(t, 2) for t in spawn_times],
            },
            "idle_server_rss_mib": {
                "median": round(statistics.median(rss) / mib, 1),
                "min": round(min(rss) / mib, 1),
                "max": round(max(rss) / mib, 1),
            },
            "hub_rss_mib": round(hub_rss / mib, 1),
            "proxy_rss_mib": round(proxy_rss / mib, 1),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
        if not args.json_only:
            s, m = result["sign_in_to_ready_s"], result["idle_server_rss_mib"]
            rows = [
                ("hub start (process -> /hub/health)", f"{result['hub_start_s']:.2f} s"),
                (f"sign-in -> server ready, median of {len(spawn_times)}", f"{s['median']:.2f} s"),
                ("sign-in -> server ready, min / max", f"{s['min']:.2f} / {s['max']:.2f} s"),
                ("idle user server RSS, median", f"{m['median']:.1f} MiB"),
                ("idle user server RSS, min / max", f"{m['min']:.1f} / {m['max']:.1f} MiB"),
                (f"hub RSS with {len(users)} servers", f"{result['hub_rss_mib']:.1f} MiB"),
                ("proxy RSS", f"{result['proxy_rss_mib']:.1f} MiB"),
            ]
            print(
                f"hub spawn benchmark ({args.idp}, {os.cpu_count()} CPUs, "
                f"{'one Unix user per server' if result['runs_as_separate_unix_users'] else 'not root: same user'})"
            )
            print_measures(rows, rule=12)
        print(json.dumps(result))
        return 0
    finally:
        if hub:
            hub.stop()
        for thing in (idp, moto, creds):
            if thing:
                thing.stop()
        H.remove_unix_users(H.unix_users_with_prefix() - before)
        H.restore_modes(changed)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
