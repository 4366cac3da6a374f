"""IAM and bucket policies built with awacs (never hand-typed JSON)."""

from __future__ import annotations

from typing import Any

from awacs import s3 as awacs_s3
from awacs.aws import (
    Allow,
    Bool,
    Condition,
    ConditionElement,
    Deny,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from awacs.sts import AssumeRole
from troposphere import Ref, Sub

S3_READ = [awacs_s3.GetObject, awacs_s3.GetObjectVersion, awacs_s3.GetObjectTagging]
S3_WRITE = [awacs_s3.PutObject, awacs_s3.DeleteObject, awacs_s3.AbortMultipartUpload, awacs_s3.PutObjectTagging]


def service_trust(service: Any, conditions: ConditionElement | list[ConditionElement] | None = None) -> PolicyDocument:
    """A role's trust policy: the AWS service `service` (for example lambda.amazonaws.com) may
    assume it, under `conditions` when given (same_account() for a service that acts for several
    accounts)."""
    statement = Statement(Effect=Allow, Principal=Principal("Service", service), Action=[AssumeRole])
    if conditions is not None:
        statement.Condition = Condition(conditions)
    return PolicyDocument(Version="2012-10-17", Statement=[statement])


def inline_policy(name: str, statements: list) -> Any:
    """A role's inline policy `name` granting `statements`."""
    from troposphere import iam

    return iam.Policy(PolicyName=name, PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements))


def same_account() -> ConditionElement:
    """The request comes on behalf of this stack's account (aws:SourceAccount): the confused-deputy
    guard in a service principal's trust."""
    return StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))


def bucket_arn(bucket: Any) -> Sub:
    return Sub("arn:${AWS::Partition}:s3:::${B}", B=bucket)


def objects_arn(bucket: Any, prefix: Any = "") -> Sub:
    return Sub("arn:${AWS::Partition}:s3:::${B}/${P}*", B=bucket, P=prefix)


def deny_insecure_transport(principal: Principal, actions: list, resources: list) -> Statement:
    """Deny `actions` on `resources` to every request that does not use TLS (aws:SecureTransport false)."""
    return Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=principal,
        Action=actions,
        Resource=resources,
        Condition=Condition(Bool("aws:SecureTransport", "false")),
    )


def tls_only_bucket_policy(bucket: Any) -> PolicyDocument:
    """Deny every request that does not use TLS (aws:SecureTransport false)."""
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            deny_insecure_transport(Principal("*"), [awacs_s3.Action("*")], [bucket_arn(bucket), objects_arn(bucket)]),
        ],
    )


def tier_notebook_statements(notebook_bucket: Any) -> list[Statement]:
    """The tier's notebook folders a user's session reaches: the tier's `shared/` and the user's
    own `users/<lakehub-user tag>/`, never a colleague's. The folder comes from the session tag
    the hub sets when it assumes the role for a user (`${aws:PrincipalTag/lakehub-user}`, a
    policy variable: a session without the tag matches nothing). Used by the tier role and the
    on-demand hub's user role alike."""
    from awacs.aws import StringLike

    from lakehub.stacks import names

    root = names.NOTEBOOK_TIERS_ROOT + "/${TierName}/"
    # In Fn::Sub "${!x}" is the literal "${x}": the IAM policy variable.
    own = root + "users/${!aws:PrincipalTag/" + names.USER_SESSION_TAG + "}/"
    shared = root + "shared/"
    return [
        Statement(
            Sid="ListSharedAndOwnNotebooks",
            Effect=Allow,
            # ListBucketVersions: the user's restore points (checkpoints are object versions).
            Action=[awacs_s3.ListBucket, awacs_s3.ListBucketVersions],
            Resource=[bucket_arn(notebook_bucket)],
            Condition=Condition(StringLike("s3:prefix", [Sub(shared), Sub(shared + "*"), Sub(own), Sub(own + "*")])),
        ),
        Statement(
            Sid="ReadWriteSharedAndOwnNotebooks",
            Effect=Allow,
            Action=S3_READ + S3_WRITE,
            # One Fn::Sub each, never a Sub inside a Sub: the inner one would hand the outer a
            # literal "${aws:...}" to resolve (moto's CloudFormation does, and fails).
            Resource=[
                Sub("arn:${AWS::Partition}:s3:::${B}/" + shared + "*", B=notebook_bucket),
                Sub("arn:${AWS::Partition}:s3:::${B}/" + own + "*", B=notebook_bucket),
            ],
        ),
    ]


def hub_runtime_statements(secret_arns: list) -> list[Statement]:
    """What runs the hub image: log in to ECR, pull the platform's hub image, write to the
    platform's log group (LogGroupName), read the hub's own secrets."""
    from awacs import ecr as awacs_ecr
    from awacs import logs as awacs_logs
    from awacs import secretsmanager as awacs_sm

    repo_arn = Sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${PlatformName}/hub")
    return [
        Statement(Sid="RegistryLogin", Effect=Allow, Action=[awacs_ecr.GetAuthorizationToken], Resource=["*"]),
        Statement(
            Sid="PullHubImage",
            Effect=Allow,
            Action=[awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.BatchGetImage, awacs_ecr.GetDownloadUrlForLayer],
            Resource=[repo_arn],
        ),
        Statement(
            Sid="WriteLogs",
            Effect=Allow,
            Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
            Resource=[Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroupName}:*")],
        ),
        Statement(Sid="ReadHubSecrets", Effect=Allow, Action=[awacs_sm.GetSecretValue], Resource=secret_arns),
    ]


def homes_file_system_arn(file_system_id: Any) -> Sub:
    return Sub("arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${F}", F=file_system_id)


def homes_client_statements(
    file_system_id: Any, access_point_arn: Any = None, root: bool = False, sid: str = "MountHomes"
) -> list[Statement]:
    """Mount the homes file system with IAM authorization (amazon-efs-utils `iam`, or an ECS EFS
    volume with AuthorizationConfig Iam ENABLED): ClientMount and ClientWrite, plus
    ClientRootAccess for a hub that creates users' folders as root (shared mode, the on-demand
    hub). `access_point_arn` (a value or an Fn::If/Sub) narrows the mount to that access point
    (condition elasticfilesystem:AccessPointArn); per-user tasks mount their own access point,
    whose PosixUser EFS enforces, so the role needs no narrowing there."""
    from awacs import elasticfilesystem as awacs_efs
    from awacs.aws import ArnEquals

    actions = [awacs_efs.ClientMount, awacs_efs.ClientWrite] + ([awacs_efs.ClientRootAccess] if root else [])
    kwargs = {}
    if access_point_arn is not None:
        kwargs["Condition"] = Condition(ArnEquals("elasticfilesystem:AccessPointArn", access_point_arn))
    return [Statement(Sid=sid, Effect=Allow, Action=actions, Resource=[homes_file_system_arn(file_system_id)], **kwargs)]
