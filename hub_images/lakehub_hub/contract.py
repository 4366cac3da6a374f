"""The contract between the build side (templates, local platform, cost estimate, settings) and
the hub image: one definition of each thing both sides must agree on. Installed on both sides
(the project's environment and the image), so each imports it instead of restating it.

- the hub's environment variables (names; meaning in docs/HUB_ENV.md) and `hub_environment()`,
  which builds the environment from the values each caller has;
- the server modes and their one default;
- the Fargate task sizes (one table; the tier-task and per-user views are derived from it) and
  their check;
- the size-profile format (`name:cpu:memory,...` or a JSON list) and its one parser.

No third-party import: the image and the build side import it at no cost.
"""

from __future__ import annotations

import json
from typing import Any, Iterable


class ContractError(ValueError):
    """A value the hub would refuse: one line that says what is wrong and how to fix it."""


# --------------------------------------------------------------------------------------------
# server modes
# --------------------------------------------------------------------------------------------
SHARED = "shared"  # users' servers are processes in the hub's task (or instance)
PER_USER = "per-user"  # one Fargate task per user server (lakehub_hub.fargate)
SERVER_MODES = (SHARED, PER_USER)
DEFAULT_SERVER_MODE = PER_USER


def check_server_mode(mode: str) -> str:
    if mode not in SERVER_MODES:
        raise ContractError(f"server mode {mode!r} is not one of {', '.join(SERVER_MODES)}")
    return mode


# --------------------------------------------------------------------------------------------
# Fargate task sizes (Linux): CPU units -> the memory sizes (MiB) Fargate runs with them.
# Amazon ECS developer guide, "Task CPU and memory". The two largest need platform 1.4.0.
# --------------------------------------------------------------------------------------------
FARGATE_USER_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# A tier's hub (or shared) task stops at 4 vCPU / 30 GB; per-user servers may use every size.
TIER_TASK_MAX_CPU = 4096
FARGATE_TIER_SIZES: dict[int, tuple[int, ...]] = {c: m for c, m in FARGATE_USER_SIZES.items() if c <= TIER_TASK_MAX_CPU}


class FargateSizeError(ContractError):
    """Not a Fargate task size: `field` is "cpu" or "memory"; str() is `cause; fix`."""

    def __init__(self, field: str, cause: str, fix: str):
        super().__init__(f"{cause}; {fix}")
        self.field, self.cause, self.fix = field, cause, fix


def memory_choices(memories: tuple[int, ...]) -> str:
    """`512, 1024 or 2048 MiB`, or `2048-8192 MiB in steps of 1024`."""
    if len(memories) <= 3:
        return f"{', '.join(map(str, memories[:-1]))} or {memories[-1]} MiB"
    return f"{memories[0]}-{memories[-1]} MiB in steps of {memories[1] - memories[0]}"


def check_fargate_size(cpu: int, memory: int, sizes: dict[int, tuple[int, ...]] = FARGATE_USER_SIZES) -> None:
    """A FargateSizeError unless Fargate runs a task of `cpu` units and `memory` MiB (of `sizes`)."""
    if cpu not in sizes:
        raise FargateSizeError(
            "cpu", f"Fargate has no size of {cpu} CPU units", f"use one of {', '.join(map(str, sizes))} (1024 = 1 vCPU)"
        )
    if memory not in sizes[cpu]:
        raise FargateSizeError(
            "memory", f"Fargate has no {memory} MiB size with {cpu} CPU units", f"use {memory_choices(sizes[cpu])}"
        )


# --------------------------------------------------------------------------------------------
# size profiles: what a user picks from at spawn (LAKEHUB_USER_PROFILES, the tier's
# UserServerSizes). A profile is a dict {"name", "display", "cpu", "memory"} in Fargate units.
# --------------------------------------------------------------------------------------------
PROFILES_FORMAT = (
    'name:cpu:memory items separated by commas (e.g. small:1024:4096), or a JSON list of {"name","display","cpu","memory"}'
)

DEFAULT_PROFILES: tuple[dict[str, Any], ...] = (
    {"name": "small", "display": "Small: 1 vCPU, 4 GB", "cpu": 1024, "memory": 4096},
    {"name": "medium", "display": "Medium: 2 vCPU, 8 GB", "cpu": 2048, "memory": 8192},
    {"name": "large", "display": "Large: 4 vCPU, 16 GB", "cpu": 4096, "memory": 16384},
    {"name": "xlarge", "display": "Extra large: 8 vCPU, 32 GB", "cpu": 8192, "memory": 32768},
)


def format_profiles(profiles: Iterable[dict[str, Any]]) -> str:
    """The compact form: `small:1024:4096,large:4096:16384`."""
    return ",".join(f"{p['name']}:{p['cpu']}:{p['memory']}" for p in profiles)


def parse_profiles(value: Any) -> list[dict[str, Any]]:
    """Profiles from a list, JSON text or the compact form, checked (each a Fargate size, names
    unique), with `display` filled in when missing. A ContractError names the bad part."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ContractError(f"not valid JSON ({exc}); give {PROFILES_FORMAT}") from None
        else:
            value = []
            for item in filter(None, (i.strip() for i in text.split(","))):
                parts = item.split(":")
                if len(parts) != 3:
                    raise ContractError(f"{item!r} is not name:cpu:memory; give {PROFILES_FORMAT}")
                value.append({"name": parts[0], "cpu": parts[1], "memory": parts[2]})
    if not isinstance(value, (list, tuple)) or not value:
        raise ContractError(f"none given; list at least one size: {PROFILES_FORMAT}")
    profiles, names = [], set()
    for item in value:
        if not isinstance(item, dict) or not item.get("name"):
            raise ContractError(f"profile {item!r} needs at least a name, cpu and memory")
        name = str(item["name"])
        try:
            cpu, memory = int(item["cpu"]), int(item["memory"])
        except (KeyError, TypeError, ValueError):
            raise ContractError(f"profile {name!r}: cpu and memory must be whole numbers (Fargate units)") from None
        try:
            check_fargate_size(cpu, memory)
        except FargateSizeError as exc:
            raise ContractError(f"profile {name!r}: {exc}") from None
        if name in names:
            raise ContractError(f"profile name {name!r} appears twice")
        names.add(name)
        display = item.get("display") or f"{name[:1].upper()}{name[1:]}: {cpu / 1024:g} vCPU, {memory / 1024:g} GB"
        profiles.append({"name": name, "display": str(display), "cpu": cpu, "memory": memory})
    return profiles


# --------------------------------------------------------------------------------------------
# the hub's environment (docs/HUB_ENV.md)
# --------------------------------------------------------------------------------------------
ENV_TIER = "LAKEHUB_TIER"
ENV_PLATFORM = "LAKEHUB_PLATFORM"
ENV_AUTH_MODE = "LAKEHUB_AUTH_MODE"
ENV_ALLOWED_GROUPS = "LAKEHUB_ALLOWED_GROUPS"
ENV_NOTEBOOK_BUCKET = "LAKEHUB_NOTEBOOK_BUCKET"
ENV_NOTEBOOK_PREFIX = "LAKEHUB_NOTEBOOK_PREFIX"
ENV_PUBLIC_URL = "LAKEHUB_PUBLIC_URL"
ENV_DATA_BUCKET = "LAKEHUB_DATA_BUCKET"
ENV_DATA_PREFIXES = "LAKEHUB_DATA_PREFIXES"
ENV_HUB_IP = "LAKEHUB_HUB_IP"
ENV_HUB_PORT = "LAKEHUB_HUB_PORT"
ENV_IDLE_TIMEOUT = "LAKEHUB_IDLE_TIMEOUT"
ENV_SERVER_MODE = "LAKEHUB_SERVER_MODE"
ENV_TIER_ROLE_ARN = "LAKEHUB_TIER_ROLE_ARN"
ENV_HOME_ROOT = "LAKEHUB_HOME_ROOT"
ENV_STATE_DIR = "LAKEHUB_STATE_DIR"
ENV_CONFIG_D = "LAKEHUB_CONFIG_D"
ENV_METRICS_INTERVAL = "LAKEHUB_METRICS_INTERVAL"
# sign-in
ENV_COGNITO_DOMAIN = "LAKEHUB_COGNITO_DOMAIN"
ENV_COGNITO_USERNAME_CLAIM = "LAKEHUB_COGNITO_USERNAME_CLAIM"
ENV_OAUTH_CLIENT_ID = "LAKEHUB_OAUTH_CLIENT_ID"
ENV_OIDC_ISSUER = "LAKEHUB_OIDC_ISSUER"
ENV_LDAP_URL = "LAKEHUB_LDAP_URL"
ENV_LDAP_BIND_DN = "LAKEHUB_LDAP_BIND_DN"
ENV_LDAP_USER_SEARCH_BASE = "LAKEHUB_LDAP_USER_SEARCH_BASE"
ENV_LDAP_GROUP_SEARCH_BASE = "LAKEHUB_LDAP_GROUP_SEARCH_BASE"
# per-user mode: the Fargate spawner's (lakehub_hub.fargate)
ENV_CLUSTER = "LAKEHUB_CLUSTER"
ENV_USER_TASK_DEFINITION = "LAKEHUB_USER_TASK_DEFINITION"
ENV_USER_SUBNETS = "LAKEHUB_USER_SUBNETS"
ENV_USER_SECURITY_GROUPS = "LAKEHUB_USER_SECURITY_GROUPS"
ENV_USER_CAPACITY = "LAKEHUB_USER_CAPACITY"
ENV_USER_PROFILES = "LAKEHUB_USER_PROFILES"
ENV_USER_SERVER_PORT = "LAKEHUB_USER_SERVER_PORT"
ENV_HUB_API_PORT = "LAKEHUB_HUB_API_PORT"
ENV_HUB_CONNECT_URL = "LAKEHUB_HUB_CONNECT_URL"
ENV_SPAWN_ENV_PREFIX = "LAKEHUB_SPAWN_ENV_PREFIX"
ENV_HUB_STATE_BUCKET = "LAKEHUB_HUB_STATE_BUCKET"
ENV_HUB_STATE_PREFIX = "LAKEHUB_HUB_STATE_PREFIX"
ENV_HOMES_FILE_SYSTEM_ID = "LAKEHUB_HOMES_FILE_SYSTEM_ID"
# the emulator (local platform) only
ENV_S3_ENDPOINT_URL = "LAKEHUB_S3_ENDPOINT_URL"
ENV_ECS_ENDPOINT_URL = "LAKEHUB_ECS_ENDPOINT_URL"
ENV_LOCAL_HUB_API_PORT = "LAKEHUB_LOCAL_HUB_API_PORT"
ENV_LOCAL_PROXY_API_PORT = "LAKEHUB_LOCAL_PROXY_API_PORT"
# botocore's
ENV_AWS_REGION = "AWS_REGION"
ENV_AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
ENV_AWS_ENDPOINT_URL_STS = "AWS_ENDPOINT_URL_STS"
# Secrets: never in an environment a template writes (ECS Secrets, or read at the instance's boot).
ENV_COOKIE_SECRET = "LAKEHUB_COOKIE_SECRET"
ENV_OAUTH_CLIENT_SECRET = "LAKEHUB_OAUTH_CLIENT_SECRET"
ENV_LDAP_BIND_PASSWORD = "LAKEHUB_LDAP_BIND_PASSWORD"
HUB_SECRETS = (ENV_COOKIE_SECRET, ENV_OAUTH_CLIENT_SECRET, ENV_LDAP_BIND_PASSWORD)

# Every variable hub_environment() sets, by its field: the name without LAKEHUB_, lower case
# (tier -> LAKEHUB_TIER, aws_region -> AWS_REGION).
HUB_ENV: dict[str, str] = {
    value.removeprefix("LAKEHUB_").lower(): value
    for key, value in dict(globals()).items()
    if key.startswith("ENV_") and value not in HUB_SECRETS
}
# What every hub needs (its config stops with one line when one is missing).
REQUIRED = (ENV_TIER, ENV_AUTH_MODE, ENV_ALLOWED_GROUPS, ENV_NOTEBOOK_BUCKET, ENV_NOTEBOOK_PREFIX, ENV_PUBLIC_URL)
# Set by a tier only in per-user mode (or for it): what the Fargate spawner and a hub whose
# users' servers outlive its task read.
PER_USER_ONLY = (
    ENV_CLUSTER, ENV_USER_TASK_DEFINITION, ENV_USER_SUBNETS, ENV_USER_SECURITY_GROUPS, ENV_USER_CAPACITY,
    ENV_USER_PROFILES, ENV_USER_SERVER_PORT, ENV_HUB_API_PORT, ENV_HUB_CONNECT_URL, ENV_SPAWN_ENV_PREFIX,
    ENV_HUB_STATE_BUCKET, ENV_HUB_STATE_PREFIX, ENV_HOMES_FILE_SYSTEM_ID,
)  # fmt: skip


def hub_environment(*, overrides: bool = False, **values: Any) -> dict[str, Any]:
    """The hub's environment, variable name -> value, from `values` given by field (HUB_ENV's
    keys: tier=..., server_mode=..., user_profiles=...), in the order given (a template lists
    them so). Values may be template objects (troposphere) or plain values; a plain int becomes
    its text, a plain server mode or profile list is checked. `overrides=True`: only changes to
    an environment set elsewhere (the local platform's), so the required ones may be missing.
    A ContractError names an unknown field, a missing required variable or a bad value."""
    unknown = sorted(set(values) - set(HUB_ENV))
    if unknown:
        raise ContractError(f"hub environment: no variable for {', '.join(unknown)}; known fields: {', '.join(HUB_ENV)}")
    env: dict[str, Any] = {}
    for field, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and field == "server_mode":
            check_server_mode(value)
        if isinstance(value, str) and field == "user_profiles":
            parse_profiles(value)
        env[HUB_ENV[field]] = value
    missing = [name for name in REQUIRED if name not in env]
    if missing and not overrides:
        raise ContractError(f"hub environment: {', '.join(missing)} missing (every hub needs them)")
    return env
