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
