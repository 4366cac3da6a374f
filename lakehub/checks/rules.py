"""lakehub's own security rules: what the scanners (checkov, cfn-lint, parliament) do not check.

Each rule is a function over one loaded template (`lakehub.cfn.template.load`: a dict with
long-form intrinsics) that yields (resource, message) for each violation; registered with
`@rule(name, doc)`, it returns a list of `Violation`s of that name; an empty list means the
template passes. The rules read the template as written, every branch of every `Fn::If` included, so
a violation hidden behind a condition still counts. tests/security runs every rule over the
generated templates (no violation) and over a fixture made to break it (at least one), so no
rule can silently stop working.

Beside it: `lakehub.checks.iam` (every policy document of a template, resolved to plausible
literal ARNs), `lakehub.checks.dockerfile` (rules over the Dockerfile's text), and
`lakehub.cfn.walk` (reading a loaded template).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable, Iterator

from lakehub.cfn.walk import alternatives, get, is_true, items, literal_values, props, refs, resources_of, strings
from lakehub.checks.dockerfile import is_root_user
from lakehub.checks.iam import policy_documents, statement_actions, statement_resources, statements


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.resource}: {self.message}"


Rule = Callable[[dict], list[Violation]]
Finding = tuple[str, str]  # what a rule function yields: (resource, message)


class RuleSet:
    """A named set of template rules: register with `@rules.rule(name, doc)`, run them all with
    `check_template`, or from the command line with `main` (one line per violation, exit 1).
    A rule function yields a `Finding` (resource, message) for each violation; it is registered,
    and stays in its module, as a `Rule`: one that returns the list of `Violation`s of `name`."""

    def __init__(self, label: str):
        self.label = label
        self.rules: dict[str, Rule] = {}
        self.docs: dict[str, str] = {}

    def rule(self, name: str, doc: str):
        def register(fn: Callable[[dict], Iterable[Finding]]) -> Rule:
            @functools.wraps(fn)
            def check(template: dict, **options: Any) -> list[Violation]:
                return [Violation(name, resource, message) for resource, message in fn(template, **options)]

            self.rules[name] = check
            self.docs[name] = doc
            check.rule_name = name  # type: ignore[attr-defined]
            return check

        return register

    def check_template(self, template: dict) -> list[Violation]:
        """Every rule of the set over one template."""
        out: list[Violation] = []
        for fn in self.rules.values():
            out += fn(template)
        return out

    def main(self, argv: list[str] | None = None) -> int:
        """Every rule over the given (default: the generated) templates."""
        import sys
        from pathlib import Path

        from lakehub.assets import TEMPLATES_DIR
        from lakehub.cfn.template import load

        args = sys.argv[1:] if argv is None else argv
        paths = [Path(a) for a in args] or sorted(TEMPLATES_DIR.glob("*.template.yaml"))
        found = 0
        for path in paths:
            for v in self.check_template(load(path)):
                print(f"{path.name}: {v}")
                found += 1
        print(f"{len(self.rules)} {self.label}, {len(paths)} templates, {found} violations", file=sys.stderr)
        return 1 if found else 0


# The project's security rules.
SECURITY = RuleSet("rules")
RULES = SECURITY.rules
RULE_DOCS = SECURITY.docs
rule = SECURITY.rule
check_template = SECURITY.check_template


# ---------------------------------------------------------------------------------------------
# network: public IPs, security groups
# ---------------------------------------------------------------------------------------------

ECS_NETWORKED = ("AWS::ECS::Service", "AWS::ECS::TaskSet")


@rule("tasks-get-no-public-ip", "ECS tasks run in private subnets with AssignPublicIp DISABLED")
def tasks_get_no_public_ip(template: dict) -> Iterator[Finding]:
    public_subnets = {
        n
        for n, r in resources_of(template, "AWS::EC2::Subnet")
        if any(is_true(v) for v in alternatives(props(r).get("MapPublicIpOnLaunch")))
    }

    def check(where: str, cfgs: list[Any]) -> Iterator[Finding]:
        for cfg in cfgs:
            if not isinstance(cfg, dict):
                continue
            for value in alternatives(cfg.get("AssignPublicIp")) or [None]:
                if value != "DISABLED":
                    yield where, f"AssignPublicIp is {value!r}, not DISABLED"
            for subnet in items(cfg.get("Subnets")):
                for ref in refs(subnet):
                    if ref in public_subnets or "public" in ref.lower():
                        yield where, f"runs tasks in subnet {ref}, a public subnet"

    for name, res in resources_of(template, *ECS_NETWORKED):
        p = props(res)
        if "NetworkConfiguration" not in p:
            continue  # not awsvpc: no task ENI, no public IP
        # AwsvpcConfiguration on a service, AwsVpcConfiguration on a task set
        yield from check(
            name, get(p, "NetworkConfiguration", "AwsvpcConfiguration") + get(p, "NetworkConfiguration", "AwsVpcConfiguration")
        )
    for name, res in resources_of(template, "AWS::Events::Rule"):
        for target in items(props(res).get("Targets")):
            yield from check(name, get(target, "EcsParameters", "NetworkConfiguration", "AwsVpcConfiguration"))
    for name, res in resources_of(template, "AWS::Scheduler::Schedule"):
        yield from check(name, get(props(res), "Target", "EcsParameters", "NetworkConfiguration", "AwsvpcConfiguration"))


@rule("no-ecs-exec", "ECS services do not enable ECS Exec (a shell in a task is the task's role: a tier's data)")
def no_ecs_exec(template: dict) -> Iterator[Finding]:
    for name, res in resources_of(template, "AWS::ECS::Service"):
        if any(is_true(v) for v in alternatives(props(res).get("EnableExecuteCommand"))):
            yield name, "EnableExecuteCommand lets anyone with ecs:ExecuteCommand open a shell with the task's role"


WORLD = {"0.0.0.0/0", "::/0"}
ALB_OPEN_PORTS = {80, 443}


@rule(
    "security-groups-closed-to-internet",
    "no security group admits 0.0.0.0/0 or ::/0, except the load balancer's on TCP 80 and 443",
)
def security_groups_closed_to_internet(template: dict) -> Iterator[Finding]:
    lb_groups: set[str] = set()
    for _, res in resources_of(template, "AWS::ElasticLoadBalancingV2::LoadBalancer"):
        if any(v in ("application", None) for v in alternatives(props(res).get("Type", "application"))):
            for sg in items(props(res).get("SecurityGroups")):
                lb_groups |= refs(sg)

    def check(where: str, group: str | None, rule_: dict) -> Iterator[Finding]:
        cidrs = literal_values(template, rule_.get("CidrIp")) + literal_values(template, rule_.get("CidrIpv6"))
        world = [c for c in cidrs if isinstance(c, str) and c in WORLD]
        if not world:
            return
        proto = str(rule_.get("IpProtocol", "")).lower()
        ports = (rule_.get("FromPort"), rule_.get("ToPort"))
        ok = (
            group in lb_groups
            and proto in ("tcp", "6")
            and ports[0] == ports[1]
            and isinstance(ports[0], int)
            and ports[0] in ALB_OPEN_PORTS
        )
        if not ok:
            what = "the load balancer's group" if group in lb_groups else "a group that is not the load balancer's"
            yield where, f"{world[0]} may reach {proto or '?'} {ports[0]}-{ports[1]} ({what})"

    for name, res in resources_of(template, "AWS::EC2::SecurityGroup"):
        for r in items(props(res).get("SecurityGroupIngress")):
            if isinstance(r, dict):
                yield from check(name, name, r)
    for name, res in resources_of(template, "AWS::EC2::SecurityGroupIngress"):
        p = props(res)
        groups = refs(p.get("GroupId")) | refs(p.get("GroupName"))
        yield from check(name, next(iter(groups)) if len(groups) == 1 else None, p)


# ---------------------------------------------------------------------------------------------
# secrets in environments
# ---------------------------------------------------------------------------------------------

SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL", "PRIVATE")
# Names that look secret but are not: each with its reason.
KNOWN_NON_SECRET_NAMES: dict[str, str] = {
    "JUPYTERHUB_API_TOKEN_FILE": "a path to a file, not the token",
}
# An ARN names a secret or key in AWS; it grants nothing by itself.
NON_SECRET_SUFFIXES = ("_ARN",)

AWS_ACCESS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}(?![A-Z0-9])"
)
AWS_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# A dynamic reference resolved into an environment puts the secret in plain text in the
# task definition or function configuration.
SECRET_DYNAMIC_REF = re.compile(r"\{\{resolve:(secretsmanager|ssm-secure):")


def secret_name(name: str) -> bool:
    upper = name.upper()
    if upper in KNOWN_NON_SECRET_NAMES or upper.endswith(NON_SECRET_SUFFIXES):
        return False
    tokens = re.split(r"[^A-Z0-9]+", upper)
    return any(w in t for t in tokens for w in SECRET_WORDS) or any(
        t.endswith("KEY") or t == "KEYS" or t == "PWD" for t in tokens
    )


def looks_like_aws_secret_key(text: str) -> bool:
    for m in AWS_SECRET_KEY.finditer(text):
        s = m.group(0)
        if re.fullmatch(r"[0-9a-f]{40}", s) or re.fullmatch(r"[0-9A-F]{40}", s):
            continue  # a SHA-1 (commit id, content hash), not a key
        if re.search(r"[A-Z]", s) and re.search(r"[a-z]", s) and re.search(r"[0-9]", s):
            return True
    return False


def secret_value(value: Any) -> str | None:
    for s in strings(value):
        if AWS_ACCESS_KEY_ID.search(s):
            return "an AWS access key id"
        if looks_like_aws_secret_key(s):
            return "what looks like an AWS secret access key"
        if PRIVATE_KEY.search(s):
            return "a private key"
        if SECRET_DYNAMIC_REF.search(s):
            return "a secret resolved into plain text ({{resolve:...}})"
    return None


def containers(template: dict) -> Iterator[tuple[str, dict]]:
    """(task definition, container definition) of every container of the template's task definitions."""
    for name, res in resources_of(template, "AWS::ECS::TaskDefinition"):
        for container in items(props(res).get("ContainerDefinitions")):
            if isinstance(container, dict):
                yield name, container


def environments(template: dict) -> Iterator[tuple[str, str, Any]]:
    """(resource, variable name, value) of every environment the template sets."""
    for name, container in containers(template):
        for var in items(container.get("Environment")):
            if isinstance(var, dict):
                yield name, str(var.get("Name")), var.get("Value")
    for name, res in resources_of(template, "AWS::Lambda::Function", "AWS::Serverless::Function"):
        for variables in get(props(res), "Environment", "Variables"):
            if isinstance(variables, dict):
                for k, v in variables.items():
                    yield name, k, v
    for name, res in resources_of(template, "AWS::CodeBuild::Project"):
        for variables in get(props(res), "Environment", "EnvironmentVariables"):
            for var in items(variables):
                if isinstance(var, dict) and var.get("Type", "PLAINTEXT") == "PLAINTEXT":
                    yield name, str(var.get("Name")), var.get("Value")


@rule("no-secrets-in-environment", "no credential or secret in any Environment (they go in ECS Secrets / Secrets Manager)")
def no_secrets_in_environment(template: dict) -> Iterator[Finding]:
    for where, var, value in environments(template):
        if secret_name(var):
            yield where, f"environment variable {var} is named like a secret (use Secrets)"
        found = secret_value(value)
        if found:
            yield where, f"environment variable {var} holds {found}"
    for name, res in resources_of(
        template, "AWS::EC2::LaunchTemplate", "AWS::EC2::Instance", "AWS::AutoScaling::LaunchConfiguration"
    ):
        found = secret_value(get(props(res), "LaunchTemplateData", "UserData") + get(props(res), "UserData"))
        if found:
            yield name, f"user data holds {found}"


# ---------------------------------------------------------------------------------------------
# buckets
# ---------------------------------------------------------------------------------------------

BUCKET_ENCRYPTION = {"AES256", "aws:kms", "aws:kms:dsse"}
PUBLIC_ACCESS_BLOCK = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")


def tls_only_statement(statement: Any) -> bool:
    if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal not in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
        return False
    actions = [a for a in items(statement.get("Action")) if isinstance(a, str)]
    if not any(a in ("s3:*", "*") for a in actions):
        return False
    cond = statement.get("Condition") or {}
    secure = (cond.get("Bool") or {}).get("aws:SecureTransport")
    return secure is False or str(secure).lower() == "false"


@rule(
    "buckets-protected",
    "every bucket: public access blocked, versioned, encrypted, TLS-only policy, Retain on delete and replace",
)
def buckets_protected(template: dict) -> Iterator[Finding]:
    policies: dict[str, list[Any]] = {}
    for _, res in resources_of(template, "AWS::S3::BucketPolicy"):
        for target in refs(props(res).get("Bucket")):
            policies.setdefault(target, []).append(props(res).get("PolicyDocument"))
    for name, res in resources_of(template, "AWS::S3::Bucket"):
        p = props(res)

        if res.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
            yield name, f"DeletionPolicy is {res.get('DeletionPolicy')!r}, not Retain"
        if res.get("UpdateReplacePolicy") != "Retain":
            yield name, f"UpdateReplacePolicy is {res.get('UpdateReplacePolicy')!r}, not Retain"
        pab = p.get("PublicAccessBlockConfiguration") or {}
        for key in PUBLIC_ACCESS_BLOCK:
            if not all(is_true(v) for v in (alternatives(pab.get(key)) or [None])):
                yield name, f"PublicAccessBlockConfiguration.{key} is not true"
        status = get(p, "VersioningConfiguration", "Status")
        if not status or any(s != "Enabled" for s in status):
            yield name, "versioning is not enabled"
        rules = [r for conf in get(p, "BucketEncryption", "ServerSideEncryptionConfiguration") for r in items(conf)]
        algorithms = [a for r in rules for a in get(r, "ServerSideEncryptionByDefault", "SSEAlgorithm")]
        if not algorithms or any(a not in BUCKET_ENCRYPTION for a in algorithms):
            yield name, "no default encryption (BucketEncryption with AES256 or aws:kms)"
        docs = policies.get(name, [])
        tls = [
            s
            for doc in docs
            for s in items((doc or {}).get("Statement") if isinstance(doc, dict) else None)
            if tls_only_statement(s)
        ]
        if not tls:
            yield name, "no bucket policy denying requests without TLS (aws:SecureTransport false)"
        else:
            covered = [r for s in tls for r in items(s.get("Resource")) if name in refs(r)]
            objects = ["/" in "".join(strings(r)) for r in covered]
            if not (True in objects and False in objects):
                yield name, "the TLS-only statement does not cover both the bucket and its objects"


# ---------------------------------------------------------------------------------------------
# load balancer
# ---------------------------------------------------------------------------------------------

# TLS 1.2 or later only (ELBSecurityPolicy-2016-08, the default, also accepts TLS 1.0 and 1.1).
TLS12_POLICY = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]-|TLS-1-2-|FS-1-2-)")


@rule("load-balancer-https-only", "port 80 only redirects to HTTPS; HTTPS and TLS listeners use a TLS 1.2+ policy")
def load_balancer_https_only(template: dict) -> Iterator[Finding]:
    rules_by_listener: dict[str, list[tuple[str, dict]]] = {}
    for name, res in resources_of(template, "AWS::ElasticLoadBalancingV2::ListenerRule"):
        for listener in refs(props(res).get("ListenerArn")):
            rules_by_listener.setdefault(listener, []).append((name, res))

    def redirects_to_https(action: Any) -> bool:
        return (
            isinstance(action, dict)
            and action.get("Type") == "redirect"
            and all(v == "HTTPS" for v in (get(action, "RedirectConfig", "Protocol") or [None]))
        )

    for name, res in resources_of(template, "AWS::ElasticLoadBalancingV2::Listener"):
        p = props(res)
        protocols = alternatives(p.get("Protocol"))
        ports = alternatives(p.get("Port"))
        if any(x in ("HTTP",) for x in protocols) or any(str(x) == "80" for x in ports):
            actions = items(p.get("DefaultActions"))
            if "HTTPS" in protocols or not actions or not all(redirects_to_https(a) for a in actions):
                yield name, "a plain-HTTP listener must only redirect to HTTPS"
            for rule_name, rule_res in rules_by_listener.get(name, []):
                if not all(redirects_to_https(a) for a in items(props(rule_res).get("Actions"))):
                    yield rule_name, f"a rule on plain-HTTP listener {name} does more than redirect"
        if any(x in ("HTTPS", "TLS") for x in protocols):
            policies = alternatives(p.get("SslPolicy"))
            if not policies:
                yield name, "no SslPolicy: the default policy accepts TLS 1.0"
            for pol in policies:
                if not (isinstance(pol, str) and TLS12_POLICY.match(pol)):
                    yield name, f"SslPolicy {pol!r} is not a TLS 1.2+ policy"
            if not items(p.get("Certificates")):
                yield name, "an HTTPS listener without a certificate"


# ---------------------------------------------------------------------------------------------
# images, logs, functions, instances
# ---------------------------------------------------------------------------------------------


@rule("ecr-scans-on-push", "every ECR repository scans images on push")
def ecr_scans_on_push(template: dict) -> Iterator[Finding]:
    for name, res in resources_of(template, "AWS::ECR::Repository"):
        values = get(props(res), "ImageScanningConfiguration", "ScanOnPush")
        if not values or not all(is_true(v) for v in values):
            yield name, "ImageScanningConfiguration.ScanOnPush is not true"


@rule(
    "logs-have-retention",
    "every log group has a retention; functions, builds and containers log only into such groups",
)
def logs_have_retention(template: dict) -> Iterator[Finding]:
    groups = dict(resources_of(template, "AWS::Logs::LogGroup"))
    for name, res in groups.items():
        if any(v is None for v in alternatives(props(res).get("RetentionInDays"))):
            yield name, "no RetentionInDays: logs are kept forever"
    group_names = [props(r).get("LogGroupName") for r in groups.values()]
    for name, res in resources_of(template, "AWS::Lambda::Function"):
        p = props(res)
        target = get(p, "LoggingConfig", "LogGroup")
        if target and all(refs(t) & set(groups) for t in target):
            continue
        implicit = _prefixed_name(p.get("FunctionName"), "/aws/lambda/")
        if implicit is not None and implicit in group_names:
            continue
        yield name, "logs into a log group Lambda creates without retention (set LoggingConfig.LogGroup)"
    for name, res in resources_of(template, "AWS::CodeBuild::Project"):
        cw = get(props(res), "LogsConfig", "CloudWatchLogs")
        if any(c.get("Status") == "DISABLED" for c in cw if isinstance(c, dict)):
            continue
        targets = [g for c in cw if isinstance(c, dict) for g in alternatives(c.get("GroupName"))]
        if not targets or not all(refs(t) & set(groups) for t in targets):
            yield name, "logs into a log group CodeBuild creates without retention"
    for name, res in resources_of(template, "AWS::ECS::TaskDefinition"):
        for container in items(props(res).get("ContainerDefinitions")):
            for options in get(container, "LogConfiguration", "Options"):
                if isinstance(options, dict) and is_true(options.get("awslogs-create-group")):
                    yield name, "awslogs-create-group makes a log group without retention"


def _prefixed_name(value: Any, prefix: str) -> Any:
    """The Fn::Sub/literal form of `prefix + value`, to compare with a LogGroupName."""
    if isinstance(value, str):
        return prefix + value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return {"Fn::Sub": prefix + value["Fn::Sub"]}
    return None


# Lambda runtimes lakehub accepts, with the date AWS deprecates each (AWS Lambda "Supported
# runtimes" table, checked November 2026). Python 3.12 or later only; past its date a runtime
# stops passing, so the templates move on before AWS blocks updates.
LAMBDA_RUNTIME_DEPRECATION: dict[str, date] = {
    "python3.12": date(2028, 10, 31),
    "python3.13": date(2029, 6, 30),
    "python3.14": date(2029, 6, 30),
}


@rule("lambda-runtimes-supported", "every function runs a supported runtime (python3.12+, before its deprecation date)")
def lambda_runtimes_supported(template: dict, today: date | None = None) -> Iterator[Finding]:
    today = today or date.today()
    for name, res in resources_of(template, "AWS::Lambda::Function", "AWS::Serverless::Function"):
        p = props(res)
        if p.get("PackageType") == "Image":
            continue
        runtimes = alternatives(p.get("Runtime"))
        if not runtimes:
            yield name, "no Runtime"
        for runtime in runtimes:
            ends = LAMBDA_RUNTIME_DEPRECATION.get(runtime) if isinstance(runtime, str) else None
            if ends is None:
                yield name, f"runtime {runtime!r} is not a supported one ({', '.join(LAMBDA_RUNTIME_DEPRECATION)})"
            elif today >= ends:
                yield name, f"runtime {runtime} was deprecated on {ends.isoformat()}"


@rule("instances-require-imdsv2", "EC2 instances, launch templates and launch configurations require IMDSv2 tokens")
def instances_require_imdsv2(template: dict) -> Iterator[Finding]:
    good_templates: set[str] = set()

    def required(options: list[Any]) -> bool:
        return bool(options) and all(isinstance(o, dict) and o.get("HttpTokens") == "required" for o in options)

    for name, res in resources_of(template, "AWS::EC2::LaunchTemplate"):
        if required(get(props(res), "LaunchTemplateData", "MetadataOptions")):
            good_templates.add(name)
        else:
            yield name, "MetadataOptions.HttpTokens is not 'required'"
    for name, res in resources_of(template, "AWS::AutoScaling::LaunchConfiguration"):
        if not required(get(props(res), "MetadataOptions")):
            yield name, "MetadataOptions.HttpTokens is not 'required'"
    for name, res in resources_of(template, "AWS::EC2::Instance"):
        p = props(res)
        if required(get(p, "MetadataOptions")):
            continue
        lts = [r for spec in get(p, "LaunchTemplate") for r in refs(spec)]
        if lts and all(lt in good_templates for lt in lts):
            continue
        yield name, "does not require IMDSv2 (use a launch template with HttpTokens 'required')"


# Containers that may run as root, each with its reason (task definition, container name).
ROOT_CONTAINERS: dict[tuple[str, str], str] = {
    ("HubTaskDefinition", "hub"): (
        "the hub creates one Unix user per data scientist and starts each server as that user "
        "(shared mode, uid >= 200000, never 0); it runs no user code itself"
    ),
}


@rule("containers-run-as-non-root", "ECS containers (users' servers above all) run as a non-root user")
def containers_run_as_non_root(template: dict) -> Iterator[Finding]:
    for name, container in containers(template):
        cname = str(container.get("Name"))
        if (name, cname) in ROOT_CONTAINERS:
            continue
        users = alternatives(container.get("User"))
        if not users or any(not isinstance(u, str) or is_root_user(u) for u in users):
            yield name, f"container {cname} runs as {users or 'root (no User)'}"


# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------


@rule("iam-no-wildcard-actions", "no Allow of '*', of 'service:*' on '*', of 'iam:*', or of NotAction")
def iam_no_wildcard_actions(template: dict) -> Iterator[Finding]:
    for doc in policy_documents(template.get("Resources") or {}):
        if doc.kind == "trust":
            continue
        for s in statements(doc.document):
            if s.get("Effect") != "Allow":
                continue
            where = f"{doc.resource} ({doc.name})"
            if "NotAction" in s:
                yield where, "allows NotAction (everything but a list)"
            resources = statement_resources(s)
            on_everything = any(r == "*" for r in resources) or "NotResource" in s
            for action in statement_actions(s):
                if action == "*":
                    yield where, "allows every action ('*')"
                elif action.lower() == "iam:*":
                    yield where, "allows iam:*"
                elif action.endswith(":*") and on_everything:
                    yield where, f"allows {action} on '*'"


PASS_ROLE = "iam:passrole"


def _grants_pass_role(action: str) -> bool:
    return fnmatch.fnmatchcase(PASS_ROLE, action.lower())


def _scoped_role_resource(template: dict, resource: Any) -> bool:
    """A role ARN that names roles: a role of this template, a parameter, or an ARN whose role
    name starts with literal text or a variable (never '*' or 'role/*')."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target = next(iter(refs(resource)))
        return (template.get("Resources") or {}).get(target, {}).get("Type") == "AWS::IAM::Role"
    if isinstance(resource, dict) and set(resource) == {"Ref"}:
        return resource["Ref"] in (template.get("Parameters") or {})
    text: Any = resource
    if isinstance(resource, dict) and set(resource) == {"Fn::Sub"}:
        text = resource["Fn::Sub"][0] if isinstance(resource["Fn::Sub"], list) else resource["Fn::Sub"]
    if not isinstance(text, str):
        return False
    m = re.search(r":role/(.*)$", text)
    return bool(m) and not m.group(1).startswith("*") and bool(m.group(1).strip("*/"))


@rule("iam-pass-role-scoped", "iam:PassRole names the roles it passes and carries an iam:PassedToService condition")
def iam_pass_role_scoped(template: dict) -> Iterator[Finding]:
    for doc in policy_documents(template.get("Resources") or {}):
        if doc.kind != "identity":
            continue
        for s in statements(doc.document):
            if s.get("Effect") != "Allow" or not any(_grants_pass_role(a) for a in statement_actions(s)):
                continue
            where = f"{doc.resource} ({doc.name})"
            resources = statement_resources(s)
            if not resources or "NotResource" in s:
                yield where, "iam:PassRole without a Resource list"
            for r in resources:
                if not _scoped_role_resource(template, r):
                    yield where, f"iam:PassRole on {r!r}, not on named roles"
            cond = s.get("Condition") or {}
            services = [
                v
                for op in ("StringEquals", "StringLike", "ForAnyValue:StringEquals", "ForAnyValue:StringLike")
                for v in items((cond.get(op) or {}).get("iam:PassedToService"))
            ]
            if not services or any(v == "*" for v in services):
                yield where, "iam:PassRole without an iam:PassedToService condition"


def _wildcard_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(v == "*" for key in ("AWS", "Federated", "CanonicalUser") for v in items(principal.get(key)))
    return False


@rule("iam-trust-named-principals", "role trust policies name their principals (no '*' principal)")
def iam_trust_named_principals(template: dict) -> Iterator[Finding]:
    for doc in policy_documents(template.get("Resources") or {}):
        if doc.kind != "trust":
            continue
        for s in statements(doc.document):
            if s.get("Effect") == "Allow" and (_wildcard_principal(s.get("Principal")) or "NotPrincipal" in s):
                yield f"{doc.resource} ({doc.name})", "anyone may assume the role"


# Per-user scope (docs/SECURITY.md): data reaches users only through per-user sessions of a
# *data role* (the tier role, the on-demand hub's user role), never through a task role.
S3_READS = ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions")
PRINCIPAL_TAG_VARIABLE = re.compile(r"\$\{(?:!)?aws:PrincipalTag/([^}]+)\}", re.IGNORECASE)


def _role_statements(template: dict, role: str) -> list[dict]:
    """Allow statements of a role's inline policies and of the template's AWS::IAM::Policy /
    RolePolicy resources attached to it."""
    resources = template.get("Resources") or {}
    out: list[dict] = []
    for name, res in resources.items():
        p = props(res)
        if name == role and res.get("Type") == "AWS::IAM::Role":
            for pol in items(p.get("Policies")):
                if isinstance(pol, dict):
                    out += statements(pol.get("PolicyDocument"))
        elif res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy"):
            if role in refs(p.get("Roles")) | refs(p.get("RoleName")):
                out += statements(p.get("PolicyDocument"))
    return [s for s in out if s.get("Effect") == "Allow"]


def _s3_actions(statement: dict) -> list[str]:
    return [a for a in statement_actions(statement) if a.lower().startswith("s3:") or a == "*"]


# The hub's own database replica (lakehub_hub.hub_state, lakehub.stacks.names.HUB_STATE_ROOT): the hub
# reads and lists it, and it holds no data. Exempt only when every resource, and for a listing
# every s3:prefix value, is under this root, and the statement names its actions (no wildcard).
HUB_STATE_PREFIX = "hub-state/"
HUB_STATE_ACTIONS = ("s3:getobject", "s3:putobject", "s3:deleteobject", "s3:listbucket")


def _only_hub_state(statement: dict) -> bool:
    actions = [a.lower() for a in _s3_actions(statement)]
    if not actions or any(a not in HUB_STATE_ACTIONS for a in actions) or len(actions) != len(statement_actions(statement)):
        return False
    if "DataBucket" in " ".join(refs(statement_resources(statement))):
        return False
    if "s3:listbucket" in actions:
        like = {k.lower(): v for k, v in ((statement.get("Condition") or {}).get("StringLike") or {}).items()}
        prefixes = items(like.get("s3:prefix"))
        if not prefixes or not all(any(t.startswith(HUB_STATE_PREFIX) for t in strings(p)) for p in prefixes):
            return False
        return actions == ["s3:listbucket"]
    return all(any(HUB_STATE_PREFIX in t for t in strings(r)) for r in statement_resources(statement))


def _reaches_data(statement: dict) -> str | None:
    """Why an Allow statement reaches data (S3 reads or lists anywhere, or any S3 action on the
    data-lake bucket), or None. The hub's own state prefix is not data (`_only_hub_state`)."""
    if _only_hub_state(statement):
        return None
    actions = _s3_actions(statement)
    reads = [a for a in actions if any(fnmatch.fnmatchcase(r.lower(), a.lower()) for r in S3_READS)]
    if reads:
        return f"allows {', '.join(reads)}"
    if actions and any("DataBucket" in r for r in refs(statement_resources(statement))):
        return f"allows {', '.join(actions)} on the data-lake bucket"
    return None


@rule(
    "ecs-task-roles-reach-no-data",
    "no ECS task runs with a role that reaches data (S3 reads or lists, or anything on the data lake): "
    "users get data only as per-user sessions of a data role",
)
def ecs_task_roles_reach_no_data(template: dict) -> Iterator[Finding]:
    resources = template.get("Resources") or {}
    for td, res in resources_of(template, "AWS::ECS::TaskDefinition"):
        for arn in alternatives(props(res).get("TaskRoleArn")):
            if arn is None:
                continue
            targets = refs(arn)
            role = next((r for r in targets if (resources.get(r) or {}).get("Type") == "AWS::IAM::Role"), None)
            if role is None:
                yield td, f"task role {arn!r} is not a role of this template, so what it reaches cannot be checked"
                continue
            if props(resources[role]).get("ManagedPolicyArns"):
                yield td, f"task role {role} has managed policies, which cannot be checked"
            for s in _role_statements(template, role):
                why = _reaches_data(s)
                if why:
                    yield td, f"task role {role} {why} ({s.get('Sid') or 'statement'})"


def _condition_requires(condition: dict, key: str) -> bool:
    """The Condition block requires `key` to be present: Null false, or a String/Arn operator
    (without IfExists) on it, whose values are not '*' alone."""
    for operator, tests in (condition or {}).items():
        if not isinstance(tests, dict):
            continue
        for k, values in tests.items():
            if k.lower() != key.lower():
                continue
            op = operator.lower()
            if op == "null" and all(str(v).lower() == "false" for v in items(values)):
                return True
            if op.startswith(("stringequals", "stringlike", "arnequals", "arnlike")) and not op.endswith("ifexists"):
                if not any(str(v) in ("*", "") for v in items(values)):
                    return True
    return False


@rule(
    "data-roles-trust-only-named-sessions",
    "a data role (one reaching the data-lake bucket or scoped by a session tag) is assumable only by named "
    "AWS principals that must set a SourceIdentity and every session tag its policies read",
)
def data_roles_trust_only_named_sessions(template: dict) -> Iterator[Finding]:
    for role, res in resources_of(template, "AWS::IAM::Role"):
        allowed = _role_statements(template, role)
        reaches_lake = any(_s3_actions(s) and any("DataBucket" in r for r in refs(statement_resources(s))) for s in allowed)
        tags = {m.group(1) for s in allowed for text in strings(s.get("Resource")) for m in PRINCIPAL_TAG_VARIABLE.finditer(text)}
        if not reaches_lake and not tags:
            continue
        trust = [s for s in statements(props(res).get("AssumeRolePolicyDocument")) if s.get("Effect") == "Allow"]
        if not trust:
            yield role, "a data role without a trust statement"
        for s in trust:
            principal = s.get("Principal")
            kinds = set(principal) if isinstance(principal, dict) else {"*"}
            if kinds != {"AWS"} or "NotPrincipal" in s:
                yield role, f"trusts {sorted(kinds)} principals; a data role trusts named AWS principals only (the hub's role)"
            actions = {a.lower() for a in statement_actions(s)}
            if "sts:setsourceidentity" not in actions:
                yield role, "trust allows no sts:SetSourceIdentity (AssumeRole with a SourceIdentity would fail)"
            condition = s.get("Condition") or {}
            if not _condition_requires(condition, "sts:SourceIdentity"):
                yield role, "trust does not require a SourceIdentity (CloudTrail could not name the person)"
            for tag in sorted(tags):
                if "sts:tagsession" not in actions:
                    yield role, f"its policies read session tag {tag} but the trust allows no sts:TagSession"
                if not _condition_requires(condition, f"aws:RequestTag/{tag}"):
                    yield role, f"its policies read session tag {tag} but the trust does not require it"


# Values a parameter that ends up inside an IAM ARN must refuse: IAM reads '*' and '?' there as
# wildcards, so such a value would widen the policy (a tier prefix "*/" reaches every tier).
WILDCARD_PROBES = ("*", "?", "*/", "a*", "a*/", "a/*/", "a?/", "*.zip", "a/*.zip", "arn:aws:iam::123456789012:role/*")


def _admits_wildcards(spec: dict) -> str | None:
    if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
        return None  # written by the platform stacks, not typed in at launch
    if spec.get("Type") == "Number":
        return None
    if "AllowedValues" in spec:
        bad = [v for v in spec["AllowedValues"] if "*" in str(v) or "?" in str(v)]
        return f"allowed value {bad[0]!r}" if bad else None
    pattern = spec.get("AllowedPattern")
    if pattern is None:
        return "no AllowedPattern: any value, '*' included"
    for probe in WILDCARD_PROBES:
        if re.fullmatch(pattern, probe):
            return f"its AllowedPattern accepts {probe!r}"
    return None


@rule(
    "iam-arn-parameters-admit-no-wildcards",
    "parameters that become part of IAM resource ARNs or *Like condition patterns refuse '*' and '?'",
)
def iam_arn_parameters_admit_no_wildcards(template: dict) -> Iterator[Finding]:
    params = template.get("Parameters") or {}
    reported: set[tuple[str, str]] = set()
    for doc in policy_documents(template.get("Resources") or {}):
        for s in statements(doc.document):
            # resource ARNs, and the values of *Like conditions (s3:prefix patterns and the like)
            patterns = items(s.get("Resource")) + items(s.get("NotResource"))
            for operator, tests in (s.get("Condition") or {}).items():
                if "Like" in operator and isinstance(tests, dict):
                    patterns += [v for values in tests.values() for v in items(values)]
            for resource in patterns:
                for name in sorted(refs(resource) & set(params)):
                    why = _admits_wildcards(params[name])
                    if why and (doc.resource, name) not in reported:
                        reported.add((doc.resource, name))
                        yield f"{doc.resource} ({doc.name})", f"parameter {name} is part of a resource ARN and {why}"


def main(argv: list[str] | None = None) -> int:
    """`python -m lakehub.checks.rules [TEMPLATE...]`: every rule over the given (default: the
    generated) templates; one line per violation, exit status 1 when there is any."""
    return SECURITY.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
