"""Drive `lakehub local up/status/down` from tests, and sign in to a local tier hub and get its
user's server (the client itself: tests/hubclient.py); put a tier's hub-down alarm. Used by
tests/local, tests/browser and benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
from hubclient import UserServer, api_token, oidc_sign_in, wait_ready

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

    def admin(self, service: str):
        """A boto3 client of the platform's emulator with its admin user's keys."""
        state = self.state()
        return boto3.client(
            service,
            endpoint_url=state["emulator_endpoint"],
            region_name="us-east-1",
            aws_access_key_id=state["admin"]["AccessKeyId"],
            aws_secret_access_key=state["admin"]["SecretAccessKey"],
        )

    def admin_s3(self):
        return self.admin("s3")


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
