"""`lakehub cost`: what a configuration costs a month, estimated from the generated templates.

The estimate reads templates/*.yaml (not a copy of their settings): the entry-point template's
parameters and the parameters it passes to each nested stack, overridden with
`--parameter Key=Value`; each child template is resolved for those values (conditions,
intrinsics), and the resources that remain are priced with lakehub/cost/prices.yaml:

- load balancer, its public IPv4 addresses (one per subnet), the NAT instance (instance type,
  public IPv4, root volume) or NAT gateways (and their Elastic IPs);
- each tier's hub tasks: size, CPU architecture, capacity provider (Fargate or Fargate Spot) and
  the hours its scheduled actions leave it running (the NAT instance's group likewise);
- in per-user mode, users' servers: size, architecture and capacity from the user-server task
  definition and the hub's environment;
- secrets, the hosted zone, logs (retention from the log group), notebook storage (noncurrent
  version expiry from the bucket), ECR (lifecycle) and CodeBuild (compute type).

Quantities the templates cannot give (image size, log volume, notebook volume...) are the
price file's `assumptions`. The figures are set beside the reference design (two 1 vCPU / 2 GB
x86 tasks 24x7 behind an ALB) and SageMaker Studio for the same usage; docs/COST.md explains
the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import Resolver, TemplateError
from lakehub.cfn.template import load as _load_template
from lakehub.errors import LakehubError
from lakehub.settings import FARGATE_USER_SIZES
from lakehub_hub import contract

PRICES_FILE = Path(__file__).resolve().parent / "prices.yaml"
DEFAULT_REGION = "us-east-1"
DEFAULT_SERVER_SIZE = "2048/8192"
HOURS_PER_WEEK = 168
MAX_MONTH_HOURS = 744  # 31 days

# Components, in the order the table shows them.
COMPONENTS = {
    "alb": "Application Load Balancer",
    "public_ipv4": "Public IPv4 addresses",
    "egress": "Egress (NAT)",
    "hub_tasks": "Hub tasks",
    "user_capacity": "User capacity",
    "route53": "Route 53 hosted zone",
    "secrets": "Secrets Manager",
    "logs": "CloudWatch Logs",
    "notebook_storage": "Notebook storage (S3)",
    "data_events": "CloudTrail S3 data events",
    "homes": "Homes (EFS) and their backups",
    "monitoring": "CloudWatch alarms, dashboard, hub metrics",
    "ecr": "ECR image storage",
    "codebuild": "CodeBuild image builds",
    # What a compliance profile adds (issue 19; docs/COST.md), each read from the templates.
    "kms": "KMS customer managed keys",
    "access_logs": "Access logs (ALB, S3) kept in S3",
    "detailed_monitoring": "EC2 detailed monitoring",
    "container_insights": "ECS Container Insights",
    "image_scanning": "ECR image scanning",
}

# The design lakehub replaces (docs/COST.md): per tier one 1 vCPU / 2 GB x86 task 24x7, one
# ALB with a public IPv4 address per AZ, one hosted zone. Prices come from the same file.
REFERENCE = {"tiers": 2, "task_vcpu": 1.0, "task_gb": 2.0, "alb": 1, "public_ipv4": 2, "hosted_zones": 1}


class CostError(LakehubError):
    """A bad cost input: the message names the cause and the fix."""


# --------------------------------------------------------------------------------------------
# prices
# --------------------------------------------------------------------------------------------
@dataclass
class Prices:
    region: str
    items: dict[str, dict]
    assumptions: dict[str, float]
    hours_per_month: float
    path: Path

    def usd(self, key: str) -> float:
        return float(self.items[key]["usd"])

    def by(self, key: str, sub: str, kind: str) -> float:
        table = self.items[key][sub]
        if kind not in table:
            raise CostError(
                f"{self.path.name} has no {key} price for {kind!r} in {self.region}; add it (with its source) or change the template"
            )
        value = table[kind]
        return float(value["usd"] if isinstance(value, dict) else value)

    @property
    def spot_discount(self) -> float:
        return float(self.items["fargate_spot_discount"]["fraction"])

    def fargate_hour(self, vcpu: float, gb: float, arch: str = "ARM64", spot: float = 0.0) -> float:
        """Price of one task-hour; `spot` is the share of the task on Fargate Spot (0..1)."""
        kind = "arm" if arch.upper() == "ARM64" else "x86"
        on_demand = vcpu * self.usd(f"fargate_{kind}_vcpu_hour") + gb * self.usd(f"fargate_{kind}_gb_hour")
        return on_demand * (1 - spot * self.spot_discount)

    def a(self, key: str) -> float:
        return float(self.assumptions[key])


def load_prices(region: str = DEFAULT_REGION, path: str | Path | None = None) -> Prices:
    p = Path(path) if path else PRICES_FILE
    if not p.is_file():
        raise CostError(f"price file {str(p)!r} not found; give the path of a prices YAML file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        raise CostError(f"price file {p.name} is not valid YAML; fix its syntax") from None
    regions = data.get("regions") or {}
    if region not in regions:
        raise CostError(
            f"no prices for region {region!r} in {p.name} (it has {', '.join(sorted(regions))}); use --region {' or '.join(sorted(regions))}, or add the region's prices with their sources"
        )
    items = regions[region]
    for key, item in items.items():
        if not item.get("source") or not item.get("recorded"):
            raise CostError(f"{p.name}: {region}.{key} has no source or recorded date; every price needs both")
    assumptions = {k: float(v["value"]) for k, v in (data.get("assumptions") or {}).items()}
    return Prices(region, items, assumptions, float(data.get("hours_per_month", 730)), p)


# --------------------------------------------------------------------------------------------
# usage profile
# --------------------------------------------------------------------------------------------
@dataclass
class Profile:
    users: int = 20
    hours_per_day: float = 8.0
    days_per_month: float = 21.0
    server_size: str = DEFAULT_SERVER_SIZE
    # Hours a month on-demand EC2 hubs run outside business hours (together: overlapping hubs
    # count once); the NAT instance runs for them (lambdas/nat_egress).
    off_hours_hub_hours: float = 0.0
    # GB a user keeps in their EFS home (None: the price file's home_gb_per_user assumption).
    home_gb_per_user: float | None = None

    @property
    def user_hours(self) -> float:
        return self.users * self.hours_per_day * self.days_per_month

    def check(self) -> None:
        if self.users < 0:
            raise CostError(f"--users {self.users}: the number of users cannot be negative; give 0 or more")
        if not 0 <= self.hours_per_day <= 24:
            raise CostError(f"--hours-per-day {self.hours_per_day:g}: must be between 0 and 24")
        if not 0 <= self.days_per_month <= 31:
            raise CostError(f"--days-per-month {self.days_per_month:g}: must be between 0 and 31")
        if self.home_gb_per_user is not None and self.home_gb_per_user < 0:
            raise CostError(f"--home-gb-per-user {self.home_gb_per_user:g}: a home cannot be smaller than 0 GB")
        if not 0 <= self.off_hours_hub_hours <= MAX_MONTH_HOURS:
            raise CostError(
                f"--off-hours-hub-hours {self.off_hours_hub_hours:g}: must be between 0 and {MAX_MONTH_HOURS} (a month's hours)"
            )


def parse_size(text: str, profiles: dict[str, tuple[int, int]]) -> tuple[int, int, str]:
    """`2048/8192` (CPU units / MiB) or a profile name offered by the tier -> (cpu, memory, label)."""
    m = re.fullmatch(r"(\d+)\s*[/:x]\s*(\d+)", text.strip())
    if m:
        cpu, mem = int(m.group(1)), int(m.group(2))
        if cpu <= 0 or mem <= 0:
            raise CostError(f"--server-size {text}: CPU units and memory must be positive, e.g. 2048/8192")
        check_server_size(cpu, mem, text)
        return cpu, mem, f"{cpu / 1024:g} vCPU / {mem / 1024:g} GB"
    if text in profiles:
        cpu, mem = profiles[text]
        return cpu, mem, f"{text} ({cpu / 1024:g} vCPU / {mem / 1024:g} GB)"
    offered = ", ".join(profiles) or "none"
    raise CostError(f"--server-size {text!r}: not CPU/MEMORY (e.g. 2048/8192) nor a size the tiers offer ({offered})")


def check_server_size(cpu: int, memory: int, text: str) -> None:
    """A CostError unless Fargate runs a task of `cpu` units and `memory` MiB (the hub contract's
    FARGATE_USER_SIZES: the sizes a per-user server may have; Amazon ECS developer guide, "Task
    CPU and memory", and the RegisterTaskDefinition `cpu`/`memory` reference)."""
    try:
        contract.check_fargate_size(cpu, memory, FARGATE_USER_SIZES)
    except contract.FargateSizeError as exc:
        hint = ", e.g. 2048/8192" if exc.field == "cpu" else ""
        raise CostError(f"--server-size {text}: {exc}{hint}") from None


def parse_profiles(text: str, tier: str = "") -> dict[str, tuple[int, int]]:
    """name -> (cpu, memory) of a tier's LAKEHUB_USER_PROFILES (the contract's parser); {} when unset."""
    if not str(text or "").strip():
        return {}
    try:
        return {p["name"]: (p["cpu"], p["memory"]) for p in contract.parse_profiles(str(text))}
    except contract.ContractError as exc:
        raise CostError(f"tier {tier}: {contract.ENV_USER_PROFILES}: {exc}") from None


# --------------------------------------------------------------------------------------------
# schedules: weekly running hours from cron expressions
# --------------------------------------------------------------------------------------------
DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


def _field(text: str, lo: int, hi: int, names_map: dict[str, int] | None = None, offset: int = 0) -> set[int]:
    """Values of one cron field: *, ?, numbers or names, a-b ranges, lists, /steps."""
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            step = int(s)
        if part in ("*", "?"):
            start, end = lo, hi
        else:
            bounds = part.split("-")

            def num(v: str) -> int:
                v = v.upper()
                if names_map and v in names_map:
                    return names_map[v]
                return int(v) - offset

            start = num(bounds[0])
            end = num(bounds[1]) if len(bounds) > 1 else (hi if step > 1 else start)
        values.update(range(start, end + 1, step))
    return {v % (hi + 1) if names_map else v for v in values}


def parse_cron(expr: str) -> tuple[set[int], set[int], set[int]]:
    """(minutes, hours, weekdays 0=Sunday) of an Application Auto Scaling `cron(...)` (6 fields,
    weekday 1-7 = SUN-SAT) or an EC2 Auto Scaling Unix cron (5 fields, weekday 0-6 = SUN-SAT).
    Day-of-month and month must be `*` or `?`: a weekly pattern is what a month is made of."""
    text = expr.strip()
    aas = text.startswith("cron(") and text.endswith(")")
    fields_ = text[5:-1].split() if aas else text.split()
    if len(fields_) != (6 if aas else 5):
        raise CostError(f"schedule {expr!r}: cannot read this cron expression; use minutes, hours and days of the week only")
    minute, hour, dom, month, dow = fields_[:5]
    if dom not in ("*", "?") or month not in ("*", "?") or (aas and fields_[5] != "*"):
        raise CostError(
            f"schedule {expr!r}: the estimate handles weekly schedules only (day of month, month and year must be * or ?)"
        )
    try:
        days = _field(dow, 0, 6, DOW_NAMES, offset=1 if aas else 0)
        return _field(minute, 0, 59), _field(hour, 0, 23), days
    except ValueError:
        raise CostError(f"schedule {expr!r}: cannot read this cron expression") from None


def weekly_hours(actions: list[tuple[str, float]], initial: float) -> float:
    """Capacity-hours in a week for scheduled actions (cron, capacity), e.g. tasks or instances.
    The capacity before the first action of the week is the one the last action left."""
    events: dict[int, float] = {}
    for expr, capacity in actions:
        minutes, hours, days = parse_cron(expr)
        for d in days:
            for h in hours:
                for m in minutes:
                    events[(d * 24 + h) * 60 + m] = capacity
    if not events:
        return initial * HOURS_PER_WEEK
    week = 7 * 24 * 60
    state = events[max(events)]
    total = 0.0
    for minute in range(week):
        state = events.get(minute, state)
        total += state
    return total / 60


def active_days(actions: list[tuple[str, float]]) -> int:
    days: set[int] = set()
    for expr, capacity in actions:
        if capacity > 0:
            days |= parse_cron(expr)[2]
    return len(days)


# --------------------------------------------------------------------------------------------
# reading the templates
# --------------------------------------------------------------------------------------------
_LOADED: dict[str, dict] = {}


def load(path: Path) -> dict:
    """A template as a dict; parsed once per content (the estimate never changes it)."""
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    if key not in _LOADED:
        if len(_LOADED) > 64:
            _LOADED.clear()
        try:
            template = _load_template(path)
        except TemplateError as exc:
            what = f"not valid YAML (line {exc.line}: {exc.problem})" if exc.line else f"not a template ({exc.problem})"
            raise CostError(
                f"template {path} is {what}; rebuild the folder with `python build_templates.py --out {path.parent}`"
            ) from None
        if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
            raise CostError(
                f"template {path} has no Resources; rebuild the folder with `python build_templates.py --out {path.parent}`"
            )
        _LOADED[key] = template
    return _LOADED[key]


@dataclass
class Stack:
    name: str  # logical id in main (or "main")
    filename: str
    template: dict
    params: dict[str, Any]

    def resolver(self, region: str) -> Resolver:
        return Resolver(self.template, self.params, pseudo={"AWS::Region": region})

    def resources(self, region: str) -> dict[str, dict]:
        return self.resolver(region).resources()


def _check_value(key: str, value: str, spec: dict, where: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and str(value) not in [str(a) for a in allowed]:
        raise CostError(f"--parameter {key}={value}: not allowed by {where}; use one of {', '.join(map(str, allowed))}")
    pattern = spec.get("AllowedPattern")
    if pattern and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, str(value)):
        raise CostError(f"--parameter {key}={value}: {spec.get('ConstraintDescription', 'does not match ' + pattern)} ({where})")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise CostError(f"--parameter {key}={value}: must be a number ({where})") from None
        if "MinValue" in spec and number < float(spec["MinValue"]) or "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise CostError(f"--parameter {key}={value}: {spec.get('ConstraintDescription', 'out of range')} ({where})")


def _rule_value(resolver: Resolver, node: Any) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        ((k, arg),) = node.items()
        if k == "Fn::Contains":
            return str(_rule_value(resolver, arg[1])) in [str(v) for v in _rule_value(resolver, arg[0])]
        if k == "Fn::Equals":
            return str(_rule_value(resolver, arg[0])) == str(_rule_value(resolver, arg[1]))
        if k == "Fn::Not":
            return not _rule_value(resolver, arg[0])
        if k == "Fn::And":
            return all(_rule_value(resolver, a) for a in arg)
        if k == "Fn::Or":
            return any(_rule_value(resolver, a) for a in arg)
        return resolver.resolve(node)
    if isinstance(node, list):
        return [_rule_value(resolver, n) for n in node]
    return node


def check_rules(stack: Stack, region: str) -> None:
    """The template's Rules (e.g. valid Fargate sizes), as CloudFormation would check them."""
    r = stack.resolver(region)
    for name, rule in (stack.template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not _rule_value(r, rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not _rule_value(r, assertion["Assert"]):
                raise CostError(f"{stack.filename} ({stack.name}): {assertion.get('AssertDescription', name)}")


def read_configuration(templates_dir: Path, main_file: str, overrides: dict[str, str], region: str) -> dict[str, Stack]:
    """main and each nested stack, with the parameter values CloudFormation would give them."""
    if not templates_dir.is_dir():
        raise CostError(
            f"--templates {templates_dir}: no such folder; build one with `python build_templates.py --out {templates_dir}`"
        )
    main_path = templates_dir / main_file
    if not main_path.is_file():
        raise CostError(f"template {main_path} not found; run `python build_templates.py` or give --templates")
    main_t = load(main_path)
    main_params = {k: v.get("Default", f"<{k}>") for k, v in main_t.get("Parameters", {}).items()}

    children: dict[str, tuple[str, dict, dict]] = {}
    for logical, res in main_t.get("Resources", {}).items():
        if res.get("Type") != "AWS::CloudFormation::Stack":
            continue
        url = json.dumps(res["Properties"]["TemplateURL"])
        m = re.search(r"([a-z-]+\.template\.yaml)", url)
        if not m or not (templates_dir / m.group(1)).is_file():
            raise CostError(
                f"{main_file}: nested stack {logical} points at a template not in {templates_dir}; rebuild the templates"
            )
        children[logical] = (m.group(1), load(templates_dir / m.group(1)), res["Properties"].get("Parameters", {}))

    # Apply overrides: to main if it has the parameter, else to every child that has it.
    unknown = []
    child_overrides: dict[str, dict[str, str]] = {k: {} for k in children}
    for key, value in overrides.items():
        placed = False
        if key in main_params:
            _check_value(key, value, main_t["Parameters"][key], main_file)
            main_params[key] = value
            placed = True
        else:
            for logical, (fname, tmpl, _) in children.items():
                spec = tmpl.get("Parameters", {}).get(key)
                if spec is not None:
                    _check_value(key, value, spec, fname)
                    child_overrides[logical][key] = value
                    placed = True
        if not placed:
            unknown.append(key)
    if unknown:
        raise CostError(
            f"--parameter {', '.join(unknown)}: no such parameter in {main_file} or the stacks it nests; see docs/PARAMETERS.md"
        )

    main_stack = Stack("main", main_file, main_t, main_params)
    check_rules(main_stack, region)
    main_r = main_stack.resolver(region)
    stacks = {"main": main_stack}
    for logical, (fname, tmpl, passed) in children.items():
        condition = main_t["Resources"][logical].get("Condition")
        if condition and not main_r.condition(condition):
            continue  # a stack main leaves out (e.g. DeployNonpiiTier=false) costs nothing
        resolved = main_r.resolve(passed)
        params = {}
        for key, spec in tmpl.get("Parameters", {}).items():
            if key in child_overrides[logical]:
                params[key] = child_overrides[logical][key]
            elif spec.get("Type", "").startswith("AWS::SSM::Parameter::Value"):
                # A platform value read from SSM at deploy time: main's own value where it has one.
                params[key] = main_params.get(key, f"<ssm:{key}>")
            elif key in resolved:
                params[key] = resolved[key]
            else:
                params[key] = spec.get("Default", f"<{key}>")
        stack = Stack(logical, fname, tmpl, params)
        check_rules(stack, region)
        stacks[logical] = stack
    return stacks


def _strip(ref: Any) -> str:
    return str(ref).strip("<>")


def _true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def _env(container: dict) -> dict[str, Any]:
    return {e["Name"]: e.get("Value") for e in container.get("Environment", []) if isinstance(e, dict)}


def _spot_share(strategy: list[dict] | None) -> float:
    items = [s for s in (strategy or []) if isinstance(s, dict)]
    if not items:
        return 0.0
    total = sum(float(s.get("Weight", 1)) for s in items) or 1.0
    return sum(float(s.get("Weight", 1)) for s in items if s.get("CapacityProvider") == "FARGATE_SPOT") / total


# --------------------------------------------------------------------------------------------
# the estimate
# --------------------------------------------------------------------------------------------
@dataclass
class Component:
    idle: float = 0.0  # $ per month with nobody signed in
    per_user_hour: float = 0.0  # $ per active user-hour
    profile: float | None = None  # $ per month for the profile (None: idle + user-hours x per-hour)
    off_hours: float = 0.0  # $ per month the profile's on-demand hubs add outside business hours
    detail: list[str] = field(default_factory=list)


@dataclass
class Tier:
    name: str
    mode: str
    hub_vcpu: float
    hub_gb: float
    hub_arch: str
    hub_spot: float
    min_tasks: int
    max_tasks: int
    hub_task_hours: float  # per month, the MinTasks floor under its schedule
    business_hours_per_day: float | None  # hours the hub runs on an active day (None: 24x7)
    business_days_per_week: int
    user_arch: str
    user_spot: float
    profiles: dict[str, tuple[int, int]]
    idle_timeout_h: float  # the idle culler stops a server this long after its last activity


class Estimate:
    def __init__(self, stacks: dict[str, Stack], prices: Prices, profile: Profile):
        self.stacks = stacks
        self.p = prices
        self.profile = profile
        self.c = {k: Component() for k in COMPONENTS}
        self.notes: list[str] = []
        self.tiers: list[Tier] = []
        self.hours = prices.hours_per_month
        self.weeks = self.hours / HOURS_PER_WEEK
        self.egress_mode = "existing VPC"
        self.schedule: dict[str, Any] = {}
        self._nat_instance: dict[str, Any] | None = None
        self._run()

    # -- helpers ------------------------------------------------------------------------------
    def _stacks(self, filename: str) -> list[Stack]:
        return [s for s in self.stacks.values() if s.filename == filename]

    def _res(self, filename: str) -> list[dict[str, dict]]:
        return [s.resources(self.p.region) for s in self._stacks(filename)]

    def _all(self, kind: str) -> list[tuple[Stack, str, dict]]:
        """(stack, logical id, resource) of every resource of a type in the deployed stacks."""
        if not hasattr(self, "_resolved"):
            self._resolved = {name: s.resources(self.p.region) for name, s in self.stacks.items()}
        return [(self.stacks[n], k, r) for n, res in self._resolved.items() for k, r in res.items() if r["Type"] == kind]

    def _bucket_days(self, ref: Any) -> int | None:
        """Days a bucket keeps its objects (an enabled whole-bucket expiration rule), found by the
        bucket's logical id (a Ref) or its name; None when it has none or it is not in the stacks."""
        for _stack, logical, r in self._all("AWS::S3::Bucket"):
            props = r.get("Properties", {})
            text = str(ref)
            name = text.split(":::", 1)[1].split("/", 1)[0] if text.startswith("arn:") else text  # an S3 ARN: its bucket
            if _strip(name).split(".")[0] != logical and name != str(props.get("BucketName")):  # a Ref, a GetAtt Arn, a name
                continue
            for rule in (props.get("LifecycleConfiguration") or {}).get("Rules", []):
                whole = not rule.get("Prefix") and not (rule.get("Filter") or {}).get("Prefix")
                if rule.get("Status", "Enabled") == "Enabled" and whole and rule.get("ExpirationInDays"):
                    return int(rule["ExpirationInDays"])
        return None

    # -- components ---------------------------------------------------------------------------
    def _cluster(self) -> None:
        for stack in self._stacks(names.CLUSTER_TEMPLATE):
            # Task logs: the log group the cluster's LogGroupName output names.
            output = (stack.template.get("Outputs") or {}).get(names.LOG_GROUP_NAME, {}).get("Value", {})
            group = stack.resources(self.p.region).get(output.get("Ref", "") if isinstance(output, dict) else "")
            if group:
                self.log_retention_days = int(group["Properties"].get("RetentionInDays", 3653))
        for res in self._res(names.CLUSTER_TEMPLATE):
            for r in res.values():
                props = r["Properties"]
                if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer" and props.get("Type", "application") == "application":
                    self.c["alb"].idle += self.p.usd("alb_hour") * self.hours
                    self.c["alb"].detail.append(f"1 ALB x {self.hours:g} h")
                    if props.get("Scheme", "internet-facing") == "internet-facing":
                        n = len(props.get("Subnets") or props.get("SubnetMappings") or [])
                        self.c["public_ipv4"].idle += n * self.p.usd("public_ipv4_hour") * self.hours
                        self.c["public_ipv4"].detail.append(f"{n} for the ALB (one per AZ) x {self.hours:g} h")

        self.c["alb"].per_user_hour += self.p.a("alb_lcu_per_active_user") * self.p.usd("alb_lcu_hour")
        self.c["alb"].detail.append(f"{self.p.a('alb_lcu_per_active_user'):g} LCU per active user")
        main = self.stacks["main"].template.get("Parameters", {})
        if names.HOSTED_ZONE_ID in main:
            self.c["route53"].idle += self.p.usd("route53_hosted_zone_month")
            self.c["route53"].detail.append("the hosted zone of the domain (alias records to the ALB: queries free)")

    def _network(self) -> None:
        nets = self._res(names.NETWORK_TEMPLATE)
        if not nets:
            self.notes.append("existing VPC: its egress (NAT) is yours and not counted")
            return
        res = nets[0]
        net_params = self._stacks(names.NETWORK_TEMPLATE)[0].params
        self.egress_mode = str(net_params.get(names.EGRESS_MODE, "?"))
        eips = [k for k, r in res.items() if r["Type"] == "AWS::EC2::EIP"]
        gws = [k for k, r in res.items() if r["Type"] == "AWS::EC2::NatGateway"]
        e = self.c["egress"]
        if gws:
            e.idle += len(gws) * self.p.usd("nat_gateway_hour") * self.hours
            e.detail.append(f"{len(gws)} NAT gateway(s) x {self.hours:g} h")
            e.per_user_hour += self.p.a("nat_gb_per_user_hour") * self.p.usd("nat_gateway_gb")
            e.detail.append(f"{self.p.a('nat_gb_per_user_hour'):g} GB processed per user-hour")
        if eips:
            self.c["public_ipv4"].idle += len(eips) * self.p.usd("public_ipv4_hour") * self.hours
            self.c["public_ipv4"].detail.append(f"{len(eips)} Elastic IP(s) of the NAT gateways x {self.hours:g} h")
        for name, r in res.items():
            if r["Type"] != "AWS::AutoScaling::AutoScalingGroup":
                continue
            props = r["Properties"]
            lt = res[_strip(props["LaunchTemplate"]["LaunchTemplateId"])]["Properties"]["LaunchTemplateData"]
            itype = lt["InstanceType"]
            desired = float(props.get("DesiredCapacity", props.get("MinSize", 1)))
            actions = [
                (a["Properties"]["Recurrence"], float(a["Properties"].get("DesiredCapacity", a["Properties"].get("MinSize", 0))))
                for a in res.values()
                if a["Type"] == "AWS::AutoScaling::ScheduledAction" and _strip(a["Properties"]["AutoScalingGroupName"]) == name
            ]
            inst_hours = weekly_hours(actions, desired) * self.weeks
            self.schedule["nat_instance_hours_per_month"] = round(inst_hours, 2)
            ebs_gb = sum(float(m.get("Ebs", {}).get("VolumeSize", 0)) for m in lt.get("BlockDeviceMappings", []))
            public_ips = sum(1 for ni in lt.get("NetworkInterfaces", []) if ni.get("AssociatePublicIpAddress") in (True, "true"))
            self._nat_instance = {
                "type": itype,
                "hours": inst_hours,
                "instance_hour": self.p.by("ec2_instance_hour", "usd_by_type", itype)
                + ebs_gb * self.p.usd("ebs_gp3_gb_month") / self.hours,
                "ipv4_hour": public_ips * self.p.usd("public_ipv4_hour"),
            }
            e.idle += inst_hours * self.p.by("ec2_instance_hour", "usd_by_type", itype)
            e.detail.append(f"{itype} NAT instance x {inst_hours:.0f} h" + (" (scheduled)" if actions else ""))
            e.idle += ebs_gb * self.p.usd("ebs_gp3_gb_month") * inst_hours / self.hours
            e.detail.append(f"{ebs_gb:g} GB gp3 root volume while it runs")
            if public_ips:
                self.c["public_ipv4"].idle += public_ips * inst_hours * self.p.usd("public_ipv4_hour")
                self.c["public_ipv4"].detail.append(f"{public_ips} for the NAT instance x {inst_hours:.0f} h")

    def _tiers(self) -> None:
        for stack in self._stacks(names.TIER_TEMPLATE):
            res = stack.resources(self.p.region)
            params = stack.params
            service = next(r for r in res.values() if r["Type"] == "AWS::ECS::Service")["Properties"]
            hub_td = res[_strip(service["TaskDefinition"])]["Properties"]
            target = next((r for r in res.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"), None)
            min_tasks = int(float(target["Properties"]["MinCapacity"])) if target else int(float(service.get("DesiredCount", 1)))
            max_tasks = int(float(target["Properties"]["MaxCapacity"])) if target else min_tasks
            actions = [
                (a["Schedule"], float(a["ScalableTargetAction"].get("MinCapacity", 0)))
                for a in (target["Properties"].get("ScheduledActions") or [] if target else [])
            ]
            weekly = weekly_hours(actions, min_tasks)
            days = active_days(actions) if actions else 7
            per_day = (weekly / max(min_tasks, 1) / days) if actions and days else None
            user_td = next(
                (
                    r["Properties"]
                    for k, r in res.items()
                    if r["Type"] == "AWS::ECS::TaskDefinition" and k != _strip(service["TaskDefinition"])
                ),
                None,
            )
            env = _env(hub_td["ContainerDefinitions"][0])
            mode = "per-user" if user_td else "shared"
            tier = Tier(
                name=str(params.get(names.TIER_NAME, stack.name)),
                mode=mode,
                hub_vcpu=int(hub_td["Cpu"]) / 1024,
                hub_gb=int(hub_td["Memory"]) / 1024,
                hub_arch=(hub_td.get("RuntimePlatform") or {}).get("CpuArchitecture", "X86_64"),
                hub_spot=_spot_share(service.get("CapacityProviderStrategy")),
                min_tasks=min_tasks,
                max_tasks=max_tasks,
                hub_task_hours=weekly * self.weeks,
                business_hours_per_day=per_day,
                business_days_per_week=days,
                user_arch=((user_td or {}).get("RuntimePlatform") or {}).get("CpuArchitecture", "X86_64"),
                user_spot=1.0 if env.get("LAKEHUB_USER_CAPACITY") == "FARGATE_SPOT" else 0.0,
                profiles=parse_profiles(env.get(contract.ENV_USER_PROFILES, ""), str(params.get(names.TIER_NAME, stack.name))),
                idle_timeout_h=float(env.get("LAKEHUB_IDLE_TIMEOUT") or 0) / 3600,
            )
            self.tiers.append(tier)
            # A per-user hub's name for users' servers: a Cloud Map private DNS namespace is a
            # Route 53 private hosted zone (docs/HUB_ENV.md, "Hub replacement").
            zones = sum(1 for r in res.values() if r["Type"] == "AWS::ServiceDiscovery::PrivateDnsNamespace")
            if zones:
                self.c["route53"].idle += zones * self.p.usd("route53_hosted_zone_month")
                self.c["route53"].detail.append(f"tier {tier.name}: the private zone of its hub's name (Cloud Map namespace)")
        if not self.tiers:
            raise CostError("the templates define no tier; rebuild them with at least one tier")
        secrets = self._all("AWS::SecretsManager::Secret")
        self.c["secrets"].idle += len(secrets) * self.p.usd("secrets_manager_secret_month")
        self.c["secrets"].detail.append(
            f"{len(secrets)} secret(s): " + ", ".join(sorted({f"{s.name}.{n}" for s, n, _r in secrets}))
        )

    def _capacity(self) -> None:
        prof = self.profile
        all_profiles: dict[str, tuple[int, int]] = {}
        for t in self.tiers:
            all_profiles.update(t.profiles)
        cpu, mem, self.size_label = parse_size(prof.server_size, all_profiles)
        self.server_cpu, self.server_mem = cpu, mem
        vcpu, gb = cpu / 1024, mem / 1024
        users_per_tier = prof.users / len(self.tiers)
        hub, user = self.c["hub_tasks"], self.c["user_capacity"]
        per_hour_weighted = 0.0
        user_profile_cost = 0.0
        for t in self.tiers:
            price = self.p.fargate_hour(t.hub_vcpu, t.hub_gb, t.hub_arch, t.hub_spot)
            hub.idle += price * t.hub_task_hours
            spot = f" {'Spot' if t.hub_spot == 1 else 'on-demand' if t.hub_spot == 0 else f'{t.hub_spot:.0%} Spot'}"
            hub.detail.append(
                f"{t.name}: {t.min_tasks} x {t.hub_vcpu:g} vCPU / {t.hub_gb:g} GB {t.hub_arch}{spot} x {t.hub_task_hours / max(t.min_tasks, 1):.0f} h"
            )
            if t.business_hours_per_day is not None:
                if prof.hours_per_day > t.business_hours_per_day + 1e-9:
                    self.notes.append(
                        f"{t.name}: the profile's {prof.hours_per_day:g} h a day exceed the {t.business_hours_per_day:.1f} h the schedule keeps the hub up; widen BusinessHoursStart/End or use Schedule=always"
                    )
                max_days = t.business_days_per_week * self.weeks
                if prof.days_per_month > max_days + 1e-9:
                    self.notes.append(
                        f"{t.name}: the profile's {prof.days_per_month:g} days a month exceed the {max_days:.1f} business days of the schedule"
                    )
            if t.mode == "per-user":
                if t.profiles and (cpu, mem) not in t.profiles.values():
                    self.notes.append(
                        f"{t.name}: {cpu}/{mem} is not one of the sizes the tier offers ({', '.join(t.profiles)}); set UserServerSizes"
                    )
                rate = self.p.fargate_hour(vcpu, gb, t.user_arch, t.user_spot)
                per_hour_weighted += rate * users_per_tier
                # After the last activity of a session the server runs until the culler stops it.
                tail_h = self.p.a("sessions_per_user_day") * t.idle_timeout_h
                user_profile_cost += rate * users_per_tier * (prof.hours_per_day + tail_h) * prof.days_per_month
                user.detail.append(
                    f"{t.name}: one {vcpu:g} vCPU / {gb:g} GB {t.user_arch} {'Spot' if t.user_spot else 'on-demand'} task per active user (${rate:.4f}/h)"
                    + (f", plus {tail_h:g} h a day until the idle culler stops it" if tail_h else "")
                )
            else:
                fit = int(min(t.hub_vcpu / vcpu, t.hub_gb / gb))
                if fit < 1:
                    self.notes.append(
                        f"{t.name} (shared): a {vcpu:g} vCPU / {gb:g} GB server does not fit in a {t.hub_vcpu:g} vCPU / {t.hub_gb:g} GB task; counted as one user per task (raise TaskCpu/TaskMemory)"
                    )
                    fit = 1
                share = price / fit
                per_hour_weighted += share * users_per_tier
                needed = math.ceil(users_per_tier / fit) if users_per_tier else 0
                if needed > t.max_tasks:
                    self.notes.append(
                        f"{t.name} (shared): {users_per_tier:g} concurrent users need {needed} tasks of {fit} servers; MaxTasks is {t.max_tasks}, so users would share less than the size asked"
                    )
                    needed = t.max_tasks
                extra = max(0, needed - t.min_tasks)
                user_profile_cost += extra * price * prof.hours_per_day * prof.days_per_month
                user.detail.append(
                    f"{t.name} (shared): {fit} server(s) per task; {extra} task(s) beyond MinTasks while users work"
                )
        self.users_per_tier = users_per_tier
        user.per_user_hour = (
            per_hour_weighted / prof.users if prof.users else (per_hour_weighted or self._per_hour_one_user(vcpu, gb))
        )
        user.profile = user_profile_cost

    def _per_hour_one_user(self, vcpu: float, gb: float) -> float:
        """Per user-hour with no users in the profile: the rate of the first tier."""
        t = self.tiers[0]
        if t.mode == "per-user":
            return self.p.fargate_hour(vcpu, gb, t.user_arch, t.user_spot)
        fit = max(1, int(min(t.hub_vcpu / vcpu, t.hub_gb / gb)))
        return self.p.fargate_hour(t.hub_vcpu, t.hub_gb, t.hub_arch, t.hub_spot) / fit

    def _logs(self) -> None:
        retention = getattr(self, "log_retention_days", 30)
        # Steady state: each month's logs are stored for the retention's months (a log group
        # without RetentionInDays keeps them for ever: counted as ten years).
        months_kept = retention / 30.0
        hub_gb = sum(t.hub_task_hours for t in self.tiers) / self.hours * self.p.a("hub_log_gb_per_task_month")
        l = self.c["logs"]
        l.idle += hub_gb * (self.p.usd("logs_ingest_gb") + months_kept * self.p.usd("logs_store_gb_month"))
        l.per_user_hour += self.p.a("user_log_gb_per_user_hour") * (
            self.p.usd("logs_ingest_gb") + months_kept * self.p.usd("logs_store_gb_month")
        )
        l.detail.append(
            f"{hub_gb:.3f} GB/month from hubs, {self.p.a('user_log_gb_per_user_hour'):g} GB per user-hour, kept {retention} days"
        )

    def _storage(self) -> None:
        days = 0
        for stack in self._stacks(names.STORAGE_TEMPLATE):
            # The notebook bucket is the one the stack's NotebookBucketName output names.
            output = (stack.template.get("Outputs") or {}).get(names.NOTEBOOK_BUCKET_NAME, {}).get("Value", {})
            bucket = stack.resources(self.p.region).get(output.get("Ref", "") if isinstance(output, dict) else "")
            for rule in ((bucket or {}).get("Properties", {}).get("LifecycleConfiguration") or {}).get("Rules", []):
                nc = rule.get("NoncurrentVersionExpiration") or {}
                # Only a rule for the whole bucket sets how long notebooks' old versions stay
                # (a rule with a prefix, such as spawn-env/'s, covers a few objects).
                whole_bucket = not rule.get("Prefix") and not (rule.get("Filter") or {}).get("Prefix")
                if rule.get("Status", "Enabled") == "Enabled" and "NoncurrentDays" in nc and whole_bucket:
                    days = int(nc["NoncurrentDays"])
        if not days:
            days = 365
            self.notes.append("notebook bucket: no noncurrent-version expiry found; a year of old versions counted")
        per_user_gb = self.p.a("notebook_gb_per_user") + self.p.a("noncurrent_gb_per_user_per_day") * days
        s = self.c["notebook_storage"]
        s.idle = self.profile.users * per_user_gb * self.p.usd("s3_standard_gb_month")
        s.per_user_hour = self.p.a("notebook_puts_per_user_hour") / 1000 * self.p.usd("s3_put_per_1000") + self.p.a(
            "notebook_gets_per_user_hour"
        ) / 1000 * self.p.usd("s3_get_per_1000")
        s.detail.append(f"{per_user_gb:g} GB per user ({days}-day noncurrent-version expiry); autosave PUTs per user-hour")

    def _data_events(self) -> None:
        """RecordDataEvents=true: the trail records every object call on the notebook and
        data-lake buckets; each is a data event ($0.10 per 100,000)."""
        if not any(t.get("Type") == "AWS::CloudTrail::Trail" for res in self._res(names.STORAGE_TEMPLATE) for t in res.values()):
            self.c["data_events"].detail.append(f"off ({names.RECORD_DATA_EVENTS}=false)")
            return
        per_user_hour = (
            self.p.a("notebook_puts_per_user_hour")
            + self.p.a("notebook_gets_per_user_hour")
            + self.p.a("data_reads_per_user_hour")
        )
        d = self.c["data_events"]
        d.per_user_hour = per_user_hour / 100_000 * self.p.usd("cloudtrail_data_events_per_100k")
        d.detail.append(
            f"{per_user_hour:g} object calls per user-hour (notebook saves and opens, data-lake reads), each a data event"
        )

    def _homes(self) -> None:
        """Users' homes on the platform's EFS file system (cluster stack): storage, part of it in
        Infrequent Access after the lifecycle's days, and AWS Backup's recovery points."""
        fs = [r for res in self._res(names.CLUSTER_TEMPLATE) for r in res.values() if r["Type"] == "AWS::EFS::FileSystem"]
        if not fs:
            return
        props = fs[0].get("Properties", {})
        ia = self.p.a("home_ia_share") if any("TransitionToIA" in lp for lp in props.get("LifecyclePolicies") or []) else 0.0
        backups = (props.get("BackupPolicy") or {}).get("Status") == "ENABLED"
        gb = self.p.a("home_gb_per_user") if self.profile.home_gb_per_user is None else self.profile.home_gb_per_user
        per_gb = (1 - ia) * self.p.usd("efs_standard_gb_month") + ia * self.p.usd("efs_ia_gb_month")
        if backups:
            per_gb += self.p.a("home_backup_gb_per_home_gb") * self.p.usd("efs_backup_warm_gb_month")
        h = self.c["homes"]
        h.idle = self.profile.users * gb * per_gb
        h.detail.append(
            f"{gb:g} GB per user, {ia:.0%} in Infrequent Access"
            + (f", backups {self.p.a('home_backup_gb_per_home_gb'):g} GB per GB" if backups else ", no backups")
        )

    def _pipeline(self) -> None:
        for res in self._res(names.PIPELINE_TEMPLATE):
            for r in res.values():
                props = r["Properties"]
                if r["Type"] == "AWS::ECR::Repository":
                    keep = 20
                    policy = (props.get("LifecyclePolicy") or {}).get("LifecyclePolicyText")
                    if policy:
                        for rule in json.loads(policy).get("rules", []):
                            sel = rule.get("selection", {})
                            if sel.get("countType") == "imageCountMoreThan":
                                keep = int(sel["countNumber"])
                    else:
                        keep = 100
                        self.notes.append("ECR: no lifecycle policy; 100 images counted")
                    self.ecr_keep = keep
                    gb = self.p.a("image_gb") + self.p.a("image_delta_gb_per_build") * (keep - 1)
                    self.c["ecr"].idle += gb * self.p.usd("ecr_gb_month")
                    self.c["ecr"].detail.append(f"{gb:.1f} GB: one image plus the layers of up to {keep} kept images")
                if r["Type"] == "AWS::CodeBuild::Project":
                    env = props["Environment"]
                    kind = f"{env.get('Type', 'LINUX_CONTAINER')}/{env.get('ComputeType')}"
                    minutes = self.p.a("builds_per_month") * self.p.a("build_minutes")
                    self.c["codebuild"].idle += minutes * self.p.by("codebuild_minute", "usd_by_compute", kind)
                    self.c["codebuild"].detail.append(f"{minutes:g} build minutes on {kind}")

    def _run(self) -> None:
        self._cluster()
        self._network()
        self._tiers()
        self._capacity()
        self._logs()
        self._storage()
        self._data_events()
        self._homes()
        self._pipeline()
        self._monitoring()
        self._all("AWS::KMS::Key")  # resolve every stack once for the profile's checks below
        self._kms()
        self._access_logs()
        self._detailed_monitoring()
        self._container_insights()
        self._image_scanning()
        self._off_hours_hubs()
        if (
            any(t.business_hours_per_day is not None for t in self.tiers)
            and self.egress_mode == "nat-instance"
            and "nat_instance_hours_per_month" in self.schedule
        ):
            nat_h = self.schedule["nat_instance_hours_per_month"]
            for t in self.tiers:
                if t.hub_task_hours / max(t.min_tasks, 1) > nat_h + 1:
                    self.notes.append(
                        f"{t.name}: the hub runs {t.hub_task_hours / max(t.min_tasks, 1):.0f} h a month but the NAT instance only {nat_h:.0f} h; give the network stack the same Schedule"
                    )
        t0 = self.tiers[0]
        self.schedule.update(
            {
                "hub_hours_per_month": round(t0.hub_task_hours / max(t0.min_tasks, 1), 2),
                "business_hours_per_day": t0.business_hours_per_day,
                "business_days_per_week": t0.business_days_per_week,
            }
        )

    def _monitoring(self) -> None:
        """Observe (issue 18): every alarm of the deployed stacks, the dashboards beyond the
        account's free three, and each hub's custom metrics and PutMetricData calls while its task
        runs (lakehub_hub.metrics: the metrics it sends every minute; the sparse ones, sent only
        in a minute something happened, are left out). SNS e-mail: the first 1,000 a month are free."""
        from lakehub_hub.metrics import ALWAYS_SENT

        m = self.c["monitoring"]
        alarms = sum(
            1 for s in self.stacks.values() for r in s.resources(self.p.region).values() if r["Type"] == "AWS::CloudWatch::Alarm"
        )
        dashboards = sum(
            1
            for s in self.stacks.values()
            for r in s.resources(self.p.region).values()
            if r["Type"] == "AWS::CloudWatch::Dashboard"
        )
        m.idle += alarms * self.p.usd("cloudwatch_alarm_month")
        paid_dashboards = max(0, dashboards - 3)
        m.idle += paid_dashboards * self.p.usd("cloudwatch_dashboard_month")
        hub_hours = sum(t.hub_task_hours / max(t.min_tasks, 1) for t in self.tiers)
        metric_months = len(ALWAYS_SENT) * hub_hours / self.hours
        m.idle += metric_months * self.p.usd("cloudwatch_custom_metric_month")
        calls = 60 * hub_hours
        m.idle += calls / 1000 * self.p.usd("cloudwatch_put_metric_data_1k")
        m.detail.append(
            f"{alarms} alarms; {dashboards} dashboard(s) ({paid_dashboards} beyond the 3 free); "
            f"{len(ALWAYS_SENT)} metrics per hub x {hub_hours:.0f} hub-hours ({metric_months:.2f} metric-months); "
            f"{calls:,.0f} PutMetricData calls; alarm e-mails within SNS's free 1,000"
        )

    # -- what a compliance profile adds (issue 19) --------------------------------------------
    def _asg_hours(self, stack: Stack, asg: str) -> float:
        """Instance-hours a month of an Auto Scaling group under its scheduled actions."""
        res = self._resolved[stack.name]
        props = res[asg]["Properties"]
        desired = float(props.get("DesiredCapacity", props.get("MinSize", 1)))
        actions = [
            (a["Properties"]["Recurrence"], float(a["Properties"].get("DesiredCapacity", a["Properties"].get("MinSize", 0))))
            for a in res.values()
            if a["Type"] == "AWS::AutoScaling::ScheduledAction" and _strip(a["Properties"]["AutoScalingGroupName"]) == asg
        ]
        return weekly_hours(actions, desired) * self.weeks

    def _kms(self) -> None:
        """Customer managed keys ($1 a key-month) and the requests the stores that use them make."""
        keys = self._all("AWS::KMS::Key")
        k = self.c["kms"]
        if not keys:
            k.detail.append("none (AWS owned and AWS managed keys: no monthly charge)")
            return
        k.idle += len(keys) * self.p.usd("kms_key_month")
        k.per_user_hour += self.p.a("kms_requests_per_user_hour") / 10_000 * self.p.usd("kms_requests_10k")
        rotating = sum(1 for _s, _k, r in keys if _true(r["Properties"].get("EnableKeyRotation")))
        k.detail.append(
            f"{len(keys)} key(s) ({', '.join(sorted(f'{st.name}.{name}' for st, name, _r in keys))}) x $1; "
            f"{self.p.a('kms_requests_per_user_hour'):g} requests per user-hour; {rotating} with yearly rotation "
            "(each of the first two rotations adds $1 a key-month from the second year: not counted)"
        )

    def _access_logs(self) -> None:
        """ALB access logs and S3 server access logs: delivery is free (ELB and S3 user guides),
        the log objects are stored at the S3 price for as long as their bucket keeps them."""
        a = self.c["access_logs"]
        gb_month = self.p.usd("s3_standard_gb_month")
        for stack, name, r in self._all("AWS::ElasticLoadBalancingV2::LoadBalancer"):
            attrs = {
                x.get("Key"): x.get("Value") for x in r["Properties"].get("LoadBalancerAttributes") or [] if isinstance(x, dict)
            }
            if not _true(attrs.get("access_logs.s3.enabled")):
                a.detail.append(f"{name}: access logs off")
                continue
            days = self._log_days(name, attrs.get("access_logs.s3.bucket"), "access-log")
            gb = self.p.a("alb_log_bytes_per_user_hour") / 1e9
            a.per_user_hour += gb * days / 30 * gb_month
            a.detail.append(
                f"{name}: {gb * 1e3:g} MB of request logs per user-hour (health checks are not logged), kept {days} days"
            )
        notebook = self._output_ref(names.STORAGE_TEMPLATE, names.NOTEBOOK_BUCKET_NAME)
        data = self._output_ref(names.STORAGE_TEMPLATE, names.DATA_BUCKET_NAME)
        for stack, name, r in self._all("AWS::S3::Bucket"):
            log = r["Properties"].get("LoggingConfiguration")
            if not log:
                continue
            if name in notebook:
                requests, what = (
                    self.p.a("notebook_puts_per_user_hour") + self.p.a("notebook_gets_per_user_hour"),
                    "notebook saves and opens",
                )
            elif name in data:
                requests, what = self.p.a("data_reads_per_user_hour"), "data-lake reads"
            else:
                a.detail.append(f"{name}: server access logs (the platform's own few requests: not counted)")
                continue
            days = self._log_days(name, log.get("DestinationBucketName"), "server-access-log")
            gb = requests * self.p.a("s3_access_log_bytes_per_request") / 1e9
            a.per_user_hour += gb * days / 30 * gb_month
            a.detail.append(f"{name}: server access logs, {requests:g} {what} per user-hour, kept {days} days")

    def _log_days(self, name: str, bucket: Any, logs: str) -> int:
        """The days `name`'s log bucket keeps its `logs`: a year (and a note) when it expires nothing."""
        days = self._bucket_days(bucket)
        if days is None:
            days = 365
            self.notes.append(f"{name}: its {logs} bucket expires nothing (or is not in the templates); a year of logs counted")
        return days

    def _output_ref(self, filename: str, output: str) -> str:
        """The logical ids an output of a template names (Ref, or the branches of an If)."""
        for stack in self._stacks(filename):
            return json.dumps((stack.template.get("Outputs") or {}).get(output, {}).get("Value", ""))
        return ""

    def _detailed_monitoring(self) -> None:
        """EC2 detailed monitoring: 7 metrics an instance at the custom-metric price, for the hours
        it runs (an instance on the platform's stacks all month; a launch template's through its
        Auto Scaling group's schedule)."""
        d = self.c["detailed_monitoring"]
        item = self.p.items["ec2_detailed_monitoring_metrics"]
        per_hour = float(item["count"]) * float(item["usd"]) / self.hours
        for _stack, name, r in self._all("AWS::EC2::Instance"):
            if _true(r["Properties"].get("Monitoring")):
                d.idle += per_hour * self.hours
                d.detail.append(f"{name}: {item['count']} metrics x {self.hours:g} h")
        for stack, name, r in self._all("AWS::AutoScaling::AutoScalingGroup"):
            lt_ref = (r["Properties"].get("LaunchTemplate") or {}).get("LaunchTemplateId")
            lt = self._resolved[stack.name].get(_strip(lt_ref), {})
            data = (lt.get("Properties") or {}).get("LaunchTemplateData") or {}
            if _true((data.get("Monitoring") or {}).get("Enabled")):
                hours = self._asg_hours(stack, name)
                d.idle += per_hour * hours
                d.detail.append(f"{name}: {item['count']} metrics x {hours:.0f} h")
        if not d.detail:
            d.detail.append("off (basic 5-minute monitoring is free)")

    def _container_insights(self) -> None:
        """Container Insights on the cluster: its metrics are custom metrics (prorated by the hours
        they are published: while the hubs run), its performance log events are ingested into
        CloudWatch Logs (each running task, about once a minute)."""
        ci = self.c["container_insights"]
        clusters = [
            r
            for _s, _n, r in self._all("AWS::ECS::Cluster")
            if any(
                x.get("Name") == "containerInsights" and str(x.get("Value")) in ("enabled", "enhanced")
                for x in r["Properties"].get("ClusterSettings") or []
                if isinstance(x, dict)
            )
        ]
        if not clusters:
            ci.detail.append("off")
            return
        metric_hour = self.p.usd("cloudwatch_custom_metric_month") / self.hours
        cluster_hours = max((t.hub_task_hours / max(t.min_tasks, 1) for t in self.tiers), default=0.0)
        metrics = self.p.a("container_insights_metrics_per_cluster") * cluster_hours
        for t in self.tiers:
            families = 2 if t.mode == "per-user" else 1
            metrics += (
                (
                    self.p.a("container_insights_metrics_per_service")
                    + families * self.p.a("container_insights_metrics_per_task_family")
                )
                * t.hub_task_hours
                / max(t.min_tasks, 1)
            )
        ci.idle += len(clusters) * metrics * metric_hour
        gb_per_task_hour = self.p.a("container_insights_log_kb_per_task_minute") * 60 / 1e6
        log_price = self.p.usd("logs_ingest_gb") + getattr(self, "log_retention_days", 30) / 30 * self.p.usd(
            "logs_store_gb_month"
        )
        ci.idle += sum(t.hub_task_hours for t in self.tiers) * gb_per_task_hour * log_price
        ci.per_user_hour += gb_per_task_hour * log_price if any(t.mode == "per-user" for t in self.tiers) else 0.0
        ci.detail.append(
            f"{metrics / self.hours:.1f} metric-months (cluster, each tier's service and task families, while the hubs run); "
            f"{self.p.a('container_insights_log_kb_per_task_minute'):g} KB of performance logs per task-minute"
        )

    def _image_scanning(self) -> None:
        """Basic scan on push is free; enhanced scanning (Amazon Inspector) is paid per image
        pushed and per re-scan of the images the lifecycle keeps."""
        s = self.c["image_scanning"]
        enhanced = [
            r
            for _s, _n, r in self._all("AWS::ECR::RegistryScanningConfiguration")
            if r["Properties"].get("ScanType") == "ENHANCED"
        ]
        repos = self._all("AWS::ECR::Repository")
        if enhanced:
            keep = getattr(self, "ecr_keep", 20)
            pushes = self.p.a("builds_per_month") * len(repos)
            rescans = self.p.a("enhanced_rescans_per_image_month") * keep * len(repos)
            s.idle += pushes * self.p.usd("ecr_enhanced_scan_image") + rescans * self.p.usd("ecr_enhanced_rescan_image")
            s.detail.append(f"enhanced (Inspector): {pushes:g} images pushed and {rescans:g} re-scans a month")
            return
        basic = sum(
            1 for _s, _n, r in repos if _true((r["Properties"].get("ImageScanningConfiguration") or {}).get("ScanOnPush"))
        )
        s.detail.append(f"basic scan on push ({basic} repositories): free" if basic else "off")

    def _off_hours_hubs(self) -> None:
        """On-demand EC2 hubs outside business hours keep the NAT instance running (the NAT
        egress function): those NAT hours are the profile's, not the idle platform's."""
        asked = self.profile.off_hours_hub_hours
        if asked <= 0:
            return
        nat = self._nat_instance
        if self.egress_mode == "existing VPC":
            self.notes.append("on-demand hubs outside business hours: egress is your VPC's and not counted")
            return
        if nat is None or nat["hours"] >= self.hours - 1e-6:
            self.notes.append(
                f"on-demand hubs outside business hours add nothing: egress ({self.egress_mode}) runs all month anyway"
            )
            return
        spare = max(self.hours - nat["hours"], 0.0)
        hours = min(asked, spare)
        if asked > spare + 1e-9:
            self.notes.append(
                f"--off-hours-hub-hours {asked:g}: only {spare:.0f} h a month are outside the NAT instance's schedule; counted {hours:.0f} h"
            )
        self.schedule["nat_instance_hours_for_hubs_per_month"] = round(hours, 2)
        if hours <= 0:
            return
        self.c["egress"].off_hours += hours * nat["instance_hour"]
        self.c["egress"].detail.append(
            f"+ {nat['type']} NAT instance and its volume x {hours:.0f} h for on-demand hubs outside business hours (profile)"
        )
        if nat["ipv4_hour"]:
            self.c["public_ipv4"].off_hours += hours * nat["ipv4_hour"]
            self.c["public_ipv4"].detail.append(
                f"+ the NAT instance's x {hours:.0f} h for on-demand hubs outside business hours (profile)"
            )

    # -- totals -------------------------------------------------------------------------------
    def component_profile(self, c: Component) -> float:
        base = c.profile + c.idle if c.profile is not None else c.idle + self.profile.user_hours * c.per_user_hour
        return base + c.off_hours

    @property
    def idle(self) -> float:
        return sum(c.idle for c in self.c.values())

    @property
    def per_user_hour(self) -> float:
        return sum(c.per_user_hour for c in self.c.values())

    @property
    def profile_month(self) -> float:
        return sum(self.component_profile(c) for c in self.c.values())

    # reference design and SageMaker, same prices
    def reference(self) -> dict[str, float]:
        p, ref = self.p, REFERENCE
        idle = (
            ref["tiers"] * p.fargate_hour(ref["task_vcpu"], ref["task_gb"], "X86_64") * self.hours
            + ref["alb"] * p.usd("alb_hour") * self.hours
            + ref["public_ipv4"] * p.usd("public_ipv4_hour") * self.hours
            + ref["hosted_zones"] * p.usd("route53_hosted_zone_month")
        )
        per_hour = p.fargate_hour(self.server_cpu / 1024, self.server_mem / 1024, "X86_64")
        return {
            "idle_monthly_usd": idle,
            "per_user_hour_usd": per_hour,
            "profile_monthly_usd": idle + self.profile.user_hours * per_hour,
            "servers_24x7_monthly_usd": self.profile.users * per_hour * self.hours,
        }

    def sagemaker(self) -> dict[str, Any]:
        table = self.p.items["sagemaker_instance_hour"]["by_type"]
        vcpu, gb = self.server_cpu / 1024, self.server_mem / 1024
        fits = [(v["usd"], k) for k, v in table.items() if not v.get("burstable") and v["vcpu"] >= vcpu and v["memory_gb"] >= gb]
        if not fits:
            return {"instance": None, "per_user_hour_usd": None, "profile_monthly_usd": None, "idle_monthly_usd": 0.0}
        usd, kind = min(fits)
        return {
            "instance": kind,
            "idle_monthly_usd": 0.0,
            "per_user_hour_usd": usd,
            "profile_monthly_usd": usd * self.profile.user_hours,
        }

    def to_dict(self) -> dict[str, Any]:
        ref = self.reference()
        sm = self.sagemaker()
        r4 = lambda x: None if x is None else round(x, 4)  # noqa: E731
        r6 = lambda x: None if x is None else round(x, 6)  # noqa: E731
        return {
            "region": self.p.region,
            "profile": {
                "users": self.profile.users,
                "hours_per_day": self.profile.hours_per_day,
                "days_per_month": self.profile.days_per_month,
                "server_size": self.size_label,
                "user_hours_per_month": round(self.profile.user_hours, 2),
                "off_hours_hub_hours_per_month": self.profile.off_hours_hub_hours,
            },
            "configuration": {
                "egress_mode": self.egress_mode,
                "tiers": [
                    {
                        "name": t.name,
                        "server_mode": t.mode,
                        "hub_task": f"{t.hub_vcpu:g} vCPU / {t.hub_gb:g} GB {t.hub_arch}",
                        "hub_spot_share": t.hub_spot,
                        "min_tasks": t.min_tasks,
                        "max_tasks": t.max_tasks,
                        "hub_hours_per_month": round(t.hub_task_hours / max(t.min_tasks, 1), 2),
                        "user_servers": None if t.mode == "shared" else f"{t.user_arch} {'Spot' if t.user_spot else 'on-demand'}",
                    }
                    for t in self.tiers
                ],
                "schedule": self.schedule,
            },
            "idle_monthly_usd": r4(self.idle),
            "per_user_hour_usd": r6(self.per_user_hour),
            "profile_monthly_usd": r4(self.profile_month),
            "reference_idle_monthly_usd": r4(ref["idle_monthly_usd"]),
            "reference_per_user_hour_usd": r6(ref["per_user_hour_usd"]),
            "reference_profile_monthly_usd": r4(ref["profile_monthly_usd"]),
            "reference_servers_24x7_monthly_usd": r4(ref["servers_24x7_monthly_usd"]),
            "idle_vs_reference": round(self.idle / ref["idle_monthly_usd"], 4),
            "sagemaker": {
                "instance": sm["instance"],
                "per_user_hour_usd": r6(sm["per_user_hour_usd"]),
                "profile_monthly_usd": r4(sm["profile_monthly_usd"]),
            },
            "components": {
                key: {
                    "label": COMPONENTS[key],
                    "idle_monthly_usd": r4(c.idle),
                    "per_user_hour_usd": r6(c.per_user_hour),
                    "profile_monthly_usd": r4(self.component_profile(c)),
                    "detail": "; ".join(c.detail),
                }
                for key, c in self.c.items()
            },
            "notes": self.notes,
            "prices": str(self.p.path),
        }


def estimate(
    templates_dir: str | Path = TEMPLATES_DIR,
    parameters: dict[str, str] | None = None,
    profile: Profile | None = None,
    region: str = DEFAULT_REGION,
    prices_path: str | Path | None = None,
    main_file: str = names.MAIN_TEMPLATE,
) -> dict[str, Any]:
    """The estimate as a dict (the `--format json` output)."""
    profile = profile or Profile()
    profile.check()
    prices = load_prices(region, prices_path)
    stacks = read_configuration(Path(templates_dir), main_file, dict(parameters or {}), region)
    return Estimate(stacks, prices, profile).to_dict()
