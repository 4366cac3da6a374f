"""On-demand (EC2) hub, end to end: users' servers hold their own session of the hub's *user
role* (through their credential relay), never the hub's own credentials or secrets. JupyterHub
with hub_images/jupyterhub_config.py in shared mode with LAKEHUB_TIER_ROLE_ARN (as
hub-instance.template.yaml sets it; LAKEHUB_USER_ROLE_ARN, its old name, in one test), the
OpenID Connect provider on loopback, and moto in server mode with IAM enforced.

The hub's own credentials stand in for the instance role (what IMDS gives root on the instance).
moto does not match an assumed-role session against a role principal in a trust policy, so the
stand-in is an IAM user the user role trusts; the template's trust (the instance role) and the
IMDS firewall are checked in tests/test_hub_instance.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import hub_harness as H
from lakehub.local.emulator import emulator_client, start_moto_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP = "analysts"
SECRET_VALUE = "cookie-" + uuid.uuid4().hex  # the hub's secret in the emulator


@contextlib.contextmanager
def pii_lake_emulator(prefix: str, *services: str, iam_evaluator: bool = False):
    """A work folder and an emulator of the test's own (it enforces IAM once set up), a data lake
    with pii/rows.csv and a notebook bucket named for this run, and set-up clients for `services`
    (the emulator's dummy keys: any keys pass before enforcement). Yields (the lake: .server,
    .url, .run, .data, .notebooks; [s3 client, *the services' clients]); stops the emulator and
    removes the folder afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    server = start_moto_server(log_path=work / "moto.log", iam_evaluator=iam_evaluator)
    try:
        s3 = emulator_client("s3", server.endpoint_url)
        run = uuid.uuid4().hex[:8]
        lake = SimpleNamespace(
            server=server, url=server.endpoint_url, run=run, data=f"lakehub-data-{run}", notebooks=f"lakehub-notebooks-{run}"
        )
        for b in (lake.data, lake.notebooks):
            s3.create_bucket(Bucket=b)
        s3.put_object(Bucket=lake.data, Key="pii/rows.csv", Body=b"pii rows")
        yield lake, [s3, *(emulator_client(n, server.endpoint_url) for n in services)]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def policy(*statements: dict) -> str:
    """An IAM policy document of `statements`, as IAM's calls take it."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def hub_identity(iam, user_name: str, role: str, *statements: dict) -> tuple[str, dict]:
    """The hub's own identity, an IAM user (moto does not match an assumed-role session to a role
    principal, so a user stands in for the instance role or HubRole): may assume `role` for a
    user (with SourceIdentity and session tags), and what `statements` allow. Returns (its ARN,
    its access key)."""
    arn = iam.create_user(UserName=user_name)["User"]["Arn"]
    assume = {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"], "Resource": role}
    iam.put_user_policy(UserName=user_name, PolicyName="hub", PolicyDocument=policy(assume, *statements))
    return arn, iam.create_access_key(UserName=user_name)["AccessKey"]


@contextlib.contextmanager
def ec2_hub(lake, role_arn: str, hub_key: dict, users, extra: dict):
    """The pii tier's hub in shared mode as on an EC2 instance (no ECS agent: `hub_key`, the hub's
    own identity, stands in for the instance role) on `lake` (pii_lake_emulator's), with `users`
    of GROUP signed in; `extra` goes into its environment too. Yields (TierHub, {user: API token})."""
    if not (H.NODE_BIN / "configurable-http-proxy").exists():
        pytest.fail("configurable-http-proxy missing; run `make setup`")
    env = dict(
        LAKEHUB_ALLOWED_GROUPS=GROUP,
        LAKEHUB_DATA_BUCKET=lake.data,
        LAKEHUB_DATA_PREFIXES="pii/",
        LAKEHUB_TIER_ROLE_ARN=role_arn,
        AWS_ACCESS_KEY_ID=hub_key["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=hub_key["SecretAccessKey"],
        AWS_ENDPOINT_URL_STS=lake.url,
        **extra,
    )

    def on_ec2(env):
        env.pop("AWS_CONTAINER_CREDENTIALS_FULL_URI")  # on EC2 the hub has IMDS, not the ECS agent

    changed = H.open_interpreter_path() if os.geteuid() == 0 else []
    try:
        with H.tier_hub(
            "oidc", "pii", lake.notebooks, "tiers/pii", lake.url, "unused", users, {GROUP: list(users)}, env, edit_env=on_ec2
        ) as t:
            tokens = {}
            for user in users:
                session, response = t.sign_in(t.hub.url, user, t.passwords[user])
                assert response.status_code == 200, t.hub.log()[-3000:]
                tokens[user] = H.api_token(session, t.hub.url, user)
            yield t, tokens
    finally:
        H.restore_modes(changed)


@pytest.fixture(scope="module")
def ondemand():
    with pii_lake_emulator("lakehub-ondemand-", "iam", "secretsmanager") as (lake, (_, iam, sm)):
        run, data, notebooks = lake.run, lake.data, lake.notebooks
        secret_arn = sm.create_secret(Name=f"lakehub/hubs/{run}/cookie", SecretString=SECRET_VALUE)["ARN"]
        # The hub's own identity (the instance role's stand-in): may assume the user role.
        hub_arn, hub_key = hub_identity(
            iam, "hub-instance", "*", {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": "*"}
        )
        user_role = iam.create_role(
            RoleName=f"lakehub-hub-users-{run}",
            Path="/lakehub/",
            AssumeRolePolicyDocument=policy(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": hub_arn},
                    "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                }
            ),
        )["Role"]
        iam.put_role_policy(
            RoleName=user_role["RoleName"],
            PolicyName="data",
            PolicyDocument=policy(
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{data}/pii/*"]},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{notebooks}"]},
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"arn:aws:s3:::{notebooks}/tiers/pii/*"],
                },
            ),
        )
        lake.server.enforce_iam()
        with ec2_hub(lake, user_role["Arn"], hub_key, ("alice", "bob"), dict(LAKEHUB_COOKIE_SECRET=SECRET_VALUE)) as (t, tokens):
            yield {
                "hub": t.hub,
                "env": t.env,
                "tokens": tokens,
                "secret_arn": secret_arn,
                "endpoint": lake.url,
                "data": data,
                "user_role": user_role["Arn"],
                "hub_key": hub_key,
            }


# What a user runs in a notebook: who am I, read the hub's secret, read the tier's data.
PROBE = """
import os, json, boto3
E = os.environ["LAKEHUB_S3_ENDPOINT_URL"]
out = {"env": dict(os.environ)}
out["arn"] = boto3.client("sts", endpoint_url=E).get_caller_identity()["Arn"]
try:
    boto3.client("secretsmanager", endpoint_url=E).get_secret_value(SecretId=%r)
    out["secret"] = "read"
except Exception as exc:
    out["secret"] = "refused: " + str(exc)[:300]
out["data"] = boto3.client("s3", endpoint_url=E).get_object(Bucket=%r, Key="pii/rows.csv")["Body"].read().decode()
print(json.dumps(out))
"""


def start_server(ondemand, user):
    hub, token = ondemand["hub"], ondemand["tokens"][user]
    requests.post(f"{hub.url}/hub/api/users/{user}/server", headers={"Authorization": f"token {token}"}, timeout=30)
    try:
        H.wait_ready(hub.url, user, token)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- hub log ---\n{hub.log()[-6000:]}") from None
    return H.UserServer(hub.url, user, token)


def test_a_users_server_holds_the_user_role_and_no_hub_secret(ondemand):
    alice = start_server(ondemand, "alice")
    out = json.loads(alice.run("python3", PROBE % (ondemand["secret_arn"], ondemand["data"])).strip().splitlines()[-1])
    values = "\n".join(f"{k}={v}" for k, v in out["env"].items())
    for secret in (
        SECRET_VALUE,
        ondemand["hub_key"]["SecretAccessKey"],
        ondemand["hub_key"]["AccessKeyId"],
        ondemand["env"]["LAKEHUB_OAUTH_CLIENT_SECRET"],
    ):
        assert secret not in values, "a hub secret reached the user's server"
    # the server's own relay on loopback, and nothing botocore would prefer to it
    assert out["env"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert out["env"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith("/aws-credentials")
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_PROFILE"} & set(
        out["env"]
    )
    assert out["arn"] == "arn:aws:sts::123456789012:assumed-role/" + ondemand["user_role"].rsplit("/", 1)[1] + "/alice"
    assert out["secret"].startswith("refused:") and "AccessDenied" in out["secret"], out["secret"]
    assert out["data"] == "pii rows"


def test_the_credential_endpoint_answers_only_a_running_servers_own_user(ondemand):
    alice = start_server(ondemand, "alice")
    env = json.loads(alice.run("python3", "import os, json; print(json.dumps(dict(os.environ)))").strip().splitlines()[-1])
    relay = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    own = requests.get(relay, headers={"Authorization": env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]}, timeout=30)
    assert own.status_code == 200 and set(own.json()) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert requests.get(relay, timeout=30).status_code == 403  # the relay wants its own random token
    # The hub's endpoint (what the relay calls, on the hub's API address) with the server's API token.
    endpoint = env["JUPYTERHUB_API_URL"].rstrip("/")[: -len("/api")] + "/lakehub/aws-credentials"
    hub_answer = requests.get(endpoint, headers={"Authorization": "token " + env["JUPYTERHUB_API_TOKEN"]}, timeout=30)
    assert hub_answer.status_code == 200 and hub_answer.json()["AccessKeyId"] == own.json()["AccessKeyId"]
    assert requests.get(endpoint, timeout=30).status_code == 401
    assert requests.get(endpoint, headers={"Authorization": "token " + secrets.token_hex(16)}, timeout=30).status_code == 403
    # bob is signed in but his server is stopped: his token gets nothing
    hub, bob_token = ondemand["hub"], ondemand["tokens"]["bob"]
    requests.delete(f"{hub.url}/hub/api/users/bob/server", headers={"Authorization": f"token {bob_token}"}, timeout=30)
    H.wait_stopped(hub.url, "bob", bob_token)
    assert requests.get(endpoint, headers={"Authorization": "token " + ondemand["tokens"]["bob"]}, timeout=30).status_code == 403
    # through the proxy (what a load balancer would forward), even with alice's token: nothing
    public = ondemand["hub"].url + "/hub/lakehub/aws-credentials"
    assert requests.get(public, headers={"Authorization": "token " + env["JUPYTERHUB_API_TOKEN"]}, timeout=30).status_code == 404
    # bob's own server gets bob's session, never alice's
    bob = start_server(ondemand, "bob")
    out = json.loads(bob.run("python3", PROBE % (ondemand["secret_arn"], ondemand["data"])).strip().splitlines()[-1])
    assert out["arn"].endswith("/bob")
