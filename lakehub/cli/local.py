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

The work is lakehub.local.lifecycle's (up, status, down) and lakehub.local.backup's; here are
the arguments and what is printed.
"""

from __future__ import annotations

import contextlib
import json
import sys

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lakehub.cli.argtypes import positive_seconds, whole_number
from lakehub.errors import LakehubError
from lakehub.local import backup, lifecycle
from lakehub.local.lifecycle import PORT_SPAN, RUNTIMES, UP_TIMEOUT
from lakehub.local.state import StateDir


def base_port(text: str) -> int:
    """argparse type: a base port whose whole block of ports exists."""
    return whole_number(
        text,
        1,
        65535 - PORT_SPAN,
        "a port number; give one such as 8700",
        f"cannot be the first port: the platform uses it and up to {PORT_SPAN} above it; give 1-{65535 - PORT_SPAN}, e.g. 8700",
    )


def demo_users(text: str) -> int:
    """argparse type: demo users per tier, 1-100."""
    from lakehub.local.platform import MAX_DEMO_USERS

    return whole_number(
        text,
        1,
        MAX_DEMO_USERS,
        f"a number of users; give 1-{MAX_DEMO_USERS}, e.g. 10",
        f"demo users per tier: give 1-{MAX_DEMO_USERS}, e.g. 10",
    )


def metrics_port(text: str) -> int:
    """argparse type: a port for the Prometheus endpoint."""
    return whole_number(
        text,
        1024,
        65535,
        "a port number; give one such as 9464",
        "is not a port this user can serve on; give 1024-65535, e.g. 9464",
    )


def register(subparsers) -> None:
    local = subparsers.add_parser(
        "local", help="run the whole platform on this machine (AWS emulator)", description=__doc__.split("\n\n")[0]
    )
    sub = local.add_subparsers(dest="local_command", metavar="ACTION")
    common = {"help": "state folder (default .lakehub/local, or LAKEHUB_LOCAL_DIR)"}

    up = sub.add_parser("up", help="start the local platform (in the background; --foreground to stay attached)")
    up.add_argument("--state-dir", **common)
    up.add_argument(
        "--base-port",
        type=base_port,
        default=None,
        help="first of the fixed loopback ports: emulator = base, identity provider = base+1, "
        "credentials = base+2, hubs = base+10.. (default 8700)",
    )
    up.add_argument(
        "--server-mode",
        choices=("per-user", "shared"),
        default="per-user",
        help="per-user: each user's server is an emulated ECS task run by the local agent (the "
        "templates' default); shared: servers are processes of the hub",
    )
    up.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="container: hubs and users' servers run as podman containers of the hub image, as ECS "
        "runs them (the default where podman works); process: as processes of this machine's "
        "Python environment (quick iteration; the default where podman does not work)",
    )
    up.add_argument(
        "--demo-users",
        type=demo_users,
        default=None,
        metavar="N",
        help="demo users per tier, 1-100 (default 2: alice and bob in pii, carol and dave in nonpii; "
        "more are <tier>-user3, <tier>-user4, ...), each with a password generated at this up",
    )
    up.add_argument(
        "--metrics-port",
        type=metrics_port,
        default=None,
        metavar="PORT",
        help="also serve the dashboard's figures (hubs up, users, spawns, tasks, stops, alarms) in "
        "Prometheus text format on 127.0.0.1:PORT/metrics",
    )
    up.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C (then stop everything)")
    up.add_argument("--timeout", type=positive_seconds, default=UP_TIMEOUT, help="seconds to wait for every hub (default 600)")
    up.set_defaults(func=cmd_up)

    st = sub.add_parser("status", help="each part's real state (exit 1 when one is not answering), tiers, URLs, demo users")
    st.add_argument("--state-dir", **common)
    st.add_argument("--format", choices=("table", "json"), default="table")
    st.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="export the notebooks, stop everything, and back up the homes and hub databases")
    down.add_argument("--state-dir", **common)
    down.add_argument(
        "--no-export",
        action="store_true",
        help="stop without the last export (notebooks-export/ still holds what the emulator wrote through)",
    )
    down.add_argument(
        "--no-backup",
        action="store_true",
        help="stop without the backup of homes and hub databases (`lakehub local backup`) taken after everything stopped",
    )
    down.set_defaults(func=cmd_down)

    b = sub.add_parser("backup", help="snapshot users' homes and the hubs' databases into <state>/backups/<UTC time>/")
    b.add_argument("--state-dir", **common)
    b.add_argument("--keep", type=int, default=backup.KEEP, help=f"backups to keep, the newest (default {backup.KEEP})")
    b.add_argument("--format", choices=("table", "json"), default="table")
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser("restore-home", help="put a user's home back from a backup (`lakehub local backup`)")
    r.add_argument("--state-dir", **common)
    r.add_argument("--tier", required=True, help="the user's tier, e.g. pii")
    r.add_argument("--user", required=True, help="the hub user name, e.g. alice")
    r.add_argument(
        "--from",
        dest="when",
        metavar="TIME",
        help="a backup's name, or the newest backup taken at or before TIME (ISO 8601, UTC by default); "
        "default: the newest that holds the home",
    )
    r.add_argument("--force", action="store_true", help="replace a home that holds files (they are kept as a backup first)")
    r.set_defaults(func=cmd_restore_home)

    rt = sub.add_parser("resource-types", help="template resource types the emulator does not model")
    rt.add_argument("--format", choices=("table", "json"), default="table")
    rt.set_defaults(func=cmd_resource_types)

    image = sub.add_parser(
        "image",
        help="build the hub image from hub_images/Dockerfile with podman (or find it in the cache) and print its reference",
    )
    image.add_argument("--rebuild", action="store_true", help="build again even when podman has the image")
    image.add_argument("--format", choices=("table", "json"), default="table")
    image.set_defaults(func=cmd_image)

    local.set_defaults(func=lambda args: (local.print_help(), 2)[1])


def _say(line: str) -> None:
    print(f"lakehub local: {line}")


def _warn(line: str) -> None:
    print(f"lakehub local: {line}", file=sys.stderr)


@contextlib.contextmanager
def _build_display(console: Console):
    """On a terminal, a live line for image builds (lakehub.local.images `step`): what runs now
    and for how long; elsewhere None (the builds say one line per step)."""
    if not console.is_terminal:
        yield None
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task("", visible=False)
    shown = {"title": None}

    def step(title: str, current: str | None) -> None:
        if current is None:
            progress.update(task, visible=False)
            shown["title"] = None
            return
        if title != shown["title"]:
            progress.reset(task)
            shown["title"] = title
        progress.update(task, description=f"{title}: {current[:100]}", visible=True)

    with progress:
        yield step


def _wide() -> Console:
    """stdout; in logs and pipes wide enough to keep URLs and passwords on one line."""
    out = Console()
    return out if out.is_terminal else Console(width=160)


# ------------------------------------------------------------------------------------------
# up
# ------------------------------------------------------------------------------------------
def cmd_up(args) -> int:
    state = StateDir(args.state_dir)
    plan = lifecycle.plan_up(
        state,
        args.base_port,
        args.server_mode,
        getattr(args, "runtime", None),
        getattr(args, "demo_users", None),
        getattr(args, "metrics_port", None),
        warn=_warn,
    )
    console = Console(stderr=True)

    if plan.runtime == "container":
        # The first build takes minutes: here, with its progress, before the supervisor (and
        # --timeout) starts; the supervisor finds it cached.
        from lakehub.local.images import ensure_hub_image

        with _build_display(console) as step:
            ensure_hub_image(say=lambda line: console.print(f"  {line}"), step=step)

    if args.foreground:
        console.print(f"[bold]lakehub local[/]: starting in the foreground (Ctrl-C stops everything); state in {state.path}")
        return lifecycle.supervise(
            state, plan, say=lambda line: console.print(f"  {line}"), on_ready=lambda: print_ready(state.read(), console)
        )

    proc, run_id = lifecycle.start_background(state, plan)
    with console.status("starting the local platform", spinner="dots") as status:

        def shown(line: str) -> None:
            console.print(f"  {line}")
            status.update(line[:100])

        current = lifecycle.wait_ready(state, proc, run_id, args.timeout, on_line=shown)
    print_ready(current, console)
    return 0


def print_ready(current: dict, console=None) -> None:
    out = _wide()
    missing = current.get("unmodelled") or []
    if missing:
        t = Table(title="Not modelled by the emulator (placeholders only; see docs/LOCAL.md)", title_justify="left")
        t.add_column("resource type")
        t.add_column("in local mode")
        for row in missing:
            t.add_row(row["type"], row["local"])
        out.print(t)
    per_tier = current.get("demo_users_per_tier") or max((len(t["users"]) for t in current.get("tiers", [])), default=0)
    table = Table(
        title=f"lakehub local: ready in {current.get('ready_seconds', 0):.0f} s "
        f"({current.get('server_mode')} servers; runtime {current.get('runtime') or 'process'}; "
        f"{per_tier} demo users per tier; "
        f"emulator {current.get('emulator_endpoint')})",
        title_justify="left",
    )
    table.add_column("tier")
    table.add_column("URL")
    table.add_column("demo user")
    table.add_column("password")
    table.add_column("groups")
    for tier in current.get("tiers", []):
        for i, user in enumerate(tier["users"]):
            table.add_row(
                tier["name"] if i == 0 else "",
                tier["url"] if i == 0 else "",
                user["username"],
                user["password"],
                ",".join(user["groups"]),
            )
    out.print(table)
    how = "Ctrl-C" if current.get("run_id") == "foreground" else "`lakehub local down`"
    out.print(f"Stop with {how} (notebooks are exported and come back on the next `up`).")


# ------------------------------------------------------------------------------------------
# status
# ------------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    state = StateDir(args.state_dir)
    try:
        found = lifecycle.status(state)
    except lifecycle.NotReady as exc:
        if args.format == "json":
            print(
                json.dumps(
                    {
                        "tiers": [],
                        "emulator_endpoint": "",
                        "parts": [],
                        "healthy": False,
                        "runtime": exc.runtime,
                        "metrics": {},
                        "alarms": [],
                    }
                )
            )
        raise
    rows, down, seen = found.parts, found.down, found.observed
    if args.format == "json":
        print(
            json.dumps(
                dict(
                    lifecycle.status_json(state),
                    parts=rows,
                    healthy=not down,
                    metrics=seen["metrics"],
                    alarms=seen["alarms"],
                    metrics_error=seen["error"],
                ),
                indent=2,
            )
        )
    else:
        print_parts(rows)
        print_ready(found.current)
        print_observed(seen, _wide())
    if down:
        print(
            "lakehub local: not all parts are answering: "
            + ", ".join(f"{r['name']} ({r['state']}{'; ' + r['note'] if r.get('note') else ''})" for r in down),
            file=sys.stderr,
        )
        return 1
    return 0


def print_parts(rows: list[dict]) -> None:
    out = _wide()
    table = Table(title="lakehub local: parts", title_justify="left")
    for column in ("part", "pid", "state", "restarts", "last exit", "note"):
        table.add_column(column)
    for r in rows:
        colour = "green" if r["ok"] else "red"
        table.add_row(
            r["name"],
            str(r.get("pid") or ""),
            f"[{colour}]{r['state']}[/]",
            str(r.get("restarts", 0)),
            r.get("last_exit") or "",
            r.get("note") or "",
        )
    out.print(table)


def print_observed(seen: dict, console=None) -> None:
    """The figures as rich tables (lakehub.local.observe gathers them)."""
    from lakehub.local.observe import COUNT_WINDOW

    out = console or Console()
    if seen.get("error"):
        out.print(f"metrics: {seen['error']}")
        return
    t = Table(
        title=f"lakehub local: dashboard (gauges: latest minute; counts: last {COUNT_WINDOW // 60} min)", title_justify="left"
    )
    for column in (
        "tier",
        "hub up",
        "active users",
        "running servers",
        "spawns",
        "failures",
        "spawn s (mean/max)",
        "capacity errors",
        "spot interruptions",
        "user tasks (size/capacity)",
        "stopped (reason)",
    ):
        t.add_column(column)

    def show(v):
        return "no data" if v is None else str(v)

    for name, f in sorted((seen.get("metrics") or {}).items()):
        up = {None: "no data", 1: "[green]yes[/]", 0: "[red]no[/]"}[f["hub_up"]]
        latency = "" if f["spawn_seconds_mean"] is None else f"{f['spawn_seconds_mean']:.1f} / {f['spawn_seconds_max']:.1f}"
        tasks = ", ".join(f"{r['size']}/{r['capacity']}: {r['tasks']}" for r in f["user_tasks"])
        stopped = ", ".join(f"{k}: {v}" for k, v in sorted(f["servers_stopped"].items()) if v)
        t.add_row(
            name,
            up,
            show(f["active_users"]),
            show(f["running_servers"]),
            str(f["spawns"]),
            str(f["spawn_failures"]),
            latency,
            str(f["capacity_errors"]),
            str(f["spot_interruptions"]),
            tasks,
            stopped,
        )
    out.print(t)
    a = Table(title="lakehub local: alarms (evaluated locally by lakehub.local.alarms)", title_justify="left")
    for column in ("alarm", "tier", "state", "since", "reason"):
        a.add_column(column)
    colours = {"OK": "green", "ALARM": "red", "INSUFFICIENT_DATA": "yellow"}
    for row in seen.get("alarms") or []:
        state = row["state"] if row["evaluated_locally"] else f"{row['state']} (not evaluated locally)"
        a.add_row(
            row["name"], row["tier"], f"[{colours.get(row['state'], 'white')}]{state}[/]", row["since"] or "", row["reason"][:90]
        )
    if not seen.get("alarms"):
        a.add_row("(none)", "", "", "", "")
    out.print(a)


# ------------------------------------------------------------------------------------------
# down, backup, restore-home
# ------------------------------------------------------------------------------------------
def cmd_down(args) -> int:
    lifecycle.down(
        StateDir(args.state_dir), no_export=args.no_export, no_backup=getattr(args, "no_backup", False), say=_say, warn=_warn
    )
    return 0


def cmd_backup(args) -> int:
    state = StateDir(args.state_dir)
    if not state.path.is_dir():
        raise LakehubError(f"{state.path} is not a local platform's state folder; give --state-dir")
    if args.keep < 1:
        raise LakehubError(f"--keep {args.keep}: keep at least 1 backup")
    taken = backup.take_backup(state, keep=args.keep)
    if args.format == "json":
        print(json.dumps(json.loads((taken.path / backup.MANIFEST).read_text()) | {"path": str(taken.path)}, indent=2))
    else:
        _say(taken.line)
    return 1 if taken.problems else 0


def cmd_restore_home(args) -> int:
    _say(backup.restore_home(StateDir(args.state_dir), args.tier, args.user, args.when, args.force))
    return 0


# ------------------------------------------------------------------------------------------
# image, resource-types
# ------------------------------------------------------------------------------------------
def cmd_image(args) -> int:
    """`lakehub local image`: the local hub image (lakehub.local.images), built when missing."""
    from lakehub.local.images import hub_image

    console = Console(stderr=True)
    with _build_display(console) as step:
        found = hub_image(
            say=lambda line: console.print(f"  {line}", markup=False, highlight=False), rebuild=args.rebuild, step=step
        )
    if args.format == "json":
        print(
            json.dumps(
                {
                    "image": found.ref,
                    "id": found.image_id,
                    "size_bytes": found.size_bytes,
                    "cached": not found.built,
                    "build_seconds": round(found.seconds, 1) if found.built else None,
                }
            )
        )
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
