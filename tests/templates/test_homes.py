"""Homes (issue 15): the platform's EFS file system, the tier's access point and volume, and who
may mount, create and run what. Resolved templates, asserted on the resources that matter."""

from __future__ import annotations

import pytest

from lakehub.stacks import names
from lakehub.cfn.template import Resolver


def statements(resource: dict) -> list[dict]:
    return [s for p in resource["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def efs_statements(resource: dict) -> list[dict]:
    return [s for s in statements(resource) if any(a.startswith("elasticfilesystem:Client") for a in s["Action"])]


@pytest.fixture
def cluster(templates):
    params = {
        "PlatformName": "lakehub", "DomainName": "lakehub.example.com", "HostedZoneId": "Z1", "VpcId": "vpc-1",
        "VpcCidr": "10.20.0.0/16", "PublicSubnet1Id": "subnet-pub1", "PublicSubnet2Id": "subnet-pub2",
        "PrivateSubnet1Id": "subnet-priv1", "PrivateSubnet2Id": "subnet-priv2", "NotebookBucketName": "nb",
        "DataBucketName": "lake", "SeedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:seed",
        "ImageRepositoryUri": "repo", "AssetsBucketName": "assets", "AssetsKeyPrefix": "lakehub/",
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:lakehub-alarms",
    }
    return Resolver(templates[names.CLUSTER_TEMPLATE], params).resources()


def test_the_homes_file_system_is_encrypted_backed_up_tiered_and_tls_only(cluster):
    fs = cluster["HomesFileSystem"]
    p = fs["Properties"]
    assert p["Encrypted"] is True and p["ThroughputMode"] == "elastic"
    assert p["BackupPolicy"] == {"Status": "ENABLED"}
    assert {"TransitionToIA": "AFTER_30_DAYS"} in p["LifecyclePolicies"]
    assert fs["DeletionPolicy"] == fs["UpdateReplacePolicy"] == "Retain"  # homes outlive the stack
    (deny,) = p["FileSystemPolicy"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # No statement allows anyone: a client that does not mount with IAM (anonymous) gets nothing.
    assert not [s for s in p["FileSystemPolicy"]["Statement"] if s["Effect"] == "Allow"]


def test_the_homes_are_reachable_only_from_the_private_subnets_through_their_own_group(cluster):
    targets = [r for r in cluster.values() if r["Type"] == "AWS::EFS::MountTarget"]
    assert sorted(t["Properties"]["SubnetId"] for t in targets) == ["subnet-priv1", "subnet-priv2"]
    sg = cluster["HomesSecurityGroup"]["Properties"]
    assert not sg.get("SecurityGroupIngress")  # tiers and hubs add their own NFS rules
    assert sg["SecurityGroupEgress"][0]["CidrIp"] == "127.0.0.1/32"
    for t in targets:
        assert t["Properties"]["SecurityGroups"] == ["<HomesSecurityGroup>"]
    published = {r["Properties"]["Name"] for r in cluster.values() if r["Type"] == "AWS::SSM::Parameter"}
    assert {"/lakehub/lakehub/HomesFileSystemId", "/lakehub/lakehub/HomesSecurityGroupId"} <= published


def test_a_shared_hub_mounts_its_tiers_homes_at_home_over_tls_with_iam(resolve_tier):
    res = resolve_tier(ServerMode="shared").resources()
    ap = res["HomesAccessPoint"]["Properties"]
    assert ap["RootDirectory"] == {"Path": "/tiers/pii", "CreationInfo": {"OwnerUid": "0", "OwnerGid": "0", "Permissions": "0755"}}
    td = res["HubTaskDefinition"]["Properties"]
    (volume,) = td["Volumes"]
    cfg = volume["EFSVolumeConfiguration"]
    assert cfg["FilesystemId"] == "<ssm:HomesFileSystemId>" and cfg["TransitEncryption"] == "ENABLED"
    assert cfg["AuthorizationConfig"]["IAM"] == "ENABLED" and cfg["AuthorizationConfig"]["AccessPointId"]
    (container,) = td["ContainerDefinitions"]
    assert container["MountPoints"] == [{"SourceVolume": volume["Name"], "ContainerPath": "/home", "ReadOnly": False}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["LAKEHUB_HOME_ROOT"] == "/home"
    # The hub task's role mounts only that access point, as root (it makes users' folders);
    # the data role mounts nothing.
    assert not efs_statements(res["TierRole"])
    (mount,) = efs_statements(res["HubRole"])
    assert "elasticfilesystem:ClientRootAccess" in mount["Action"]
    assert "elasticfilesystem:AccessPointArn" in mount["Condition"]["ArnEquals"]


def test_a_per_user_hub_mounts_nothing_and_its_users_mount_without_root(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    hub = res["HubTaskDefinition"]["Properties"]
    assert "Volumes" not in hub and "MountPoints" not in hub["ContainerDefinitions"][0]
    assert not efs_statements(res["HubRole"])
    # Users' tasks (UserTaskRole) mount their own access point; EFS enforces its PosixUser.
    assert not efs_statements(res["TierRole"])
    (mount,) = efs_statements(res["UserTaskRole"])
    assert sorted(mount["Action"]) == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]


def test_the_per_user_hub_makes_homes_and_definitions_for_its_own_tier_only(resolve_tier):
    res = resolve_tier(ServerMode="per-user", ClusterName="lakehub").resources()
    by_sid = {s["Sid"]: s for s in statements(res["HubRole"])}
    create = by_sid["CreateUserHomes"]
    assert create["Action"] == ["elasticfilesystem:CreateAccessPoint"]
    assert create["Condition"] == {"StringEquals": {"aws:RequestTag/lakehub:tier": "pii"}}
    tag = by_sid["TagUserHomesAtCreation"]
    assert tag["Condition"]["StringEquals"]["elasticfilesystem:CreateAction"] == "CreateAccessPoint"
    family = "task-definition/lakehub-pii-user-*:*"
    assert by_sid["RegisterUserTaskDefinitions"]["Resource"][0].endswith(family)
    assert by_sid["RunUserHomeServers"]["Resource"][0].endswith(family)
    assert by_sid["TagUserTaskDefinitionsAtRegistration"]["Condition"]["StringEquals"]["ecs:CreateAction"] == "RegisterTaskDefinition"


@pytest.mark.parametrize("mode, rules", [("shared", {"HomesNfsFromHub"}), ("per-user", {"HomesNfsFromHub", "HomesNfsFromUserServers"})])
def test_only_the_tiers_tasks_reach_the_homes_by_nfs(resolve_tier, mode, rules):
    res = resolve_tier(ServerMode=mode).resources()
    ingress = {n: r["Properties"] for n, r in res.items() if r["Type"] == "AWS::EC2::SecurityGroupIngress" and "Homes" in n}
    assert set(ingress) == rules
    for p in ingress.values():
        assert p["GroupId"] == "<ssm:HomesSecurityGroupId>"
        assert (p["IpProtocol"], p["FromPort"], p["ToPort"]) == ("tcp", 2049, 2049)
        assert "CidrIp" not in p and p["SourceSecurityGroupId"]


def test_the_hub_service_starts_after_its_tasks_can_reach_the_homes(templates):
    service = templates["tier.template.yaml"]["Resources"]["Service"]
    assert {"HomesNfsFromHub", "HubToHomes"} <= set(service["DependsOn"])
