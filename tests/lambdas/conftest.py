"""Fixtures for the custom-resource tests.

- `emulator`: moto in server mode on 127.0.0.1, run in a thread of the test process (moto's
  ThreadedMotoServer), so the handlers' boto3 clients reach it over HTTP through
  AWS_ENDPOINT_URL exactly as the local runner does, while the tests can still reach into moto's
  backends where its API cannot express a state (a CodeBuild build that is still running, or
  failed: moto's BatchGetBuilds marks every build SUCCEEDED). Reset before every test.
- `cfn`: a local HTTPS server on 127.0.0.1 standing in for CloudFormation's pre-signed response
  URL (crhelper always answers over HTTPS); it records every PUT body. Its self-signed
  certificate is trusted through SSL_CERT_FILE, which OpenSSL reads for the default context
  crhelper builds; the handlers' code has no test hook.
- `load_handler(name)`: imports lambdas/<name>/index.py afresh, so module-level clients bind to
  this test's environment.
- `invoke(module, event)`: calls the Lambda entry point with a Lambda-like context and returns
  the one response CloudFormation would have received (or None).
"""

from __future__ import annotations

import io
import json
import ssl
import threading
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from function_loader import load_function

from lakehub.local.idp.ldap import make_ca_and_cert

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/lakehub-test/0a1b2c3d-0000-4000-8000-1234567890ab"


# --------------------------------------------------------------------------- emulator
@pytest.fixture(scope="session")
def _threaded_moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def emulator(_threaded_moto, monkeypatch):
    """A clean emulator, with this process's AWS environment pointing at it."""
    urllib.request.urlopen(urllib.request.Request(f"{_threaded_moto}/moto-api/reset", method="POST"), timeout=10).read()
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "emulator-secret-not-real",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": _threaded_moto,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(key, raising=False)
    return _threaded_moto


@pytest.fixture
def client(emulator):
    def make(service: str):
        return boto3.client(service, endpoint_url=emulator, region_name=REGION)

    return make


# --------------------------------------------------------------------------- response URL
class ResponseServer:
    """Records what CloudFormation's response URL receives."""

    def __init__(self, cert: Path, key: Path):
        self.received: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    outer.received.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, request_id: str) -> str:
        # The shape of a pre-signed S3 URL: a path and a query string.
        return (
            f"https://127.0.0.1:{self.port}/cloudformation-custom-resource-response-useast1/"
            f"{request_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=fake"
        )

    def for_request(self, request_id: str) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.received if f"/{request_id}?" in r["path"]]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def _response_server(tmp_path_factory):
    ca, cert, key = make_ca_and_cert(tmp_path_factory.mktemp("cfn-response"))
    server = ResponseServer(cert, key)
    server.cert = ca  # what the handlers trust (SSL_CERT_FILE)
    yield server
    server.stop()


@pytest.fixture
def cfn(_response_server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(_response_server.cert))
    return _response_server


# --------------------------------------------------------------------------- events and calls
class LambdaContext:
    """The parts of the Lambda context crhelper uses."""

    def __init__(self, function_name: str, remaining_ms: int = 14_000):
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        # 14 s: below crhelper's 15 s margin, so a Delete does not sleep in tests.
        return self._remaining_ms


@pytest.fixture
def make_event(cfn):
    """A CloudFormation custom-resource request, as CloudFormation sends it."""

    def make(
        request_type: str,
        resource_type: str,
        properties: dict,
        *,
        function: str,
        old_properties: dict | None = None,
        physical_id: str | None = None,
        logical_id: str = "TestResource",
    ) -> dict:
        token = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        request_id = str(uuid.uuid4())
        event = {
            "RequestType": request_type,
            "ServiceToken": token,
            "ResponseURL": cfn.url(request_id),
            "StackId": STACK_ID,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            "ResourceProperties": {"ServiceToken": token, **properties},
        }
        if request_type in ("Update", "Delete"):
            event["PhysicalResourceId"] = physical_id or "unset-physical-id"
        if request_type == "Update":
            event["OldResourceProperties"] = {"ServiceToken": token, **(old_properties or {})}
        return event

    return make


@pytest.fixture
def load_handler(emulator, monkeypatch):
    """Import lambdas/<name>/index.py afresh (module-level clients bind to this test's endpoint)."""

    def load(name: str):
        return load_function(name, monkeypatch)

    return load


@pytest.fixture
def invoke(cfn):
    """Call the Lambda entry point; return the one response sent (None when none was sent)."""

    def call(module, event: dict, *, function: str, remaining_ms: int = 14_000) -> dict | None:
        before = len(cfn.for_request(event["RequestId"]))
        module.handler(json.loads(json.dumps(event)), LambdaContext(function, remaining_ms))
        sent = cfn.for_request(event["RequestId"])[before:]
        assert len(sent) <= 1, f"more than one response sent: {sent}"
        return sent[0] if sent else None

    return call


@pytest.fixture
def lambda_function(client):
    """Register a function in the emulator's Lambda (crhelper's polling adds a permission to
    it); returns its name. The code is a stub: the emulator runs nothing here."""

    def make(name: str) -> str:
        iam = client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }
        role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("index.py", "def handler(event, context):\n    pass\n")
        client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="index.handler",
            Code={"ZipFile": buf.getvalue()},
            Architectures=["arm64"],
        )
        return name

    return make


def assert_reason(response: dict, *needles: str) -> None:
    """A FAILED answer whose reason names the cause within its first 256 characters."""
    assert response is not None, "no response was sent"
    assert response["Status"] == "FAILED", response
    reason = response["Reason"]
    assert len(reason) <= 256, f"reason longer than 256 characters ({len(reason)}): {reason}"
    for needle in needles:
        assert needle in reason[:256], f"{needle!r} not in reason {reason!r}"


@pytest.fixture
def failed():
    """failed(response, *needles): assert a FAILED answer naming the cause in its first 256 chars."""
    return assert_reason


@pytest.fixture
def lambda_context():
    """The Lambda-like context class: lambda_context(function_name, remaining_ms)."""
    return LambdaContext


def pytest_collection_modifyitems(config, items):
    """crhelper retries an unanswered response URL for ever: bound every test here, so a broken
    response server fails in a minute rather than at the suite's timeout."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(120))
