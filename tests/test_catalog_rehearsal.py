"""Launch rehearsal: each Service Catalog product provisioned the way Service Catalog does it,
into the AWS emulator (moto in server mode), then its outputs checked against what was made.

Service Catalog copies the product's template from the artifact URL (the assets bucket), names
the stack `SC-<account>-pp-<id>`, passes only the parameters the user filled in (everything
else keeps its default: the platform values come from SSM) and runs CloudFormation with the
product's launch role. The rehearsal does the same against a platform made in the emulator:
a VPC with two private subnets, an HTTPS load balancer and listener, an ECS cluster, a hosted
zone, a Cognito user pool, the hub image repository, buckets, a KMS key and the platform's
two functions, all published under /lakehub/<platform>/ in SSM with the names lakehub uses.

Where the emulator differs from AWS, the rehearsal says so instead of papering over it:
- moto parses a `!Base64` tag over a mapping wrongly: templates are sent as JSON (the same
  template, another serialisation);
- moto resolves an SSM-typed parameter's Default even when a value is given, and lacks the
  public AMI parameters the hub template names: their three Defaults point at AMI parameters
  moto has (the only edit);
- moto's CloudFormation does not model some resource types (it skips them and says so);
  the rehearsal asserts that the skipped ones are exactly those, so any other failure shows;
- moto cannot run Lambda functions (no Docker engine): it registers the tier's notebook-seeding
  custom resource, tries to invoke the platform's function and then waits for an answer. The
  rehearsal sends the same Create request to the real function code (lambdas/seed_notebooks)
  in this process, against the emulator's S3, and forwards the function's own answer to the
  emulator's response endpoint, which completes the stack.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import ssl
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from function_loader import load_function

from lakehub.stacks import catalog, names
from lakehub.stacks import hub_instance as hi
from lakehub.stacks import tier as tier_mod
from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import Resolver, load
from lakehub.stacks.parameters import default_image_tag
from lakehub.local.emulator_server import image_manifest
from lakehub.local.idp.ldap import make_ca_and_cert
from lakehub.settings import default_settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"  # no other test uses it: the shared emulator stays tidy
ACCOUNT = "123456789012"  # moto's default account
# Not the build's platform name (lakehub): the catalog's copy of each product template must name
# the catalog's own platform in its SSM defaults (issue 13, minor defect).
PLATFORM = "analytics"
assert PLATFORM != default_settings().platform_name
DOMAIN = "rehearsal.example.com"
ASSETS_BUCKET = "lakehub-rehearsal-assets"
NOTEBOOK_BUCKET = "lakehub-rehearsal-notebooks"
LAKE_BUCKET = "lakehub-rehearsal-lake"

# Public AMI parameters moto has, standing in for the ones the hub template names.
EMULATOR_AMI_PARAMETERS = {
    hi.AMI_ARM64: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64",
    hi.AMI_X86: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64",
    hi.AMI_GPU_X86: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64",
}
# Resource types moto's CloudFormation skips (it logs "No Moto CloudFormation support for ...").
EMULATOR_SKIPS = {
    "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Alarm",
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolGroup",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::IAM::RolePolicy",  # the on-demand hub's InstanceAssumesUserRole (lakehub.local.unmodelled lists it)
    "AWS::EC2::SecurityGroupEgress",  # NFS to the homes (lakehub.local.unmodelled lists it)
    "AWS::ServiceDiscovery::PrivateDnsNamespace",  # a per-user hub's name (lakehub.local.unmodelled lists it)
    "AWS::ServiceDiscovery::Service",
}


# --------------------------------------------------------------------------- the platform
@pytest.fixture(scope="module")
def aws(moto_server):
    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=moto_server.endpoint_url,
            region_name=REGION,
            aws_access_key_id=moto_server.client_env()["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=moto_server.client_env()["AWS_SECRET_ACCESS_KEY"],
        )

    client.endpoint_url = moto_server.endpoint_url
    client.env = moto_server.client_env()
    return client


def _stub_function(aws, name: str) -> str:
    """A platform function as the emulator knows it (moto stores it; it cannot run it)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    role = aws("iam").create_role(RoleName=f"{name}-rehearsal", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    raise RuntimeError('the emulator does not run functions')\n")
    return aws("lambda").create_function(
        FunctionName=name, Runtime="python3.13", Role=role, Handler="index.handler", Code={"ZipFile": buf.getvalue()}
    )["FunctionArn"]


@pytest.fixture(scope="module")
def platform(aws) -> dict[str, str]:
    """What the platform stacks would have made, published in SSM as the cluster stack does."""
    ec2, elb = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for cidr, az in (("10.20.0.0/20", "a"), ("10.20.16.0/20", "b"), ("10.20.32.0/20", "a"), ("10.20.48.0/20", "b"))
    ]
    alb_sg = ec2.create_security_group(GroupName=f"{PLATFORM}-alb", Description="load balancer", VpcId=vpc)["GroupId"]
    task_sg = ec2.create_security_group(GroupName=f"{PLATFORM}-hub-tasks", Description="hub tasks", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=task_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": names.HUB_PORT, "ToPort": names.HUB_PORT, "UserIdGroupPairs": [{"GroupId": alb_sg}]}
        ],
    )
    lb = elb.create_load_balancer(Name=f"{PLATFORM}-alb", Subnets=subnets[2:], SecurityGroups=[alb_sg])["LoadBalancers"][0]
    cert = aws("acm").request_certificate(DomainName=f"*.{DOMAIN}")["CertificateArn"]
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": cert}],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    aws("ecs").create_cluster(clusterName=PLATFORM)
    homes_sg = ec2.create_security_group(GroupName=f"{PLATFORM}-homes", Description="homes", VpcId=vpc)["GroupId"]
    homes_fs = aws("efs").create_file_system(CreationToken=f"{PLATFORM}-homes", Encrypted=True)["FileSystemId"]
    zone = aws("route53").create_hosted_zone(Name=DOMAIN, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"].split("/")[-1]
    pool = aws("cognito-idp").create_user_pool(PoolName=f"{PLATFORM}-users")["UserPool"]["Id"]
    key = aws("kms").create_key(Description="data lake (SSE-KMS)")["KeyMetadata"]["Arn"]
    repo = aws("ecr").create_repository(repositoryName=f"{PLATFORM}/hub", imageTagMutability="IMMUTABLE")["repository"][
        "repositoryUri"
    ]
    # The release's image, as the pipeline's first build pushes it (the products' default ImageTag).
    layer = "sha256:" + hashlib.sha256(b"rehearsal hub image").hexdigest()
    image_digest = aws("ecr").put_image(
        repositoryName=f"{PLATFORM}/hub",
        imageManifest=image_manifest(layer, 19, config_digest=layer),
        imageTag=default_image_tag(),
    )["image"]["imageId"]["imageDigest"]
    aws("logs").create_log_group(logGroupName=f"/lakehub/{PLATFORM}/tasks")
    s3 = aws("s3")
    for bucket in (ASSETS_BUCKET, NOTEBOOK_BUCKET, LAKE_BUCKET):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    values = {
        names.VPC_ID: vpc,
        names.VPC_CIDR: "10.20.0.0/16",
        names.PRIVATE_SUBNET_1_ID: subnets[0],
        names.PRIVATE_SUBNET_2_ID: subnets[1],
        names.NOTEBOOK_BUCKET_NAME: NOTEBOOK_BUCKET,
        names.DATA_BUCKET_NAME: LAKE_BUCKET,
        names.DATA_KMS_KEY_ARN: key,
        names.SEED_FUNCTION_ARN: _stub_function(aws, f"{PLATFORM}-seed-notebooks"),
        names.IMAGE_REPOSITORY_URI: repo,
        names.CLUSTER_NAME: PLATFORM,
        names.HTTPS_LISTENER_ARN: listener,
        names.LOAD_BALANCER_DNS_NAME: lb["DNSName"],
        names.LOAD_BALANCER_HOSTED_ZONE_ID: lb["CanonicalHostedZoneId"],
        names.LOAD_BALANCER_FULL_NAME: lb["LoadBalancerArn"].split(":loadbalancer/")[1],
        names.TASK_SECURITY_GROUP_ID: task_sg,
        names.LISTENER_PRIORITY_FUNCTION_ARN: _stub_function(aws, f"{PLATFORM}-listener-priority"),
        names.SECRET_ARN_FUNCTION_ARN: _stub_function(aws, f"{PLATFORM}-secret-arn"),
        names.IMAGE_DIGEST_FUNCTION_ARN: _stub_function(aws, f"{PLATFORM}-image-digest"),
        names.LOG_GROUP_NAME: f"/lakehub/{PLATFORM}/tasks",
        names.USER_POOL_ID: pool,
        names.USER_POOL_DOMAIN_URL: f"https://{PLATFORM}-rehearsal.auth.{REGION}.amazoncognito.com",
        names.AUTH_MODE: "cognito",
        names.DOMAIN_NAME: DOMAIN,
        names.HOSTED_ZONE_ID: zone,
        names.HOMES_FILE_SYSTEM_ID: homes_fs,
        names.HOMES_SECURITY_GROUP_ID: homes_sg,
        names.ALARM_TOPIC_ARN: aws("sns").create_topic(Name=f"{PLATFORM}-alarms")["TopicArn"],
    }
    assert set(values) == set(names.PLATFORM_SSM_VALUES), "publish every platform value"
    for name, value in values.items():
        aws("ssm").put_parameter(Name=names.ssm_name(PLATFORM, name), Value=value, Type="String", Overwrite=True)
    values["AlbSecurityGroupId"] = alb_sg
    values["ImageDigest"] = image_digest
    return values


# --------------------------------------------------------------------------- Service Catalog
def catalog_resolver(**params) -> Resolver:
    return Resolver(
        load(TEMPLATES_DIR / names.CATALOG_TEMPLATE),
        {names.ASSETS_BUCKET_NAME: ASSETS_BUCKET, names.PLATFORM_NAME: PLATFORM, **params},
        pseudo={"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"},
    )


@pytest.fixture(scope="module")
def published(aws, platform) -> dict[str, str]:
    """`lakehub publish`: every template at its key in the assets bucket; then the catalog's
    Custom::ProductTemplate resources, run by the real lambdas/product_template code in this
    process against the emulator, write the platform's copy of each product template. Returns
    the artifact URL of each product, as the catalog's provisioning artifacts give it."""
    s3 = aws("s3")
    for path in sorted(TEMPLATES_DIR.glob("*.template.yaml")):
        key = catalog_resolver().resolve({"Fn::Sub": "${AssetsKeyPrefix}templates/" + path.name})
        s3.put_object(Bucket=ASSETS_BUCKET, Key=key, Body=path.read_bytes())
    res = catalog_resolver().resources()
    urls = {}
    pytest.importorskip("crhelper")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**aws.env, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}.items():
            mp.setenv(key, value)
        module = load_function("product_template", mp)
        for p in catalog.PRODUCTS:
            (artifact,) = res[f"{p.key}Product"]["Properties"]["ProvisioningArtifactParameters"]
            assert artifact["Info"]["LoadTemplateFromURL"] == f"<{p.key}ProductTemplate.TemplateUrl>"
            module._write({"ResourceProperties": res[f"{p.key}ProductTemplate"]["Properties"]})
            urls[p.key] = module.helper.Data["TemplateUrl"]
    return urls


LISTED_PREFIXES = "claims/,claims-archive/"  # the platform team's SelfServiceDataPrefixes


def constraints_allow(product: catalog.Product, template: dict, params: dict[str, str]) -> list[str]:
    """Service Catalog's template constraints on a launch, evaluated as it does before it
    provisions: returns the AssertDescription of every failed assertion."""
    res = catalog_resolver(SelfServiceDataPrefixes=LISTED_PREFIXES).resources()
    values = {k: p.get("Default") for k, p in template["Parameters"].items()} | params

    def ev(node):
        if isinstance(node, dict) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                spec = template["Parameters"][arg]
                v = values[arg]
                return v.split(",") if spec["Type"] == "CommaDelimitedList" else v
            if fn == "Fn::Equals":
                return ev(arg[0]) == ev(arg[1])
            if fn == "Fn::EachMemberIn":
                return all(m in ev(arg[1]) for m in ev(arg[0]))
            if fn == "Fn::Not":
                return not ev(arg[0])
            if fn == "Fn::Contains":
                return ev(arg[1]) in ev(arg[0])
            raise AssertionError(f"rule function {fn} not evaluated here")
        return node

    failed = []
    for r in res.values():
        if (
            r["Type"] == "AWS::ServiceCatalog::LaunchTemplateConstraint"
            and r["Properties"]["ProductId"] == f"<{product.key}Product>"
        ):
            for rule in json.loads(r["Properties"]["Rules"]).values():
                for a in rule["Assertions"]:
                    if not ev(a["Assert"]):
                        failed.append(a["AssertDescription"])
    return failed


def parameters_refused(template: dict, params: dict[str, str]) -> list[str]:
    """CloudFormation's own checks of launch parameters, made before it creates anything (the
    emulator makes none of them): a parameter the template does not declare, a value outside
    AllowedValues, a String that does not match AllowedPattern. Returns one reason per refusal."""
    refused = []
    for name, value in params.items():
        spec = template["Parameters"].get(name)
        if spec is None:
            refused.append(f"Parameters: [{name}] do not exist in the template")
            continue
        values = value.split(",") if spec["Type"] == "CommaDelimitedList" else [value]
        if "AllowedValues" in spec and any(v not in [str(a) for a in spec["AllowedValues"]] for v in values):
            refused.append(f"Parameter '{name}' must be one of AllowedValues")
        if "AllowedPattern" in spec and any(not re.fullmatch(spec["AllowedPattern"], v) for v in values):
            refused.append(f"Parameter '{name}' must match pattern {spec['AllowedPattern']}")
    return refused


def launch_role(aws, product: catalog.Product) -> str:
    """The product's launch role, made in the emulator from the catalog's own definition."""
    props = catalog_resolver().resources()[f"{product.key}LaunchRole"]["Properties"]
    iam = aws("iam")
    name = f"rehearsal-{product.key}LaunchRole"
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=name, Path=props["Path"], AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
        )["Role"]["Arn"]
    for policy in props["Policies"]:
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"]))
    # Its customer managed policies (catalog.launch_policy_split), attached as the catalog does.
    raw = load(TEMPLATES_DIR / names.CATALOG_TEMPLATE)["Resources"]
    for ref in raw[f"{product.key}LaunchRole"]["Properties"].get("ManagedPolicyArns", []):
        document = catalog_resolver().resources()[ref["Ref"]]["Properties"]["PolicyDocument"]
        policy_name = f"rehearsal-{ref['Ref']}"
        attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}
        if policy_name not in attached:
            policy_arn = iam.create_policy(PolicyName=policy_name, Path=props["Path"], PolicyDocument=json.dumps(document))[
                "Policy"
            ]["Arn"]
            iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    return arn


def product_template(aws, url: str) -> dict:
    """The template Service Catalog copies from the artifact URL."""
    parsed = urllib.parse.urlsplit(url)
    bucket = parsed.hostname.split(".s3.")[0]
    body = aws("s3").get_object(Bucket=bucket, Key=parsed.path.lstrip("/"))["Body"].read()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "product.template.yaml"
        path.write_bytes(body)
        template = load(path)  # YAML to a plain dict; sent as JSON (see the module docstring)
    for name, emulated in EMULATOR_AMI_PARAMETERS.items():
        if name in template["Parameters"]:
            template["Parameters"][name]["Default"] = emulated
    return template


def provision(aws, product: catalog.Product, template: dict, params: dict[str, str], tags: dict[str, str] | None = None) -> dict:
    """CreateStack as Service Catalog calls it, once its template constraints allow the launch;
    returns the finished stack."""
    refused = parameters_refused(template, params) + constraints_allow(product, template, params)
    assert not refused, refused
    cfn = aws("cloudformation")
    stack_name = f"SC-{ACCOUNT}-pp-{uuid.uuid4().hex[:13]}"
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        RoleARN=launch_role(aws, product),
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )
    deadline = time.monotonic() + 20
    while True:
        stack = describe(aws, stack_name)
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        if any(catalog.is_custom(r["ResourceType"]) for r in stack["Made"].values()):
            break  # waiting for the answer of a function the emulator cannot run
        time.sleep(0.5)
    return stack


def describe(aws, stack_name: str) -> dict:
    cfn = aws("cloudformation")
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    stack["Made"] = {
        r["LogicalResourceId"]: r
        for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        if r["LogicalResourceId"]
    }
    return stack


def policy_document(raw) -> dict:
    """An inline policy as the emulator returns it (moto keeps a CloudFormation-made policy as
    the text of a Python mapping)."""
    if isinstance(raw, dict):
        return raw
    text = urllib.parse.unquote(raw)
    try:
        return json.loads(text)
    except ValueError:
        import ast

        return ast.literal_eval(text)


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def resolved_resources(aws, template: dict, params: dict[str, str]) -> dict[str, dict]:
    """The resources CloudFormation would make for these launch parameters (conditions applied),
    with the SSM-typed parameters read from the emulator as CloudFormation reads them."""
    values = dict(params)
    for name, spec in template["Parameters"].items():
        if spec["Type"].startswith("AWS::SSM::Parameter::Value") and name not in values:
            values[name] = aws("ssm").get_parameter(Name=spec["Default"])["Parameter"]["Value"]
    return Resolver(
        template, values, pseudo={"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}
    ).resources()


def assert_only_emulator_gaps_skipped(stack: dict, expected: dict[str, dict]) -> set[str]:
    skipped = {k: r["Type"] for k, r in expected.items() if k not in stack["Made"]}
    unexpected = {k: t for k, t in skipped.items() if t not in EMULATOR_SKIPS}
    assert not unexpected, f"resources the emulator should have made are missing: {unexpected}"
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in stack["Made"].values())
    return set(skipped)


# --------------------------------------------------------------------------- on-demand hub
PRODUCT = {p.key: p for p in catalog.PRODUCTS}
HUB_PII, HUB_NONPII, TIER = PRODUCT["HubPii"], PRODUCT["HubNonpii"], PRODUCT["Tier"]


@pytest.fixture(scope="module")
def hub_templates(aws, published):
    return {key: product_template(aws, published[key]) for key in ("HubPii", "HubNonpii")}


# What a launcher set before issue 14 to reach PII with their own identity provider: the issuer,
# client and directory they run, and a secret of the platform's to be sent there.
ATTACKER_SIGN_IN = {
    "OidcIssuer": "https://idp.attacker.example",
    "OAuthClientId": "attacker-client",
    "LdapUrl": "ldaps://ldap.attacker.example",
    "LdapBindDn": "cn=attacker,dc=attacker,dc=example",
    "LdapUserSearchBase": "dc=attacker,dc=example",
    "LdapGroupSearchBase": "dc=attacker,dc=example",
    "OAuthClientSecretName": f"{PLATFORM}/pii/cookie-secret",
    "LdapBindPasswordSecretName": f"{PLATFORM}/pii/cookie-secret",
}


@pytest.mark.parametrize("key", [p.key for p in catalog.PRODUCTS])
def test_a_launch_can_set_neither_the_identity_provider_nor_a_secret_name(aws, published, key):
    """Issue 14 (critical, high): every sign-in setting of a product's copy allows only the
    platform's value (here the platform's: cognito, no issuer), and no secret name is a
    parameter: each attacker's value is refused before anything is made."""
    copy = product_template(aws, published[key])
    for name, value in ATTACKER_SIGN_IN.items():
        refused = parameters_refused(copy, {name: value})
        assert refused, f"{key}: a launch could set {name}={value}"
    for name in tier_mod.SIGN_IN_PARAMS:
        assert copy["Parameters"][name]["AllowedValues"] == [""] and copy["Parameters"][name]["Default"] == ""
    # (SecretArnFunctionArn is a platform value, the SSM name of the platform's lookup function; the
    # launch role may invoke only the platform's functions and read only its SSM values.)
    assert not [n for n in copy["Parameters"] if ("Secret" in n or "Password" in n) and n != names.SECRET_ARN_FUNCTION_ARN]


def test_a_tier_bound_hub_product_cannot_launch_for_another_tier(aws, published, hub_templates):
    """Issue 14 (critical): the hub product's TierName was a free choice (default pii). Each
    platform tier's product launches for that tier only (the copy pins it; a template constraint
    says so too); a launch for the other tier is refused twice."""
    for product, own, other in ((HUB_PII, "pii", "nonpii"), (HUB_NONPII, "nonpii", "pii")):
        copy = hub_templates[product.key]
        assert copy["Parameters"][names.TIER_NAME]["AllowedValues"] == [own]
        assert parameters_refused(copy, {names.TIER_NAME: other})
        assert constraints_allow(product, copy, {names.TIER_NAME: other})
        assert not parameters_refused(copy, {names.TIER_NAME: own}) and not constraints_allow(
            product, copy, {names.TIER_NAME: own}
        )


def test_a_self_service_tier_cannot_take_a_platform_tiers_name(aws, published):
    copy = product_template(aws, published["Tier"])
    for taken in ("pii", "nonpii"):
        refused = constraints_allow(TIER, copy, {names.TIER_NAME: taken, names.TIER_DATA_PREFIXES: "claims/"})
        assert any("platform's own tiers" in r for r in refused), refused
    assert not constraints_allow(TIER, copy, {names.TIER_NAME: "claims", names.TIER_DATA_PREFIXES: "claims/"})


def test_artifact_urls_serve_the_platforms_copy_of_the_committed_templates(aws, published):
    for p in catalog.PRODUCTS:
        assert urllib.parse.urlsplit(published[p.key]).hostname == f"{ASSETS_BUCKET}.s3.{REGION}.amazonaws.com"
        assert f"/templates/platforms/{PLATFORM}/" in published[p.key]
        copy = product_template(aws, published[p.key])
        assert copy["Description"] == load(TEMPLATES_DIR / p.filename)["Description"]
        assert copy["Parameters"][names.PLATFORM_NAME]["Default"] == PLATFORM
        for name in (names.VPC_ID, names.AUTH_MODE, names.IMAGE_REPOSITORY_URI):
            assert copy["Parameters"][name]["Default"] == names.ssm_name(PLATFORM, name)


def test_hub_launch_over_ssm_makes_a_closed_tagged_instance(aws, platform, hub_templates, tmp_path):
    hub_template = hub_templates["HubNonpii"]
    params = {
        "Owner": "alice@example.com",
        "TierName": "nonpii",
        "InstanceType": "r7g.large",
        "IdleMinutes": "30",
        "IdleCpuPercent": "4",
        "LocalPort": "8890",
    }
    stack = provision(aws, HUB_NONPII, hub_template, params, tags={"team": "risk", "cost-center": "cc-100"})
    image, stack = answer_image_digest(aws, hub_template, stack, params, tmp_path)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    skipped = assert_only_emulator_gaps_skipped(stack, resolved_resources(aws, hub_template, params))
    assert "Instance" in stack["Made"] and "InstanceRole" in stack["Made"]
    assert skipped == {
        "CookieSecret",
        "CognitoClientSecret",
        "UserPoolClient",
        "IdleStopAlarm",
        "InstanceAssumesUserRole",
        "InstanceToHomes",
    }
    out = outputs(stack)

    # The instance: type, image for its architecture, subnet, security group, tags, IMDSv2.
    ec2 = aws("ec2")
    (instance,) = ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"]
    assert instance["InstanceType"] == "r7g.large"
    arm64_ami = aws("ssm").get_parameter(Name=EMULATOR_AMI_PARAMETERS[hi.AMI_ARM64])["Parameter"]["Value"]
    assert instance["ImageId"] == arm64_ami
    assert instance["SubnetId"] == platform[names.PRIVATE_SUBNET_1_ID]
    assert "PublicIpAddress" not in instance
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags[names.TAG_OWNER] == "alice@example.com"
    assert tags[names.TAG_TIER] == "nonpii"
    assert tags[names.TAG_PLATFORM] == PLATFORM
    # moto's CloudFormation passes neither SecurityGroupIds nor MetadataOptions to the instance
    # it runs (test_hub_instance.py checks both in the template); the group the stack made:
    sg = ec2.describe_security_groups(GroupIds=[stack["Made"]["InstanceSecurityGroup"]["PhysicalResourceId"]])["SecurityGroups"][
        0
    ]
    assert sg["IpPermissions"] == [], "no inbound rule"
    assert sg["VpcId"] == platform[names.VPC_ID]
    # The root volume: encrypted gp3.
    (mapping,) = instance["BlockDeviceMappings"]
    volume = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"][0]
    assert volume["Encrypted"] is True
    assert volume["VolumeType"] == "gp3"
    assert volume["Size"] == 64

    # The instance role (the hub's: image, logs, secrets) holds no data; the user role (what the
    # hub serves users' servers) holds the tier's prefixes in the real buckets, nothing else.
    role_arn = out[hi.INSTANCE_ROLE_ARN]
    assert f":role/lakehub/{PLATFORM}/nonpii/" in role_arn
    profile_arn = instance["IamInstanceProfile"]["Arn"]
    profile = aws("iam").get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[1])["InstanceProfile"]
    assert [r["Arn"] for r in profile["Roles"]] == [role_arn]

    def inline(arn):
        name = arn.rsplit("/", 1)[1]
        (policy,) = aws("iam").list_role_policies(RoleName=name)["PolicyNames"]
        return policy_document(aws("iam").get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])

    assert not [s for s in inline(role_arn)["Statement"] if s and any(a.startswith(("s3:", "kms:")) for a in s["Action"])]
    user_role_arn = out["UserRoleArn"]
    assert f":role/lakehub/{PLATFORM}/nonpii/" in user_role_arn
    doc = inline(user_role_arn)
    objects = sorted(r for s in doc["Statement"] if s and "s3:GetObject" in s["Action"] for r in s["Resource"])
    # the tier's shared folder and the session's own folder (the policy variable reaches IAM as written)
    assert objects == sorted(
        [
            f"arn:aws:s3:::{NOTEBOOK_BUCKET}/tiers/nonpii/shared/*",
            f"arn:aws:s3:::{LAKE_BUCKET}/nonpii/*",
            f"arn:aws:s3:::{NOTEBOOK_BUCKET}/tiers/nonpii/users/${{aws:PrincipalTag/lakehub-user}}/*",
        ]
    )
    kms = [s for s in doc["Statement"] if s and "kms:Decrypt" in s["Action"]]
    assert kms and kms[0]["Resource"] == [platform[names.DATA_KMS_KEY_ARN]]
    assert not [s for s in doc["Statement"] if s and any(a.startswith("secretsmanager:") for a in s["Action"])]

    # The hub: the platform's image, run with the tier's configuration.
    user_data = base64.b64decode(
        ec2.describe_instance_attribute(InstanceId=out["InstanceId"], Attribute="userData")["UserData"]["Value"]
    ).decode()
    # The ImageTag's digest, resolved by the real lambdas/image_digest code. (moto makes a stack's
    # resources in one pass, before a custom resource answers: its GetAtt is empty there; the
    # local platform's emulator runs functions synchronously and so passes the digest on.)
    assert image["Data"]["ImageUri"] == f"{platform[names.IMAGE_REPOSITORY_URI]}@{platform['ImageDigest']}"
    assert re.search(r"^IMAGE='[^']*'$", user_data, re.M) and ":latest" not in user_data
    for line in (
        "LAKEHUB_TIER=nonpii",
        f"LAKEHUB_NOTEBOOK_BUCKET={NOTEBOOK_BUCKET}",
        f"LAKEHUB_DATA_BUCKET={LAKE_BUCKET}",
        "LAKEHUB_DATA_PREFIXES=nonpii/",
        "LAKEHUB_ALLOWED_GROUPS=nonpii-users",
        "LAKEHUB_SERVER_MODE=shared",
        "LAKEHUB_HUB_IP=127.0.0.1",
        "LAKEHUB_PUBLIC_URL=http://localhost:8890",
        "LAKEHUB_IDLE_TIMEOUT=1800",
        f"LAKEHUB_COGNITO_DOMAIN={platform[names.USER_POOL_DOMAIN_URL]}",
    ):
        assert line in user_data.splitlines(), line

    # The outputs a data scientist uses.
    assert out[hi.PORT_FORWARD_COMMAND] == (
        f"aws ssm start-session --region {REGION} --target {out['InstanceId']} --document-name AWS-StartPortForwardingSession"
        ' --parameters \'{"portNumber":["8000"],"localPortNumber":["8890"]}\''
    )
    assert out[hi.HUB_URL] == "http://localhost:8890"
    assert out["NotebookPrefix"] == f"s3://{NOTEBOOK_BUCKET}/tiers/nonpii/"
    assert out["StopCommand"] == f"aws ec2 stop-instances --region {REGION} --instance-ids {out['InstanceId']}"
    assert out["StartCommand"] == f"aws ec2 start-instances --region {REGION} --instance-ids {out['InstanceId']}"

    # Stop (what the idle alarm's action does), start again, terminate (delete the product).
    ec2.stop_instances(InstanceIds=[out["InstanceId"]])
    assert ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "stopping",
        "stopped",
    )
    ec2.start_instances(InstanceIds=[out["InstanceId"]])
    assert ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "pending",
        "running",
    )
    aws("cloudformation").delete_stack(StackName=stack["StackName"])
    assert ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "shutting-down",
        "terminated",
    )


def test_hub_launch_behind_the_load_balancer(aws, platform, hub_templates, tmp_path):
    hub_template = hub_templates["HubPii"]
    params = {
        "Owner": "bob",
        "TierName": "pii",
        "InstanceType": "m7g.large",
        "AccessMode": "load-balancer",
        "HostName": "bob",
        "ListenerPriority": "210",
        "SubnetChoice": "2",
    }
    stack = provision(aws, HUB_PII, hub_template, params)
    _, stack = answer_image_digest(aws, hub_template, stack, params, tmp_path)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    assert_only_emulator_gaps_skipped(stack, resolved_resources(aws, hub_template, params))
    out = outputs(stack)
    assert out[hi.HUB_URL] == f"https://hub-bob.{DOMAIN}"
    ec2 = aws("ec2")
    (instance,) = ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"]
    assert instance["SubnetId"] == platform[names.PRIVATE_SUBNET_2_ID]
    own = ec2.describe_security_groups(GroupIds=[stack["Made"]["InstanceSecurityGroup"]["PhysicalResourceId"]])["SecurityGroups"][
        0
    ]
    assert own["IpPermissions"] == [], "the load balancer reaches the hub through the platform's hub-task group, not a new rule"
    elb = aws("elbv2")
    rules = elb.describe_rules(ListenerArn=platform[names.HTTPS_LISTENER_ARN])["Rules"]
    (rule,) = [r for r in rules if r["Priority"] == "210"]
    assert rule["Conditions"][0]["HostHeaderConfig"]["Values"] == [f"hub-bob.{DOMAIN}"]
    assert rule["Actions"][0]["TargetGroupArn"] == stack["Made"]["TargetGroup"]["PhysicalResourceId"]
    # (moto's CloudFormation ignores a target group's Targets: test_hub_instance.py checks that
    # the instance is the target.)
    records = aws("route53").list_resource_record_sets(HostedZoneId=platform[names.HOSTED_ZONE_ID])["ResourceRecordSets"]
    assert any(r["Name"].rstrip(".") == f"hub-bob.{DOMAIN}" and r["Type"] == "A" for r in records)
    user_data = base64.b64decode(
        ec2.describe_instance_attribute(InstanceId=out["InstanceId"], Attribute="userData")["UserData"]["Value"]
    ).decode()
    assert "LAKEHUB_HUB_IP=0.0.0.0" in user_data.splitlines()
    assert "LAKEHUB_ALLOWED_GROUPS=pii-users" in user_data.splitlines()


# --------------------------------------------------------------------------- tier on ECS
TIER_PARAMS = {
    names.TIER_NAME: "claims",
    names.TIER_DATA_PREFIXES: "claims/,claims-archive/",
    names.TIER_ALLOWED_GROUPS: "claims-analysts",
    names.TIER_HOST_NAME: "claims",
    names.TIER_DATA_ACCESS: "read-write",
    # A fixed priority: the emulator cannot run the function that picks a free one.
    tier_mod.LISTENER_PRIORITY: "100",
}


@pytest.fixture(scope="module")
def tier_launch(aws, platform, published, tmp_path_factory):
    template = product_template(aws, published["Tier"])
    assert set(TIER_PARAMS) <= set(template["Parameters"])
    asked = [k for k, p in template["Parameters"].items() if "Default" not in p]
    assert sorted(asked) == sorted(
        [names.TIER_NAME, names.TIER_DATA_PREFIXES, names.TIER_ALLOWED_GROUPS, names.TIER_HOST_NAME]
    ), "the tier product asks only for tier settings"
    # Service Catalog refuses a tier onto prefixes the platform team did not list.
    assert constraints_allow(TIER, template, {**TIER_PARAMS, names.TIER_DATA_PREFIXES: "claims/,pii/"})
    assert constraints_allow(TIER, template, {**TIER_PARAMS, names.PLATFORM_NAME: "other"})
    # CloudFormation makes the task definitions once Custom::ImageDigest has answered; moto makes
    # every resource in one pass (a custom resource's GetAtt is empty then, and moto refuses a
    # task definition without an image). So the real function answers first, and its ImageUri
    # stands in for the GetAtt (the second edit of the product template; the resource stays and
    # is answered once more below, as CloudFormation would ask it).
    early = run_function(
        aws,
        template,
        {"StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/SC-pending/0"},
        tmp_path_factory.mktemp("image0"),
        "HubImage",
        "image_digest",
        "Custom::ImageDigest",
        TIER_PARAMS,
    )
    launched = json.loads(
        json.dumps(template).replace(
            json.dumps({"Fn::GetAtt": ["HubImage", "ImageUri"]}), json.dumps(early["answer"]["Data"]["ImageUri"])
        )
    )
    stack = provision(aws, TIER, launched, TIER_PARAMS, tags={"team": "claims"})
    # The emulator cannot run the seeding function: its request goes to the real code here.
    seeding = run_seed_function(aws, template, stack, tmp_path_factory.mktemp("seed"))
    if "NotebookFolders" in stack["Made"]:
        # The emulator registered the custom resource and waits for the answer: forward it.
        request = urllib.request.Request(
            f"{aws.endpoint_url}/cloudformation_{REGION}/cfnresponse?stack={urllib.parse.quote(stack['StackId'])}",
            data=json.dumps(seeding["answer"]).encode(),
            method="PUT",
            headers={
                "content-type": "",  # as crhelper and cfn-response send it
                # moto picks the region (whose stacks it looks in) from a credential scope
                "Authorization": f"AWS4-HMAC-SHA256 Credential={aws.env['AWS_ACCESS_KEY_ID']}/20260101/{REGION}/cloudformation/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        urllib.request.urlopen(request, timeout=30).read()
    image, stack = answer_image_digest(aws, template, stack, TIER_PARAMS, tmp_path_factory.mktemp("image"))
    seeding["image"] = image
    return template, stack, seeding


def test_tier_launch_makes_the_tier_on_the_platform(aws, platform, tier_launch):
    template, stack, seeding = tier_launch
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    expected = resolved_resources(aws, template, TIER_PARAMS)
    assert_only_emulator_gaps_skipped(stack, expected)
    assert "NotebookFolders" in stack["Made"]  # completed by the seeding function's own answer
    out = outputs(stack)
    assert out[names.TIER_URL] == f"https://claims.{DOMAIN}"
    assert out["NotebookPrefix"] == f"s3://{NOTEBOOK_BUCKET}/tiers/claims/"
    assert out["ListenerRulePriorityUsed"] == "100"

    # The service runs in the platform's cluster, from the platform's image.
    ecs = aws("ecs")
    (service,) = ecs.describe_services(cluster=platform[names.CLUSTER_NAME], services=[out[names.TIER_SERVICE_NAME]])["services"]
    assert service["taskDefinition"] == out["HubTaskDefinitionArn"]
    assert service["desiredCount"] == 1
    # (moto's CloudFormation drops the service's network and load-balancer settings;
    # the tier's own tests check them in the template.)
    task = ecs.describe_task_definition(taskDefinition=out["HubTaskDefinitionArn"])["taskDefinition"]
    assert seeding["image"]["Data"]["ImageUri"] == f"{platform[names.IMAGE_REPOSITORY_URI]}@{platform['ImageDigest']}"
    assert task["containerDefinitions"][0]["image"] == seeding["image"]["Data"]["ImageUri"]  # the digest, not a tag
    assert task["family"] == f"{PLATFORM}-claims-hub"

    # The host rule on the platform's listener, and the DNS record.
    rules = aws("elbv2").describe_rules(ListenerArn=platform[names.HTTPS_LISTENER_ARN])["Rules"]
    (rule,) = [r for r in rules if r["Priority"] == "100"]
    assert rule["Conditions"][0]["HostHeaderConfig"]["Values"] == [f"claims.{DOMAIN}"]
    records = aws("route53").list_resource_record_sets(HostedZoneId=platform[names.HOSTED_ZONE_ID])["ResourceRecordSets"]
    assert any(r["Name"].rstrip(".") == f"claims.{DOMAIN}" for r in records)

    # The tier role: its two prefixes of the real lake, its notebook folder, the lake's key.
    role_name = out[names.TIER_ROLE_ARN].rsplit("/", 1)[1]
    assert role_name == f"{PLATFORM}-claims-tier"
    resources = set()
    iam = aws("iam")
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        for s in policy_document(doc)["Statement"]:
            if "s3:GetObject" in s["Action"] or "s3:PutObject" in s["Action"]:
                # moto keeps `!If [c, x, !Ref AWS::NoValue]` list items as None; AWS drops them.
                resources |= {r for r in s["Resource"] if r is not None}
    assert resources == {
        f"arn:aws:s3:::{LAKE_BUCKET}/claims/*",
        f"arn:aws:s3:::{LAKE_BUCKET}/claims-archive/*",
        f"arn:aws:s3:::{NOTEBOOK_BUCKET}/tiers/claims/shared/*",
        f"arn:aws:s3:::{NOTEBOOK_BUCKET}/tiers/claims/users/${{aws:PrincipalTag/lakehub-user}}/*",
    }


# --------------------------------------------------------------------------- the seeding function
class ResponseURL:
    """CloudFormation's pre-signed response URL, on loopback over HTTPS (crhelper answers
    only over HTTPS); keeps the answers."""

    def __init__(self, tmp: Path):
        self.cert, server_cert, key = make_ca_and_cert(tmp)  # self.cert: the CA clients trust
        self.answers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.answers.append(json.loads(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server_cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/cloudformation-custom-resource-response/{uuid.uuid4()}?X-Amz-Signature=rehearsal"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Context:
    def __init__(self, function_arn: str):
        self.function_name = function_arn.rsplit(":", 1)[1]
        self.invoked_function_arn = function_arn
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 14_000


def run_seed_function(aws, template: dict, stack: dict, tmp: Path) -> dict:
    """Send the seeding resource's Create request, as CloudFormation would, to the real
    lambdas/seed_notebooks code in this process (against the emulator); return its answer."""
    return run_function(aws, template, stack, tmp, "NotebookFolders", "seed_notebooks", "Custom::SeedNotebooks", TIER_PARAMS)


def run_function(
    aws, template: dict, stack: dict, tmp: Path, logical_id: str, function: str, resource_type: str, params: dict
) -> dict:
    """Send a custom resource's Create request, as CloudFormation would, to the real
    lambdas/<function> code in this process (against the emulator); return its answer."""
    props = resolved_resources(aws, template, params)[logical_id]["Properties"]
    response = ResponseURL(tmp)
    env = {**aws.env, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "SSL_CERT_FILE": str(response.cert)}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            module = load_function(function, mp)
            event = {
                "RequestType": "Create",
                "ServiceToken": props["ServiceToken"],
                "ResponseURL": response.url,
                "StackId": stack["StackId"],
                "RequestId": str(uuid.uuid4()),
                "LogicalResourceId": logical_id,
                "ResourceType": resource_type,
                "ResourceProperties": props,
            }
            module.handler(json.loads(json.dumps(event)), Context(props["ServiceToken"]))
    finally:
        response.close()
    assert len(response.answers) == 1, response.answers
    return {"properties": props, "answer": response.answers[0]}


def answer_image_digest(aws, template: dict, stack: dict, params: dict, tmp: Path) -> tuple[dict, dict]:
    """The stack's Custom::ImageDigest answered by the real lambdas/image_digest code, forwarded
    to the emulator; returns (the function's answer, the stack once it is done)."""
    digest = run_function(aws, template, stack, tmp, "HubImage", "image_digest", "Custom::ImageDigest", params)
    assert digest["answer"]["Status"] == "SUCCESS", digest["answer"]
    forward_answer(aws, stack, digest["answer"])
    deadline = time.monotonic() + 20
    while stack["StackStatus"].endswith("_IN_PROGRESS") and time.monotonic() < deadline:
        time.sleep(0.5)
        stack = describe(aws, stack["StackName"])
    return digest["answer"], stack


def forward_answer(aws, stack: dict, answer: dict) -> None:
    """The function's answer, to the emulator's response endpoint (as CloudFormation receives it)."""
    request = urllib.request.Request(
        f"{aws.endpoint_url}/cloudformation_{REGION}/cfnresponse?stack={urllib.parse.quote(stack['StackId'])}",
        data=json.dumps(answer).encode(),
        method="PUT",
        headers={
            "content-type": "",  # as crhelper and cfn-response send it
            # moto picks the region (whose stacks it looks in) from a credential scope
            "Authorization": f"AWS4-HMAC-SHA256 Credential={aws.env['AWS_ACCESS_KEY_ID']}/20260101/{REGION}/cloudformation/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    urllib.request.urlopen(request, timeout=30).read()


def test_tier_notebook_folders_seeded_by_the_real_function(aws, platform, tier_launch):
    _, stack, seeding = tier_launch
    pytest.importorskip("crhelper")
    assert seeding["properties"]["ServiceToken"] == platform[names.SEED_FUNCTION_ARN]
    answer = seeding["answer"]
    assert answer["Status"] == "SUCCESS", answer.get("Reason")
    assert answer["StackId"] == stack["StackId"] and answer["LogicalResourceId"] == "NotebookFolders"
    keys = {o["Key"] for o in aws("s3").list_objects_v2(Bucket=NOTEBOOK_BUCKET, Prefix="tiers/").get("Contents", [])}
    assert {"tiers/claims/shared/", "tiers/claims/users/"} <= keys
    assert all(k.startswith("tiers/claims/") for k in keys), "only the launched tier's folders"
