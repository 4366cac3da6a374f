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
    StringLike,
)
from troposphere import Join, Sub

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


def prefix_statements(
    sid: str,
    bucket: Any,
    prefixes: Any,
    write: bool,
) -> list[Statement]:
    """Read (and optionally write) objects under `prefixes` of `bucket`, and list only there.

    `prefixes` is a CloudFormation list of key prefixes ending in '/' (a CommaDelimitedList
    parameter or a literal list). ListBucket is limited with an s3:prefix condition, so the
    role cannot even see the names of other prefixes' objects.
    """
    object_arns = _prefixed(bucket, prefixes, "*")
    list_prefixes = _prefix_patterns(prefixes)
    statements = [
        Statement(
            Sid=f"{sid}List",
            Effect=Allow,
            Action=[awacs_s3.ListBucket],
            Resource=[bucket_arn(bucket)],
            Condition=Condition(StringLike("s3:prefix", list_prefixes)),
        ),
        Statement(
            Sid=f"{sid}Objects",
            Effect=Allow,
            Action=S3_READ + (S3_WRITE if write else []),
            Resource=object_arns,
        ),
    ]
    return statements


def _prefixed(bucket: Any, prefixes: Any, suffix: str):
    """['arn:...:::bucket/p1*', ...] for a literal list, or a Split/Join expression for a parameter."""
    if isinstance(prefixes, (list, tuple)):
        return [Sub("arn:${AWS::Partition}:s3:::${B}/" + p + suffix, B=bucket) for p in prefixes]
    # CloudFormation list value: join with the ARN text between items, then split again.
    from troposphere import Split

    head = Sub("arn:${AWS::Partition}:s3:::${B}/", B=bucket)
    sep = Sub(suffix + ",arn:${AWS::Partition}:s3:::${B}/", B=bucket)
    return Split(",", Join("", [head, Join(sep, prefixes), suffix]))


def _prefix_patterns(prefixes: Any):
    """s3:prefix patterns: each prefix itself and everything below it."""
    if isinstance(prefixes, (list, tuple)):
        out: list[Any] = []
        for p in prefixes:
            out += [p, p + "*"]
        return out
    from troposphere import Split

    return Split(",", Join(",", [Join(",", prefixes), Join("", [Join("*,", prefixes), "*"])]))
