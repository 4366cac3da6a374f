"""`lakehub local up | status | down | backup | restore-home | resource-types`: the whole platform on this machine.

`up` starts a supervisor process in the background (it owns the emulator, the identity
provider, the local agent and the hubs, and writes its progress to the state folder), shows the
progress, and returns once every hub answers, with a table of tiers, URLs, demo users and
passwords. `--foreground` runs the supervisor in this process instead, until Ctrl-C.
While it runs, the emulator writes the notebook bucket through to <state>/notebooks-export/ as
it is written; `down` exports it there once more and stops everything (non-zero when that export
failed: the folder then holds each object as last saved); the next `up` puts those notebooks back.
`down` then backs up the homes and the hubs' databases (`backup`, lakehub/local/backup.py);
`restore-home` puts a user's home back from such a backup.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.local.waiting import tries
from lakehub.local.state import LOG_FILE, StateDir, already_running

UP_TIMEOUT = 600
RUNTIMES = ("container", "process")
DOWN_TIMEOUT = 60
# The platform's ports run from the base up to base+50+tiers (lakehub.local.platform.plan_ports).
PORT_SPAN = 100


def base_port(text: str) -> int:
    """argparse type: a base port whose whole block of ports exists."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give one such as 8700") from None
    if not 1 <= value <= 65535 - PORT_SPAN:
        raise argparse.ArgumentTypeError(
            f"{value} cannot be the first port: the platform uses it and up to {PORT_SPAN} above it; "
            f"give 1-{65535 - PORT_SPAN}, e.g. 8700"
        )
    return value


def demo_users(text: str) -> int:
    """argparse type: demo users per tier, 1-100."""
    import argparse

    from lakehub.local.platform import MAX_DEMO_USERS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of users; give 1-{MAX_DEMO_USERS}, e.g. 10") from None
    if not 1 <= value <= MAX_DEMO_USERS:
        raise argparse.ArgumentTypeError(f"{value} demo users per tier: give 1-{MAX_DEMO_USERS}, e.g. 10")
    return value


def metrics_port(text: str) -> int:
    """argparse type: a port for the Prometheus endpoint."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give one such as 9464") from None
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port this user can serve on; give 1024-65535, e.g. 9464")
    return value


def register(subparsers) -> None:
    from lakehub.release.deploy import positive_seconds

    local = subparsers.add_parser("local", help="run the whole platform on this machine (AWS emulator)",
                                  description=__doc__.split("\n\n")[0])
    sub = local.add_subparsers(dest="local_command", metavar="ACTION")
    common = {"help": "state folder (default .lakehub/local, or LAKEHUB_LOCAL_DIR)"}

    up = sub.add_parser("up", help="start the local platform (in the background; --foreground to stay attached)")
    up.add_argument("--state-dir", **common)
    up.add_argument("--base-port", type=base_port, default=None,
                    help="first of the fixed loopback ports: emulator = base, identity provider = base+1, "
                         "credentials = base+2, hubs = base+10.. (default 8700)")
    up.add_argument("--server-mode", choices=("per-user", "shared"), default="per-user",
                    help="per-user: each user's server is an emulated ECS task run by the local agent (the "
                         "templates' default); shared: servers are processes of the hub")
    up.add_argument("--runtime", choices=RUNTIMES, default=None,
                    help="container: hubs and users' servers run as podman containers of the hub image, as ECS "
                         "runs them (the default where podman works); process: as processes of this machine's "
                         "Python environment (quick iteration; the default where podman does not work)")
    up.add_argument("--demo-users", type=demo_users, default=None, metavar="N",
                    help="demo users per tier, 1-100 (default 2: alice and bob in pii, carol and dave in nonpii; "
                         "more are <tier>-user3, <tier>-user4, ...), each with a password generated at this up")
    up.add_argument("--metrics-port", type=metrics_port, default=None, metavar="PORT",
                    help="also serve the dashboard's figures (hubs up, users, spawns, tasks, stops, alarms) in "
                         "Prometheus text format on 127.0.0.1:PORT/metrics")
    up.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C (then stop everything)")
    up.add_argument("--timeout", type=positive_seconds, default=UP_TIMEOUT, help="seconds to wait for every hub (default 600)")
    up.set_defaults(func=cmd_up)

    st = sub.add_parser("status", help="each part's real state (exit 1 when one is not answering), tiers, URLs, demo users")
    st.add_argument("--state-dir", **common)
    st.add_argument("--format", choices=("table", "json"), default="table")
    st.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="export the notebooks, stop everything, and back up the homes and hub databases")
    down.add_argument("--state-dir", **common)
    down.add_argument("--no-export", action="store_true", help="stop without the last export (notebooks-export/ still holds "
                                                             "what the emulator wrote through)")
    down.add_argument("--no-backup", action="store_true", help="stop without the backup of homes and hub databases "
                                                              "(`lakehub local backup`) taken after everything stopped")
    down.set_defaults(func=cmd_down)

    from lakehub.local import backup

    backup.register(sub, common)

    rt = sub.add_parser("resource-types", help="template resource types the emulator does not model")
    rt.add_argument("--format", choices=("table", "json"), default="table")
    rt.set_defaults(func=cmd_resource_types)

    image = sub.add_parser("image", help="build the hub image from hub_images/Dockerfile with podman (or find it in "
                                         "the cache) and print its reference")
    image.add_argument("--rebuild", action="store_true", help="build again even when podman has the image")
    image.add_argument("--format", choices=("table", "json"), default="table")
    image.set_defaults(func=cmd_image)

    local.set_defaults(func=lambda args: (local.print_help(), 2)[1])


# ------------------------------------------------------------------------------------------
# up
# ------------------------------------------------------------------------------------------
def cmd_up(args) -> int:
    from rich.console import Console

    from lakehub.local.platform import (DEFAULT_BASE_PORT, DEFAULT_DEMO_USERS, check_ports, plan_ports, recover,
                                        supervise, tiers_from_template)

    state = StateDir(args.state_dir)
    if state.running_pid():
        raise already_running(state)
    # A crashed supervisor's processes would hold the ports. Its notebooks are on disk already
    # (written through as saved); `down` would export them once more, `up` restores that folder.
    cleaned = recover(state, export=False)
    if cleaned:
        print(f"lakehub local: {cleaned.line}", file=sys.stderr)
    runtime = choose_runtime(getattr(args, "runtime", None))
    # In a container the hub makes its users inside the container, as on ECS.
    if args.server_mode == "shared" and os.geteuid() == 0 and runtime == "process":
        raise LakehubError(
            "--server-mode shared as root would create a Unix user on this machine for each data scientist "
            "(as the hub image does); run it as a normal user, use --runtime container, or the default per-user mode"
        )
    base = DEFAULT_BASE_PORT if args.base_port is None else args.base_port
    users = DEFAULT_DEMO_USERS if getattr(args, "demo_users", None) is None else args.demo_users
    ports = plan_ports(base, tiers_from_template())
    port = getattr(args, "metrics_port", None)
    if port:
        if port in ports:
            raise LakehubError(f"--metrics-port {port} is {ports[port]}'s port; give one outside {base}-{base + PORT_SPAN}")
        ports[port] = "the metrics endpoint (--metrics-port)"
    check_ports(ports)
    console = Console(stderr=True)
    state.ensure()  # 0700: user servers run as other accounts and must not read it
    from lakehub.local.accounts import can_isolate, not_isolated_warning

    if not can_isolate():
        print(f"lakehub local: {not_isolated_warning()}", file=sys.stderr)

    if runtime == "container":
        # The first build takes minutes: here, with its progress, before the supervisor (and
        # --timeout) starts; the supervisor finds it cached.
        from lakehub.local.images import ensure_hub_image

        ensure_hub_image(say=lambda line: console.print(f"  {line}"))

    if args.foreground:
        console.print(f"[bold]lakehub local[/]: starting in the foreground (Ctrl-C stops everything); state in {state.path}")
        return supervise(state, base, args.server_mode, run_id="foreground",
                         say=lambda line: console.print(f"  {line}"),
                         on_ready=lambda: print_ready(state.read(), console), demo_users=users, runtime=runtime,
                         metrics_port=port)

    run_id = secrets.token_hex(8)
    log_path = state.file(LOG_FILE)
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakehub.local.platform", "--state-dir", str(state.path), "--base-port", str(base),
             "--server-mode", args.server_mode, "--run-id", run_id, "--demo-users", str(users), "--runtime", runtime,
             *(["--metrics-port", str(port)] if port else [])],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    return _watch(state, proc, run_id, args.timeout, console)


def choose_runtime(asked: str | None) -> str:
    """The runtime for hubs and users' servers: `asked`, or containers where podman works.
    An explicit `container` where podman does not work is a one-line error (nothing started);
    the default falls back to processes and says why in one line."""
    if asked == "process":
        return "process"
    from lakehub.local.images import podman_problem

    problem = podman_problem()
    if problem is None:
        return "container"
    if asked == "container":
        raise LakehubError(f"--runtime container: {problem}; or run hubs and servers as processes with --runtime process")
    print(f"lakehub local: containers: {problem}; running hubs and servers as processes", file=sys.stderr)
    return "process"


def _watch(state: StateDir, proc: subprocess.Popen, run_id: str, timeout: float, console) -> int:
    shown = 0
    with console.status("starting the local platform", spinner="dots") as status:
        for _ in tries(timeout, interval=0.3):
            current = state.read()
            mine = current.get("run_id") == run_id
            if mine:
                lines = current.get("progress", [])
                for item in lines[shown:]:
                    console.print(f"  {item['line']}")
                    status.update(item["line"][:100])
                shown = len(lines)
                if current.get("phase") == "ready":
                    break
                if current.get("phase") in ("failed", "stopping", "stopped"):
                    _reap(proc)
                    raise LakehubError(current.get("error") or f"the local platform stopped while starting; see {state.file(LOG_FILE)}")
            code = proc.poll()
            if code is not None:
                if code == 3 and not mine:
                    raise already_running(state)
                raise LakehubError(f"the local platform exited while starting (code {code}); see {state.file(LOG_FILE)}")
        else:
            _stop_pid(proc.pid)
            raise LakehubError(f"the local platform was not ready within {timeout:.0f} s; see {state.file(LOG_FILE)}")
    print_ready(state.read(), console)
    return 0


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        _stop_pid(proc.pid)


def print_ready(current: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)  # logs and pipes: keep URLs and passwords on one line
    missing = current.get("unmodelled") or []
    if missing:
        t = Table(title="Not modelled by the emulator (placeholders only; see docs/LOCAL.md)", title_justify="left")
        t.add_column("resource type")
        t.add_column("in local mode")
        for row in missing:
            t.add_row(row["type"], row["local"])
        out.print(t)
    per_tier = current.get("demo_users_per_tier") or max((len(t["users"]) for t in current.get("tiers", [])), default=0)
    table = Table(title=f"lakehub local: ready in {current.get('ready_seconds', 0):.0f} s "
                        f"({current.get('server_mode')} servers; runtime {current.get('runtime') or 'process'}; "
                        f"{per_tier} demo users per tier; "
                        f"emulator {current.get('emulator_endpoint')})",
                  title_justify="left")
    table.add_column("tier")
    table.add_column("URL")
    table.add_column("demo user")
    table.add_column("password")
    table.add_column("groups")
    for tier in current.get("tiers", []):
        for i, user in enumerate(tier["users"]):
            table.add_row(tier["name"] if i == 0 else "", tier["url"] if i == 0 else "", user["username"],
                          user["password"], ",".join(user["groups"]))
    out.print(table)
    how = "Ctrl-C" if current.get("run_id") == "foreground" else "`lakehub local down`"
    out.print(f"Stop with {how} (notebooks are exported and come back on the next `up`).")


# ------------------------------------------------------------------------------------------
# status
# ------------------------------------------------------------------------------------------
def status_json(state: StateDir) -> dict:
    current = state.read()
    return {"tiers": current.get("tiers", []), "emulator_endpoint": current.get("emulator_endpoint", ""),
            "demo_users_per_tier": current.get("demo_users_per_tier", 0),
            "runtime": current.get("runtime") or "process"}


def probe_parts(current: dict, supervisor_alive: bool = True) -> list[dict]:
    """Each part's real state: what the supervisor recorded (restarts, restarting, failed),
    checked now: does its process run and does it answer (a short probe)?"""
    from lakehub.local.control import HEADER, TOKEN_FILE, read_token
    from lakehub.local.platform import probe
    from lakehub.local.processes import start_time

    headers = {}
    try:
        headers = {HEADER: read_token(Path(current.get("_state_dir", ".")) / TOKEN_FILE)}
    except (OSError, LakehubError):
        pass
    rows = []
    for part in current.get("parts") or []:
        row = dict(part)
        recorded = row.get("state")
        if recorded in ("restarting", "failed"):
            pass  # the supervisor's word: down now
        elif row["name"] in ("agent", "credentials endpoint"):
            # threads of the supervisor: alive with it
            answers = supervisor_alive and (not row.get("url") or probe(row["url"], timeout=2, any_status=True))
            row["state"] = "answering" if answers and recorded == "running" else "not answering"
        else:
            alive = bool(row.get("pid")) and start_time(int(row["pid"])) is not None
            answers = alive and probe(row["url"], headers if row["name"] == "emulator" else None, timeout=2,
                                      any_status=row["name"] == "emulator")
            row["state"] = "answering" if answers else ("starting" if recorded == "starting" and alive else "not answering")
        row["ok"] = row["state"] == "answering" and not row.get("note", "").startswith("restarted with its state lost")
        if row["name"] == "agent":
            row["ok"] = row["state"] == "answering"
        rows.append(row)
    return rows


def cmd_status(args) -> int:
    state = StateDir(args.state_dir)
    pid = state.running_pid()
    current = state.read()
    crashed = not pid and current.get("phase") not in (None, "stopped", "failed")
    if not crashed and (not pid or current.get("phase") != "ready"):
        if args.format == "json":
            print(json.dumps({"tiers": [], "emulator_endpoint": "", "parts": [], "healthy": False,
                              "runtime": current.get("runtime") or "", "metrics": {}, "alarms": []}))
        phase = current.get("phase") if pid else "not running"
        raise LakehubError(f"no local platform is ready ({phase}); start it with `lakehub local up`")
    rows = probe_parts(dict(current, _state_dir=str(state.path)), supervisor_alive=not crashed)
    if crashed:
        rows.insert(0, {"name": "supervisor", "pid": (current.get("supervisor") or {}).get("pid") or current.get("pid"),
                        "state": "not running", "restarts": 0, "url": "", "ok": False,
                        "note": "it died without stopping; `lakehub local down` ends what it left"})
    down = [r for r in rows if not r["ok"]]
    seen = observed(current, rows)
    if args.format == "json":
        print(json.dumps(dict(status_json(state), parts=rows, healthy=not down, metrics=seen["metrics"],
                              alarms=seen["alarms"], metrics_error=seen["error"]), indent=2))
    else:
        print_parts(rows)
        print_ready(current)
        from lakehub.local.observe import print_observed

        print_observed(seen, _console())
    if down:
        print("lakehub local: not all parts are answering: "
              + ", ".join(f"{r['name']} ({r['state']}{'; ' + r['note'] if r.get('note') else ''})" for r in down),
              file=sys.stderr)
        return 1
    return 0


def observed(current: dict, rows: list[dict]) -> dict:
    """The dashboard's figures and the alarms, from the emulator (lakehub.local.observe); a
    one-line error when the emulator is not answering (no call then: status stays fast)."""
    from lakehub.local.observe import observe
    from lakehub.settings import default_settings

    emulator = next((r for r in rows if r["name"] == "emulator"), None)
    if emulator is not None and emulator["state"] != "answering":
        return {"metrics": {}, "alarms": [], "error": f"the emulator is {emulator['state']}"}
    tiers = [t["name"] for t in current.get("tiers", [])]
    return observe(current.get("emulator_endpoint", ""), current.get("admin"), default_settings().platform_name, tiers)


def _console():
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=160)


def print_parts(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    table = Table(title="lakehub local: parts", title_justify="left")
    for column in ("part", "pid", "state", "restarts", "last exit", "note"):
        table.add_column(column)
    for r in rows:
        colour = "green" if r["ok"] else "red"
        table.add_row(r["name"], str(r.get("pid") or ""), f"[{colour}]{r['state']}[/]", str(r.get("restarts", 0)),
                      r.get("last_exit") or "", r.get("note") or "")
    out.print(table)


# ------------------------------------------------------------------------------------------
# down
# ------------------------------------------------------------------------------------------
def _stop_pid(pid: int, timeout: float = DOWN_TIMEOUT) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    for _ in tries(timeout, interval=0.2):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child (foreground tests): reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return False


def cmd_down(args) -> int:
    from lakehub.local.platform import recover

    state = StateDir(args.state_dir)
    pid = state.running_pid()
    if not pid:
        cleaned = recover(state, export=not args.no_export)
        if not cleaned:
            print(f"lakehub local: nothing is running from {state.path}")
            return 0
        print(f"lakehub local: {cleaned.line}")
        if cleaned.exported is not None:
            print(f"lakehub local: exported {cleaned.exported} notebook files to {state.export_dir}")
        elif cleaned.export_error:
            raise not_exported(state, cleaned.export_error)
        return 0
    # The supervisor exports the notebook bucket as it stops (also on Ctrl-C in --foreground).
    was_ready = state.read().get("phase") == "ready"
    state.update(no_export=bool(args.no_export), exported=None, export_error=None)
    clean = _stop_pid(pid, timeout=DOWN_TIMEOUT + 60)
    current = state.read()
    print(f"lakehub local: stopped{'' if clean else ' (forced)'}")
    if current.get("exported") is not None:
        print(f"lakehub local: exported {current['exported']} notebook files to {state.export_dir}")
    if not clean:  # the supervisor was killed: end what it could not (once its lock is free)
        for _ in tries(10, interval=0.2):
            if not state.running_pid():
                break
        cleaned = recover(state, export=False)
        if cleaned:
            print(f"lakehub local: {cleaned.line}")
    if not getattr(args, "no_backup", False):
        from lakehub.local.backup import backup_at_down

        backup_at_down(state)
    if current.get("exported") is None and was_ready and not args.no_export:
        why = current.get("export_error") or "the supervisor stopped before exporting"
        raise not_exported(state, why)
    return 0


def not_exported(state: StateDir, why: str) -> LakehubError:
    return LakehubError(f"the notebooks were not exported ({why}); the last good copy is {state.export_dir} "
                        "(written as each was saved), and the next `up` restores it")


def cmd_image(args) -> int:
    """`lakehub local image`: the local hub image (lakehub.local.images), built when missing."""
    from rich.console import Console

    from lakehub.local.images import hub_image

    console = Console(stderr=True)
    found = hub_image(say=lambda line: console.print(f"  {line}", markup=False, highlight=False), rebuild=args.rebuild)
    if args.format == "json":
        print(json.dumps({"image": found.ref, "id": found.image_id, "size_bytes": found.size_bytes,
                          "cached": not found.built, "build_seconds": round(found.seconds, 1) if found.built else None}))
        return 0
    how = f"built in {found.seconds:.0f} s" if found.built else "cached"
    print(f"{found.ref}\t{found.size_bytes / 1e9:.2f} GB\t{how}")
    return 0


def cmd_resource_types(args) -> int:
    from lakehub.local.unmodelled import unmodelled

    rows = unmodelled()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['type']:52} {row['local']}")
    return 0
