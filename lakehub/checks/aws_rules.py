"""AWS behaviour that cfn-lint does not check and the emulator (moto) does not model.

Each rule here guards one fact of docs/AWS_NOTES.md: a template can pass cfn-lint and deploy
into moto, and still fail (or break at run time) in a real account. Same shape as the security
rules (lakehub.checks.rules): a function over one loaded template that yields (resource, message)
and, registered, returns `Violation`s; every branch of every Fn::If read. tests/security/test_aws_rules.py runs each rule over the generated
templates (no violation) and over tests/security/fixtures/aws/bad_<rule>.yaml (at least one).
`lakehub build --lint` and `python -m lakehub.checks.aws_rules` run them too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from lakehub.stacks.names import HUB_LOGOUT_RETURN_PATH, IMAGE_USER_HOMES
from lakehub.cfn.walk import alternatives, items, props, refs, resources_of
from lakehub.checks.dockerfile import is_root_user
from lakehub.checks.rules import Finding, RuleSet, containers

AWS = RuleSet("AWS rules")
AWS_RULES = AWS.rules
AWS_RULE_DOCS = AWS.docs
aws_rule = AWS.rule
check_template = AWS.check_template

ROOT = Path(__file__).resolve().parents[2]


def _parameter(template: dict, value: Any) -> dict | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return (template.get("Parameters") or {}).get(value["Ref"])
    return None


def _resource_type(template: dict, name: str) -> str:
    return str(((template.get("Resources") or {}).get(name) or {}).get("Type", ""))


def sub_text(value: Any) -> list[str]:
    """The text shapes a value may take: literals as they are, Fn::Sub with its own variables
    substituted (recursively), Fn::Join joined; other intrinsics become `${?}`."""
    out: list[str] = []
    for alt in alternatives(value):
        if isinstance(alt, str):
            out.append(alt)
        elif isinstance(alt, dict) and "Fn::Sub" in alt:
            arg = alt["Fn::Sub"]
            text, variables = arg if isinstance(arg, list) else (arg, {})
            shapes = [text]
            for var, var_value in (variables or {}).items():
                shapes = [s.replace("${" + var + "}", v) for s in shapes for v in (sub_text(var_value) or ["${?}"])]
            out += shapes
        elif isinstance(alt, dict) and "Fn::Join" in alt:
            sep, parts = alt["Fn::Join"]
            texts = [""]
            for part in items(parts) if isinstance(parts, list) else [parts]:
                texts = [t + (sep if t or i else "") + p for i, t in enumerate(texts) for p in (sub_text(part) or ["${?}"])]
            out += texts
        else:
            out.append("${?}")
    return out


# ---------------------------------------------------------------------------------------------
# ECS secrets
# ---------------------------------------------------------------------------------------------


# A Secrets Manager ARN names the secret plus "-" and 6 random characters; without them it is a
# partial ARN, which ECS does not document (docs/AWS_NOTES.md).
_FULL_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$")
_SSM_PARAMETER_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/.+$")
SECRET_LOOKUP_TYPE = "Custom::SecretArn"  # lambdas/secret_arn: its Data Arn is the full ARN


def _full_arn_problem(template: dict, value: Any) -> str | None:
    """Why a ValueFrom may not be a full ARN (None when it certainly is one): a Ref to a Secrets
    Manager secret or its Id (its full ARN), GetAtt Arn of Custom::SecretArn, a literal full
    secret ARN or SSM parameter ARN. A name, a partial ARN (Fn::Sub cannot know the 6 random
    characters) and a parameter (it admits either, and is a launcher's choice) are not."""
    if isinstance(value, str):
        if _FULL_SECRET_ARN.match(value) or _SSM_PARAMETER_ARN.match(value):
            return None
        return (
            "a partial secret ARN (no '-' and 6 random characters)"
            if ":secretsmanager:" in value
            else "a name: ECS reads a name as an SSM parameter"
        )
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if _resource_type(template, value["Ref"]) == "AWS::SecretsManager::Secret":
            return None
        if _parameter(template, value) is not None:
            return "a parameter, which may hold a name or a partial ARN"
        return "not a secret's ARN"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        name, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
        rtype = _resource_type(template, name)
        if (rtype, attr) in ((SECRET_LOOKUP_TYPE, "Arn"), ("AWS::SecretsManager::Secret", "Id")):
            return None
        return f"attribute {attr} of a {rtype or 'missing resource'}, not a looked-up secret ARN ({SECRET_LOOKUP_TYPE})"
    if isinstance(value, dict) and "Fn::Sub" in value:
        arg = value["Fn::Sub"]
        text, variables = arg if isinstance(arg, list) else (arg, {})
        # One key of a JSON secret the stack makes: its full ARN (Ref, or GetAtt Id) then
        # `:json-key:version-stage:version-id` (ECS's documented form, docs/AWS_NOTES.md).
        keyed = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.Id)?\}(?::[^:${}]*){3}", str(text))
        if (
            keyed
            and keyed.group(1) not in (variables or {})
            and _resource_type(template, keyed.group(1)) == "AWS::SecretsManager::Secret"
        ):
            return None
        shapes = sub_text(value)
        if shapes and all(t.startswith("arn:") and ":ssm:" in t and ":parameter/" in t for t in shapes):
            return None
        if any(":secretsmanager:" in t for t in shapes):
            return "a partial secret ARN built with Fn::Sub (the 6 random characters are known only by lookup: Custom::SecretArn)"
        return "a name: ECS reads a name as an SSM parameter"
    return "not known to be a full ARN"


@aws_rule(
    "ecs-secrets-by-arn",
    "ECS Secrets[].ValueFrom is the full ARN of a Secrets Manager secret (a Ref to a secret, optionally with :json-key:version-stage:version-id; GetAtt Arn of Custom::SecretArn) or of an SSM parameter: a bare name is read as an SSM parameter, a partial ARN is undocumented",
)
def ecs_secrets_by_arn(template: dict) -> Iterator[Finding]:
    for name, container in containers(template):
        secrets = items(container.get("Secrets")) + [
            s
            for lc in alternatives(container.get("LogConfiguration"))
            if isinstance(lc, dict)
            for s in items(lc.get("SecretOptions"))
        ]
        for secret in secrets:
            if not isinstance(secret, dict):
                continue
            for value in alternatives(secret.get("ValueFrom")):
                problem = _full_arn_problem(template, value)
                if problem:
                    yield name, f"secret {secret.get('Name')} takes ValueFrom {value!r}: {problem}"


# ---------------------------------------------------------------------------------------------
# Lambda concurrency
# ---------------------------------------------------------------------------------------------


@aws_rule(
    "no-reserved-concurrency",
    "functions reserve no concurrency (an account keeps 100 unreserved; new accounts' quota may be 10)",
)
def no_reserved_concurrency(template: dict) -> Iterator[Finding]:
    for name, res in resources_of(template, "AWS::Lambda::Function", "AWS::Serverless::Function"):
        if [v for v in alternatives(props(res).get("ReservedConcurrentExecutions")) if v is not None]:
            yield (
                name,
                "ReservedConcurrentExecutions fails the stack where the account's concurrency quota is below 100 + the reservation",
            )


# ---------------------------------------------------------------------------------------------
# ECS ListTasks authorization
# ---------------------------------------------------------------------------------------------


def _statements(template: dict) -> Iterator[tuple[str, dict]]:
    from lakehub.checks.iam import policy_documents, statements

    for doc in policy_documents(template.get("Resources") or {}):
        if doc.kind != "identity":
            continue
        for s in statements(doc.document):
            yield f"{doc.resource} ({doc.name})", s


@aws_rule(
    "ecs-list-tasks-on-any-resource",
    "ecs:ListTasks is allowed on '*' (narrow it with the ecs:cluster condition): without a container-instance filter it is authorized against '*'",
)
def ecs_list_tasks_on_any_resource(template: dict) -> Iterator[Finding]:
    for where, s in _statements(template):
        if s.get("Effect") != "Allow":
            continue
        actions = [a for a in items(s.get("Action")) if isinstance(a, str)]
        if not any(a.lower() == "ecs:listtasks" for a in actions):
            continue
        resources = items(s.get("Resource"))
        if resources != ["*"] and "*" not in resources:
            yield where, f"ecs:ListTasks on {resources!r} is denied unless the call names a container instance"


# ---------------------------------------------------------------------------------------------
# ECS task actions scoped by tag
# ---------------------------------------------------------------------------------------------

ECS_TASK_ACTIONS = ("ecs:describetasks", "ecs:stoptask")
TAG_CONDITION_KEY = re.compile(r"^(aws|ecs):ResourceTag/.+$", re.IGNORECASE)


def _condition_keys(statement: dict, operators: tuple[str, ...]) -> set[str]:
    keys: set[str] = set()
    for operator, entries in (statement.get("Condition") or {}).items():
        if operator in operators and isinstance(entries, dict):
            keys |= set(entries)
    return keys


def _may_name_tasks(statement: dict) -> bool:
    """Whether a statement's resources may include ECS tasks ("*", a task ARN pattern, or any
    ECS resource of an account)."""
    for resource in items(statement.get("Resource")):
        for text in sub_text(resource):
            if text == "*" or ":task/" in text or re.search(r":ecs:[^:]*:[^:]*:\*$", text):
                return True
    return False


@aws_rule(
    "ecs-task-access-by-tier-tag",
    "ecs:DescribeTasks and ecs:StopTask are allowed only with an aws:ResourceTag condition, and "
    "ecs:TagResource only at creation (ecs:CreateAction): ECS authorizes these per task with its tags; moto ignores the conditions",
)
def ecs_task_access_by_tier_tag(template: dict) -> Iterator[Finding]:
    for where, s in _statements(template):
        if s.get("Effect") != "Allow":
            continue
        actions = {a.lower() for a in items(s.get("Action")) if isinstance(a, str)}
        task_actions = sorted(actions & set(ECS_TASK_ACTIONS))
        if task_actions and not any(TAG_CONDITION_KEY.match(k) for k in _condition_keys(s, ("StringEquals",))):
            yield (
                where,
                f"{', '.join(task_actions)} without a StringEquals aws:ResourceTag/<key> condition reaches every task of the cluster (every tier's)",
            )
        if (
            "ecs:tagresource" in actions
            and _may_name_tasks(s)
            and "ecs:CreateAction" not in _condition_keys(s, ("StringEquals",))
        ):
            yield (
                where,
                "ecs:TagResource without a StringEquals ecs:CreateAction condition can re-tag existing tasks, and so open another tier's tasks",
            )


# ---------------------------------------------------------------------------------------------
# Listener rule priorities
# ---------------------------------------------------------------------------------------------

LISTENER_KEYS = ("HttpsListenerArn",)  # a nested stack given one of these adds a rule to that listener
PRIORITY_KEY = "ListenerPriority"
# Custom::ListenerPriority claims its priority with an SSM PutParameter without Overwrite under
# this property's path, so two stacks created at once cannot both take the same priority.
CLAIM_PROPERTY = "ClaimParameterPrefix"


def _literal_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@aws_rule(
    "listener-priorities-by-construction",
    "stacks that add rules to one listener never pick priorities independently: siblings get distinct literal priorities, and an allocator claims atomically",
)
def listener_priorities_by_construction(template: dict) -> Iterator[Finding]:
    # Sibling nested stacks that share a listener: CloudFormation creates them in parallel.
    taken: dict[int, str] = {}
    for name, res in resources_of(template, "AWS::CloudFormation::Stack"):
        params = props(res).get("Parameters") or {}
        if not isinstance(params, dict) or not any(k in params for k in LISTENER_KEYS + (PRIORITY_KEY,)):
            continue
        values = alternatives(params.get(PRIORITY_KEY))
        if PRIORITY_KEY not in params or not values:
            yield (
                name,
                f"adds a listener rule without a {PRIORITY_KEY}: it would pick the lowest free priority at the same time as its siblings",
            )
            continue
        for value in values:
            number = _literal_int(value)
            if number is None or number <= 0:
                yield name, f"{PRIORITY_KEY} {value!r} is not a literal priority of its own (1-50000)"
            elif number in taken:
                yield name, f"{PRIORITY_KEY} {number} is also given to {taken[number]}"
            else:
                taken[number] = name
    # Allocators must claim atomically.
    for name, res in resources_of(template, "Custom::ListenerPriority"):
        if not [v for v in alternatives(props(res).get(CLAIM_PROPERTY)) if v not in (None, "")]:
            yield name, f"allocates a priority without {CLAIM_PROPERTY}: two stacks created at once may be given the same one"
    # Rules of one template on one listener.
    by_listener: dict[str, dict[int, str]] = {}
    for name, res in resources_of(template, "AWS::ElasticLoadBalancingV2::ListenerRule"):
        p = props(res)
        listener = repr(p.get("ListenerArn"))
        for value in alternatives(p.get("Priority")):
            number = _literal_int(value)
            if number is None:
                continue
            seen = by_listener.setdefault(listener, {})
            if number in seen:
                yield name, f"priority {number} is also {seen[number]}'s on the same listener"
            seen[number] = name


# ---------------------------------------------------------------------------------------------
# Cognito sign-out
# ---------------------------------------------------------------------------------------------


@aws_rule(
    "cognito-logout-urls-registered",
    f"every Cognito app client registers the sign-out URL the hub sends (<hub URL>{HUB_LOGOUT_RETURN_PATH}); Cognito redirects only to registered ones",
)
def cognito_logout_urls_registered(template: dict) -> Iterator[Finding]:
    for name, res in resources_of(template, "AWS::Cognito::UserPoolClient"):
        p = props(res)
        flows = [f for f in items(p.get("AllowedOAuthFlows"))]
        if not flows:
            continue
        callbacks = [t for v in items(p.get("CallbackURLs")) for t in sub_text(v)]
        logouts = [t for v in items(p.get("LogoutURLs")) for t in sub_text(v)]
        for callback in callbacks:
            base = callback.rsplit("/hub/", 1)[0] if "/hub/" in callback else None
            if base is None:
                continue
            wanted = base + HUB_LOGOUT_RETURN_PATH
            if wanted not in logouts:
                yield name, f"the hub at {base} signs out to {wanted}, which is not among LogoutURLs {logouts}"


# ---------------------------------------------------------------------------------------------
# Container working directories
# ---------------------------------------------------------------------------------------------


@aws_rule(
    "containers-work-where-their-user-can-enter",
    "every container that runs as a non-root user sets a WorkingDirectory that user owns (the image's WORKDIR is root's)",
)
def containers_work_where_their_user_can_enter(template: dict) -> Iterator[Finding]:
    for name, container in containers(template):
        for user in alternatives(container.get("User")):
            if not isinstance(user, str) or is_root_user(user):
                continue
            home = IMAGE_USER_HOMES.get(user.split(":")[0])
            dirs = [d for d in alternatives(container.get("WorkingDirectory")) if d is not None]
            cname = container.get("Name")
            if not dirs:
                yield (
                    name,
                    f"container {cname} runs as {user} in the image's WORKDIR, which that user may not enter (set WorkingDirectory)",
                )
            for d in dirs:
                if home is None or not isinstance(d, str) or not (d == home or d.startswith(home + "/")):
                    yield (
                        name,
                        f"container {cname} runs as {user} in {d!r}, not in a directory that user owns ({home or 'unknown user'})",
                    )


# ---------------------------------------------------------------------------------------------
# EFS volumes (users' homes)
# ---------------------------------------------------------------------------------------------

EFS_MIN_FARGATE_VERSION = (1, 4, 0)


def _version(text: str) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(".")) if re.fullmatch(r"\d+(\.\d+)*", text) else None


@aws_rule(
    "efs-volumes-over-tls-with-iam",
    "every EFS volume of a task definition mounts through an access point with TLS and IAM authorization, on Fargate 1.4.0 or later",
)
def efs_volumes_over_tls_with_iam(template: dict) -> Iterator[Finding]:
    """The homes file system's policy refuses clients without TLS and (having a policy)
    anonymous ones; only an access point enforces a home's root and POSIX user; Fargate mounts
    EFS from platform version 1.4.0 (docs/AWS_NOTES.md). moto checks none of this."""
    with_efs = set()
    for name, res in resources_of(template, "AWS::ECS::TaskDefinition"):
        for volume in items(props(res).get("Volumes")):
            for cfg in alternatives(volume.get("EFSVolumeConfiguration") if isinstance(volume, dict) else None):
                if not isinstance(cfg, dict):
                    continue
                with_efs.add(name)
                vname = volume.get("Name")
                if any(v != "ENABLED" for v in alternatives(cfg.get("TransitEncryption"))) or not alternatives(
                    cfg.get("TransitEncryption")
                ):
                    yield name, f"EFS volume {vname} mounts without TLS (TransitEncryption ENABLED); the file system refuses it"
                auth = alternatives(cfg.get("AuthorizationConfig"))
                if not auth or any(not isinstance(a, dict) or a.get("IAM") != "ENABLED" for a in auth):
                    yield (
                        name,
                        f"EFS volume {vname} mounts without IAM authorization (AuthorizationConfig IAM ENABLED): an anonymous client",
                    )
                if not auth or any(not isinstance(a, dict) or not a.get("AccessPointId") for a in auth):
                    yield name, f"EFS volume {vname} mounts the file system's root, not an access point"
    for name, res in resources_of(template, "AWS::ECS::Service"):
        if not refs(props(res).get("TaskDefinition")) & with_efs:
            continue
        for version in alternatives(props(res).get("PlatformVersion")):
            if version is None:  # unset: LATEST (1.4.0 or later)
                continue
            v = _version(version) if isinstance(version, str) else None
            if version != "LATEST" and (v is None or v < EFS_MIN_FARGATE_VERSION):
                yield (
                    name,
                    f"runs a task definition with EFS volumes on Fargate platform version {version!r}; EFS needs 1.4.0 or later",
                )


# ---------------------------------------------------------------------------------------------
# CodeBuild variables per source type
# ---------------------------------------------------------------------------------------------

# What CodeBuild sets in every build (CodeBuild user guide, "Environment variables in build
# environments"), and what it sets only for some source types.
CODEBUILD_ALWAYS = {
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "CODEBUILD_BUILD_ARN",
    "CODEBUILD_BUILD_ID",
    "CODEBUILD_BUILD_IMAGE",
    "CODEBUILD_BUILD_NUMBER",
    "CODEBUILD_BUILD_SUCCEEDING",
    "CODEBUILD_INITIATOR",
    "CODEBUILD_LOG_PATH",
    "CODEBUILD_PROJECT_ARN",
    "CODEBUILD_SRC_DIR",
    "CODEBUILD_START_TIME",
    "CODEBUILD_SOURCE_REPO_URL",
    "CODEBUILD_KMS_KEY_ID",
    "HOME",
    "PATH",
}
GIT_SOURCES = {"CODECOMMIT", "GITHUB", "GITHUB_ENTERPRISE", "BITBUCKET", "GITLAB", "GITLAB_SELF_MANAGED", "CODEPIPELINE"}
CODEBUILD_BY_SOURCE = {
    # "For Amazon S3, this does not apply" (resolved source version).
    "CODEBUILD_RESOLVED_SOURCE_VERSION": GIT_SOURCES,
    "CODEBUILD_SOURCE_VERSION": GIT_SOURCES | {"S3"},
    "CODEBUILD_WEBHOOK_TRIGGER": {"GITHUB", "GITHUB_ENTERPRISE", "BITBUCKET", "GITLAB", "GITLAB_SELF_MANAGED"},
    "CODEBUILD_WEBHOOK_HEAD_REF": {"GITHUB", "GITHUB_ENTERPRISE", "BITBUCKET", "GITLAB", "GITLAB_SELF_MANAGED"},
    "CODEBUILD_WEBHOOK_BASE_REF": {"GITHUB", "GITHUB_ENTERPRISE", "BITBUCKET", "GITLAB", "GITLAB_SELF_MANAGED"},
}


def _expansions(text: str) -> Iterator[str]:
    """The body of every ${...} expansion, nested ones included once as part of their parent."""
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            return
        depth, j = 0, start
        while j < len(text):
            if text.startswith("${", j):
                depth += 1
                j += 2
                continue
            if text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        yield text[start + 2 : j]
        i = j + 1


def _chain(body: str) -> tuple[list[str], str | None]:
    """`A:-${B:-x}` -> (["A", "B"], "x"); a default that is not an expansion ends the chain."""
    names: list[str] = []
    while True:
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?-)?(.*)$", body, re.S)
        if not m:
            return names, None
        names.append(m.group(1))
        if not m.group(2):
            return names, None
        rest = m.group(3)
        if rest.startswith("${") and rest.endswith("}"):
            body = rest[2:-1]
            continue
        return names, rest


def buildspec_problems(buildspec: dict, source_type: str, guaranteed: set[str]) -> list[str]:
    """References to CodeBuild variables that do not exist for `source_type` and have no value
    to fall back on. `guaranteed`: variables the project or the buildspec set to a value."""
    texts: list[str] = []
    for phase in (buildspec.get("phases") or {}).values():
        for command in (phase or {}).get("commands") or []:
            texts.append(str(command))
    problems = []
    for text in texts:
        for body in _expansions(text):
            names, default = _chain(body)
            missing = [n for n in names if n in CODEBUILD_BY_SOURCE and source_type not in CODEBUILD_BY_SOURCE[n]]
            if not missing:
                continue
            ok = any(
                n in guaranteed or n in CODEBUILD_ALWAYS or (n in CODEBUILD_BY_SOURCE and source_type in CODEBUILD_BY_SOURCE[n])
                for n in names
            )
            if not ok and not default:
                problems.append(
                    f"${{{body}}}: {', '.join(missing)} is not set for a {source_type} source, and nothing after it always is"
                )
    return problems


def _load_buildspec(spec: Any) -> dict | None:
    if not isinstance(spec, str):
        return None
    if "\n" in spec or "phases" in spec:
        return yaml.safe_load(spec)
    path = ROOT / spec
    return yaml.safe_load(path.read_text()) if path.is_file() else None


@aws_rule(
    "buildspec-variables-exist-for-source",
    "the buildspec relies only on CodeBuild variables that exist for each source type the project offers (no resolved source version for S3)",
)
def buildspec_variables_exist_for_source(template: dict) -> Iterator[Finding]:
    for name, res in resources_of(template, "AWS::CodeBuild::Project"):
        p = props(res)
        guaranteed = {
            str(v.get("Name"))
            for env in alternatives(p.get("Environment"))
            if isinstance(env, dict)
            for v in items(env.get("EnvironmentVariables"))
            if isinstance(v, dict) and v.get("Value") not in (None, "")
        }
        for source in alternatives(p.get("Source")):
            if not isinstance(source, dict):
                continue
            stype = str(source.get("Type", ""))
            buildspec = _load_buildspec(source.get("BuildSpec", "buildspec.yml"))
            if buildspec is None:
                yield name, f"cannot read the buildspec {source.get('BuildSpec')!r}"
                continue
            own = {k for k, v in ((buildspec.get("env") or {}).get("variables") or {}).items() if v not in (None, "")}
            for problem in buildspec_problems(buildspec, stype, guaranteed | own):
                yield name, problem


# ---------------------------------------------------------------------------------------------
# Egress that a schedule stops, for instances that run outside the schedule
# ---------------------------------------------------------------------------------------------

EC2_STATE_CHANGE = "EC2 Instance State-change Notification"
STARTING_STATES = {"pending", "running"}
ENDING_STATES = {"stopped", "terminated"}


def _zero(value: Any) -> bool:
    return any(str(v) == "0" for v in alternatives(value))


def _state_change_functions(template: dict) -> dict[str, set[str]]:
    """{function logical id: EC2 states of the EventBridge rules that invoke it}."""
    out: dict[str, set[str]] = {}
    for _, res in resources_of(template, "AWS::Events::Rule"):
        pattern = props(res).get("EventPattern")
        if not isinstance(pattern, dict) or "aws.ec2" not in (pattern.get("source") or []):
            continue
        if EC2_STATE_CHANGE not in (pattern.get("detail-type") or []):
            continue
        states = set((pattern.get("detail") or {}).get("state") or [])
        for target in items(props(res).get("Targets")):
            if isinstance(target, dict):
                for fn in refs(target.get("Arn")):
                    if _resource_type(template, fn) == "AWS::Lambda::Function":
                        out.setdefault(fn, set()).update(states)
    return out


@aws_rule(
    "scheduled-egress-follows-on-demand-instances",
    "a schedule that stops an Auto Scaling group (the NAT instance) lowers its floor only, and an EC2 state-change "
    "rule invokes a function that manages that group, so instances launched outside business hours get egress",
)
def scheduled_egress_follows_on_demand_instances(template: dict) -> Iterator[Finding]:
    keepers = _state_change_functions(template)
    stopped_groups: dict[str, list[str]] = {}
    for name, res in resources_of(template, "AWS::AutoScaling::ScheduledAction"):
        p = props(res)
        if not (_zero(p.get("MinSize")) or _zero(p.get("DesiredCapacity")) or _zero(p.get("MaxSize"))):
            continue
        for group in refs(p.get("AutoScalingGroupName")):
            stopped_groups.setdefault(group, []).append(name)
        if _zero(p.get("DesiredCapacity")):
            yield (
                name,
                "sets DesiredCapacity 0: it stops the instance even while an on-demand hub needs egress, fighting the function that keeps it up; lower MinSize only",
            )
        if _zero(p.get("MaxSize")):
            yield (
                name,
                "sets MaxSize 0: nothing can start the instance for an on-demand hub until the next business day; lower MinSize only",
            )
    for group, actions in sorted(stopped_groups.items()):
        managing = [
            fn
            for fn, states in keepers.items()
            if STARTING_STATES <= states
            and ENDING_STATES <= states
            and group in refs((props((template.get("Resources") or {})[fn]).get("Environment") or {}))
        ]
        if not managing:
            yield (
                group,
                f"scheduled actions {', '.join(sorted(actions))} stop it, but no EventBridge rule on '{EC2_STATE_CHANGE}' "
                "(pending, running, stopped, terminated) invokes a function that manages it: an on-demand hub launched "
                "outside business hours has no egress (Session Manager, ECR, Secrets Manager, cfn-signal)",
            )


# ---------------------------------------------------------------------------------------------
# Alarm topics
# ---------------------------------------------------------------------------------------------
AWS_MANAGED_SNS_KEY = "alias/aws/sns"
ALARM_ACTIONS = ("AlarmActions", "OKActions", "InsufficientDataActions")


@aws_rule(
    "alarm-topic-not-aws-managed-key",
    "a topic that CloudWatch alarms notify is not encrypted with the AWS-managed key alias/aws/sns: its key policy "
    "cannot be changed to let CloudWatch use it, so the alarms' notifications would never be delivered",
)
def alarm_topic_not_aws_managed_key(template: dict) -> Iterator[Finding]:
    notified: set[str] = set()
    for _, res in resources_of(template, "AWS::CloudWatch::Alarm"):
        for key in ALARM_ACTIONS:
            notified |= refs(props(res).get(key))
    for name, res in resources_of(template, "AWS::SNS::Topic"):
        if name not in notified:
            continue
        for key in alternatives(props(res).get("KmsMasterKeyId")):
            if any(AWS_MANAGED_SNS_KEY in text or text.endswith(":alias/aws/sns") for text in sub_text(key)):
                yield (
                    name,
                    "CloudWatch alarms notify it but it is encrypted with alias/aws/sns, which CloudWatch cannot use: "
                    "use a customer managed key whose policy allows cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*, or no SSE",
                )


def main(argv: list[str] | None = None) -> int:
    """`python -m lakehub.checks.aws_rules [TEMPLATE...]`: one line per violation, exit 1 when any."""
    return AWS.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
