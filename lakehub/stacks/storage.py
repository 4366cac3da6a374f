"""storage.template.yaml: the notebook bucket, the data lake, and the seeding function.

Every bucket here blocks public access, is versioned and encrypted, refuses plain HTTP, logs
access to a log bucket, and is retained when the stack is deleted or the bucket replaced:
notebooks and data are users' work, never collateral of a stack operation.
"""

from __future__ import annotations

from awacs import s3 as awacs_s3
from awacs import logs as awacs_logs
from awacs.aws import Allow, Condition, Principal, Statement, StringEquals
from troposphere import Equals, GetAtt, If, Not, Ref, Sub, cloudtrail, iam, logs, s3

from lakehub.stacks import names
from lakehub.stacks.compliance import BUCKETS_KEY, finish
from lakehub.stacks.builder import Builder, platform_tags, private_bucket
from lakehub.stacks.parameters import (
    ASSETS_BUCKET_NAME,
    ASSETS_KEY_PREFIX,
    BUCKET_NAME_PATTERN,
    KMS_KEY_ARN_PATTERN,
    PLATFORM_NAME,
    log_retention_days,
    or_empty,
)
from lakehub.stacks.functions import add_function
from lakehub.stacks.policies import bucket_arn, inline_policy, objects_arn, same_account, service_trust, tls_only_bucket_policy
from lakehub.stacks.builder import add_checkov_skip
from lakehub.settings import Settings

NONCURRENT_DAYS = "NoncurrentVersionDays"


def add_parameters(b: Builder, settings: Settings) -> None:
    b.use(PLATFORM_NAME)
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    b.param(
        names.DATA_LAKE_BUCKET_NAME,
        "Data lake",
        "Existing data-lake bucket",
        "Name of the existing S3 data-lake bucket; leave empty to create a demo lake bucket",
        Default="",
        AllowedPattern=or_empty(BUCKET_NAME_PATTERN),
        ConstraintDescription="empty, or an S3 bucket name",
    )
    b.param(
        names.DATA_LAKE_KMS_KEY_ARN,
        "Data lake",
        "Data-lake KMS key ARN",
        "ARN of the KMS key the data lake is encrypted with (SSE-KMS); leave empty for SSE-S3",
        Default="",
        AllowedPattern=or_empty(KMS_KEY_ARN_PATTERN),
        ConstraintDescription="empty, or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)",
    )
    b.number(
        NONCURRENT_DAYS,
        "Notebook storage",
        "Keep old notebook versions (days)",
        "Days to keep a notebook's previous versions after it is overwritten or deleted",
        90,
        1,
        3650,
        unit="days",
    )
    b.use(log_retention_days(settings))
    b.choice(
        names.RECORD_DATA_EVENTS,
        "Logging",
        "Record S3 data events",
        "true: a CloudTrail trail records every object read and write in the data lake and notebook buckets, "
        "with the person's name (SourceIdentity); $0.10 per 100,000 events (lakehub cost)",
        ["true", "false"],
        "false",
    )


def add_protected_bucket(
    b: Builder,
    logical_id: str,
    description: str,
    log_bucket=None,
    log_prefix: str = "",
    condition: str | None = None,
    lifecycle: list | None = None,
    access_log_target: bool = False,
    extra_statements: list | None = None,
) -> s3.Bucket:
    """A bucket with public access blocked, versioning, encryption, a TLS-only policy, access
    logging, noncurrent-version expiry and Retain on delete and replace."""
    rules = [
        s3.LifecycleRule(
            Id="ExpireOldVersions",
            Status="Enabled",
            NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=Ref(NONCURRENT_DAYS)),
            AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
        )
    ] + (lifecycle or [])
    kwargs = {}
    if condition:
        kwargs["Condition"] = condition
    if log_bucket is not None:
        kwargs["LoggingConfiguration"] = s3.LoggingConfiguration(DestinationBucketName=Ref(log_bucket), LogFilePrefix=log_prefix)
    if access_log_target:
        kwargs["OwnershipControls"] = s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
        )
    bucket = b.add(
        private_bucket(
            logical_id,
            bucket_key=True,
            LifecycleConfiguration=s3.LifecycleConfiguration(Rules=rules),
            Tags=platform_tags(("lakehub:purpose", description)),
            **kwargs,
        )
    )
    if access_log_target:
        add_checkov_skip(
            bucket,
            "CKV_AWS_18",
            "This is the target of the other buckets' server access logs; logging it into itself would log its own log writes without end",
        )
    policy = tls_only_bucket_policy(Ref(bucket))
    if access_log_target:
        policy.Statement.append(
            Statement(
                Sid="AllowServerAccessLogs",
                Effect=Allow,
                Principal=Principal("Service", "logging.s3.amazonaws.com"),
                Action=[awacs_s3.PutObject],
                Resource=[objects_arn(Ref(bucket))],
                Condition=Condition(same_account()),
            )
        )
    policy.Statement.extend(extra_statements or [])
    b.add(
        s3.BucketPolicy(
            f"{logical_id}Policy",
            Bucket=Ref(bucket),
            PolicyDocument=policy,
            **({"Condition": condition} if condition else {}),
        )
    )
    return bucket


def build_storage(settings: Settings):
    b = Builder("lakehub storage: notebook bucket, data lake (existing or demo), access logs, notebook seeding function")
    add_parameters(b, settings)
    t = b.t
    t.add_condition("CreateDemoLake", Equals(Ref(names.DATA_LAKE_BUCKET_NAME), ""))
    t.add_condition("HasKmsKey", Not(Equals(Ref(names.DATA_LAKE_KMS_KEY_ARN), "")))

    logs_bucket = add_protected_bucket(
        b,
        "AccessLogsBucket",
        "access-logs",
        access_log_target=True,
        lifecycle=[s3.LifecycleRule(Id="ExpireAccessLogs", Status="Enabled", ExpirationInDays=365)],
    )
    notebooks = add_protected_bucket(
        b,
        "NotebookBucket",
        "notebooks",
        log_bucket=logs_bucket,
        log_prefix="notebooks/",
        lifecycle=[
            # Per-spawn environment files (a server's API token, read by ECS once at task start):
            # the hub deletes each when its server stops; one a crashed hub left behind goes here.
            s3.LifecycleRule(
                Id="ExpireSpawnEnvironmentFiles",
                Status="Enabled",
                Prefix=names.SPAWN_ENV_ROOT + "/",
                ExpirationInDays=1,
                NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=1),
            )
        ],
    )
    add_protected_bucket(
        b, "DemoLakeBucket", "demo-data-lake", log_bucket=logs_bucket, log_prefix="demo-lake/", condition="CreateDemoLake"
    )
    data_bucket = If("CreateDemoLake", Ref("DemoLakeBucket"), Ref(names.DATA_LAKE_BUCKET_NAME))

    trail = add_data_events_trail(b, logs_bucket, [Ref(notebooks), data_bucket])
    if settings.strict:
        strict_trail(b, trail)

    seed = add_function(
        b,
        "SeedNotebooksFunction",
        "seed_notebooks",
        "lakehub: creates tier folders and example notebooks in the notebook bucket",
        statements=[
            Statement(
                Sid="ListTierFolders",
                Effect=Allow,
                Action=[awacs_s3.ListBucket],
                Resource=[bucket_arn(Ref(notebooks))],
            ),
            Statement(
                Sid="SeedTierFolders",
                Effect=Allow,
                Action=[awacs_s3.GetObject, awacs_s3.PutObject],
                Resource=[objects_arn(Ref(notebooks), names.NOTEBOOK_TIERS_ROOT + "/")],
            ),
        ],
        timeout=300,
    )

    b.output(
        names.NOTEBOOK_BUCKET_NAME,
        Ref(notebooks),
        "Bucket where notebooks are stored (tiers/<tier>/shared and tiers/<tier>/users/<user>)",
    )
    b.output(names.DATA_BUCKET_NAME, data_bucket, "Data-lake bucket the tiers read (the existing one, or the demo lake)")
    b.output(
        names.DATA_KMS_KEY_ARN,
        If("HasKmsKey", Ref(names.DATA_LAKE_KMS_KEY_ARN), "none"),
        "KMS key of the data lake, or 'none' for SSE-S3",
    )
    b.output(
        names.SEED_FUNCTION_ARN, GetAtt(seed, "Arn"), "Function that seeds a tier's folders and example notebooks (ServiceToken)"
    )
    b.output("AccessLogsBucketName", Ref(logs_bucket), "Bucket that receives S3 server access logs")
    return finish(b, settings)


TRAIL = "DataEventsTrail"
TRAIL_LOG_DAYS = 365 * 7  # auditors ask for years; Standard-IA after 90 days keeps it cheap


def add_data_events_trail(b: Builder, logs_bucket, buckets: list) -> cloudtrail.Trail:
    """Attribution (RecordDataEvents=true): a CloudTrail trail of S3 data events (GetObject,
    PutObject, DeleteObject, ...) on the notebook and data-lake buckets only. Users' sessions
    carry SourceIdentity = the user (lakehub_hub.credentials), which CloudTrail records on
    every event of the session (userIdentity.sessionContext.sourceIdentity), so an auditor can
    name who read an object (docs/SECURITY.md). Its bucket is protected like the others."""
    b.t.add_condition("RecordDataEvents", Equals(Ref(names.RECORD_DATA_EVENTS), "true"))
    trail_arn = Sub("arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${PlatformName}-data-events")
    bucket = add_protected_bucket(
        b,
        "TrailBucket",
        "data-events-trail",
        log_bucket=logs_bucket,
        log_prefix="trail/",
        condition="RecordDataEvents",
        lifecycle=[
            s3.LifecycleRule(
                Id="KeepTrailLogs",
                Status="Enabled",
                ExpirationInDays=TRAIL_LOG_DAYS,
                Transitions=[s3.LifecycleRuleTransition(StorageClass="STANDARD_IA", TransitionInDays=90)],
            )
        ],
        # What CloudTrail needs to deliver (CloudTrail user guide, "Amazon S3 bucket policy for
        # CloudTrail"): the bucket's ACL, and writes under AWSLogs/<account>/ from this trail only.
        extra_statements=[
            Statement(
                Sid="CloudTrailReadsAcl",
                Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[awacs_s3.GetBucketAcl],
                Resource=[bucket_arn(Ref("TrailBucket"))],
                Condition=Condition(StringEquals("aws:SourceArn", trail_arn)),
            ),
            Statement(
                Sid="CloudTrailWrites",
                Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[awacs_s3.PutObject],
                Resource=[objects_arn(Ref("TrailBucket"), Sub("AWSLogs/${AWS::AccountId}/"))],
                Condition=Condition(StringEquals({"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail_arn})),
            ),
        ],
    )
    trail = cloudtrail.Trail(
        TRAIL,
        Condition="RecordDataEvents",
        DependsOn=["TrailBucketPolicy"],
        TrailName=Sub("${PlatformName}-data-events"),
        S3BucketName=Ref(bucket),
        IsLogging=True,
        EnableLogFileValidation=True,
        # Multi-Region costs nothing more here (only these buckets' data events are selected).
        IsMultiRegionTrail=True,
        IncludeGlobalServiceEvents=True,
        AdvancedEventSelectors=[
            cloudtrail.AdvancedEventSelector(
                Name="Object reads and writes in the notebook and data-lake buckets",
                FieldSelectors=[
                    cloudtrail.AdvancedFieldSelector(Field="eventCategory", Equals=["Data"]),
                    cloudtrail.AdvancedFieldSelector(Field="resources.type", Equals=["AWS::S3::Object"]),
                    cloudtrail.AdvancedFieldSelector(
                        Field="resources.ARN",
                        StartsWith=[Sub("arn:${AWS::Partition}:s3:::${B}/", B=bucket_name) for bucket_name in buckets],
                    ),
                ],
            )
        ],
        Tags=platform_tags(("lakehub:purpose", "data-events")),
    )
    add_checkov_skip(
        trail,
        "CKV_AWS_35",
        "The trail's bucket is encrypted (SSE-S3), versioned, TLS-only, blocks public access and is retained; its readers are the account's administrators. A customer-managed KMS key adds $1 a month plus requests and a key policy to keep right, for an optional, off-by-default trail",
    )
    add_checkov_skip(
        trail,
        "CKV_AWS_252",
        "Nothing subscribes to delivery notifications: auditors query the logs (Athena, CloudTrail Lake) when they need them",
    )
    return b.add(trail)


def strict_trail(b: Builder, trail: cloudtrail.Trail) -> None:
    """The strict compliance profile's trail: encrypted with the storage stack's KMS key
    (CT.CLOUDTRAIL.PR.1; the key's policy lets CloudTrail use it, lakehub.stacks.compliance) and delivered
    to CloudWatch Logs too (CT.CLOUDTRAIL.PR.3: paid ingestion of every recorded data event)."""
    group = b.add(
        logs.LogGroup(
            "DataEventsTrailLogGroup",
            Condition="RecordDataEvents",
            LogGroupName=Sub("/lakehub/${PlatformName}/data-events"),
            RetentionInDays=Ref(names.LOG_RETENTION_DAYS),
        )
    )
    role = b.add(
        iam.Role(
            "DataEventsTrailLogsRole",
            Condition="RecordDataEvents",
            AssumeRolePolicyDocument=service_trust("cloudtrail.amazonaws.com", same_account()),
            Policies=[
                inline_policy(
                    "deliver",
                    [
                        Statement(
                            Effect=Allow,
                            Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                            Resource=[Sub("${" + group.title + ".Arn}")],
                        )
                    ],
                )
            ],
            Tags=platform_tags(),
        )
    )
    trail.KMSKeyId = GetAtt(BUCKETS_KEY, "Arn")
    trail.CloudWatchLogsLogGroupArn = GetAtt(group, "Arn")
    trail.CloudWatchLogsRoleArn = GetAtt(role, "Arn")
    trail.Metadata = {"checkov": {"skip": [s for s in trail.Metadata["checkov"]["skip"] if s["id"] != "CKV_AWS_35"]}}
