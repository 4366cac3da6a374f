"""pipeline.template.yaml: the hub image's source, build and registry.

Source is a CodeCommit repository, or an S3 zip for accounts without CodeCommit (new accounts
cannot create CodeCommit repositories since July 2024). CodeBuild runs buildspec.yml on ARM
and pushes to ECR; an EventBridge rule builds on every commit to main. A custom resource waits
for the first image so the tier services never start without one.
"""

from __future__ import annotations

import json

from awacs import cloudformation as awacs_cfn
from awacs import codebuild as awacs_codebuild
from awacs import codecommit as awacs_codecommit
from awacs import ecr as awacs_ecr
from awacs import events as awacs_events
from awacs import awslambda as awacs_lambda
from awacs import logs as awacs_logs
from awacs import s3 as awacs_s3
from awacs.aws import Allow, Statement
from troposphere import (
    Equals,
    GetAtt,
    If,
    Ref,
    Sub,
    codebuild,
    codecommit,
    ecr,
    events,
    iam,
    logs,
)

from lakehub.stacks import names
from lakehub.stacks.compliance import finish
from lakehub.stacks.builder import Builder, custom_resource, platform_tags
from lakehub.stacks.parameters import ASSETS_BUCKET_NAME, ASSETS_KEY_PREFIX, IMAGE_TAG, PLATFORM_NAME, log_retention_days
from lakehub.stacks.functions import LOGS_AWS_KEY, add_function
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.policies import inline_policy, service_trust
from lakehub.settings import Settings

SOURCE_TYPES = ("s3", "codecommit")
BUILD_IMAGE = "aws/codebuild/amazonlinux-aarch64-standard:3.0"
WAIT_TIMEOUT_SECONDS = 3000  # below CloudFormation's one-hour custom-resource limit

# Keep the last 20 images; untagged layers go after a week (ECR storage is $0.10/GB-month).
ECR_LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images after 7 days",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "Keep the 20 most recent images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"},
        },
    ]
}


def add_parameters(b: Builder, settings: Settings) -> None:
    b.use(PLATFORM_NAME)
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    b.choice(
        names.SOURCE_TYPE,
        "Hub image source",
        "Source of the hub image",
        "s3: a zip of hub_images/ and buildspec.yml in S3 (lakehub publish uploads one); codecommit: a new CodeCommit repository (CodeCommit has been closed to new customers since July 2024: only accounts that already use it can create one)",
        SOURCE_TYPES,
        "s3",
    )
    b.param(
        names.SOURCE_OBJECT_KEY,
        "Hub image source",
        "Source zip key",
        "Key of the source zip in the assets bucket (s3 source), relative to the assets key prefix",
        Default="source/hub-image.zip",
        # No '*': the key is part of the build role's IAM resource ARN, where it is a wildcard.
        AllowedPattern=r"^[0-9a-zA-Z!_.'()/-]+\.zip$",
        ConstraintDescription="an S3 key ending in .zip (letters, digits, !_.'()/- ; no '*')",
    )
    b.use(IMAGE_TAG, group="Hub image source", Description="Tag of the hub image the tiers run; the first deploy builds it")
    b.choice(
        IMAGE_PLATFORMS,
        "Hub image source",
        "Image platforms",
        "linux/arm64: Graviton only (Fargate tiers, t4g/m7g/r7g hubs); add linux/amd64 for x86 and GPU on-demand hubs (an emulated build, slower)",
        ["linux/arm64", "linux/arm64,linux/amd64"],
        "linux/arm64",
        constraint="linux/arm64, or linux/arm64,linux/amd64",
    )
    b.use(log_retention_days(settings))


IMAGE_PLATFORMS = "ImagePlatforms"


def build_pipeline(settings: Settings):
    b = Builder("lakehub pipeline: hub image source, CodeBuild (buildspec.yml, ARM64) and ECR, first-image wait")
    add_parameters(b, settings)
    t = b.t
    t.add_condition("UseCodeCommit", Equals(Ref(names.SOURCE_TYPE), "codecommit"))

    repo = b.add(
        ecr.Repository(
            "ImageRepository",
            RepositoryName=Sub("${PlatformName}/hub"),
            ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
            ImageTagMutability="IMMUTABLE",
            EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="AES256"),
            LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=json.dumps(ECR_LIFECYCLE, sort_keys=True)),
            EmptyOnDelete=False,
            Tags=platform_tags(),
        )
    )
    # Images are the platform's releases: kept when the stack goes (delete them by hand).
    repo.DeletionPolicy = "Retain"
    repo.UpdateReplacePolicy = "Retain"
    add_checkov_skip(
        repo,
        "CKV_AWS_136",
        "Images hold code and packages only, never data or credentials (tests/security scan the image files); ECR encrypts them at rest with AES-256, and a KMS key would add cost and a key policy for no reader it keeps out",
    )
    source_repo = b.add(
        codecommit.Repository(
            "SourceRepository",
            Condition="UseCodeCommit",
            RepositoryName=Sub("${PlatformName}-hub-image"),
            RepositoryDescription="lakehub hub image: hub_images/ and buildspec.yml",
            Tags=platform_tags(),
        )
    )
    build_logs = b.add(
        logs.LogGroup(
            "BuildLogGroup",
            LogGroupName=Sub("/aws/codebuild/${PlatformName}-hub-image"),
            RetentionInDays=Ref(names.LOG_RETENTION_DAYS),
        )
    )
    add_checkov_skip(build_logs, "CKV_AWS_158", LOGS_AWS_KEY)
    source_object_arn = Sub(
        "arn:${AWS::Partition}:s3:::${"
        + names.ASSETS_BUCKET_NAME
        + "}/${"
        + names.ASSETS_KEY_PREFIX
        + "}${"
        + names.SOURCE_OBJECT_KEY
        + "}"
    )
    build_role = b.add(
        iam.Role(
            "BuildRole",
            AssumeRolePolicyDocument=service_trust("codebuild.amazonaws.com"),
            Policies=[
                inline_policy(
                    "build",
                    [
                        Statement(
                            Sid="Logs",
                            Effect=Allow,
                            Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                            Resource=[Sub("${BuildLogGroup.Arn}")],
                        ),
                        Statement(Sid="RegistryLogin", Effect=Allow, Action=[awacs_ecr.GetAuthorizationToken], Resource=["*"]),
                        Statement(
                            Sid="PushImage",
                            Effect=Allow,
                            Action=[
                                awacs_ecr.BatchCheckLayerAvailability,
                                awacs_ecr.BatchGetImage,
                                awacs_ecr.CompleteLayerUpload,
                                # Which tags are there already: immutable tags are pushed once.
                                awacs_ecr.DescribeImages,
                                awacs_ecr.GetDownloadUrlForLayer,
                                awacs_ecr.InitiateLayerUpload,
                                awacs_ecr.PutImage,
                                awacs_ecr.UploadLayerPart,
                            ],
                            Resource=[GetAtt(repo, "Arn")],
                        ),
                        Statement(
                            Sid="ReadSource",
                            Effect=Allow,
                            Action=[awacs_s3.GetObject, awacs_s3.GetObjectVersion],
                            Resource=[source_object_arn],
                        ),
                        Statement(
                            Sid="PullSource",
                            Effect=Allow,
                            Action=[awacs_codecommit.GitPull],
                            Resource=[
                                Sub("arn:${AWS::Partition}:codecommit:${AWS::Region}:${AWS::AccountId}:${PlatformName}-hub-image")
                            ],
                        ),
                    ],
                )
            ],
            Tags=platform_tags(),
        )
    )
    project = b.add(
        codebuild.Project(
            "ImageBuildProject",
            Name=Sub("${PlatformName}-hub-image"),
            Description="Builds the lakehub hub image (linux/arm64) with buildspec.yml and pushes it to ECR",
            ServiceRole=GetAtt(build_role, "Arn"),
            Artifacts=codebuild.Artifacts(Type="NO_ARTIFACTS"),
            Source=If(
                "UseCodeCommit",
                codebuild.Source(
                    Type="CODECOMMIT", Location=GetAtt("SourceRepository", "CloneUrlHttp"), BuildSpec="buildspec.yml"
                ),
                codebuild.Source(
                    Type="S3",
                    Location=Sub(
                        "${" + names.ASSETS_BUCKET_NAME + "}/${" + names.ASSETS_KEY_PREFIX + "}${" + names.SOURCE_OBJECT_KEY + "}"
                    ),
                    BuildSpec="buildspec.yml",
                ),
            ),
            SourceVersion=If("UseCodeCommit", "refs/heads/main", Ref("AWS::NoValue")),
            Environment=codebuild.Environment(
                Type="ARM_CONTAINER",
                ComputeType="BUILD_GENERAL1_SMALL",
                Image=BUILD_IMAGE,
                # Docker-in-Docker needs privileged mode to build images; the project runs only
                # this repository's buildspec and its role can push to one repository only.
                PrivilegedMode=True,
                EnvironmentVariables=[
                    codebuild.EnvironmentVariable(Name="REPOSITORY_URI", Value=GetAtt(repo, "RepositoryUri"), Type="PLAINTEXT"),
                    codebuild.EnvironmentVariable(Name="IMAGE_TAG", Value=Ref(names.IMAGE_TAG), Type="PLAINTEXT"),
                    codebuild.EnvironmentVariable(Name="IMAGE_PLATFORM", Value=Ref(IMAGE_PLATFORMS), Type="PLAINTEXT"),
                ],
            ),
            LogsConfig=codebuild.LogsConfig(CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(build_logs))),
            TimeoutInMinutes=45,
            EncryptionKey=Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/s3"),
            Tags=platform_tags(),
        )
    )
    project.Metadata = {
        "checkov": {
            "skip": [
                {"id": "CKV_AWS_316", "comment": "Privileged mode is required to build container images with Docker in CodeBuild"}
            ]
        }
    }

    events_role = b.add(
        iam.Role(
            "BuildTriggerRole",
            Condition="UseCodeCommit",
            AssumeRolePolicyDocument=service_trust("events.amazonaws.com"),
            Policies=[
                inline_policy(
                    "start-build",
                    [Statement(Effect=Allow, Action=[awacs_codebuild.StartBuild], Resource=[GetAtt(project, "Arn")])],
                )
            ],
            Tags=platform_tags(),
        )
    )
    b.add(
        events.Rule(
            "BuildOnCommitRule",
            Condition="UseCodeCommit",
            Description="Build the hub image on every commit to main",
            EventPattern={
                "source": ["aws.codecommit"],
                "detail-type": ["CodeCommit Repository State Change"],
                "resources": [GetAtt(source_repo, "Arn")],
                "detail": {
                    "event": ["referenceCreated", "referenceUpdated"],
                    "referenceType": ["branch"],
                    "referenceName": ["main"],
                },
            },
            State="ENABLED",
            Targets=[events.Target(Id="ImageBuild", Arn=GetAtt(project, "Arn"), RoleArn=GetAtt(events_role, "Arn"))],
        )
    )

    fn_arn = Sub("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${PlatformName}-wait-for-image")
    # crhelper names its polling rule after the custom resource's logical ID.
    rule_arn = Sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/FirstImage*")
    wait_fn = add_function(
        b,
        "WaitForImageFunction",
        "wait_for_image",
        "lakehub: starts the first hub-image build and waits until the image is in ECR",
        statements=[
            # ListBuildsForProject: a repeated Create waits for the running build, not a new one.
            Statement(
                Sid="StartBuild",
                Effect=Allow,
                Action=[awacs_codebuild.StartBuild, awacs_codebuild.BatchGetBuilds, awacs_codebuild.ListBuildsForProject],
                Resource=[GetAtt(project, "Arn")],
            ),
            # During a rollback the function answers at once instead of building again.
            Statement(Sid="SeeRollback", Effect=Allow, Action=[awacs_cfn.DescribeStacks], Resource=[Ref("AWS::StackId")]),
            Statement(Sid="FindImage", Effect=Allow, Action=[awacs_ecr.DescribeImages], Resource=[GetAtt(repo, "Arn")]),
            # crhelper polls through a scheduled EventBridge rule that invokes the function.
            Statement(
                Sid="PollSchedule",
                Effect=Allow,
                Action=[awacs_events.PutRule, awacs_events.DeleteRule, awacs_events.PutTargets, awacs_events.RemoveTargets],
                Resource=[rule_arn],
            ),
            Statement(
                Sid="PollPermission",
                Effect=Allow,
                Action=[awacs_lambda.AddPermission, awacs_lambda.RemovePermission],
                Resource=[fn_arn],
            ),
        ],
        timeout=300,
    )
    first = b.add(
        custom_resource(
            "FirstImage",
            "Custom::WaitForImage",
            ServiceToken=GetAtt(wait_fn, "Arn"),
            ProjectName=Ref(project),
            RepositoryName=Ref(repo),
            ImageTag=Ref(names.IMAGE_TAG),
            SourceVersion=If(
                "UseCodeCommit", "refs/heads/main", Sub("${" + names.ASSETS_KEY_PREFIX + "}${" + names.SOURCE_OBJECT_KEY + "}")
            ),
            TimeoutSeconds=WAIT_TIMEOUT_SECONDS,
        )
    )

    b.output(names.IMAGE_REPOSITORY_NAME, Ref(repo), "ECR repository of the hub image")
    b.output(names.IMAGE_REPOSITORY_URI, GetAtt(repo, "RepositoryUri"), "URI of the hub image repository")
    b.output(names.IMAGE_REPOSITORY_ARN, GetAtt(repo, "Arn"), "ARN of the hub image repository")
    b.output(names.BUILD_PROJECT_NAME, Ref(project), "CodeBuild project that builds the hub image")
    b.output(names.IMAGE_TAG, Ref(names.IMAGE_TAG), "Tag of the hub image; the stack completes only once it exists in ECR")
    b.output("ImageUri", GetAtt(first, "ImageUri"), "URI of the first hub image found in ECR")
    b.output(
        "SourceRepositoryCloneUrl",
        If("UseCodeCommit", GetAtt("SourceRepository", "CloneUrlHttp"), "none"),
        "Clone URL of the hub image source (codecommit source), or 'none'",
    )
    return finish(b, settings)
