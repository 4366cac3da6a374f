"""Local agent: runs the emulator's per-user ECS tasks as local processes.

In the local environment the AWS emulator (moto) records ECS tasks but runs nothing, and the
private IPs it reports are fake. This agent watches the emulator's ECS tasks and, for each live
task of a lakehub user server (a task tagged ``lakehub:user``, as FargateSpawner tags them):

1. reads the container's command and environment from the task definition and the task's
   overrides, and its environment files (``environmentFiles``, S3 objects) with the task's
   *execution* role's credentials, merging them as ECS does: files first (top down), then the
   container's ``environment``, then the overrides' (an unreadable file stops the task with
   ``ResourceInitializationError``, as on ECS),
2. gives the process the task role's credentials (assumed on the emulator, or taken from a
   prepared map when IAM enforcement is on), ``AWS_ENDPOINT_URL`` = the emulator and
   ``AWS_REGION``, the way ECS gives a task its role,
3. runs it on 127.0.0.1 with a free port: ``JUPYTERHUB_SERVICE_URL`` gets that host and port,
   and ``PORT`` / ``LAKEHUB_LOCAL_PORT`` carry the port for other commands,
4. reports the endpoint by tagging the task ``lakehub:local-endpoint`` = ``127.0.0.1:PORT``;
   FargateSpawner prefers that tag to the task's private IP (and waits for it when its
   ``wait_for_local_endpoint`` is on, the default with LAKEHUB_ECS_ENDPOINT_URL set).

It stops the process when the task is stopped, and stops the task (reason "Essential container
in task exited", like ECS) when the process exits on its own. It also tells the emulator to keep
ECS tasks RUNNING until they are stopped (moto otherwise moves a task one state towards
STOPPED on every describe).

Isolation (issue 14): when the agent runs as root, each task runs as its user's own
unprivileged Unix account (lakehub.local.accounts: ``lh-<user>``, created when missing, removed
at stop when the agent made it), in a folder of its own (0700, made by the agent without
following links, ``HOME`` and ``TMPDIR``) under a root-owned folder outside the supervisor's
state folder, with umask 077 and a fresh environment (only what the task definition, the
overrides and the image give, never the agent's own). So code in a kernel cannot read the state
folder or another process's /proc/<pid>/environ. Not root: tasks run as the agent's own user
(it cannot switch users; ``lakehub local up`` says so).

EFS volumes (issue 15's homes): each volume of the task definition with an
``efsVolumeConfiguration`` is a host folder ``<efs dir>/<file system id>/<access point root>``
(``efs_dir``: the platform passes ``<state>/efs``), made as EFS makes an access point's root: with
its ``CreationInfo`` owner and permissions when missing, never changed when present (folders
above it are root's, traverse-only 0711, a local difference: EFS needs none because the access
point is the root). The folder persists, so a home outlives its tasks. A process cannot see a
container path, so every environment value equal to a mount point's ``containerPath`` (or under
it: ``HOME``, ``LAKEHUB_HOME``, ``LAKEHUB_HOME_ROOT``...) is rewritten to the host folder, and a
``workingDirectory`` there becomes the process's working directory. When isolating, the process
runs as the access point's ``PosixUser`` (the uid and gid EFS enforces), which for a lakehub
home is the user's account's stable uid.

Local differences from Fargate, on purpose: no image (the command runs with this machine's
packages, the agent's Python environment first on PATH); `jupyterhub-singleuser` gets
`--allow-root` only when the agent runs as root without isolation; the container's cpu/memory
are not enforced.

Container runtime (issue 17, ``LocalAgent(..., runtime="container")``): each task runs as a
podman container of the image its task definition names (lakehub.local.containers has the
mechanics and says why host networking), as its definition's User (never root for a user's
server), with WorkingDirectory, EntryPoint/Command, ReadonlyRootFilesystem, the EFS folders
bind-mounted at their containerPath (no path rewriting), ``extra_mounts(task)`` for the
platform's own tasks, and the task role through the agent's own container-credentials endpoint
(``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, one role entry
per task, removed at its stop; never keys in the environment). It handles user-server tasks
and the platform's hub tasks (tag ``lakehub:hub``). The agent runs the definition's HealthCheck
itself and reports it in DescribeTasks (through the emulator's control API); a task started by
a service (``startedBy`` ecs-svc/...) whose container turns UNHEALTHY is stopped, as ECS stops
it ("Task failed container health checks"); a task run by RunTask keeps running, as on ECS.
Both runtimes: ``secrets`` are resolved with the task's execution role from the emulator's
Secrets Manager (full ARN, or ``ARN:json-key:version-stage:version-id``) and SSM Parameter Store
(a parameter ARN, or a name; SecureString decrypted); one that cannot be read stops the task with
``ResourceInitializationError: unable to pull secrets or registry auth: ...`` as on ECS; a
container's exit code goes to DescribeTasks (``containers[].exitCode``) when the emulator is the
local one.

Use from Python (``LocalAgent(endpoint_url).start()`` ... ``.stop()``) or as a command:
``python -m lakehub.local.agent --endpoint-url http://127.0.0.1:PORT [--cluster NAME]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lakehub.local.emulator import DEFAULT_REGION, LOOPBACK, free_port
from lakehub.errors import LakehubError
from lakehub.waiting import tries
from lakehub.local import accounts
from lakehub.local.processes import terminate_group

log = logging.getLogger("lakehub.local.agent")

# The same keys FargateSpawner uses (hub_images/lakehub_hub/fargate.py); repeated here so the
# agent does not import the hub package (and JupyterHub) to run.
TAG_USER = "lakehub:user"
TAG_HUB = "lakehub:hub"  # value: the tier's name; the platform's hub tasks (container runtime)
RUNTIMES = ("process", "container")
TAG_LOCAL_ENDPOINT = "lakehub:local-endpoint"

RoleCredentials = Callable[[str, str], dict]

ENV_FILE_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)/(?P<key>.+)$")


class EnvFileError(LakehubError):
    """A task's environment file cannot be read: ECS stops such a task before it starts."""


class SecretsError(LakehubError):
    """A task's secret cannot be read with its execution role: ECS stops the task before it
    starts. `source` is "asm" (Secrets Manager) or "ssm" (Parameter Store), as in ECS's reason."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source = source

    def reason(self) -> str:
        what = "unable to retrieve secret from asm" if self.source == "asm" else "unable to retrieve secrets from ssm"
        return f"ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: {what}: {self}"


SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[^:]*):(?P<account>\d*):secret:(?P<name>[^:]+)"
    r"(?::(?P<key>[^:]*)(?::(?P<stage>[^:]*)(?::(?P<version>[^:]*))?)?)?$"
)
PARAMETER_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:[^:]*:\d*:parameter(?P<name>/.+)$")


def secret_reference(value_from: str) -> tuple[str, dict]:
    """("asm", {SecretId, VersionStage?, VersionId?, json_key?}) or ("ssm", {Name}) for an ECS
    `secrets[].valueFrom`: a Secrets Manager ARN, optionally with `:json-key:version-stage:version-id`;
    a parameter ARN; anything else is the name of an SSM parameter (ECS reads a bare name so)."""
    match = SECRET_ARN.match(value_from)
    if match:
        arn = value_from.split(":secret:", 1)[0] + ":secret:" + match["name"]
        ref = {"SecretId": arn}
        if match["stage"]:
            ref["VersionStage"] = match["stage"]
        if match["version"]:
            ref["VersionId"] = match["version"]
        if match["key"]:
            ref["json_key"] = match["key"]
        return "asm", ref
    match = PARAMETER_ARN.match(value_from)
    if match:
        name = match["name"]
        # an ARN of a parameter without a leading slash (arn:...:parameter/name) names "name"
        return "ssm", {"Name": name if name.count("/") > 1 else name[1:]}
    return "ssm", {"Name": value_from}


def read_secret(client_for: Callable[[str], Any], value_from: str) -> str:
    """The value ECS gives a container for one `secrets[].valueFrom`, read with the client
    `client_for("asm")` (Secrets Manager) or `client_for("ssm")` returns: a JSON secret's key when
    the ARN names one (`ARN:json-key:version-stage:version-id`), else the whole SecretString.
    A SecretsError names what could not be read."""
    source, ref = secret_reference(value_from)
    client = client_for(source)
    try:
        if source == "ssm":
            return client.get_parameter(Name=ref["Name"], WithDecryption=True)["Parameter"]["Value"]
        key = ref.pop("json_key", None)
        value = client.get_secret_value(**ref)["SecretString"]
        if not key:
            return value
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if not isinstance(document, dict) or key not in document:
            raise SecretsError("asm", f"secret {ref['SecretId']} has no JSON key {key!r}")
        return document[key] if isinstance(document[key], str) else json.dumps(document[key])
    except (ClientError, BotoCoreError, KeyError) as exc:
        what = f"failed to fetch secret {value_from}" if source == "asm" else f"failed to fetch parameter {value_from}"
        raise SecretsError(source, f"{what}: {exc}") from None


def parse_env_file(text: str) -> dict[str, str]:
    """A Docker env-file as ECS reads it: VARIABLE=VALUE lines, `#` lines and blank lines
    ignored, no quoting or escapes (the value is everything after the first `=`)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        name, value = stripped.split("=", 1)
        env[name] = value
    return env


def keep_tasks_running(endpoint_url: str, control_token: str | None = None) -> None:
    """Make the emulator keep ECS tasks RUNNING until stop_task (moto's default advances a task
    one state towards STOPPED on every describe_tasks). The local emulator's control API needs
    the supervisor's token (lakehub.local.control); a plain moto server ignores it."""
    from lakehub.local.control import control_request

    body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}).encode()
    try:
        control_request(endpoint_url, "/moto-api/state-manager/set-transition", control_token, data=body, method="POST")
    except OSError as exc:
        raise LakehubError(
            f"the AWS emulator at {endpoint_url} did not answer ({exc}); start it first (lakehub local up)"
        ) from None


@dataclass
class LocalTask:
    """A task the agent runs."""

    arn: str
    cluster: str
    port: int
    process: subprocess.Popen
    log_path: Path
    workdir: Path
    account: "accounts.Account | None" = None
    container: str | None = None  # the container's name (container runtime)
    health: "object | None" = None  # its containers.HealthMonitor
    stop_timeout: int = 10
    role_entry: str | None = None  # its entry in the agent's credentials endpoint
    essential: str = ""  # the essential container's name
    started_by: str = ""


def _tags(task: dict) -> dict:
    return {t["key"]: t.get("value", "") for t in task.get("tags") or []}


def _pairs(items) -> dict:
    return {i["name"]: i.get("value", "") for i in items or []}


def image_environment() -> dict[str, str]:
    """The hub image's ENV for its containers (hub_images/Dockerfile), with this machine's
    interpreter standing in for the image's /usr/local/bin/python. RETICULATE_PYTHON matters:
    without it R's reticulate searches the folders above the working directory for a Python
    project, and a server started under a checkout finds the project's pyproject.toml and prints
    a Poetry warning in every R notebook (tests/browser saw it)."""
    return {"RETICULATE_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}


class LocalAgent:
    """Watch the emulator's ECS tasks and run lakehub user-server tasks as local processes."""

    def __init__(
        self,
        endpoint_url: str,
        clusters: list[str] | None = None,
        region: str = DEFAULT_REGION,
        work_dir: Path | str | None = None,
        poll_interval: float = 0.5,
        role_credentials: dict | RoleCredentials | None = None,
        host: str = LOOPBACK,
        control_token: str | None = None,
        isolate: bool | None = None,
        efs_dir: Path | str | None = None,
        runtime: str = "process",
        extra_mounts: "Callable[[dict], list[tuple[str, str, bool]]] | None" = None,
    ):
        if runtime not in RUNTIMES:
            raise LakehubError(f"unknown runtime {runtime!r}: give one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.extra_mounts = extra_mounts
        self.credentials_server = None  # the container runtime's task-role endpoint (start())
        self.endpoint_url = endpoint_url
        self.clusters = list(clusters or [])
        self.region = region
        self.poll_interval = poll_interval
        self.host = host
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="lakehub-agent-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # EFS volumes: kept across tasks (and agents), like the file system itself.
        self.efs_dir = Path(efs_dir) if efs_dir else self.work_dir / "efs"
        self.control_token = control_token
        # One Unix account per user when the agent can switch users (root); see the docstring.
        # Containers are their own isolation (their definition's user, their own file system).
        if runtime == "container":
            isolate = False
        self.isolate = accounts.can_isolate() if isolate is None else isolate
        if self.isolate and not accounts.can_isolate():
            raise LakehubError("the local agent can run servers as their users' own accounts only as root")
        self.task_root: Path | None = None
        self._task_root_fd: int | None = None
        self._accounts: dict[str, accounts.Account] = {}
        self._opened: list = []
        self._role_credentials = role_credentials
        self._credential_cache: dict[str, dict] = {}
        self.tasks: dict[str, LocalTask] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        session = boto3.session.Session()
        self.ecs = session.client("ecs", region_name=region, endpoint_url=endpoint_url)
        self.sts = session.client("sts", region_name=region, endpoint_url=endpoint_url)
        self.efs = session.client("efs", region_name=region, endpoint_url=endpoint_url)
        self.ecr = session.client("ecr", region_name=region, endpoint_url=endpoint_url)
        self._task_definitions: dict[str, dict] = {}

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> "LocalAgent":
        """Configure the emulator and watch in a background thread."""
        keep_tasks_running(self.endpoint_url, self.control_token)
        if self.runtime == "container" and self.credentials_server is None:
            from lakehub.local import containers
            from lakehub.local.credentials import CredentialsServer

            containers.podman()  # a clear error now rather than at the first task
            self.credentials_server = CredentialsServer().start()
        if self.isolate and self.task_root is None:
            # Task folders live outside the (private) work and state folders, in a folder only
            # root writes and others may only pass through.
            self.task_root = Path(tempfile.mkdtemp(prefix="lakehub-tasks-"))
            os.chmod(self.task_root, 0o711)
            self._task_root_fd = os.open(self.task_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            self._opened = accounts.open_for_others(accounts.interpreter_paths())
            # Users' servers reach their EFS folders: the folders on the way get traverse-only
            # o+x (nothing listed, nothing readable that is not itself readable).
            self.efs_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.efs_dir, 0o711)
            self._opened += accounts.open_for_others([str(self.efs_dir.parent)])
            for folder, _ in self._opened:
                log.warning(
                    "local agent: %s allows others to pass (o+x) while the agent runs, so user servers reach this Python", folder
                )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lakehub-local-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self, stop_tasks: bool = True) -> None:
        """Stop watching; end every process it runs (and, by default, stop their tasks)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        for arn in list(self.tasks):
            local = self.tasks.pop(arn)
            self._end(local)
            if stop_tasks:
                self._stop_task(local, "lakehub local agent stopped")
        self._clean_up_isolation()
        if self.credentials_server is not None:
            self.credentials_server.stop()
            self.credentials_server = None

    def _end(self, local: LocalTask) -> None:
        """End a task's process (its container: podman stop, then the foreground run ends) and
        forget its credentials; report the container's exit code."""
        if local.health is not None:
            local.health.stop()
        if local.container:
            from lakehub.local import containers

            containers.stop(local.container, local.process, timeout=local.stop_timeout)
        else:
            terminate_group(local.process, timeout=10)
        if local.role_entry and self.credentials_server is not None:
            self.credentials_server.remove_role(local.role_entry)
        if local.process is not None and local.process.returncode is not None:
            code, _ = exit_status(local.process.returncode)
            self._report(local, containers=[{"name": local.essential, "lastStatus": "STOPPED", "exitCode": code}])

    def _clean_up_isolation(self) -> None:
        for account in self._accounts.values():
            if account.created:  # an account that predates the agent may run other things
                _kill_account_processes(account.uid)
                accounts.remove_account(account)
        self._accounts.clear()
        if self._task_root_fd is not None:
            os.close(self._task_root_fd)
            self._task_root_fd = None
        if self.task_root is not None:
            shutil.rmtree(self.task_root, ignore_errors=True)  # fd-based: follows no link
            self.task_root = None
        accounts.restore_modes(self._opened)
        self._opened = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (ClientError, BotoCoreError) as exc:
                log.warning("local agent: emulator call failed: %s", exc)
            except Exception:  # keep watching; the next pass may succeed
                log.exception("local agent: unexpected error")
            self._stop.wait(self.poll_interval)

    # ---- one pass ---------------------------------------------------------------------------

    def _cluster_names(self) -> list[str]:
        if self.clusters:
            return self.clusters
        arns = []
        for page in self.ecs.get_paginator("list_clusters").paginate():
            arns.extend(page.get("clusterArns", []))
        return arns

    def run_once(self) -> None:
        """Start processes for new tasks, end those of stopped tasks, report exited ones."""
        live: set[str] = set()
        for cluster in self._cluster_names():
            arns = []
            for page in self.ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING"):
                arns.extend(page.get("taskArns", []))
            for i in range(0, len(arns), 100):
                described = self.ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + 100], include=["TAGS"]).get("tasks", [])
                for task in described:
                    if not self._handles(task):
                        continue
                    if task.get("lastStatus") == "STOPPED" or task.get("desiredStatus") == "STOPPED":
                        continue
                    live.add(task["taskArn"])
                    if task["taskArn"] not in self.tasks:
                        self._launch(cluster, task)
        for arn, local in list(self.tasks.items()):
            if arn not in live:
                log.info("local agent: task %s stopped; ending its %s", arn, "container" if local.container else "process")
                del self.tasks[arn]
                self._end(local)
            elif local.process.poll() is not None:
                code, killer = exit_status(local.process.returncode)
                how = f"was killed by {killer} (exit code {code})" if killer else f"exited with code {code}"
                log.info("local agent: %s of %s %s; stopping the task", "container" if local.container else "process", arn, how)
                del self.tasks[arn]
                oom = bool(local.container) and containers_oom_killed(local.container)
                self._end(local)
                if oom:  # as ECS reports it: the container's reason and 137 (lakehub.local.containers)
                    from lakehub.local.containers import OOM_EXIT_CODE, OOM_REASON

                    log.info("local agent: container of %s was killed for using more memory than its task has", arn)
                    self._report(
                        local,
                        containers=[
                            {"name": local.essential, "lastStatus": "STOPPED", "exitCode": OOM_EXIT_CODE, "reason": OOM_REASON}
                        ],
                    )
                    self._stop_task(local, f"Essential container in task exited (exit code {OOM_EXIT_CODE}: {OOM_REASON})")
                    continue
                start_error = self._podman_error(local) if local.container and code in (125, 126, 127) else None
                if start_error:  # podman could not make or start the container
                    self._report(local, containers=[{"name": local.essential, "reason": start_error}])
                    self._stop_task(local, f"CannotStartContainerError: {start_error}")
                else:
                    self._stop_task(
                        local, f"Essential container in task exited (exit code {code}{f': killed by {killer}' if killer else ''})"
                    )
            elif local.health is not None and local.health.status == "UNHEALTHY" and local.started_by.startswith("ecs-svc/"):
                log.info("local agent: task %s of a service is unhealthy; stopping it", arn)
                del self.tasks[arn]
                self._end(local)
                self._stop_task(local, "Task failed container health checks")

    def _handles(self, task: dict) -> bool:
        """User-server tasks; in the container runtime also the platform's hub tasks."""
        tags = _tags(task)
        return TAG_USER in tags or (self.runtime == "container" and TAG_HUB in tags)

    @staticmethod
    def _podman_error(local: LocalTask) -> str | None:
        try:
            lines = local.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        errors = [line for line in lines if line.startswith("Error: ")]
        return errors[-1].removeprefix("Error: ") if errors else None

    def _report(self, local: LocalTask, **status) -> None:
        """What DescribeTasks shows of the task (health, exit code): the local emulator's
        control API (a plain moto server lacks it: then nothing is reported)."""
        from lakehub.local.control import control_request

        body = json.dumps(dict(status, taskArn=local.arn)).encode()
        try:
            control_request(
                self.endpoint_url,
                "/moto-api/lakehub/ecs-task",
                self.control_token,
                data=body,
                method="POST",
                content_type="application/json",
            )
        except OSError as exc:
            log.debug("local agent: cannot report %s's status: %s", local.arn, exc)

    # ---- running a task ---------------------------------------------------------------------

    def _task_definition(self, arn: str) -> dict:
        if arn not in self._task_definitions:
            self._task_definitions[arn] = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self._task_definitions[arn]

    def _credentials(self, role_arn: str, session_name: str) -> dict:
        source = self._role_credentials
        if isinstance(source, dict):
            creds = source.get(role_arn)
            if not creds:
                raise LakehubError(f"no prepared credentials for role {role_arn}")
            return creds
        if callable(source):
            return source(role_arn, session_name)
        if role_arn not in self._credential_cache:
            self._credential_cache[role_arn] = self.sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])[
                "Credentials"
            ]
        return self._credential_cache[role_arn]

    def _command(self, container_def: dict, override: dict) -> list[str]:
        command = override.get("command") or container_def.get("command") or []
        entry = container_def.get("entryPoint") or []
        argv = list(entry) + list(command)
        if not argv:
            raise LakehubError("the task's container has no command (set one in the task definition)")
        bin_dir = Path(sys.executable).parent
        exe = argv[0]
        if exe in ("python", "python3"):
            argv[0] = sys.executable
        elif "/" not in exe:
            argv[0] = str(bin_dir / exe) if (bin_dir / exe).exists() else (shutil.which(exe) or exe)
        singleuser = Path(argv[0]).name == "jupyterhub-singleuser" or argv[1:3] == ["-m", "jupyterhub.singleuser"]
        if singleuser and os.geteuid() == 0 and not self.isolate and "--allow-root" not in argv:
            argv.append("--allow-root")  # the emulator's tasks run as this machine's user
        return argv

    def _env_files(self, container_def: dict, override: dict, task_def: dict, task_id: str) -> dict[str, str]:
        """The container's environment files, read as ECS reads them: the overrides' list
        replaces the task definition's; each object is read with the task's execution role
        (s3:GetBucketLocation, s3:GetObject); later files win over earlier ones."""
        files = override["environmentFiles"] if "environmentFiles" in override else container_def.get("environmentFiles")
        if not files:
            return {}
        role = task_def.get("executionRoleArn")
        if not role:
            raise EnvFileError("environment files need a task execution role, and the task definition has none")
        try:
            creds = self._credentials(role, f"lakehub-local-exec-{task_id}")
        except LakehubError as exc:
            raise EnvFileError(str(exc)) from None
        s3 = boto3.session.Session().client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
        )
        env: dict[str, str] = {}
        for item in files:
            arn = str(item.get("value", ""))
            match = ENV_FILE_ARN.match(arn)
            if item.get("type", "s3") != "s3" or not match or not arn.endswith(".env"):
                raise EnvFileError(f"{arn!r} is not the ARN of an S3 object named *.env")
            try:
                s3.get_bucket_location(Bucket=match["bucket"])
                body = s3.get_object(Bucket=match["bucket"], Key=match["key"])["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                raise EnvFileError(f"{arn}: {exc}") from None
            env.update(parse_env_file(body.decode("utf-8", errors="replace")))
        return env

    def _secrets(self, container_def: dict, task_def: dict, task_id: str) -> dict[str, str]:
        """The container's `secrets`, read as ECS reads them: with the task's execution role."""
        secrets = container_def.get("secrets") or []
        if not secrets:
            return {}
        role = task_def.get("executionRoleArn")
        if not role:
            raise SecretsError("asm", "secrets need a task execution role, and the task definition has none")
        try:
            creds = self._credentials(role, f"lakehub-local-exec-{task_id}")
        except LakehubError as exc:
            raise SecretsError("asm", str(exc)) from None
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
            region_name=self.region,
        )
        clients: dict[str, object] = {}
        out: dict[str, str] = {}

        def client_for(source: str):
            if source not in clients:
                clients[source] = session.client("secretsmanager" if source == "asm" else "ssm", endpoint_url=self.endpoint_url)
            return clients[source]

        for secret in secrets:
            name, value_from = secret.get("name", ""), str(secret.get("valueFrom", ""))
            value = read_secret(client_for, value_from)
            out[name] = value
        return out

    def _environment(self, container_def: dict, override: dict, task_def: dict, task_id: str, port: int) -> dict:
        container = self.runtime == "container"
        if container:
            env: dict[str, str] = {}  # the image's ENV (PATH...) applies; nothing of this machine's
        else:
            bin_dir = str(Path(sys.executable).parent)
            env = {
                "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": os.environ.get("LANG", "C.UTF-8"),
            }
            env.update(image_environment())  # what the image gives every container; the task's own wins
        # ECS: the container's environment takes precedence over its environment files, and
        # the overrides' environment over the container's.
        env.update(self._env_files(container_def, override, task_def, task_id))
        env.update(_pairs(container_def.get("environment")))
        env.update(_pairs(override.get("environment")))
        env.update(self._secrets(container_def, task_def, task_id))
        service_url = env.get("JUPYTERHUB_SERVICE_URL")
        if service_url:
            parts = urlsplit(service_url)
            env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(parts._replace(netloc=f"{self.host}:{port}"))
        env["PORT"] = env["LAKEHUB_LOCAL_PORT"] = str(port)
        from lakehub.local.processes import PART_MARKER, RUN_MARKER

        if os.environ.get(RUN_MARKER) and not container:  # the local platform's run: its next `down` finds the task's processes
            env[RUN_MARKER], env[PART_MARKER] = os.environ[RUN_MARKER], "agent task"
        env["AWS_ENDPOINT_URL"] = self.endpoint_url
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        role = task_def.get("taskRoleArn")
        if role and container:
            # As ECS gives a task its role: an endpoint and a token, never keys.
            if self.credentials_server is None:
                raise LakehubError("the container runtime's credentials endpoint is not running (call start() first)")
            creds = self._credentials(role, f"lakehub-local-{task_id}")
            env.update(self.credentials_server.add_role(task_id, creds, role))
        elif role:
            creds = self._credentials(role, f"lakehub-local-{task_id}")
            env["AWS_ACCESS_KEY_ID"] = creds["AccessKeyId"]
            env["AWS_SECRET_ACCESS_KEY"] = creds["SecretAccessKey"]
            if creds.get("SessionToken"):
                env["AWS_SESSION_TOKEN"] = creds["SessionToken"]
        return env

    def _launch(self, cluster: str, task: dict) -> None:
        arn = task["taskArn"]
        task_id = arn.rsplit("/", 1)[-1]
        task_def = self._task_definition(task["taskDefinitionArn"])
        containers = task_def.get("containerDefinitions") or []
        overrides = {o.get("name"): o for o in (task.get("overrides") or {}).get("containerOverrides") or []}
        container_def = next((c for c in containers if c.get("essential", True)), containers[0] if containers else {})
        override = overrides.get(container_def.get("name"), {})
        workdir = self.work_dir / task_id
        log_path = self.work_dir / f"{task_id}.log"
        port = unused_port({t.port for t in self.tasks.values()})
        if self.runtime == "container":
            return self._launch_container(cluster, task, task_def, container_def, override, port, log_path)
        account = None
        try:
            argv = self._command(container_def, override)
            env = self._environment(container_def, override, task_def, task_id, port)
            mounts, posix = self._efs_mounts(task_def, container_def)
            container_home = env.get("HOME")
            env = rewrite_paths(env, mounts)
            home_mapped = container_home is not None and env.get("HOME") != container_home
            cwd = map_path(container_def.get("workingDirectory") or "", mounts)
            as_user = {}
            if self.isolate:
                account, workdir = self._prepare_account(_tags(task)[TAG_USER], task_id)
                uid, gid = account.uid, account.gid
                if posix:  # EFS enforces the access point's identity on every file operation
                    uid, gid = int(posix["Uid"]), int(posix["Gid"])
                    if uid != account.uid:
                        log.warning(
                            "local agent: %s's access point says uid %s, the account %s has %s; running as the access point's",
                            _tags(task)[TAG_USER],
                            uid,
                            account.name,
                            account.uid,
                        )
                if not home_mapped:
                    env["HOME"] = str(workdir)
                env.update(USER=account.name, LOGNAME=account.name, TMPDIR=str(workdir / "tmp"))
                as_user = dict(user=uid, group=gid, extra_groups=[], umask=0o077)
            else:
                workdir.mkdir(parents=True, exist_ok=True)
                env.setdefault("HOME", str(workdir))
            if cwd:
                workdir = Path(cwd)
            out = open(log_path, "ab")
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    **as_user,
                )
            finally:
                out.close()
        except (LakehubError, ClientError, OSError) as exc:
            self._cannot_run(LocalTask(arn, cluster, port, None, log_path, workdir), exc)  # type: ignore[arg-type]
            return
        local = LocalTask(
            arn,
            cluster,
            port,
            process,
            log_path,
            workdir,
            account,
            essential=container_def.get("name", ""),
            started_by=task.get("startedBy") or "",
        )
        self.tasks[arn] = local
        log.info("local agent: task %s runs as pid %s on %s:%s (log %s)", arn, process.pid, self.host, port, log_path)
        self.ecs.tag_resource(resourceArn=arn, tags=[{"key": TAG_LOCAL_ENDPOINT, "value": f"{self.host}:{port}"}])

    def _cannot_run(self, local: LocalTask, exc: Exception) -> None:
        from lakehub.local.containers import ContainerError

        log.warning("local agent: cannot run task %s: %s", local.arn, exc)
        if isinstance(exc, EnvFileError):  # ECS fails the task before any container starts
            self._stop_task(local, f"ResourceInitializationError: failed to download env files: {exc}")
        elif isinstance(exc, SecretsError):
            self._stop_task(local, exc.reason())
        elif isinstance(exc, ContainerError):
            self._stop_task(local, f"{exc.reason}: {exc}")
        else:
            self._stop_task(local, f"CannotStartContainerError: lakehub local agent: {exc}")

    def _launch_container(
        self, cluster: str, task: dict, task_def: dict, container_def: dict, override: dict, port: int, log_path: Path
    ) -> None:
        """Run the task as a podman container of its image (lakehub.local.containers)."""
        from lakehub.local import containers

        arn = task["taskArn"]
        task_id = arn.rsplit("/", 1)[-1]
        name = containers.container_name(task_id)
        tags = _tags(task)
        local = LocalTask(
            arn,
            cluster,
            port,
            None,
            log_path,
            self.work_dir,
            container=name,  # type: ignore[arg-type]
            essential=container_def.get("name", ""),
            started_by=task.get("startedBy") or "",
            stop_timeout=int(container_def.get("stopTimeout") or containers.DEFAULT_STOP_TIMEOUT),
        )
        try:
            image = self.local_image(container_def.get("image") or "")
            if not image or not containers.image_exists(image):
                raise containers.ContainerError(
                    "CannotPullContainerError",
                    f"pull image manifest has been retried 1 time(s): {image or '(no image)'}: not found "
                    "(the local agent pulls nothing: build the image locally first)",
                )
            mounts, posix = self._efs_mounts(task_def, container_def)
            read_only = {mp.get("containerPath"): bool(mp.get("readOnly")) for mp in container_def.get("mountPoints") or []}
            binds = [containers.Mount(str(host), path, read_only.get(path, False)) for path, host in mounts]
            binds += [
                containers.Mount(str(h), c, bool(ro)) for h, c, ro in (self.extra_mounts(task) if self.extra_mounts else [])
            ]
            user = container_def.get("user") or None
            if posix:  # EFS enforces the access point's identity on every file operation
                user = f"{posix['Uid']}:{posix['Gid']}"
            if TAG_USER in tags and (user is None or user.split(":", 1)[0] in ("0", "root")):
                raise containers.ContainerError(
                    "CannotStartContainerError",
                    "a user's server must not run as root: set User in the task definition (the image's is root)",
                )
            env = self._environment(container_def, override, task_def, task_id, port)
            local.role_entry = task_id if task_def.get("taskRoleArn") else None
            labels = {containers.TASK_LABEL: arn}
            from lakehub.local.processes import RUN_MARKER

            if os.environ.get(RUN_MARKER):
                labels[containers.RUN_LABEL] = os.environ[RUN_MARKER]
            # A user's server gets its task's size, enforced as Fargate does (out of memory: the
            # container is killed). Hub tasks run without limits locally: a shared-mode hub task
            # holds every user's server, and the local sizes are the templates' AWS defaults.
            limits = containers.task_limits(task, task_def, container_def) if TAG_USER in tags else None
            out = open(log_path, "ab")
            try:
                local.process = containers.start(
                    lambda env_file, env_names: containers.run_argv(
                        name,
                        image,
                        container_def,
                        override,
                        mounts=binds,
                        user=user,
                        labels=labels,
                        env_file=env_file,
                        env_names=env_names,
                        limits=limits,
                    ),
                    env,
                    out,
                )
            finally:
                out.close()
        except (LakehubError, ClientError, OSError, subprocess.SubprocessError) as exc:
            if local.role_entry and self.credentials_server is not None:
                self.credentials_server.remove_role(local.role_entry)
            self._report(
                local, containers=[{"name": local.essential, "lastStatus": "STOPPED", "exitCode": None, "reason": str(exc)}]
            )
            self._cannot_run(local, exc)
            return
        self.tasks[arn] = local
        health = container_def.get("healthCheck")
        self._report(
            local,
            healthStatus="UNKNOWN",
            containers=[{"name": local.essential, "lastStatus": "RUNNING", "exitCode": None, "healthStatus": "UNKNOWN"}],
        )
        if health:

            def report(status: str, local=local) -> None:
                log.info("local agent: task %s is %s", local.arn, status)
                self._report(local, healthStatus=status, containers=[{"name": local.essential, "healthStatus": status}])

            local.health = containers.HealthMonitor(name, health, report).start()
        log.info(
            "local agent: task %s runs as container %s (pid %s) on %s:%s (log %s)",
            arn,
            name,
            local.process.pid,
            self.host,
            port,
            log_path,
        )
        self.ecs.tag_resource(resourceArn=arn, tags=[{"key": TAG_LOCAL_ENDPOINT, "value": f"{self.host}:{port}"}])

    def local_image(self, image: str) -> str:
        """The podman image of a task definition's image. `<repository URI>@sha256:...` (the
        tiers run digests: Custom::ImageDigest) is looked up in the emulated ECR: the tags of
        that digest there name the local image (`lakehub local up` tags the hub image with its
        repository name, as a push to ECR would). Anything else is used as it is."""
        from lakehub.local import containers

        repo_uri, sep, digest = image.partition("@")
        if not sep or "/" not in repo_uri:
            return image
        try:
            details = self.ecr.describe_images(repositoryName=repo_uri.split("/", 1)[1], imageIds=[{"imageDigest": digest}])[
                "imageDetails"
            ]
        except Exception as exc:  # noqa: BLE001 - reported as the task's pull error
            raise containers.ContainerError(
                "CannotPullContainerError", f"{image}: not in the emulated ECR ({type(exc).__name__}: {str(exc)[:160]})"
            ) from None
        for tag in (details[0].get("imageTags") or []) if details else []:
            if containers.image_exists(f"{repo_uri}:{tag}"):
                return f"{repo_uri}:{tag}"
        raise containers.ContainerError(
            "CannotPullContainerError",
            f"{image}: no local image carries a tag of that digest (the local agent pulls nothing: "
            "tag the local image as <repository URI>:<tag> and register the tag in the emulated ECR)",
        )

    def _efs_mounts(self, task_def: dict, container_def: dict) -> tuple[list[tuple[str, Path]], dict | None]:
        """[(containerPath, host folder)] for the container's EFS mount points (each folder made
        as EFS makes an access point's root), and the PosixUser of their access point (if any)."""
        volumes = {v.get("name"): v.get("efsVolumeConfiguration") for v in task_def.get("volumes") or []}
        mounts, posix = [], None
        for mp in container_def.get("mountPoints") or []:
            cfg = volumes.get(mp.get("sourceVolume"))
            if not cfg:
                continue
            fs_id = cfg["fileSystemId"]
            root, creation = cfg.get("rootDirectory") or "/", None
            ap_id = (cfg.get("authorizationConfig") or {}).get("accessPointId")
            if ap_id:
                ap = self.efs.describe_access_points(AccessPointId=ap_id)["AccessPoints"][0]
                if ap["FileSystemId"] != fs_id:
                    raise LakehubError(f"access point {ap_id} is not on file system {fs_id}")
                root = (ap.get("RootDirectory") or {}).get("Path") or "/"
                creation = (ap.get("RootDirectory") or {}).get("CreationInfo")
                posix = ap.get("PosixUser") or posix
            mounts.append((mp["containerPath"], self._efs_folder(fs_id, root, creation)))
        return mounts, posix

    def _efs_folder(self, fs_id: str, root: str, creation: dict | None) -> Path:
        return efs_folder(self.efs_dir, efs_folder_name(self.efs, fs_id), root, creation)

    def _prepare_account(self, hub_user: str, task_id: str) -> tuple["accounts.Account", Path]:
        """The user's account, and a new task folder (with tmp/) that it owns."""
        account = self._accounts.get(hub_user)
        if account is None:
            account = self._accounts[hub_user] = accounts.ensure_account(hub_user)
        accounts.make_private_folder(self._task_root_fd, task_id, account)
        folder_fd = os.open(task_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self._task_root_fd)
        try:
            accounts.make_private_folder(folder_fd, "tmp", account)
        finally:
            os.close(folder_fd)
        return account, self.task_root / task_id

    def _stop_task(self, local: LocalTask, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=local.cluster, task=local.arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            log.warning("local agent: could not stop task %s: %s", local.arn, exc)


EFS_FOLDER_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"  # a file system's id (fs-...) or Name tag, no dots


def unused_port(taken: set[int], pick=free_port, attempts: int = 100) -> int:
    """A free loopback port that no live task was given: a server can take a minute to bind its
    port on a loaded machine, and until then the kernel offers that port again (seen in
    benchmarks/load_local.py at 25 users per tier: two tasks got one port, and a hub routed a
    user to another user's server)."""
    for _ in range(attempts):
        port = pick()
        if port not in taken:
            return port
    raise LakehubError(f"no free loopback port outside the {len(taken)} the agent's tasks hold")


def efs_folder_name(efs_client, fs_id: str) -> str:
    """The host folder's name for an emulated file system: its Name tag (e.g. lakehub-homes),
    which stays the same across `lakehub local down`/`up` while the emulator gives the file
    system a new id at each deploy (homes must survive a restart); the id when it has no name."""
    try:
        name = efs_client.describe_file_systems(FileSystemId=fs_id)["FileSystems"][0].get("Name") or ""
    except (ClientError, BotoCoreError, IndexError, KeyError):
        name = ""
    return name if name and re.fullmatch(EFS_FOLDER_NAME, name) else fs_id


def efs_folder(efs_dir: Path, fs_id: str, root: str, creation: dict | None) -> Path:
    """<efs_dir>/<fs folder>/<root> (the folder: efs_folder_name's, or the file system's id), made
    without following links: folders on the way as the caller's 0711 (traverse only), the root
    itself with CreationInfo's owner and mode when it is missing (as EFS makes an access point's
    root on first mount); existing folders untouched."""
    parts = [fs_id] + [p for p in root.split("/") if p]
    if not re.fullmatch(EFS_FOLDER_NAME, fs_id) or any(p in (".", "..") for p in parts):
        raise LakehubError(f"bad EFS volume {fs_id}:{root}")
    efs_dir = Path(efs_dir)
    efs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(efs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            if made:
                if last and creation:
                    if os.geteuid() == 0:
                        os.fchown(fd, int(creation["OwnerUid"]), int(creation["OwnerGid"]))
                    os.fchmod(fd, int(str(creation["Permissions"]), 8))
                else:
                    os.fchmod(fd, 0o711 if not last else 0o755)
    finally:
        os.close(fd)
    return efs_dir.joinpath(*parts)


def map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    """A container path as the host sees it: under a mount point's containerPath -> under its
    host folder; anything else unchanged."""
    for container_path, host in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        base = container_path.rstrip("/")
        if value == (base or "/"):
            return str(host)
        if value.startswith(base + "/"):
            return str(host) + value[len(base) :]
    return value


def rewrite_paths(env: dict[str, str], mounts: list[tuple[str, Path]]) -> dict[str, str]:
    """Environment values that are container paths of a mount (HOME, LAKEHUB_HOME,
    LAKEHUB_HOME_ROOT...) point at the host folders instead."""
    if not mounts:
        return env
    return {k: (map_path(v, mounts) if v.startswith("/") else v) for k, v in env.items()}


def containers_oom_killed(name: str) -> bool:
    from lakehub.local.containers import oom_killed

    return oom_killed(name)


def exit_status(returncode: int) -> tuple[int, str | None]:
    """(the exit code a container reports, the signal's name or None) from a Popen return code:
    a process ended by signal N has returncode -N, which a container reports as 128 + N (137 for
    SIGKILL, the out-of-memory killer's signal; 143 for SIGTERM)."""
    if returncode >= 0:
        return returncode, None
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return 128 + number, name


def _account_pids(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _kill_account_processes(uid: int, timeout: float = 5.0) -> None:
    """What a user's server left running (a kernel in its own session) ends with it."""

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _account_pids(uid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        for _ in tries(timeout, interval=0.1):
            if not _account_pids(uid):
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehub.local.agent",
        description="Run the AWS emulator's lakehub user-server ECS tasks as local processes.",
    )
    parser.add_argument("--endpoint-url", required=True, help="the emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("--cluster", action="append", default=[], help="cluster to watch (default: all)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--work-dir", help="where task folders and logs go (default: a temporary folder)")
    parser.add_argument(
        "--role-credentials",
        help="JSON file {role ARN: {AccessKeyId, SecretAccessKey, SessionToken}} prepared before "
        "IAM enforcement was turned on (default: assume each task role on the emulator)",
    )
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="process",
        help="run tasks as host processes (default) or as podman containers of their image",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    creds = None
    if args.role_credentials:
        try:
            creds = json.loads(Path(args.role_credentials).read_text())
        except (OSError, ValueError) as exc:
            print(f"lakehub agent: error: cannot read {args.role_credentials}: {exc}", file=sys.stderr)
            return 2
    try:
        agent = LocalAgent(
            args.endpoint_url, args.cluster, args.region, args.work_dir, args.poll_interval, creds, runtime=args.runtime
        ).start()
    except LakehubError as exc:
        print(f"lakehub agent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
