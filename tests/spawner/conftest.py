"""Fixtures for the Fargate spawner tests: a VPC, roles, an ECS cluster and a user-server task
definition in moto (server mode), and spawners bound to them."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub

from lakehub.local.agent import keep_tasks_running
from lakehub_hub import fargate
from local.helpers import register_fargate_definition  # tests/local/helpers.py (tests/ is on sys.path)

_counter = itertools.count()

# Fake role trust policy for ECS tasks (moto stores it; nothing assumes these roles here).
ECS_TASKS_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


@pytest.fixture
def ecs_world(aws_client, moto_server, monkeypatch):
    """One tier's per-user infrastructure in the emulator, and the hub task's env pointing at it;
    `register_definition(family, containers, **fields)` and `run_task(task_definition, **fields)`
    register and run more tasks of the tier."""
    keep_tasks_running(moto_server.endpoint_url)
    n = next(_counter)
    ec2, ecs, iam, s3 = aws_client("ec2"), aws_client("ecs"), aws_client("iam"), aws_client("s3")
    # The notebook bucket (versioned, as the storage stack makes it): per-spawn environment files.
    bucket = f"lakehub-notebooks-{n}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    # moto only gives an ENI a private DNS name (which an awsvpc task needs) with DNS hostnames on.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    sg = ec2.create_security_group(GroupName=f"lakehub-users-{n}", Description="user servers, from the hub only", VpcId=vpc)[
        "GroupId"
    ]
    tier = f"pii{n}"
    tier_role = iam.create_role(RoleName=f"lakehub-{tier}-tier", AssumeRolePolicyDocument=ECS_TASKS_TRUST)["Role"]["Arn"]
    exec_role = iam.create_role(RoleName=f"lakehub-{tier}-exec", AssumeRolePolicyDocument=ECS_TASKS_TRUST)["Role"]["Arn"]
    cluster = f"lakehub-test-{n}"
    ecs.create_cluster(clusterName=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    family = f"lakehub-{tier}-user"

    def register_definition(family: str, containers: list[dict], **fields) -> dict:
        """A Fargate task definition with the tier's task and execution roles: its taskDefinition."""
        return register_fargate_definition(ecs, family, containers, taskRoleArn=tier_role, executionRoleArn=exec_role, **fields)

    def run_task(task_definition: str, **fields) -> dict:
        """RunTask on the tier's cluster, subnets and security group, on demand: the task."""
        return ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
            networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg]}},
            **fields,
        )["tasks"][0]

    td = register_definition(
        family,
        [
            {
                "name": "notebook",
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lakehub-hub:latest",
                "essential": True,
                # moto needs a container memory figure; a soft limit lets the task size grow.
                "memoryReservation": 512,
                "command": ["jupyterhub-singleuser"],
                "portMappings": [{"containerPort": 8888}],
            }
        ],
        tags=[{"key": "lakehub:component", "value": "user-server"}],
    )
    env = {
        "LAKEHUB_CLUSTER": cluster,
        "LAKEHUB_USER_TASK_DEFINITION": family,
        "LAKEHUB_USER_SUBNETS": ",".join(subnets),
        "LAKEHUB_USER_SECURITY_GROUPS": sg,
        "LAKEHUB_USER_CAPACITY": "FARGATE",
        "LAKEHUB_TIER": tier,
        "LAKEHUB_NOTEBOOK_BUCKET": bucket,
        "LAKEHUB_ECS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (
        "LAKEHUB_USER_PROFILES",
        "LAKEHUB_HUB_ID",
        "LAKEHUB_START_TIMEOUT",
        "LAKEHUB_USER_SPOT_FALLBACK",
        "LAKEHUB_SPAWN_ENV_PREFIX",
        "LAKEHUB_S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    return SimpleNamespace(
        ecs=ecs,
        ec2=ec2,
        s3=s3,
        bucket=bucket,
        cluster=cluster,
        tier=tier,
        family=family,
        task_definition_arn=td["taskDefinitionArn"],
        tier_role=tier_role,
        exec_role=exec_role,
        subnets=subnets,
        security_group=sg,
        env=env,
        endpoint_url=moto_server.endpoint_url,
        register_definition=register_definition,
        run_task=run_task,
    )


class FakeUser:
    """What a Spawner reads from JupyterHub's User outside a running hub."""

    def __init__(self, name: str):
        self.name = name
        self.escaped_name = name
        self.url = f"/user/{name}/"

    def progress_url(self, server_name=""):
        return f"/hub/api/users/{self.name}/server/progress"


def _make_spawner(cls=fargate.FargateSpawner, user: str = "alice", **traits):
    """A spawner the way JupyterHub makes one: user, hub, token; traits like the hub config's."""
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    traits.setdefault("describe_interval", 0.1)
    traits.setdefault("wait_for_local_endpoint", False)
    return cls(
        user=FakeUser(user),
        hub=hub,
        api_token=f"test-token-{user}",
        oauth_client_id=f"jupyterhub-user-{user}",
        hub_connect_url="http://10.20.1.10:8081",
        **traits,
    )


@pytest.fixture
def make_spawner():
    """Factory: make_spawner(cls=FargateSpawner, user="alice", **traits)."""
    return _make_spawner
