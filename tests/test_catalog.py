"""The self-service portfolio (catalog.template.yaml): products, launch roles, principals,
tag options, and main's nesting.

The launch roles are checked against an authority independent of lakehub: the CloudFormation
resource provider schemas shipped with cfn-lint, whose `handlers` list the permissions
CloudFormation needs to create, read, update and delete each resource type.
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
from troposphere import Template, sqs

from lakehub.stacks import catalog, names
from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import Resolver, load
from lakehub.settings import default_settings

ACCOUNT = "123456789012"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1", "AWS::Partition": "aws"}

# Handler permissions a product does not need, because its template does not set the property
# whose handling calls them: {type: {action: (property, reason)}}. The tests check that no
# resource of the type sets the property; if one does, the action is needed after all.
NOT_NEEDED: dict[str, dict[str, tuple[str, str]]] = {
    "AWS::IAM::Role": {
        "iam:AttachRolePolicy": ("ManagedPolicyArns", "inline policies only"),
        "iam:DetachRolePolicy": ("ManagedPolicyArns", "inline policies only"),
        "iam:PutRolePermissionsBoundary": ("PermissionsBoundary", "no boundary"),
        "iam:DeleteRolePermissionsBoundary": ("PermissionsBoundary", "no boundary"),
    },
    "AWS::EC2::Instance": {
        "ssm:CreateAssociation": ("SsmAssociations", "no SSM associations"),
        "ssm:DeleteAssociation": ("SsmAssociations", "no SSM associations"),
        "ssm:DescribeAssociation": ("SsmAssociations", "no SSM associations"),
        "ssm:ListAssociations": ("SsmAssociations", "no SSM associations"),
        "ec2:AttachVolume": ("Volumes", "root volume only"),
        "ec2:DetachVolume": ("Volumes", "root volume only"),
        "ec2:ModifyInstancePlacement": ("Tenancy", "default placement"),
        "ec2:ModifyPrivateDnsNameOptions": ("PrivateDnsNameOptions", "default DNS names"),
        "ec2:ModifyInstanceMaintenanceOptions": ("MaintenanceOptions", "default maintenance options"),
    },
    "AWS::Cognito::UserPoolClient": {
        "iam:CreateServiceLinkedRole": ("AnalyticsConfiguration", "no Pinpoint analytics"),
        "iam:PassRole": ("AnalyticsConfiguration", "no Pinpoint analytics"),
        "iam:PutRolePolicy": ("AnalyticsConfiguration", "no Pinpoint analytics"),
        "iam:DeleteRolePolicy": ("AnalyticsConfiguration", "no Pinpoint analytics"),
    },
    "AWS::Cognito::UserPoolGroup": {
        "iam:PassRole": ("RoleArn", "no group role"),
        "iam:PutRolePolicy": ("RoleArn", "no group role"),
    },
    "AWS::ApplicationAutoScaling::ScalableTarget": {
        "iam:PassRole": ("RoleARN", "the service-linked role is used"),
        "lambda:PutProvisionedConcurrencyConfig": ("ServiceNamespace=lambda", "an ECS service, not a Lambda alias"),
        "lambda:GetProvisionedConcurrencyConfig": ("ServiceNamespace=lambda", "an ECS service, not a Lambda alias"),
        "lambda:DeleteProvisionedConcurrencyConfig": ("ServiceNamespace=lambda", "an ECS service, not a Lambda alias"),
    },
    "AWS::ECS::Service": {"iam:PassRole": ("Role", "the ECS service-linked role is used")},
    "AWS::ServiceDiscovery::Service": {
        "servicediscovery:GetServiceAttributes": ("ServiceAttributes", "no custom service attributes"),
        "servicediscovery:UpdateServiceAttributes": ("ServiceAttributes", "no custom service attributes"),
        "servicediscovery:DeleteServiceAttributes": ("ServiceAttributes", "no custom service attributes"),
    },
    "AWS::SecretsManager::Secret": {
        "secretsmanager:ReplicateSecretToRegions": ("ReplicaRegions", "no replicas"),
        "secretsmanager:RemoveRegionsFromReplication": ("ReplicaRegions", "no replicas"),
    },
}


def uses(template: dict, rtype: str, prop: str) -> bool:
    """Whether any resource of the type sets the property (`Name=value` compares the value)."""
    name, _, value = prop.partition("=")
    for r in template["Resources"].values():
        if r["Type"] == rtype and name in r.get("Properties", {}):
            if not value or r["Properties"][name] == value:
                return True
    return False


def not_needed(template: dict, rtype: str) -> set[str]:
    return {a for a, (prop, _) in NOT_NEEDED.get(rtype, {}).items() if not uses(template, rtype, prop)}


# Actions a launch needs that belong to no resource type.
BASE_ACTIONS = {
    "cloudformation:CreateStack": "the provisioned product's stack",
    "cloudformation:UpdateStack": "updates of the provisioned product",
    "cloudformation:DeleteStack": "termination",
    "cloudformation:DescribeStacks": "stack status",
    "cloudformation:DescribeStackEvents": "stack status",
    "cloudformation:SetStackPolicy": "Service Catalog sets a stack policy",
    "cloudformation:TagResource": "launch tags (tag options)",
    "cloudformation:UntagResource": "launch tags (tag options)",
    "cloudformation:GetTemplateSummary": "template parameters",
    "cloudformation:ValidateTemplate": "template validation",
    "s3:GetObject": "the product template",
    "ssm:GetParameters": "SSM-typed parameters (platform values, public AMI ids)",
    "iam:PassRole": "roles the product hands to ECS tasks or EC2",
    "lambda:InvokeFunction": "custom resources (the platform's functions)",
    "iam:CreateServiceLinkedRole": "CloudWatch's role for alarm EC2 actions; Application Auto Scaling's role for ECS",
}


@lru_cache(maxsize=1)
def schemas() -> dict[str, dict]:
    import cfnlint

    base = Path(cfnlint.__file__).parent / "data" / "schemas"
    index = json.loads((base / "providers" / "us-east-1.json").read_text())
    return {t: base / "resources" / f"{h}.json" for t, h in index.items()}


def handler_permissions(resource_type: str) -> set[str]:
    path = schemas()[resource_type]
    handlers = json.loads(Path(path).read_text()).get("handlers", {})
    perms: set[str] = set()
    for op in ("create", "read", "update", "delete"):
        perms |= set(handlers.get(op, {}).get("permissions", []))
    return perms


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    return {p.name: load(p) for p in sorted(TEMPLATES_DIR.glob("*.template.yaml"))}


@pytest.fixture(scope="module")
def cat(templates) -> dict:
    return templates[names.CATALOG_TEMPLATE]


def launch_statements(cat: dict, product: catalog.Product, effect: str = "Allow") -> list[dict]:
    """The launch role's statements of one effect (Deny: what it may never do to main's tiers)."""
    documents = [policy["PolicyDocument"] for policy in launch_policies(cat, product)]
    assert all(s["Effect"] in ("Allow", "Deny") for doc in documents for s in doc["Statement"])
    return [s for doc in documents for s in doc["Statement"] if s["Effect"] == effect]


def launch_policies(resources: dict, product: catalog.Product) -> list[dict]:
    """The launch role's inline policies, then its customer managed policies (ManagedPolicyArns:
    each a Ref to an AWS::IAM::ManagedPolicy of the catalog), as {PolicyName, PolicyDocument}."""
    resources = resources.get("Resources", resources)
    role = resources[f"{product.key}LaunchRole"]["Properties"]
    out = list(role["Policies"])
    for arn in role.get("ManagedPolicyArns", []):
        name = arn["Ref"] if isinstance(arn, dict) else arn.strip("<>")
        assert resources[name]["Type"] == "AWS::IAM::ManagedPolicy", arn
        out.append({"PolicyName": name, "PolicyDocument": resources[name]["Properties"]["PolicyDocument"]})
    return out


def product_types(template: dict) -> set[str]:
    return {catalog.CUSTOM_TYPE if catalog.is_custom(r["Type"]) else r["Type"] for r in template["Resources"].values()}


def granted_actions(stmts) -> set[str]:
    return {a for s in stmts for a in s["Action"]}


def resolved(value, platform="lakehub") -> str:
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{([^}]+)\}", lambda m: {**PSEUDO, "PlatformName": platform}.get(m.group(1), f"<{m.group(1)}>"), text)


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_launch_role_can_create_update_and_delete_every_resource_of_its_product(cat, templates, product):
    stmts = launch_statements(cat, product)
    granted = granted_actions(stmts)
    for rtype in sorted(product_types(templates[product.filename])):
        if rtype == catalog.CUSTOM_TYPE:
            assert "lambda:InvokeFunction" in granted
            continue
        needed = handler_permissions(rtype) - not_needed(templates[product.filename], rtype)
        missing = needed - granted
        assert not missing, f"{product.key} launch role cannot handle {rtype}: {sorted(missing)}"


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_launch_role_has_nothing_its_product_does_not_need(cat, templates, product):
    template = templates[product.filename]
    types = product_types(template) - {catalog.CUSTOM_TYPE}
    allowed = set(BASE_ACTIONS)
    for rtype in types:
        allowed |= handler_permissions(rtype) - not_needed(template, rtype)
    extra = granted_actions(launch_statements(cat, product)) - allowed
    assert not extra, f"{product.key} launch role grants actions no resource of {product.filename} needs: {sorted(extra)}"


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_launch_role_has_no_wildcard_actions(cat, product):
    for s in launch_statements(cat, product):
        assert s["Effect"] == "Allow"
        for action in s["Action"]:
            assert "*" not in action, f"{s['Sid']}: {action}"
            assert not action.startswith("iam:*")
        assert "NotAction" not in s and "NotResource" not in s


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_mutating_iam_is_scoped_to_the_products_own_roles(cat, product):
    for s in launch_statements(cat, product):
        iam_actions = [a for a in s["Action"] if a.startswith("iam:")]
        if not iam_actions:
            continue
        assert s["Resource"] != ["*"], s["Sid"]
        for r in s["Resource"]:
            arn = resolved(r)
            assert arn.startswith(f"arn:aws:iam::{ACCOUNT}:"), arn
            if iam_actions == ["iam:CreateServiceLinkedRole"]:
                assert ":role/aws-service-role/" in arn
                assert "iam:AWSServiceName" in s["Condition"]["StringEquals"]
            else:
                assert arn in {resolved(x) for x in product.role_arns + product.instance_profiles}, arn


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_pass_role_only_for_the_roles_the_product_passes(cat, templates, product):
    passing = [s for s in launch_statements(cat, product) if "iam:PassRole" in s["Action"]]
    assert len(passing) == 1
    (s,) = passing
    assert s["Action"] == ["iam:PassRole"]
    assert s["Condition"] == {"StringEquals": {"iam:PassedToService": product.passed_to}}
    patterns = [resolved(r) for r in s["Resource"]]
    # Every role the product template makes, under the name CloudFormation gives it in a
    # Service Catalog launch, is passable; nothing else in the account is.
    stack = f"SC-{ACCOUNT}-pp-abcdefghijklm"
    roles = {k: r for k, r in templates[product.filename]["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles
    for logical, role in roles.items():
        props = role["Properties"]
        name = (
            resolved(props["RoleName"]).replace("${TierName}", "pii").replace("<TierName>", "pii")
            if "RoleName" in props
            else f"{stack}-{logical}-ABCDEF123456"
        )
        path = resolved(props["Path"]).replace("<TierName>", product.tier or "pii") if "Path" in props else "/"
        arn = f"arn:aws:iam::{ACCOUNT}:role{path}{name}"
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), f"{logical} ({arn}) cannot be passed"
    for other in (
        f"arn:aws:iam::{ACCOUNT}:role/Admin",
        f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole",
        f"arn:aws:iam::{ACCOUNT}:role/lakehub-other",
    ):
        assert not any(fnmatch.fnmatchcase(other, p) for p in patterns), other


def test_products_pass_roles_only_to_their_service(templates):
    tier = templates[names.TIER_TEMPLATE]["Resources"]
    for r in tier.values():
        if r["Type"] == "AWS::ECS::TaskDefinition":
            assert {"TaskRoleArn", "ExecutionRoleArn"} & set(r["Properties"])
    passed = [
        k for k, r in tier.items() if r["Type"] in ("AWS::EC2::Instance", "AWS::IAM::InstanceProfile", "AWS::Lambda::Function")
    ]
    assert not passed
    hub = templates[names.HUB_INSTANCE_TEMPLATE]["Resources"]
    assert not [k for k, r in hub.items() if r["Type"] in ("AWS::ECS::TaskDefinition", "AWS::Lambda::Function")]


def test_launch_roles_cannot_change_themselves_or_each_other(cat):
    """No launch role's IAM resources match a launch role: a platform or stack named like the
    catalog's stack must not let a product rewrite its own permissions."""
    launch_arns = [
        f"arn:aws:iam::{ACCOUNT}:role{catalog.LAUNCH_ROLE_PATH}lakehub-prod-CatalogStack-1AB-{p.key}LaunchRole-XYZ"
        for p in catalog.PRODUCTS
    ] + [
        f"arn:aws:iam::{ACCOUNT}:role{catalog.LAUNCH_ROLE_PATH}SC-{ACCOUNT}-pp-x-{p.key}LaunchRole-XYZ" for p in catalog.PRODUCTS
    ]
    for p in catalog.PRODUCTS:
        assert cat["Resources"][f"{p.key}LaunchRole"]["Properties"]["Path"] == catalog.LAUNCH_ROLE_PATH
        for s in launch_statements(cat, p):
            if not any(a.startswith("iam:") for a in s["Action"]):
                continue
            for r in s["Resource"]:
                for arn in launch_arns:
                    assert not fnmatch.fnmatchcase(arn, resolved(r)), (s["Sid"], arn)


def test_launch_roles_trust_only_service_catalog(cat):
    for p in catalog.PRODUCTS:
        (stmt,) = cat["Resources"][f"{p.key}LaunchRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert stmt["Principal"] == {"Service": "servicecatalog.amazonaws.com"}
        assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_each_product_has_its_launch_role_constraint(cat):
    res = cat["Resources"]
    for p in catalog.PRODUCTS:
        c = res[f"{p.key}LaunchConstraint"]
        assert c["Type"] == "AWS::ServiceCatalog::LaunchRoleConstraint"
        assert c["Properties"]["RoleArn"] == {"Fn::GetAtt": [f"{p.key}LaunchRole", "Arn"]}
        assert c["Properties"]["ProductId"] == {"Ref": f"{p.key}Product"}
        assert c["DependsOn"] == [f"{p.key}ProductAssociation"]


def test_products_load_versioned_artifacts_from_the_platforms_copy(cat, templates):
    for p in catalog.PRODUCTS:
        product = cat["Resources"][f"{p.key}Product"]["Properties"]
        (artifact,) = product["ProvisioningArtifactParameters"]
        assert artifact["Type"] == "CLOUD_FORMATION_TEMPLATE"
        assert artifact["Info"]["LoadTemplateFromURL"] == {"Fn::GetAtt": [f"{p.key}ProductTemplate", "TemplateUrl"]}
        template, values = artifact["Name"]["Fn::Sub"]
        assert template == "${Version}-${Digest}"
        assert re.fullmatch(r"v\d+\.\d+\.\d+-[0-9a-f]{10}", values["Version"])
        copy = cat["Resources"][f"{p.key}ProductTemplate"]["Properties"]
        assert copy["SourceKey"] == {"Fn::Sub": "${AssetsKeyPrefix}templates/" + p.filename}
        assert copy["TargetKey"] == {
            "Fn::Sub": "${AssetsKeyPrefix}templates/platforms/${PlatformName}/" + catalog.copy_filename(p)
        }
        assert copy["Version"] == values["Version"], "a new template version renders a new copy"


@pytest.mark.parametrize("platform", ["analytics", "lakehub"])
def test_catalog_products_default_to_the_ssm_names_of_their_own_platform(platform, templates):
    """Minor defect of issue 13: the products' platform values defaulted to the SSM names of the
    platform `lakehub` whatever the catalog's platform. What Service Catalog launches is the
    product template with the catalog's Defaults applied: every platform value's SSM name, and
    PlatformName, must be the catalog's platform."""
    res = catalog_resolver(templates[names.CATALOG_TEMPLATE], PlatformName=platform).resources()
    for p in catalog.PRODUCTS:
        (artifact,) = res[f"{p.key}Product"]["Properties"]["ProvisioningArtifactParameters"]
        url = artifact["Info"]["LoadTemplateFromURL"]
        # The published template itself, or the catalog's copy (the function applies Defaults).
        copy = url.startswith("<") and url.endswith(".TemplateUrl>")
        defaults = res[url[1:].split(".")[0]]["Properties"]["Defaults"] if copy else {}
        product = templates[p.filename]["Parameters"]
        launched = {k: defaults.get(k, spec.get("Default")) for k, spec in product.items()}
        assert launched[names.PLATFORM_NAME] == platform, (
            f"{p.filename}: PlatformName defaults to {launched[names.PLATFORM_NAME]}"
        )
        platform_values = [k for k, spec in product.items() if spec["Type"] == "AWS::SSM::Parameter::Value<String>"]
        assert platform_values, p.filename
        for k in platform_values:
            assert launched[k] == names.ssm_name(platform, k), f"{p.filename} {k}: {launched[k]}"


def test_artifact_version_follows_the_template():
    a = Template()
    a.add_resource(sqs.Queue("Q"))
    b = Template()
    b.add_resource(sqs.Queue("Q", DelaySeconds=5))
    assert catalog.artifact_version(a) == catalog.artifact_version(a)
    assert catalog.artifact_version(a) != catalog.artifact_version(b)


def test_unknown_resource_type_fails_the_build():
    from lakehub.release.build import _children

    settings = default_settings()
    children = _children(settings)
    from lakehub.stacks.hub_instance import build_hub_instance

    hub = build_hub_instance(settings)
    hub.add_resource(sqs.Queue("Surprise"))
    children[names.HUB_INSTANCE_TEMPLATE] = hub
    with pytest.raises(catalog.CatalogError, match="AWS::SQS::Queue"):
        catalog.build_catalog(settings, children)


def catalog_resolver(cat, **params) -> Resolver:
    return Resolver(cat, {"AssetsBucketName": "assets-bucket", **params}, pseudo=PSEUDO)


def test_principals_come_from_the_parameter(cat):
    arns = f"arn:aws:iam::{ACCOUNT}:role/DataScientists,arn:aws:iam::{ACCOUNT}:group/analysts"
    res = catalog_resolver(cat, PrincipalArns=arns).resources()
    assoc = sorted(
        r["Properties"]["PrincipalARN"] for r in res.values() if r["Type"] == "AWS::ServiceCatalog::PortfolioPrincipalAssociation"
    )
    assert assoc == sorted(arns.split(","))
    for r in res.values():
        if r["Type"] == "AWS::ServiceCatalog::PortfolioPrincipalAssociation":
            assert r["Properties"]["PrincipalType"] == "IAM"
            assert r["Properties"]["PortfolioId"] == "<Portfolio>"
    empty = catalog_resolver(cat).resources()
    assert not [r for r in empty.values() if r["Type"] == "AWS::ServiceCatalog::PortfolioPrincipalAssociation"]


def test_each_platform_tier_has_its_own_hub_portfolio_and_principals(cat):
    """Who may launch a hub that reaches a tier's data is the platform team's decision: each
    platform tier's hub product sits alone in its portfolio, shared with that tier's principals."""
    pii, nonpii = f"arn:aws:iam::{ACCOUNT}:role/PiiAnalysts", f"arn:aws:iam::{ACCOUNT}:role/Everyone"
    res = catalog_resolver(cat, PiiHubPrincipalArns=pii, NonpiiHubPrincipalArns=nonpii, PrincipalArns=nonpii).resources()
    shared = {}
    for r in res.values():
        if r["Type"] == "AWS::ServiceCatalog::PortfolioPrincipalAssociation":
            shared.setdefault(r["Properties"]["PortfolioId"], set()).add(r["Properties"]["PrincipalARN"])
    assert shared == {"<HubPiiPortfolio>": {pii}, "<HubNonpiiPortfolio>": {nonpii}, "<Portfolio>": {nonpii}}
    products = {}
    for r in res.values():
        if r["Type"] == "AWS::ServiceCatalog::PortfolioProductAssociation":
            products.setdefault(r["Properties"]["PortfolioId"], set()).add(r["Properties"]["ProductId"])
    assert products == {
        "<HubPiiPortfolio>": {"<HubPiiProduct>"},
        "<HubNonpiiPortfolio>": {"<HubNonpiiProduct>"},
        "<Portfolio>": {"<TierProduct>"},
    }


def test_principal_parameter_accepts_role_and_group_arns_only(cat):
    pattern = re.compile(cat["Parameters"]["PrincipalArns"]["AllowedPattern"])
    assert pattern.match(f"arn:aws:iam::{ACCOUNT}:role/team/DataScientists")
    assert pattern.match(f"arn:aws:iam::{ACCOUNT}:group/analysts")
    assert pattern.match("")
    assert not pattern.match(f"arn:aws:iam::{ACCOUNT}:user/alice")
    assert not pattern.match("*")


def test_cost_tag_options_are_associated_with_the_portfolio(cat):
    res = catalog_resolver(cat, CostCenters="cc-100,cc-200", Teams="risk").resources()
    options = {name: r["Properties"] for name, r in res.items() if r["Type"] == "AWS::ServiceCatalog::TagOption"}
    assert sorted((o["Key"], o["Value"]) for o in options.values()) == [
        ("cost-center", "cc-100"),
        ("cost-center", "cc-200"),
        ("team", "risk"),
    ]
    assocs = [r["Properties"] for r in res.values() if r["Type"] == "AWS::ServiceCatalog::TagOptionAssociation"]
    portfolios = {f"<{k}>" for k, r in res.items() if r["Type"] == "AWS::ServiceCatalog::Portfolio"}
    assert len(portfolios) == 1 + len(default_settings().tiers), "the tier portfolio and one hub portfolio per platform tier"
    assert sorted((a["ResourceId"], a["TagOptionId"]) for a in assocs) == sorted(
        (pf, f"<{n}>") for pf in portfolios for n in options
    )


def test_launches_are_pinned_to_the_portfolios_platform(cat):
    for p in catalog.PRODUCTS:
        rules = catalog_resolver(cat, PlatformName="analytics").resolve(
            cat["Resources"][f"{p.key}PlatformConstraint"]["Properties"]["Rules"]
        )
        doc = json.loads(rules)
        assert doc["SamePlatform"]["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "PlatformName"}, "analytics"]}


def test_main_nests_the_catalog(templates):
    for name in (names.MAIN_TEMPLATE, names.MAIN_EXISTING_VPC_TEMPLATE):
        main = templates[name]
        stack = main["Resources"]["CatalogStack"]
        assert stack["Properties"]["TemplateURL"]["Fn::Sub"].endswith("templates/" + names.CATALOG_TEMPLATE)
        hub_principals = [catalog.hub_principals_param(t.name) for t in default_settings().tiers]
        for name in (names.PRINCIPAL_ARNS, *hub_principals, catalog.SELF_SERVICE_PREFIXES, *catalog.TAG_OPTION_KEYS):
            assert stack["Properties"]["Parameters"][name] == {"Fn::Join": [",", {"Ref": name}]}
            assert main["Parameters"][name]["Type"] == "CommaDelimitedList"
        assert "ClusterStack" in stack["DependsOn"]
        assert main["Outputs"]["HubUserPolicyArn"]["Value"] == {"Fn::GetAtt": ["CatalogStack", "Outputs.HubUserPolicyArn"]}
        assert main["Parameters"][names.PRINCIPAL_ARNS]["Type"] == "CommaDelimitedList"
        assert set(stack["Properties"]["Parameters"]) <= set(templates[names.CATALOG_TEMPLATE]["Parameters"])


def test_launch_and_hub_policies_fit_iam_size_limits(cat, templates):
    """IAM counts policy text without whitespace (docs/AWS_NOTES.md, IAM quotas): 10,240
    characters of inline policy per role, 6,144 per managed policy, 10 managed policies per role
    by default. Measured resolved with the longest platform name and partition allowed."""
    longest = "p" + "a" * (cat["Parameters"][names.PLATFORM_NAME]["MaxLength"] - 1)
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": "ap-southeast-2", "AWS::Partition": "aws-us-gov"}
    res = Resolver(cat, {"AssetsBucketName": "assets-bucket", names.PLATFORM_NAME: longest}, pseudo=pseudo).resources()

    def size(document) -> int:
        return len(json.dumps(document, separators=(",", ":")))

    for p in catalog.PRODUCTS:
        role = res[f"{p.key}LaunchRole"]["Properties"]
        inline = sum(size(x["PolicyDocument"]) for x in role["Policies"])
        assert inline <= 10_240, f"{p.key} launch role: {inline} characters of inline policy"
        managed = launch_policies(res, p)[len(role["Policies"]) :]
        assert len(managed) == len(role.get("ManagedPolicyArns", [])) <= 10, (
            f"{p.key} launch role: {len(managed)} managed policies"
        )
        for m in managed:
            assert size(m["PolicyDocument"]) <= 6_144, f"{m['PolicyName']}: {size(m['PolicyDocument'])} characters"
    assert size(res["HubUserPolicy"]["Properties"]["PolicyDocument"]) <= 6_144


def test_launch_role_split_keeps_every_statement_once(cat):
    """The split (inline + managed) holds exactly the grants one policy would, each once."""
    from lakehub.release.build import _children
    from lakehub.stacks.hub_instance import build_hub_instance

    children = _children(default_settings())
    children[names.HUB_INSTANCE_TEMPLATE] = build_hub_instance(default_settings())
    for p in catalog.PRODUCTS:
        sids = [s["Sid"] for policy in launch_policies(cat, p) for s in policy["PolicyDocument"]["Statement"]]
        expected = [g.sid for g in catalog.launch_grants(p, children[p.filename])]
        assert sorted(sids) == sorted(expected + (["KeepOffPlatformTiers"] if p.denied else []))
        assert len(sids) == len(set(sids))


def test_hub_users_may_only_port_forward_stop_and_start_on_demand_hubs(cat):
    from lakehub.stacks.hub_instance import PRODUCT_TAG_VALUE

    doc = catalog_resolver(cat, PlatformName="analytics").resources()["HubUserPolicy"]["Properties"]["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    assert actions == {
        "ssm:StartSession",
        "ssm:TerminateSession",
        "ssm:ResumeSession",
        "ec2:StopInstances",
        "ec2:StartInstances",
        "ec2:DescribeInstances",
    }
    start = by_sid["PortForwardToOnDemandHubs"]
    assert start["Condition"]["BoolIfExists"] == {"ssm:SessionDocumentAccessCheck": "true"}, "no shell sessions"
    assert start["Condition"]["StringEquals"] == {
        "ssm:resourceTag/lakehub:platform": "analytics",
        "ssm:resourceTag/lakehub:product": PRODUCT_TAG_VALUE,
    }
    assert by_sid["PortForwardingDocument"]["Resource"] == ["arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession"]
    # ${aws:userid} stays for IAM, which fills in the caller's id: only their own sessions.
    assert by_sid["OwnSessions"]["Resource"] == [f"arn:aws:ssm:us-east-1:{ACCOUNT}:session/${{aws:userid}}-*"]
    stop = by_sid["StopAndStartOnDemandHubs"]
    assert stop["Condition"]["StringEquals"] == {
        "aws:ResourceTag/lakehub:platform": "analytics",
        "aws:ResourceTag/lakehub:product": PRODUCT_TAG_VALUE,
    }
    for s in doc["Statement"]:
        if s["Resource"] == ["*"]:
            assert s["Action"] == ["ec2:DescribeInstances"]


def tier_prefix_rule(cat, listed: str) -> dict:
    res = catalog_resolver(cat, SelfServiceDataPrefixes=listed).resources()
    return json.loads(res["TierDataPrefixesConstraint"]["Properties"]["Rules"])


def each_member_in(members: list[str], allowed: list[str]) -> bool:
    """Fn::EachMemberIn as Service Catalog evaluates a template constraint."""
    return all(m in allowed for m in members)


def test_tier_launches_may_claim_only_listed_prefixes(cat):
    """A tier's role reaches the prefixes its launcher names: the catalog refuses any prefix the
    platform team did not list, so no team can launch a tier onto another tier's data."""
    rule = tier_prefix_rule(cat, "claims/,marketing/")
    (assertion,) = rule["ListedDataPrefixesOnly"]["Assertions"]
    ref, allowed = assertion["Assert"]["Fn::EachMemberIn"]
    assert ref == {"Ref": names.TIER_DATA_PREFIXES}
    assert allowed == ["claims/", "marketing/"]
    assert each_member_in(["claims/"], allowed)
    assert not each_member_in(["claims/", "pii/"], allowed)
    assert not each_member_in(["claims/sub/"], allowed), "only the listed prefixes themselves"
    # Nothing listed: every launch is refused.
    (empty,) = tier_prefix_rule(cat, "")["ListedDataPrefixesOnly"]["Assertions"]
    assert not each_member_in(["pii/"], empty["Assert"]["Fn::EachMemberIn"][1])
    constraint = cat["Resources"]["TierDataPrefixesConstraint"]
    assert constraint["Type"] == "AWS::ServiceCatalog::LaunchTemplateConstraint"
    assert constraint["Properties"]["ProductId"] == {"Ref": "TierProduct"}
    # Listed prefixes are literal: no wildcard can sneak in.
    pattern = re.compile(cat["Parameters"]["SelfServiceDataPrefixes"]["AllowedPattern"])
    assert pattern.match("claims/") and not pattern.match("*/") and not pattern.match("claims*/")


def _ingress_rules(node):
    """Every inbound rule in a template fragment, in every branch of every Fn::If."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "SecurityGroupIngress":
                yield from (value if isinstance(value, list) else [value])
            yield from _ingress_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from _ingress_rules(item)


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_products_open_no_port_to_the_internet(templates, product):
    template = templates[product.filename]
    rules = list(_ingress_rules(template["Resources"]))
    rules += [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    for rule in rules:
        text = json.dumps(rule)
        assert "0.0.0.0/0" not in text and "::/0" not in text, rule


def allowed(cat: dict, product: catalog.Product, action: str, arn: str, platform: str = "lakehub") -> bool:
    """IAM's decision on one request by a launch role (identity policy alone, conditions aside:
    an explicit Deny wins, else any Allow whose action and resource patterns match)."""

    def matches(s: dict) -> bool:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatch.fnmatchcase(arn, resolved(r, platform)) for r in resources
        )

    if any(matches(s) for s in launch_statements(cat, product, "Deny")):
        return False
    return any(matches(s) for s in launch_statements(cat, product))


TIERS = [t.name for t in default_settings().tiers]
ROLE = f"arn:aws:iam::{ACCOUNT}:role/"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:"


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_launch_roles_can_neither_rewrite_main_tiers_roles_nor_read_platform_secrets(cat, product):
    """Issue 14 (high): the launch roles could PutRolePolicy/UpdateAssumeRolePolicy on any
    <platform>-*-tier role (main's pii tier role among them) and read every secret under
    <platform>/. Now: none of main's tier roles, none of the platform team's sign-in secrets,
    and a tier's hub product only its own tier's hub roles and secrets."""
    for tier in TIERS:
        for action in ("iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy", "iam:PassRole"):
            assert not allowed(cat, product, action, f"{ROLE}lakehub-{tier}-tier"), (action, tier)
        for leaf in ("oidc_client_secret", "ldap_bind_password", "cookie-secret", "cognito-client-secret", "hub-secret"):
            for action in ("secretsmanager:GetSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:DeleteSecret"):
                assert not allowed(cat, product, action, f"{SECRET}lakehub/{tier}/{leaf}-AbCdEf"), (action, tier, leaf)
        hub_role = f"{ROLE}lakehub/lakehub/{tier}/SC-{ACCOUNT}-pp-abcdefghijklm-InstanceRole-ABCDEF123456"
        hub_secret = f"{SECRET}lakehub/{tier}/hubs/SC-{ACCOUNT}-pp-abcdefghijklm/cookie-secret-AbCdEf"
        own = product.tier == tier
        assert allowed(cat, product, "iam:PutRolePolicy", hub_role) is own, (product.key, tier)
        assert allowed(cat, product, "secretsmanager:CreateSecret", hub_secret) is own, (product.key, tier)
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"):
        assert not allowed(cat, product, action, f"{SECRET}payroll/db-password-AbCdEf")
    if product.key == "Tier":
        # What the tier product does make stays possible: a self-service tier's roles and secrets.
        assert allowed(cat, product, "iam:PutRolePolicy", f"{ROLE}lakehub-claims-tier")
        assert allowed(cat, product, "secretsmanager:CreateSecret", f"{SECRET}lakehub/claims/hub-secret-AbCdEf")
        # Issue 19: a tier keeps one secret (hub-secret); an upgrade deletes the two it had.
        for leaf in ("cookie-secret", "cognito-client-secret"):
            assert allowed(cat, product, "secretsmanager:DeleteSecret", f"{SECRET}lakehub/claims/{leaf}-AbCdEf")


def test_a_products_version_name_carries_the_digest_of_its_platform_copy(cat):
    """Pinned sign-in values are deploy-time values: the version name must change with them."""
    products = {k: r for k, r in cat["Resources"].items() if r["Type"] == "AWS::ServiceCatalog::CloudFormationProduct"}
    assert products
    for logical_id, product in products.items():
        name = product["Properties"]["ProvisioningArtifactParameters"][0]["Name"]
        copy = logical_id.replace("Product", "ProductTemplate")
        assert name["Fn::Sub"][1]["Digest"] == {"Fn::GetAtt": [copy, "Digest"]}, logical_id


def test_the_tier_launch_role_may_run_the_secret_lookup_of_its_platform_only(cat):
    """A tier in oidc/ldap mode looks its sign-in secret's full ARN up with the platform's
    Custom::SecretArn (ECS takes full ARNs): its launch role must invoke that function, and
    no other platform's."""
    [tier] = [p for p in catalog.PRODUCTS if p.filename == "tier.template.yaml"]
    fn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:"
    assert allowed(cat, tier, "lambda:InvokeFunction", fn + "lakehub-secret-arn")
    assert not allowed(cat, tier, "lambda:InvokeFunction", fn + "other-secret-arn")
