"""main.template.yaml and main-existing-vpc.template.yaml: the entry points.

They nest network (new VPC only), storage, pipeline, cluster and one tier stack per tier of
the build-time settings (the seed's `pii` and `nonpii` by default). Every value that crosses
stacks has one name (names.py): the child's Output, the child's Parameter and the parent's
key. Nested TemplateURLs come from AssetsBucketName/AssetsKeyPrefix, never a fixed bucket.
"""

from __future__ import annotations

from typing import Any

from troposphere import Equals, GetAtt, If, Join, Not, Ref, Sub, Template, cloudformation

from lakehub.stacks import monitoring, names
from lakehub.stacks import tier as tier_mod
from lakehub.stacks.cluster import add_domain_params
from lakehub.stacks.builder import Builder, platform_tags, template_url
from lakehub.stacks.parameters import ASSETS_BUCKET_NAME, ASSETS_KEY_PREFIX, PLATFORM_NAME, VPC_CIDR, VPC_ID, log_retention_days
from lakehub.stacks.compliance import FUNCTION_NETWORK_PARAMS, finish
from lakehub.stacks.network import (
    BUSINESS_DAYS,
    BUSINESS_HOURS_END,
    BUSINESS_HOURS_START,
    SCHEDULE,
    SCHEDULE_TIMEZONE,
    add_schedule_params,
)
from lakehub.stacks.pipeline import IMAGE_PLATFORMS
from lakehub.settings import Settings, TierSettings

SIGN_IN_GROUP = "Sign-in"


class WiringError(Exception):
    """A nested stack is given a key its template does not have, or misses a required one."""


def nested_stack(
    b: Builder,
    logical_id: str,
    child: Template,
    filename: str,
    params: dict[str, Any],
    depends_on: list[str] | None = None,
    condition: str | None = None,
) -> cloudformation.Stack:
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


def add_common_parameters(b: Builder, settings: Settings, children: dict[str, Template], existing_vpc: bool) -> None:
    """main's parameters: most are a nested template's own, copied as it declares them."""
    b.use(PLATFORM_NAME)
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    add_domain_params(b)
    b.copy_param(children[names.CLUSTER_TEMPLATE], names.AUTH_MODE, SIGN_IN_GROUP)
    # oidc / ldap settings, handed to every tier
    for name in tier_mod.SIGN_IN_PARAMS:
        b.copy_param(children[names.TIER_TEMPLATE], name, SIGN_IN_GROUP)
    g = "Network"
    if existing_vpc:
        b.use(VPC_ID, group=g, Description="Your VPC")
        b.use(VPC_CIDR, group=g)
        for name, label, what in (
            (names.PUBLIC_SUBNET_1_ID, "Public subnet 1", "a public subnet (route to an internet gateway) for the load balancer"),
            (names.PUBLIC_SUBNET_2_ID, "Public subnet 2", "a public subnet in a second AZ"),
            (names.PRIVATE_SUBNET_1_ID, "Private subnet 1", "a private subnet with egress (NAT) for the tasks"),
            (names.PRIVATE_SUBNET_2_ID, "Private subnet 2", "a private subnet with egress in a second AZ"),
        ):
            b.param(name, g, label, f"Your {what}", type="AWS::EC2::Subnet::Id")
    else:
        b.copy_param(children[names.NETWORK_TEMPLATE], names.VPC_CIDR, g)
        b.copy_param(children[names.NETWORK_TEMPLATE], names.EGRESS_MODE, g)
    for name in (names.DATA_LAKE_BUCKET_NAME, names.DATA_LAKE_KMS_KEY_ARN):
        b.copy_param(children[names.STORAGE_TEMPLATE], name, "Data lake")
    b.copy_param(children[names.STORAGE_TEMPLATE], names.RECORD_DATA_EVENTS, "Logging")
    g = "Hub image"
    for name in (names.SOURCE_TYPE, names.IMAGE_TAG, IMAGE_PLATFORMS):
        b.copy_param(children[names.PIPELINE_TEMPLATE], name, g)
    add_schedule_params(b, "the tiers' hubs (and users' servers) and the NAT instance stop")
    b.use(log_retention_days(settings))
    monitoring.add_alarm_email_param(b)


SCHEDULE_PARAMS = (SCHEDULE, SCHEDULE_TIMEZONE, BUSINESS_HOURS_START, BUSINESS_HOURS_END, BUSINESS_DAYS)
# The network every child reads: the given VPC's parameters, or the network stack's outputs.
NETWORK_PARAMS = (
    names.VPC_ID,
    names.VPC_CIDR,
    names.PUBLIC_SUBNET_1_ID,
    names.PUBLIC_SUBNET_2_ID,
    names.PRIVATE_SUBNET_1_ID,
    names.PRIVATE_SUBNET_2_ID,
)


def tier_parameters(tier: TierSettings, image_tag: Any, priority: int) -> dict[str, Any]:
    """`priority`: the tier's own listener rule priority. CloudFormation creates the tier stacks
    in parallel, so none may pick "the lowest free one" (they would all pick the same)."""
    params: dict[str, Any] = {
        tier_mod.LISTENER_PRIORITY: str(priority),
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


def add_catalog(b: Builder, children: dict[str, Template], net: dict | None = None) -> None:
    """The self-service portfolio (tier and on-demand hub products), once the platform's values
    are in SSM; who may launch comes from PrincipalArns."""
    from lakehub.stacks import catalog as catalog_mod

    b.param(
        names.PRINCIPAL_ARNS,
        "Self-service",
        "Who may launch tiers from Service Catalog",
        "Comma-separated ARNs of IAM roles or groups given the self-service tier portfolio (on-demand hubs: one portfolio per tier, below); empty: associate principals later",
        type="CommaDelimitedList",
        Default="",
        AllowedPattern=catalog_mod.PRINCIPALS_PATTERN,
        ConstraintDescription="IAM role or group ARNs, separated by commas",
    )

    passed = {names.PRINCIPAL_ARNS: Join(",", Ref(names.PRINCIPAL_ARNS))}
    # The platform's sign-in settings: the catalog pins every product copy to them.
    passed.update({name: Ref(name) for name in tier_mod.SIGN_IN_PARAMS})
    child = children[names.CATALOG_TEMPLATE]
    hub_principals = [n for n in child.parameters if n.endswith("HubPrincipalArns")]
    for name in (*hub_principals, catalog_mod.SELF_SERVICE_PREFIXES, *catalog_mod.TAG_OPTION_KEYS):
        b.copy_param(child, name, "Self-service")
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
            names.LOG_RETENTION_DAYS: Ref(names.LOG_RETENTION_DAYS),
            **(net or {}),
            **passed,
        },
        depends_on=["ClusterStack"],
    )
    b.output("PortfolioId", out("CatalogStack", "PortfolioId"), "Service Catalog portfolio (tier and on-demand hub products)")
    b.output(
        "HubUserPolicyArn",
        out("CatalogStack", "HubUserPolicyArn"),
        "Attach to data scientists' roles or groups: open, stop and start on-demand hubs",
    )


def build_main(settings: Settings, children: dict[str, Template], existing_vpc: bool = False) -> Template:
    what = "an existing VPC" if existing_vpc else "a new VPC"
    tiers = ", ".join(t.name for t in settings.tiers)
    b = Builder(f"lakehub: multi-tenant JupyterHub over an S3 data lake on ECS Fargate, in {what}; tiers: {tiers}")
    add_common_parameters(b, settings, children, existing_vpc)

    common = {
        names.PLATFORM_NAME: Ref(names.PLATFORM_NAME),
        names.ASSETS_BUCKET_NAME: Ref(names.ASSETS_BUCKET_NAME),
        names.ASSETS_KEY_PREFIX: Ref(names.ASSETS_KEY_PREFIX),
        names.LOG_RETENTION_DAYS: Ref(names.LOG_RETENTION_DAYS),
    }
    if existing_vpc:
        net = {n: Ref(n) for n in NETWORK_PARAMS}
    else:
        nested_stack(
            b,
            "NetworkStack",
            children[names.NETWORK_TEMPLATE],
            names.NETWORK_TEMPLATE,
            {
                **common,
                names.VPC_CIDR: Ref(names.VPC_CIDR),
                names.EGRESS_MODE: Ref(names.EGRESS_MODE),
                **{n: Ref(n) for n in SCHEDULE_PARAMS},
            },
        )
        net = {n: out("NetworkStack", n) for n in NETWORK_PARAMS}

    topic = monitoring.add_alarm_topic(b)

    def functions_net(child: str) -> dict:
        """The VPC and private subnets for a child whose functions run in the VPC (strict profile)."""
        return {n: net[n] for n in FUNCTION_NETWORK_PARAMS if n in children[child].parameters}

    nested_stack(
        b,
        "StorageStack",
        children[names.STORAGE_TEMPLATE],
        names.STORAGE_TEMPLATE,
        {
            **common,
            **functions_net(names.STORAGE_TEMPLATE),
            names.DATA_LAKE_BUCKET_NAME: Ref(names.DATA_LAKE_BUCKET_NAME),
            names.DATA_LAKE_KMS_KEY_ARN: Ref(names.DATA_LAKE_KMS_KEY_ARN),
            names.RECORD_DATA_EVENTS: Ref(names.RECORD_DATA_EVENTS),
        },
    )
    nested_stack(
        b,
        "PipelineStack",
        children[names.PIPELINE_TEMPLATE],
        names.PIPELINE_TEMPLATE,
        {
            **common,
            **functions_net(names.PIPELINE_TEMPLATE),
            names.SOURCE_TYPE: Ref(names.SOURCE_TYPE),
            names.IMAGE_TAG: Ref(names.IMAGE_TAG),
            IMAGE_PLATFORMS: Ref(IMAGE_PLATFORMS),
        },
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
            names.ALARM_TOPIC_ARN: Ref(topic),
        },
    )
    add_platform_monitoring(b, topic, existing_vpc)
    if len(settings.tiers) >= names.AUTO_PRIORITY_MINIMUM:
        raise WiringError(
            f"at most {names.AUTO_PRIORITY_MINIMUM - 1} default tiers: listener priorities from {names.AUTO_PRIORITY_MINIMUM} are claimed by launched tiers"
        )
    for index, tier in enumerate(settings.tiers):
        logical = f"Tier{tier.name.capitalize()}Stack"
        # Each default tier can be left out at launch (Deploy<Name>Tier=false), e.g. to start
        # with one tier or to test a single tier regionally.
        switch = f"Deploy{tier.name.capitalize()}Tier"
        b.choice(
            switch,
            "Tiers",
            f"Deploy the {tier.name} tier",
            f"Create the {tier.name} tier (data prefixes {', '.join(tier.data_prefixes)}; groups {', '.join(tier.allowed_groups)})",
            ["true", "false"],
            "true",
        )
        condition = f"{switch}Enabled"
        b.t.add_condition(condition, Equals(Ref(switch), "true"))
        nested_stack(
            b,
            logical,
            children[names.TIER_TEMPLATE],
            names.TIER_TEMPLATE,
            tier_parameters(tier, out("PipelineStack", names.IMAGE_TAG), index + 1),
            depends_on=["ClusterStack"],
            condition=condition,
        )
        b.output(
            f"Tier{tier.name.capitalize()}Url",
            If(condition, out(logical, names.TIER_URL), "not deployed"),
            f"Sign-in URL of the {tier.name} tier",
        )
        b.output(
            f"Tier{tier.name.capitalize()}RoleArn",
            If(condition, out(logical, names.TIER_ROLE_ARN), "not deployed"),
            f"IAM role of the {tier.name} tier's servers",
        )

    if names.CATALOG_TEMPLATE in children:
        add_catalog(b, children, functions_net(names.CATALOG_TEMPLATE))

    b.output(names.NOTEBOOK_BUCKET_NAME, out("StorageStack", names.NOTEBOOK_BUCKET_NAME), "Bucket where notebooks are stored")
    b.output(names.DATA_BUCKET_NAME, out("StorageStack", names.DATA_BUCKET_NAME), "Data-lake bucket the tiers read")
    b.output(names.CLUSTER_NAME, out("ClusterStack", names.CLUSTER_NAME), "ECS cluster")
    b.output(names.IMAGE_REPOSITORY_URI, out("PipelineStack", names.IMAGE_REPOSITORY_URI), "Hub image repository")
    b.output(names.LOAD_BALANCER_DNS_NAME, out("ClusterStack", names.LOAD_BALANCER_DNS_NAME), "DNS name of the load balancer")
    b.output(names.USER_POOL_ID, out("ClusterStack", names.USER_POOL_ID), "Cognito user pool (cognito sign-in), or 'none'")
    b.output(
        "PlatformParameterPath",
        out("ClusterStack", "PlatformParameterPath"),
        "SSM path of the platform's values (for tiers launched on their own)",
    )
    b.output(
        names.ALARM_TOPIC_ARN, Ref(topic), "SNS topic of the platform's alarms: subscribe the operators (e-mail, chat, paging)"
    )
    b.output("DashboardName", Ref(monitoring.DASHBOARD), "CloudWatch dashboard of the platform")
    return finish(b, settings)


# The platform functions behind custom resources (a failure fails a stack): logical name -> ARN.
def custom_resource_functions() -> dict[str, Any]:
    return {
        "SeedFunction": out("StorageStack", names.SEED_FUNCTION_ARN),
        "ListenerPriorityFunction": out("ClusterStack", names.LISTENER_PRIORITY_FUNCTION_ARN),
        "SecretArnFunction": out("ClusterStack", names.SECRET_ARN_FUNCTION_ARN),
    }


def add_platform_monitoring(b: Builder, topic, existing_vpc: bool) -> None:
    """The platform's alarms (custom-resource failures; the NAT instance, new VPC only) and its
    dashboard (lakehub.stacks.monitoring)."""
    nat_group = None
    if not existing_vpc:
        b.t.add_condition("UseNatInstance", Not(Equals(Ref(names.EGRESS_MODE), "nat-gateway")))
        nat_group = out("NetworkStack", names.NAT_INSTANCE_GROUP_NAME)
    functions = custom_resource_functions()
    monitoring.add_platform_alarms(b, Ref(topic), functions, nat_group, "UseNatInstance" if nat_group is not None else None)
    monitoring.add_dashboard(b, out("StorageStack", names.NOTEBOOK_BUCKET_NAME), functions, nat_group)
