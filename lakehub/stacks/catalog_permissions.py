"""The Service Catalog launch roles' permission table: what CloudFormation needs to create, update
and delete each resource type the products use (RESOURCE_PERMISSIONS), scoped to the platform's
names where the service allows, and the platform function behind each custom resource.

`lakehub.stacks.catalog` builds the launch roles from it; tests/test_catalog.py checks it against
the resource providers' handler permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lakehub.stacks import names

PARTITION = "${AWS::Partition}"
REGION = "${AWS::Region}"
ACCOUNT = "${AWS::AccountId}"
PLATFORM = "${" + names.PLATFORM_NAME + "}"
SC_STACK = f"SC-{ACCOUNT}-pp-*"  # stacks and generated names of provisioned products


def arn_of(text: str) -> str:
    return f"arn:{PARTITION}:{text}"


@dataclass(frozen=True)
class Product:
    key: str  # logical-ID stem: TierProduct, TierLaunchRole, HubPiiProduct, ...
    filename: str
    name: str  # display name after the platform name
    description: str
    role_arns: tuple[str, ...]  # IAM roles the product's template creates (Fn::Sub patterns)
    passed_to: str  # the service those roles are passed to
    secrets: tuple[str, ...]  # Secrets Manager secrets the product's template creates (Fn::Sub patterns)
    instance_profiles: tuple[str, ...] = ()
    extra_ssm: tuple[str, ...] = ()  # public SSM parameters it reads (Fn::Sub patterns)
    tier: str = ""  # the settings tier a hub product launches for ("" for the tier product)
    # Resources of the main stack's own tiers (Fn::Sub patterns) the launch role may never change.
    denied: tuple[str, ...] = ()


def secret_arn(name: str) -> str:
    return arn_of(f"secretsmanager:{REGION}:{ACCOUNT}:secret:{name}")


@dataclass(frozen=True)
class Grant:
    """Actions on resources (Fn::Sub patterns), with an optional condition."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    condition: dict[str, dict[str, Any]] | None = None  # {operator: {key: value}}


Grants = Callable[[Product], list[Grant]]


def in_account(service: str, resource: str) -> str:
    return arn_of(f"{service}:{REGION}:{ACCOUNT}:{resource}")


def platform_tagged() -> dict:
    return {"StringEquals": {f"aws:ResourceTag/{names.TAG_PLATFORM}": PLATFORM}}


def _iam_role(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageProductRoles",
            (
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:TagRole",
                "iam:UntagRole",
            ),
            p.role_arns,
        )
    ]


def _iam_instance_profile(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageInstanceProfiles",
            (
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
            ),
            p.instance_profiles,
        )
    ]


def _secret(p: Product) -> list[Grant]:
    return [
        # Only the secrets the product creates (GetSecretValue: CloudFormation's read and update
        # handlers of AWS::SecretsManager::Secret call it), never the platform's sign-in secrets.
        Grant(
            "ManageSecrets",
            (
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:UpdateSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:TagResource",
                "secretsmanager:UntagResource",
            ),
            p.secrets,
        ),
        Grant("GenerateSecretValues", ("secretsmanager:GetRandomPassword",)),
    ]


def _user_pool_client(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageSignInClients",
            (
                "cognito-idp:CreateUserPoolClient",
                "cognito-idp:DeleteUserPoolClient",
                "cognito-idp:DescribeUserPoolClient",
                "cognito-idp:UpdateUserPoolClient",
                "cognito-idp:ListUserPoolClientSecrets",
            ),
            (in_account("cognito-idp", "userpool/*"),),
        )
    ]


def _user_pool_group(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageSignInGroups",
            ("cognito-idp:CreateGroup", "cognito-idp:DeleteGroup", "cognito-idp:GetGroup", "cognito-idp:UpdateGroup"),
            (in_account("cognito-idp", "userpool/*"),),
        )
    ]


def _security_group(p: Product) -> list[Grant]:
    return [
        Grant(
            "CreateSecurityGroups",
            ("ec2:CreateSecurityGroup",),
            (in_account("ec2", "security-group/*"), in_account("ec2", "vpc/*")),
        ),
        Grant(
            "ManagePlatformSecurityGroups",
            (
                "ec2:DeleteSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
                "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
            ),
            (in_account("ec2", "security-group/*"),),
            platform_tagged(),
        ),
        Grant("TagEc2Resources", ("ec2:CreateTags", "ec2:DeleteTags"), (in_account("ec2", "*"),)),
        Grant("DescribeSecurityGroups", ("ec2:DescribeSecurityGroups", "ec2:DescribeInstances")),
    ]


def _security_group_rules(direction: str, sid: str) -> Grants:
    """A stand-alone SecurityGroupIngress or SecurityGroupEgress (`direction`): its rules on the
    platform's security groups."""

    def grants(p: Product) -> list[Grant]:
        return [
            Grant(
                sid,
                (
                    f"ec2:AuthorizeSecurityGroup{direction}",
                    f"ec2:RevokeSecurityGroup{direction}",
                    f"ec2:UpdateSecurityGroupRuleDescriptions{direction}",
                ),
                (in_account("ec2", "security-group/*"),),
                platform_tagged(),
            ),
            Grant("DescribeSecurityGroups", ("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules")),
        ]

    return grants


def _efs_access_point(p: Product) -> list[Grant]:
    """The product's access point on the platform's homes file system (tagged with the
    platform at creation; EFS authorizes the creation's tags as TagResource)."""
    return [
        Grant(
            "CreateHomesAccessPoints",
            ("elasticfilesystem:CreateAccessPoint",),
            (in_account("elasticfilesystem", "file-system/*"),),
            {"StringEquals": {f"aws:RequestTag/{names.TAG_PLATFORM}": PLATFORM}},
        ),
        Grant(
            "TagHomesAccessPointsAtCreation",
            ("elasticfilesystem:TagResource",),
            (in_account("elasticfilesystem", "access-point/*"),),
            {
                "StringEquals": {
                    "elasticfilesystem:CreateAction": "CreateAccessPoint",
                    f"aws:RequestTag/{names.TAG_PLATFORM}": PLATFORM,
                }
            },
        ),
        Grant(
            "DeletePlatformAccessPoints",
            ("elasticfilesystem:DeleteAccessPoint", "elasticfilesystem:UntagResource"),
            (in_account("elasticfilesystem", "access-point/*"),),
            platform_tagged(),
        ),
        Grant("DescribeAccessPoints", ("elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:ListTagsForResource")),
    ]


def _instance(p: Product) -> list[Grant]:
    return [
        Grant(
            "RunInstances",
            ("ec2:RunInstances",),
            (
                in_account("ec2", "instance/*"),
                in_account("ec2", "volume/*"),
                in_account("ec2", "network-interface/*"),
                in_account("ec2", "security-group/*"),
                in_account("ec2", "subnet/*"),
                arn_of(f"ec2:{REGION}::image/*"),
            ),
        ),
        Grant(
            "ManagePlatformInstances",
            (
                "ec2:TerminateInstances",
                "ec2:StopInstances",
                "ec2:StartInstances",
                "ec2:ModifyInstanceAttribute",
                "ec2:ModifyInstanceMetadataOptions",
                "ec2:ModifyInstanceCreditSpecification",
                "ec2:MonitorInstances",
                "ec2:UnmonitorInstances",
                "ec2:AssociateIamInstanceProfile",
                "ec2:ReplaceIamInstanceProfileAssociation",
                "ec2:DisassociateIamInstanceProfile",
            ),
            (in_account("ec2", "instance/*"),),
            platform_tagged(),
        ),
        Grant("TagEc2Resources", ("ec2:CreateTags", "ec2:DeleteTags"), (in_account("ec2", "*"),)),
        Grant(
            "DescribeInstances",
            (
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceAttribute",
                "ec2:DescribeInstanceCreditSpecifications",
                "ec2:DescribeIamInstanceProfileAssociations",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVolumes",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeKeyPairs",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeLaunchTemplateVersions",
            ),
        ),
    ]


def _alarm(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageIdleAlarms",
            (
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
                "cloudwatch:ListTagsForResource",
            ),
            (in_account("cloudwatch", f"alarm:{PLATFORM}-*"),),
        ),
        Grant("DescribeAlarms", ("cloudwatch:DescribeAlarms",)),
        # The first alarm with an EC2 action in an account creates CloudWatch's service-linked role.
        Grant(
            "AlarmActionsServiceRole",
            ("iam:CreateServiceLinkedRole",),
            (arn_of(f"iam::{ACCOUNT}:role/aws-service-role/events.amazonaws.com/AWSServiceRoleForCloudWatchEvents*"),),
            {"StringEquals": {"iam:AWSServiceName": "events.amazonaws.com"}},
        ),
    ]


def _target_group(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageTargetGroups",
            (
                "elasticloadbalancing:CreateTargetGroup",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:RegisterTargets",
                "elasticloadbalancing:DeregisterTargets",
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:RemoveTags",
            ),
            (in_account("elasticloadbalancing", "targetgroup/*"),),
        ),
        Grant(
            "DescribeLoadBalancing",
            (
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DescribeTags",
                "ec2:DescribeVpcs",
            ),
        ),
    ]


def _listener_rule(p: Product) -> list[Grant]:
    alb = f"app/{PLATFORM}-alb/*"
    return [
        Grant(
            "ManagePlatformListenerRules",
            (
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:SetRulePriorities",
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:RemoveTags",
            ),
            (in_account("elasticloadbalancing", f"listener/{alb}"), in_account("elasticloadbalancing", f"listener-rule/{alb}")),
        ),
        Grant("DescribeListenerRules", ("elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags")),
    ]


def _record_set(p: Product) -> list[Grant]:
    return [
        Grant(
            "ChangeRecords",
            ("route53:ChangeResourceRecordSets", "route53:GetHostedZone", "route53:ListResourceRecordSets"),
            (arn_of("route53:::hostedzone/*"),),
        ),
        Grant("WatchRecordChanges", ("route53:GetChange",), (arn_of("route53:::change/*"),)),
        Grant("FindHostedZones", ("route53:ListHostedZones",)),
    ]


def _task_definition(p: Product) -> list[Grant]:
    return [
        # RegisterTaskDefinition, DescribeTaskDefinition and DeregisterTaskDefinition take no
        # resource-level permissions.
        Grant(
            "RegisterTaskDefinitions",
            ("ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition"),
        ),
        Grant(
            "TagTaskDefinitions",
            ("ecs:TagResource", "ecs:UntagResource", "ecs:ListTagsForResource"),
            (in_account("ecs", f"task-definition/{PLATFORM}-*"), in_account("ecs", f"service/{PLATFORM}/*")),
        ),
    ]


def _service(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManagePlatformServices",
            (
                "ecs:CreateService",
                "ecs:UpdateService",
                "ecs:DeleteService",
                "ecs:DescribeServices",
                "ecs:TagResource",
                "ecs:UntagResource",
                "ecs:ListTagsForResource",
                "ecs:DescribeServiceDeployments",
                "ecs:ListServiceDeployments",
                "ecs:StopServiceDeployment",
            ),
            (in_account("ecs", f"service/{PLATFORM}/*"), in_account("ecs", f"service-deployment/{PLATFORM}/*")),
        ),
    ]


def _dns_namespace(p: Product) -> list[Grant]:
    """A per-user tier's private namespace for its hub's address (Cloud Map API permissions
    reference, CreatePrivateDnsNamespace: a private hosted zone in the VPC)."""
    namespaces = in_account("servicediscovery", "namespace/*")
    # Tagging: CloudFormation applies the provisioned product's stack tags to both.
    return [
        # Creation takes no resource-level permission (the namespace and its zone do not exist yet).
        Grant(
            "CreateHubNamespaces",
            (
                "servicediscovery:CreatePrivateDnsNamespace",
                "servicediscovery:GetOperation",
                "route53:CreateHostedZone",
                "route53:ListHostedZonesByName",
                "ec2:DescribeVpcs",
                "ec2:DescribeRegions",
            ),
        ),
        Grant(
            "ManageHubNamespaces",
            (
                "servicediscovery:GetNamespace",
                "servicediscovery:UpdatePrivateDnsNamespace",
                "servicediscovery:DeleteNamespace",
                "servicediscovery:TagResource",
                "servicediscovery:UntagResource",
                "servicediscovery:ListTagsForResource",
            ),
            (namespaces,),
        ),
        Grant("HubNamespaceZones", ("route53:GetHostedZone",), (arn_of("route53:::hostedzone/*"),)),
    ]


def _discovery_service(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageHubDiscovery",
            (
                "servicediscovery:CreateService",
                "servicediscovery:GetService",
                "servicediscovery:UpdateService",
                "servicediscovery:DeleteService",
                "servicediscovery:TagResource",
                "servicediscovery:UntagResource",
                "servicediscovery:ListTagsForResource",
            ),
            (in_account("servicediscovery", "namespace/*"), in_account("servicediscovery", "service/*")),
        ),
        Grant("ListHubDiscovery", ("servicediscovery:ListServices",)),
    ]


def _scalable_target(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageScaling",
            (
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:DescribeScheduledActions",
                "application-autoscaling:PutScheduledAction",
                "application-autoscaling:DeleteScheduledAction",
                "application-autoscaling:TagResource",
                "application-autoscaling:UntagResource",
                "application-autoscaling:ListTagsForResource",
            ),
        ),
        # Target tracking's alarms, named after the platform's services.
        Grant(
            "ManageScalingAlarms",
            ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"),
            (in_account("cloudwatch", f"alarm:TargetTracking-service/{PLATFORM}/*"),),
        ),
        Grant("DescribeAlarms", ("cloudwatch:DescribeAlarms",)),
        Grant(
            "ScalingServiceRole",
            ("iam:CreateServiceLinkedRole",),
            (
                arn_of(
                    f"iam::{ACCOUNT}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
                ),
            ),
            {"StringEquals": {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"}},
        ),
    ]


def _scaling_policy(p: Product) -> list[Grant]:
    return [
        Grant(
            "ManageScalingPolicies",
            (
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:DescribeScalingPolicies",
                "cloudwatch:GetMetricData",
            ),
        )
    ]


# What CloudFormation needs to create, update and delete each resource type the products use.
# Checked against the resource providers' handler permissions in tests/test_catalog.py.
RESOURCE_PERMISSIONS: dict[str, Grants] = {
    "AWS::IAM::Role": _iam_role,
    "AWS::IAM::InstanceProfile": _iam_instance_profile,
    "AWS::IAM::RolePolicy": _iam_role,  # an inline policy of a product role: PutRolePolicy on it
    "AWS::SecretsManager::Secret": _secret,
    "AWS::Cognito::UserPoolClient": _user_pool_client,
    "AWS::Cognito::UserPoolGroup": _user_pool_group,
    "AWS::EC2::SecurityGroup": _security_group,
    "AWS::EC2::SecurityGroupIngress": _security_group_rules("Ingress", "ManagePlatformSecurityGroups"),
    "AWS::EC2::SecurityGroupEgress": _security_group_rules("Egress", "ManagePlatformSecurityGroupEgress"),
    "AWS::EFS::AccessPoint": _efs_access_point,
    "AWS::EC2::Instance": _instance,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::ElasticLoadBalancingV2::TargetGroup": _target_group,
    "AWS::ElasticLoadBalancingV2::ListenerRule": _listener_rule,
    "AWS::Route53::RecordSet": _record_set,
    "AWS::ECS::TaskDefinition": _task_definition,
    "AWS::ECS::Service": _service,
    "AWS::ServiceDiscovery::PrivateDnsNamespace": _dns_namespace,
    "AWS::ServiceDiscovery::Service": _discovery_service,
    "AWS::ApplicationAutoScaling::ScalableTarget": _scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _scaling_policy,
}

# Custom resources: the platform function behind each ServiceToken parameter.
CUSTOM_RESOURCE_FUNCTIONS: dict[str, str] = {
    names.SEED_FUNCTION_ARN: "seed_notebooks",
    names.LISTENER_PRIORITY_FUNCTION_ARN: "listener_priority",
    names.SECRET_ARN_FUNCTION_ARN: "secret_arn",
    names.IMAGE_DIGEST_FUNCTION_ARN: "image_digest",
}
CUSTOM_TYPE = "AWS::CloudFormation::CustomResource"
