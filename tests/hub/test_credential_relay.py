"""The credential relay (lakehub_hub.credential_relay) and the hub's per-user sessions
(lakehub_hub.credentials): real loopback HTTP servers, real botocore, STS on the emulator.

The hub's endpoint is stood in for by a small HTTP server that answers like it (the relay only
speaks HTTP to it); the whole chain (hub, relay, kernel) is in test_ondemand_credentials.py and
tests/local/test_per_user_scope.py.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import subprocess
import sys

import pytest
import requests
from lakehub_hub import credential_relay as relay_mod
from lakehub_hub.accounts import storage_name
from lakehub_hub.credentials import REFRESH_MARGIN, USER_TAG, UserRoleSessions, session_name

from lakehub.local.credentials import send_json
from lakehub.local.emulator import emulator_client
from lakehub.stacks import names


class FakeHub:
    """Answers GET /hub/lakehub/aws-credentials like the hub: 200 with a session for the right
    API token, 403 otherwise. Each answer is a new session expiring `lifetime` seconds ahead."""

    def __init__(self, token: str, lifetime: float = 3600, delay: float = 0.0, busy_answers: int = 0):
        self.token, self.lifetime, self.calls, self.seen_paths = token, lifetime, 0, []
        self.delay, self.busy_answers, self.requests = delay, busy_answers, 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.seen_paths.append(self.path)
                hub.requests += 1
                time.sleep(hub.delay)  # a busy hub (at 25 users per tier one answer took 12.7 s)
                if hub.busy_answers > 0:
                    hub.busy_answers -= 1
                    return send_json(self, 503, {"message": "busy"})
                if self.headers.get("Authorization") != f"token {hub.token}":
                    return send_json(self, 403, {"message": "not a user's API token"})
                hub.calls += 1
                expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=hub.lifetime)
                return send_json(
                    self,
                    200,
                    {
                        "AccessKeyId": f"ASIA{hub.calls:016d}",
                        "SecretAccessKey": "relay-test-not-real",
                        "Token": f"session-{hub.calls}",
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "RoleArn": "arn:aws:iam::123456789012:role/lakehub-pii-tier",
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hub/api"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub():
    h = FakeHub(token=uuid.uuid4().hex)
    yield h
    h.stop()


def server_environ(hub: FakeHub) -> dict:
    """A user server's environment as ECS and the hub give it: the task role's variables, static
    keys left by someone, the hub's switch, the JupyterHub API variables."""
    return {
        "LAKEHUB_CREDENTIAL_RELAY": "1",
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": hub.token,
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/task-role-guid",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/token",
        "AWS_ACCESS_KEY_ID": "AKIATASKROLEEXAMPLE0",
        "AWS_SECRET_ACCESS_KEY": "task-role-not-real",
        "AWS_SESSION_TOKEN": "task-role-session",
        "AWS_PROFILE": "someone",
        "AWS_REGION": "us-east-1",
    }


def test_the_hub_url_is_derived_from_the_api_url():
    assert relay_mod.hub_credentials_url("http://10.0.1.5:8081/hub/api") == "http://10.0.1.5:8081/hub/lakehub/aws-credentials"
    assert (
        relay_mod.hub_credentials_url("http://127.0.0.1:8081/prefix/hub/api/")
        == "http://127.0.0.1:8081/prefix/hub/lakehub/aws-credentials"
    )
    with pytest.raises(relay_mod.RelayError):
        relay_mod.hub_credentials_url("http://127.0.0.1:8081/hub/")


def test_the_relay_replaces_every_variable_botocore_prefers_and_botocore_takes_the_users_session(hub):
    env = server_environ(hub)
    relay = relay_mod.start(env)
    try:
        assert relay is not None
        for name in relay_mod.REMOVED_VARIABLES:
            assert name not in env, name
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == relay.url and relay.url.startswith("http://127.0.0.1:")
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == relay.token
        # What a kernel started from that environment resolves: the session the hub gave, not
        # the task role or the static keys.
        probe = (
            "import boto3; c = boto3.Session().get_credentials(); print(c.method, c.access_key, c.get_frozen_credentials().token)"
        )
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["container-role", "ASIA0000000000000001", "session-1"]
        assert hub.seen_paths == ["/hub/lakehub/aws-credentials"]
    finally:
        relay.stop()


PROBE = "import boto3; c = boto3.Session().get_credentials(); print(c.method, c.access_key, c.get_frozen_credentials().token)"


@pytest.mark.slow
def test_a_hub_slower_than_botocores_container_fetch_does_not_fail_the_servers_clients():
    """At server start the contents manager's S3 clients resolve credentials through the relay
    right away; botocore's container provider gives up after 3 attempts of 2 s. A hub that takes
    10 s to answer must not make them fail (it did: the server exited at start under load)."""
    slow = FakeHub(token=uuid.uuid4().hex, delay=10)
    env = server_environ(slow)
    relay = relay_mod.start(env)  # what the server extension does when it is linked
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["container-role", "ASIA0000000000000001", "session-1"]
        assert slow.calls == 1
    finally:
        relay.stop()
        slow.stop()


def test_the_relay_fetches_once_at_start_and_concurrent_requests_share_one_fetch():
    slowish = FakeHub(token=uuid.uuid4().hex, delay=2)
    relay = relay_mod.CredentialRelay(relay_mod.hub_credentials_url(slowish.api_url), slowish.token).start()
    try:
        relay.warm()  # start() does this, then waits
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: requests.get(relay.url, headers={"Authorization": relay.token}, timeout=30), range(8))
            )
        assert [a.status_code for a in answers] == [200] * 8
        assert {a.json()["Token"] for a in answers} == {"session-1"}
        assert slowish.requests == 1 and relay.fetches == 1
    finally:
        relay.stop()
        slowish.stop()


def test_a_busy_hub_is_tried_again_with_back_off_a_refusal_is_not(hub):
    busy = FakeHub(token=uuid.uuid4().hex, busy_answers=2)
    env = server_environ(busy)
    relay = relay_mod.start(env)
    try:
        ok = requests.get(relay.url, headers={"Authorization": relay.token}, timeout=30)
        assert ok.status_code == 200 and ok.json()["Token"] == "session-1"
        assert busy.requests == 3
    finally:
        relay.stop()
        busy.stop()
    env = server_environ(hub)
    env["JUPYTERHUB_API_TOKEN"] = "not-the-users-token"
    started = time.monotonic()
    relay = relay_mod.start(env)
    try:
        assert time.monotonic() - started < 10 and hub.requests == 1
    finally:
        relay.stop()


def test_botocores_container_provider_ignores_the_metadata_timeout_settings_so_the_relay_waits_at_start(monkeypatch):
    """AWS_METADATA_SERVICE_TIMEOUT / _NUM_ATTEMPTS configure IMDS only: botocore's container
    provider keeps its fixed 3 attempts of 2 s (+1 s between), so setting them in the server's
    environment would not help; the relay's wait at start must cover a hub slower than that."""
    import botocore.session
    from botocore.credentials import ContainerProvider

    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "30")
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "10")
    resolver = botocore.session.Session().get_component("credential_provider")
    fetcher = next(p for p in resolver.providers if isinstance(p, ContainerProvider))._fetcher
    window = fetcher.RETRY_ATTEMPTS * (fetcher.TIMEOUT_SECONDS + fetcher.SLEEP_TIME)
    assert window <= 15, "botocore's container provider waits longer now: revisit START_WAIT"
    assert relay_mod.START_WAIT > window and relay_mod.FETCH_TIMEOUT > 12.7


@pytest.mark.slow
def test_the_s3_mounts_wait_for_credentials_at_start_instead_of_failing(monkeypatch):
    """What s3contents does while the contents manager is made (touch the folder) needs
    credentials; a container endpoint that cannot answer for longer than botocore's window
    (here: 503 for 12 s) fails a plain resolution, and the mounts wait for it instead."""
    import botocore.session
    from botocore.exceptions import CredentialRetrievalError
    from lakehub_hub import contents

    ready_at = time.monotonic() + 12

    class Endpoint(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if time.monotonic() < ready_at:
                status, body = 503, {"message": "not yet"}
            else:
                status, body = (
                    200,
                    {
                        "AccessKeyId": "ASIAWAITEDFOR0000001",
                        "SecretAccessKey": "relay-test-not-real",
                        "Token": "waited",
                        "Expiration": "2099-01-01T00:00:00Z",
                    },
                )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for name in relay_mod.REMOVED_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{httpd.server_address[1]}/aws-credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t")
        monkeypatch.setattr(contents, "_credentials_ready", False)
        with pytest.raises(CredentialRetrievalError):  # what s3contents met before
            botocore.session.Session().get_credentials()
        contents.wait_for_credentials(timeout=60)
        assert botocore.session.Session().get_credentials().access_key == "ASIAWAITEDFOR0000001"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_relay_answers_only_its_token(hub):
    env = server_environ(hub)
    relay = relay_mod.start(env)
    try:
        assert requests.get(relay.url, timeout=10).status_code == 403
        assert requests.get(relay.url, headers={"Authorization": "token " + hub.token}, timeout=10).status_code == 403
        assert (
            requests.get(
                relay.url.replace("/aws-credentials", "/other"), headers={"Authorization": relay.token}, timeout=10
            ).status_code
            == 404
        )
        ok = requests.get(relay.url, headers={"Authorization": relay.token}, timeout=10)
        assert ok.status_code == 200 and ok.json()["AccessKeyId"].startswith("ASIA")
    finally:
        relay.stop()


def test_the_relay_caches_until_twenty_minutes_before_expiry(hub):
    now = [1_000_000.0]
    relay = relay_mod.CredentialRelay(relay_mod.hub_credentials_url(hub.api_url), hub.token, clock=lambda: now[0])
    first = relay.credentials()
    expires = datetime.datetime.fromisoformat(first["Expiration"].replace("Z", "+00:00")).timestamp()
    now[0] = expires - relay_mod.REFRESH_MARGIN - 5
    assert relay.credentials() is first and hub.calls == 1
    now[0] = expires - relay_mod.REFRESH_MARGIN + 5
    second = relay.credentials()
    assert hub.calls == 2 and second["Token"] == "session-2"


def test_a_refused_or_missing_hub_gives_a_502_with_the_reason_never_the_task_role(hub):
    env = server_environ(hub)
    env["JUPYTERHUB_API_TOKEN"] = "not-the-users-token"
    relay = relay_mod.start(env)
    try:
        answer = requests.get(relay.url, headers={"Authorization": relay.token}, timeout=10)
        assert answer.status_code == 502 and "403" in answer.json()["message"]
    finally:
        relay.stop()
    env = server_environ(hub)
    del env["JUPYTERHUB_API_URL"]
    assert relay_mod.start(env) is None
    assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env and "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env


def test_a_task_role_given_as_full_uri_and_token_never_reaches_kernels(hub):
    """The local container runtime gives a task its role as ECS does on some platforms:
    AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN. The relay replaces
    both; when it cannot start, both are gone (kernels get no credentials, not the task role's)."""

    def task_env():
        env = server_environ(hub)
        del env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
        env.update(
            AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:9/role/task-id",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="task-role-token",
        )
        return env

    env = task_env()
    relay = relay_mod.start(env)
    try:
        assert relay is not None
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == relay.url != "http://127.0.0.1:9/role/task-id"
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == relay.token != "task-role-token"
    finally:
        relay.stop()
    env = task_env()
    del env["JUPYTERHUB_API_URL"]
    assert relay_mod.start(env) is None
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env and "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in env


def test_without_the_hubs_switch_the_relay_leaves_the_environment_alone(hub):
    env = server_environ(hub)
    del env["LAKEHUB_CREDENTIAL_RELAY"]
    before = dict(env)
    assert relay_mod.start(env) is None
    assert env == before


# -- the hub's side: the session it asks STS for ----------------------------------------------------


def test_storage_name_keeps_valid_names_and_separates_cleaned_ones():
    assert storage_name("alice") == "alice"
    assert storage_name("alice.b@example.com") == "alice.b@example.com"
    # '/' would nest one user's folder inside another's (users/a/ holds users/a/b/)
    assert "/" not in storage_name("a/b") and storage_name("a/b").startswith("a-b-")
    assert storage_name("a/b") != storage_name("a-b") and storage_name("a b") != storage_name("a/b")
    assert storage_name("..") not in ("..", ".") and storage_name("*") != "*"
    assert len(storage_name("x" * 300)) <= 128


@pytest.fixture
def sts_calls(moto_server):
    """An STS client on the emulator (it accepts SourceIdentity and Tags without acting on them)
    and the AssumeRole requests it sends, as botocore signs and sends them."""
    sts = emulator_client("sts", moto_server.endpoint_url)
    sent = []
    sts.meta.events.register("before-call.sts.AssumeRole", lambda params, **kw: sent.append(params))
    return sts, sent


def test_the_hub_assumes_the_data_role_with_the_users_source_identity_and_folder_tag(sts_calls):
    """What the hub sends STS (captured from the real request botocore signs and sends): the
    emulator accepts SourceIdentity and Tags without acting on them."""
    sts, sent = sts_calls
    now = [datetime.datetime.now(datetime.timezone.utc).timestamp()]
    sessions = UserRoleSessions("arn:aws:iam::123456789012:role/lakehub-pii-tier", "us-east-1", sts, clock=lambda: now[0])
    user = "alice.b@example.com"
    creds = sessions.get(user)
    assert creds["AccessKeyId"] and creds["Token"]
    assert len(sent) == 1
    body = sent[0]["body"]
    assert body["RoleSessionName"] == session_name(user) and body["SourceIdentity"] == session_name(user)
    assert body["Tags.member.1.Key"] == USER_TAG == names.USER_SESSION_TAG
    assert body["Tags.member.1.Value"] == storage_name(user)
    assert body["DurationSeconds"] == 3600
    # cached while more than REFRESH_MARGIN remains, renewed after
    assert sessions.get(user) is creds and len(sent) == 1
    now[0] = creds["_expires"] - REFRESH_MARGIN + 1
    sessions.get(user)
    assert len(sent) == 2


def test_a_role_from_before_session_tags_gets_sessions_without_tags(sts_calls):
    """An on-demand hub stack launched before per-user scope sets LAKEHUB_USER_ROLE_ARN and its
    role's trust allows no sts:TagSession: the hub still names the user, and sends no tag."""
    sts, sent = sts_calls
    UserRoleSessions("arn:aws:iam::123456789012:role/old-users", "us-east-1", sts, tag_sessions=False).get("carol")
    assert sent[0]["body"]["SourceIdentity"] == "carol" and not any(k.startswith("Tags") for k in sent[0]["body"])
