"""Shared fixtures: the project root, the AWS emulator in server mode, boto3 clients on it."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from lakehub.emulator import start_moto_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """One moto server (server mode, loopback) for the session. Tests must use unique names
    (or call `moto_server.reset()` in their own fixtures) since the server is shared."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = start_moto_server(log_path=log)
    yield server
    server.stop()


class EmulatorURL(str):
    """The local emulator's endpoint URL, with the token its control API requires."""

    control_token: str = ""


@pytest.fixture(scope="session")
def local_emulator(tmp_path_factory):
    """The local environment's emulator (moto plus the local Lambda runner and its fixes,
    lakehub.local.emulator_server) on loopback; its endpoint URL (`.control_token`: what its
    control API requires). Tests use unique stack names."""
    import subprocess
    import sys
    import time
    import urllib.request

    from lakehub.emulator import free_port
    from lakehub.local import control

    port = free_port()
    work = tmp_path_factory.mktemp("local-emulator")
    token_file = work / control.TOKEN_FILE
    url = EmulatorURL(f"http://127.0.0.1:{port}")
    url.control_token = control.new_token(token_file)
    proc = subprocess.Popen([sys.executable, "-m", "lakehub.local.emulator_server", "--port", str(port), "--work-dir", str(work),
                             "--control-token-file", str(token_file)],
                            cwd=ROOT, stdout=open(work / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            control.control_request(url, "/moto-api/", url.control_token, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    """Point boto3 in this process at the emulator with dummy credentials."""
    for key, value in moto_server.client_env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return moto_server


@pytest.fixture
def aws_client(aws_env):
    """Factory: aws_client('s3') -> a boto3 client bound to the emulator."""

    def make(service: str, **kwargs):
        return boto3.client(
            service, endpoint_url=aws_env.endpoint_url, region_name="us-east-1", **kwargs
        )

    return make
