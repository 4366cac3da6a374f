"""Start and stop the AWS emulator (moto in server mode) on loopback.

Used by the tests, the local environment and the benchmarks. The server is a child process
(`moto_server`), so IAM enforcement can be configured through its environment and it can be
stopped cleanly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.waiting import tries
from lakehub.local.processes import terminate_group

LOOPBACK = "127.0.0.1"
# Dummy credentials: moto accepts any key; these work nowhere real.
EMULATOR_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS documentation's example key id
EMULATOR_SECRET_KEY = "emulator-secret-not-real"
DEFAULT_REGION = "us-east-1"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def emulator_client(service: str, endpoint_url: str):
    """A boto3 client of the emulator at `endpoint_url` with its dummy keys (DEFAULT_REGION)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=EMULATOR_ACCESS_KEY,
        aws_secret_access_key=EMULATOR_SECRET_KEY,
    )


@dataclass
class MotoServer:
    """A running moto server child process."""

    port: int
    process: subprocess.Popen
    log_path: Path | None = None
    env: dict = field(default_factory=dict)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict:
        """Environment variables that point boto3 (and botocore-based tools) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
            "AWS_REGION": DEFAULT_REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def enforce_iam(self) -> None:
        """Turn on IAM enforcement now (moto spends no more free set-up calls)."""
        # moto reads the count from a plain-text body (a form body arrives empty: HTTP 500).
        req = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        terminate_group(self.process, timeout=10)


def moto_server_command() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "moto.server"]


def start_moto_server(
    port: int | None = None,
    log_path: Path | None = None,
    extra_env: dict | None = None,
    timeout: float = 30.0,
    iam_evaluator: bool = False,
) -> MotoServer:
    """Start `moto_server` on 127.0.0.1 and wait until it answers. With `iam_evaluator`, S3 and
    STS are decided by lakehub.local.iam_eval once enforcement is on (conditions, policy
    variables, session policies, trust), as in the local platform's emulator.

    Raises LakehubError (one line) when the port is taken or the server does not come up.
    """
    port = port or free_port()
    if port_in_use(port):
        raise LakehubError(f"port {port} on {LOOPBACK} is already in use; stop what holds it or choose another port")
    env = dict(os.environ)
    env.update(extra_env or {})
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    command = [sys.executable, "-m", "lakehub.local.emulator_iam"] if iam_evaluator else moto_server_command()
    proc = subprocess.Popen(
        command + ["-H", LOOPBACK, "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    server = MotoServer(port=port, process=proc, log_path=log_path, env=extra_env or {})
    for _ in tries(timeout, interval=0.1):
        if proc.poll() is not None:
            raise LakehubError(
                f"the AWS emulator (moto_server) exited at start with code {proc.returncode}; see {log_path or 'its output'}"
            )
        try:
            urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=1).read()
            return server
        except OSError:
            pass
    server.stop()
    raise LakehubError(f"the AWS emulator did not answer on port {port} within {timeout:.0f} s")
