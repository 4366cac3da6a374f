"""The local platform's supervisor: brings every part up in order, owns the child processes,
and stops them all on SIGTERM (what `lakehub local down` sends) or Ctrl-C (--foreground).

    python -m lakehub.local.platform --state-dir .lakehub/local --base-port 8700

Order (each step is a progress line in state.json, which `lakehub local up` shows):
 1. the emulator (lakehub.local.emulator_server: moto + the local Lambda runner) on base port
 2. templates and function zips published to an assets bucket there (lakehub.release.publish)
 3. demo users with passwords generated now, and the loopback OpenID Connect provider
 4. a hosted zone for lakehub.localhost, a certificate from the emulator's ACM, the OIDC client
    secret in Secrets Manager
 5. `lakehub deploy` of main.template.yaml (the same code path as for AWS)
 6. the demo data lake (CSV files under pii/ and nonpii/), notebooks restored from
    notebooks-export/ (which the emulator then keeps equal to the notebook bucket), an admin
    IAM user for the platform's own calls, each tier's role (and, in per-user mode, each hub's
    role) assumed, then IAM enforcement on
 7. the container-credentials endpoint, the local agent (per-user mode), one JupyterHub per
    tier with hub_images/jupyterhub_config.py, each waited for on /hub/health
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import boto3

from lakehub.stacks import names
from lakehub.assets import HUB_IMAGES_DIR, ROOT, TEMPLATES_DIR
from lakehub.cfn.template import load
from lakehub.local.emulator import (
    DEFAULT_REGION,
    EMULATOR_ACCESS_KEY,
    EMULATOR_SECRET_KEY,
    LOOPBACK,
    emulator_server_command,
    port_in_use,
)
from lakehub.errors import LakehubError
from lakehub.waiting import tries
from lakehub.local.processes import PART_MARKER, RUN_MARKER, end_processes, record, terminate_group
from lakehub.settings import default_settings
from lakehub.local import accounts, control
from lakehub_hub import contract
from lakehub.local.state import LOG_FILE, StateDir
from lakehub.local.observe import session_keys

log = logging.getLogger("lakehub.local")

DEFAULT_BASE_PORT = 8700
DOMAIN = "lakehub.localhost"
ASSETS_BUCKET = "lakehub-local-assets"
ASSETS_PREFIX = "lakehub/"
# The platform team's OIDC client secret, one per tier at its fixed name <platform>/<tier>/...
# (lakehub.stacks.tier.OIDC_CLIENT_SECRET): created before the deploy, as docs/SELF_SERVICE.md says.
PLATFORM_NAME = default_settings().platform_name
STACK_NAME = "lakehub"
# container: hubs and users' servers are podman containers of the hub image, started by the local
# agent from the emulator's ECS tasks as ECS starts them; process: processes of this machine's
# Python environment (quick iteration).
RUNTIMES = ("container", "process")
# Container runtime: what the supervisor mounts into each hub task's container (the agent's
# extra_mounts), and how long a hub task may take from RunTask until its container runs.
HUB_CONFIG_D = Path(__file__).resolve().parent / "hub_config.d"
CONTAINER_CONFIG_D = "/etc/lakehub/local-config.d"  # LAKEHUB_CONFIG_D in the hub's container
CONTAINER_STATE_DIR = "/srv/jupyterhub"  # the image's LAKEHUB_STATE_DIR
CONTAINER_HOME_ROOT = "/home"  # shared mode: the hub's users' homes (the template's LAKEHUB_HOME_ROOT)
HUB_TASK_START_TIMEOUT = 120.0
# A hub that exits while `up` waits for it is started again, as an ECS service replaces a task
# that stops, up to this many starts in all. JupyterHub gives its proxy a fixed 10 s to answer
# (jupyterhub.proxy.ConfigurableHTTPProxy.start): on a loaded machine a first start can miss it.
HUB_START_ATTEMPTS = 3
METRICS_INTERVAL_ENV = "LAKEHUB_METRICS_INTERVAL"  # in `up`'s environment: the hubs' exporters' interval
ROLL_CHECK_SECONDS = 5.0  # how often the supervisor compares each hub service's task definition with its task's
IDLE_TIMEOUT_ENV = "LAKEHUB_IDLE_TIMEOUT"  # in `lakehub local up`'s environment: the hubs' culler timeout
USER_PROFILES_ENV = "LAKEHUB_LOCAL_USER_PROFILES"  # in `up`'s environment: the sizes users pick from
HUB_START_TIMEOUT = 120
EFS_DIR = "efs"  # <state>/efs/<file system Name tag or id>/<path>: the emulated EFS file systems (homes)
ROLE_SESSION_SECONDS = 43200
# Supervision (as an ECS service keeps its desired count): a part that exits is started again
# after 1, 2, 4 ... seconds (at most RESTART_BACKOFF_MAX); a part that stayed up RESTART_RESET_AFTER
# seconds starts again at 1 s; RESTART_LIMIT restarts within RESTART_WINDOW and it is "failed".
RESTART_BACKOFF_MAX = 30.0
RESTART_RESET_AFTER = 60.0
RESTART_LIMIT = 5
RESTART_WINDOW = 600.0
EMULATOR_STATE_LOST = "restarted with its state lost; run `lakehub local down` and `lakehub local up`"
# Demo users per tier (names for the reference tiers; others get <tier>-user1, <tier>-user2).
DEMO_USERS = {"pii": ("alice", "bob"), "nonpii": ("carol", "dave")}
DEFAULT_DEMO_USERS = 2  # per tier (`lakehub local up --demo-users N`)
MAX_DEMO_USERS = 100
DEMO_DATA = {
    "pii/customers.csv": "customer_id,name,email,birth_date\n1,Ada Example,ada@example.com,1990-01-02\n"
    "2,Ben Example,ben@example.com,1985-05-06\n3,Cy Example,cy@example.com,1979-09-10\n",
    "pii/claims/2024.csv": "claim_id,customer_id,amount\n10,1,120.50\n11,2,99.00\n12,3,310.25\n",
    "nonpii/sales.csv": "region,month,revenue\nnorth,2024-01,1200\nsouth,2024-01,950\nnorth,2024-02,1330\n",
    "nonpii/products/catalog.csv": "sku,category,price\nA1,tools,9.99\nB2,garden,19.50\nC3,kitchen,4.25\n",
}


# ------------------------------------------------------------------------------------------
# what the platform will hold: tiers, ports
# ------------------------------------------------------------------------------------------
@dataclass
class Tier:
    name: str
    groups: list[str]
    index: int
    port: int = 0
    api_port: int = 0
    proxy_port: int = 0
    users: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


class ExitedAtStart(LakehubError):
    """A part's process exited while `up` waited for it to answer."""


@dataclass
class Part:
    """A process the supervisor keeps running: the emulator, the identity provider, a hub."""

    name: str
    proc: subprocess.Popen
    url: str  # answers while the part works (its health check)
    relaunch: Callable[[], subprocess.Popen]
    ready_timeout: float = 60.0
    headers: dict = field(default_factory=dict)
    state: str = "running"  # running, restarting (its back-off), starting (not answering yet), failed
    restarts: int = 0
    failures: int = 0  # exits in a row, each within RESTART_RESET_AFTER of its start
    recent: list = field(default_factory=list)  # restart times (monotonic) for RESTART_LIMIT
    up_since: float = field(default_factory=time.monotonic)
    due: float = 0.0
    last_exit: str = ""
    note: str = ""

    def answers(self, timeout: float = 1.0) -> bool:
        return probe(self.url, self.headers, timeout)

    def row(self) -> dict:
        return {
            "name": self.name,
            "pid": self.proc.pid,
            "state": self.state,
            "restarts": self.restarts,
            "url": self.url,
            "last_exit": self.last_exit,
            "note": self.note,
        }


def probe(url: str, headers: dict | None = None, timeout: float = 1.0, any_status: bool = False) -> bool:
    """True when `url` answers 200 within `timeout` (any HTTP status with any_status)."""
    import urllib.error

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status == 200 or any_status
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False


def tiers_from_template(templates_dir: Path = TEMPLATES_DIR) -> list[Tier]:
    """The tiers main.template.yaml nests (TierXStack) and their sign-in groups."""
    data = load(templates_dir / names.MAIN_TEMPLATE)
    tiers = []
    for logical, res in (data.get("Resources") or {}).items():
        params = ((res or {}).get("Properties") or {}).get("Parameters") or {}
        if res.get("Type") == "AWS::CloudFormation::Stack" and isinstance(params.get(names.TIER_NAME), str):
            groups = params.get(names.TIER_ALLOWED_GROUPS)
            tiers.append(Tier(params[names.TIER_NAME], [g for g in str(groups or "").split(",") if g], len(tiers)))
    if not tiers:
        raise LakehubError(f"{names.MAIN_TEMPLATE} nests no tier stack; run `python build_templates.py`")
    return tiers


def demo_user_names(tier: str, count: int = DEFAULT_DEMO_USERS) -> list[str]:
    """The tier's first `count` demo users, the same names at every `up`: the reference tiers'
    named users first (alice, bob; carol, dave), then <tier>-user<i> numbered from their count
    on (pii: alice, bob, pii-user3, ...; another tier: <tier>-user1, <tier>-user2, ...)."""
    if not 1 <= count <= MAX_DEMO_USERS:
        raise LakehubError(f"demo users per tier must be 1-{MAX_DEMO_USERS}, not {count}")
    named = list(DEMO_USERS.get(tier, ()))[:count]
    return named + [f"{tier}-user{i}" for i in range(len(named) + 1, count + 1)]


def plan_ports(base: int, tiers: list[Tier]) -> dict[int, str]:
    """Fixed ports from the base port, so a clash is found before anything starts."""
    ports = {base: "the AWS emulator", base + 1: "the identity provider", base + 2: "the credentials endpoint"}
    for t in tiers:
        t.port, t.api_port, t.proxy_port = base + 10 + t.index, base + 30 + t.index, base + 50 + t.index
        ports[t.port] = f"the {t.name} hub"
        ports[t.api_port] = f"the {t.name} hub API"
        ports[t.proxy_port] = f"the {t.name} proxy API"
    return ports


def can_bind(port: int) -> bool:
    """A listener or a connection's local end may hold a port; only binding tells."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_base_port(attempts: int = 50) -> int:
    """A base port whose whole block (plan_ports) is free, below the ephemeral port range: for
    tests and benchmarks that run a platform beside others."""
    import random

    tiers = tiers_from_template()
    for _ in range(attempts):
        base = random.randrange(10000, 32000, 100)
        if not any(port_in_use(p) or not can_bind(p) for p in plan_ports(base, tiers)):
            return base
    raise LakehubError("no free block of loopback ports between 10000 and 32000")


def check_ports(ports: dict[int, str]) -> None:
    for port, what in sorted(ports.items()):
        if not 1024 <= port <= 65535:
            raise LakehubError(f"port {port} ({what}) is out of range; pass --base-port between 1024 and 65400")
        if port_in_use(port) or not can_bind(port):
            raise LakehubError(
                f"port {port} on {LOOPBACK} (for {what}) is already in use; stop what holds it or pass --base-port N"
            )


def create_admin_user(iam, user_name: str, policy_name: str = "everything") -> dict:
    """An IAM user allowed every action, made with `iam` before IAM enforcement is on, for the
    caller's own calls after it (the platform's, or a test's on an emulator of its own).
    Returns its access key (IAM's AccessKey: AccessKeyId, SecretAccessKey)."""
    iam.create_user(UserName=user_name)
    iam.put_user_policy(
        UserName=user_name,
        PolicyName=policy_name,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    return iam.create_access_key(UserName=user_name)["AccessKey"]


# ------------------------------------------------------------------------------------------
# the supervisor
# ------------------------------------------------------------------------------------------
class LocalPlatform:
    def __init__(
        self,
        state: StateDir,
        base_port: int = DEFAULT_BASE_PORT,
        server_mode: str = contract.DEFAULT_SERVER_MODE,
        say=None,
        run_id: str = "",
        token: str = "",
        demo_users: int = DEFAULT_DEMO_USERS,
        runtime: str = "process",
        metrics_port: int | None = None,
    ):
        if runtime not in RUNTIMES:
            raise LakehubError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime = runtime
        self.state = state
        self.demo_users = demo_users
        self.token = token or secrets.token_hex(8)  # RUN_MARKER in every process this run starts
        self.parts: dict[str, Part] = {}
        self._tasks_recorded: dict = {}
        self.base_port = base_port
        self.server_mode = server_mode
        self.run_id = run_id
        self._say = say
        self.endpoint = f"http://{LOOPBACK}:{base_port}"
        self.tiers = tiers_from_template()
        self.ports = plan_ports(base_port, self.tiers)
        self.metrics_port = metrics_port
        if metrics_port:
            self.ports[metrics_port] = "the metrics endpoint (--metrics-port)"
        self.alarms = None  # lakehub.local.alarms.AlarmEvaluator: the emulator's alarms, evaluated
        self.metrics_server = None  # --metrics-port: Prometheus text format of the dashboard's figures
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.idp = None
        self.creds = None
        self.agent = None
        self.hub_image = ""  # container runtime: the local hub image, and its name in the emulated ECR
        self.task_image = ""
        self.hub_tasks: dict[str, str] = {}  # tier -> its hub's current ECS task
        self.hub_task_definitions: dict[str, str] = {}  # tier -> the task definition its hub task runs
        self._next_roll_check = 0.0
        self.rolls: list[dict] = []  # each rolling deployment: tier, from, to, seconds
        self._opened: list = []  # folders given o+x for shared-mode homes (restored at stop)
        self.control_token = ""
        self.admin: dict = {}
        self.outputs: dict = {}
        self.stop_event = threading.Event()
        self.started = time.time()

    # -- progress -------------------------------------------------------------------------
    def say(self, line: str) -> None:
        log.info(line)
        self.state.progress(line)
        if self._say:
            self._say(line)

    # -- children -------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict, cwd: Path, log_path: Path) -> subprocess.Popen:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(env, **{RUN_MARKER: self.token, PART_MARKER: name})
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=str(cwd), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.children = [(n, p) for n, p in self.children if n != name] + [(name, proc)]
        self._record(name, proc)
        return proc

    def _record(self, name: str, proc: subprocess.Popen) -> None:
        """The process's group in state.json as soon as it starts: a crashed supervisor's next
        `up` or `down` ends it from there (lakehub.local.platform.recover)."""
        groups = self.state.read().get("groups") or {}
        groups[name] = record(proc.pid)
        self.state.update(groups=groups)

    def add_part(
        self,
        name: str,
        proc: subprocess.Popen,
        url: str,
        relaunch: Callable[[], subprocess.Popen],
        ready_timeout: float = 60.0,
        headers: dict | None = None,
    ) -> None:
        self.parts[name] = Part(name, proc, url, relaunch, ready_timeout, dict(headers or {}))

    def restart_part(self, name: str) -> None:
        """Start a part again (the supervisor calls this once its back-off is over). What the
        dead process left running (a hub's proxy and culler) is ended first."""
        part = self.parts[name]
        left = end_processes([], self.token, part=name, timeout=5)
        if left:
            log.info("%s: ended %d processes it left running (%s)", name, len(left), " ".join(map(str, left)))
        part.proc = part.relaunch()
        self._record(name, part.proc)
        part.state = "starting"
        part.up_since = time.monotonic()
        part.restarts += 1
        part.recent.append(part.up_since)

    def after_restart(self, name: str) -> None:
        """A restarted part answers again. The emulator's state (moto's, in memory) is gone with
        the old process unless restore_emulator() puts it back."""
        if name == "emulator" and not self.restore_emulator():
            self.parts[name].note = EMULATOR_STATE_LOST

    def restore_emulator(self) -> bool:
        """Put the emulator's state back after a restart; True when it did. (Nothing persists
        the emulator's whole state yet, so it says the state was lost.)"""
        return False

    def watch(self) -> bool:
        """One pass of the supervisor: restart what exited (with its back-off), see restarted
        parts answer. Returns True when something changed."""
        from lakehub.local.agent import exit_status

        changed = False
        now = time.monotonic()
        for part in self.parts.values():
            if part.state in ("running", "starting") and part.proc.poll() is not None:
                code, killer = exit_status(part.proc.returncode)
                part.last_exit = f"killed by {killer} (exit code {code})" if killer else f"exited with code {code}"
                part.recent = [t for t in part.recent if now - t < RESTART_WINDOW]
                if len(part.recent) >= RESTART_LIMIT:
                    part.state = "failed"
                    log.error(
                        "%s (pid %s) %s; %d restarts within %.0f s, not restarting it again",
                        part.name,
                        part.proc.pid,
                        part.last_exit,
                        len(part.recent),
                        RESTART_WINDOW,
                    )
                else:
                    part.failures = part.failures + 1 if now - part.up_since < RESTART_RESET_AFTER else 1
                    delay = min(RESTART_BACKOFF_MAX, 2.0 ** (part.failures - 1))
                    part.state, part.due = "restarting", now + delay
                    log.warning(
                        "%s (pid %s) %s; restarting it in %.0f s (restart %d)",
                        part.name,
                        part.proc.pid,
                        part.last_exit,
                        delay,
                        part.restarts + 1,
                    )
                changed = True
            elif part.state == "restarting" and now >= part.due:
                try:
                    self.restart_part(part.name)
                except (OSError, LakehubError) as exc:
                    part.state, part.due = "restarting", now + RESTART_BACKOFF_MAX
                    log.error("%s could not be started again: %s", part.name, exc)
                changed = True
            elif part.state == "starting":
                if part.answers():
                    part.state = "running"
                    log.info("%s answers again (pid %s)", part.name, part.proc.pid)
                    self.after_restart(part.name)
                    changed = True
                elif now - part.up_since > part.ready_timeout:
                    log.warning("%s did not answer on %s within %.0f s; ending it", part.name, part.url, part.ready_timeout)
                    terminate_group(part.proc, timeout=5)  # the next pass counts the exit
        if self.runtime == "container" and now >= self._next_roll_check and not self.stop_event.is_set():
            self._next_roll_check = now + ROLL_CHECK_SECONDS
            changed = self.roll_hubs() or changed
        tasks = self.agent_tasks()
        if tasks != self._tasks_recorded:
            self._tasks_recorded = tasks
            self.state.update(tasks=tasks)
        if changed:
            self.record_parts()
        return changed

    def roll_hubs(self) -> bool:
        """A rolling deployment, as the tier's ECS service does when its task definition changes
        (a stack update with a new ImageTag: a new digest, a new task definition): the service's
        deployment configuration (minimumHealthyPercent 0, maximumPercent 100: one hub per tier,
        its SQLite database has one writer) stops the old task, then starts one of the new
        definition. Returns True when it rolled a hub."""
        if not self.hub_tasks or self.agent is None:
            return False
        ecs = self.client("ecs", self.admin)
        cluster = self.outputs.get(names.CLUSTER_NAME)
        rolled = False
        for tier in self.tiers:
            name = f"{tier.name} hub"
            part = self.parts.get(name)
            running = self.hub_task_definitions.get(tier.name)
            if part is None or part.state not in ("running", "starting") or not running:
                continue
            try:
                services = ecs.describe_services(cluster=cluster, services=[f"{tier.name}-hub"]).get("services") or []
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("%s: cannot read its service: %s", name, exc)
                continue
            wanted = (services[0] if services else {}).get("taskDefinition") or ""
            if not wanted or wanted == running:
                continue
            started = time.monotonic()
            old = self.hub_tasks.get(tier.name, "")
            log.info("%s: the service's task definition is now %s (was %s): rolling deployment", name, wanted, running)
            try:
                ecs.stop_task(cluster=cluster, task=old, reason="ECS Deployment: a new task definition replaces this task")
            except Exception as exc:  # noqa: BLE001 - the agent's own stop below still ends it
                log.warning("%s: StopTask of %s: %s", name, old, exc)
            terminate_group(part.proc, timeout=30)  # the old container (its `podman run` process) ends
            try:
                self.restart_part(name)  # RunTask of the service's (new) task definition
            except (OSError, LakehubError) as exc:
                part.state, part.due = "restarting", time.monotonic() + RESTART_BACKOFF_MAX
                log.error("%s could not be started on %s: %s", name, wanted, exc)
                continue
            part.restarts -= 1  # a deployment, not a failure
            part.recent = part.recent[:-1]
            part.note = f"ECS task {self.hub_tasks[tier.name].rsplit('/', 1)[-1]} ({wanted.rsplit('/', 1)[-1]})"
            self.rolls.append(
                {
                    "tier": tier.name,
                    "from": running,
                    "to": wanted,
                    "stopped_task": old,
                    "started_task": self.hub_tasks[tier.name],
                    "at": time.time(),
                    "seconds_to_new_task": round(time.monotonic() - started, 2),
                }
            )
            self.state.update(rolls=self.rolls)
            rolled = True
        return rolled

    def agent_tasks(self) -> dict:
        """The local agent's task processes, for state.json (a crashed supervisor's next
        `up`/`down` ends them)."""
        if self.agent is None:
            return {}
        out = {}
        for arn, local in list(self.agent.tasks.items()):
            if local.process is not None and local.process.poll() is None:
                out[arn] = self._tasks_recorded.get(arn) or record(local.process.pid)
        return out

    def record_parts(self) -> None:
        rows = [p.row() for p in self.parts.values()]
        if self.agent is not None:
            alive = self.agent._thread is not None and self.agent._thread.is_alive()
            rows.append(
                {
                    "name": "agent",
                    "pid": os.getpid(),
                    "state": "running" if alive else "failed",
                    "restarts": 0,
                    "url": "",
                    "last_exit": "",
                    "note": f"{len(self._tasks_recorded)} tasks",
                }
            )
        if self.creds is not None:
            rows.append(
                {
                    "name": "credentials endpoint",
                    "pid": os.getpid(),
                    "state": "running",
                    "restarts": 0,
                    "url": f"http://{LOOPBACK}:{self.base_port + 2}/",
                    "last_exit": "",
                    "note": "",
                }
            )
        self.state.update(parts=rows)

    def _wait_http(
        self, name: str, url: str, proc: subprocess.Popen | None, timeout: float, log_path: Path, headers: dict | None = None
    ) -> None:
        for _ in tries(timeout, interval=0.2, stop=self.stop_event):
            if proc is not None and proc.poll() is not None:
                raise ExitedAtStart(f"{name} exited at start with code {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        raise LakehubError(f"{name} did not answer on {url} within {timeout:.0f} s; see {log_path}")

    # -- steps ------------------------------------------------------------------------------
    def start_emulator(self) -> None:
        self.say(f"starting the AWS emulator on {self.endpoint}")
        work = self.state.path / "emulator"
        shutil.rmtree(work, ignore_errors=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for key in ("AWS_ENDPOINT_URL", "INITIAL_NO_AUTH_ACTION_COUNT"):
            env.pop(key, None)
        # The emulator's control API (reset-auth, reset, data.json) answers only this token.
        token_file = self.state.file(control.TOKEN_FILE)
        self.control_token = control.new_token(token_file)
        cmd = emulator_server_command(self.base_port, work, token_file, self.state.export_dir)
        proc = self._spawn("emulator", cmd, env, ROOT, self.state.path / "emulator.log")
        headers = {control.HEADER: self.control_token}
        self._wait_http(
            "the AWS emulator", f"{self.endpoint}/moto-api/", proc, 60, self.state.path / "emulator.log", headers=headers
        )
        self.add_part(
            "emulator",
            proc,
            f"{self.endpoint}/moto-api/",
            lambda: self._spawn("emulator", cmd, env, ROOT, self.state.path / "emulator.log"),
            60,
            headers,
        )
        # The platform's own calls: dummy keys until the admin user exists.
        os.environ.update(
            AWS_ACCESS_KEY_ID=EMULATOR_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=EMULATOR_SECRET_KEY,
            AWS_DEFAULT_REGION=DEFAULT_REGION,
            AWS_REGION=DEFAULT_REGION,
        )
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
            os.environ.pop(key, None)

    def client(self, service: str, creds: dict | None = None):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=DEFAULT_REGION, **session_keys(creds))

    def publish_assets(self) -> None:
        from lakehub.release.publish import publish

        self.say("publishing templates and function zips to the emulator's assets bucket")
        self.client("s3").create_bucket(Bucket=ASSETS_BUCKET)
        keys = publish(ASSETS_BUCKET, ASSETS_PREFIX, DEFAULT_REGION, self.endpoint)
        self.say(f"published {len(keys)} files to s3://{ASSETS_BUCKET}/{ASSETS_PREFIX}")

    def start_identity_provider(self) -> None:
        from lakehub.local.idp.oidc import provider_command, start_oidc

        users, groups = {}, {}
        for t in self.tiers:
            t.users = []
            for name in demo_user_names(t.name, self.demo_users):
                password = secrets.token_urlsafe(12)  # generated now, kept in state.json only
                users[name] = password
                t.users.append({"username": name, "password": password, "groups": list(t.groups)})
                for g in t.groups:
                    groups.setdefault(g, []).append(name)
        self.say(f"starting the identity provider with {len(users)} demo users ({self.demo_users} per tier)")
        workdir = self.state.path / "idp"
        workdir.mkdir(parents=True, exist_ok=True)
        self.idp = start_oidc(
            users,
            groups,
            port=self.base_port + 1,
            redirect_uris=[f"{t.url}/hub/oauth_callback" for t in self.tiers],
            workdir=workdir,
        )
        self._record("identity provider", self.idp.process)

        def relaunch() -> subprocess.Popen:
            # The same provider (its users, groups and client in oidc.json); a new signing key,
            # which the hubs fetch from /jwks at each sign-in.
            proc = self._spawn(
                "identity provider",
                provider_command(workdir / "oidc.json"),
                {k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                ROOT,
                workdir / "oidc.log",
            )
            self.idp.process = proc
            return proc

        self.add_part("identity provider", self.idp.process, f"{self.idp.issuer}/.well-known/openid-configuration", relaunch, 20)

    def prepare_account(self) -> dict[str, str]:
        zone = self.client("route53").create_hosted_zone(Name=DOMAIN, CallerReference=f"lakehub-local-{time.time()}")
        zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
        cert = self.client("acm").request_certificate(
            DomainName=f"*.{DOMAIN}", SubjectAlternativeNames=[DOMAIN], ValidationMethod="DNS"
        )["CertificateArn"]
        from lakehub.stacks.tier import OIDC_CLIENT_SECRET

        for t in self.tiers:
            self.client("secretsmanager").create_secret(
                Name=f"{PLATFORM_NAME}/{t.name}/{OIDC_CLIENT_SECRET}", SecretString=self.idp.client_secret
            )
        return {
            names.ASSETS_BUCKET_NAME: ASSETS_BUCKET,
            names.ASSETS_KEY_PREFIX: ASSETS_PREFIX,
            names.DOMAIN_NAME: DOMAIN,
            names.HOSTED_ZONE_ID: zone_id,
            names.CERTIFICATE_ARN: cert,
            names.AUTH_MODE: "oidc",
            # The template accepts only https issuers; the hubs are pointed at the loopback
            # provider's plain-http address (allowed on loopback) below.
            "OidcIssuer": f"https://{LOOPBACK}:{self.base_port + 1}",
            "OAuthClientId": self.idp.client_id,
        }

    def deploy(self, parameters: dict[str, str]) -> None:
        from lakehub.release.deploy import deploy

        self.say("deploying main.template.yaml (change set)")
        result = deploy(
            parameters,
            stack_name=STACK_NAME,
            region=DEFAULT_REGION,
            endpoint_url=self.endpoint,
            progress=lambda line: self.say(f"  {line}"),
            timeout=900,
        )
        self.outputs = result.outputs
        self.say(f"stack {STACK_NAME} {result.status} in {result.seconds:.1f} s")

    def tier_stack_resources(self, tier: Tier) -> dict[str, str]:
        cfn = self.client("cloudformation")
        logical = f"Tier{tier.name.capitalize()}Stack"
        stack = next(
            r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
            if r["LogicalResourceId"] == logical
        )
        resources = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
        }
        outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])}
        return {"stack": stack, **{f"resource:{k}": v for k, v in resources.items()}, **outputs}

    def seed_data(self) -> None:
        s3 = self.client("s3")
        lake = self.outputs[names.DATA_BUCKET_NAME]
        for key, body in DEMO_DATA.items():
            s3.put_object(Bucket=lake, Key=key, Body=body.encode())
        self.say(f"demo data lake: {len(DEMO_DATA)} CSV files under pii/ and nonpii/ in s3://{lake}")
        export = self.state.export_dir
        if export.is_dir():
            bucket = self.outputs[names.NOTEBOOK_BUCKET_NAME]
            files = [p for p in sorted(export.rglob("*")) if p.is_file()]
            for path in files:
                s3.put_object(Bucket=bucket, Key=path.relative_to(export).as_posix(), Body=path.read_bytes())
            self.say(f"restored {len(files)} notebook files from {export}")

    def persist_notebooks(self) -> None:
        """Durable local S3: from now on the emulator mirrors the notebook bucket to
        <state>/notebooks-export/ as it is written (lakehub.local.emulator_server, point 5), so a
        crash of the emulator or of this supervisor loses no saved notebook. Call it only after
        seed_data restored that folder into the bucket: naming the bucket makes the folder
        equal to it."""
        bucket = self.outputs[names.NOTEBOOK_BUCKET_NAME]
        from lakehub.local.emulator_server import PERSIST_PATH

        answer = json.loads(
            control.control_request(
                self.endpoint,
                PERSIST_PATH,
                self.control_token,
                data=json.dumps({"bucket": bucket}).encode(),
                method="POST",
                content_type="application/json",
                timeout=120,
            )
        )
        self.say(f"notebook bucket written through to {self.state.export_dir} ({answer['files']} files now)")

    def secure(self) -> dict[str, dict]:
        """Admin user, roles assumed, then IAM enforcement on. Returns {role arn: credentials}."""
        key = create_admin_user(self.client("iam"), "lakehub-local-admin")
        self.admin = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
        os.environ.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        sts = self.client("sts", self.admin)
        roles: dict[str, dict] = {}
        for t in self.tiers:
            info = self.tier_stack_resources(t)
            t_role = info[names.TIER_ROLE_ARN]
            # The tier role is the data role: no task runs with it; the hub (its HubRole, in both
            # modes) assumes it per user with the user's SourceIdentity and session tag, once
            # enforcement is on (lakehub_hub.credentials). The platform keeps a session of its own
            # for its checks only.
            wanted = [t_role]
            hub_role_name = info.get("resource:HubRole")
            if hub_role_name:
                hub_arn = self.client("iam").get_role(RoleName=hub_role_name)["Role"]["Arn"]
                wanted.append(hub_arn)
                setattr(t, "hub_role_arn", hub_arn)
            # Per-user mode: the users' tasks' role (no data; the agent hands it to each task as
            # ECS would, and the server's credential relay takes it out of its environment).
            user_task_role_name = info.get("resource:UserTaskRole")
            user_task_arn = (
                self.client("iam").get_role(RoleName=user_task_role_name)["Role"]["Arn"] if user_task_role_name else None
            )
            if user_task_arn:
                wanted.append(user_task_arn)
            setattr(t, "user_task_role_arn", user_task_arn)
            setattr(t, "role_arn", t_role)
            # The agent reads tasks' environment files with the execution role, as ECS does.
            exec_role = info.get("ExecutionRoleArn") if user_task_arn else None
            if exec_role:
                wanted.append(exec_role)
            setattr(t, "execution_role_arn", exec_role)
            setattr(t, "hub_task_definition", info.get("HubTaskDefinitionArn"))
            setattr(t, "hub_security_group", info.get("resource:HubSecurityGroup"))
            for arn in wanted:
                creds = sts.assume_role(
                    RoleArn=arn, RoleSessionName=f"lakehub-local-{t.name}", DurationSeconds=ROLE_SESSION_SECONDS
                )["Credentials"]
                roles[arn] = {k: creds[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        control.control_request(
            self.endpoint, "/moto-api/reset-auth", self.control_token, data=b"0", method="POST", content_type="text/plain"
        )
        self.say(f"IAM enforcement on ({len(roles)} roles assumed before it)")
        return roles

    def hub_environment(self, tier: Tier) -> dict[str, str]:
        ecs = self.client("ecs", self.admin)
        td = ecs.describe_task_definition(taskDefinition=tier.hub_task_definition)["taskDefinition"]
        container = td["containerDefinitions"][0]
        env = {e["name"]: e.get("value", "") for e in container.get("environment") or []}
        # ECS Secrets: ECS reads them with the execution role; here the platform reads them (the
        # OIDC client secret local mode created, the cookie secret the emulator generated).
        # A key of a JSON secret (`ARN:json-key::`, the tier's HubSecret) is read as ECS reads it.
        from lakehub.local.agent import read_secret

        clients = {"asm": self.client("secretsmanager", self.admin), "ssm": self.client("ssm", self.admin)}
        for secret in container.get("secrets") or []:
            try:
                env[secret["name"]] = read_secret(clients.__getitem__, secret["valueFrom"])
            except Exception as exc:  # noqa: BLE001 - ECS would fail the task; the hub says what is missing
                log.warning("%s hub: secret %s (%s) not readable: %s", tier.name, secret["name"], secret["valueFrom"], exc)
        hub_dir = self.state.path / "hubs" / tier.name
        profiles = env.get(contract.ENV_USER_PROFILES, "")
        if profiles and not profiles.lstrip().startswith("["):
            # The template's name:cpu:memory list, as JSON (the contract's parser reads both).
            env[contract.ENV_USER_PROFILES] = json.dumps(
                [{k: p[k] for k in ("name", "cpu", "memory")} for p in contract.parse_profiles(profiles)]
            )
        env.update(self.local_hub_overrides(tier, config_d=str(HUB_CONFIG_D)))
        env.update(
            contract.hub_environment(
                overrides=True,
                state_dir=str(hub_dir / "state"),
                home_root=str(self.home_root(tier, env.get(contract.ENV_HOMES_FILE_SYSTEM_ID, ""))),
                aws_region=DEFAULT_REGION,
                aws_default_region=DEFAULT_REGION,
            )
        )
        env.update(
            {
                "PATH": os.pathsep.join(
                    [
                        str(Path(sys.executable).parent),
                        str(ROOT / "node_modules" / ".bin"),
                        os.environ.get("PATH", "/usr/bin:/bin"),
                    ]
                ),
                "LANG": os.environ.get("LANG", "C.UTF-8"),
                "HOME": str(hub_dir),
                "PYTHONPATH": str(HUB_IMAGES_DIR),
            }
        )
        env.update(local_idle_timeout())
        env.update(local_metrics_interval())
        if not env.get("LAKEHUB_COOKIE_SECRET"):
            env.pop("LAKEHUB_COOKIE_SECRET", None)  # the hub keeps a generated one in its state dir
        # The hub task's role in both modes (HubRole): it holds no data and assumes the tier role per user.
        role = getattr(tier, "hub_role_arn", None) or tier.role_arn
        env.update(self.creds.add_role(f"{tier.name}-hub", self.roles[role], role))
        return env

    def home_root(self, tier: Tier, fs_id: str) -> Path:
        """Shared mode: the tier's access point folder on the emulated homes file system
        (<state>/efs/<fs Name tag>/tiers/<tier>, root's 0755, as the tier's HomesAccessPoint says),
        the same place per-user mode's homes live in (the agent maps their access points there).
        Users' servers pass through the folders above it (o+x only, restored at stop)."""
        from lakehub.local.agent import efs_folder, efs_folder_name

        if not fs_id:
            return self.state.path / "homes"
        folder = efs_folder(
            self.state.path / EFS_DIR,
            efs_folder_name(self.client("efs", self.admin), fs_id),
            f"{names.HOMES_TIERS_ROOT}/{tier.name}",
            {"OwnerUid": 0, "OwnerGid": 0, "Permissions": "0755"},
        )
        if os.geteuid() == 0 and self.server_mode == "shared":
            self._opened += accounts.open_for_others([str(folder)])
        return folder

    def start_agent(self) -> None:
        from lakehub.local.agent import LocalAgent

        cluster = self.outputs.get(names.CLUSTER_NAME)
        tier_roles = {t.role_arn: self.roles[t.role_arn] for t in self.tiers}
        for t in self.tiers:
            # Containers: the hub tasks too (their task role, and the execution role that reads their secrets).
            hub_roles = ("hub_role_arn",) if self.runtime == "container" else ()
            for attr in ("execution_role_arn", "user_task_role_arn") + hub_roles:
                arn = getattr(t, attr, None)
                if arn:
                    tier_roles[arn] = self.roles[arn]
        self.agent = LocalAgent(
            self.endpoint,
            clusters=[cluster] if cluster else None,
            region=DEFAULT_REGION,
            work_dir=self.state.path / "agent",
            efs_dir=self.state.path / EFS_DIR,
            role_credentials=tier_roles,
            control_token=self.control_token,
            runtime=self.runtime,
            extra_mounts=self.hub_task_mounts if self.runtime == "container" else None,
        ).start()
        if self.runtime == "container":
            what = "hubs and per-user servers" if self.server_mode == "per-user" else "hubs"
            self.say(f"local agent watching the emulator's ECS tasks ({what}, as containers of {self.hub_image})")
            return
        who = "each as its user's own Unix account" if self.agent.isolate else "as this machine's user (not isolated)"
        self.say(f"local agent watching the emulator's ECS tasks (per-user servers, {who})")

    # -- container runtime: the hub image, hubs as ECS tasks ---------------------------------
    def prepare_image(self) -> str:
        """The hub image built from hub_images/Dockerfile (lakehub.local.images; cached), and its
        tag: deployed as the templates' ImageTag, so every task definition names it."""
        from lakehub.local.images import ensure_hub_image

        self.hub_image = ensure_hub_image(say=self.say)
        return self.hub_image.rsplit(":", 1)[1]

    def push_image(self) -> None:
        """`docker push` to the emulated ECR, as CodeBuild does on AWS: the task definitions name
        <ECR repository URI>:<ImageTag> (the pipeline stack's repository; its WaitForImage already
        found a manifest under that tag in the emulator's ECR), and podman's storage is this
        machine's registry, so the local image gets that name too (`podman tag`). Nothing is
        pulled: the agent runs with --pull never."""
        repo = self.outputs.get(names.IMAGE_REPOSITORY_URI)
        if not repo:
            raise LakehubError(f"the deploy gave no {names.IMAGE_REPOSITORY_URI} output; cannot name the hub image")
        target = f"{repo}:{self.hub_image.rsplit(':', 1)[1]}"
        done = subprocess.run(["podman", "tag", self.hub_image, target], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise LakehubError(f"podman tag {self.hub_image} {target} failed: {(done.stderr or '').strip()[:300]}")
        self.task_image = target
        self.say(f"hub image {self.hub_image} is {target} in the emulated ECR (podman tag)")

    def hub_state_folder(self, tier: Tier) -> Path:
        return self.state.path / "hubs" / tier.name / "state"

    def hub_task_mounts(self, task: dict) -> list[tuple[str, str, bool]]:
        """The agent's extra mounts for a hub task (tag lakehub:hub = its tier): the hub's state
        folder at /srv/jupyterhub (its database outlives the container, as a restarted hub keeps
        it in the process runtime), the local config hooks read-only, and in shared mode the tier's
        homes folder at /home (the template mounts the EFS homes only for shared tiers)."""
        from lakehub.local.agent import TAG_HUB, TAG_USER

        tags = {t["key"]: t.get("value", "") for t in task.get("tags") or []}
        # Users' tasks carry lakehub:hub too (FargateSpawner: the hub that started them, by
        # default the tier's name): they never get the hub's folders.
        tier = next((t for t in self.tiers if t.name == tags.get(TAG_HUB)), None)
        if tier is None or TAG_USER in tags:
            return []
        # A replaced task starts with an empty folder, as on ECS: made again when it was lost
        # (podman refuses a mount whose source is missing); the hub restores its database from
        # the Litestream replica (lakehub_hub.hub_state).
        state_folder = self.hub_state_folder(tier)
        state_folder.mkdir(parents=True, exist_ok=True)
        mounts = [(str(state_folder), CONTAINER_STATE_DIR, False), (str(HUB_CONFIG_D), CONTAINER_CONFIG_D, True)]
        if self.server_mode == "shared":
            home = self.home_root(tier, getattr(tier, "homes_fs_id", ""))
            mounts.append((str(home), CONTAINER_HOME_ROOT, False))
        return mounts

    def local_hub_overrides(self, tier: Tier, config_d: str) -> dict[str, str]:
        """What local mode changes in a tier's hub environment, in both runtimes (lakehub_hub.contract)."""
        return contract.hub_environment(
            overrides=True,
            public_url=tier.url,  # the tier's loopback address, not https://<tier>.<domain>
            hub_ip=LOOPBACK,  # listen on loopback only (host networking in the container runtime)
            hub_port=tier.port,  # the hubs share the host's loopback: a port each
            local_hub_api_port=tier.api_port,  # hub_config.d/50-local.py
            local_proxy_api_port=tier.proxy_port,
            config_d=config_d,  # the local hooks (hub_config.d)
            oidc_issuer=self.idp.issuer,  # the template takes https only; the provider is http on loopback
            server_mode=self.server_mode,  # --server-mode (the templates deploy per-user)
            s3_endpoint_url=self.endpoint,  # notebooks, spawn environments, the hub state replica
            ecs_endpoint_url=self.endpoint,  # RunTask of users' servers (+ waits for the agent's endpoint tag)
            aws_endpoint_url_sts=self.endpoint,  # the hub assumes the tier role per user (lakehub_hub.credentials)
        )

    def hub_task_environment(self, tier: Tier) -> dict[str, str]:
        """The hub task's containerOverrides environment: only what local mode must change; the
        rest is the task definition's (the template's environment, its ECS Secrets, the task role
        through the agent's container-credentials endpoint, AWS_ENDPOINT_URL from the agent).
        Every path is a path in the container. Compared with hub_environment (process runtime),
        left out: the cookie and client secrets (ECS Secrets now), LAKEHUB_STATE_DIR and HOME
        (the image's), LAKEHUB_HOME_ROOT (the template's /home), PATH and PYTHONPATH (the image's
        Python), LAKEHUB_USER_PROFILES (the spawner reads the template's name:cpu:memory list),
        AWS_REGION (the template's), the credentials (the agent's endpoint)."""
        env = self.local_hub_overrides(tier, config_d=CONTAINER_CONFIG_D)  # the hooks, mounted read-only
        env.update(local_idle_timeout())
        env.update(local_metrics_interval())
        return env

    def run_hub_task(self, tier: Tier) -> subprocess.Popen:
        """What the tier's ECS service does for its desired count: RunTask of the service's task
        definition with the service's network configuration, tagged as the service's tasks are
        (startedBy ecs-svc/<service>, lakehub:tier, lakehub:hub). The agent runs it as a
        container; its `podman run` process is the hub part's process. A relaunch is a new task,
        as a service replaces a stopped one."""
        from lakehub.local.agent import TAG_HUB

        ecs = self.client("ecs", self.admin)
        cluster = self.outputs[names.CLUSTER_NAME]
        service_name = f"{tier.name}-hub"
        services = ecs.describe_services(cluster=cluster, services=[service_name]).get("services") or []
        service = services[0] if services else {}
        # moto's CloudFormation makes a service of its name, cluster, task definition and count
        # only: without the service's NetworkConfiguration, the template's (the tier's private
        # subnets, its hub security group, no public IP).
        network = service.get("networkConfiguration") or getattr(tier, "hub_network", None)
        kwargs = {"networkConfiguration": network} if network else {}
        task = ecs.run_task(
            cluster=cluster,
            taskDefinition=service.get("taskDefinition") or tier.hub_task_definition,
            startedBy=f"ecs-svc/{service_name}",
            launchType="FARGATE",
            count=1,
            tags=[{"key": names.TAG_TIER, "value": tier.name}, {"key": TAG_HUB, "value": tier.name}],
            overrides={
                "containerOverrides": [
                    {
                        "name": "hub",
                        "environment": [{"name": k, "value": v} for k, v in sorted(self.hub_task_environment(tier).items())],
                    }
                ]
            },
            **kwargs,
        )["tasks"][0]
        arn = task["taskArn"]
        self.hub_tasks[tier.name] = arn
        self.hub_task_definitions[tier.name] = task.get("taskDefinitionArn") or service.get("taskDefinition") or ""
        for _ in tries(HUB_TASK_START_TIMEOUT, interval=0.3, stop=self.stop_event):
            local = self.agent.tasks.get(arn) if self.agent else None
            if local is not None and local.process is not None:
                part = self.parts.get(f"{tier.name} hub")
                if part is not None:
                    part.note = f"ECS task {arn.rsplit('/', 1)[-1]}"
                return local.process
            described = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
            if described and described[0].get("lastStatus") == "STOPPED":
                raise LakehubError(
                    f"the {tier.name} hub task stopped before its container ran: "
                    f"{described[0].get('stoppedReason') or 'no reason given'}"
                )
        raise LakehubError(
            f"the local agent did not start the {tier.name} hub task within {HUB_TASK_START_TIMEOUT:.0f} s; "
            f"see {self.state.path / 'agent'}"
        )

    def start_hub_tasks(self) -> None:
        """Container runtime: each tier's hub is its service's ECS task, run by the agent as a
        container of the hub image (the image's own command: lakehub_hub.hub_state)."""
        started = []
        ecs = self.client("ecs", self.admin)
        for t in self.tiers:
            definition = ecs.describe_task_definition(taskDefinition=t.hub_task_definition)["taskDefinition"]
            env = {e["name"]: e.get("value", "") for e in definition["containerDefinitions"][0].get("environment") or []}
            setattr(t, "homes_fs_id", env.get("LAKEHUB_HOMES_FILE_SYSTEM_ID", ""))
            groups = [g for g in (getattr(t, "hub_security_group", None),) if g]
            setattr(
                t,
                "hub_network",
                {
                    "awsvpcConfiguration": {
                        "subnets": [n for n in env.get("LAKEHUB_USER_SUBNETS", "").split(",") if n],
                        "securityGroups": groups,
                        "assignPublicIp": "DISABLED",
                    }
                },
            )
            folder = self.hub_state_folder(t)
            shutil.rmtree(folder.parent, ignore_errors=True)
            folder.mkdir(parents=True)
            name = f"{t.name} hub"
            proc = self.run_hub_task(t)
            self._record(name, proc)
            self.add_part(name, proc, f"{t.url}/hub/health", lambda t=t: self.run_hub_task(t), HUB_START_TIMEOUT)
            self.parts[name].note = f"ECS task {self.hub_tasks[t.name].rsplit('/', 1)[-1]}"
            started.append((t, proc))
            self.say(
                f"starting the {t.name} hub on {t.url} ({self.server_mode} mode, ECS task "
                f"{self.hub_tasks[t.name].rsplit('/', 1)[-1]} in a container)"
            )
        for t, _proc in started:
            self.wait_hub(t, lambda t=t: self.agent.tasks[self.hub_tasks[t.name]].log_path)
        self.record_parts()

    def wait_hub(self, tier: Tier, log_path: Callable[[], Path], attempts: int = HUB_START_ATTEMPTS) -> None:
        """Wait until the tier's hub answers; a hub that exits first is started again (a new ECS
        task in the container runtime), as its service would, `attempts` starts in all."""
        name = f"{tier.name} hub"
        for attempt in range(1, attempts + 1):
            try:
                self._wait_http(
                    f"the {tier.name} hub", f"{tier.url}/hub/health", self.parts[name].proc, HUB_START_TIMEOUT, log_path()
                )
            except ExitedAtStart as exc:
                if attempt == attempts:
                    raise LakehubError(f"{exc} (started {attempts} times)") from None
                self.say(f"{exc}; starting it again ({attempt + 1} of {attempts})")
                self.restart_part(name)
                continue
            self.say(f"the {tier.name} hub answers on {tier.url}")
            return

    def start_hubs(self) -> None:
        from lakehub.local.credentials import CredentialsServer

        if self.runtime == "container":
            return self.start_hub_tasks()
        self.creds = CredentialsServer(self.base_port + 2).start()
        procs = []
        for t in self.tiers:
            hub_dir = self.state.path / "hubs" / t.name
            shutil.rmtree(hub_dir, ignore_errors=True)
            hub_dir.mkdir(parents=True)
            env = self.hub_environment(t)
            cmd = [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(HUB_IMAGES_DIR / "jupyterhub_config.py")]
            procs.append((t, self._spawn(f"{t.name} hub", cmd, env, hub_dir, hub_dir / "hub.log")))
            # The restarted hub keeps its folder: its sqlite database (users, tokens) and its
            # proxy's pid file (JupyterHub ends a proxy it finds there before starting its own).
            self.add_part(
                f"{t.name} hub",
                procs[-1][1],
                f"{t.url}/hub/health",
                lambda name=f"{t.name} hub", cmd=cmd, env=env, hub_dir=hub_dir: self._spawn(
                    name, cmd, env, hub_dir, hub_dir / "hub.log"
                ),
                HUB_START_TIMEOUT,
            )
            self.say(f"starting the {t.name} hub on {t.url} ({self.server_mode} mode)")
        for t, _proc in procs:
            self.wait_hub(t, lambda t=t: self.state.path / "hubs" / t.name / "hub.log")
        self.record_parts()

    # -- the whole thing ----------------------------------------------------------------------
    def status(self) -> dict:
        return {
            "tiers": [{"name": t.name, "url": t.url, "users": t.users} for t in self.tiers],
            "emulator_endpoint": self.endpoint,
            "runtime": self.runtime,
        }

    def run(self) -> None:
        os.environ[RUN_MARKER] = self.token  # inherited by what starts without an env of its own
        self.state.write(
            {
                "run_id": self.run_id,
                "phase": "starting",
                "pid": os.getpid(),
                "progress": [],
                "started": self.started,
                "server_mode": self.server_mode,
                "base_port": self.base_port,
                "runtime": self.runtime,
                "demo_users_per_tier": self.demo_users,
                "supervisor": record(os.getpid()),
                "run_token": self.token,
                "groups": {},
                "tasks": {},
            }
        )
        check_ports(self.ports)
        self.start_emulator()
        self.publish_assets()
        self.start_identity_provider()
        params = self.prepare_account()
        if self.runtime == "container":
            params[names.IMAGE_TAG] = self.prepare_image()
        self.deploy(params)
        if self.runtime == "container":
            self.push_image()
        self.seed_data()
        self.persist_notebooks()
        self.roles = self.secure()
        if self.server_mode == "per-user" or self.runtime == "container":
            self.start_agent()  # containers: the hub tasks too, in both modes
        self.start_hubs()
        self.start_observing()
        missing = unmodelled_types()
        seconds = time.time() - self.started
        self.say(f"ready in {seconds:.1f} s")
        self.state.update(
            phase="ready",
            ready_seconds=round(seconds, 2),
            **self.status(),
            admin=self.admin,
            outputs=self.outputs,
            unmodelled=missing,
            hub_image=self.hub_image,
            task_image=self.task_image,
            metrics_url=f"http://{LOOPBACK}:{self.metrics_port}/metrics" if self.metrics_port else "",
            children={name: p.pid for name, p in self.children},
        )

    def start_observing(self) -> None:
        """The alarm evaluator (moto evaluates no alarm) and, with --metrics-port, the Prometheus
        endpoint; both with their own boto3 session (clients of the default one are not made
        safely from several threads) and the admin user's keys."""
        from lakehub.local.alarms import AlarmEvaluator
        from lakehub.local.observe import observe, serve_metrics

        session = boto3.session.Session()
        admin = dict(self.admin)

        def make(service: str):
            return session.client(
                service,
                endpoint_url=self.endpoint,
                region_name=DEFAULT_REGION,
                aws_access_key_id=admin.get("AccessKeyId"),
                aws_secret_access_key=admin.get("SecretAccessKey"),
            )

        self.alarms = AlarmEvaluator(make, DEFAULT_REGION).start()
        self.say(f"evaluating the emulator's CloudWatch alarms every {self.alarms.interval:.0f} s")
        if self.metrics_port:
            tiers = [t.name for t in self.tiers]
            try:
                self.metrics_server = serve_metrics(
                    self.metrics_port, lambda: observe(self.endpoint, admin, PLATFORM_NAME, tiers)
                )
            except OSError as exc:
                raise LakehubError(
                    f"port {self.metrics_port} on {LOOPBACK} (for the metrics endpoint) cannot be used "
                    f"({exc.strerror or exc}); pass another --metrics-port"
                ) from None
            self.say(f"Prometheus metrics on http://{LOOPBACK}:{self.metrics_port}/metrics")

    def stop(self) -> None:
        self.stop_event.set()
        if self.alarms is not None:
            self.alarms.stop()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self.agent is not None:
            try:
                self.agent.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping the agent")
        for name, proc in reversed(self.children):
            terminate_group(proc)
        if self.idp is not None:
            self.idp.stop()
        if self.creds is not None:
            self.creds.stop()
        # What the children left (a hub's proxy or culler in their own sessions, a kernel whose
        # server was killed): every process that carries this run's marker.
        left = end_processes(list((self.state.read().get("groups") or {}).values()), self.token, timeout=10)
        if left:
            log.warning("ended %d processes the platform's parts left running: %s", len(left), " ".join(map(str, left)))
        accounts.restore_modes(self._opened)
        self._opened = []
        removed = remove_containers(self.token)
        if removed:
            log.warning("removed %d containers the platform's tasks left: %s", len(removed), " ".join(removed))


def remove_containers(token: str) -> list[str]:
    """Every container labelled with this run (the container runtime's tasks), removed by force."""
    if not token:
        return []
    from lakehub.local.containers import remove_run_containers

    try:
        return remove_run_containers(token)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not remove the run's containers: %s", exc)
        return []


def local_metrics_interval() -> dict[str, str]:
    """LAKEHUB_METRICS_INTERVAL from `lakehub local up`'s environment, for the hubs' metrics
    exporters (default 60 s): tests and demos see HubUp and the alarms move sooner."""
    value = os.environ.get(METRICS_INTERVAL_ENV, "").strip()
    return {METRICS_INTERVAL_ENV: value} if value else {}


def local_idle_timeout() -> dict[str, str]:
    """LAKEHUB_IDLE_TIMEOUT from `lakehub local up`'s environment, for the hubs (the hub config
    reads it; the templates' IdleTimeoutSeconds is at least 300 s): tests and demos cull sooner.
    Also LAKEHUB_LOCAL_USER_PROFILES (name:cpu:memory,...): the sizes users pick from, instead of
    the template's (tests/browser/test_stop_reasons.py gives a 512 MiB size to run out of)."""
    value = os.environ.get(IDLE_TIMEOUT_ENV, "").strip()
    env = {IDLE_TIMEOUT_ENV: value} if value else {}
    profiles = os.environ.get(USER_PROFILES_ENV, "").strip()
    if profiles:
        env["LAKEHUB_USER_PROFILES"] = profiles
    return env


def export_notebooks(current: dict, dest: Path, token: str) -> int:
    """Make `dest` equal to the notebook bucket once more (a clean stop's last export). The
    emulator has kept that folder current as the bucket was written (persist_notebooks); here it
    checks every file against the bucket again, under the same lock as its writes. Raises when
    the emulator cannot do it (it died, or it mirrors another folder): then `dest` still holds
    every object as it was last written."""
    if not current.get("outputs", {}).get(names.NOTEBOOK_BUCKET_NAME):
        return 0
    from lakehub.local.emulator_server import PERSIST_PATH

    try:
        answer = json.loads(
            control.control_request(
                current["emulator_endpoint"],
                PERSIST_PATH,
                token,
                data=b'{"sync": true}',
                method="POST",
                content_type="application/json",
                timeout=120,
            )
        )
    except urllib.error.HTTPError as exc:
        raise LakehubError(f"the emulator could not export: {exc.read().decode(errors='replace')[:200]}") from None
    except OSError as exc:
        raise LakehubError(f"the emulator did not answer ({getattr(exc, 'reason', exc)})") from None
    if Path(answer["folder"]) != Path(dest).resolve():
        raise LakehubError(f"the emulator mirrors {answer['folder']}, not {dest}")
    return int(answer["files"])


@dataclass
class Recovery:
    """What `recover` did after a crashed supervisor."""

    line: str
    exported: int | None = None
    export_error: str = ""


def recover(state: StateDir, export: bool = True) -> Recovery | None:
    """After a supervisor that died without stopping (kill -9, out of memory): export the
    notebooks once more while its emulator still answers, end every process it recorded (groups
    whose leader has the recorded start time, agent tasks) or that carries its run's marker, and
    mark the state stopped. None when there was nothing to clean up."""
    from lakehub.local.processes import is_recorded, marked

    if state.running_pid():
        return None
    current = state.read()
    groups = current.get("groups") or {}
    records = list(groups.values()) + list((current.get("tasks") or {}).values())
    token = current.get("run_token", "")
    running = [r for r in records if is_recorded(r)]
    if current.get("phase") in (None, "stopped") and not running and not marked(token):
        return None
    who = (current.get("supervisor") or {}).get("pid") or current.get("pid") or "?"
    result = Recovery("")
    if export and current.get("phase") == "ready":
        if groups.get("emulator") and is_recorded(groups["emulator"]):
            try:
                result.exported = export_notebooks(current, state.export_dir, control.read_token(state.file(control.TOKEN_FILE)))
            except Exception as exc:  # noqa: BLE001 - still end everything; say what was not saved
                result.export_error = str(exc)
        else:
            result.export_error = "its emulator is not running"
    ended = end_processes(records, token, timeout=15)
    removed = remove_containers(token)  # the container runtime's tasks (podman keeps them past their `podman run`)
    state.update(
        phase="stopped",
        stopped=time.time(),
        recovered={"supervisor": who, "ended": ended, "containers": removed},
        exported=result.exported,
        export_error=result.export_error or None,
    )
    result.line = f"cleaned up after a crashed supervisor (pid {who}): ended {len(ended)} processes it left running"
    if removed:
        result.line += f" and removed {len(removed)} containers"
    return result


def unmodelled_types() -> list[dict]:
    """lakehub.local.unmodelled in a short-lived process: it imports moto's model registry,
    which the supervisor (alive as long as the platform) should not keep in memory."""
    proc = subprocess.run(
        [sys.executable, "-m", "lakehub.local.unmodelled", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return []


def supervise(
    state: StateDir,
    base_port: int,
    server_mode: str,
    run_id: str = "",
    say=None,
    on_ready=None,
    demo_users: int = DEFAULT_DEMO_USERS,
    runtime: str = "process",
    metrics_port: int | None = None,
) -> int:
    """Run the platform until SIGTERM/SIGINT. Returns the exit code."""
    # Everything the supervisor writes (state folder, logs, hub folders) is its own: 0700/0600.
    os.umask(0o077)
    state.acquire()  # raises LakehubError when another supervisor holds it (state untouched)
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where is it stuck?
    platform = None
    stop = threading.Event()
    starting = threading.Event()
    starting.set()

    def on_signal(*_):
        stop.set()
        if starting.is_set():
            raise KeyboardInterrupt  # interrupt the start-up where it is; `finally` cleans up

    # SIGHUP too: the terminal of a `--foreground` run closed, or a service manager's hang-up.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        platform = LocalPlatform(
            state,
            base_port,
            server_mode,
            say=say,
            run_id=run_id,
            demo_users=demo_users,
            runtime=runtime,
            metrics_port=metrics_port,
        )
        try:
            platform.run()
        except KeyboardInterrupt:
            state.update(phase="failed", error="the local platform was stopped while starting")
            return 130
        except LakehubError as exc:
            state.update(phase="failed", error=str(exc))
            return exc.exit_code
        except Exception as exc:  # noqa: BLE001 - reported as one line; the log has the rest
            log.error("local platform failed:\n%s", traceback.format_exc())
            state.update(phase="failed", error=f"{type(exc).__name__}: {exc} (see {state.file(LOG_FILE)})")
            return 1
        finally:
            starting.clear()
        if on_ready:
            on_ready()
        while not stop.wait(1.0):
            try:
                platform.watch()
            except Exception:  # noqa: BLE001 - keep supervising; the log has it
                log.exception("supervising the local platform")
        return 0
    finally:
        current = state.read()
        if platform is not None and current.get("phase") == "ready" and not current.get("no_export"):
            try:
                state.update(exported=export_notebooks(current, state.export_dir, platform.control_token))
            except Exception as exc:  # noqa: BLE001 - still stop everything; say what was not saved
                log.exception("exporting the notebooks")
                state.update(export_error=str(exc))
        if platform is not None:
            state.update(phase="stopping")
            platform.stop()
        state.update(phase="stopped", stopped=time.time())
        state.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehub.local.platform", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument("--server-mode", choices=contract.SERVER_MODES, default=contract.DEFAULT_SERVER_MODE)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--demo-users", type=int, default=DEFAULT_DEMO_USERS)
    parser.add_argument("--runtime", choices=RUNTIMES, default="process")
    parser.add_argument("--metrics-port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return supervise(
            StateDir(args.state_dir),
            args.base_port,
            args.server_mode,
            args.run_id,
            demo_users=args.demo_users,
            runtime=args.runtime,
            metrics_port=args.metrics_port,
        )
    except LakehubError as exc:
        print(f"lakehub: error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
