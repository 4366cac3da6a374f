"""Parameters that more than one template takes, and the patterns they share, each defined once.

As in ecs_composex, a shared parameter is a module-level object (`PLATFORM_NAME = Parameter(...)`)
that carries everything a template needs to take it: type, constraints, description, and its
console label and group. A template adds one with `Builder.use(PLATFORM_NAME)`, or with
`Builder.use(PLATFORM_NAME.but(...))` where it words it its own way.

The name patterns are those `lakehub.settings` validates the settings file with: a name the
settings accept is one the templates accept. Lambda functions that check the same values keep a
copy (they are packaged alone); tests/templates/test_parameters.py pins each copy to these.
"""

from __future__ import annotations

from typing import Any

import troposphere

from lakehub import settings as _settings
from lakehub.stacks import names

PLATFORM_NAME_PATTERN = _settings.PLATFORM_NAME_RE.pattern
TIER_NAME_PATTERN = _settings.TIER_NAME_RE.pattern
# No '*' (or '?'): a prefix is part of IAM resource ARNs, where it would be a wildcard.
KEY_PREFIX_PATTERN = _settings.PREFIX_RE.pattern
GROUP_NAME_PATTERN = _settings.GROUP_RE.pattern
HOST_LABEL_PATTERN = _settings.HOST_RE.pattern
BUCKET_NAME_PATTERN = r"^[0-9a-z][0-9a-z.-]{1,61}[0-9a-z]$"
KMS_KEY_ARN_PATTERN = r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]+$"
IMAGE_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
CIDR_PATTERN = r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$"
ONE_LINE_PATTERN = r"^[^\n]*$"
IAM_PRINCIPAL_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:(role|group)/[\w+=,.@/-]{1,512}$"


def or_empty(pattern: str, empty: str = "") -> str:
    """`pattern`, or the one value `empty` (by default the empty string) instead."""
    return f"^{empty}$|{pattern}"


class Parameter(troposphere.Parameter):
    """A CloudFormation parameter with its console label and group (the template's
    AWS::CloudFormation::Interface)."""

    def __init__(self, title: str, label: str, group: str, Type: str = "String", **properties: Any):
        # Set before troposphere's __init__: after it, every attribute is taken for a property.
        self.label = label
        self.group = group
        super().__init__(title, Type=Type, **properties)

    def but(self, label: str | None = None, group: str | None = None, **changes: Any) -> Parameter:
        """This parameter with other properties (a property given None is dropped), label or group."""
        properties = {k: v for k, v in {**self.properties, **changes}.items() if v is not None}
        return Parameter(self.title, label or self.label, group or self.group, **properties)


PLATFORM_NAME = Parameter(
    names.PLATFORM_NAME,
    "Platform name",
    "Platform",
    Description="Short name of this lakehub platform; names resources and the SSM path /lakehub/<name>/",
    Default="lakehub",
    AllowedPattern=PLATFORM_NAME_PATTERN,
    ConstraintDescription="2-20 lower-case letters, digits or hyphens, starting with a letter",
    MinLength=2,
    MaxLength=20,
)


def joined_platform_name(settings: Any, group: str, description: str) -> Parameter:
    """PlatformName in a template that joins an existing platform (a tier, an on-demand hub):
    the settings' platform by default."""
    return PLATFORM_NAME.but(group=group, Description=description, Default=settings.platform_name, MinLength=None, MaxLength=None)


ASSETS_GROUP = "Assets (templates and functions)"
ASSETS_BUCKET_NAME = Parameter(
    names.ASSETS_BUCKET_NAME,
    "Assets bucket",
    ASSETS_GROUP,
    Description="S3 bucket that holds the published templates and function zips (lakehub publish)",
    AllowedPattern=BUCKET_NAME_PATTERN,
    ConstraintDescription="an S3 bucket name: lower-case letters, digits, dots and hyphens",
)
ASSETS_KEY_PREFIX = Parameter(
    names.ASSETS_KEY_PREFIX,
    "Assets key prefix",
    ASSETS_GROUP,
    Description="Key prefix of the assets in the bucket, ending with '/' (for example lakehub/)",
    Default="lakehub/",
    # No '*': the prefix is part of IAM resource ARNs (build and launch roles), where it is a wildcard.
    AllowedPattern=r"^([0-9a-zA-Z!_.'()-]+/)*$",
    ConstraintDescription="empty, or key segments (letters, digits, !_.'()-) each followed by '/', such as lakehub/",
)
ASSETS = (ASSETS_BUCKET_NAME, ASSETS_KEY_PREFIX)


def default_image_tag() -> str:
    """The ImageTag a release's templates name by default: v<project version>. Never `latest`: the
    repository's tags are immutable, so a tag names one image for ever (images are promoted by
    deploying another tag, not rolled by moving one)."""
    from lakehub import __version__

    return f"v{__version__}"


# The hub image tag: main, pipeline, tier and on-demand hub share its constraint (each its group).
IMAGE_TAG = Parameter(
    names.IMAGE_TAG,
    "Hub image tag",
    "Hub image",
    Description="Tag of the hub image in the platform's repository",
    Default=default_image_tag(),
    AllowedPattern=IMAGE_TAG_PATTERN,
    ConstraintDescription="a Docker image tag",
)


# The platform's network where a template takes it as parameters (an existing VPC, the cluster,
# the strict profile's functions); each template says what it is for.
VPC_ID = Parameter(names.VPC_ID, "VPC", "Network", Type="AWS::EC2::VPC::Id", Description="VPC of the platform")
VPC_CIDR = Parameter(
    names.VPC_CIDR,
    "VPC CIDR block",
    "Network",
    Description="CIDR block of your VPC",
    AllowedPattern=CIDR_PATTERN,
    ConstraintDescription="a CIDR block such as 10.0.0.0/16",
)

# A tier's (or an on-demand hub's, in its own words) rule on the platform's HTTPS listener.
LISTENER_PRIORITY = Parameter(
    names.LISTENER_PRIORITY,
    "Listener rule priority",
    "Capacity",
    Type="Number",
    Description=f"Priority of the tier's rule on the HTTPS listener; 0 claims the lowest free one from {names.AUTO_PRIORITY_MINIMUM} "
    f"(1-{names.AUTO_PRIORITY_MINIMUM - 1} are the main stack's own tiers')",
    Default=0,
    MinValue=0,
    MaxValue=50000,
    ConstraintDescription="0 to 50000",
)


def log_retention_days(settings: Any, group: str = "Logging") -> Parameter:
    """LogRetentionDays; the strict profile allows no less than a year (CT.CLOUDWATCH.PR.2)."""
    minimum = _settings.STRICT_MIN_LOG_RETENTION_DAYS if settings.strict else 0
    return Parameter(
        names.LOG_RETENTION_DAYS,
        "Log retention (days)",
        group,
        Type="Number",
        Description="How long CloudWatch keeps the platform's logs",
        Default=settings.log_retention_days,
        AllowedValues=[d for d in _settings.LOG_RETENTION_CHOICES if d >= minimum],
        ConstraintDescription="a CloudWatch Logs retention period",
    )
