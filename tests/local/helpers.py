"""Drive `lakehub local up/status/down` from tests, and sign in to a local tier hub and get its
user's server (the client itself: tests/hubclient.py); register a Fargate task definition on
the emulator's ECS; put a tier's hub-down alarm. Used by tests/local, tests/spawner, tests/browser
and benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
from hubclient import UserServer, api_token, oidc_sign_in, wait_ready
from waiting import wait_for

from lakehub.local.emulator import DEFAULT_REGION
from lakehub.local.observe import session_keys

ROOT = Path(__file__).resolve().parents[2]


def sign_in(hub_url: str, username: str, password: str):
    session, response = oidc_sign_in(hub_url, username, password)
    response.raise_for_status()
    return session


def user_server(tier: dict, user: dict) -> UserServer:
    session = sign_in(tier["url"], user["username"], user["password"])
    token = api_token(session, tier["url"], user["username"])
    wait_ready(tier["url"], user["username"], token, timeout=120.0)
    return UserServer(tier["url"], user["username"], token)


def create_stack(cfn, stack_name: str, template: dict, timeout: float = 60) -> dict:
    """Create the stack and return it once it is no longer in progress."""
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    return wait_for(
        lambda: next(
            (st for st in cfn.describe_stacks(StackName=stack_name)["Stacks"] if not st["StackStatus"].endswith("IN_PROGRESS")),
            None,
        ),
        timeout=timeout,
        interval=0.5,
        what=f"stack {stack_name} created",
    )


def delete_stack(cfn, stack_name: str, timeout: float = 60) -> None:
    """Delete the stack and wait until it is gone (DELETE_COMPLETE)."""
    cfn.delete_stack(StackName=stack_name)
    wait_for(
        lambda: (
            not any(
                s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE"
                for s in cfn.list_stacks()["StackSummaries"]
            )
        ),
        timeout=timeout,
        interval=0.5,
        what=f"stack {stack_name} deleted",
    )


def admin_client(state: dict, service: str):
    """A boto3 client on the platform's emulator with the admin's keys (state.json's)."""
    return boto3.client(
        service, endpoint_url=state["emulator_endpoint"], region_name=DEFAULT_REGION, **session_keys(state["admin"])
    )


def running_tasks(state: dict) -> list[tuple[dict, dict[str, str]]]:
    """The platform cluster's running tasks (DescribeTasks, with their tags), each with its tags
    as a dict."""
    ecs, cluster = admin_client(state, "ecs"), state["outputs"]["ClusterName"]
    arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"] if arns else []
    return [(task, {t["key"]: t["value"] for t in task.get("tags", [])}) for task in tasks]


def register_fargate_definition(ecs, family: str, containers: list[dict], **fields) -> dict:
    """RegisterTaskDefinition of a Fargate task sized as the tier template's user-server one
    (awsvpc, 1 vCPU, 4 GB); `fields` adds the rest (roles, volumes, tags). Its taskDefinition."""
    return ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="4096",
        containerDefinitions=containers,
        **fields,
    )["taskDefinition"]


def lakehub(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`lakehub ARGS` in a child process, without the caller's AWS_* variables; `env` adds to
    (or replaces) the rest of the caller's environment."""
    env = dict(os.environ, **(env or {}))
    for key in list(env):
        if key.startswith("AWS_"):
            env.pop(key)
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


class Platform:
    def __init__(self, state_dir: Path, base: int, runtime: str = "process", env: dict | None = None):
        self.state_dir = state_dir
        self.base = base
        # `up --runtime`: the tests' platforms run processes unless they ask for containers
        # (tests/local/test_local_containers.py runs the end-to-end checks once on containers).
        self.runtime = runtime
        self.env = env  # added to `up`'s environment

    def up(
        self, runtime: str | None = None, env: dict | None = None, args: tuple = (), timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        """`lakehub local up --runtime RUNTIME` (default: the platform's), `args` added."""
        runtime = runtime or self.runtime
        extra = ["--runtime", runtime]
        env = self.env if env is None else env
        return lakehub(
            "local",
            "up",
            "--state-dir",
            str(self.state_dir),
            "--base-port",
            str(self.base),
            *extra,
            *args,
            timeout=timeout or (1200 if runtime == "container" else 600),
            env=env,
        )

    def up_ok(self, log_tail: int | None = 3000) -> subprocess.CompletedProcess:
        """`up` that must succeed, else the test fails with its output and the supervisor's log
        (its last `log_tail` characters; None: all of it). `up_seconds`: how long it took."""
        started = time.monotonic()
        proc = self.up()
        assert proc.returncode == 0, proc.stdout + proc.stderr + self.supervisor_log(log_tail)
        self.up_seconds = time.monotonic() - started
        return proc

    def supervisor_log(self, last: int | None = None) -> str:
        """The supervisor's log (its last `last` characters), "" before there is one."""
        path = self.state_dir / "supervisor.log"
        text = path.read_text() if path.exists() else ""
        return text[-last:] if last else text

    def down(self) -> subprocess.CompletedProcess:
        return lakehub("local", "down", "--state-dir", str(self.state_dir), timeout=180)

    def status(self) -> dict:
        proc = lakehub("local", "status", "--state-dir", str(self.state_dir), "--format", "json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def control_token(self) -> str:
        """What the emulator's control API requires (lakehub.local.control), as the supervisor sends it."""
        from lakehub.local.control import TOKEN_FILE, read_token

        return read_token(self.state_dir / TOKEN_FILE)

    def tier(self, name: str) -> dict:
        return next(t for t in self.status()["tiers"] if t["name"] == name)

    def admin_client(self, service: str):
        return admin_client(self.state(), service)

    def admin_s3(self):
        return self.admin_client("s3")


def running(p: Platform, log_tail: int | None = 3000):
    """A module fixture's platform, `yield from running(Platform(...))`: up (it must succeed,
    see Platform.up_ok), then down."""
    p.up_ok(log_tail)
    yield p
    p.down()


def put_hub_down_alarm(cw, name: str, platform: str, tier: str, periods: int = 1, **extra) -> None:
    """A tier's hub-down alarm as the monitoring stack defines it (HubUp's Minimum below 1 for
    `periods` one-minute periods, dimensions Platform and Tier); `extra` adds to the call
    (TreatMissingData, actions)."""
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="lakehub",
        MetricName="HubUp",
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=periods,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
        Dimensions=[{"Name": "Platform", "Value": platform}, {"Name": "Tier", "Value": tier}],
        **extra,
    )
