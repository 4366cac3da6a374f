"""Issue 14: the per-spawn environment files (the servers' API tokens) are out of reach of what
users' kernels hold. With IAM enforced on the emulator, the tier template's own roles, resolved
for the pii tier, meet the notebook bucket: the hub role writes spawn-env/pii/, the execution
role (what ECS reads environmentFiles with) reads it, and the tier role (every kernel's) is
refused it, while still reaching its notebooks.

Uses its own emulator: enforcing IAM on the shared one would break other tests.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import Resolver, load
from lakehub.stacks.tier import TIER_SSM_PARAMS

from test_tier_isolation import TRUST, own_emulator  # tests/spawner is on sys.path (rootdir-relative, no package)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "lakehub-spawn-env-notebooks"
ENV_KEY = "spawn-env/pii/0123456789abcdef.env"


def resolved_roles(tier: str) -> dict[str, list[dict]]:
    """{logical id: statements} of the tier template's roles, resolved for `tier`."""
    params = {name: f"<ssm:{name}>" for name in TIER_SSM_PARAMS}
    params.update(
        {
            "NotebookBucketName": BUCKET,
            "DataBucketName": "lakehub-spawn-env-lake",
            "DataKmsKeyArn": "none",
            "AuthMode": "cognito",
            "ClusterName": "lakehub",
            "DomainName": "lakehub.example.com",
            "VpcCidr": "10.20.0.0/16",
            "TierName": tier,
            "DataPrefixes": f"{tier}/",
            "AllowedGroups": f"{tier}-users",
            "HostName": tier,
            "ServerMode": "per-user",
        }
    )
    res = Resolver(load(TEMPLATES_DIR / "tier.template.yaml"), params).resources()
    return {
        name: [s for p in res[name]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        for name in ("TierRole", "ExecutionRole", "HubRole")
    }


def emulator_policy(statements: list[dict]) -> str:
    """The statements as the emulator takes them: resources that did not resolve to an ARN here
    (another stack's secrets, shown as <Name>) are left out; nothing is added."""
    kept = []
    for s in statements:
        resources = [
            r for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]) if r == "*" or r.startswith("arn:")
        ]
        if resources:
            kept.append({**s, "Resource": resources})
    return json.dumps({"Version": "2012-10-17", "Statement": kept})


@pytest.fixture
def clients(tmp_path):
    with own_emulator(tmp_path, "s3", "sts") as (server, _, (iam, s3, sts)):
        url = server.endpoint_url
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=BUCKET, Key=ENV_KEY, Body=b"JUPYTERHUB_API_TOKEN=not-a-real-token\n")
        s3.put_object(Bucket=BUCKET, Key="tiers/pii/users/alice/a.ipynb", Body=b"{}")
        s3.put_object(Bucket=BUCKET, Key="tiers/pii/shared/s.ipynb", Body=b"{}")
        out = {}
        for name, statements in resolved_roles("pii").items():
            role = iam.create_role(RoleName=f"pii-{name}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
            iam.put_role_policy(RoleName=f"pii-{name}", PolicyName="p", PolicyDocument=emulator_policy(statements))
            creds = sts.assume_role(RoleArn=role, RoleSessionName=name)["Credentials"]
            out[name] = boto3.client(
                "s3",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        server.enforce_iam()
        yield out


def refused(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def test_the_tier_role_cannot_read_the_spawn_environment_files(clients):
    kernel = clients["TierRole"]
    assert refused(lambda: kernel.get_object(Bucket=BUCKET, Key=ENV_KEY))
    assert refused(lambda: kernel.get_object(Bucket=BUCKET, Key=ENV_KEY, VersionId="null"))
    # (Listing spawn-env/ would show key names only; the tier role's ListBucket is limited by an
    # s3:prefix condition, which the emulator ignores: tests/templates/test_tier.py checks it.)
    # ...while the same credentials still reach the tier's shared notebooks (enforcement is not
    # refusing all). (A user's own folder is `${aws:PrincipalTag/lakehub-user}`, a policy variable
    # the emulator does not resolve: tests/local/test_per_user_scope.py, with the evaluator.)
    assert kernel.get_object(Bucket=BUCKET, Key="tiers/pii/shared/s.ipynb")["Body"].read() == b"{}"


def test_the_execution_role_reads_them_as_ecs_does(clients):
    ecs_agent = clients["ExecutionRole"]
    ecs_agent.get_bucket_location(Bucket=BUCKET)
    assert ecs_agent.get_object(Bucket=BUCKET, Key=ENV_KEY)["Body"].read().startswith(b"JUPYTERHUB_API_TOKEN=")
    assert refused(lambda: ecs_agent.get_object(Bucket=BUCKET, Key="tiers/pii/users/alice/a.ipynb"))


def test_the_hub_role_writes_and_deletes_its_tier_files_only(clients):
    hub = clients["HubRole"]
    version = hub.put_object(Bucket=BUCKET, Key="spawn-env/pii/new.env", Body=b"X=1\n").get("VersionId")
    hub.delete_object(Bucket=BUCKET, Key="spawn-env/pii/new.env", **({"VersionId": version} if version else {}))
    assert refused(lambda: hub.put_object(Bucket=BUCKET, Key="spawn-env/nonpii/new.env", Body=b"X=1\n"))
    assert refused(lambda: hub.get_object(Bucket=BUCKET, Key=ENV_KEY))  # the hub never reads one back
