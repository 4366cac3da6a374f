"""IAM and bucket policies built with awacs (never hand-typed JSON)."""

from __future__ import annotations

from typing import Any

from awacs import s3 as awacs_s3
from awacs.aws import (
    Allow,
    Bool,
    Condition,
    Deny,
    PolicyDocument,
    Principal,
    Statement,
)
from troposphere import Sub

S3_READ = [awacs_s3.GetObject, awacs_s3.GetObjectVersion, awacs_s3.GetObjectTagging]
S3_WRITE = [awacs_s3.PutObject, awacs_s3.DeleteObject, awacs_s3.AbortMultipartUpload, awacs_s3.PutObjectTagging]


def bucket_arn(bucket: Any) -> Sub:
    return Sub("arn:${AWS::Partition}:s3:::${B}", B=bucket)


def objects_arn(bucket: Any, prefix: Any = "") -> Sub:
    return Sub("arn:${AWS::Partition}:s3:::${B}/${P}*", B=bucket, P=prefix)


def tls_only_bucket_policy(bucket: Any) -> PolicyDocument:
    """Deny every request that does not use TLS (aws:SecureTransport false)."""
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="DenyInsecureTransport",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[awacs_s3.Action("*")],
                Resource=[bucket_arn(bucket), objects_arn(bucket)],
                Condition=Condition(Bool("aws:SecureTransport", "false")),
            )
        ],
    )


def tier_notebook_statements(notebook_bucket: Any) -> list[Statement]:
    """The tier's notebook folders a user's session reaches: the tier's `shared/` and the user's
    own `users/<lakehub-user tag>/`, never a colleague's. The folder comes from the session tag
    the hub sets when it assumes the role for a user (`${aws:PrincipalTag/lakehub-user}`, a
    policy variable: a session without the tag matches nothing). Used by the tier role and the
    on-demand hub's user role alike."""
    from awacs.aws import StringLike

    from lakehub import names

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
            Resource=[Sub("arn:${AWS::Partition}:s3:::${B}/" + shared + "*", B=notebook_bucket),
                      Sub("arn:${AWS::Partition}:s3:::${B}/" + own + "*", B=notebook_bucket)],
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
