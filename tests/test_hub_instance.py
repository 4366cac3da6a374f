"""The on-demand hub product (hub-instance.template.yaml): what its role reaches, how it is
reached, and how it stops itself."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from lakehub.stacks import hub_instance as hi
from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR
from lakehub.release.build import render
from lakehub.cfn.template import Resolver, load, loads
from lakehub.settings import TierSettings, default_settings, validate

TEMPLATE = TEMPLATES_DIR / names.HUB_INSTANCE_TEMPLATE

PLATFORM_VALUES = {name: f"<ssm:{name}>" for name in hi.HUB_SSM_PARAMS}
PLATFORM_VALUES.update(
    {
        "DataBucketName": "example-lake",
        "NotebookBucketName": "example-notebooks",
        "DataKmsKeyArn": "none",
        "AuthMode": "cognito",
        "DomainName": "lakehub.example.com",
        "VpcCidr": "10.20.0.0/16",
        "LogGroupName": "/lakehub/lakehub/tasks",
        "ImageRepositoryUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lakehub/hub",
        "AmiArm64": "ami-arm64",
        "AmiX86": "ami-x86",
        "AmiGpuX86": "ami-gpu",
    }
)


class MapResolver(Resolver):
    """The shared Resolver, plus Fn::FindInMap (this template's tiers and idle periods)."""

    def _resolve(self, node):
        if isinstance(node, dict) and len(node) == 1 and "Fn::FindInMap" in node:
            m, top, second = (self.resolve(x) for x in node["Fn::FindInMap"])
            return self.template["Mappings"][m][str(top)][second]
        return super()._resolve(node)


@pytest.fixture(scope="module")
def template() -> dict:
    return load(TEMPLATE)


def resolve(template, **params) -> MapResolver:
    return MapResolver(template, {**PLATFORM_VALUES, "Owner": "alice", **params})


def role_statements(resources, role="UserRole") -> list[dict]:
    """Every statement that applies to `role`: its inline policies and AWS::IAM::RolePolicy
    resources attached to it."""
    out = []
    for policy in resources[role]["Properties"].get("Policies", []):
        out += policy["PolicyDocument"]["Statement"]
    for res in resources.values():
        if res["Type"] == "AWS::IAM::RolePolicy" and res["Properties"]["RoleName"] == f"<{role}>":
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def users_role(resources) -> str:
    """The role users' servers run with: the one the hub serves them (LAKEHUB_TIER_ROLE_ARN), or,
    without one, the instance role (their processes share the host's network and reach IMDS)."""
    env = hub_env_from_user_data(resources["Instance"]["Properties"]["UserData"])
    arn = env.get("LAKEHUB_TIER_ROLE_ARN", "")
    return arn[1 : -len(".Arn>")] if arn.startswith("<") else "InstanceRole"


def actions_on(stmts, action) -> list[str]:
    found = []
    for s in stmts:
        if action in s["Action"]:
            found += s["Resource"]
    return found


def test_imdsv2_is_required(template):
    options = template["Resources"]["Instance"]["Properties"]["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 1  # the container uses host networking


@pytest.mark.parametrize("access", [hi.ACCESS_SSM, hi.ACCESS_LOAD_BALANCER])
def test_no_inbound_rule_from_anywhere(template, access):
    res = resolve(template, AccessMode=access, HostName="alice").resources()
    for name, r in res.items():
        if r["Type"] == "AWS::EC2::SecurityGroup":
            assert not r["Properties"].get("SecurityGroupIngress"), f"{name} has an inbound rule"
        if r["Type"] == "AWS::EC2::SecurityGroupIngress":
            # The one inbound rule the stack adds: NFS into the platform's homes (EFS mount
            # targets) from this hub, never into the hub.
            p = r["Properties"]
            assert name == "HomesNfsFromInstance" and "HomesSecurityGroupId" in str(p["GroupId"]), f"{name} opens a port"
            assert (p["FromPort"], p["ToPort"], "CidrIp" in p) == (names.NFS_PORT, names.NFS_PORT, False)
            continue
        for rule in r["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0" and rule.get("CidrIpv6") != "::/0"


def test_load_balancer_access_only_through_the_platform_task_group(template):
    ssm = resolve(template).resources()
    assert ssm["Instance"]["Properties"]["SecurityGroupIds"] == ["<InstanceSecurityGroup>"]
    assert not {"TargetGroup", "ListenerRule", "DnsRecord", "ListenerRulePriority"} & set(ssm)
    lb = resolve(template, AccessMode="load-balancer", HostName="alice", ListenerPriority="120").resources()
    # The platform's hub-task group: its only inbound source is the load balancer's group.
    assert lb["Instance"]["Properties"]["SecurityGroupIds"] == ["<InstanceSecurityGroup>", "<ssm:TaskSecurityGroupId>"]
    rule = lb["ListenerRule"]["Properties"]
    assert rule["Priority"] == "120"
    assert rule["Conditions"][0]["HostHeaderConfig"]["Values"] == ["hub-alice.lakehub.example.com"]
    assert lb["TargetGroup"]["Properties"]["Targets"] == [{"Id": "<Instance>", "Port": names.HUB_PORT}]
    assert "ListenerRulePriority" not in lb  # a fixed priority needs no look-up
    auto = resolve(template, AccessMode="load-balancer", HostName="alice").resources()
    assert auto["ListenerRulePriority"]["Type"] == "Custom::ListenerPriority"


def test_load_balancer_access_needs_a_host_name(template):
    rule = template["Rules"]["LoadBalancerNeedsHostName"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AccessMode"}, "load-balancer"]}


def test_idle_alarm_stops_the_instance_with_the_launch_parameters(template):
    alarm = template["Resources"]["IdleStopAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Fn::Sub": "arn:${AWS::Partition}:automate:${AWS::Region}:ec2:stop"}]
    assert alarm["Threshold"] == {"Ref": "IdleCpuPercent"}
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Namespace"] == "AWS/EC2" and alarm["MetricName"] == "CPUUtilization"
    assert alarm["Dimensions"] == [{"Name": "InstanceId", "Value": {"Ref": "Instance"}}]
    assert alarm["EvaluationPeriods"] == {"Fn::FindInMap": ["IdlePeriods", {"Ref": "IdleMinutes"}, "EvaluationPeriods"]}
    assert alarm["TreatMissingData"] == "notBreaching"  # a stopped hub must not count as busy


@pytest.mark.parametrize("minutes", hi.IDLE_MINUTES_CHOICES)
def test_idle_alarm_window_equals_idle_minutes(template, minutes):
    alarm = resolve(template, IdleMinutes=minutes, IdleCpuPercent="7").resources()["IdleStopAlarm"]["Properties"]
    assert alarm["Threshold"] == "7"
    assert int(alarm["EvaluationPeriods"]) * int(alarm["Period"]) == int(minutes) * 60
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    assert template["Parameters"]["IdleMinutes"]["AllowedValues"] == list(hi.IDLE_MINUTES_CHOICES)


def test_root_volume_is_encrypted_gp3(template):
    (mapping,) = template["Resources"]["Instance"]["Properties"]["BlockDeviceMappings"]
    ebs = mapping["Ebs"]
    assert ebs["Encrypted"] is True and ebs["VolumeType"] == "gp3" and ebs["DeleteOnTermination"] is True
    assert ebs["VolumeSize"] == {"Ref": "VolumeSize"}


def test_instance_types_span_general_memory_and_gpu_families(template):
    offered = template["Parameters"]["InstanceType"]["AllowedValues"]
    families = {t.split(".")[0] for t in offered}
    assert {"t4g", "m7g", "m6i", "r7g", "r6i", "g5", "g6"} <= families


@pytest.mark.parametrize(
    "instance_type, ami",
    [
        ("t4g.large", "ami-arm64"),
        ("r7g.4xlarge", "ami-arm64"),
        ("m6i.large", "ami-x86"),
        ("r6i.2xlarge", "ami-x86"),
        ("g5.xlarge", "ami-gpu"),
        ("g6.2xlarge", "ami-gpu"),
    ],
)
def test_machine_image_follows_the_instance_family(template, instance_type, ami):
    props = resolve(template, InstanceType=instance_type, VolumeSize="128").resources()["Instance"]["Properties"]
    assert props["ImageId"] == ami
    gpu = "--gpus all" in props["UserData"]
    assert gpu == instance_type.startswith("g")


def test_gpu_types_need_the_larger_disk(template):
    rule = template["Rules"]["GpuNeedsLargerDisk"]
    gpu_types = rule["RuleCondition"]["Fn::Contains"][0]
    assert sorted(gpu_types) == sorted(t for t in hi.INSTANCE_TYPES if t.startswith("g"))
    assert "64" not in rule["Assertions"][0]["Assert"]["Fn::Contains"][0]


def test_tier_is_chosen_from_the_build_time_tiers(template):
    settings = default_settings()
    assert template["Parameters"]["TierName"]["AllowedValues"] == [t.name for t in settings.tiers]


def test_hub_role_reads_only_the_chosen_tiers_prefixes(template):
    pii = role_statements(resolve(template, TierName="pii").resources())
    nonpii = role_statements(resolve(template, TierName="nonpii").resources())
    own = "users/${aws:PrincipalTag/lakehub-user}/*"
    assert sorted(actions_on(pii, "s3:GetObject")) == [
        "arn:aws:s3:::example-lake/pii/*",
        "arn:aws:s3:::example-notebooks/tiers/pii/shared/*",
        f"arn:aws:s3:::example-notebooks/tiers/pii/{own}",
    ]
    assert sorted(actions_on(nonpii, "s3:GetObject")) == [
        "arn:aws:s3:::example-lake/nonpii/*",
        "arn:aws:s3:::example-notebooks/tiers/nonpii/shared/*",
        f"arn:aws:s3:::example-notebooks/tiers/nonpii/{own}",
    ]
    listing = [s for s in pii if "s3:ListBucket" in s["Action"]]
    assert {tuple(s["Resource"]) for s in listing} == {("arn:aws:s3:::example-lake",), ("arn:aws:s3:::example-notebooks",)}
    for s in listing:
        assert all(p.startswith(("pii/", "tiers/pii/")) for p in s["Condition"]["StringLike"]["s3:prefix"])


def test_read_only_tier_hub_cannot_write_data():
    settings = validate(
        default_settings().__class__(
            tiers=(
                TierSettings(
                    name="pii", data_prefixes=("pii/", "claims/"), allowed_groups=("pii-users",), data_access="read-only"
                ),
                TierSettings(
                    name="nonpii", data_prefixes=("nonpii/",), allowed_groups=("nonpii-users",), data_access="read-write"
                ),
            )
        )
    )
    template = loads(render(hi.build_hub_instance(settings)))
    ro = role_statements(resolve(template, TierName="pii").resources())
    rw = role_statements(resolve(template, TierName="nonpii").resources())
    assert sorted(actions_on(ro, "s3:GetObject")) == [
        "arn:aws:s3:::example-lake/claims/*",
        "arn:aws:s3:::example-lake/pii/*",
        "arn:aws:s3:::example-notebooks/tiers/pii/shared/*",
        "arn:aws:s3:::example-notebooks/tiers/pii/users/${aws:PrincipalTag/lakehub-user}/*",
    ]
    assert actions_on(ro, "s3:PutObject") == [
        "arn:aws:s3:::example-notebooks/tiers/pii/shared/*",
        "arn:aws:s3:::example-notebooks/tiers/pii/users/${aws:PrincipalTag/lakehub-user}/*",
    ]
    assert "arn:aws:s3:::example-lake/nonpii/*" in actions_on(rw, "s3:PutObject")


@pytest.mark.parametrize("auth", ["cognito", "oidc", "ldap"])
def test_users_servers_role_reads_no_secret_and_nothing_of_the_hubs(template, auth):
    """Everyone signed in runs code in a server: the role that code holds must not read the
    hub's secrets (cookie secret, OAuth client secret, LDAP bind password), pull images, write
    the hub's logs, or act as the instance (Session Manager)."""
    res = resolve(template, AuthMode=auth, LdapBindPasswordSecretName="lakehub/ldap").resources()
    role = users_role(res)
    assert role != "InstanceRole", "users' servers get the instance role (through IMDS)"
    actions = {a for s in role_statements(res, role) for a in s["Action"]}
    assert actions, "the users' role grants nothing"
    assert not {
        a
        for a in actions
        if a.split(":")[0] in ("secretsmanager", "ecr", "logs", "ssm", "ssmmessages", "sts", "iam", "kms")
        and a not in ("kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey")
    }, actions
    for s in role_statements(res, role):
        assert not any(":secretsmanager:" in str(r) for r in s["Resource"]), s


def test_instance_role_holds_no_data_and_assumes_only_the_user_role(template):
    res = resolve(template).resources()
    stmts = role_statements(res, "InstanceRole")
    assert not [s for s in stmts if any(a.startswith(("s3:", "kms:")) for a in s["Action"])], (
        "data access belongs to the user role"
    )
    assume = [s for s in stmts if "sts:AssumeRole" in s["Action"]]
    assert [s["Resource"] for s in assume] == [["<UserRole.Arn>"]]
    assert set(assume[0]["Action"]) == {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
    # the hub needs the policy before the first spawn
    assert res["Instance"]["DependsOn"] == ["InstanceAssumesUserRole"]


def test_user_role_trusts_only_the_instance_role_and_lets_it_set_the_source_identity(template):
    res = resolve(template).resources()
    (trust,) = res["UserRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "<InstanceRole.Arn>"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
    # only for one named user: SourceIdentity and the lakehub-user session tag, no other tag
    assert trust["Condition"]["Null"] == {"sts:SourceIdentity": "false", "aws:RequestTag/lakehub-user": "false"}
    assert trust["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["lakehub-user"]}
    assert res["UserRole"]["Properties"]["MaxSessionDuration"] == 3600


def test_imds_is_v2_only_and_ipv4_only(template):
    opts = resolve(template).resources()["Instance"]["Properties"]["MetadataOptions"]
    assert opts["HttpTokens"] == "required" and opts["HttpProtocolIpv6"] == "disabled"


@pytest.mark.parametrize("role", ["InstanceRole", "UserRole"])
def test_hub_role_has_no_wildcard_actions_and_only_session_manager_on_star(template, role):
    stmts = role_statements(resolve(template).resources(), role)
    for s in stmts:
        for action in s["Action"]:
            assert "*" not in action, action
        if s["Resource"] == ["*"]:
            assert set(s["Action"]) <= {
                "ecr:GetAuthorizationToken",
                "ssm:UpdateInstanceInformation",
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
            }, s


def test_owner_and_tier_are_tagged(template):
    res = resolve(template, Owner="alice@example.com", TierName="nonpii").resources()
    for name in ("Instance", "InstanceRole", "UserRole", "InstanceSecurityGroup", "CookieSecret"):
        tags = {t["Key"]: t["Value"] for t in res[name]["Properties"]["Tags"]}
        assert tags[names.TAG_OWNER] == "alice@example.com", name
        assert tags[names.TAG_TIER] == "nonpii", name
        assert tags[names.TAG_PLATFORM] == "lakehub", name
    assert res["Instance"]["Properties"]["PropagateTagsToVolumeOnCreation"] is True
    tags = {t["Key"]: t["Value"] for t in res["Instance"]["Properties"]["Tags"]}
    assert tags[names.TAG_PRODUCT] == hi.PRODUCT_TAG_VALUE  # end users may reach instances with this tag only


def test_port_forward_command_output(template):
    out = resolve(template, LocalPort="8890").resolve(template["Outputs"]["PortForwardCommand"]["Value"])
    assert out == (
        "aws ssm start-session --region us-east-1 --target <Instance> --document-name AWS-StartPortForwardingSession"
        ' --parameters \'{"portNumber":["8000"],"localPortNumber":["8890"]}\''
    )
    url = resolve(template, LocalPort="8890").resolve(template["Outputs"]["HubUrl"]["Value"])
    assert url == "http://localhost:8890"


def hub_env_from_user_data(user_data: str) -> dict[str, str]:
    block = user_data.split("<<'LAKEHUB_ENV'\n", 1)[1].split("\nLAKEHUB_ENV\n", 1)[0]
    return dict(line.split("=", 1) for line in block.splitlines())


def test_hub_gets_the_tier_hub_environment_contract(template):
    """Every variable a tier's hub task sets is set on the instance too, except the ones only
    the per-user (Fargate) spawner reads."""
    tier = load(TEMPLATES_DIR / names.TIER_TEMPLATE)
    container = tier["Resources"]["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    tier_env = {e["Name"] for e in container["Environment"]}
    # Per-user mode's: the spawner's, and since issue 16 what lets users' tasks outlive the hub
    # task (its database's replica, its Cloud Map name); the instance's servers run in the instance.
    per_user_only = {n for n in tier_env if n.startswith("LAKEHUB_USER_")} | {
        "LAKEHUB_CLUSTER",
        "LAKEHUB_HUB_API_PORT",
        "LAKEHUB_SPAWN_ENV_PREFIX",
        "LAKEHUB_HOMES_FILE_SYSTEM_ID",
        "LAKEHUB_HUB_STATE_BUCKET",
        "LAKEHUB_HUB_STATE_PREFIX",
        "LAKEHUB_HUB_CONNECT_URL",
    }
    # Issue 18: LAKEHUB_PLATFORM turns on the metrics exporter, which only tier hubs run (the
    # dashboard and alarms are per tier); an on-demand hub is one owner's and stops when idle.
    per_user_only |= {"LAKEHUB_PLATFORM"}
    user_data = resolve(template, TierName="nonpii").resources()["Instance"]["Properties"]["UserData"]
    env = hub_env_from_user_data(user_data)
    assert tier_env - per_user_only <= set(env), sorted(tier_env - per_user_only - set(env))
    assert env["LAKEHUB_SERVER_MODE"] == "shared"
    assert env["LAKEHUB_ALLOWED_GROUPS"] == "nonpii-users"
    assert env["LAKEHUB_DATA_PREFIXES"] == "nonpii/"
    assert env["LAKEHUB_NOTEBOOK_PREFIX"] == "tiers/nonpii"
    assert env["LAKEHUB_HUB_IP"] == "127.0.0.1"  # ssm access: only the tunnel reaches it
    assert env["LAKEHUB_PUBLIC_URL"] == "http://localhost:8000"
    assert not any(k.endswith(("SECRET", "PASSWORD")) for k in env), "secrets are read at boot, never in the template"


def test_hub_listens_on_all_addresses_only_behind_the_load_balancer(template):
    user_data = resolve(template, AccessMode="load-balancer", HostName="alice").resources()["Instance"]["Properties"]["UserData"]
    env = hub_env_from_user_data(user_data)
    assert env["LAKEHUB_HUB_IP"] == "0.0.0.0"
    assert env["LAKEHUB_PUBLIC_URL"] == "https://hub-alice.lakehub.example.com"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize("auth", ["cognito", "oidc", "ldap"])
def test_user_data_is_valid_bash(template, tmp_path, auth):
    user_data = resolve(template, AuthMode=auth).resources()["Instance"]["Properties"]["UserData"]
    assert user_data.startswith("#!/bin/bash\n")
    assert not re.search(r"\$\{[A-Za-z:]+\}", user_data.replace("${!", "")), "unresolved Fn::Sub variable"
    script = tmp_path / "user-data.sh"
    script.write_text(user_data)
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_launch_fails_with_the_reason_when_the_hub_does_not_come_up(template):
    instance = template["Resources"]["Instance"]
    assert instance["CreationPolicy"]["ResourceSignal"] == {"Count": 1, "Timeout": hi.SIGNAL_TIMEOUT}
    user_data = resolve(template).resources()["Instance"]["Properties"]["UserData"]
    assert "cfn-signal --exit-code" in user_data
    assert "x86 types need a linux/amd64 image" in user_data


def test_roles_live_under_the_platform_and_tier_path(template):
    """/lakehub/<platform>/<tier>/: the launch role of one tier's hub product manages only these."""
    for tier in ("pii", "nonpii"):
        res = resolve(template, PlatformName="lakehub", TierName=tier).resources()
        assert res["InstanceRole"]["Properties"]["Path"] == f"/lakehub/lakehub/{tier}/"
        assert res["InstanceProfile"]["Properties"]["Path"] == f"/lakehub/lakehub/{tier}/"


def test_user_data_fits_the_ec2_limit(template):
    for auth in ("cognito", "oidc", "ldap"):
        user_data = resolve(template, AuthMode=auth, AccessMode="load-balancer", HostName="alice").resources()["Instance"][
            "Properties"
        ]["UserData"]
        assert len(user_data.encode()) < 16 * 1024


# --------------------------------------------------------------------------- the boot script, run
STUBS = {
    # Each stub records its arguments; `aws` answers the calls the script makes.
    "dnf": "exit 0",
    "systemctl": "exit 0",
    "uname": "echo aarch64",
    "sleep": "exit 0",
    "aws": """case "$1 $2" in
  "ecr get-login-password") echo ecr-token ;;
  "secretsmanager get-secret-value") echo "value-of-$6" ;;
  *) exit 3 ;;
esac""",
    "docker": """[ "$1" = pull ] && [ -n "${FAIL_PULL:-}" ] && exit 1
[ "$1" = login ] && cat >/dev/null
exit 0""",
    # The egress probe (regional CloudFormation endpoint) answers after EGRESS_DOWN failures
    # (never with EGRESS_DOWN=all); the hub's health check answers with CURL_EXIT.
    "curl": """case "$*" in
  *cloudformation.*)
    n=$(( $(cat "$HOME/egress-probes" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$HOME/egress-probes"
    [ "${EGRESS_DOWN:-0}" = all ] && exit 7
    [ "$n" -le "${EGRESS_DOWN:-0}" ] && exit 7
    exit 0 ;;
  *) exit "${CURL_EXIT:-0}" ;;
esac""",
    "cfn-signal": "exit 0",
    "iptables": "exit 0",
    "mountpoint": "exit 1",
    "mount": "exit ${MOUNT_EXIT:-0}",
}


def run_boot_script(template, tmp_path, env_extra=None, **params):
    """The hub's user data, run with stub commands in place of dnf, docker, aws, curl and
    cfn-signal, and its fixed paths moved under tmp_path. Returns (exit code, calls, files)."""
    user_data = resolve(template, **params).resources()["Instance"]["Properties"]["UserData"]
    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    (root / "etc").mkdir(parents=True)
    calls = tmp_path / "calls.log"
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\n{body}\n')
        stub.chmod(0o755)
    script = (
        user_data.replace("/opt/aws/bin/cfn-signal", str(bin_dir / "cfn-signal"))
        .replace("/var/log/lakehub-hub.log", str(root / "hub.log"))
        .replace("/etc/lakehub", str(root / "etc" / "lakehub"))
        .replace("/usr/local/sbin/", str(root) + "/")
        .replace("/etc/systemd/system/", str(root) + "/")
        .replace("/etc/fstab", str(root / "etc" / "fstab"))
        .replace(hi.HOMES_HOST_MOUNT, str(root / "homes"))
    )
    # Nothing of this machine may be touched: every fixed path the script writes is moved.
    for path in ("/etc/fstab", hi.HOMES_HOST_MOUNT):
        assert not re.search(r"(?<!/root)" + re.escape(path), script), path
    (tmp_path / "user-data.sh").write_text(script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **(env_extra or {})}
    proc = subprocess.run(["bash", str(tmp_path / "user-data.sh")], env=env, capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc.returncode, lines, root


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_runs_the_hub_image_and_signals_success(template, tmp_path):
    code, calls, root = run_boot_script(
        template, tmp_path, TierName="nonpii", InstanceType="g5.xlarge", VolumeSize="128", AuthMode="ldap"
    )
    assert code == 0, (root / "hub.log").read_text()
    image = "<HubImage.ImageUri>"  # the ImageTag's digest (Custom::ImageDigest), never a tag
    (run,) = [c for c in calls if c.startswith("docker run ")]
    assert "--network host" in run and "--restart unless-stopped" in run and "--gpus all" in run
    assert run.endswith(image)
    assert f"docker pull -q {image}" in calls
    assert "awslogs-group=/lakehub/lakehub/tasks" in run
    signals = [c for c in calls if c.startswith("cfn-signal")]
    assert len(signals) == 1 and "--exit-code 0" in signals[0]
    env_file = root / "etc" / "lakehub" / "hub.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600", "the file holds secrets"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["LAKEHUB_TIER"] == "nonpii"
    assert env["LAKEHUB_COOKIE_SECRET"] == "value-of-<CookieSecret>"
    # The platform team's bind password of the tier, at its fixed name (no parameter names it).
    assert env["LAKEHUB_LDAP_BIND_PASSWORD"] == "value-of-lakehub/nonpii/ldap_bind_password"
    assert "LAKEHUB_OAUTH_CLIENT_SECRET" not in env


def failed_launch(template, tmp_path, reason: str, env_extra: dict, **params) -> list[str]:
    """Run the boot script where it must fail: a non-zero exit, and its one cfn-signal says exit
    code 1 and `reason`. Returns the calls."""
    code, calls, _ = run_boot_script(template, tmp_path, env_extra=env_extra, **params)
    assert code != 0
    (signal,) = [c for c in calls if c.startswith("cfn-signal")]
    assert "--exit-code 1" in signal and reason in signal
    return calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_fails_the_launch_with_the_reason(template, tmp_path):
    calls = failed_launch(template, tmp_path, "x86 types need a linux/amd64 image", {"FAIL_PULL": "1"}, InstanceType="m6i.large")
    assert not [c for c in calls if c.startswith("docker run ")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_fails_when_the_hub_never_answers(template, tmp_path):
    calls = failed_launch(template, tmp_path, "did not answer /hub/health", {"CURL_EXIT": "7"})
    assert len([c for c in calls if c.startswith("curl ") and "/hub/health" in c]) == 60


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_waits_for_egress_before_it_needs_it(template, tmp_path):
    """Outside business hours the NAT instance starts because this hub is pending: the boot
    waits for egress (probing the endpoint cfn-signal needs) before dnf, ECR and secrets."""
    code, calls, root = run_boot_script(template, tmp_path, env_extra={"EGRESS_DOWN": "7"})
    assert code == 0, (root / "hub.log").read_text()
    probes = [i for i, c in enumerate(calls) if c.startswith("curl ") and "cloudformation." in c]
    assert len(probes) == 8
    first_dnf = next(i for i, c in enumerate(calls) if c.startswith("dnf "))
    assert probes[-1] < first_dnf
    assert "https://cloudformation.us-east-1.amazonaws.com/" in calls[probes[0]]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_without_egress_fails_with_the_reason(template, tmp_path):
    code, calls, root = run_boot_script(template, tmp_path, env_extra={"EGRESS_DOWN": "all"})
    assert code != 0
    assert len([c for c in calls if c.startswith("curl ") and "cloudformation." in c]) == hi.EGRESS_WAIT_ATTEMPTS
    assert not [c for c in calls if c.startswith(("dnf ", "docker "))]
    assert "no egress from the private subnet" in (root / "hub.log").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_keeps_users_off_imds_on_every_boot_before_docker_starts(template, tmp_path):
    """The hub container shares the host's network: without the rule any user's kernel reads the
    instance role's credentials from IMDS. Only uid 0 passes; the unit runs before docker on
    every boot (the idle alarm stops the instance; a start must not reopen IMDS)."""
    code, calls, root = run_boot_script(template, tmp_path)
    assert code == 0, (root / "hub.log").read_text()
    guard = (root / "lakehub-imds-guard").read_text()
    rules = [line for line in guard.splitlines() if line.startswith("iptables")]
    assert "iptables -A LAKEHUB-IMDS -m owner --uid-owner 0 -j RETURN" in rules
    assert rules.index("iptables -A LAKEHUB-IMDS -m owner --uid-owner 0 -j RETURN") < rules.index(
        "iptables -A LAKEHUB-IMDS -j REJECT"
    )
    assert any("-I OUTPUT 1 -d 169.254.169.254/32 -j LAKEHUB-IMDS" in r for r in rules)
    unit = (root / "lakehub-imds-guard.service").read_text()
    assert "Before=docker.service" in unit and "RequiredBy=docker.service" in unit
    assert f"ExecStart={root}/lakehub-imds-guard" in unit  # hi.IMDS_GUARD, moved under tmp_path
    order = [c for c in calls if c.startswith(("systemctl enable", "docker run", "iptables -C"))]
    assert order == [
        "systemctl enable --now lakehub-imds-guard.service",
        "iptables -C OUTPUT -d 169.254.169.254/32 -j LAKEHUB-IMDS",
        "systemctl enable --now docker",
        order[-1],
    ] and order[-1].startswith("docker run ")
    assert any(c.startswith("dnf ") and "iptables-nft" in c for c in calls)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_fails_the_launch_without_the_imds_rule(template, tmp_path):
    # `iptables -C` answers 1: no such rule
    original = STUBS["iptables"]
    STUBS["iptables"] = '[ "$1" = -C ] && exit 1\nexit 0'
    try:
        code, calls, root = run_boot_script(template, tmp_path)
    finally:
        STUBS["iptables"] = original
    assert code != 0
    assert not [c for c in calls if c.startswith("docker run ")]
    (signal,) = [c for c in calls if c.startswith("cfn-signal")]
    assert "instance metadata service" in signal


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_mounts_the_tier_homes_over_tls_with_iam_before_docker_and_binds_them_at_home(template, tmp_path):
    """Users' homes on the on-demand hub are the tier's folder of the platform's EFS file system
    (the same folder the tier's shared-mode hub mounts), through the stack's access point, with
    TLS and the instance role (the file system's policy refuses anything else); mounted on every
    boot before docker starts, and seen by the hub at /home (LAKEHUB_HOME_ROOT)."""
    code, calls, root = run_boot_script(template, tmp_path, TierName="pii")
    assert code == 0, (root / "hub.log").read_text()
    (entry,) = (root / "etc" / "fstab").read_text().splitlines()
    source, mount_point, fstype, options, *_ = entry.split()
    assert (source, mount_point, fstype) == ("<ssm:HomesFileSystemId>:/", str(root / "homes"), "efs")
    opts = options.split(",")
    assert {"tls", "iam", "_netdev", "accesspoint=<HomesAccessPoint>"} <= set(opts)
    assert {"x-systemd.before=docker.service", "x-systemd.required-by=docker.service"} <= set(opts)
    order = [c for c in calls if c.startswith(("mount ", "systemctl enable --now docker", "docker run"))]
    assert order[0] == f"mount {root / 'homes'}" and order[1] == "systemctl enable --now docker"
    (run,) = [c for c in calls if c.startswith("docker run ")]
    assert f"--volume {root / 'homes'}:/home" in run
    env = dict(line.split("=", 1) for line in (root / "etc" / "lakehub" / "hub.env").read_text().splitlines())
    assert env["LAKEHUB_HOME_ROOT"] == "/home"
    assert any(c.startswith("dnf ") and "amazon-efs-utils" in c for c in calls)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_boot_script_fails_the_launch_when_the_homes_cannot_be_mounted(template, tmp_path):
    calls = failed_launch(template, tmp_path, "cannot mount the homes file system", {"MOUNT_EXIT": "32"})
    assert not [c for c in calls if c.startswith("docker run ")]


def test_the_hub_mounts_only_its_tiers_homes_access_point_as_root(template):
    res = resolve(template, TierName="pii").resources()
    ap = res["HomesAccessPoint"]["Properties"]
    assert ap["RootDirectory"]["Path"] == "/tiers/pii"
    assert ap["RootDirectory"]["CreationInfo"] == {"OwnerUid": "0", "OwnerGid": "0", "Permissions": "0755"}
    statements = [s for p in res["InstanceRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    (mount,) = [s for s in statements if any(a.startswith("elasticfilesystem:") for a in s["Action"])]
    assert sorted(mount["Action"]) == [
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientRootAccess",
        "elasticfilesystem:ClientWrite",
    ]
    assert list(mount["Condition"]) == ["ArnEquals"] and "elasticfilesystem:AccessPointArn" in mount["Condition"]["ArnEquals"]
