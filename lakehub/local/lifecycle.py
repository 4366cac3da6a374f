"""Start, watch, look at and stop the local platform: what `lakehub local up | status | down`
do (lakehub.cli.local parses their arguments and prints).

`up` starts a supervisor process (lakehub.local.platform) in the background and follows the
progress it writes to the state folder until every hub answers; `status` checks each part the
supervisor recorded (does its process run, does it answer); `down` stops the supervisor (which
exports the notebook bucket as it stops), ends what a killed one left and backs up the homes and
hub databases (lakehub.local.backup).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lakehub.errors import LakehubError
from lakehub.local.state import LOG_FILE, StateDir, already_running
from lakehub.waiting import tries

UP_TIMEOUT = 600
RUNTIMES = ("container", "process")
DOWN_TIMEOUT = 60
# The platform's ports run from the base up to base+50+tiers (lakehub.local.platform.plan_ports).
PORT_SPAN = 100

Say = Callable[[str], None]


def _nothing(line: str) -> None:
    pass


# ------------------------------------------------------------------------------------------
# up
# ------------------------------------------------------------------------------------------
@dataclass
class UpPlan:
    """What `up` runs with, checked: nothing of the platform is started yet."""

    base_port: int
    server_mode: str
    runtime: str
    demo_users: int
    metrics_port: int | None


def plan_up(
    state: StateDir,
    base_port: int | None,
    server_mode: str,
    runtime: str | None,
    demo_users: int | None,
    metrics_port: int | None,
    warn: Say = _nothing,
) -> UpPlan:
    """Check that `up` can start (nothing running, a runtime that works, free ports), end what a
    crashed supervisor left, and make the state folder. `warn` is told of each notice."""
    from lakehub.local.platform import (
        DEFAULT_BASE_PORT,
        DEFAULT_DEMO_USERS,
        check_ports,
        plan_ports,
        recover,
        tiers_from_template,
    )

    if state.running_pid():
        raise already_running(state)
    # A crashed supervisor's processes would hold the ports. Its notebooks are on disk already
    # (written through as saved); `down` would export them once more, `up` restores that folder.
    cleaned = recover(state, export=False)
    if cleaned:
        warn(cleaned.line)
    runtime = choose_runtime(runtime, warn)
    # In a container the hub makes its users inside the container, as on ECS.
    if server_mode == "shared" and os.geteuid() == 0 and runtime == "process":
        raise LakehubError(
            "--server-mode shared as root would create a Unix user on this machine for each data scientist "
            "(as the hub image does); run it as a normal user, use --runtime container, or the default per-user mode"
        )
    base = DEFAULT_BASE_PORT if base_port is None else base_port
    users = DEFAULT_DEMO_USERS if demo_users is None else demo_users
    ports = plan_ports(base, tiers_from_template())
    if metrics_port:
        if metrics_port in ports:
            raise LakehubError(
                f"--metrics-port {metrics_port} is {ports[metrics_port]}'s port; give one outside {base}-{base + PORT_SPAN}"
            )
        ports[metrics_port] = "the metrics endpoint (--metrics-port)"
    check_ports(ports)
    state.ensure()  # 0700: user servers run as other accounts and must not read it
    from lakehub.local.accounts import can_isolate, not_isolated_warning

    if not can_isolate():
        warn(not_isolated_warning())
    return UpPlan(base, server_mode, runtime, users, metrics_port)


def choose_runtime(asked: str | None, warn: Say = _nothing) -> str:
    """The runtime for hubs and users' servers: `asked`, or containers where podman works.
    An explicit `container` where podman does not work is a one-line error (nothing started);
    the default falls back to processes and says why in one line (to `warn`)."""
    if asked == "process":
        return "process"
    from lakehub.local.images import podman_problem

    problem = podman_problem()
    if problem is None:
        return "container"
    if asked == "container":
        raise LakehubError(f"--runtime container: {problem}; or run hubs and servers as processes with --runtime process")
    warn(f"containers: {problem}; running hubs and servers as processes")
    return "process"


def supervise(state: StateDir, plan: UpPlan, say: Say, on_ready: Callable[[], None]) -> int:
    """Run the supervisor in this process until Ctrl-C (`up --foreground`)."""
    from lakehub.local.platform import supervise as run_supervisor

    return run_supervisor(
        state,
        plan.base_port,
        plan.server_mode,
        run_id="foreground",
        say=say,
        on_ready=on_ready,
        demo_users=plan.demo_users,
        runtime=plan.runtime,
        metrics_port=plan.metrics_port,
    )


def start_background(state: StateDir, plan: UpPlan) -> tuple[subprocess.Popen, str]:
    """Start the supervisor as a process of its own session, logging to the state folder; returns
    it and its run id (which marks the progress it writes)."""
    import secrets

    run_id = secrets.token_hex(8)
    log_path = state.file(LOG_FILE)
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lakehub.local.platform",
                "--state-dir",
                str(state.path),
                "--base-port",
                str(plan.base_port),
                "--server-mode",
                plan.server_mode,
                "--run-id",
                run_id,
                "--demo-users",
                str(plan.demo_users),
                "--runtime",
                plan.runtime,
                *(["--metrics-port", str(plan.metrics_port)] if plan.metrics_port else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    return proc, run_id


def wait_ready(state: StateDir, proc: subprocess.Popen, run_id: str, timeout: float, on_line: Say = _nothing) -> dict:
    """Follow the supervisor's progress (each new line to `on_line`) until every hub answers;
    returns the state. One LakehubError line when it stops, exits or is not ready in time."""
    shown = 0
    for _ in tries(timeout, interval=0.3):
        current = state.read()
        mine = current.get("run_id") == run_id
        if mine:
            lines = current.get("progress", [])
            for item in lines[shown:]:
                on_line(item["line"])
            shown = len(lines)
            if current.get("phase") == "ready":
                return state.read()
            if current.get("phase") in ("failed", "stopping", "stopped"):
                _reap(proc)
                raise LakehubError(
                    current.get("error") or f"the local platform stopped while starting; see {state.file(LOG_FILE)}"
                )
        code = proc.poll()
        if code is not None:
            if code == 3 and not mine:
                raise already_running(state)
            raise LakehubError(f"the local platform exited while starting (code {code}); see {state.file(LOG_FILE)}")
    stop_pid(proc.pid)
    raise LakehubError(f"the local platform was not ready within {timeout:.0f} s; see {state.file(LOG_FILE)}")


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_pid(proc.pid)


# ------------------------------------------------------------------------------------------
# status
# ------------------------------------------------------------------------------------------
class NotReady(LakehubError):
    """No local platform is ready; `runtime` is the one the state folder last recorded."""

    def __init__(self, message: str, runtime: str):
        super().__init__(message)
        self.runtime = runtime


@dataclass
class Status:
    current: dict  # the supervisor's state (state.json)
    parts: list[dict]  # each part's real state (probe_parts), a crashed supervisor first
    observed: dict  # the dashboard's figures and alarms (observed)

    @property
    def down(self) -> list[dict]:
        return [r for r in self.parts if not r["ok"]]


def status(state: StateDir) -> Status:
    """The platform's parts, checked now, and what the emulator observed; NotReady when no
    platform is ready (a crashed supervisor's platform is reported, with the supervisor down)."""
    pid = state.running_pid()
    current = state.read()
    crashed = not pid and current.get("phase") not in (None, "stopped", "failed")
    if not crashed and (not pid or current.get("phase") != "ready"):
        phase = current.get("phase") if pid else "not running"
        raise NotReady(f"no local platform is ready ({phase}); start it with `lakehub local up`", current.get("runtime") or "")
    rows = probe_parts(dict(current, _state_dir=str(state.path)), supervisor_alive=not crashed)
    if crashed:
        rows.insert(
            0,
            {
                "name": "supervisor",
                "pid": (current.get("supervisor") or {}).get("pid") or current.get("pid"),
                "state": "not running",
                "restarts": 0,
                "url": "",
                "ok": False,
                "note": "it died without stopping; `lakehub local down` ends what it left",
            },
        )
    return Status(current, rows, observed(current, rows))


def status_json(state: StateDir) -> dict:
    current = state.read()
    return {
        "tiers": current.get("tiers", []),
        "emulator_endpoint": current.get("emulator_endpoint", ""),
        "demo_users_per_tier": current.get("demo_users_per_tier", 0),
        "runtime": current.get("runtime") or "process",
    }


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
            answers = alive and probe(
                row["url"], headers if row["name"] == "emulator" else None, timeout=2, any_status=row["name"] == "emulator"
            )
            row["state"] = "answering" if answers else ("starting" if recorded == "starting" and alive else "not answering")
        row["ok"] = row["state"] == "answering" and not row.get("note", "").startswith("restarted with its state lost")
        if row["name"] == "agent":
            row["ok"] = row["state"] == "answering"
        rows.append(row)
    return rows


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


# ------------------------------------------------------------------------------------------
# down
# ------------------------------------------------------------------------------------------
def stop_pid(pid: int, timeout: float = DOWN_TIMEOUT) -> bool:
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


def down(state: StateDir, no_export: bool, no_backup: bool, say: Say = _nothing, warn: Say = _nothing) -> None:
    """Stop the platform: the supervisor exports the notebook bucket as it stops; then end what a
    killed one left and back up the homes and hub databases. `say` is told what was done, `warn`
    of a backup that could not be taken; a missing export is a LakehubError (after the rest)."""
    from lakehub.local.platform import recover

    pid = state.running_pid()
    if not pid:
        cleaned = recover(state, export=not no_export)
        if not cleaned:
            say(f"nothing is running from {state.path}")
            return
        say(cleaned.line)
        if cleaned.exported is not None:
            say(f"exported {cleaned.exported} notebook files to {state.export_dir}")
        elif cleaned.export_error:
            raise not_exported(state, cleaned.export_error)
        return
    # The supervisor exports the notebook bucket as it stops (also on Ctrl-C in --foreground).
    was_ready = state.read().get("phase") == "ready"
    state.update(no_export=bool(no_export), exported=None, export_error=None)
    clean = stop_pid(pid, timeout=DOWN_TIMEOUT + 60)
    current = state.read()
    say(f"stopped{'' if clean else ' (forced)'}")
    if current.get("exported") is not None:
        say(f"exported {current['exported']} notebook files to {state.export_dir}")
    if not clean:  # the supervisor was killed: end what it could not (once its lock is free)
        for _ in tries(10, interval=0.2):
            if not state.running_pid():
                break
        cleaned = recover(state, export=False)
        if cleaned:
            say(cleaned.line)
    if not no_backup:
        from lakehub.local.backup import backup_at_down

        backup_at_down(state, say, warn)
    if current.get("exported") is None and was_ready and not no_export:
        why = current.get("export_error") or "the supervisor stopped before exporting"
        raise not_exported(state, why)


def not_exported(state: StateDir, why: str) -> LakehubError:
    return LakehubError(
        f"the notebooks were not exported ({why}); the last good copy is {state.export_dir} "
        "(written as each was saved), and the next `up` restores it"
    )
