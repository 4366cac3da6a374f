"""Per-user tasks get the tier role and nothing else: with IAM enforced on the emulator, two users
of one tier each get their own task (run locally by the agent with the task role's credentials),
each reads the tier's prefix and is refused on the other tier's.

Uses its own emulator: enforcing IAM on the shared one would break other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest

from lakehub.local.emulator import emulator_client, start_moto_server
from lakehub.local.agent import LocalAgent, keep_tasks_running
from lakehub.local.platform import create_admin_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "lakehub-isolation-datalake"
NOTEBOOKS = "lakehub-isolation-notebooks"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)

# The stand-in user server: tries both tiers' objects with its own (task role) credentials,
# writes what happened, then serves on its port like a server would.
PROBE = """
import boto3, json, os, http.server
s3 = boto3.client("s3")
result = {}
for prefix in ("pii", "nonpii"):
    try:
        result[prefix] = s3.get_object(Bucket=os.environ["BUCKET"], Key=prefix + "/data.csv")["Body"].read().decode()
    except Exception as exc:
        result[prefix] = "refused: " + type(exc).__name__ + " " + str(exc)[:200]
open("result.json", "w").write(json.dumps(result))
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@contextlib.contextmanager
def own_emulator(tmp_path: Path, *services: str):
    """An emulator of the test's own, the platform's admin user on it (the platform's own calls
    need a real (emulated) IAM user once enforcement is on) and set-up clients for `services`
    (the emulator's dummy keys: any keys pass before enforcement). Yields (server, the admin's
    access key, [iam client, *the services' clients]); stops the emulator afterwards."""
    server = start_moto_server(log_path=tmp_path / "moto.log")
    try:
        iam = emulator_client("iam", server.endpoint_url)
        key = create_admin_user(iam, "platform-admin", "admin")
        yield server, key, [iam, *(emulator_client(n, server.endpoint_url) for n in services)]
    finally:
        server.stop()


def tier_policy(prefix: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*"]}],
        }
    )


@pytest.fixture
def enforced(tmp_path, monkeypatch):
    with own_emulator(tmp_path, "s3", "ec2", "ecs", "sts") as (server, key, (iam, s3, ec2, ecs, sts)):
        url = server.endpoint_url
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=NOTEBOOKS)  # the spawns' environment files (spawn-env/<tier>/)
        for prefix in ("pii", "nonpii"):
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/data.csv", Body=f"{prefix} rows".encode())
        roles = {}
        for tier in ("pii", "nonpii"):
            arn = iam.create_role(RoleName=f"lakehub-{tier}-tier", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
            iam.put_role_policy(RoleName=f"lakehub-{tier}-tier", PolicyName="data", PolicyDocument=tier_policy(tier))
            roles[tier] = arn
        # The execution roles read only their tier's environment files, as the tier template's do.
        exec_roles = {}
        for tier in ("pii", "nonpii"):
            exec_roles[tier] = iam.create_role(RoleName=f"lakehub-{tier}-exec", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
            iam.put_role_policy(
                RoleName=f"lakehub-{tier}-exec",
                PolicyName="env-files",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["s3:GetObject"],
                                "Resource": [f"arn:aws:s3:::{NOTEBOOKS}/spawn-env/{tier}/*"],
                            },
                            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{NOTEBOOKS}"]},
                        ],
                    }
                ),
            )
        # What ECS would hand each task: the tier role's credentials (and the agent the execution
        # role's), issued before enforcement (moto checks trust policies once enforcing, and no
        # user matches ecs-tasks).
        creds = {
            arn: sts.assume_role(RoleArn=arn, RoleSessionName=f"task-{tier}")["Credentials"]
            for tier, arn in [*roles.items(), *exec_roles.items()]
        }
        vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="users", Description="users", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName="lakehub", capacityProviders=["FARGATE", "FARGATE_SPOT"])
        for tier, role in roles.items():
            ecs.register_task_definition(
                family=f"lakehub-{tier}-user",
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="1024",
                memory="4096",
                taskRoleArn=role,
                executionRoleArn=exec_roles[tier],
                containerDefinitions=[
                    {
                        "name": "notebook",
                        "image": "lakehub-hub",
                        "memoryReservation": 512,
                        "command": ["python", "-c", PROBE],
                        "environment": [{"name": "BUCKET", "value": BUCKET}],
                    }
                ],
            )
        keep_tasks_running(url)
        server.enforce_iam()
        for k, v in {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LAKEHUB_CLUSTER": "lakehub",
            "LAKEHUB_USER_TASK_DEFINITION": "lakehub-pii-user",
            "LAKEHUB_USER_SUBNETS": subnet,
            "LAKEHUB_USER_SECURITY_GROUPS": sg,
            "LAKEHUB_TIER": "pii",
            "LAKEHUB_ECS_ENDPOINT_URL": url,
            "LAKEHUB_NOTEBOOK_BUCKET": NOTEBOOKS,
            "LAKEHUB_S3_ENDPOINT_URL": url,
        }.items():
            monkeypatch.setenv(k, v)
        for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "LAKEHUB_USER_CAPACITY", "LAKEHUB_SPAWN_ENV_PREFIX"):
            monkeypatch.delenv(k, raising=False)
        yield server, creds, key


def test_users_get_own_tasks_that_read_only_their_tier_prefix(enforced, make_spawner, tmp_path):
    server, creds, key = enforced
    agent = LocalAgent(
        server.endpoint_url, clusters=["lakehub"], work_dir=tmp_path / "tasks", poll_interval=0.2, role_credentials=creds
    )
    agent.start()  # its own calls use the platform user's keys (from the environment)
    try:
        spawners = [make_spawner(user=u, wait_for_local_endpoint=True) for u in ("uma", "vic")]
        # The non-PII tier's hub: another task definition (its role is the non-PII tier role).
        other = make_spawner(user="wes", wait_for_local_endpoint=True, tier="nonpii", task_definition="lakehub-nonpii-user")
        for s in spawners + [other]:
            asyncio.run(s.start())
        assert spawners[0].task_arn != spawners[1].task_arn

        def result_of(spawner):
            # The agent's task folder: its task root when it runs tasks as users' accounts (root).
            path = Path(agent.task_root or agent.work_dir) / spawner.task_arn.rsplit("/", 1)[-1] / "result.json"
            deadline = time.monotonic() + 30
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            return json.loads(path.read_text())

        for s in spawners:
            result = result_of(s)
            assert result["pii"] == "pii rows"
            assert result["nonpii"].startswith("refused:") and "AccessDenied" in result["nonpii"]
        result = result_of(other)
        assert result["nonpii"] == "nonpii rows"
        assert result["pii"].startswith("refused:") and "AccessDenied" in result["pii"]
        spawners.append(other)
        for s in spawners:
            asyncio.run(s.stop())
    finally:
        agent.stop()
