"""main.template.yaml and main-existing-vpc.template.yaml: the entry points.

They nest network (new VPC only), storage, pipeline, cluster and one tier stack per tier of
the build-time settings (the seed's `pii` and `nonpii` by default). Every value that crosses
stacks has one name (names.py): the child's Output, the child's Parameter and the parent's
key. Nested TemplateURLs come from AssetsBucketName/AssetsKeyPrefix, never a fixed bucket.
"""

from __future__ import annotations

from typing import Any

from troposphere import Equals, GetAtt, If, Join, Ref, Sub, Template, cloudformation

from lakehub import names
from lakehub import tier as tier_mod
from lakehub.cluster import AUTH_MODES, add_domain_params
from lakehub.common import Builder, add_image_tag_param, add_assets_params, add_log_retention_param, add_platform_name_param, platform_tags, template_url
from lakehub.network import (
    BUSINESS_DAYS,
    BUSINESS_HOURS_END,
    BUSINESS_HOURS_START,
    EGRESS_MODES,
    SCHEDULE,
    SCHEDULE_TIMEZONE,
    add_schedule_params,
)
from lakehub.pipeline import IMAGE_PLATFORMS, SOURCE_TYPES, build_pipeline
from lakehub.settings import Settings, TierSettings

SIGN_IN_GROUP = "Sign-in"


class WiringError(Exception):
    """A nested stack is given a key its template does not have, or misses a required one."""


def nested_stack(b: Builder, logical_id: str, child: Template, filename: str, params: dict[str, Any], depends_on: list[str] | None = None, condition: str | None = None) -> cloudformation.Stack:
    child_params = child.parameters
    unknown = sorted(set(params) - set(child_params))
    if unknown:
        raise WiringError(f"{logical_id}: {filename} has no parameter {', '.join(unknown)}")
    required = sorted(k for k, p in child_params.items() if "Default" not in p.properties)
    missing = [k for k in required if k not in params]
    if missing:
        raise WiringError(f"{logical_id}: {filename} needs {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    if depends_on:
        kwargs["DependsOn"] = depends_on
    if condition:
        kwargs["Condition"] = condition
    return b.add(
        cloudformation.Stack(
            logical_id,
            TemplateURL=template_url(filename),
            Parameters=params,
            Tags=platform_tags(),
            **kwargs,
        )
    )


def out(stack: str, name: str) -> GetAtt:
    return GetAtt(stack, f"Outputs.{name}")


def add_common_parameters(b: Builder, settings: Settings, existing_vpc: bool) -> None:
    add_platform_name_param(b)
    add_assets_params(b)
    add_domain_params(b)
    b.param(
        names.AUTH_MODE,
        SIGN_IN_GROUP,
        "Sign-in mode",
        "cognito: a Cognito user pool made by the platform; oidc: your OpenID Connect provider; ldap: your LDAP or Active Directory",
        Default="cognito",
        AllowedValues=list(AUTH_MODES),
        ConstraintDescription="cognito, oidc or ldap",
    )
    # oidc / ldap settings, handed to every tier
    tier_template = tier_mod.build_tier(settings)
    for name in tier_mod.SIGN_IN_PARAMS:
        p = tier_template.parameters[name]
        props = {k: v for k, v in p.properties.items() if k not in ("Type", "Description")}
        b.param(name, SIGN_IN_GROUP, _label(name), p.properties["Description"], **props)
    g = "Network"
    if existing_vpc:
        b.param(names.VPC_ID, g, "VPC", "Your VPC", type="AWS::EC2::VPC::Id")
        b.param(
            names.VPC_CIDR,
            g,
            "VPC CIDR block",
            "CIDR block of your VPC",
            AllowedPattern=r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$",
            ConstraintDescription="a CIDR block such as 10.0.0.0/16",
        )
        for name, label, what in (
            (names.PUBLIC_SUBNET_1_ID, "Public subnet 1", "a public subnet (route to an internet gateway) for the load balancer"),
            (names.PUBLIC_SUBNET_2_ID, "Public subnet 2", "a public subnet in a second AZ"),
            (names.PRIVATE_SUBNET_1_ID, "Private subnet 1", "a private subnet with egress (NAT) for the tasks"),
            (names.PRIVATE_SUBNET_2_ID, "Private subnet 2", "a private subnet with egress in a second AZ"),
        ):
            b.param(name, g, label, f"Your {what}", type="AWS::EC2::Subnet::Id")
    else:
        b.param(
            names.VPC_CIDR,
            g,
            "VPC CIDR block",
            "Address range of the new VPC (/16 to /18); four /20 subnets are cut from its start",
            Default="10.20.0.0/16",
            AllowedPattern=r"^(\d{1,3}\.){3}\d{1,3}/1[6-8]$",
            ConstraintDescription="a CIDR block from /16 to /18, such as 10.20.0.0/16",
        )
        b.param(
            names.EGRESS_MODE,
            g,
            "Egress for private subnets",
            "nat-instance: one small self-healing NAT instance (cheapest); nat-gateway: a managed NAT gateway per AZ",
            Default="nat-instance",
            AllowedValues=list(EGRESS_MODES),
            ConstraintDescription="nat-instance or nat-gateway",
        )
    g = "Data lake"
    b.param(
        names.DATA_LAKE_BUCKET_NAME,
        g,
        "Existing data-lake bucket",
        "Name of your S3 data-lake bucket; leave empty to create a demo lake bucket",
        Default="",
        AllowedPattern=r"^$|^[0-9a-z][0-9a-z.-]{1,61}[0-9a-z]$",
        ConstraintDescription="empty, or an S3 bucket name",
    )
    b.param(
        names.DATA_LAKE_KMS_KEY_ARN,
        g,
        "Data-lake KMS key ARN",
        "KMS key the data lake is encrypted with (SSE-KMS); leave empty for SSE-S3",
        Default="",
        AllowedPattern=r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]+$",
        ConstraintDescription="empty, or a KMS key ARN",
    )
    g = "Hub image"
    b.param(
        names.SOURCE_TYPE,
        g,
        "Source of the hub image",
        "s3: a zip in the assets bucket (lakehub publish uploads one); codecommit: a new CodeCommit repository",
        Default="s3",
        AllowedValues=list(SOURCE_TYPES),
        ConstraintDescription="s3 or codecommit",
    )
    add_image_tag_param(b, g, description="Tag of the hub image the tiers run; the first deploy builds it")
    pipeline_template = build_pipeline(settings)
    p = pipeline_template.parameters[IMAGE_PLATFORMS]
    b.param(IMAGE_PLATFORMS, g, "Image platforms", p.properties["Description"], **{k: v for k, v in p.properties.items() if k not in ("Type", "Description")})
    add_schedule_params(b, "the tiers' hubs (and users' servers) and the NAT instance stop")
    add_log_retention_param(b, settings.log_retention_days, "Logging")


SCHEDULE_PARAMS = (SCHEDULE, SCHEDULE_TIMEZONE, BUSINESS_HOURS_START, BUSINESS_HOURS_END, BUSINESS_DAYS)


def _label(name: str) -> str:
    labels = {
        tier_mod.OIDC_ISSUER: "OIDC issuer URL",
        tier_mod.OAUTH_CLIENT_ID: "OIDC client ID",
        tier_mod.OAUTH_CLIENT_SECRET_ARN: "OIDC client secret (Secrets Manager name)",
        tier_mod.LDAP_URL: "LDAP URL",
        tier_mod.LDAP_BIND_DN: "LDAP bind DN",
        tier_mod.LDAP_BIND_PASSWORD_SECRET_ARN: "LDAP bind password (Secrets Manager name)",
        tier_mod.LDAP_USER_SEARCH_BASE: "LDAP user search base",
        tier_mod.LDAP_GROUP_SEARCH_BASE: "LDAP group search base",
    }
    return labels[name]


def tier_parameters(tier: TierSettings, image_tag: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        names.PLATFORM_NAME: Ref(names.PLATFORM_NAME),
        names.TIER_NAME: tier.name,
        names.TIER_DATA_PREFIXES: ",".join(tier.data_prefixes),
        names.TIER_DATA_ACCESS: tier.data_access,
        names.TIER_ALLOWED_GROUPS: ",".join(tier.allowed_groups),
        names.TIER_HOST_NAME: tier.host,
        names.TIER_SERVER_MODE: tier.server_mode,
        tier_mod.TASK_CPU: str(tier.cpu),
        tier_mod.TASK_MEMORY: str(tier.memory),
        tier_mod.MIN_TASKS: str(tier.min_tasks),
        tier_mod.MAX_TASKS: str(tier.max_tasks),
        tier_mod.USE_SPOT: str(tier.spot).lower(),
        tier_mod.USER_SPOT: str(tier.user_spot).lower(),
        names.IMAGE_TAG: image_tag,
    }
    for name in tier_mod.SIGN_IN_PARAMS + SCHEDULE_PARAMS:
        params[name] = Ref(name)
    for name in tier_mod.TIER_SSM_PARAMS:
        params[name] = Sub(names.SSM_NAME_SUB + name)
    return params


def add_catalog(b: Builder, children: dict[str, Template]) -> None:
    """The self-service portfolio (tier and on-demand hub products), once the platform's values
    are in SSM; who may launch comes from PrincipalArns."""
    b.param(
        names.PRINCIPAL_ARNS,
        "Self-service",
        "Who may launch from Service Catalog",
        "Comma-separated ARNs of IAM roles or groups given the self-service portfolio; empty: associate principals later",
        type="CommaDelimitedList",
        Default="",
        AllowedPattern=r"^$|^arn:aws[a-z-]*:iam::\d{12}:(role|group)/[\w+=,.@/-]{1,512}$",
        ConstraintDescription="IAM role or group ARNs, separated by commas",
    )
    from lakehub import catalog as catalog_mod

    passed = {names.PRINCIPAL_ARNS: Join(",", Ref(names.PRINCIPAL_ARNS))}
    child = children[names.CATALOG_TEMPLATE]
    for name in (catalog_mod.SELF_SERVICE_PREFIXES, *catalog_mod.TAG_OPTION_KEYS):
        p = child.parameters[name]
        props = {k: v for k, v in p.properties.items() if k not in ("Type", "Description")}
        label = child.metadata["AWS::CloudFormation::Interface"]["ParameterLabels"][name]["default"]
        b.param(name, "Self-service", label, p.properties["Description"], type=p.properties["Type"], **props)
        passed[name] = Join(",", Ref(name))
    nested_stack(
        b,
        "CatalogStack",
        children[names.CATALOG_TEMPLATE],
        names.CATALOG_TEMPLATE,
        {
            names.PLATFORM_NAME: Ref(names.PLATFORM_NAME),
            names.ASSETS_BUCKET_NAME: Ref(names.ASSETS_BUCKET_NAME),
            names.ASSETS_KEY_PREFIX: Ref(names.ASSETS_KEY_PREFIX),
            **passed,
        },
        depends_on=["ClusterStack"],
    )
    b.output("PortfolioId", out("CatalogStack", "PortfolioId"), "Service Catalog portfolio (tier and on-demand hub products)")
    b.output("HubUserPolicyArn", out("CatalogStack", "HubUserPolicyArn"), "Attach to data scientists' roles or groups: open, stop and start on-demand hubs")


def build_main(settings: Settings, children: dict[str, Template], existing_vpc: bool = False) -> Template:
    what = "an existing VPC" if existing_vpc else "a new VPC"
    tiers = ", ".join(t.name for t in settings.tiers)
    b = Builder(f"lakehub: multi-tenant JupyterHub over an S3 data lake on ECS Fargate, in {what}; tiers: {tiers}")
    add_common_parameters(b, settings, existing_vpc)

    common = {
        names.PLATFORM_NAME: Ref(names.PLATFORM_NAME),
        names.ASSETS_BUCKET_NAME: Ref(names.ASSETS_BUCKET_NAME),
        names.ASSETS_KEY_PREFIX: Ref(names.ASSETS_KEY_PREFIX),
        names.LOG_RETENTION_DAYS: Ref(names.LOG_RETENTION_DAYS),
    }
    if existing_vpc:
        net = {
            n: Ref(n)
            for n in (names.VPC_ID, names.VPC_CIDR, names.PUBLIC_SUBNET_1_ID, names.PUBLIC_SUBNET_2_ID, names.PRIVATE_SUBNET_1_ID, names.PRIVATE_SUBNET_2_ID)
        }
    else:
        nested_stack(
            b,
            "NetworkStack",
            children[names.NETWORK_TEMPLATE],
            names.NETWORK_TEMPLATE,
            {
                names.PLATFORM_NAME: Ref(names.PLATFORM_NAME),
                names.VPC_CIDR: Ref(names.VPC_CIDR),
                names.EGRESS_MODE: Ref(names.EGRESS_MODE),
                **{n: Ref(n) for n in SCHEDULE_PARAMS},
            },
        )
        net = {
            n: out("NetworkStack", n)
            for n in (names.VPC_ID, names.VPC_CIDR, names.PUBLIC_SUBNET_1_ID, names.PUBLIC_SUBNET_2_ID, names.PRIVATE_SUBNET_1_ID, names.PRIVATE_SUBNET_2_ID)
        }

    nested_stack(
        b,
        "StorageStack",
        children[names.STORAGE_TEMPLATE],
        names.STORAGE_TEMPLATE,
        {**common, names.DATA_LAKE_BUCKET_NAME: Ref(names.DATA_LAKE_BUCKET_NAME), names.DATA_LAKE_KMS_KEY_ARN: Ref(names.DATA_LAKE_KMS_KEY_ARN)},
    )
    nested_stack(
        b,
        "PipelineStack",
        children[names.PIPELINE_TEMPLATE],
        names.PIPELINE_TEMPLATE,
        {**common, names.SOURCE_TYPE: Ref(names.SOURCE_TYPE), names.IMAGE_TAG: Ref(names.IMAGE_TAG), IMAGE_PLATFORMS: Ref(IMAGE_PLATFORMS)},
    )
    nested_stack(
        b,
        "ClusterStack",
        children[names.CLUSTER_TEMPLATE],
        names.CLUSTER_TEMPLATE,
        {
            **common,
            **net,
            names.DOMAIN_NAME: Ref(names.DOMAIN_NAME),
            names.HOSTED_ZONE_ID: Ref(names.HOSTED_ZONE_ID),
            names.CERTIFICATE_ARN: Ref(names.CERTIFICATE_ARN),
            names.ALLOWED_CIDR: Ref(names.ALLOWED_CIDR),
            names.AUTH_MODE: Ref(names.AUTH_MODE),
            names.NOTEBOOK_BUCKET_NAME: out("StorageStack", names.NOTEBOOK_BUCKET_NAME),
            names.DATA_BUCKET_NAME: out("StorageStack", names.DATA_BUCKET_NAME),
            names.DATA_KMS_KEY_ARN: out("StorageStack", names.DATA_KMS_KEY_ARN),
            names.SEED_FUNCTION_ARN: out("StorageStack", names.SEED_FUNCTION_ARN),
            names.IMAGE_REPOSITORY_URI: out("PipelineStack", names.IMAGE_REPOSITORY_URI),
        },
    )
    for tier in settings.tiers:
        logical = f"Tier{tier.name.capitalize()}Stack"
        # Each default tier can be left out at launch (Deploy<Name>Tier=false), e.g. to start
        # with one tier or to test a single tier regionally.
        switch = f"Deploy{tier.name.capitalize()}Tier"
        b.param(
            switch,
            "Tiers",
            f"Deploy the {tier.name} tier",
            f"Create the {tier.name} tier (data prefixes {', '.join(tier.data_prefixes)}; groups {', '.join(tier.allowed_groups)})",
            Default="true",
            AllowedValues=["true", "false"],
            ConstraintDescription="true or false",
        )
        condition = f"{switch}Enabled"
        b.t.add_condition(condition, Equals(Ref(switch), "true"))
        nested_stack(
            b,
            logical,
            children[names.TIER_TEMPLATE],
            names.TIER_TEMPLATE,
            tier_parameters(tier, out("PipelineStack", names.IMAGE_TAG)),
            depends_on=["ClusterStack"],
            condition=condition,
        )
        b.output(f"Tier{tier.name.capitalize()}Url", If(condition, out(logical, names.TIER_URL), "not deployed"), f"Sign-in URL of the {tier.name} tier")
        b.output(f"Tier{tier.name.capitalize()}RoleArn", If(condition, out(logical, names.TIER_ROLE_ARN), "not deployed"), f"IAM role of the {tier.name} tier's servers")

    if names.CATALOG_TEMPLATE in children:
        add_catalog(b, children)

    b.output(names.NOTEBOOK_BUCKET_NAME, out("StorageStack", names.NOTEBOOK_BUCKET_NAME), "Bucket where notebooks are stored")
    b.output(names.DATA_BUCKET_NAME, out("StorageStack", names.DATA_BUCKET_NAME), "Data-lake bucket the tiers read")
    b.output(names.CLUSTER_NAME, out("ClusterStack", names.CLUSTER_NAME), "ECS cluster")
    b.output(names.IMAGE_REPOSITORY_URI, out("PipelineStack", names.IMAGE_REPOSITORY_URI), "Hub image repository")
    b.output(names.LOAD_BALANCER_DNS_NAME, out("ClusterStack", names.LOAD_BALANCER_DNS_NAME), "DNS name of the load balancer")
    b.output(names.USER_POOL_ID, out("ClusterStack", names.USER_POOL_ID), "Cognito user pool (cognito sign-in), or 'none'")
    b.output("PlatformParameterPath", out("ClusterStack", "PlatformParameterPath"), "SSM path of the platform's values (for tiers launched on their own)")
    return b.finish()
