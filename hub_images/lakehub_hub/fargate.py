"""FargateSpawner: each user's server runs as its own ECS task on Fargate with the tier role.

Per-user mode of a tier: a small hub task launches one task per user server from the tier's
user-server task definition (its task role is the tier role, so the server reaches only the
tier's S3 prefixes), in the private subnets, with a security group that only the hub can reach.

Configuration comes from traitlets; every trait has a default read from an environment
variable that the tier template sets on the hub task:

=============================== ==========================================================
LAKEHUB_CLUSTER                 ECS cluster name or ARN (required)
LAKEHUB_USER_TASK_DEFINITION    user-server task definition family, family:revision or ARN
                                (required)
LAKEHUB_USER_SUBNETS            comma-separated private subnet ids (required)
LAKEHUB_USER_SECURITY_GROUPS    comma-separated security group ids (required)
LAKEHUB_USER_CAPACITY           FARGATE (default) or FARGATE_SPOT
LAKEHUB_USER_SPOT_FALLBACK      "true" (default) / "false": fall back to FARGATE when Spot
                                has no capacity
LAKEHUB_USER_PROFILES           sizes offered at spawn: name:cpu:memory items separated by
                                commas, or a JSON list of {"name", "display", "cpu",
                                "memory"}; Fargate units (cpu 1024 = 1 vCPU, memory in MiB)
LAKEHUB_USER_CONTAINER          name of the server container in the task definition
                                (default "notebook")
LAKEHUB_USER_SERVER_PORT        port the server listens on inside the task (default 8888)
LAKEHUB_TIER                    tier name (tags, startedBy) (required)
LAKEHUB_HUB_ID                  which hub launched the task (tag lakehub:hub; default: tier)
LAKEHUB_NOTEBOOK_BUCKET         bucket for the per-spawn environment files (required)
LAKEHUB_SPAWN_ENV_PREFIX        their prefix in it (default ``spawn-env/<tier>/``)
LAKEHUB_S3_ENDPOINT_URL         emulator only: S3 endpoint
LAKEHUB_START_TIMEOUT           seconds to wait for a cold Fargate start (default 300)
LAKEHUB_ECS_ENDPOINT_URL        emulator only: ECS endpoint (also turns on waiting for the
                                local agent's endpoint tag, see below)
AWS_REGION / AWS_DEFAULT_REGION region (default us-east-1)
LAKEHUB_HUB_API_PORT            (configure_per_user_hub) hub API port user tasks call (8081)
LAKEHUB_HUB_CONNECT_URL         (configure_per_user_hub) hub API URL for user tasks (default:
                                this task's private IP from ECS task metadata, else loopback)
=============================== ==========================================================

Tags on every task: ``lakehub:user``, ``lakehub:server`` (named server, "" for the default),
``lakehub:tier``, ``lakehub:hub``, plus ECS managed tags and the task definition's tags
(``propagateTags=TASK_DEFINITION``); ``startedBy`` is ``lakehub-<tier>``.

Homes (issue 15), when LAKEHUB_HOMES_FILE_SYSTEM_ID is set: on a user's first spawn the hub
creates their EFS access point (root ``/tiers/<tier>/<unix name>``, PosixUser and owner the
user's stable uid, mode 0700; tags ``lakehub:tier``, ``lakehub:user``; found again by its root
and tier tag, so creating is idempotent) and registers a per-user revision of the tier's
user-server task definition (family ``<family>-<unix name>``: an EFS volume ``home`` through that
access point with TLS and IAM authorization, mounted at ``/home/<unix name>``, ``user``
``<uid>:<gid>``, ``HOME`` = ``LAKEHUB_HOME`` = the working directory = that path). ECS RunTask
overrides cannot change volumes, hence a definition per user; it is registered again only when
what it would contain changes (a digest in the tag ``lakehub:definition-digest``).
LAKEHUB_EFS_ENDPOINT_URL (emulator only) defaults to the ECS endpoint.

Local environment: the emulator's tasks do not run and their private IPs are fake. The local
agent (``lakehub.local.agent``) runs each task as a local process on 127.0.0.1 and tags the task
with ``lakehub:local-endpoint`` = ``127.0.0.1:PORT``. On the emulator (LAKEHUB_ECS_ENDPOINT_URL
set) the spawner prefers that tag to the private IP, and with ``wait_for_local_endpoint`` (on by
default there) waits for it before it reports the server started. On AWS the tag is ignored,
so a tag can never point the hub's proxy at another address.

Hub configuration: ``configure_per_user_hub(c, fail=fail)`` in jupyterhub_config.py (after
``db_url``) does everything per-user mode needs: the spawner, the hub API address user tasks use
(LAKEHUB_HUB_API_PORT, LAKEHUB_HUB_CONNECT_URL or the task metadata), the timeouts,
``cleanup_servers`` (False when the hub's database persists: LAKEHUB_HUB_STATE_BUCKET or LAKEHUB_KEEP_SERVERS_ON_HUB_STOP=true) and, at start-up, ``reconcile_orphans()``: it stops this tier's and
hub's tasks that no spawner in the hub's database owns (``known_task_arns_from_db()``), so no
orphan task keeps costing; JupyterHub's own start-up poll takes back the others.

ECS calls at scale: every DescribeTasks of the hub's spawners (JupyterHub's poll() of each
running server, the start and stop loops) goes through one shared poller per hub process
(``lakehub_hub.ecs_poller``): one request per 100 tasks, and a poll accepts an answer up to
``poll_interval`` old, so a hub with N running servers sends about ceil(N/100) DescribeTasks per
poll interval instead of N (ECS allows 20 a second per account and Region; docs/AWS_NOTES.md).

Secrets stay out of RunTask: the server's API token (and any variable named like a secret)
goes into a per-spawn ``.env`` object under LAKEHUB_SPAWN_ENV_PREFIX, which the task reads
through ``containerOverrides.environmentFiles`` with its *execution* role (ECS fetches it
before the container starts; the container never holds that role). The tier role, which
users' kernels hold, cannot read the prefix. Overrides, DescribeTasks and CloudTrail's RunTask
records show only the object's ARN. The hub deletes the object (every version) when the
server stops or its start fails.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import html
import json
import os
import re
import sys
import threading
import time
import uuid
from typing import Any, Iterable

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from jupyterhub.spawner import Spawner
from traitlets import Bool, Float, Integer, List, Unicode, default, validate

from lakehub_hub import contract, hub_metrics
from lakehub_hub.accounts import stable_uid, unix_username
from lakehub_hub.ecs_poller import DEFAULT_WINDOW, TaskPoller
from lakehub_hub.stop_reasons import StopReasonState, classify_task, explain

# Tag keys: one definition, used by the spawner, the reconciliation and the local agent.
TAG_USER = "lakehub:user"
TAG_SERVER = "lakehub:server"
TAG_TIER = "lakehub:tier"
TAG_HUB = "lakehub:hub"
TAG_LOCAL_ENDPOINT = "lakehub:local-endpoint"
TAG_DEFINITION_DIGEST = "lakehub:definition-digest"

# Homes on the EFS file system (lakehub.stacks.names: HOMES_TIERS_ROOT, HOMES_MOUNT).
HOMES_TIERS_ROOT = "/tiers"
HOMES_MOUNT = "/home"
HOME_VOLUME = "home"
# What a per-user task definition copies from the tier's (RegisterTaskDefinition's fields).
TASK_DEFINITION_FIELDS = (
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)

FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
CAPACITY_PROVIDERS = (FARGATE, FARGATE_SPOT)

DEFAULT_REGION = "us-east-1"
DEFAULT_CONTAINER = "notebook"
DEFAULT_PORT = 8888
DEFAULT_START_TIMEOUT = 300

# Sizes offered at spawn when LAKEHUB_USER_PROFILES is not set (Fargate units), and the
# Fargate task sizes a profile may have: the hub contract's (lakehub_hub.contract).
DEFAULT_PROFILES = contract.DEFAULT_PROFILES

# RunTask accepts at most 8192 characters of overrides (JSON included).
MAX_OVERRIDES_CHARS = 8192

# Per-spawn environment files (ECS containerOverrides.environmentFiles): under this root, one
# folder per tier (lakehub.stacks.names.SPAWN_ENV_ROOT, which the tier template's roles are built on).
SPAWN_ENV_ROOT = "spawn-env"
# Variables that go into the environment file, never into the RunTask overrides.
SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|(^|_)KEY$", re.IGNORECASE)

# ECS task statuses, in lifecycle order, with what the user is told while waiting.
STATUS_MESSAGES = {
    "PROVISIONING": (30, "Fargate is finding capacity and attaching the network interface"),
    "PENDING": (50, "Pulling the image and starting the container"),
    "ACTIVATING": (70, "Container started; registering the task"),
    "RUNNING": (80, "Task running; waiting for the server to answer"),
}

# Hub-task variables that must never reach a user task: ECS gives each task its own
# credentials, metadata endpoint and image PATH; copying the hub's (for example through the
# hub config's Spawner.env_keep) would hand the user server the hub's identity or a wrong PATH.
TASK_ENV_EXCLUDE = (
    "PATH",
    "HOME",
    "HOSTNAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "ECS_CONTAINER_METADATA_URI",
    "ECS_CONTAINER_METADATA_URI_V4",
    "ECS_AGENT_URI",
    "AWS_EXECUTION_ENV",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
)

# Characters ECS allows in tag values; everything else becomes "_".
_TAG_VALUE_BAD = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)


class FargateSpawnError(Exception):
    """A spawn failure the user sees: JupyterHub shows `jupyterhub_message` on the spawn page."""

    def __init__(self, message: str):
        super().__init__(message)
        self.jupyterhub_message = message


class ConfigurationError(ValueError):
    """The hub's spawner settings are wrong (names the setting and the fix)."""


# --------------------------------------------------------------------------------------------
# Settings helpers
# --------------------------------------------------------------------------------------------


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a whole number") from None


def region_from_env() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def tag_value(value: str) -> str:
    """A string as an ECS tag value (allowed characters, at most 256)."""
    return _TAG_VALUE_BAD.sub("_", value)[:256]


def started_by(tier: str) -> str:
    """ECS `startedBy` for a tier's user tasks: at most 36 letters, digits, `-`, `_`, `/`."""
    return re.sub(r"[^A-Za-z0-9_/-]", "-", f"lakehub-{tier}")[:36]


def validate_fargate_size(cpu: int, memory: int) -> None:
    """Raise ConfigurationError unless (cpu, memory) is a valid Fargate task size."""
    try:
        contract.check_fargate_size(cpu, memory)
    except contract.FargateSizeError as exc:
        raise ConfigurationError(str(exc)) from None


def parse_capacity(value: str) -> str:
    """FARGATE or FARGATE_SPOT (any case), else ConfigurationError."""
    capacity = value.strip().upper()
    if capacity not in CAPACITY_PROVIDERS:
        raise ConfigurationError(f"capacity provider {value!r} is not FARGATE or FARGATE_SPOT (LAKEHUB_USER_CAPACITY)")
    return capacity


def parse_profiles(value: Any) -> list[dict[str, Any]]:
    """Profiles from a list, JSON text (`[{"name","display","cpu","memory"}, ...]`) or the tier
    template's compact form (`small:1024:4096,large:4096:16384`): lakehub_hub.contract's parser,
    its error a ConfigurationError that names LAKEHUB_USER_PROFILES."""
    try:
        return contract.parse_profiles(value)
    except contract.ContractError as exc:
        raise ConfigurationError(f"{contract.ENV_USER_PROFILES}: {exc}") from None


# --------------------------------------------------------------------------------------------
# ECS client and task helpers (synchronous; the spawner runs them in a thread)
# --------------------------------------------------------------------------------------------

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str | None, endpoint_url: str | None, endpoint_env: str):
    """A cached boto3 client (clients are thread-safe; sessions are not)."""
    region = region or region_from_env()
    endpoint_url = endpoint_url or os.environ.get(endpoint_env) or None
    key = (service, region, endpoint_url)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = boto3.session.Session().client(
                service,
                region_name=region,
                endpoint_url=endpoint_url,
                config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}),
            )
        return _clients[key]


def ecs_client(region: str | None = None, endpoint_url: str | None = None):
    """The ECS client (LAKEHUB_ECS_ENDPOINT_URL: the emulator)."""
    return _client("ecs", region, endpoint_url, "LAKEHUB_ECS_ENDPOINT_URL")


def s3_client(region: str | None = None, endpoint_url: str | None = None):
    """The S3 client for the per-spawn environment files (LAKEHUB_S3_ENDPOINT_URL: the emulator)."""
    return _client("s3", region, endpoint_url, "LAKEHUB_S3_ENDPOINT_URL")


def split_secret_environment(env: dict[str, str], secrets: Iterable[str] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret): a variable is secret when its name looks like one (SECRET_ENV_NAME) or
    its value is one of `secrets` (the server's API token under any name)."""
    secret_values = {v for v in secrets if v}
    plain, secret = {}, {}
    for name, value in env.items():
        if SECRET_ENV_NAME.search(name) or value in secret_values:
            secret[name] = value
        else:
            plain[name] = value
    return plain, secret


def env_file_text(env: dict[str, str]) -> str:
    """A Docker env-file (what ECS reads from environmentFiles): VARIABLE=VALUE lines, no
    quoting or escapes, so a value cannot hold a line break."""
    lines = []
    for name, value in sorted(env.items()):
        if "\n" in value or "\r" in value or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise FargateSpawnError(
                f"The server setting {name} cannot be passed to ECS in an environment file "
                "(a line break in its value, or a name that is not a shell variable name); "
                "tell the platform admins."
            )
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def delete_env_file(s3, bucket: str, key: str, version: str = "") -> None:
    """Delete an environment file for good: its one version in a versioned bucket (the key is
    new at every spawn), where a plain delete would only add a delete marker over it."""
    if version:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    else:
        s3.delete_object(Bucket=bucket, Key=key)


def s3_object_arn(bucket: str, key: str, region: str) -> str:
    partition = boto3.session.Session().get_partition_for_region(region) or "aws"
    return f"arn:{partition}:s3:::{bucket}/{key}"


def efs_client(region: str | None = None, endpoint_url: str | None = None):
    """The EFS client for users' access points (LAKEHUB_EFS_ENDPOINT_URL: the emulator)."""
    return _client("efs", region, endpoint_url, "LAKEHUB_EFS_ENDPOINT_URL")


class UserHome(dict):
    """Where a hub user's home is: `unix_name`, `uid` (= gid), `root` on the file system and
    `path` in the user's server."""


def user_home(hub_name: str, tier: str) -> UserHome:
    unix = unix_username(hub_name)
    uid = stable_uid(unix)
    return UserHome(unix_name=unix, uid=uid, gid=uid, root=f"{HOMES_TIERS_ROOT}/{tier}/{unix}", path=f"{HOMES_MOUNT}/{unix}")


def _tag_map(tags, key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {t[key]: t.get(value, "") for t in tags or []}


def find_access_point(efs, file_system_id: str, tier: str, root: str) -> dict | None:
    """This tier's access point with root `root` on the file system, if any (bounded paging)."""
    token = None
    for _ in range(1000):
        kwargs = {"FileSystemId": file_system_id, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = efs.describe_access_points(**kwargs)
        for ap in page.get("AccessPoints") or []:
            if (
                (ap.get("RootDirectory") or {}).get("Path") == root
                and _tag_map(ap.get("Tags")).get(TAG_TIER) == tier
                and ap.get("LifeCycleState", "available") in ("available", "creating")
            ):
                return ap
        token = page.get("NextToken")
        if not token:
            return None
    return None


def ensure_access_point(efs, file_system_id: str, tier: str, hub_name: str) -> dict:
    """The user's access point: found by its root and tier tag, else created (the client token
    makes two concurrent creations one). Its PosixUser must be the user's stable uid."""
    home = user_home(hub_name, tier)
    ap = find_access_point(efs, file_system_id, tier, home["root"])
    if ap is None:
        token = hashlib.sha256(f"{file_system_id}:{home['root']}".encode()).hexdigest()[:64]
        uid = home["uid"]
        ap = efs.create_access_point(
            ClientToken=token,
            Tags=[
                {"Key": "Name", "Value": tag_value(f"{tier}/{home['unix_name']}")},
                {"Key": TAG_TIER, "Value": tier},
                {"Key": TAG_USER, "Value": tag_value(hub_name)},
            ],
            FileSystemId=file_system_id,
            PosixUser={"Uid": uid, "Gid": uid},
            RootDirectory={"Path": home["root"], "CreationInfo": {"OwnerUid": uid, "OwnerGid": uid, "Permissions": "0700"}},
        )
    posix = ap.get("PosixUser") or {}
    if int(posix.get("Uid", -1)) != home["uid"] or int(posix.get("Gid", -1)) != home["gid"]:
        raise FargateSpawnError(
            f"The home folder's access point {ap.get('AccessPointId')} does not carry your user id "
            f"({posix} instead of {home['uid']}); the platform admins must delete it so the hub makes it again."
        )
    return ap


def user_task_definition_request(
    base: dict, home: UserHome, file_system_id: str, access_point_id: str, container_name: str
) -> dict:
    """A per-user copy of the tier's user-server task definition: the home volume (TLS, IAM,
    the user's access point) mounted at /home/<unix name>, run as the user's uid, HOME,
    LAKEHUB_HOME and the working directory there. No tags (see ensure_user_task_definition)."""
    request = {k: copy.deepcopy(base[k]) for k in TASK_DEFINITION_FIELDS if base.get(k) not in (None, [], {}, "")}
    request["family"] = f"{base['family']}-{home['unix_name']}"
    request["volumes"] = [v for v in request.get("volumes", []) if v.get("name") != HOME_VOLUME] + [
        {
            "name": HOME_VOLUME,
            "efsVolumeConfiguration": {
                "fileSystemId": file_system_id,
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": access_point_id, "iam": "ENABLED"},
            },
        }
    ]
    containers = request.get("containerDefinitions") or []
    target = next((c for c in containers if c.get("name") == container_name), None)
    if target is None:
        raise FargateSpawnError(
            f"The tier's user-server task definition has no container named {container_name!r}; tell the platform admins."
        )
    target["mountPoints"] = [m for m in target.get("mountPoints") or [] if m.get("containerPath") != home["path"]] + [
        {"sourceVolume": HOME_VOLUME, "containerPath": home["path"], "readOnly": False}
    ]
    target["user"] = f"{home['uid']}:{home['gid']}"
    target["workingDirectory"] = home["path"]
    env = {e["name"]: e.get("value", "") for e in target.get("environment") or []}
    env.update(HOME=home["path"], LAKEHUB_HOME=home["path"])
    target["environment"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return request


def definition_digest(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_user_task_definition(
    ecs, base_ref: str, home: UserHome, file_system_id: str, access_point_id: str, container_name: str, tier: str, hub_name: str
) -> str:
    """The ARN of the user's task definition: the registered revision when its digest tag says
    nothing changed, else a new revision (tagged like the tier's, plus tier, user, digest)."""
    described = ecs.describe_task_definition(taskDefinition=base_ref, include=["TAGS"])
    base = described["taskDefinition"]
    request = user_task_definition_request(base, home, file_system_id, access_point_id, container_name)
    digest = definition_digest(request)
    try:
        current = ecs.describe_task_definition(taskDefinition=request["family"], include=["TAGS"])
    except ClientError:  # ClientException: no such family yet
        current = None
    if current:
        td = current.get("taskDefinition") or {}
        if (
            td.get("status", "ACTIVE") == "ACTIVE"
            and _tag_map(current.get("tags"), "key", "value").get(TAG_DEFINITION_DIGEST) == digest
        ):
            return td["taskDefinitionArn"]
    tags = {k: v for k, v in _tag_map(described.get("tags"), "key", "value").items() if not k.startswith("aws:")}
    tags.update({TAG_TIER: tier, TAG_USER: tag_value(hub_name), TAG_DEFINITION_DIGEST: digest})
    registered = ecs.register_task_definition(**request, tags=[{"key": k, "value": v} for k, v in sorted(tags.items())])
    return registered["taskDefinition"]["taskDefinitionArn"]


def task_tags(task: dict) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in task.get("tags") or []}


def task_private_ip(task: dict) -> str | None:
    """The task's private IPv4 from its ENI attachment (or its containers' interfaces)."""
    for attachment in task.get("attachments") or []:
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return detail["value"]
    for container in task.get("containers") or []:
        for eni in container.get("networkInterfaces") or []:
            if eni.get("privateIpv4Address"):
                return eni["privateIpv4Address"]
    return None


def describe_tasks(ecs, cluster: str, arns: list[str], include_tags: bool = True) -> list[dict]:
    """describe_tasks in batches of 100 (the API's limit)."""
    tasks: list[dict] = []
    for i in range(0, len(arns), 100):
        kwargs: dict[str, Any] = {"cluster": cluster, "tasks": arns[i : i + 100]}
        if include_tags:
            kwargs["include"] = ["TAGS"]
        tasks.extend(ecs.describe_tasks(**kwargs).get("tasks", []))
    return tasks


def describe_tier_tasks(ecs, cluster: str, arns: list[str], log=None) -> list[dict]:
    """describe_tasks for the tasks this hub may describe. The hub role may describe only tasks
    tagged with its tier, and `startedBy` is whatever RunTask was given, so another tier's hub
    could start a task that this tier's listing finds: a batch refused for that is described
    again task by task, and the refused ones (not this tier's) are left out."""
    try:
        return describe_tasks(ecs, cluster, arns)
    except ClientError as exc:
        if not is_access_denied(exc):
            raise
    found = []
    for arn in arns:
        try:
            found.extend(describe_tasks(ecs, cluster, [arn]))
        except ClientError as exc:
            if not is_access_denied(exc):
                raise
            if log:
                log.warning("Task %s is not this tier's (describe refused); left alone", arn)
    return found


def list_tier_tasks(
    cluster: str,
    tier: str,
    hub: str | None = None,
    ecs=None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> list[dict]:
    """The cluster's live (desired RUNNING) user tasks of a tier (and hub), with their tags."""
    ecs = ecs or ecs_client(region, endpoint_url)
    arns: list[str] = []
    kwargs = {"cluster": cluster, "startedBy": started_by(tier), "desiredStatus": "RUNNING"}
    for page in ecs.get_paginator("list_tasks").paginate(**kwargs):
        arns.extend(page.get("taskArns", []))
    found = []
    for task in describe_tier_tasks(ecs, cluster, arns):
        tags = task_tags(task)
        if tags.get(TAG_TIER) != tag_value(tier) or TAG_USER not in tags:
            continue
        if hub is not None and tags.get(TAG_HUB) != tag_value(hub):
            continue
        if task.get("lastStatus") == "STOPPED" or task.get("desiredStatus") == "STOPPED":
            continue
        found.append(task)
    return found


def reconcile_orphans(
    cluster: str | None = None,
    tier: str | None = None,
    known_task_arns: Iterable[str] = (),
    hub: str | None = None,
    ecs=None,
    region: str | None = None,
    endpoint_url: str | None = None,
    log=None,
) -> list[str]:
    """Stop this tier's (and hub's) user tasks that no spawner owns; return their ARNs.

    Call once at hub start-up, before spawners are restored, with the task ARNs recorded in the
    hub's database (`known_task_arns_from_db`). Tasks in that set are left alone: JupyterHub's
    start-up poll takes them back. Defaults come from LAKEHUB_CLUSTER, LAKEHUB_TIER and
    LAKEHUB_HUB_ID (hub defaults to the tier). Does not wait for the tasks to stop.
    """
    cluster = cluster or os.environ.get("LAKEHUB_CLUSTER", "")
    tier = tier or os.environ.get("LAKEHUB_TIER", "")
    if not cluster or not tier:
        raise ConfigurationError("reconcile_orphans needs a cluster and a tier (LAKEHUB_CLUSTER, LAKEHUB_TIER)")
    if hub is None:
        hub = os.environ.get("LAKEHUB_HUB_ID") or tier
    ecs = ecs or ecs_client(region, endpoint_url)
    known = set(known_task_arns)
    stopped = []
    for task in list_tier_tasks(cluster, tier, hub, ecs=ecs):
        arn = task["taskArn"]
        if arn in known:
            continue
        user = task_tags(task).get(TAG_USER, "?")
        try:
            ecs.stop_task(
                cluster=cluster,
                task=arn,
                reason=f"lakehub: orphan user server (user {user}) stopped at hub start-up",
            )
        except ClientError as exc:
            if is_access_denied(exc):
                raise  # a role that cannot stop the task would leave it running (and billing)
            if log:  # already gone: nothing to stop
                log.warning("could not stop orphan task %s: %s", arn, exc)
            continue
        if log:
            log.info("Stopped orphan user task %s (user %s)", arn, user)
        stopped.append(arn)
    return stopped


def known_task_arns_from_db(db_url: str | None = None) -> set[str]:
    """Task ARNs that the hub's database records in spawner state (`task_arn`).

    Reads JupyterHub's `spawners` table directly, so it works in jupyterhub_config.py before
    the hub has started. A missing database (first start) gives an empty set.
    """
    db_url = db_url if isinstance(db_url, str) and db_url else "sqlite:///jupyterhub.sqlite"
    if db_url.startswith("sqlite:///"):
        path = db_url[len("sqlite:///") :]
        if path and path != ":memory:" and not os.path.exists(path):
            return set()
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_url)
    arns: set[str] = set()
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("spawners"):
                return arns
            for (state,) in conn.execute(sqlalchemy.text("SELECT state FROM spawners")):
                if isinstance(state, (bytes, str)) and state:
                    try:
                        state = json.loads(state)
                    except ValueError:
                        continue
                if isinstance(state, dict) and state.get("task_arn"):
                    arns.add(state["task_arn"])
    finally:
        engine.dispose()
    return arns


def hub_connect_url_from_metadata(port: int = 8081, timeout: float = 2.0) -> str | None:
    """http://<this task's private IP>:<port> from the ECS task metadata endpoint, or None.

    The hub task sets `c.JupyterHub.hub_connect_url` to this so that user tasks reach the
    hub API across the VPC (the hub itself listens on 0.0.0.0).
    """
    import urllib.request

    base = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    try:
        with urllib.request.urlopen(f"{base}/task", timeout=timeout) as resp:
            meta = json.load(resp)
    except (OSError, ValueError):
        return None
    for container in meta.get("Containers", []):
        for network in container.get("Networks", []):
            for address in network.get("IPv4Addresses", []):
                return f"http://{address}:{port}"
    return None


def hub_state_persists() -> bool:
    """True when the hub's database survives the hub task (a Litestream replica, or a persistent
    state folder): only then may users' servers outlive the hub."""
    return bool(os.environ.get("LAKEHUB_HUB_STATE_BUCKET", "").strip()) or _env_bool("LAKEHUB_KEEP_SERVERS_ON_HUB_STOP", False)


def configure_per_user_hub(c, fail=None, log=None) -> list[str]:
    """Everything jupyterhub_config.py needs for per-user mode, in one call; returns the ARNs of
    orphan tasks it stopped.

    - FargateSpawner as the spawner, its settings checked now (a mistake calls `fail(message)`,
      or raises ConfigurationError when no `fail` is given);
    - the hub API on LAKEHUB_HUB_API_PORT (8081), bound to 0.0.0.0 on AWS (user tasks reach it
      across the VPC) and to 127.0.0.1 on the emulator; `hub_connect_url` from
      LAKEHUB_HUB_CONNECT_URL, else this task's private IP (ECS task metadata), else loopback;
    - a start timeout for a cold Fargate start (LAKEHUB_START_TIMEOUT, 300 s) and a longer
      HTTP timeout, set on FargateSpawner so that c.Spawner values for shared mode do not apply;
    - `cleanup_servers`: a clean hub stop stops users' tasks, unless the hub's database persists
      (LAKEHUB_HUB_STATE_BUCKET: Litestream's replica; or LAKEHUB_KEEP_SERVERS_ON_HUB_STOP=true); either way, start-up
      takes back the tasks its database records and stops the others (`reconcile_orphans`).

    Call it after `c.JupyterHub.db_url` is set.
    """
    say = log or (lambda message: print(f"lakehub hub: {message}", file=sys.stderr, flush=True))
    try:
        FargateSpawner.validate_environment()
        port = _env_int("LAKEHUB_HUB_API_PORT", 8081)
    except ConfigurationError as exc:
        if fail is None:
            raise
        fail(str(exc))
        return []
    local = bool(os.environ.get("LAKEHUB_ECS_ENDPOINT_URL"))
    c.JupyterHub.spawner_class = FargateSpawner
    c.JupyterHub.hub_ip = "127.0.0.1" if local else "0.0.0.0"
    c.JupyterHub.hub_port = port
    c.JupyterHub.hub_connect_url = (
        os.environ.get("LAKEHUB_HUB_CONNECT_URL", "").strip() or hub_connect_url_from_metadata(port) or f"http://127.0.0.1:{port}"
    )
    c.FargateSpawner.start_timeout = _env_int("LAKEHUB_START_TIMEOUT", DEFAULT_START_TIMEOUT)
    c.FargateSpawner.http_timeout = 120
    # Stopping the hub (a deployment, the nightly scale-to-0, a crash) leaves users' tasks
    # running when the hub's database outlives the task (replicated to S3 by Litestream,
    # LAKEHUB_HUB_STATE_BUCKET, lakehub_hub.hub_state; or a persistent folder,
    # LAKEHUB_KEEP_SERVERS_ON_HUB_STOP=true): the next hub restores it and takes them back.
    # Without either the database dies with the task, a new hub could not take them back, so a
    # clean stop stops them (and a crash leaves them to reconcile_orphans at the next start).
    c.JupyterHub.cleanup_servers = not hub_state_persists()
    db_url = c.JupyterHub.db_url if isinstance(c.JupyterHub.db_url, str) else None
    try:
        stopped = reconcile_orphans(known_task_arns=known_task_arns_from_db(db_url))
    except ClientError as exc:
        if not is_access_denied(exc):  # a passing fault (throttling, ECS unavailable): next start
            say(f"could not check for orphan user tasks ({exc}); they will be checked at the next start")
            return []
        # Denied: no start would ever find a task a crashed hub left behind, and such a task
        # runs (and bills) until someone stops it by hand. The hub role needs ecs:ListTasks on
        # "*" with the ecs:cluster condition, and ecs:StopTask on the cluster's tasks.
        message = (
            f"cannot find or stop orphan user tasks: {exc}; the hub's task role needs ecs:ListTasks on '*' "
            "(condition ecs:cluster) and ecs:StopTask on the cluster's tasks"
        )
        if fail is None:
            raise ConfigurationError(message) from None
        fail(message)
        return []
    except Exception as exc:  # noqa: BLE001 - a passing fault: the hub still starts; a spawn reports ECS errors itself
        say(f"could not check for orphan user tasks ({exc}); they will be checked at the next start")
        return []
    if stopped:
        say(f"stopped {len(stopped)} orphan user task(s) that no user owns")
    return stopped


# DescribeTasks `stopCode` of a task whose Fargate Spot capacity AWS took back (after a
# two-minute warning, SIGTERM to the containers); its stoppedReason says "Your Spot Task was
# interrupted." (docs/AWS_NOTES.md).
SPOT_INTERRUPTION = "SpotInterruption"
SPOT_REASON = re.compile(r"spot task was interrupted", re.IGNORECASE)


def is_spot_interruption(task: dict) -> bool:
    return task.get("stopCode") == SPOT_INTERRUPTION or bool(SPOT_REASON.search(task.get("stoppedReason") or ""))


def stop_time(task: dict) -> str:
    """When the task stopped (stoppedAt, else stoppingAt, else now), ISO 8601 in UTC."""
    import datetime

    when = task.get("stoppedAt") or task.get("stoppingAt")
    if not isinstance(when, datetime.datetime):
        when = datetime.datetime.now(datetime.UTC)
    return when.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def stop_explanation(task: dict, container_name: str = DEFAULT_CONTAINER) -> str:
    """One sentence for the user: why their server stopped, when the hub did not stop it
    (lakehub_hub.stop_reasons)."""
    reason, detail = classify_task(task, container_name)
    return explain(reason, detail=detail)


ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


def is_access_denied(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in ACCESS_DENIED_CODES


def _is_capacity_failure(reason: str) -> bool:
    text = reason.lower()
    return "capacity" in text or "spot" in text


# --------------------------------------------------------------------------------------------
# The spawner
# --------------------------------------------------------------------------------------------


class FargateSpawner(StopReasonState, Spawner):
    """Start each user's server as an ECS task on Fargate (or Fargate Spot)."""

    cluster = Unicode(config=True, help="ECS cluster name or ARN (LAKEHUB_CLUSTER).")
    task_definition = Unicode(
        config=True,
        help="User-server task definition: family, family:revision or ARN. Its task role is "
        "the tier role (LAKEHUB_USER_TASK_DEFINITION).",
    )
    subnets = List(Unicode(), config=True, help="Private subnets for user tasks (LAKEHUB_USER_SUBNETS).")
    security_groups = List(Unicode(), config=True, help="Security groups for user tasks (LAKEHUB_USER_SECURITY_GROUPS).")
    capacity_provider = Unicode(config=True, help="FARGATE or FARGATE_SPOT (LAKEHUB_USER_CAPACITY).")
    spot_fallback = Bool(
        config=True,
        help="When Spot has no capacity, start on FARGATE instead of failing (LAKEHUB_USER_SPOT_FALLBACK).",
    )
    profiles = List(config=True, help="Sizes offered at spawn (LAKEHUB_USER_PROFILES, JSON).")
    container_name = Unicode(config=True, help="Server container's name (LAKEHUB_USER_CONTAINER).")
    server_port = Integer(config=True, help="Port the server listens on in the task.")
    tier = Unicode(config=True, help="Tier name (LAKEHUB_TIER).")
    hub_id = Unicode(config=True, help="Value of the lakehub:hub tag (LAKEHUB_HUB_ID; default: tier).")
    region = Unicode(config=True, help="AWS region (AWS_REGION).")
    ecs_endpoint_url = Unicode(config=True, help="ECS endpoint, emulator only (LAKEHUB_ECS_ENDPOINT_URL).")
    wait_for_local_endpoint = Bool(
        config=True,
        help="Wait for the local agent's lakehub:local-endpoint tag before reporting the server "
        "started (default: on when ecs_endpoint_url is set).",
    )
    task_env_exclude = List(
        Unicode(),
        default_value=list(TASK_ENV_EXCLUDE),
        config=True,
        help="Variables left out of the task's environment override even when env_keep or "
        "environment name them (credentials, metadata endpoint, PATH come from ECS and the image).",
    )
    # Not "poll_interval": that is JupyterHub's interval for poll() on running servers (30 s).
    describe_interval = Float(2.0, config=True, help="Seconds between describe_tasks calls while a task starts or stops.")
    describe_window = Float(
        DEFAULT_WINDOW,
        config=True,
        help="Seconds a task question waits for others of this hub to share one DescribeTasks "
        "(up to 100 tasks a call; lakehub_hub.ecs_poller).",
    )
    stop_timeout = Integer(120, config=True, help="Seconds stop() waits for the task to reach STOPPED.")
    spawn_env_bucket = Unicode(
        config=True,
        help="Bucket for the per-spawn environment files that carry the server's secrets (LAKEHUB_NOTEBOOK_BUCKET).",
    )
    spawn_env_prefix = Unicode(
        config=True,
        help="Prefix of those files in the bucket; only the hub role writes it and only the "
        "execution role reads it (LAKEHUB_SPAWN_ENV_PREFIX; default spawn-env/<tier>/).",
    )
    s3_endpoint_url = Unicode(config=True, help="S3 endpoint, emulator only (LAKEHUB_S3_ENDPOINT_URL).")
    homes_file_system_id = Unicode(
        config=True,
        help="EFS file system of users' homes (LAKEHUB_HOMES_FILE_SYSTEM_ID); empty: servers have no persistent home.",
    )
    efs_endpoint_url = Unicode(
        config=True, help="EFS endpoint, emulator only (LAKEHUB_EFS_ENDPOINT_URL; default: the ECS endpoint)."
    )

    # The server listens on every interface of its own task (the hub reaches it by private IP).
    @default("ip")
    def _default_ip(self):
        return "0.0.0.0"

    @default("port")
    def _default_port(self):
        return self.server_port

    @default("start_timeout")
    def _default_start_timeout(self):
        return _env_int("LAKEHUB_START_TIMEOUT", DEFAULT_START_TIMEOUT)

    # After RUNNING the server still has to import and start: more than the 30 s default.
    @default("http_timeout")
    def _default_http_timeout(self):
        return 120

    @default("cluster")
    def _default_cluster(self):
        return os.environ.get("LAKEHUB_CLUSTER", "")

    @default("task_definition")
    def _default_task_definition(self):
        return os.environ.get("LAKEHUB_USER_TASK_DEFINITION", "")

    @default("subnets")
    def _default_subnets(self):
        return _env_list("LAKEHUB_USER_SUBNETS")

    @default("security_groups")
    def _default_security_groups(self):
        return _env_list("LAKEHUB_USER_SECURITY_GROUPS")

    # traitlets does not run @validate on dynamic defaults: defaults check their own values.
    @default("capacity_provider")
    def _default_capacity_provider(self):
        return parse_capacity(os.environ.get("LAKEHUB_USER_CAPACITY", "").strip() or FARGATE)

    @validate("capacity_provider")
    def _validate_capacity_provider(self, proposal):
        return parse_capacity(proposal["value"])

    @default("spot_fallback")
    def _default_spot_fallback(self):
        return _env_bool("LAKEHUB_USER_SPOT_FALLBACK", True)

    @default("profiles")
    def _default_profiles(self):
        raw = os.environ.get("LAKEHUB_USER_PROFILES", "").strip()
        return parse_profiles(raw) if raw else [dict(p) for p in DEFAULT_PROFILES]

    @validate("profiles")
    def _validate_profiles(self, proposal):
        return parse_profiles(proposal["value"])

    @default("container_name")
    def _default_container_name(self):
        return os.environ.get("LAKEHUB_USER_CONTAINER", "").strip() or DEFAULT_CONTAINER

    @default("server_port")
    def _default_server_port(self):
        return _env_int("LAKEHUB_USER_SERVER_PORT", DEFAULT_PORT)

    @default("tier")
    def _default_tier(self):
        return os.environ.get("LAKEHUB_TIER", "")

    @default("hub_id")
    def _default_hub_id(self):
        return os.environ.get("LAKEHUB_HUB_ID", "").strip() or self.tier

    @default("region")
    def _default_region(self):
        return region_from_env()

    @default("ecs_endpoint_url")
    def _default_ecs_endpoint_url(self):
        return os.environ.get("LAKEHUB_ECS_ENDPOINT_URL", "")

    @default("spawn_env_bucket")
    def _default_spawn_env_bucket(self):
        return os.environ.get("LAKEHUB_NOTEBOOK_BUCKET", "").strip()

    @default("spawn_env_prefix")
    def _default_spawn_env_prefix(self):
        prefix = os.environ.get("LAKEHUB_SPAWN_ENV_PREFIX", "").strip() or f"{SPAWN_ENV_ROOT}/{self.tier}/"
        return prefix if prefix.endswith("/") else prefix + "/"

    @default("s3_endpoint_url")
    def _default_s3_endpoint_url(self):
        return os.environ.get("LAKEHUB_S3_ENDPOINT_URL", "")

    @default("homes_file_system_id")
    def _default_homes_file_system_id(self):
        return os.environ.get("LAKEHUB_HOMES_FILE_SYSTEM_ID", "").strip()

    @default("efs_endpoint_url")
    def _default_efs_endpoint_url(self):
        return os.environ.get("LAKEHUB_EFS_ENDPOINT_URL", "").strip() or self.ecs_endpoint_url

    @default("wait_for_local_endpoint")
    def _default_wait_for_local_endpoint(self):
        return bool(self.ecs_endpoint_url)

    # ---- state ------------------------------------------------------------------------------

    task_arn = Unicode("", help="ARN of the running task (persisted in the hub's database).")
    capacity_used = Unicode("", help="Capacity provider the task was started on.")
    env_file_key = Unicode("", help="S3 key of this spawn's environment file (deleted at stop).")
    env_file_version = Unicode("", help="Its S3 version id (the notebook bucket is versioned).")
    # Why the last server stopped when the user did not stop it (StopReasonState: last_stop,
    # last_stop_at, last_stop_reason): kept across clear_state, shown on the hub's home page,
    # cleared by the next start or the user's own stop.

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._progress_events: list[dict] = []
        self._start_done = True
        self._run_task_definition = ""  # this spawn's task definition (the user's own with a home)
        self._started_here = False  # started by this hub process (else taken back from the database)
        self._stop_recorded_for = ""  # the task whose stop poll() recorded (poll runs more than once)
        hub_metrics.track_spawner(self)  # lakehub_user_servers{size,capacity} while it holds a task

    def user_server_size(self) -> str:
        """The size (profile name) of the user's server, for lakehub_user_servers."""
        return self.selected_profile()["name"]

    def get_state(self):
        state = super().get_state()
        if self.task_arn:
            state["task_arn"] = self.task_arn
            state["capacity"] = self.capacity_used
        if self.env_file_key:
            state["env_file_key"] = self.env_file_key
            state["env_file_version"] = self.env_file_version
        return state

    def load_state(self, state):
        super().load_state(state)
        self.task_arn = state.get("task_arn", "")
        self.capacity_used = state.get("capacity", "")
        self.env_file_key = state.get("env_file_key", "")
        self.env_file_version = state.get("env_file_version", "")

    def clear_state(self):
        super().clear_state()
        self.task_arn = ""
        self.capacity_used = ""
        self.env_file_key = ""
        self.env_file_version = ""

    # ---- options ----------------------------------------------------------------------------

    @default("options_form")
    def _default_options_form(self):
        # A function, so the form reflects profiles set after the spawner was made.
        return lambda spawner: spawner.profiles_form()

    def profiles_form(self) -> str:
        """HTML radio buttons, one per profile; no form when there is only one size."""
        if len(self.profiles) <= 1:
            return ""
        rows = []
        for i, profile in enumerate(self.profiles):
            name = html.escape(profile["name"], quote=True)
            checked = " checked" if i == 0 else ""
            rows.append(
                '<div class="radio"><label>'
                f'<input type="radio" name="profile" value="{name}"{checked}> '
                f"{html.escape(profile['display'])}"
                "</label></div>"
            )
        return (
            '<div class="form-group"><label>Server size</label>'
            + "".join(rows)
            + '<p class="help-block">Bigger servers cost more while they run; '
            "an idle server is stopped automatically.</p></div>"
        )

    @default("options_from_form")
    def _default_options_from_form(self):
        def from_form(formdata, spawner=None):
            values = formdata.get("profile") or []
            return {"profile": values[0]} if values else {}

        return from_form

    if "apply_user_options" in Spawner.class_trait_names():  # JupyterHub 5.3+

        @default("apply_user_options")
        def _default_apply_user_options(self):
            # Checks the size before the spawn starts: an unknown one is a 400 with the choices.
            def apply(spawner, user_options):
                from tornado import web

                try:
                    spawner.selected_profile()
                except FargateSpawnError as exc:
                    raise web.HTTPError(400, str(exc)) from None

            return apply

    def selected_profile(self) -> dict[str, Any]:
        """The profile from user_options (form or REST API), else the first one."""
        wanted = (self.user_options or {}).get("profile")
        if not wanted:
            return self.profiles[0]
        for profile in self.profiles:
            if profile["name"] == wanted:
                return profile
        names = ", ".join(p["name"] for p in self.profiles)
        raise FargateSpawnError(f"Unknown server size {wanted!r}; choose one of: {names}.")

    # ---- ECS calls (run in a thread) --------------------------------------------------------

    @property
    def ecs(self):
        return ecs_client(self.region, self.ecs_endpoint_url or None)

    async def _ecs(self, method: str, **kwargs):
        return await asyncio.to_thread(getattr(self.ecs, method), **kwargs)

    def _call_run_task(self, request: dict) -> dict:
        """Call ecs:RunTask (synchronous; runs in a thread).

        The one hook for tests and emulators: a subclass may return a response that the
        emulator cannot produce (for example `failures` with reason "Capacity is unavailable
        at this time" for FARGATE_SPOT) and call super() otherwise.
        """
        return self.ecs.run_task(**request)

    def check_settings(self) -> None:
        missing = [
            env
            for value, env in (
                (self.cluster, "LAKEHUB_CLUSTER"),
                (self.task_definition, "LAKEHUB_USER_TASK_DEFINITION"),
                (self.subnets, "LAKEHUB_USER_SUBNETS"),
                (self.security_groups, "LAKEHUB_USER_SECURITY_GROUPS"),
                (self.tier, "LAKEHUB_TIER"),
                (self.spawn_env_bucket, "LAKEHUB_NOTEBOOK_BUCKET"),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                "FargateSpawner is missing settings: "
                + ", ".join(missing)
                + " (set them on the hub task, or the matching c.FargateSpawner traits)"
            )

    @classmethod
    def validate_environment(cls) -> None:
        """Check the hub task's settings at hub start-up (one ConfigurationError naming them),
        rather than at the first user's spawn."""
        spawner = cls()
        spawner.check_settings()
        _ = spawner.profiles, spawner.capacity_provider, spawner.server_port, spawner.start_timeout

    def task_tag_list(self) -> list[dict[str, str]]:
        return [
            {"key": TAG_USER, "value": tag_value(self.user.name)},
            {"key": TAG_SERVER, "value": tag_value(self.name or "")},
            {"key": TAG_TIER, "value": tag_value(self.tier)},
            {"key": TAG_HUB, "value": tag_value(self.hub_id)},
        ]

    def task_environment(self, profile: dict[str, Any]) -> dict[str, str]:
        """Environment for the server container: JupyterHub's plus the lakehub values."""
        # MEM_LIMIT / CPU_LIMIT tell the server (and resource-usage extensions) its size.
        self.cpu_limit = profile["cpu"] / 1024
        self.mem_limit = profile["memory"] * 1024 * 1024
        env = self.get_env()
        env["LAKEHUB_TIER"] = self.tier
        env["LAKEHUB_PROFILE"] = profile["name"]
        excluded = set(self.task_env_exclude)
        return {k: str(v) for k, v in env.items() if v is not None and k not in excluded}

    def run_task_request(
        self, profile: dict[str, Any], capacity: str, env: dict[str, str], env_file_arn: str | None = None
    ) -> dict:
        """The RunTask request. `env` goes into the overrides as it is: split the secrets out
        first (split_secret_environment) and pass their file's ARN as `env_file_arn`."""
        container: dict[str, Any] = {
            "name": self.container_name,
            # The container's hard memory limit is the task's, of the size chosen: a definition
            # that sets one (the strict compliance profile, Control Tower CT.ECS.PR.7) caps no size.
            "memory": int(profile["memory"]),
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        }
        if env_file_arn:
            container["environmentFiles"] = [{"value": env_file_arn, "type": "s3"}]
        # The task definition's command runs unless the hub configures another command or
        # extra arguments (Spawner.cmd / Spawner.args).
        cmd, args = list(self.cmd or []), list(self.get_args())
        if cmd != ["jupyterhub-singleuser"] or args:
            container["command"] = (cmd or ["jupyterhub-singleuser"]) + args
        overrides = {
            "cpu": str(profile["cpu"]),
            "memory": str(profile["memory"]),
            "containerOverrides": [container],
        }
        size = len(json.dumps(overrides, separators=(",", ":")))
        if size > MAX_OVERRIDES_CHARS:
            biggest = sorted(env, key=lambda k: len(env[k]), reverse=True)[:3]
            raise FargateSpawnError(
                f"The server's settings are too large for ECS ({size} characters, the limit is "
                f"{MAX_OVERRIDES_CHARS}); the platform admins should move settings into the task "
                f"definition (largest: {', '.join(biggest)})."
            )
        return {
            "cluster": self.cluster,
            "taskDefinition": self._run_task_definition or self.task_definition,
            "count": 1,
            "capacityProviderStrategy": [{"capacityProvider": capacity, "weight": 1, "base": 0}],
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": overrides,
            "tags": self.task_tag_list(),
            "enableECSManagedTags": True,
            "propagateTags": "TASK_DEFINITION",
            "startedBy": started_by(self.tier),
        }

    # ---- progress ---------------------------------------------------------------------------

    def _emit(self, progress: int, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._progress_events.append({"progress": progress, "message": message})

    async def progress(self):
        """Yield the events start() records, until start() is done (bounded)."""
        sent = 0
        deadline = time.monotonic() + self.start_timeout + 30
        while time.monotonic() < deadline:
            events = self._progress_events
            while sent < len(events):
                yield events[sent]
                sent += 1
            if self._start_done:
                break
            await asyncio.sleep(0.2)

    # ---- start ------------------------------------------------------------------------------

    async def start(self):
        self.check_settings()
        self.forget_stop()
        self._started_here = True
        self._progress_events = []
        self._start_done = False
        try:
            return await self._start()
        finally:
            self._start_done = True

    async def _start(self):
        profile = self.selected_profile()
        if self.task_arn or self.env_file_key:
            # A task from an earlier spawn that the hub lost track of: do not leave it running.
            if self.task_arn:
                await self._stop_task_quietly(self.task_arn, "Replaced by a new spawn of the same server")
            await self._delete_env_file()
            self.clear_state()
        env, secret_env = split_secret_environment(self.task_environment(profile), [self.api_token])
        capacity = self.capacity_provider
        self._emit(
            10,
            f"Requesting a {profile['display']} server on {'Fargate Spot' if capacity == FARGATE_SPOT else 'Fargate'}",
        )
        self._run_task_definition = await self._prepare_home()
        env_file_arn = await self._write_env_file(secret_env)
        try:
            task = await self._run_task(profile, capacity, env, env_file_arn)
        except BaseException:
            await self._delete_env_file()
            raise
        self.task_arn = task["taskArn"]
        self.capacity_used = task.get("capacityProviderName") or self.capacity_used
        self._emit(20, f"Task {self.task_arn.rsplit('/', 1)[-1]} submitted on {self.capacity_used}")
        try:
            url = await self._wait_until_running(task)
        except BaseException:
            # Timed out, stopped or cancelled: make sure nothing keeps running (and costing).
            await self._stop_task_quietly(self.task_arn, "Spawn failed or was cancelled")
            await self._delete_env_file()
            raise
        self._emit(90, f"Server at {url}; waiting for it to answer")
        return url

    # ---- home ---------------------------------------------------------------------------------

    @property
    def efs(self):
        return efs_client(self.region, self.efs_endpoint_url or None)

    def _user_definition(self) -> str:
        ap = ensure_access_point(self.efs, self.homes_file_system_id, self.tier, self.user.name)
        home = user_home(self.user.name, self.tier)
        return ensure_user_task_definition(
            self.ecs,
            self.task_definition,
            home,
            self.homes_file_system_id,
            ap["AccessPointId"],
            self.container_name,
            self.tier,
            self.user.name,
        )

    async def _prepare_home(self) -> str:
        """The task definition this spawn runs: the user's own (with their home) when the tier
        has a homes file system, else the tier's."""
        if not self.homes_file_system_id:
            return ""
        self._emit(12, "Preparing your home folder")
        try:
            return await asyncio.to_thread(self._user_definition)
        except (ClientError, BotoCoreError) as exc:
            self.log.error("Preparing the home of %s failed: %s", self._log_name, exc)
            raise FargateSpawnError(
                f"The hub could not prepare your home folder ({exc}). Try again; if it keeps failing, tell the "
                "platform admins (the hub role needs elasticfilesystem:CreateAccessPoint/DescribeAccessPoints and "
                "ecs:RegisterTaskDefinition/DescribeTaskDefinition)."
            ) from exc

    # ---- per-spawn environment file ---------------------------------------------------------

    @property
    def s3(self):
        return s3_client(self.region, self.s3_endpoint_url or None)

    async def _write_env_file(self, secret_env: dict[str, str]) -> str | None:
        """Put this spawn's secret variables in a new object under spawn_env_prefix (server-side
        encrypted); return its ARN for containerOverrides.environmentFiles."""
        if not secret_env:
            return None
        key = f"{self.spawn_env_prefix}{uuid.uuid4().hex}.env"
        body = env_file_text(secret_env).encode()
        try:
            response = await asyncio.to_thread(
                self.s3.put_object,
                Bucket=self.spawn_env_bucket,
                Key=key,
                Body=body,
                ServerSideEncryption="AES256",
                ContentType="text/plain",
            )
        except (ClientError, BotoCoreError) as exc:
            self.log.error("Writing the environment file of %s failed: %s", self._log_name, exc)
            raise FargateSpawnError(
                f"The hub could not store your server's settings ({exc}). Try again; if it keeps "
                "failing, tell the platform admins (the hub role needs s3:PutObject on "
                f"{self.spawn_env_prefix}* in {self.spawn_env_bucket})."
            ) from exc
        self.env_file_key = key
        self.env_file_version = response.get("VersionId") or ""
        return s3_object_arn(self.spawn_env_bucket, key, self.region)

    async def _delete_env_file(self) -> None:
        """Delete this spawn's environment file, every version of it (the bucket is versioned:
        a plain delete would only hide it)."""
        key = self.env_file_key
        if not key:
            return
        try:
            await asyncio.to_thread(delete_env_file, self.s3, self.spawn_env_bucket, key, self.env_file_version)
        except (ClientError, BotoCoreError) as exc:
            self.log.warning("Deleting the environment file %s of %s failed: %s", key, self._log_name, exc)
            return
        self.env_file_key = self.env_file_version = ""

    async def _run_task(self, profile: dict, capacity: str, env: dict[str, str], env_file_arn: str | None = None) -> dict:
        attempts = [capacity]
        if capacity == FARGATE_SPOT and self.spot_fallback:
            attempts.append(FARGATE)
        last_reason = ""
        for i, provider in enumerate(attempts):
            request = self.run_task_request(profile, provider, env, env_file_arn)
            try:
                response = await asyncio.to_thread(self._call_run_task, request)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                reason = f"{err.get('Code', 'Error')}: {err.get('Message', exc)}"
                if _is_capacity_failure(reason):
                    hub_metrics.count_capacity_error()
                if provider == FARGATE_SPOT and _is_capacity_failure(reason):
                    response = {"tasks": [], "failures": [{"reason": reason}]}
                else:
                    self.log.error("RunTask failed for %s: %s", self._log_name, reason)
                    raise FargateSpawnError(
                        f"The hub could not start your server on Fargate ({reason}). "
                        "Try again; if it keeps failing, tell the platform admins."
                    ) from exc
            except BotoCoreError as exc:
                raise FargateSpawnError(f"The hub could not reach ECS to start your server ({exc}). Try again shortly.") from exc
            tasks = response.get("tasks") or []
            if tasks:
                task = tasks[0]
                if not task.get("capacityProviderName"):
                    task["capacityProviderName"] = provider
                return task
            failures = response.get("failures") or [{"reason": "no task and no reason returned"}]
            last_reason = "; ".join(str(f.get("reason", "")) + (f" ({f['detail']})" if f.get("detail") else "") for f in failures)
            self.log.warning("RunTask on %s for %s failed: %s", provider, self._log_name, last_reason)
            if _is_capacity_failure(last_reason):
                hub_metrics.count_capacity_error()
            if provider == FARGATE_SPOT and _is_capacity_failure(last_reason):
                if i + 1 < len(attempts):
                    self._emit(15, "Fargate Spot has no capacity right now; starting on on-demand Fargate instead")
                    continue
                raise FargateSpawnError(
                    "Fargate Spot has no spare capacity right now, and this tier does not fall back "
                    "to on-demand Fargate. Try again in a few minutes, pick a smaller size, or ask "
                    f"the platform admins to allow the fallback. (ECS said: {last_reason})"
                )
            raise FargateSpawnError(
                f"ECS could not start your server on {provider}: {last_reason}. "
                "Try again; if it keeps failing, tell the platform admins."
            )
        raise FargateSpawnError(f"ECS could not start your server: {last_reason}")

    async def _describe(self, arn: str, include_tags: bool = True, max_age: float = 0.0) -> dict | None:
        """The task, None when ECS does not know it, through the hub's shared poller: the hub's
        spawners share one DescribeTasks per 100 tasks (lakehub_hub.ecs_poller). max_age > 0
        accepts an answer to a request sent that many seconds ago."""
        poller = TaskPoller.shared(self.ecs, self.cluster, self.describe_window, self.log)
        return await poller.describe(arn, max_age=max_age, include_tags=include_tags)

    def _stopped_error(self, task: dict) -> FargateSpawnError:
        reason = task.get("stoppedReason") or "no reason given"
        details = []
        for container in task.get("containers") or []:
            if container.get("reason"):
                details.append(f"{container.get('name')}: {container['reason']}")
            if container.get("exitCode") not in (None, 0) and container.get("name") == self.container_name:
                details.append(f"exit code {container['exitCode']}")
        extra = f" ({'; '.join(details)})" if details else ""
        return FargateSpawnError(
            f"Your server's task stopped before it was ready: {reason}{extra}. "
            "Try again; if it keeps failing, tell the platform admins."
        )

    @property
    def local_mode(self) -> bool:
        """On the emulator: the local agent's endpoint tag is the server's address. On AWS the
        tag is ignored, so no tag can ever point the hub's proxy somewhere else."""
        return bool(self.ecs_endpoint_url) or self.wait_for_local_endpoint

    def server_url(self, task: dict) -> str | None:
        """http://host:port for a task: locally the agent's endpoint tag, else the private IP."""
        local = task_tags(task).get(TAG_LOCAL_ENDPOINT) if self.local_mode else None
        if local:
            return f"http://{local}"
        if self.wait_for_local_endpoint:
            return None
        ip = task_private_ip(task)
        return f"http://{ip}:{self.port}" if ip else None

    async def _wait_until_running(self, task: dict) -> str:
        deadline = time.monotonic() + self.start_timeout
        seen = None
        waited_for_agent = False
        while True:
            status = task.get("lastStatus", "")
            if status == "STOPPED" or task.get("desiredStatus") == "STOPPED":
                raise self._stopped_error(task)
            if status != seen:
                seen = status
                if status in STATUS_MESSAGES:
                    pct, message = STATUS_MESSAGES[status]
                    self._emit(pct, f"Task {status}: {message}")
            if status == "RUNNING":
                url = self.server_url(task)
                if url:
                    return url
                if self.wait_for_local_endpoint and not waited_for_agent:
                    waited_for_agent = True
                    self._emit(85, "Waiting for the local agent to run the task's server")
            if time.monotonic() >= deadline:
                raise FargateSpawnError(
                    f"Your server did not start within {self.start_timeout} s "
                    f"(task status {status or 'unknown'}). It has been stopped; try again, or pick "
                    "a smaller size if this keeps happening."
                )
            await asyncio.sleep(self.describe_interval)
            described = await self._describe(self.task_arn, include_tags=self.local_mode)
            if described is None:
                raise FargateSpawnError("Your server's task disappeared while it was starting. Try again.")
            task = described

    # ---- poll and stop ----------------------------------------------------------------------

    async def poll(self):
        """None while the task runs (or starts); an exit status once it is stopping or gone."""
        if not self.task_arn:
            return 0
        try:
            # An answer up to one poll interval old: the hub's polls share their calls.
            task = await self._describe(self.task_arn, include_tags=False, max_age=self.poll_interval)
        except ClientError as exc:
            self.log.warning("describe_tasks for %s failed: %s", self._log_name, exc)
            # Unknown cluster or task: treat as gone; other errors: assume still running.
            code = exc.response.get("Error", {}).get("Code", "")
            return 0 if code in ("ClusterNotFoundException", "InvalidParameterException") else None
        except BotoCoreError as exc:
            self.log.warning("describe_tasks for %s failed: %s", self._log_name, exc)
            return None
        if task is None:
            if not self._started_here and self._stop_recorded_for != self.task_arn:
                # Taken back from the database at the hub's start, and ECS no longer knows the
                # task (it forgets stopped tasks after about an hour): it ended while no hub ran.
                self._stop_recorded_for = self.task_arn
                self.record_stop("scheduled", "the task ended while the hub was away")
            return 0
        if task.get("lastStatus") == "STOPPED" or task.get("desiredStatus") == "STOPPED":
            # Not stopped through this spawner (stop() clears the state first): tell the user why.
            if self._stop_recorded_for != self.task_arn:
                self._stop_recorded_for = self.task_arn  # once per task, however often it is polled
                reason, detail = classify_task(task, self.container_name)
                self.record_stop(reason, detail, at=stop_time(task))
                if is_spot_interruption(task):
                    hub_metrics.count_spot_interruption()
            self.log.warning("%s's task %s stopped: %s", self._log_name, self.task_arn, task.get("stoppedReason", ""))
            for container in task.get("containers") or []:
                if container.get("name") == self.container_name and isinstance(container.get("exitCode"), int):
                    return container["exitCode"]
            return 0
        return None

    def stop_size(self) -> str:
        try:
            profile = self.selected_profile()
        except FargateSpawnError:
            return ""
        return str(profile.get("display") or profile.get("name") or "")

    async def runs_current_image(self) -> bool | None:
        """For the drain (POST /hub/api/lakehub/drain): does the running task's server container
        run the image the tier's task definition names now? None when it cannot tell."""
        if not self.task_arn:
            return None
        try:
            task = await self._describe(self.task_arn, include_tags=False)
            if task is None or not task.get("taskDefinitionArn"):
                return None
            running = await self._ecs("describe_task_definition", taskDefinition=task["taskDefinitionArn"])
            current = await self._ecs("describe_task_definition", taskDefinition=self.task_definition)
        except (ClientError, BotoCoreError) as exc:
            self.log.warning("drain: cannot compare %s's image: %s", self._log_name, exc)
            return None

        def image(described: dict) -> str:
            for container in (described.get("taskDefinition") or {}).get("containerDefinitions") or []:
                if container.get("name") == self.container_name:
                    return container.get("image") or ""
            return ""

        return image(running) == image(current) != ""

    async def _stop_task_quietly(self, arn: str, reason: str) -> None:
        try:
            await self._ecs("stop_task", cluster=self.cluster, task=arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            self.log.warning("stop_task %s for %s: %s", arn, self._log_name, exc)

    async def stop(self, now=False):
        """Stop the task; wait (bounded) until ECS reports it STOPPED unless `now`."""
        # The user's own stop clears the message; the culler's and the drain's are kept. Counted
        # only when a task runs (JupyterHub also calls stop() after a failed start).
        reason = self.take_requested_stop_reason()
        if self.task_arn:
            self.record_stop(reason)
        elif reason == "user":
            self.forget_stop()
        if not self.task_arn:
            await self._delete_env_file()
            return
        arn = self.task_arn
        await self._stop_task_quietly(arn, f"Stopped by JupyterHub ({self._log_name})")
        await self._delete_env_file()
        if now:
            return
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            try:
                task = await self._describe(arn, include_tags=False)
            except (ClientError, BotoCoreError):
                return
            if task is None or task.get("lastStatus") == "STOPPED":
                return
            await asyncio.sleep(self.describe_interval)
        self.log.warning("Task %s of %s not STOPPED after %s s", arn, self._log_name, self.stop_timeout)
