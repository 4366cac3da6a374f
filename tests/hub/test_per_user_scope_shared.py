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

import boto3
import pytest
import requests
from scope_probe import assert_two_users_scoped

import hub_harness as H
from lakehub.cfn.template import Resolver, load
from lakehub.assets import TEMPLATES_DIR
from lakehub.local.platform import create_admin_user
from test_ondemand_credentials import (
    GROUP,
    ec2_hub,
    hub_identity,
    pii_lake_emulator,
)  # tests/hub is on sys.path (pytest's prepend import mode)


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

USERS = ("alice", "bob")


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
    with pii_lake_emulator("lakehub-scope-", "iam", iam_evaluator=True) as (lake, (s3, iam)):
        run, data, notebooks = lake.run, lake.data, lake.notebooks
        s3.put_object(Bucket=data, Key="nonpii/rows.csv", Body=b"nonpii rows")
        admin_key = create_admin_user(iam, "admin", "all")
        trust, policies = tier_role_documents(data, notebooks)
        role_arn = f"arn:aws:iam::123456789012:role/lakehub-pii-tier-{run}"
        hub_arn, hub_key = hub_identity(iam, "tier-hub", role_arn)
        for statement in trust["Statement"]:
            statement["Principal"] = {"AWS": hub_arn}  # the stand-in for HubRole
        iam.create_role(RoleName=role_arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(trust))
        for policy in policies:
            iam.put_role_policy(
                RoleName=role_arn.rsplit("/", 1)[1],
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )
        lake.server.enforce_iam()
        kernels_env = dict(AWS_ENDPOINT_URL=lake.url, LAKEHUB_KEEP_ENV="AWS_ENDPOINT_URL")  # kernels reach the emulator
        with ec2_hub(lake, role_arn, hub_key, USERS, kernels_env) as (t, tokens):
            servers = {}
            for user in USERS:
                requests.post(
                    f"{t.hub.url}/hub/api/users/{user}/server", headers={"Authorization": f"token {tokens[user]}"}, timeout=30
                )
                H.wait_ready(t.hub.url, user, tokens[user])
                servers[user] = H.UserServer(t.hub.url, user, tokens[user])
            admin = boto3.client(
                "s3",
                endpoint_url=lake.url,
                region_name="us-east-1",
                aws_access_key_id=admin_key["AccessKeyId"],
                aws_secret_access_key=admin_key["SecretAccessKey"],
            )
            yield {"servers": servers, "data": data, "notebooks": notebooks, "role": role_arn, "admin": admin, "hub": t.hub}


def test_two_users_of_one_tier_reach_their_own_and_the_shared_folder_only_in_shared_mode(shared):
    data_keys = ("pii/rows.csv", "nonpii/rows.csv")
    assert_two_users_scoped(shared["servers"], shared["role"], shared["notebooks"], shared["data"], data_keys)
    admin, bucket = shared["admin"], shared["notebooks"]
    for user in USERS:
        assert admin.get_object(Bucket=bucket, Key=f"tiers/pii/users/{user}/scope.txt")["Body"].read() == user.encode()
