"""The strict compliance profile (issue 19): what every template gets when `compliance: strict`.

The standard profile keeps the low-cost defaults; strict makes the templates pass the AWS Control
Tower proactive controls that apply to them (tests/compliance runs the controls' Guard rules),
except the exceptions argued in docs/SECURITY.md. Each module makes its own strict changes where
they depend on what it builds (network: NAT gateways; cluster: Container Insights, load balancer
deletion protection; tier: container memory limits; hub instance: detailed monitoring, Nitro
types, no public address); `finish` applies the ones every template shares:

- log groups: encrypted with a customer-managed KMS key of the template's own (`LogsKey`, yearly
  rotation), retention of at least a year (the LogRetentionDays parameter allows no less);
- S3 buckets: Object Lock activated (no default retention: it refuses nothing until a retention is
  set on an object), event notifications to EventBridge, and, but for the buckets that receive
  access logs (ELB and S3 log delivery write only with SSE-S3, docs/AWS_NOTES.md), default
  encryption with a customer-managed KMS key (`BucketsKey`);
- bucket policies: the TLS-only statement names the bucket by its ARN attribute.

Every paid addition is a resource or property in the template (AWS::KMS::Key,
RetentionInDays, ...), so `lakehub cost` can price it.
"""

from __future__ import annotations

from awacs import kms as awacs_kms
from awacs.aws import Allow, BoolIfExists, Condition, Deny, PolicyDocument, Principal, Statement, StringEquals, StringLike
from awacs import ec2 as awacs_ec2
from troposphere import GetAtt, Join, Ref, Sub, Template, awslambda, ec2, kms, s3

from lakehub.stacks import names
from lakehub.stacks.builder import port_rule, Builder, platform_tags
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.parameters import VPC_ID
from lakehub.stacks.policies import inline_policy, same_account
from lakehub.settings import Settings

# Buckets that receive access logs: ELB access logs and S3 server access logs are delivered only to
# buckets encrypted with SSE-S3, and a log bucket's own access logs would need another log bucket.
LOG_DESTINATIONS = {"AccessLogsBucket", "LoadBalancerLogsBucket"}
LOGS_KEY = "LogsKey"
BUCKETS_KEY = "BucketsKey"
MIN_LOG_RETENTION_DAYS = 365  # CT.CLOUDWATCH.PR.2

KMS_USE = [
    awacs_kms.Encrypt,
    awacs_kms.Decrypt,
    awacs_kms.ReEncryptFrom,
    awacs_kms.ReEncryptTo,
    awacs_kms.GenerateDataKey,
    awacs_kms.Action("GenerateDataKeyWithoutPlaintext"),
    awacs_kms.DescribeKey,
]
ACCOUNT_ADMIN = Statement(
    Sid="AccountAdministersTheKey",
    Effect=Allow,
    Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")),
    # The administration of the AWS default key policy for key administrators, not kms:* (rule
    # iam-no-wildcard-actions): the account manages the key; using it is the statements below.
    Action=[
        awacs_kms.Action(a)
        for a in (
            "Create*",
            "Describe*",
            "Enable*",
            "List*",
            "Put*",
            "Update*",
            "Revoke*",
            "Disable*",
            "Get*",
            "Delete*",
            "TagResource",
            "UntagResource",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
            "RotateKeyOnDemand",
        )
    ],
    Resource=["*"],
)
WILDCARD_VIA_S3 = (
    "The key is used only through S3 by principals of this account (kms:ViaService s3 and kms:CallerAccount "
    "conditions), as the AWS-managed aws/s3 key is: who reads an object is decided by the IAM and bucket policies, "
    "as with SSE-S3 in the standard profile"
)


# CT.KMS.PR.3: grants on the key only for AWS services working for the account's resources.
GRANTS_FOR_AWS_ONLY = Statement(
    Sid="GrantsOnlyForAwsServices",
    Effect=Deny,
    Principal=Principal("AWS", "*"),
    Action=[awacs_kms.CreateGrant],
    Resource=["*"],
    Condition=Condition(BoolIfExists({"kms:GrantIsForAWSResource": "false", "aws:PrincipalIsAWSService": "false"})),
)


def _key_policy(*statements: Statement) -> PolicyDocument:
    """A key policy: the account administers the key, grants only for AWS resources, and `statements`."""
    return PolicyDocument(Version="2012-10-17", Statement=[ACCOUNT_ADMIN, GRANTS_FOR_AWS_ONLY, *statements])


def _logs_key_policy() -> PolicyDocument:
    return _key_policy(
        Statement(
            Sid="CloudWatchLogsEncryptsThisAccountsGroups",
            Effect=Allow,
            Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
            Action=KMS_USE,
            Resource=["*"],
            Condition=Condition(
                StringLike(
                    "kms:EncryptionContext:aws:logs:arn",
                    Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"),
                )
            ),
        ),
    )


def _buckets_key_policy() -> PolicyDocument:
    return _key_policy(
        Statement(
            Sid="ThisAccountUsesTheKeyThroughS3",
            Effect=Allow,
            Principal=Principal("AWS", "*"),
            Action=KMS_USE,
            Resource=["*"],
            Condition=Condition(
                [
                    StringEquals("kms:CallerAccount", Ref("AWS::AccountId")),
                    StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com")),
                ]
            ),
        ),
        Statement(
            Sid="CloudTrailWritesThisAccountsTrails",
            Effect=Allow,
            Principal=Principal("Service", "cloudtrail.amazonaws.com"),
            Action=[awacs_kms.GenerateDataKey, awacs_kms.DescribeKey],
            Resource=["*"],
            Condition=Condition(same_account()),
        ),
    )


def _key(b: Builder, title: str, description: str, policy: PolicyDocument) -> kms.Key:
    if title in b.t.resources:
        return b.t.resources[title]
    key = b.add(
        kms.Key(
            title,
            Description=Sub(description + " (${AWS::StackName})"),
            EnableKeyRotation=True,
            KeyPolicy=policy,
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
            Tags=platform_tags(),
        )
    )
    return key


def _drop_skip(resource, check_id: str) -> None:
    metadata = getattr(resource, "Metadata", None)
    if not metadata or "checkov" not in metadata:
        return
    skips = [s for s in metadata["checkov"].get("skip", []) if s["id"] != check_id]
    checkov = {**metadata["checkov"], "skip": skips}
    if not skips:
        checkov.pop("skip")
    rest = {k: v for k, v in metadata.items() if k != "checkov"}
    resource.Metadata = {**rest, **({"checkov": checkov} if checkov else {})}


def _harden_log_groups(b: Builder) -> None:
    groups = [r for r in b.t.resources.values() if r.resource_type == "AWS::Logs::LogGroup"]
    if not groups:
        return
    key = _key(b, LOGS_KEY, "lakehub: encrypts the stack's CloudWatch log groups", _logs_key_policy())
    for group in groups:
        if "KmsKeyId" not in group.properties:
            group.KmsKeyId = GetAtt(key, "Arn")
            _drop_skip(group, "CKV_AWS_158")


def _harden_buckets(b: Builder) -> None:
    for bucket in [r for r in b.t.resources.values() if r.resource_type == "AWS::S3::Bucket"]:
        bucket.ObjectLockEnabled = True
        if "VersioningConfiguration" not in bucket.properties:
            bucket.VersioningConfiguration = s3.VersioningConfiguration(Status="Enabled")
        if "NotificationConfiguration" not in bucket.properties:
            bucket.NotificationConfiguration = s3.NotificationConfiguration(
                EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)
            )
        if bucket.title in LOG_DESTINATIONS:
            continue
        new = BUCKETS_KEY not in b.t.resources
        key = _key(b, BUCKETS_KEY, "lakehub: default encryption of the stack's S3 buckets", _buckets_key_policy())
        if new:
            add_checkov_skip(key, "CKV_AWS_33", WILDCARD_VIA_S3)
        bucket.BucketEncryption = s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                        SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn")
                    ),
                    BucketKeyEnabled=True,
                )
            ]
        )


def _harden_bucket_policies(b: Builder) -> None:
    for policy in [r for r in b.t.resources.values() if r.resource_type == "AWS::S3::BucketPolicy"]:
        bucket = policy.properties.get("Bucket")
        if not isinstance(bucket, Ref) or bucket.data["Ref"] not in b.t.resources:
            continue
        arn = GetAtt(bucket.data["Ref"], "Arn")
        document = policy.properties["PolicyDocument"]
        statements = document.Statement if hasattr(document, "Statement") else document["Statement"]
        for statement in statements:
            sid = statement.properties.get("Sid") if hasattr(statement, "properties") else statement.get("Sid")
            if sid == "DenyInsecureTransport":
                # The form CT.S3.PR.8's rule recognises (it does not read a Fn::Sub of the name).
                statement.Resource = [arn, Join("", [arn, "/*"])]
                metadata = dict(getattr(policy, "Metadata", {}) or {})
                metadata["cfn-lint"] = {"config": {"ignore_checks": ["I1022"]}}
                policy.Metadata = metadata


FUNCTION_NETWORK_PARAMS = (names.VPC_ID, names.PRIVATE_SUBNET_1_ID, names.PRIVATE_SUBNET_2_ID)
FUNCTIONS_SG = "FunctionsSecurityGroup"
# What Lambda does with the function's role to attach it to the VPC (the actions of the AWS-managed
# AWSLambdaVPCAccessExecutionRole policy), the changes scoped to the account's EC2 resources in the
# region; EC2 has no resource-level scope for the Describe calls.
LAMBDA_VPC_DESCRIBE = [awacs_ec2.DescribeNetworkInterfaces, awacs_ec2.DescribeSubnets]
LAMBDA_VPC_ACTIONS = [
    awacs_ec2.CreateNetworkInterface,
    awacs_ec2.DeleteNetworkInterface,
    awacs_ec2.AssignPrivateIpAddresses,
    awacs_ec2.UnassignPrivateIpAddresses,
]


def _function_network(b: Builder) -> tuple:
    """The VPC and private subnets a template's functions run in: the network template's own,
    other templates' from parameters (main passes the network stack's outputs)."""
    resources = b.t.resources
    if "Vpc" in resources and resources["Vpc"].resource_type == "AWS::EC2::VPC":
        return Ref("Vpc"), [Ref("PrivateSubnet1"), Ref("PrivateSubnet2")]
    group = "Network (the strict profile's functions run in the VPC)"
    if names.VPC_ID not in b.t.parameters:
        b.use(VPC_ID, group=group, Description="VPC of the platform (its functions run in its private subnets)")
    for name, label in ((names.PRIVATE_SUBNET_1_ID, "Private subnet 1"), (names.PRIVATE_SUBNET_2_ID, "Private subnet 2")):
        if name not in b.t.parameters:
            b.param(
                name,
                group,
                label,
                f"{label} of the platform, in its own AZ (the functions run there)",
                type="AWS::EC2::Subnet::Id",
            )
    return Ref(names.VPC_ID), [Ref(names.PRIVATE_SUBNET_1_ID), Ref(names.PRIVATE_SUBNET_2_ID)]


def _harden_functions(b: Builder) -> None:
    functions = [r for r in b.t.resources.values() if r.resource_type == "AWS::Lambda::Function"]
    if not functions:
        return
    vpc, subnets = _function_network(b)
    sg = b.add(
        ec2.SecurityGroup(
            FUNCTIONS_SG,
            GroupDescription="lakehub functions: no inbound; HTTPS out to AWS APIs (through the NAT or the S3 endpoint)",
            VpcId=vpc,
            SecurityGroupEgress=[port_rule(443, "HTTPS to AWS APIs", cidr="0.0.0.0/0")],
            Tags=platform_tags(("Name", Sub("${" + names.PLATFORM_NAME + "}-functions"))),
        )
    )
    for fn in functions:
        fn.VpcConfig = awslambda.VPCConfig(SubnetIds=subnets, SecurityGroupIds=[Ref(sg)])
        _drop_skip(fn, "CKV_AWS_117")
        role_name = fn.properties["Role"].data["Fn::GetAtt"][0]
        role = b.t.resources[role_name]
        policies = list(role.properties.get("Policies", []))
        policies.append(
            inline_policy(
                "vpc",
                [
                    Statement(Sid="LambdaFindsTheFunctionsInterfaces", Effect=Allow, Action=LAMBDA_VPC_DESCRIBE, Resource=["*"]),
                    Statement(
                        Sid="LambdaAttachesTheFunctionToTheVpc",
                        Effect=Allow,
                        Action=LAMBDA_VPC_ACTIONS,
                        Resource=[Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*")],
                    ),
                ],
            )
        )
        role.Policies = policies


def finish(b: Builder, settings: Settings) -> Template:
    """The template, with the strict profile's shared changes when settings ask for it."""
    if settings.strict:
        _harden_log_groups(b)
        _harden_buckets(b)
        _harden_bucket_policies(b)
        _harden_functions(b)
    return b.finish()
