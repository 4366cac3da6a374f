"""crhelper custom-resource functions inside templates: role, log group, function."""

from __future__ import annotations

from typing import Any

from awacs import logs as awacs_logs
from awacs.aws import Allow, Statement
from troposphere import GetAtt, Ref, Sub, iam, logs
from troposphere import awslambda

from lakehub.stacks import names
from lakehub.stacks.builder import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, Builder, function_code_key, platform_tags
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.policies import inline_policy, service_trust

# Deliberate checkov exceptions (docs/SECURITY.md lists every one).
NO_DLQ = (
    "CloudFormation custom resource: crhelper reports every failure to CloudFormation through the "
    "response URL, and CloudFormation retries nothing, so a dead-letter queue would hold events no one replays"
)
NO_VPC = (
    "The function calls only AWS APIs (S3, ELB, CodeBuild, ECR) with its own least-privilege role and "
    "serves no network clients; inside the VPC it would need NAT or interface endpoints and gain nothing"
)
NO_RESERVED_CONCURRENCY = (
    "Reserving concurrency fails the stack in accounts whose Lambda concurrency quota is low (new accounts: "
    "the account must keep 100 unreserved); a custom resource runs a few times per stack operation, so a reservation "
    "protects nothing (rule no-reserved-concurrency, docs/AWS_NOTES.md)"
)
LOGS_AWS_KEY = (
    "CloudWatch Logs encrypts every log group at rest with AWS-managed keys; these groups hold service "
    "messages, sign-ins and user names, not data-lake objects, and reading them takes IAM rights on the group; "
    "a customer-managed key would add USD 1 a month and a key policy to every stack"
)


def add_function(
    b: Builder,
    logical_id: str,
    function: str,
    description: str,
    statements: list[Statement],
    timeout: int = 120,
    memory: int = 256,
    environment: dict | None = None,
    condition: str | None = None,
    skip_reasons: dict[str, str] | None = None,
) -> awslambda.Function:
    """A function `function` (folder lambdas/<function>; a crhelper custom resource unless
    `skip_reasons` argues the checkov exceptions for another kind) with its own least-privilege
    role and a log group kept LogRetentionDays. Its name is <platform>-<function name>."""
    suffix = function.replace("_", "-")
    fn_name = Sub("${" + names.PLATFORM_NAME + "}-" + suffix)
    log_group = b.add(
        logs.LogGroup(
            f"{logical_id}LogGroup",
            LogGroupName=Sub("/aws/lambda/${" + names.PLATFORM_NAME + "}-" + suffix),
            RetentionInDays=Ref(names.LOG_RETENTION_DAYS),
            **({"Condition": condition} if condition else {}),
        )
    )
    add_checkov_skip(log_group, "CKV_AWS_158", LOGS_AWS_KEY)
    log_statement = Statement(
        Effect=Allow,
        Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
        Resource=[Sub("${" + log_group.title + ".Arn}")],
    )
    role = b.add(
        iam.Role(
            f"{logical_id}Role",
            AssumeRolePolicyDocument=service_trust("lambda.amazonaws.com"),
            Policies=[inline_policy("function", [log_statement, *statements])],
            Tags=platform_tags(),
            **({"Condition": condition} if condition else {}),
        )
    )
    kwargs: dict[str, Any] = {}
    if environment:
        kwargs["Environment"] = awslambda.Environment(Variables=environment)
    if condition:
        kwargs["Condition"] = condition
    fn = b.add(
        awslambda.Function(
            logical_id,
            FunctionName=fn_name,
            Description=description,
            Runtime=LAMBDA_RUNTIME,
            Architectures=[LAMBDA_ARCHITECTURE],
            Handler="index.handler",
            Code=awslambda.Code(
                S3Bucket=Ref(names.ASSETS_BUCKET_NAME),
                S3Key=function_code_key(function),
            ),
            Role=GetAtt(role, "Arn"),
            Timeout=timeout,
            MemorySize=memory,
            LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
            Tags=platform_tags(),
            **kwargs,
        )
    )
    reasons = {"CKV_AWS_116": NO_DLQ, "CKV_AWS_117": NO_VPC, "CKV_AWS_115": NO_RESERVED_CONCURRENCY, **(skip_reasons or {})}
    for check, reason in reasons.items():
        add_checkov_skip(fn, check, reason)
    return fn
