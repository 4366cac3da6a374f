"""catalog.template.yaml: the self-service portfolio (AWS Service Catalog).

Two products, both loaded from the assets bucket (the same URL scheme as nested stacks):
- **tier**: a data-access tier on ECS (tier.template.yaml). It asks only for tier settings;
  platform values come from SSM (/lakehub/<platform>/...).
- **on-demand hub**: JupyterHub on one EC2 instance (hub-instance.template.yaml).

End users need only Service Catalog rights: each product has a launch role constraint, a role
that Service Catalog (and CloudFormation) use to create exactly the product's resources. The
launch roles are derived from the product templates themselves: every resource type in a
product template maps to the actions CloudFormation needs to create, update and delete it
(RESOURCE_PERMISSIONS), scoped to the platform's names where the service allows; a template
that gains a type with no entry fails the build. `iam:PassRole` is granted only for the roles
the product passes, and only to the service that receives them.

Each product loads this platform's copy of its template (Custom::ProductTemplate,
lambdas/product_template, under <prefix>templates/platforms/<platform>/), whose PlatformName and
SSM-name defaults name this platform (a template's own defaults name the platform it was built
for). A template constraint pins each product's PlatformName to this portfolio's platform, principal
associations come from the PrincipalArns parameter, and tag options (cost-center, team) let
launches carry cost-allocation tags.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from awacs.aws import Action, Allow, BoolIfExists, Condition, Deny, PolicyDocument, Statement, StringEquals
from troposphere import Equals, GetAtt, Join, Not, Ref, Select, Split, Sub, Template, encode_to_dict, iam
from troposphere import servicecatalog as sc

from lakehub import __version__
from lakehub.stacks import names
from lakehub.stacks.builder import Builder, custom_resource, platform_tags
from lakehub.stacks.parameters import (
    ASSETS_BUCKET_NAME,
    ASSETS_KEY_PREFIX,
    IAM_PRINCIPAL_ARN_PATTERN,
    KEY_PREFIX_PATTERN,
    PLATFORM_NAME,
    log_retention_days,
    or_empty,
)
from lakehub.stacks.compliance import finish
from lakehub.stacks.functions import add_function
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.policies import inline_policy, same_account, service_trust
from lakehub.settings import Settings, default_settings
from lakehub.stacks.catalog_permissions import (
    ACCOUNT,
    CUSTOM_RESOURCE_FUNCTIONS,
    CUSTOM_TYPE,
    PLATFORM,
    REGION,
    RESOURCE_PERMISSIONS,
    SC_STACK,
    Grant,
    Product,
    arn_of,
    in_account,
    secret_arn,
)

MAX_PRINCIPALS = 10
MAX_TAG_VALUES = 10
COST_CENTERS = "CostCenters"
TEAMS = "Teams"
PROVIDER_NAME = "PortfolioProvider"
SELF_SERVICE_PREFIXES = "SelfServiceDataPrefixes"
TAG_OPTION_KEYS = {COST_CENTERS: "cost-center", TEAMS: "team"}
LAUNCH_ROLE_PATH = "/lakehub-launch/"  # matches none of the IAM resources the launch roles manage


def tier_product(settings: Settings) -> Product:
    """The self-service tier product. Its tiers take any name but a settings tier's (a template
    constraint refuses those), and its launch role is denied the settings tiers' roles and
    secrets besides."""
    settings_tiers = [t.name for t in settings.tiers]
    return Product(
        key="Tier",
        filename=names.TIER_TEMPLATE,
        name="tier (JupyterHub on ECS)",
        description="A data-access tier: a JupyterHub on ECS Fargate at https://<host>.<domain> whose users reach only the tier's data-lake prefixes",
        # The tier role is named <platform>-<tier>-tier; the execution and hub roles get
        # CloudFormation-generated names that start with the provisioned product's stack name.
        role_arns=(arn_of(f"iam::{ACCOUNT}:role/{PLATFORM}-*-tier"), arn_of(f"iam::{ACCOUNT}:role/{SC_STACK}")),
        passed_to="ecs-tasks.amazonaws.com",
        # The tier's own generated secret (<platform>/<tier>/hub-secret), never the platform
        # team's sign-in secrets beside it; and the two a tier had before issue 19, which an
        # upgrade deletes.
        secrets=(
            secret_arn(f"{PLATFORM}/*/hub-secret-??????"),
            secret_arn(f"{PLATFORM}/*/cookie-secret-??????"),
            secret_arn(f"{PLATFORM}/*/cognito-client-secret-??????"),
        ),
        denied=tuple(arn_of(f"iam::{ACCOUNT}:role/{PLATFORM}-{t}-tier") for t in settings_tiers)
        + tuple(secret_arn(f"{PLATFORM}/{t}/*") for t in settings_tiers),
    )


def hub_product(tier: str) -> Product:
    """The on-demand hub product of one settings tier: its copy pins TierName, its roles live
    under /lakehub/<platform>/<tier>/ and its secrets under <platform>/<tier>/hubs/."""
    path = names.IAM_PATH_SUB + tier + "/"
    return Product(
        key=f"Hub{tier.capitalize()}",
        filename=names.HUB_INSTANCE_TEMPLATE,
        name=f"{tier} on-demand hub (JupyterHub on EC2)",
        description=f"JupyterHub on one EC2 instance of your choice (general, memory or GPU) with the {tier} tier's data access; stops itself when idle",
        role_arns=(arn_of(f"iam::{ACCOUNT}:role" + path + "*"),),
        passed_to="ec2.amazonaws.com",
        secrets=(secret_arn(f"{PLATFORM}/{tier}/hubs/*"),),
        instance_profiles=(arn_of(f"iam::{ACCOUNT}:instance-profile" + path + "*"),),
        extra_ssm=(
            arn_of(f"ssm:{REGION}::parameter/aws/service/ami-amazon-linux-latest/*"),
            arn_of(f"ssm:{REGION}::parameter/aws/service/deeplearning/ami/*"),
        ),
        tier=tier,
    )


def products(settings: Settings) -> tuple[Product, ...]:
    """The tier product and one on-demand hub product per settings tier."""
    return (tier_product(settings), *(hub_product(t.name) for t in settings.tiers))


def hub_principals_param(tier: str) -> str:
    """Parameter naming who may launch on-demand hubs of a settings tier."""
    return f"{tier.capitalize()}HubPrincipalArns"


PRODUCTS: tuple[Product, ...] = products(default_settings())  # of the default settings (tests, docs)


class CatalogError(Exception):
    """A product template uses a resource type the launch roles have no permissions for."""


def is_custom(resource_type: str) -> bool:
    return resource_type == CUSTOM_TYPE or resource_type.startswith("Custom::")


def resource_types(template: Template) -> list[str]:
    """The resource types of a template (custom resources count as one type)."""
    return sorted({CUSTOM_TYPE if is_custom(r.resource_type) else r.resource_type for r in template.resources.values()})


def custom_functions(template: Template) -> list[str]:
    """The platform functions a template's custom resources invoke (from their ServiceToken)."""
    found = set()
    for logical_id, r in template.resources.items():
        if not is_custom(r.resource_type):
            continue
        token = r.properties.get("ServiceToken")
        ref = token.data.get("Ref") if isinstance(token, Ref) else None
        if ref not in CUSTOM_RESOURCE_FUNCTIONS:
            raise CatalogError(
                f"custom resource {logical_id}: ServiceToken must be a Ref to one of {', '.join(sorted(CUSTOM_RESOURCE_FUNCTIONS))}"
            )
        found.add(CUSTOM_RESOURCE_FUNCTIONS[ref])
    return sorted(found)


def custom_grants(template: Template) -> list[Grant]:
    functions = custom_functions(template)
    if not functions:
        return []
    return [
        Grant(
            "RunPlatformFunctions",
            ("lambda:InvokeFunction",),
            tuple(in_account("lambda", f"function:{PLATFORM}-{f.replace('_', '-')}") for f in functions),
        )
    ]


ASSETS_TEMPLATES = "arn:${AWS::Partition}:s3:::${" + names.ASSETS_BUCKET_NAME + "}/${" + names.ASSETS_KEY_PREFIX + "}templates/*"


def base_grants(p: Product) -> list[Grant]:
    """What every launch needs besides the resources: the provisioned product's stack, the
    product template, and the SSM parameters its parameters resolve."""
    stack = in_account("cloudformation", f"stack/{SC_STACK}/*")
    grants = [
        Grant(
            "ProvisionedProductStacks",
            (
                "cloudformation:CreateStack",
                "cloudformation:UpdateStack",
                "cloudformation:DeleteStack",
                "cloudformation:DescribeStacks",
                "cloudformation:DescribeStackEvents",
                "cloudformation:SetStackPolicy",
                "cloudformation:TagResource",
                "cloudformation:UntagResource",
            ),
            (stack,),
        ),
        # No resource-level permissions for these two.
        Grant("ReadTemplates", ("cloudformation:GetTemplateSummary", "cloudformation:ValidateTemplate")),
        Grant("ReadProductTemplate", ("s3:GetObject",), (ASSETS_TEMPLATES,)),
        # Service Catalog's own copy of the template (its documented launch-role condition).
        Grant(
            "ReadServiceCatalogCopy",
            ("s3:GetObject",),
            ("*",),
            {"StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}},
        ),
        Grant(
            "ReadPlatformValues",
            ("ssm:GetParameters",),
            (in_account("ssm", "parameter" + names.SSM_ROOT + f"/{PLATFORM}/*"), *p.extra_ssm),
        ),
        Grant(
            "PassProductRoles",
            ("iam:PassRole",),
            p.role_arns,
            {"StringEquals": {"iam:PassedToService": p.passed_to}},
        ),
    ]
    return grants


def launch_grants(p: Product, template: Template) -> list[Grant]:
    """Every grant of a product's launch role, merged by Sid (deterministic order)."""
    missing = [t for t in resource_types(template) if t not in RESOURCE_PERMISSIONS and t != CUSTOM_TYPE]
    if missing:
        raise CatalogError(
            f"{p.filename} uses {', '.join(missing)}, for which the {p.key} launch role has no permissions; "
            "add them to lakehub.stacks.catalog.RESOURCE_PERMISSIONS"
        )
    merged: dict[str, Grant] = {}
    typed = [g for t in resource_types(template) if t != CUSTOM_TYPE for g in RESOURCE_PERMISSIONS[t](p)]
    for grant in base_grants(p) + typed + custom_grants(template):
        if grant.sid in merged:
            prev = merged[grant.sid]
            if prev.resources != grant.resources or prev.condition != grant.condition:
                raise CatalogError(f"grant {grant.sid} is defined twice with different resources or conditions")
            actions = prev.actions + tuple(a for a in grant.actions if a not in prev.actions)
            merged[grant.sid] = Grant(grant.sid, actions, prev.resources, prev.condition)
        else:
            merged[grant.sid] = grant
    return list(merged.values())


def _statement(g: Grant) -> Statement:
    kwargs: dict[str, Any] = {}
    if g.condition:
        conds = []
        for op, pairs in g.condition.items():
            if op != "StringEquals":
                raise CatalogError(f"grant {g.sid}: unsupported condition operator {op}")
            conds.append(StringEquals({key: Sub(value) if "${" in value else value for key, value in pairs.items()}))
        kwargs["Condition"] = Condition(conds)
    return Statement(
        Sid=g.sid,
        Effect=Allow,
        Action=[Action(*a.split(":", 1)) for a in sorted(g.actions)],
        Resource=[r if r == "*" else Sub(r) for r in g.resources],
        **kwargs,
    )


# What a launch role may never do to the main stack's own tiers (Product.denied): change their
# roles or pass them, or touch the secrets in their namespaces.
DENIED_ACTIONS = (
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:PassRole",
    "iam:PutRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
    "secretsmanager:CreateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
    "secretsmanager:UntagResource",
    "secretsmanager:UpdateSecret",
)


def deny_statement(p: Product) -> Statement:
    return Statement(
        Sid="KeepOffPlatformTiers",
        Effect=Deny,
        Action=[Action(*a.split(":", 1)) for a in DENIED_ACTIONS],
        Resource=[Sub(r) for r in p.denied],
    )


# IAM quotas (docs/AWS_NOTES.md, "IAM and AWS STS quotas"): a role's inline policies total at
# most 10,240 characters and a managed policy at most 6,144, both counted without whitespace; a
# role has at most 10 managed policies by default. The budget is for the template's text
# (Fn::Sub forms), which tests/test_catalog.py checks resolved with the longest allowed values.
MANAGED_POLICY_BUDGET = 5_000
MAX_MANAGED_POLICIES = 10


def _size(statement: Statement) -> int:
    return len(json.dumps(encode_to_dict(statement), separators=(",", ":")))


def launch_policy_split(p: Product, template: Template) -> tuple[list[Grant], list[list[Grant]]]:
    """The launch role's grants, split to fit IAM's size quotas: the inline policy keeps what
    every launch needs (base_grants) and the custom-resource functions (and the Deny,
    add_launch_role); each resource type's grants go, in order and whole, into customer managed
    policies of at most MANAGED_POLICY_BUDGET characters. The same statements as one policy
    would hold, split, none widened."""
    grants = launch_grants(p, template)
    inline_sids = {g.sid for g in base_grants(p) + custom_grants(template)}
    inline = [g for g in grants if g.sid in inline_sids]
    managed: list[list[Grant]] = []
    for g in grants:
        if g.sid in inline_sids:
            continue
        if not managed or sum(_size(_statement(x)) for x in managed[-1]) + _size(_statement(g)) > MANAGED_POLICY_BUDGET:
            managed.append([])
        managed[-1].append(g)
    if len(managed) > MAX_MANAGED_POLICIES:
        raise CatalogError(
            f"the {p.key} launch role would need {len(managed)} managed policies (IAM allows {MAX_MANAGED_POLICIES} by default)"
        )
    return inline, managed


# Writes on "*": only where AWS names the resource at creation (docs/SECURITY.md, P5/P6).
UNNAMED_WRITES = ("application-autoscaling:", "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition")


def _skip_unnamed_writes(resource, grants: list[Grant]) -> None:
    if any(tuple(g.resources) == ("*",) and any(a.startswith(UNNAMED_WRITES) for a in g.actions) for g in grants):
        add_checkov_skip(
            resource,
            "CKV_AWS_111",
            "Application Auto Scaling targets and policies and new ECS task-definition revisions get their ARNs when "
            "CloudFormation creates them, so these writes cannot name a resource; the policy is attached only to the "
            "product's launch role, which Service Catalog alone may assume and which runs only this product's template",
        )


def add_launch_role(b: Builder, p: Product, template: Template) -> iam.Role:
    inline, managed = launch_policy_split(p, template)
    statements = [_statement(g) for g in inline]
    if p.denied:
        statements.append(deny_statement(p))
    policies = []
    for i, grants in enumerate(managed, 1):
        policy = b.add(
            iam.ManagedPolicy(
                f"{p.key}LaunchPolicy{i}",
                Path=LAUNCH_ROLE_PATH,
                Description=Sub(
                    "lakehub "
                    + PLATFORM
                    + f": Service Catalog launch role of the {p.name} product, its resources ({i} of {len(managed)})"
                ),
                PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[_statement(g) for g in grants]),
            )
        )
        _skip_unnamed_writes(policy, grants)
        policies.append(policy)
    role = b.add(
        iam.Role(
            f"{p.key}LaunchRole",
            Path=LAUNCH_ROLE_PATH,
            Description=Sub(
                "lakehub " + PLATFORM + f": Service Catalog launch role of the {p.name} product (its resources only)"
            ),
            AssumeRolePolicyDocument=service_trust("servicecatalog.amazonaws.com", same_account()),
            MaxSessionDuration=3600,
            # IAM's quotas: 10,240 characters of inline policy per role (launch_policy_split).
            Policies=[inline_policy("launch", statements)],
            ManagedPolicyArns=[Ref(m) for m in policies],
            Tags=platform_tags(),
        )
    )
    _skip_unnamed_writes(role, inline)
    return role


def artifact_version(template: Template) -> str:
    """Version of a product's provisioning artifact: the package version and a hash of the
    template, so a changed template adds a new version and an unchanged one keeps its own."""
    text = template.to_yaml(clean_up=False, long_form=False)
    return f"v{__version__}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


PRINCIPALS_PATTERN = or_empty(IAM_PRINCIPAL_ARN_PATTERN)


def add_sign_in_params(b: Builder) -> None:
    """The platform's sign-in settings (the main stack's own parameters, passed through): every
    product copy pins them, so no launch chooses an identity provider."""
    from lakehub.stacks import tier as tier_mod

    tier_template = tier_mod.build_tier(default_settings())
    for name in tier_mod.SIGN_IN_PARAMS:
        b.copy_param(tier_template, name, "Platform sign-in (pinned in every product)")


def add_parameters(b: Builder, settings: Settings) -> None:
    b.use(PLATFORM_NAME)
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    add_sign_in_params(b)
    g = "Self-service portfolio"
    b.param(
        PROVIDER_NAME,
        g,
        "Portfolio provider",
        "Who provides the portfolio (shown to users in Service Catalog)",
        Default="Data platform team",
        AllowedPattern=r"^[\w .@,&()-]{1,50}$",
        ConstraintDescription="1-50 letters, digits, spaces and .@,&()-",
    )
    b.param(
        names.PRINCIPAL_ARNS,
        g,
        "Who may launch tiers",
        f"Comma-separated ARNs of IAM roles or groups (at most {MAX_PRINCIPALS}) given the tier portfolio; empty: associate principals later",
        type="CommaDelimitedList",
        Default="",
        AllowedPattern=PRINCIPALS_PATTERN,
        ConstraintDescription="IAM role or group ARNs, separated by commas",
    )
    for tier in settings.tiers:
        b.param(
            hub_principals_param(tier.name),
            g,
            f"Who may launch {tier.name} on-demand hubs",
            f"Comma-separated ARNs of IAM roles or groups (at most {MAX_PRINCIPALS}) given the {tier.name} hub portfolio: "
            f"their hubs reach the {tier.name} tier's data; empty: nobody (associate principals later)",
            type="CommaDelimitedList",
            Default="",
            AllowedPattern=PRINCIPALS_PATTERN,
            ConstraintDescription="IAM role or group ARNs, separated by commas",
        )
    b.param(
        SELF_SERVICE_PREFIXES,
        g,
        "Data-lake prefixes teams may claim",
        "Comma-separated data-lake prefixes (each ending in '/') that a tier launched from the catalog may reach; "
        "a launch asking for any other prefix is refused. Empty: no tier can be launched from the catalog",
        type="CommaDelimitedList",
        Default="",
        AllowedPattern=or_empty(KEY_PREFIX_PATTERN),
        ConstraintDescription="key prefixes ending in '/' (no wildcards), separated by commas",
    )
    for name, key in TAG_OPTION_KEYS.items():
        b.param(
            name,
            "Cost allocation",
            f"{key} values",
            f"Comma-separated values (at most {MAX_TAG_VALUES}) users pick for the {key} tag at launch; empty: none",
            type="CommaDelimitedList",
            Default="",
            AllowedPattern=r"^$|^[\w .:/=+@-]{1,256}$",
            ConstraintDescription="values of letters, digits, spaces and .:/=+@- separated by commas",
        )


def _padded(param: str, slots: int):
    """The list parameter's items padded with empty strings to `slots` items."""
    return Split(",", Join(",", [Join(",", Ref(param))] + [""] * (slots - 1)))


def add_principals(b: Builder, portfolio, param: str = names.PRINCIPAL_ARNS, stem: str = "") -> None:
    items = _padded(param, MAX_PRINCIPALS)
    for i in range(MAX_PRINCIPALS):
        cond = f"Has{stem}Principal{i + 1}"
        b.t.add_condition(cond, Not(Equals(Select(i, items), "")))
        b.add(
            sc.PortfolioPrincipalAssociation(
                f"{stem}PrincipalAssociation{i + 1}",
                Condition=cond,
                PortfolioId=Ref(portfolio),
                PrincipalARN=Select(i, items),
                PrincipalType="IAM",
            )
        )


def add_tag_options(b: Builder, portfolios: dict[str, Any]) -> None:
    """Tag options, associated with every portfolio ({logical-ID stem: portfolio}; "" for the
    tier portfolio, whose association IDs predate the hub portfolios)."""
    for param, key in TAG_OPTION_KEYS.items():
        items = _padded(param, MAX_TAG_VALUES)
        stem = "".join(part.capitalize() for part in key.split("-"))
        for i in range(MAX_TAG_VALUES):
            cond = f"Has{stem}{i + 1}"
            b.t.add_condition(cond, Not(Equals(Select(i, items), "")))
            option = b.add(sc.TagOption(f"{stem}TagOption{i + 1}", Condition=cond, Key=key, Value=Select(i, items), Active=True))
            for owner, portfolio in portfolios.items():
                b.add(
                    sc.TagOptionAssociation(
                        f"{owner}{stem}TagOption{i + 1}Association",
                        Condition=cond,
                        ResourceId=Ref(portfolio),
                        TagOptionId=Ref(option),
                    )
                )


def platform_rule() -> Sub:
    """A template constraint: launches use this portfolio's platform."""
    return Sub(
        '{"SamePlatform": {"Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "'
        + names.PLATFORM_NAME
        + '"}, "${'
        + names.PLATFORM_NAME
        + '}"]}, "AssertDescription": "This portfolio launches into the ${'
        + names.PLATFORM_NAME
        + "} platform: keep PlatformName ${"
        + names.PLATFORM_NAME
        + '}"}]}}'
    )


def prefixes_rule() -> Sub:
    """A template constraint: every DataPrefixes item is one of SelfServiceDataPrefixes."""
    return Sub(
        '{"ListedDataPrefixesOnly": {"Assertions": [{"Assert": {"Fn::EachMemberIn": [{"Ref": "'
        + names.TIER_DATA_PREFIXES
        + '"}, ["${Listed}"]]}, "AssertDescription": "DataPrefixes may only name prefixes the platform team lists for self-service tiers: ${Shown}"}]}}',
        Listed=Join('", "', Ref(SELF_SERVICE_PREFIXES)),
        Shown=Join(", ", Ref(SELF_SERVICE_PREFIXES)),
    )


def same_tier_rule(tier: str) -> str:
    """A template constraint: a tier's hub product launches for that tier only."""
    return json.dumps(
        {
            "SameTier": {
                "Assertions": [
                    {
                        "Assert": {"Fn::Equals": [{"Ref": names.TIER_NAME}, tier]},
                        "AssertDescription": f"This product launches hubs of the {tier} tier only: keep TierName {tier}",
                    }
                ]
            }
        }
    )


def not_a_platform_tier_rule(settings: Settings) -> str:
    """A template constraint: a self-service tier never takes the name of one of main's tiers
    (their roles, secrets and notebook folders are named after it)."""
    taken = [t.name for t in settings.tiers]
    return json.dumps(
        {
            "NotAPlatformTier": {
                "Assertions": [
                    {
                        "Assert": {"Fn::Not": [{"Fn::Contains": [taken, {"Ref": names.TIER_NAME}]}]},
                        "AssertDescription": f"TierName may not be one of the platform's own tiers ({', '.join(taken)})",
                    }
                ]
            }
        }
    )


PLATFORM_TEMPLATES = "templates/platforms/"  # under AssetsKeyPrefix: <platform>/<product file>


def platform_defaults(template: Template, build_platform: str) -> dict[str, Any]:
    """The defaults a product's copy gets: PlatformName, and every SSM-typed parameter whose
    default is a platform value's SSM name (the public AMI parameters keep theirs)."""
    out: dict[str, Any] = {names.PLATFORM_NAME: Ref(names.PLATFORM_NAME)}
    for name, param in template.parameters.items():
        props = param.properties
        if props.get("Type", "").startswith("AWS::SSM::Parameter::Value") and props.get("Default") == names.ssm_name(
            build_platform, name
        ):
            out[name] = Sub(names.SSM_NAME_SUB + name)
    return out


def copy_filename(p: Product) -> str:
    """File name of a product's copy (hub products of several tiers copy one template)."""
    return p.filename if not p.tier else p.filename.replace(".template.yaml", f"-{p.tier}.template.yaml")


def add_product_template_function(b: Builder) -> Any:
    assets = "arn:${AWS::Partition}:s3:::${" + names.ASSETS_BUCKET_NAME + "}/${" + names.ASSETS_KEY_PREFIX + "}"
    return add_function(
        b,
        "ProductTemplateFunction",
        "product_template",
        "lakehub: writes this platform's copy of each Service Catalog product template (its SSM defaults name the platform)",
        [
            Statement(Effect=Allow, Action=[Action("s3", "GetObject")], Resource=[Sub(assets + "templates/*.template.yaml")]),
            Statement(
                Effect=Allow,
                Action=[Action("s3", "PutObject"), Action("s3", "DeleteObject")],
                Resource=[Sub(assets + PLATFORM_TEMPLATES + PLATFORM + "/*")],
            ),
        ],
        timeout=60,
        memory=128,
    )


def platform_pins(p: Product) -> dict[str, Any]:
    """The parameters a product's copy allows one value for: the platform's sign-in settings,
    and a hub product's tier."""
    from lakehub.stacks import tier as tier_mod

    pins: dict[str, Any] = {name: Ref(name) for name in tier_mod.SIGN_IN_PARAMS}
    if p.tier:
        pins[names.TIER_NAME] = p.tier
    return pins


def add_product_template(b: Builder, p: Product, template: Template, version: str, build_platform: str) -> Any:
    from lakehub.assets import template_key

    return b.add(
        custom_resource(
            f"{p.key}ProductTemplate",
            "Custom::ProductTemplate",
            ServiceToken=GetAtt("ProductTemplateFunction", "Arn"),
            Bucket=Ref(names.ASSETS_BUCKET_NAME),
            SourceKey=Sub("${" + names.ASSETS_KEY_PREFIX + "}" + template_key(p.filename)),
            TargetKey=Sub("${" + names.ASSETS_KEY_PREFIX + "}" + PLATFORM_TEMPLATES + PLATFORM + "/" + copy_filename(p)),
            Defaults=platform_defaults(template, build_platform),
            Pins=platform_pins(p),
            Version=version,
        )
    )


def add_product(b: Builder, portfolio, p: Product, template: Template, settings: Settings) -> sc.CloudFormationProduct:
    build_platform = settings.platform_name
    version = artifact_version(template)
    copy = add_product_template(b, p, template, version, build_platform)
    product = b.add(
        sc.CloudFormationProduct(
            f"{p.key}Product",
            Name=Sub(PLATFORM + " " + p.name),
            Owner=Ref(PROVIDER_NAME),
            Description=p.description,
            Distributor="lakehub",
            SupportDescription="See docs/SELF_SERVICE.md of the lakehub repository",
            ProvisioningArtifactParameters=[
                sc.ProvisioningArtifactProperties(
                    # The build's version and the digest of this platform's copy: a change of the
                    # pinned sign-in values (main's parameters) is a new version of the product.
                    Name=Sub("${Version}-${Digest}", Version=version, Digest=GetAtt(copy, "Digest")),
                    Description=f"{p.filename} {version}",
                    Type="CLOUD_FORMATION_TEMPLATE",
                    # This platform's copy of the template (its SSM defaults name this platform).
                    Info=sc.Info(LoadTemplateFromURL=GetAtt(copy, "TemplateUrl")),
                )
            ],
            Tags=platform_tags(),
        )
    )
    association = b.add(
        sc.PortfolioProductAssociation(f"{p.key}ProductAssociation", PortfolioId=Ref(portfolio), ProductId=Ref(product))
    )
    role = add_launch_role(b, p, template)

    def constrain(logical_id: str, rules, description: str) -> None:
        """A template constraint on this product in this portfolio: launches must meet `rules`."""
        b.add(
            sc.LaunchTemplateConstraint(
                logical_id,
                DependsOn=[association.title],
                PortfolioId=Ref(portfolio),
                ProductId=Ref(product),
                Rules=rules,
                Description=description,
            )
        )

    b.add(
        sc.LaunchRoleConstraint(
            f"{p.key}LaunchConstraint",
            DependsOn=[association.title],
            PortfolioId=Ref(portfolio),
            ProductId=Ref(product),
            RoleArn=GetAtt(role, "Arn"),
            Description=f"Launch the {p.name} with its own least-privilege role",
        )
    )
    constrain(f"{p.key}PlatformConstraint", platform_rule(), "Launches join this portfolio's platform")
    if p.tier:
        # Also pinned in the copy (AllowedValues): a launch for another tier is refused twice.
        constrain(f"{p.key}TierConstraint", same_tier_rule(p.tier), f"Hubs of this product reach the {p.tier} tier only")
    if p.key == "Tier":
        constrain(
            "TierNameConstraint",
            not_a_platform_tier_rule(settings),
            "Tiers launched from the catalog never take the name of one of the platform's own tiers",
        )
        # A tier's role reaches the prefixes its launcher names: only those the platform team
        # listed may be named (Fn::EachMemberIn: each asked prefix must be one of them).
        constrain(
            "TierDataPrefixesConstraint",
            prefixes_rule(),
            "Tiers launched from the catalog reach only the data-lake prefixes the platform team lists",
        )
    b.output(f"{p.key}ProductId", Ref(product), f"Service Catalog product: {p.name}")
    b.output(
        f"{p.key}ProvisioningArtifactName",
        Sub("${Version}-${Digest}", Version=version, Digest=GetAtt(copy, "Digest")),
        f"Version of the {p.name} product",
    )
    b.output(f"{p.key}LaunchRoleArn", GetAtt(role, "Arn"), f"Launch role of the {p.name} product")
    return product


def add_hub_user_policy(b: Builder) -> iam.ManagedPolicy:
    """What a data scientist needs besides Service Catalog's end-user access to use an
    on-demand hub: port forwarding (only: no shell) to the platform's on-demand hubs, their own
    sessions, and stopping and starting those hubs. Attach it to the launching principals."""
    from lakehub.stacks.hub_instance import PRODUCT_TAG_VALUE

    hubs = Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*")
    on_demand_hubs = StringEquals(
        {
            f"aws:ResourceTag/{names.TAG_PLATFORM}": Ref(names.PLATFORM_NAME),
            f"aws:ResourceTag/{names.TAG_PRODUCT}": PRODUCT_TAG_VALUE,
        }
    )
    statements = [
        Statement(
            Sid="PortForwardToOnDemandHubs",
            Effect=Allow,
            Action=[Action("ssm", "StartSession")],
            Resource=[hubs],
            Condition=Condition(
                [
                    StringEquals(
                        {
                            f"ssm:resourceTag/{names.TAG_PLATFORM}": Ref(names.PLATFORM_NAME),
                            f"ssm:resourceTag/{names.TAG_PRODUCT}": PRODUCT_TAG_VALUE,
                        }
                    ),
                    # Only with a session document the policy names: port forwarding, no shell.
                    BoolIfExists("ssm:SessionDocumentAccessCheck", "true"),
                ]
            ),
        ),
        Statement(
            Sid="PortForwardingDocument",
            Effect=Allow,
            Action=[Action("ssm", "StartSession")],
            Resource=[Sub("arn:${AWS::Partition}:ssm:${AWS::Region}::document/AWS-StartPortForwardingSession")],
        ),
        Statement(
            Sid="OwnSessions",
            Effect=Allow,
            Action=[Action("ssm", "TerminateSession"), Action("ssm", "ResumeSession")],
            # ${aws:userid} is an IAM policy variable (the caller's id), inserted literally.
            Resource=[
                Sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:session/${Caller}-*", Caller="${aws:userid}")
            ],
        ),
        Statement(
            Sid="StopAndStartOnDemandHubs",
            Effect=Allow,
            Action=[Action("ec2", "StopInstances"), Action("ec2", "StartInstances")],
            Resource=[hubs],
            Condition=Condition(on_demand_hubs),
        ),
        Statement(Sid="SeeHubState", Effect=Allow, Action=[Action("ec2", "DescribeInstances")], Resource=["*"]),
    ]
    policy = b.add(
        iam.ManagedPolicy(
            "HubUserPolicy",
            Description=Sub("lakehub " + PLATFORM + ": open (port forwarding only), stop and start on-demand hubs"),
            Path=LAUNCH_ROLE_PATH,
            PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
        )
    )
    b.output(
        "HubUserPolicyArn",
        Ref(policy),
        "Attach to the launching roles or groups (with AWSServiceCatalogEndUserFullAccess): open, stop and start on-demand hubs",
    )
    return policy


def build_catalog(settings: Settings, children: dict[str, Template]) -> Template:
    b = Builder(
        "lakehub self-service: Service Catalog portfolios: a tier product, and an on-demand hub product per platform tier"
    )
    add_parameters(b, settings)
    b.use(log_retention_days(settings))
    add_product_template_function(b)
    portfolio = b.add(
        sc.Portfolio(
            "Portfolio",
            DisplayName=Sub(PLATFORM + " data science"),
            ProviderName=Ref(PROVIDER_NAME),
            Description="lakehub: launch a data-access tier (JupyterHub on ECS) with the data-lake prefixes the platform team lists",
            Tags=platform_tags(),
        )
    )
    portfolios = {"": portfolio}
    for p in products(settings):
        if p.filename not in children:
            raise CatalogError(f"the {p.key} product needs {p.filename}, which this build does not generate")
        owner = portfolio
        if p.tier:
            # One portfolio per platform tier: who may launch hubs that reach a tier's data is the
            # platform team's decision (its own principal parameter), not the launcher's.
            owner = b.add(
                sc.Portfolio(
                    f"{p.key}Portfolio",
                    DisplayName=Sub(PLATFORM + f" {p.tier} on-demand hubs"),
                    ProviderName=Ref(PROVIDER_NAME),
                    Description=f"lakehub: your own JupyterHub on EC2 with the {p.tier} tier's data access",
                    Tags=platform_tags(),
                )
            )
            portfolios[p.key] = owner
            add_principals(b, owner, hub_principals_param(p.tier), p.key)
            b.output(f"{p.key}PortfolioId", Ref(owner), f"Service Catalog portfolio of {p.tier} on-demand hubs")
        add_product(b, owner, p, children[p.filename], settings)
    add_principals(b, portfolio)
    add_tag_options(b, portfolios)
    add_hub_user_policy(b)
    b.output("PortfolioId", Ref(portfolio), "Service Catalog portfolio of the platform (tier product)")
    return finish(b, settings)
