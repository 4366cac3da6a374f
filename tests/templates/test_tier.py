"""The tier stack: what a tier's role reaches, how its tasks are exposed."""

from __future__ import annotations

import pytest


def statements(resources, role="TierRole"):
    out = []
    for policy in resources[role]["Properties"]["Policies"]:
        out += policy["PolicyDocument"]["Statement"]
    return out


def s3_resources(stmts, action):
    found = []
    for s in stmts:
        if action in s["Action"]:
            found += s["Resource"]
    return found


def test_tier_role_reads_only_its_own_data_prefixes(resolve_tier):
    res = resolve_tier(TierName="pii", DataPrefixes="pii/,shared-pii/").resources()
    stmts = statements(res)
    assert sorted(s3_resources(stmts, "s3:GetObject")) == sorted(
        [
            "arn:aws:s3:::example-lake/pii/*",
            "arn:aws:s3:::example-lake/shared-pii/*",
            "arn:aws:s3:::example-notebooks/tiers/pii/shared/*",
            "arn:aws:s3:::example-notebooks/tiers/pii/users/${aws:PrincipalTag/lakehub-user}/*",
        ]
    )


def test_tier_role_cannot_read_other_tier(resolve_tier):
    pii = statements(resolve_tier(TierName="pii", DataPrefixes="pii/").resources())
    nonpii = statements(resolve_tier(TierName="nonpii", DataPrefixes="nonpii/", HostName="nonpii").resources())
    pii_arns = set(s3_resources(pii, "s3:GetObject"))
    nonpii_arns = set(s3_resources(nonpii, "s3:GetObject"))
    assert not pii_arns & nonpii_arns
    assert not any("nonpii" in a for a in pii_arns)
    assert all("/pii/" not in a for a in nonpii_arns)


def test_list_bucket_is_limited_by_prefix_condition(resolve_tier):
    stmts = statements(resolve_tier(DataPrefixes="pii/,claims/").resources())
    listing = [s for s in stmts if "s3:ListBucket" in s["Action"]]
    assert len(listing) == 2
    for s in listing:
        prefixes = s["Condition"]["StringLike"]["s3:prefix"]
        assert prefixes, "ListBucket must carry an s3:prefix condition"
        assert all(p.startswith(("pii/", "claims/", "tiers/pii/")) for p in prefixes)
    data = next(s for s in listing if s["Resource"] == ["arn:aws:s3:::example-lake"])
    assert data["Condition"]["StringLike"]["s3:prefix"] == ["pii/", "pii/*", "claims/", "claims/*"]


def test_tier_role_lists_and_reads_versions_of_its_notebook_folder_only(resolve_tier):
    """A home file's checkpoints are the versions of its central copy in the notebook bucket:
    ListObjectVersions needs s3:ListBucketVersions (AWS S3 API reference), limited by the same
    s3:prefix condition as ListBucket; reading an old version needs s3:GetObjectVersion."""
    stmts = statements(resolve_tier(TierName="pii").resources())
    versions = [s for s in stmts if "s3:ListBucketVersions" in s["Action"]]
    assert len(versions) == 1 and versions[0]["Resource"] == ["arn:aws:s3:::example-notebooks"]
    assert all(p.startswith("tiers/pii/") for p in versions[0]["Condition"]["StringLike"]["s3:prefix"])
    assert s3_resources(stmts, "s3:GetObjectVersion") == s3_resources(stmts, "s3:GetObject")


def test_read_only_tier_cannot_write_data(resolve_tier):
    ro = statements(resolve_tier(DataAccess="read-only").resources())
    rw = statements(resolve_tier(DataAccess="read-write").resources())
    assert "arn:aws:s3:::example-lake/pii/*" not in s3_resources(ro, "s3:PutObject")
    assert "arn:aws:s3:::example-lake/pii/*" in s3_resources(rw, "s3:PutObject")
    # notebooks stay writable in both
    assert "arn:aws:s3:::example-notebooks/tiers/pii/shared/*" in s3_resources(ro, "s3:PutObject")


def test_kms_key_only_when_the_lake_has_one(resolve_tier):
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    without = statements(resolve_tier(DataKmsKeyArn="none").resources())
    with_key = statements(resolve_tier(DataKmsKeyArn=key).resources())
    assert not [s for s in without if any(a.startswith("kms:") for a in s["Action"])]
    kms = [s for s in with_key if any(a.startswith("kms:") for a in s["Action"])]
    assert kms and kms[0]["Resource"] == [key]


def test_tier_role_has_no_wildcard_actions(resolve_tier):
    for s in statements(resolve_tier().resources()):
        assert all(a != "*" and not a.endswith(":*") for a in s["Action"])
        assert "*" not in s["Resource"]


@pytest.mark.parametrize("mode", ["per-user", "shared"])
def test_no_task_gets_a_public_ip(resolve_tier, mode):
    res = resolve_tier(ServerMode=mode).resources()
    services = [r for r in res.values() if r["Type"] == "AWS::ECS::Service"]
    assert services
    for svc in services:
        cfg = svc["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert cfg["AssignPublicIp"] == "DISABLED"
        assert cfg["Subnets"] == ["<ssm:PrivateSubnet1Id>", "<ssm:PrivateSubnet2Id>"]


def test_secrets_arrive_through_ecs_secrets_never_environment(resolve_tier):
    for mode in ("cognito", "oidc", "ldap"):
        res = resolve_tier(AuthMode=mode).resources()
        for td in (r for r in res.values() if r["Type"] == "AWS::ECS::TaskDefinition"):
            for c in td["Properties"]["ContainerDefinitions"]:
                env_names = {e["Name"] for e in c.get("Environment", [])}
                assert not {n for n in env_names if any(w in n for w in ("SECRET", "PASSWORD", "TOKEN"))}
        hub = res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
        secret_names = {s["Name"] for s in hub["Secrets"]}
        assert "LAKEHUB_COOKIE_SECRET" in secret_names
        if mode in ("cognito", "oidc"):
            assert "LAKEHUB_OAUTH_CLIENT_SECRET" in secret_names
        else:
            assert "LAKEHUB_LDAP_BIND_PASSWORD" in secret_names


@pytest.mark.parametrize("mode", ["cognito", "oidc", "ldap"])
def test_a_tier_keeps_its_own_sign_in_secrets_in_one_secret(resolve_tier, mode):
    """One Secrets Manager secret per tier ($0.40 a month, not $0.80): a JSON document holding
    the generated cookie secret and, in cognito mode, the app client's secret; ECS takes each by
    its JSON key (`ARN:json-key::`, docs/AWS_NOTES.md)."""
    res = resolve_tier(AuthMode=mode, TierName="nonpii").resources()
    [(logical, secret)] = [(k, r) for k, r in res.items() if r["Type"] == "AWS::SecretsManager::Secret"]
    props = secret["Properties"]
    assert props["Name"] == "lakehub/nonpii/hub-secret"
    generate = props["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "cookie_secret" and int(generate["PasswordLength"]) >= 32
    template = generate["SecretStringTemplate"]
    hub = {s["Name"]: s["ValueFrom"] for s in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Secrets"]}
    assert hub["LAKEHUB_COOKIE_SECRET"] == f"<{logical}>:cookie_secret::"
    if mode == "cognito":
        assert template == '{"oauth_client_secret":"<UserPoolClient.ClientSecret>"}'
        assert hub["LAKEHUB_OAUTH_CLIENT_SECRET"] == f"<{logical}>:oauth_client_secret::"
    else:
        assert template == "{}"
    readable = [r for p in res["ExecutionRole"]["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]
                if "secretsmanager:GetSecretValue" in st["Action"] for r in st["Resource"]]
    assert f"<{logical}>" in readable


def test_tasks_run_on_graviton(resolve_tier):
    res = resolve_tier().resources()
    for td in (r for r in res.values() if r["Type"] == "AWS::ECS::TaskDefinition"):
        assert td["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "ARM64"


def test_service_rolls_back_a_failed_deployment(resolve_tier):
    svc = resolve_tier().resources()["Service"]["Properties"]
    breaker = svc["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
    assert breaker == {"Enable": True, "Rollback": True}


def test_sticky_sessions_only_when_several_hub_tasks(resolve_tier):
    def sticky(**kw):
        attrs = resolve_tier(**kw).resources()["TargetGroup"]["Properties"]["TargetGroupAttributes"]
        return {a["Key"]: a["Value"] for a in attrs}["stickiness.enabled"]

    assert sticky(ServerMode="shared", MaxTasks="3") == "true"
    assert sticky(ServerMode="per-user", MaxTasks="1") == "false"


def test_target_group_checks_hub_health(resolve_tier):
    tg = resolve_tier().resources()["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/hub/health"
    assert tg["TargetType"] == "ip"


def test_listener_rule_routes_the_tier_host(resolve_tier):
    res = resolve_tier(HostName="pii").resources()
    rule = res["ListenerRule"]["Properties"]
    assert rule["Conditions"][0]["HostHeaderConfig"]["Values"] == ["pii.lakehub.example.com"]
    assert rule["Priority"] == "<ListenerRulePriority.Priority>"
    fixed = resolve_tier(ListenerPriority="42").resources()
    assert fixed["ListenerRule"]["Properties"]["Priority"] == "42"
    assert "ListenerRulePriority" not in fixed


def test_per_user_hub_passes_only_the_user_task_and_execution_roles_to_ecs_tasks(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    stmts = statements(res, "HubRole")
    pass_role = [s for s in stmts if "iam:PassRole" in s["Action"]]
    assert len(pass_role) == 1
    assert sorted(pass_role[0]["Resource"]) == ["<ExecutionRole.Arn>", "<UserTaskRole.Arn>"]
    assert pass_role[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    run = next(s for s in stmts if "ecs:RunTask" in s["Action"])
    assert run["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task-definition/lakehub-pii-user:*"]
    # the hub task runs with the hub role, users' tasks with the user task role: neither is the data role
    assert res["HubTaskDefinition"]["Properties"]["TaskRoleArn"] == "<HubRole.Arn>"
    assert res["UserServerTaskDefinition"]["Properties"]["TaskRoleArn"] == "<UserTaskRole.Arn>"


def test_users_tasks_run_with_a_role_without_data(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    role = res["UserTaskRole"]["Properties"]
    assert not [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
    assert not role.get("ManagedPolicyArns")


@pytest.mark.parametrize("mode", ["shared", "per-user"])
def test_the_hub_runs_with_the_hub_role_and_may_assume_the_tier_role_in_both_modes(resolve_tier, mode):
    res = resolve_tier(ServerMode=mode).resources()
    assert res["HubTaskDefinition"]["Properties"]["TaskRoleArn"] == "<HubRole.Arn>"
    stmts = statements(res, "HubRole")
    [assume] = [s for s in stmts if "sts:AssumeRole" in s["Action"]]
    assert sorted(assume["Action"]) == ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
    assert assume["Resource"] == ["arn:aws:iam::123456789012:role/lakehub-pii-tier"]
    # the hub itself holds no data: it reads and lists only its own database's replica
    reads = [s for s in stmts if any(a.startswith("s3:Get") or a.startswith("s3:List") for a in s["Action"])]
    assert [s["Sid"] for s in reads] == (["ListHubState", "KeepHubState"] if mode == "per-user" else [])
    env = {e["Name"]: e["Value"] for e in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert env["LAKEHUB_TIER_ROLE_ARN"] == "arn:aws:iam::123456789012:role/lakehub-pii-tier"
    assert res["TierRole"]["Properties"]["RoleName"] == "lakehub-pii-tier"
    if mode == "shared":
        assert "UserServerTaskDefinition" not in res and "UserTaskRole" not in res


def test_only_the_hub_role_assumes_the_tier_role_and_only_for_a_named_user(resolve_tier):
    res = resolve_tier().resources()
    [trust] = res["TierRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "<HubRole.Arn>"}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
    assert trust["Condition"]["Null"] == {"sts:SourceIdentity": "false", "aws:RequestTag/lakehub-user": "false"}
    assert trust["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["lakehub-user"]}
    assert res["TierRole"]["Properties"]["MaxSessionDuration"] == 3600


def test_the_tier_role_reaches_the_shared_folder_and_the_sessions_own_folder_only(resolve_tier):
    stmts = statements(resolve_tier(TierName="pii").resources())
    own = "tiers/pii/users/${aws:PrincipalTag/lakehub-user}/"
    [rw] = [s for s in stmts if s.get("Sid") == "ReadWriteSharedAndOwnNotebooks"]
    assert sorted(rw["Resource"]) == sorted([
        "arn:aws:s3:::example-notebooks/tiers/pii/shared/*", f"arn:aws:s3:::example-notebooks/{own}*"])
    [listing] = [s for s in stmts if s.get("Sid") == "ListSharedAndOwnNotebooks"]
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == sorted(
        ["tiers/pii/shared/", "tiers/pii/shared/*", own, own + "*"])
    # no statement reaches the tier root or users/ as a whole
    every = [r for s in stmts for r in s["Resource"]] + [p for s in stmts for p in s.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])]
    assert not [r for r in every if r.endswith(("tiers/pii/*", "tiers/pii/users/*", "tiers/pii/", "tiers/pii/users/"))]


def test_user_servers_reachable_from_their_hub_only(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    ingress = res["UserServerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress == [
        {
            "IpProtocol": "tcp",
            "FromPort": 8888,
            "ToPort": 8888,
            "SourceSecurityGroupId": "<HubSecurityGroup>",
            "Description": ingress[0]["Description"],
        }
    ]


def test_only_valid_fargate_sizes_are_accepted(templates):
    from lakehub.settings import FARGATE_SIZES

    rules = templates["tier.template.yaml"]["Rules"]
    for cpu, memories in FARGATE_SIZES.items():
        rule = rules[f"ValidMemoryFor{cpu}Cpu"]
        assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "TaskCpu"}, str(cpu)]}
        assert rule["Assertions"][0]["Assert"]["Fn::Contains"][0] == [str(m) for m in memories]


def test_a_per_user_hub_keeps_its_database_under_its_own_hub_state_prefix_only(resolve_tier):
    """Litestream's replica (lakehub_hub.hub_state): list, read, write, delete under
    hub-state/<tier>/ of the notebook bucket and nothing else; no user's role reaches it."""
    res = resolve_tier(ServerMode="per-user").resources()
    stmts = {s.get("Sid"): s for s in statements(res, "HubRole")}
    listing, keep = stmts["ListHubState"], stmts["KeepHubState"]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == ["arn:aws:s3:::example-notebooks"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["hub-state/pii/*"]}}
    assert sorted(keep["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert keep["Resource"] == ["arn:aws:s3:::example-notebooks/hub-state/pii/*"]
    env = {e["Name"]: e["Value"] for e in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert (env["LAKEHUB_HUB_STATE_BUCKET"], env["LAKEHUB_HUB_STATE_PREFIX"]) == ("example-notebooks", "hub-state/pii/")
    for role in ("TierRole", "UserTaskRole", "ExecutionRole"):
        reached = [r for s in statements(res, role) for r in s["Resource"] if isinstance(r, str)]
        assert not [r for r in reached if "hub-state" in r or r.endswith("example-notebooks/*")], role
    # one hub at a time writes the replica: a deployment stops the old task before the new one starts
    deployment = res["Service"]["Properties"]["DeploymentConfiguration"]
    assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (100, 0)


def test_a_shared_hub_keeps_no_replica(resolve_tier):
    """Shared mode: servers live in the hub task (they cannot outlive it) and several hub tasks
    would write one replica."""
    res = resolve_tier(ServerMode="shared").resources()
    env = {e["Name"]: e["Value"] for e in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert env["LAKEHUB_HUB_STATE_BUCKET"] == ""
    assert not [s for s in statements(res, "HubRole") if "hub-state" in str(s)]


def test_the_nightly_stop_stops_the_hub_only_and_a_per_user_hub_leaves_servers_running(resolve_tier):
    """Decision (docs/HUB_ENV.md, "Nightly stop"): the schedule scales the hub service to 0; a
    per-user hub's database persists (LAKEHUB_HUB_STATE_BUCKET), so the hub config turns
    cleanup_servers off and users' servers, with their unsaved work, keep running; the morning hub
    takes them back and its idle culler stops the idle ones."""
    res = resolve_tier(ServerMode="per-user", Schedule="business-hours").resources()
    actions = {a["ScheduledActionName"]: a for a in res["ScalableTarget"]["Properties"]["ScheduledActions"]}
    end = actions["business-hours-end"]["ScalableTargetAction"]
    assert (end["MinCapacity"], end["MaxCapacity"]) == (0, 0)
    assert res["ScalableTarget"]["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    env = {e["Name"]: e["Value"] for e in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert env["LAKEHUB_HUB_STATE_BUCKET"]  # what makes fargate.hub_state_persists() true
    # nothing in the template stops users' tasks on a schedule
    assert not [n for n, r in res.items() if r.get("Type") in ("AWS::Events::Rule", "AWS::Scheduler::Schedule")]


def test_users_servers_reach_a_replaced_per_user_hub_by_a_name_that_follows_its_task(resolve_tier):
    """A replaced hub task has a new private IP, and users' servers keep the hub API URL they were
    started with: the hub service registers its task in a private Cloud Map namespace (an A record
    ECS updates at each task start) and users' servers are given that name."""
    res = resolve_tier(ServerMode="per-user").resources()
    namespace = res["HubNamespace"]["Properties"]
    assert namespace["Name"] == "pii.lakehub.lakehub.internal" and namespace["Vpc"]
    discovery = res["HubDiscovery"]["Properties"]
    assert discovery["Name"] == "hub"
    assert discovery["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert res["Service"]["Properties"]["ServiceRegistries"] == [{"RegistryArn": "arn:aws:servicediscovery:us-east-1:123456789012:service/<HubDiscovery>"}]
    env = {e["Name"]: e["Value"] for e in res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert env["LAKEHUB_HUB_CONNECT_URL"] == "http://hub.pii.lakehub.lakehub.internal:8081"
    shared = resolve_tier(ServerMode="shared").resources()
    assert "HubNamespace" not in shared and "ServiceRegistries" not in shared["Service"]["Properties"]


def test_hub_container_health_check_asks_the_port_the_hub_listens_on(resolve_tier):
    """The task definition's HealthCheck asks the port in LAKEHUB_HUB_PORT (8000 on ECS), as the
    image's HEALTHCHECK does: the local platform runs each tier's hub task on a port of its own on
    the shared loopback (container runtime), where a fixed 8000 made every hub UNHEALTHY."""
    import os
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    container = resolve_tier().resources()["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["LAKEHUB_HUB_PORT"] == "8000"
    kind, command = container["HealthCheck"]["Command"]
    assert kind == "CMD-SHELL"

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/hub/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def check(port: str) -> int:
            return subprocess.run(["/bin/sh", "-c", command], env=dict(os.environ, LAKEHUB_HUB_PORT=port),
                                  capture_output=True, timeout=30).returncode

        port = str(server.server_address[1])
        assert check(port) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert check(port) != 0  # nothing listens there now: unhealthy
