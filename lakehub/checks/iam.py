"""The IAM analysis's pieces: every policy document of a template (identity, resource and trust
policies), its statements, and the template resolved to plausible literal ARNs (for parliament
and the size checks), one resolution per combination of conditions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from lakehub.cfn.template import Resolver
from lakehub.cfn.walk import items, props


@dataclass(frozen=True)
class PolicyDoc:
    resource: str
    name: str  # PolicyName, or the property that holds the document
    kind: str  # identity | resource | trust
    document: Any


# Where each resource type keeps its policy documents.
POLICY_PROPERTIES: dict[str, tuple[str, str]] = {
    "AWS::IAM::Policy": ("PolicyDocument", "identity"),
    "AWS::IAM::RolePolicy": ("PolicyDocument", "identity"),
    "AWS::IAM::UserPolicy": ("PolicyDocument", "identity"),
    "AWS::IAM::GroupPolicy": ("PolicyDocument", "identity"),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument", "identity"),
    "AWS::S3::BucketPolicy": ("PolicyDocument", "resource"),
    "AWS::SQS::QueuePolicy": ("PolicyDocument", "resource"),
    "AWS::SNS::TopicPolicy": ("PolicyDocument", "resource"),
    "AWS::KMS::Key": ("KeyPolicy", "resource"),
    "AWS::ECR::Repository": ("RepositoryPolicyText", "resource"),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy", "resource"),
}
INLINE_POLICY_HOLDERS = ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group")


def policy_documents(resources: dict[str, dict]) -> list[PolicyDoc]:
    """Every policy document of `resources` (a template's Resources, raw or resolved)."""
    out: list[PolicyDoc] = []
    for name, res in resources.items():
        rtype, p = res.get("Type"), props(res)
        if rtype in INLINE_POLICY_HOLDERS:
            for pol in items(p.get("Policies")):
                if isinstance(pol, dict):
                    out.append(PolicyDoc(name, str(pol.get("PolicyName")), "identity", pol.get("PolicyDocument")))
            if rtype == "AWS::IAM::Role" and p.get("AssumeRolePolicyDocument"):
                out.append(PolicyDoc(name, "AssumeRolePolicyDocument", "trust", p["AssumeRolePolicyDocument"]))
        elif rtype in POLICY_PROPERTIES:
            key, kind = POLICY_PROPERTIES[rtype]
            if p.get(key) is not None:
                out.append(PolicyDoc(name, key, kind, p[key]))
    return out


def statements(document: Any) -> list[dict]:
    if not isinstance(document, dict):
        return []
    return [s for s in items(document.get("Statement")) if isinstance(s, dict)]


def statement_actions(statement: dict) -> list[str]:
    return [a for a in items(statement.get("Action")) if isinstance(a, str)]


def statement_resources(statement: dict) -> list[Any]:
    return items(statement.get("Resource"))


# ---------------------------------------------------------------------------------------------
# resolving templates to plausible literal values (for parliament)
# ---------------------------------------------------------------------------------------------

ACCOUNT = "123456789012"
REGION = "us-east-1"

# Values for parameters, by name, where the default is absent or (for SSM-backed parameters)
# the name of an SSM parameter rather than the value.
PLAUSIBLE_PARAMETERS: dict[str, str] = {
    "AssetsBucketName": "example-assets",
    "DataBucketName": "example-lake",
    "DataLakeBucketName": "",
    "NotebookBucketName": "example-notebooks",
    "DataKmsKeyArn": "none",
    "DataLakeKmsKeyArn": "",
    "AuthMode": "cognito",
    "ClusterName": "lakehub",
    "DomainName": "lakehub.example.com",
    "HostedZoneId": "Z0123456789EXAMPLE",
    "VpcCidr": "10.20.0.0/16",
    "VpcId": "vpc-0123456789abcdef0",
    "TierName": "pii",
    "DataPrefixes": "pii/",
    "AllowedGroups": "pii-users",
    "HostName": "pii",
    "ImageRepositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/lakehub/hub",
    "HttpsListenerArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/lakehub-alb/0123456789abcdef/0123456789abcdef",
    "LoadBalancerDnsName": "lakehub-alb-123.us-east-1.elb.amazonaws.com",
    "LoadBalancerHostedZoneId": "Z35SXDOTRQ7X7K",
    "TaskSecurityGroupId": "sg-0123456789abcdef0",
    "ListenerPriorityFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lakehub-listener-priority",
    "SeedFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lakehub-seed-notebooks",
    "SecretArnFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lakehub-secret-arn",
    "LogGroupName": "/lakehub/lakehub/tasks",
    "UserPoolId": f"{REGION}_Example01",
    "UserPoolDomainUrl": f"https://lakehub-{ACCOUNT}.auth.{REGION}.amazoncognito.com",
    "CertificateArn": "",
}
EXAMPLE_KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

_PARAM_TYPE_VALUES = {
    "AWS::EC2::VPC::Id": "vpc-0123456789abcdef0",
    "AWS::EC2::Subnet::Id": "subnet-0123456789abcdef0",
    "AWS::EC2::SecurityGroup::Id": "sg-0123456789abcdef0",
    "AWS::Route53::HostedZone::Id": "Z0123456789EXAMPLE",
    "AWS::EC2::KeyPair::KeyName": "example-key",
    "List<AWS::EC2::Subnet::Id>": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
}


def plausible_parameters(template: dict, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A value for every parameter: overrides, then PLAUSIBLE_PARAMETERS, then the default
    (unless it names an SSM parameter), then one made up from the type and name."""
    values: dict[str, Any] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        ptype = spec.get("Type", "String")
        if overrides and name in overrides:
            values[name] = overrides[name]
        elif name in PLAUSIBLE_PARAMETERS:
            values[name] = PLAUSIBLE_PARAMETERS[name]
        elif "Default" in spec and not ptype.startswith("AWS::SSM::Parameter"):
            values[name] = spec["Default"]
        elif ptype in _PARAM_TYPE_VALUES:
            values[name] = _PARAM_TYPE_VALUES[ptype]
        elif spec.get("AllowedValues"):
            values[name] = spec["AllowedValues"][0]
        elif "Arn" in name and "kms" in str(spec.get("AllowedPattern", "")):
            values[name] = EXAMPLE_KMS_KEY
        elif "Arn" in name:
            values[name] = f"arn:aws:iam::{ACCOUNT}:role/example-{name.lower()}"
        elif ptype == "Number":
            values[name] = str(spec.get("MinValue", 1))
        elif ptype == "CommaDelimitedList":
            values[name] = f"example-{name.lower()}"
        else:
            values[name] = f"example-{name.lower()}"
    return values


# Ref and GetAtt Arn of resources, by type ({n}: logical id in lower case, {r}/{a}: region/account).
_REF_FORMATS = {
    "AWS::S3::Bucket": "lakehub-{n}",
    "AWS::IAM::Role": "lakehub-{n}",
    "AWS::IAM::InstanceProfile": "lakehub-{n}",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:{r}:{a}:secret:lakehub/{n}-AbCdEf",
    "AWS::Logs::LogGroup": "/lakehub/{n}",
    "AWS::ECR::Repository": "lakehub/{n}",
    "AWS::KMS::Key": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:lakehub-{n}",
    "AWS::SQS::Queue": "https://sqs.{r}.amazonaws.com/{a}/lakehub-{n}",
    "AWS::EC2::SecurityGroup": "sg-0123456789abcdef0",
    "AWS::EC2::RouteTable": "rtb-0123456789abcdef0",
    "AWS::EC2::Subnet": "subnet-0123456789abcdef0",
    "AWS::EC2::VPC": "vpc-0123456789abcdef0",
    "AWS::EC2::Instance": "i-0123456789abcdef0",
    "AWS::ECS::TaskDefinition": "arn:aws:ecs:{r}:{a}:task-definition/lakehub-{n}:1",
    "AWS::ElasticLoadBalancingV2::Listener": "arn:aws:elasticloadbalancing:{r}:{a}:listener/app/lakehub/0123456789abcdef/0123456789abcdef",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "arn:aws:elasticloadbalancing:{r}:{a}:targetgroup/lakehub-{n}/0123456789abcdef",
    "AWS::Cognito::UserPool": "{r}_Example01",
}
_ARN_FORMATS = {
    "AWS::S3::Bucket": "arn:aws:s3:::lakehub-{n}",
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/lakehub-{n}",
    "AWS::IAM::InstanceProfile": "arn:aws:iam::{a}:instance-profile/lakehub-{n}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:/lakehub/{n}:*",
    "AWS::ECR::Repository": "arn:aws:ecr:{r}:{a}:repository/lakehub/{n}",
    "AWS::CodeBuild::Project": "arn:aws:codebuild:{r}:{a}:project/lakehub-{n}",
    "AWS::CodeCommit::Repository": "arn:aws:codecommit:{r}:{a}:lakehub-{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:lakehub-{n}",
    "AWS::KMS::Key": "arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:lakehub-{n}",
    "AWS::ECS::Cluster": "arn:aws:ecs:{r}:{a}:cluster/lakehub",
    "AWS::Cognito::UserPool": "arn:aws:cognito-idp:{r}:{a}:userpool/{r}_Example01",
    "AWS::Events::Rule": "arn:aws:events:{r}:{a}:rule/lakehub-{n}",
    "AWS::ServiceCatalog::Portfolio": "arn:aws:catalog:{r}:{a}:portfolio/port-example",
    # lambdas/secret_arn: the full ARN of a secret the platform team created (name + 6 characters).
    "Custom::SecretArn": "arn:aws:secretsmanager:{r}:{a}:secret:lakehub/pii/{n}-AbCdEf",
}


class PlausibleResolver(Resolver):
    """A Resolver whose Refs and GetAtts of resources become plausible literal names and ARNs
    (so IAM analysers see real-looking ARNs instead of "<X.Arn>") and which reads Mappings."""

    def __init__(self, template: dict, parameters: dict[str, Any] | None = None):
        super().__init__(template, plausible_parameters(template, parameters))
        self._types = {n: r.get("Type", "") for n, r in (template.get("Resources") or {}).items()}

    def _fmt(self, fmt: str, name: str) -> str:
        return fmt.format(
            n=re.sub(r"[^a-z0-9]+", "-", name.lower()), r=self.pseudo["AWS::Region"], a=self.pseudo["AWS::AccountId"]
        )

    def _ref_value(self, name: str) -> str:
        rtype = self._types[name]
        return self._fmt(_REF_FORMATS.get(rtype, "lakehub-{n}"), name)

    def _getatt_value(self, name: str, attr: str) -> str:
        rtype = self._types.get(name, "")
        if attr == "Arn" or attr.endswith("Arn"):
            if rtype in _ARN_FORMATS:
                return self._fmt(_ARN_FORMATS[rtype], name)
            service = rtype.split("::")[1].lower() if "::" in rtype else "example"
            return self._fmt(f"arn:aws:{service}:{{r}}:{{a}}:lakehub-{{n}}", name)
        if attr == "RepositoryUri":
            return self._fmt("{a}.dkr.ecr.{r}.amazonaws.com/lakehub/{n}", name)
        return self._fmt("lakehub-{n}-" + attr.lower().replace(".", "-"), name)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref" and arg in self._types and arg not in self.params:
                return self._ref_value(arg)
            if key == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self._getatt_value(name, attr)
            if key == "Fn::FindInMap":
                m, k1, k2 = (self.resolve(a) for a in arg)
                return self.template["Mappings"][m][k1][k2]
            if key == "Fn::ImportValue":
                return f"imported-{self.resolve(arg)}"
        return super()._resolve(node)

    def _sub_var(self, name: str, variables: dict) -> str:
        if name not in variables and "." in name:
            res, attr = name.split(".", 1)
            return self._getatt_value(res, attr)
        return super()._sub_var(name, variables)


def condition_scenarios(template: dict) -> list[dict[str, Any]]:
    """Parameter sets that between them take every branch of the template's simple conditions:
    the plausible base, each AllowedValues choice one at a time, and for each condition of the
    form Equals(Ref P, v) both P = v and P = something else."""
    params = template.get("Parameters") or {}
    base: dict[str, Any] = {}
    scenarios: list[dict[str, Any]] = [base]
    for name, spec in params.items():
        for value in spec.get("AllowedValues", []):
            scenarios.append({name: value})

    def equals(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, arg in node.items():
                if key == "Fn::Equals" and isinstance(arg, list) and len(arg) == 2:
                    for a, b in (arg, arg[::-1]):
                        if isinstance(a, dict) and set(a) == {"Ref"} and a["Ref"] in params and not isinstance(b, (dict, list)):
                            yield a["Ref"], b
                yield from equals(arg)
        elif isinstance(node, list):
            for n in node:
                yield from equals(n)

    for pname, value in equals(template.get("Conditions") or {}):
        spec = params[pname]
        scenarios.append({pname: value})
        other = _other_value(pname, spec, value)
        if other is not None:
            scenarios.append({pname: other})
    unique: list[dict[str, Any]] = []
    for s in scenarios:
        if s not in unique:
            unique.append(s)
    return unique


def _other_value(name: str, spec: dict, value: Any) -> Any:
    if spec.get("AllowedValues"):
        return next((v for v in spec["AllowedValues"] if str(v) != str(value)), None)
    if spec.get("Type") == "Number":
        return str(int(value) + 1) if str(value).isdigit() else "1"
    if str(value) in ("", "none"):
        if "Kms" in name:
            return EXAMPLE_KMS_KEY
        if "Certificate" in name:
            return f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/1234abcd-12ab-34cd-56ef-1234567890ab"
        if "Bucket" in name:
            return "corp-lake"
        if "Secret" in name:
            return "lakehub/example-secret"
        return f"example-{name.lower()}"
    return f"not-{value}"


def resolved_policies(template: dict) -> list[tuple[dict[str, Any], PolicyDoc]]:
    """Every policy document of the template, resolved under every condition scenario, each
    distinct (resource, name, document) once, with the parameters of its first scenario."""
    seen: set[tuple[str, str, str]] = set()
    out: list[tuple[dict[str, Any], PolicyDoc]] = []
    for scenario in condition_scenarios(template):
        resolver = PlausibleResolver(template, scenario)
        for doc in policy_documents(resolver.resources()):
            key = (doc.resource, doc.name, json.dumps(doc.document, sort_keys=True))
            if key not in seen:
                seen.add(key)
                out.append((scenario, doc))
    return out
