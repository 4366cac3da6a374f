"""The local platform's hub environments, pinned: what `lakehub local up` hands each tier's hub
(process runtime: the whole environment; container runtime: the hub task's overrides). The
tier's task definition is the real tier template's, registered in moto's ECS in this process."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from lakehub.assets import HUB_IMAGES_DIR, ROOT
from lakehub.cfn.template import Resolver, load
from lakehub.assets import TEMPLATES_DIR
from lakehub.local.credentials import CredentialsServer
from lakehub.local.platform import LocalPlatform
from lakehub.local.state import StateDir
from tests.templates.conftest import tier_params

REGION = "us-east-1"
ISSUER = "http://127.0.0.1:8703/oidc"
TIER_ROLE = "arn:aws:iam::123456789012:role/pii-tier"
HUB_ROLE = "arn:aws:iam::123456789012:role/pii-hub"


@pytest.fixture
def platform(tmp_path, monkeypatch):
    for name in ("LAKEHUB_IDLE_TIMEOUT", "LAKEHUB_METRICS_INTERVAL", "LAKEHUB_LOCAL_USER_PROFILES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("LANG", "C.UTF-8")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    tier_template = load(TEMPLATES_DIR / "tier.template.yaml")
    resolved = Resolver(tier_template, tier_params(ServerMode="per-user", HomesFileSystemId="")).resources()
    container = resolved["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    with mock_aws():
        asm = boto3.client("secretsmanager", region_name=REGION)
        cookie = asm.create_secret(Name="pii-hub", SecretString=json.dumps({"cookie": "c0ffee"}))["ARN"]
        ecs = boto3.client("ecs", region_name=REGION)
        definition = ecs.register_task_definition(
            family="lakehub-pii-hub",
            containerDefinitions=[
                {
                    "name": "hub",
                    "image": "hub:local",
                    "memory": 512,
                    "environment": [{"name": e["Name"], "value": str(e["Value"])} for e in container["Environment"]],
                    "secrets": [{"name": "LAKEHUB_COOKIE_SECRET", "valueFrom": f"{cookie}:cookie::"}],
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        local = LocalPlatform(StateDir(tmp_path / "state"), base_port=8700, server_mode="per-user")
        monkeypatch.setattr(local, "client", lambda service, creds=None: boto3.client(service, region_name=REGION))
        local.idp = SimpleNamespace(issuer=ISSUER)
        local.creds = CredentialsServer(0)
        local.roles = {HUB_ROLE: {"AccessKeyId": "A", "SecretAccessKey": "S", "SessionToken": "T"}}
        tier = next(t for t in local.tiers if t.name == "pii")
        tier.hub_task_definition, tier.role_arn, tier.hub_role_arn = definition, TIER_ROLE, HUB_ROLE
        try:
            yield local, tier
        finally:
            local.creds.httpd.server_close()


def test_the_process_runtime_hubs_environment_is_pinned(platform, tmp_path):
    local, tier = platform
    env = local.hub_environment(tier)
    assert env.pop("AWS_CONTAINER_CREDENTIALS_FULL_URI") == f"http://127.0.0.1:{local.creds.port}/role/pii-hub"
    assert env.pop("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    state = tmp_path / "state"
    assert env == {
        # the template's (tier.hub_environment), as resolved for tier pii
        "LAKEHUB_TIER": "pii",
        "LAKEHUB_PLATFORM": "lakehub",
        "LAKEHUB_AUTH_MODE": "cognito",
        "LAKEHUB_ALLOWED_GROUPS": "pii-users",
        "LAKEHUB_NOTEBOOK_BUCKET": "example-notebooks",
        "LAKEHUB_NOTEBOOK_PREFIX": "tiers/pii",
        "LAKEHUB_DATA_BUCKET": "example-lake",
        "LAKEHUB_DATA_PREFIXES": "pii/",
        "LAKEHUB_IDLE_TIMEOUT": "3600",
        "LAKEHUB_TIER_ROLE_ARN": "arn:aws:iam::123456789012:role/lakehub-pii-tier",
        "LAKEHUB_COGNITO_DOMAIN": "<ssm:UserPoolDomainUrl>",
        "LAKEHUB_COGNITO_USERNAME_CLAIM": "email",
        "LAKEHUB_OAUTH_CLIENT_ID": "<UserPoolClient>",
        "LAKEHUB_LDAP_URL": "",
        "LAKEHUB_LDAP_BIND_DN": "",
        "LAKEHUB_LDAP_USER_SEARCH_BASE": "",
        "LAKEHUB_LDAP_GROUP_SEARCH_BASE": "",
        "LAKEHUB_CLUSTER": "lakehub",
        "LAKEHUB_USER_TASK_DEFINITION": "lakehub-pii-user",
        "LAKEHUB_USER_SUBNETS": "<ssm:PrivateSubnet1Id>,<ssm:PrivateSubnet2Id>",
        "LAKEHUB_USER_SECURITY_GROUPS": "<UserServerSecurityGroup>",
        "LAKEHUB_USER_CAPACITY": "FARGATE_SPOT",
        "LAKEHUB_USER_PROFILES": json.dumps(
            [
                {"name": "small", "cpu": 1024, "memory": 4096},
                {"name": "medium", "cpu": 2048, "memory": 8192},
                {"name": "large", "cpu": 4096, "memory": 16384},
                {"name": "xlarge", "cpu": 8192, "memory": 32768},
            ]
        ),
        "LAKEHUB_USER_SERVER_PORT": "8888",
        "LAKEHUB_HUB_API_PORT": "8081",
        "LAKEHUB_HUB_CONNECT_URL": "http://hub.pii.lakehub.lakehub.internal:8081",
        "LAKEHUB_SPAWN_ENV_PREFIX": "spawn-env/pii/",
        "LAKEHUB_HUB_STATE_BUCKET": "example-notebooks",
        "LAKEHUB_HUB_STATE_PREFIX": "hub-state/pii/",
        "LAKEHUB_HOMES_FILE_SYSTEM_ID": "",
        # the ECS secret, read as ECS reads it
        "LAKEHUB_COOKIE_SECRET": "c0ffee",
        # what local mode changes
        "LAKEHUB_PUBLIC_URL": tier.url,
        "LAKEHUB_HUB_IP": "127.0.0.1",
        "LAKEHUB_HUB_PORT": str(tier.port),
        "LAKEHUB_STATE_DIR": str(state / "hubs" / "pii" / "state"),
        "LAKEHUB_S3_ENDPOINT_URL": "http://127.0.0.1:8700",
        "LAKEHUB_OIDC_ISSUER": ISSUER,
        "LAKEHUB_SERVER_MODE": "per-user",
        "LAKEHUB_CONFIG_D": str(ROOT / "lakehub" / "local" / "hub_config.d"),
        "LAKEHUB_HOME_ROOT": str(state / "homes"),
        "LAKEHUB_LOCAL_HUB_API_PORT": str(tier.api_port),
        "LAKEHUB_LOCAL_PROXY_API_PORT": str(tier.proxy_port),
        "LAKEHUB_ECS_ENDPOINT_URL": "http://127.0.0.1:8700",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:8700",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": f"{sys.executable.rsplit('/', 1)[0]}:{ROOT / 'node_modules' / '.bin'}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(state / "hubs" / "pii"),
        "PYTHONPATH": str(HUB_IMAGES_DIR),
    }


def test_local_up_settings_reach_both_runtimes(platform, monkeypatch):
    local, tier = platform
    monkeypatch.setenv("LAKEHUB_IDLE_TIMEOUT", "90")
    monkeypatch.setenv("LAKEHUB_METRICS_INTERVAL", "5")
    monkeypatch.setenv("LAKEHUB_LOCAL_USER_PROFILES", "tiny:256:512")
    for env in (local.hub_environment(tier), local.hub_task_environment(tier)):
        assert env["LAKEHUB_IDLE_TIMEOUT"] == "90"
        assert env["LAKEHUB_METRICS_INTERVAL"] == "5"
        assert env["LAKEHUB_USER_PROFILES"] == "tiny:256:512"


def test_the_container_runtime_hub_tasks_overrides_are_pinned(platform):
    local, tier = platform
    assert local.hub_task_environment(tier) == {
        "LAKEHUB_PUBLIC_URL": tier.url,
        "LAKEHUB_HUB_IP": "127.0.0.1",
        "LAKEHUB_HUB_PORT": str(tier.port),
        "LAKEHUB_LOCAL_HUB_API_PORT": str(tier.api_port),
        "LAKEHUB_LOCAL_PROXY_API_PORT": str(tier.proxy_port),
        "LAKEHUB_CONFIG_D": "/etc/lakehub/local-config.d",
        "LAKEHUB_OIDC_ISSUER": ISSUER,
        "LAKEHUB_SERVER_MODE": "per-user",
        "LAKEHUB_S3_ENDPOINT_URL": "http://127.0.0.1:8700",
        "LAKEHUB_ECS_ENDPOINT_URL": "http://127.0.0.1:8700",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:8700",
    }


def test_the_local_platform_sets_only_contract_names(platform):
    """lakehub_hub.contract names every hub variable local mode sets; the rest is the process's."""
    from lakehub_hub import contract

    local, tier = platform
    names = set(contract.HUB_ENV.values())
    assert set(local.hub_task_environment(tier)) <= names
    process = {"PATH", "LANG", "HOME", "PYTHONPATH", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}
    assert set(local.hub_environment(tier)) - process - set(contract.HUB_SECRETS) <= names
