"""Per-user scope in shared mode, end to end: JupyterHub with hub_images/jupyterhub_config.py
(users' servers are processes of the hub, one Unix user each), the OpenID Connect provider on
loopback, moto in server mode with IAM enforced, and the tier role exactly as the tier template
resolves it (its trust with the SourceIdentity/tag conditions, its `${aws:PrincipalTag/lakehub-user}`
folder). Two users of one tier, each in their own kernel (through their relay): each writes
their own folder and the shared folder; neither can list, read or write the other's; the other
tier's data is refused; `get_caller_identity` names the user.

The hub's own identity stands in as an IAM user (moto does not match an assumed-role session to
a role principal); the trust's principal is that user instead of HubRole.

DEPENDS ON THE EMULATOR'S POLICY EVALUATOR (issue 15 local enforcement, lakehub.local.iam_eval):
moto alone ignores policy variables, so the user's own folder would be refused too. (It also needs that evaluator wired into the plain moto server this test
starts, as `lakehub.local.emulator.start_moto_server` does once it lands.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from scope_probe import assert_scoped, probe

import hub_harness as H
from lakehub.cfn.template import Resolver, load
from lakehub.assets import TEMPLATES_DIR
from lakehub.local.emulator import start_moto_server


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

GROUP = "analysts"
USERS = ("alice", "bob")


def enforce_iam(endpoint_url: str) -> None:
    req = urllib.request.Request(
        f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(req, timeout=10).read()


def tier_role_documents(data: str, notebooks: str) -> tuple[dict, list[dict]]:
    """The pii tier role's trust and policies from the generated tier template."""
    params = {
        "TierName": "pii",
        "DataPrefixes": "pii/",
        "AllowedGroups": GROUP,
        "HostName": "pii",
        "DataBucketName": data,
        "NotebookBucketName": notebooks,
        "DataKmsKeyArn": "none",
        "AuthMode": "oidc",
        "ClusterName": "lakehub",
        "DomainName": "lakehub.example.com",
        "VpcCidr": "10.20.0.0/16",
    }
    role = Resolver(load(TEMPLATES_DIR / "tier.template.yaml"), params).resources()["TierRole"]["Properties"]
    return role["AssumeRolePolicyDocument"], role["Policies"]


@pytest.fixture(scope="module")
def shared():
    if not (H.NODE_BIN / "configurable-http-proxy").exists():
        pytest.fail("configurable-http-proxy missing; run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="lakehub-scope-"))
    work.chmod(0o755)
    server = start_moto_server(log_path=work / "moto.log", iam_evaluator=True)
    url = server.endpoint_url
    setup = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="setup-not-real",
    )
    iam, s3 = (boto3.client(n, **setup) for n in ("iam", "s3"))
    run = uuid.uuid4().hex[:8]
    data, notebooks = f"lakehub-data-{run}", f"lakehub-notebooks-{run}"
    for b in (data, notebooks):
        s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=data, Key="pii/rows.csv", Body=b"pii rows")
    s3.put_object(Bucket=data, Key="nonpii/rows.csv", Body=b"nonpii rows")
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin",
        PolicyName="all",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
    trust, policies = tier_role_documents(data, notebooks)
    hub_arn = iam.create_user(UserName="tier-hub")["User"]["Arn"]
    role_arn = f"arn:aws:iam::123456789012:role/lakehub-pii-tier-{run}"
    iam.put_user_policy(
        UserName="tier-hub",
        PolicyName="hub",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                        "Resource": role_arn,
                    }
                ],
            }
        ),
    )
    hub_key = iam.create_access_key(UserName="tier-hub")["AccessKey"]
    for statement in trust["Statement"]:
        statement["Principal"] = {"AWS": hub_arn}  # the stand-in for HubRole
    iam.create_role(RoleName=role_arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(trust))
    for policy in policies:
        iam.put_role_policy(
            RoleName=role_arn.rsplit("/", 1)[1],
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    enforce_iam(url)

    extra = dict(
        LAKEHUB_ALLOWED_GROUPS=GROUP,
        LAKEHUB_DATA_BUCKET=data,
        LAKEHUB_DATA_PREFIXES="pii/",
        LAKEHUB_TIER_ROLE_ARN=role_arn,
        AWS_ACCESS_KEY_ID=hub_key["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=hub_key["SecretAccessKey"],
        AWS_ENDPOINT_URL_STS=url,
        AWS_ENDPOINT_URL=url,
        LAKEHUB_KEEP_ENV="AWS_ENDPOINT_URL",
    )  # kernels reach the emulator
    changed = H.open_interpreter_path() if os.geteuid() == 0 else []
    try:
        with H.tier_hub(
            "oidc",
            "pii",
            notebooks,
            "tiers/pii",
            url,
            "unused",
            USERS,
            {GROUP: list(USERS)},
            extra,
            edit_env=lambda env: env.pop("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) as t:
            servers = {}
            for user in USERS:
                session, response = t.sign_in(t.hub.url, user, t.passwords[user])
                assert response.status_code == 200, t.hub.log()[-3000:]
                token = H.api_token(session, t.hub.url, user)
                requests.post(f"{t.hub.url}/hub/api/users/{user}/server", headers={"Authorization": f"token {token}"}, timeout=30)
                H.wait_ready(t.hub.url, user, token)
                servers[user] = H.UserServer(t.hub.url, user, token)
            admin = boto3.client(
                "s3",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=admin_key["AccessKeyId"],
                aws_secret_access_key=admin_key["SecretAccessKey"],
            )
            yield {"servers": servers, "data": data, "notebooks": notebooks, "role": role_arn, "admin": admin, "hub": t.hub}
    finally:
        H.restore_modes(changed)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_two_users_of_one_tier_reach_their_own_and_the_shared_folder_only_in_shared_mode(shared):
    servers, role = shared["servers"], shared["role"].rsplit("/", 1)[-1]

    def run(me, other):
        return probe(
            servers[me],
            notebooks=shared["notebooks"],
            lake=shared["data"],
            tier="pii",
            me=me,
            other=other,
            own_data="pii/rows.csv",
            other_data="nonpii/rows.csv",
        )

    results = {"alice": run("alice", "bob"), "bob": run("bob", "alice"), "alice again": run("alice", "bob")}
    for who, out in results.items():
        assert_scoped(out, who.split()[0], role)
    admin, bucket = shared["admin"], shared["notebooks"]
    for user in USERS:
        assert admin.get_object(Bucket=bucket, Key=f"tiers/pii/users/{user}/scope.txt")["Body"].read() == user.encode()
