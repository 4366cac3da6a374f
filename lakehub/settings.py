"""Build-time settings: which tiers the entry-point templates create by default.

Settings come from an optional YAML file (`python build_templates.py --settings FILE`);
without one, the seed's two tiers (`pii`, `nonpii`) are used. Validation is strict and every
error is one line that names the field: unknown fields, duplicate tier names, invalid Fargate
CPU/memory pairs and data-lake prefixes that overlap another tier's (which would leak data
across tiers) are all refused before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from lakehub_hub import contract

from lakehub.errors import LakehubError


class SettingsError(LakehubError):
    """A bad settings value: message is `settings: <field>: <cause>; <fix>`."""


# Valid Fargate task sizes: CPU units -> allowed memory (MiB), the hub contract's one table
# (lakehub_hub.contract). Tier (shared) tasks stop at 4 vCPU / 30 GB; per-user servers may be
# larger (8 vCPU / up to 60 GB, 16 vCPU / up to 120 GB).
FARGATE_SIZES = contract.FARGATE_TIER_SIZES
FARGATE_USER_SIZES = contract.FARGATE_USER_SIZES

TIER_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
PLATFORM_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
# No '*' (or '?'): a prefix becomes part of the tier role's IAM resource ARNs, where it is a
# wildcard ("*/" would reach every prefix of the lake, other tiers' included).
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*/$")
GROUP_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DATA_ACCESS = ("read-only", "read-write")
MAX_DATA_PREFIXES = 4  # per tier; the tier template has a slot for each
SERVER_MODES = contract.SERVER_MODES
COMPLIANCE_PROFILES = ("standard", "strict")
# strict: CloudWatch log groups kept at least a year (AWS Control Tower control CT.CLOUDWATCH.PR.2)
STRICT_MIN_LOG_RETENTION_DAYS = 365


@dataclass(frozen=True)
class TierSettings:
    name: str
    data_prefixes: tuple[str, ...]
    allowed_groups: tuple[str, ...]
    data_access: str = "read-write"
    host_name: str = ""  # defaults to the tier name
    server_mode: str = contract.DEFAULT_SERVER_MODE
    cpu: int = 256  # hub task (per-user) or shared task size
    memory: int = 512
    min_tasks: int = 1
    max_tasks: int = 1
    # Hub/shared task on Fargate Spot. Default: on in per-user mode (a small hub whose
    # interruption ends sessions but loses no notebook: they live in S3; it keeps the idle cost
    # under a third of the reference design's, see docs/COST.md), off in shared mode (Spot would
    # take every user's kernels with the task).
    spot: bool | None = None
    user_spot: bool = True  # per-user servers on Fargate Spot (falls back to on-demand)

    def __post_init__(self) -> None:
        if self.spot is None:
            object.__setattr__(self, "spot", self.server_mode == contract.PER_USER)

    @property
    def host(self) -> str:
        return self.host_name or self.name

    @property
    def notebook_prefix(self) -> str:
        return f"tiers/{self.name}"


@dataclass(frozen=True)
class Settings:
    platform_name: str = "lakehub"
    tiers: tuple[TierSettings, ...] = field(default_factory=tuple)
    log_retention_days: int = 30
    # standard: the low-cost defaults; strict: the templates pass the AWS Control Tower proactive
    # controls that apply to them, but for the exceptions argued in docs/SECURITY.md.
    compliance: str = "standard"

    @property
    def strict(self) -> bool:
        return self.compliance == "strict"


DEFAULT_TIERS = (
    TierSettings(
        name="pii",
        data_prefixes=("pii/",),
        allowed_groups=("pii-users",),
        data_access="read-write",
    ),
    TierSettings(
        name="nonpii",
        data_prefixes=("nonpii/",),
        allowed_groups=("nonpii-users",),
        data_access="read-write",
    ),
)

LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


def default_settings() -> Settings:
    return Settings(tiers=DEFAULT_TIERS)


def _fail(where: str, cause: str, fix: str) -> SettingsError:
    return SettingsError(f"settings: {where}: {cause}; {fix}")


def _check_known(data: dict, allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            path = f"{where}.{key}" if where else str(key)
            raise _fail(path, "unknown field", f"use one of: {known}")


def _as_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(where, "must be a non-empty list of strings", "for example ['pii/']")
    return tuple(value)


def _each_matches(values: tuple[str, ...], pattern: re.Pattern, where: str, what: str, fix: str) -> None:
    """Every item of a list setting matches `pattern`; else the first that does not is named."""
    for i, value in enumerate(values):
        if not pattern.match(value):
            raise _fail(f"{where}[{i}]", f"{value!r} is not a valid {what}", fix)


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be a whole number, got {value!r}", "write it without quotes")
    return value


def _as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {value!r}", "write true or false")
    return value


def check_fargate_size(cpu: int, memory: int, where: str, sizes=FARGATE_SIZES) -> None:
    try:
        contract.check_fargate_size(cpu, memory, sizes)
    except contract.FargateSizeError as exc:
        raise _fail(f"{where}.{exc.field}", exc.cause, exc.fix) from None


def _parse_tier(data: Any, where: str) -> TierSettings:
    if not isinstance(data, dict):
        raise _fail(where, "must be a mapping", "give name, data_prefixes and allowed_groups")
    names = {f.name for f in fields(TierSettings)}
    _check_known(data, names, where)
    for required in ("name", "data_prefixes", "allowed_groups"):
        if required not in data:
            raise _fail(f"{where}.{required}", "missing", f"add {required} to the tier")
    name = data["name"]
    if not isinstance(name, str) or not TIER_NAME_RE.match(name):
        raise _fail(
            f"{where}.name",
            f"{name!r} is not a valid tier name",
            "use 1-16 lower-case letters or digits, starting with a letter",
        )
    prefixes = _as_list(data["data_prefixes"], f"{where}.data_prefixes")
    if len(prefixes) > MAX_DATA_PREFIXES:
        raise _fail(
            f"{where}.data_prefixes",
            f"{len(prefixes)} prefixes given",
            f"give at most {MAX_DATA_PREFIXES} (use a common parent prefix)",
        )
    _each_matches(
        prefixes, PREFIX_RE, f"{where}.data_prefixes", "S3 prefix", "use a relative key prefix ending in '/', such as 'pii/'"
    )
    groups = _as_list(data["allowed_groups"], f"{where}.allowed_groups")
    _each_matches(groups, GROUP_RE, f"{where}.allowed_groups", "group name", "use letters, digits and _.@+- only")
    kwargs: dict[str, Any] = {"name": name, "data_prefixes": prefixes, "allowed_groups": groups}
    if "data_access" in data:
        if data["data_access"] not in DATA_ACCESS:
            raise _fail(f"{where}.data_access", f"{data['data_access']!r} is not allowed", "use read-only or read-write")
        kwargs["data_access"] = data["data_access"]
    if "server_mode" in data:
        if data["server_mode"] not in SERVER_MODES:
            raise _fail(f"{where}.server_mode", f"{data['server_mode']!r} is not allowed", f"use {' or '.join(SERVER_MODES)}")
        kwargs["server_mode"] = data["server_mode"]
    if "host_name" in data:
        host = data["host_name"]
        if not isinstance(host, str) or not HOST_RE.match(host):
            raise _fail(f"{where}.host_name", f"{host!r} is not a valid DNS label", "use lower-case letters, digits and hyphens")
        kwargs["host_name"] = host
    for key in ("cpu", "memory", "min_tasks", "max_tasks"):
        if key in data:
            kwargs[key] = _as_int(data[key], f"{where}.{key}")
    for key in ("spot", "user_spot"):
        if key in data:
            kwargs[key] = _as_bool(data[key], f"{where}.{key}")
    tier = TierSettings(**kwargs)
    check_fargate_size(tier.cpu, tier.memory, where)
    if not 0 <= tier.min_tasks <= tier.max_tasks:
        raise _fail(
            f"{where}.min_tasks",
            f"{tier.min_tasks} is not between 0 and max_tasks ({tier.max_tasks})",
            "lower min_tasks or raise max_tasks",
        )
    if not 1 <= tier.max_tasks <= 20:
        raise _fail(f"{where}.max_tasks", f"{tier.max_tasks} is out of range", "use 1 to 20")
    if tier.server_mode == contract.PER_USER and tier.max_tasks > 1:
        raise _fail(
            f"{where}.max_tasks",
            "a per-user tier runs exactly one hub task (JupyterHub keeps its state in one process)",
            "set max_tasks to 1, or server_mode to shared",
        )
    return tier


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def validate(settings: Settings) -> Settings:
    """Cross-tier checks: unique names and hosts, no shared or nested data prefixes."""
    if not settings.tiers:
        raise _fail("tiers", "no tier is defined", "define at least one tier")
    first: dict[str, dict[str, int]] = {"name": {}, "host_name": {}}  # key -> value -> first tier
    for i, tier in enumerate(settings.tiers):
        for key, value, clash, hint in (
            ("name", tier.name, "duplicate tier name {value!r} (also tiers[{j}])", "give each tier its own name"),
            ("host_name", tier.host, "host name {value!r} is used by tiers[{j}] too", "give each tier its own host name"),
        ):
            if value in first[key]:
                raise _fail(f"tiers[{i}].{key}", clash.format(value=value, j=first[key][value]), hint)
            first[key][value] = i
    for i, a in enumerate(settings.tiers):
        for j, b in enumerate(settings.tiers):
            if j <= i:
                continue
            for pa in a.data_prefixes:
                for pb in b.data_prefixes:
                    if _overlap(pa, pb):
                        raise _fail(
                            f"tiers[{j}].data_prefixes",
                            f"{pb!r} overlaps {pa!r} of tier {a.name!r}, which would let one tier's role read the other's data",
                            "give each tier prefixes that do not contain one another",
                        )
    return settings


def parse_settings(data: Any) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail("(top level)", "must be a mapping", "see settings.example.yaml")
    _check_known(data, {"platform_name", "tiers", "log_retention_days", "compliance"}, "")
    kwargs: dict[str, Any] = {}
    if "platform_name" in data:
        name = data["platform_name"]
        if not isinstance(name, str) or not PLATFORM_NAME_RE.match(name):
            raise _fail(
                "platform_name",
                f"{name!r} is not valid",
                "use 2-20 lower-case letters, digits or hyphens, starting with a letter",
            )
        kwargs["platform_name"] = name
    if "log_retention_days" in data:
        days = _as_int(data["log_retention_days"], "log_retention_days")
        if days not in LOG_RETENTION_CHOICES:
            raise _fail(
                "log_retention_days",
                f"{days} is not a CloudWatch Logs retention",
                f"use one of {', '.join(map(str, LOG_RETENTION_CHOICES))}",
            )
        kwargs["log_retention_days"] = days
    if "compliance" in data:
        profile = data["compliance"]
        if profile not in COMPLIANCE_PROFILES:
            raise _fail("compliance", f"{profile!r} is not a compliance profile", f"use {' or '.join(COMPLIANCE_PROFILES)}")
        kwargs["compliance"] = profile
    if kwargs.get("compliance") == "strict":
        days = kwargs.setdefault("log_retention_days", STRICT_MIN_LOG_RETENTION_DAYS)
        if days < STRICT_MIN_LOG_RETENTION_DAYS:
            raise _fail(
                "log_retention_days",
                f"{days} days is less than the {STRICT_MIN_LOG_RETENTION_DAYS} the strict profile keeps logs (Control Tower CT.CLOUDWATCH.PR.2)",
                f"use {STRICT_MIN_LOG_RETENTION_DAYS} or more, or compliance: standard",
            )
    if "tiers" in data:
        tiers = data["tiers"]
        if not isinstance(tiers, list):
            raise _fail("tiers", "must be a list", "write one '- name: ...' entry per tier")
        kwargs["tiers"] = tuple(_parse_tier(t, f"tiers[{i}]") for i, t in enumerate(tiers))
    else:
        kwargs["tiers"] = DEFAULT_TIERS
    return validate(Settings(**kwargs))


def load_settings(path: str | Path | None) -> Settings:
    """Settings from a YAML file, or the defaults when path is None."""
    if path is None:
        return validate(default_settings())
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f"settings: file {str(p)!r} not found; give the path of a YAML settings file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "the file"
        raise SettingsError(f"settings: {p.name}: not valid YAML at {where}; fix the syntax") from None
    return parse_settings(data)
