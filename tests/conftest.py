"""Shared fixtures: the project root, the AWS emulator in server mode, boto3 clients on it."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, start_emulator_server, start_moto_server

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
    server = start_emulator_server(tmp_path_factory.mktemp("local-emulator"))
    url = EmulatorURL(server.endpoint_url)
    url.control_token = server.control_token
    yield url
    server.stop()


@pytest.fixture
def emulator_env(local_emulator, monkeypatch):
    """boto3 in this process takes the local emulator's dummy keys (region us-east-1, no
    profile); calls name its endpoint themselves. Returns the local emulator's URL."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return local_emulator


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
        return boto3.client(service, endpoint_url=aws_env.endpoint_url, region_name="us-east-1", **kwargs)

    return make


@pytest.fixture
def not_aws():
    """An HTTP server on loopback that is not AWS: it answers every request 200 with an HTML page
    (HEAD with no body). `.url` is its address, `.seen` the methods it was sent."""
    import http.server
    import threading
    from types import SimpleNamespace

    seen: list[str] = []

    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self):
            seen.append(self.command)
            body = b"" if self.command == "HEAD" else b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = do_PUT = _page

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", seen=seen)
    server.shutdown()
    server.server_close()


# A test that talks to a server the suite starts (the emulator in server mode, the emulator's IAM
# front, a threaded moto) is end-to-end, whatever its folder: `make test-fast` leaves it out.
# `emulator` and `moto_plain` are the module fixtures of test_durable_s3 and test_emulator_iam that
# start their own emulator server (and tests/lambdas' `emulator`, on a threaded moto).
SERVER_FIXTURES = {"moto_server", "local_emulator", "iam_server", "_threaded_moto", "emulator", "moto_plain"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
