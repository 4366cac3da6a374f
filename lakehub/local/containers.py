"""The local agent's container runtime: an ECS task as a podman container of its image.

``LocalAgent(runtime="container")`` (lakehub.local.agent) runs each task it handles as a
foreground ``podman run --name lakehub-task-<task id> ...`` under ``subprocess.Popen``:
``podman run``'s exit status is the container's, so the agent's process model (exit watching,
the task stopped with the container's exit code) is the same for both runtimes. This module
turns (container definition, container override, resolved environment, mounts) into that
command, the way ECS turns a task definition into a container:

- ``user`` -> ``--user``; ``workingDirectory`` -> ``--workdir``; ``entryPoint`` ->
  ``--entrypoint`` (JSON); ``command`` (the override's replaces the definition's) after the
  image; neither given: the image's own ENTRYPOINT/CMD.
- the environment (files, then ``environment``, then the override's, then the resolved
  ``secrets``: lakehub.local.agent merges them) never appears on podman's command line: it is
  written to a pipe that podman reads as ``--env-file /dev/fd/N`` (nothing on disk, nothing in
  ``ps``). The env-file format has no escapes, so a value with a line break goes through
  podman's own environment instead (``--env NAME``: podman copies NAME's value from its
  environment).
- ``readonlyRootFilesystem`` -> ``--read-only --read-only-tmpfs=false``: ECS mounts no tmpfs
  for you (podman's default would add writable /tmp, /var/tmp and /run).
- EFS volumes -> bind mounts of the host folders the agent makes at each mount point's
  ``containerPath`` (``:ro`` for ``readOnly``): the container sees the paths the task
  definition names, so nothing is rewritten.
- an image podman does not have stops the task with ``CannotPullContainerError`` (no registry
  is pulled from: ``--pull never``).
- size: a user-server task's memory (the container's ``memory`` hard limit if set, else the
  task's: the RunTask override's ``memory``, else the definition's) -> ``--memory`` and
  ``--memory-swap`` equal (no swap, as on Fargate), its ``cpu`` units / 1024 -> ``--cpus``
  (at most the host's CPUs). A container the kernel's OOM killer hit (podman's
  ``State.OOMKilled``, else the kernel log's record of the kill in the container's memory
  cgroup) stops the task as ECS reports it: the container's ``reason``
  "OutOfMemoryError: Container killed due to memory usage", exit code 137 (``oom_killed``).
  The container is kept (no ``--rm``) until the agent has read that; the agent removes it.
- ``healthCheck``: podman's own health timer needs systemd, which this machine lacks, so the
  agent runs the check itself (``health_check_argv``: ``podman exec``, ``CMD-SHELL`` through
  ``/bin/sh -c``) on the definition's interval, timeout, retries and start period.

Networking: ``--network host``, loopback only. Containers must reach the AWS emulator, the
container-credentials endpoint and the identity provider at the same ``127.0.0.1`` URLs the
browser and the hub use, and the hub must reach each user's server at the endpoint the agent
reports; host networking gives exactly that without a bridge, NAT or DNS of our own. What
differs from ``awsvpc`` on Fargate: a task has no IP of its own (every task shares the host's
loopback, so servers must bind 127.0.0.1 and a port the agent gives them: ``PORT`` /
``LAKEHUB_LOCAL_PORT``, and ``JUPYTERHUB_SERVICE_URL`` rewritten to 127.0.0.1:<free port>,
replace the definition's ``containerPort``); ``portMappings`` publish nothing (there is nothing
to publish on the host network), so a command that does not take its port from the environment
listens on its ``containerPort`` as is, and two such tasks collide; security groups are not
modelled. Code in a container reaches what the host's loopback offers, as in the process
runtime: the emulated AWS APIs (signed and IAM-checked), and the emulator's control API only
with the supervisor's token (lakehub.local.control: 403 without it).

Every container is labelled ``lakehub.task=<task ARN>`` and, inside a local platform run
(``LAKEHUB_LOCAL_RUN`` set), ``lakehub.run=<run token>``: ``remove_run_containers(token)``
removes what a crashed run left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from lakehub.errors import LakehubError

CONTAINER_PREFIX = "lakehub-task-"
RUN_LABEL = "lakehub.run"
TASK_LABEL = "lakehub.task"
# ECS's default stopTimeout is 30 s; the local agent gives a container 10 s unless its
# definition says otherwise (podman stop -t), then podman kills it.
DEFAULT_STOP_TIMEOUT = 10
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# What podman itself reads from its environment: passed from the agent's, so every podman call
# (image checks, builds, runs) sees the same storage and configuration.
PODMAN_ENV = re.compile(
    r"^(HOME|TMPDIR|XDG_[A-Z_]+|CONTAINERS_[A-Z_]+|CONTAINER_[A-Z_]+|REGISTRIES_CONFIG_PATH|STORAGE_[A-Z_]+)$"
)


class ContainerError(LakehubError):
    """A task's container cannot be made; `reason` is the ECS stop reason's prefix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Mount:
    host: str
    container: str
    read_only: bool = False

    def arg(self) -> str:
        if "," in self.host or ":" in self.host or ":" in self.container:
            raise ContainerError("CannotStartContainerError", f"cannot bind-mount {self.host!r} at {self.container!r}")
        return f"{self.host}:{self.container}:{'ro' if self.read_only else 'rw'}"


def podman() -> str:
    exe = shutil.which("podman")
    if not exe:
        raise LakehubError("podman is not installed (apt-get install podman runc); or run tasks as processes")
    return exe


def run_args() -> list[str]:
    """What `podman run` needs on this machine (runc, ulimits within the hard limits):
    lakehub.local.images.run_args, one place for the image build and the runtime."""
    from lakehub.local.images import run_args as image_run_args

    return list(image_run_args())


def container_name(task_id: str) -> str:
    return CONTAINER_PREFIX + task_id


def image_exists(image: str, timeout: float = 30) -> bool:
    result = subprocess.run([podman(), "image", "exists", image], capture_output=True, timeout=timeout)
    return result.returncode == 0


def run_argv(
    name: str,
    image: str,
    container_def: dict,
    override: dict,
    *,
    mounts: list[Mount] = (),
    user: str | None = None,
    labels: dict[str, str] | None = None,
    env_file: str | None = None,
    env_names: list[str] = (),
    limits: "Limits | None" = None,
) -> list[str]:
    """The `podman run` command line of a task's container (no environment values on it)."""
    argv = [podman(), "run", "--name", name, "--pull", "never", "--network", "host", "--log-driver", "none", *run_args()]
    if limits is not None:
        argv += limits.args()
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    if env_file:
        argv += ["--env-file", env_file]
    for env_name in env_names:
        argv += ["--env", env_name]
    if user:
        argv += ["--user", user]
    if container_def.get("workingDirectory"):
        argv += ["--workdir", container_def["workingDirectory"]]
    if container_def.get("entryPoint"):
        argv += ["--entrypoint", json.dumps(list(container_def["entryPoint"]))]
    if container_def.get("readonlyRootFilesystem"):
        argv += ["--read-only", "--read-only-tmpfs=false"]
    for mount in mounts:
        argv += ["--volume", mount.arg()]
    argv.append(image)
    command = override.get("command") or container_def.get("command") or []
    argv += list(command)
    return argv


# What ECS reports on a container the out-of-memory killer ended (DescribeTasks containers[]):
# "Troubleshooting Amazon ECS OutOfMemoryError errors", ECS developer guide (docs/AWS_NOTES.md).
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
OOM_EXIT_CODE = 137


@dataclass(frozen=True)
class Limits:
    """A task's size as podman flags: memory in MiB (None: unlimited), cpu in ECS units."""

    memory: int | None = None
    cpu: int | None = None

    def args(self) -> list[str]:
        argv = []
        if self.memory:
            # --memory-swap equal to --memory: no swap, as on Fargate.
            argv += ["--memory", f"{self.memory}m", "--memory-swap", f"{self.memory}m"]
        if self.cpu:
            cpus = min(self.cpu / 1024, float(os.cpu_count() or 1))
            argv += ["--cpus", f"{cpus:g}"]
        return argv


def _positive_int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def task_limits(task: dict, task_def: dict, container_def: dict) -> Limits:
    """The size ECS gives the container: its own hard `memory` limit if set, else the task's
    memory (RunTask's override, else the definition's); cpu the same way."""
    overrides = task.get("overrides") or {}
    memory = (
        _positive_int(container_def.get("memory"))
        or _positive_int(overrides.get("memory"))
        or _positive_int(task.get("memory"))
        or _positive_int(task_def.get("memory"))
    )
    cpu = (
        _positive_int(overrides.get("cpu"))
        or _positive_int(task.get("cpu"))
        or _positive_int(task_def.get("cpu"))
        or _positive_int(container_def.get("cpu"))
    )
    return Limits(memory, cpu)


KERNEL_LOG = "/dev/kmsg"


def kernel_oom_kills(container_id: str, log_path: str = KERNEL_LOG, limit: int = 100_000) -> bool:
    """Whether the kernel's log records an out-of-memory kill in this container's memory cgroup
    ("oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/.../libpod-<id>,..."). Needs root (or
    dmesg_restrict=0); False when the log cannot be read."""
    if not re.fullmatch(r"[0-9a-f]{12,64}", container_id or ""):
        return False
    marker = f"libpod-{container_id}"
    try:
        fd = os.open(log_path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        for _ in range(limit):  # one record per read, EAGAIN at the end
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError:  # EPIPE: records overwritten while reading; go on
                continue
            if not record:
                return False
            if marker.encode() in record and b"oom" in record.lower():
                return True
        return False
    finally:
        os.close(fd)


def oom_killed(name: str, timeout: float = 30) -> bool:
    """Whether the kernel's out-of-memory killer hit this exited container: podman's
    State.OOMKilled, else the kernel's log (podman 4.3's conmon does not see OOM kills on cgroup v1
    with runc, which this machine has: State.OOMKilled stays false while dmesg shows the kill)."""
    try:
        result = subprocess.run(
            [podman(), "container", "inspect", "--format", "{{.State.OOMKilled}} {{.Id}}", name],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if result.returncode != 0:
        return False
    flag, _, container_id = result.stdout.strip().partition(" ")
    return flag.lower() == "true" or kernel_oom_kills(container_id.strip())


def split_environment(env: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """(env-file text for podman's --env-file, the variables that cannot go there: values with a
    line break, which podman takes from its own environment with --env NAME)."""
    lines, rest = [], {}
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ContainerError("CannotStartContainerError", f"invalid environment variable name {name!r}")
        if "\n" in value or "\r" in value or "\0" in value:
            if "\0" in value:
                raise ContainerError("CannotStartContainerError", f"environment variable {name} holds a NUL byte")
            rest[name] = value
        else:
            lines.append(f"{name}={value}\n")
    return "".join(lines).encode(), rest


def start(argv_for: Callable[[str, list[str]], list[str]], env: dict[str, str], log_file) -> subprocess.Popen:
    """Start `podman run` with the environment given through a pipe. `argv_for(env_file,
    env_names)` gives the command line; the pipe's text is written by a thread (a pipe holds
    64 KiB) and the write end is closed once written, so podman reads to its end."""
    text, multiline = split_environment(env)
    clash = sorted(name for name in multiline if PODMAN_ENV.match(name) or name in ("PATH", "LANG"))
    if clash:
        raise ContainerError(
            "CannotStartContainerError",
            f"environment variable {clash[0]} holds a line break, which the local runtime cannot pass",
        )
    podman_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}
    podman_env.update({k: v for k, v in os.environ.items() if PODMAN_ENV.match(k)})
    podman_env.update(multiline)
    read_fd, write_fd = os.pipe()

    def write():
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(write_fd, view) :]
        except OSError:  # podman ended without reading (it failed to start)
            pass
        finally:
            os.close(write_fd)

    try:
        argv = argv_for(f"/dev/fd/{read_fd}", sorted(multiline))
        name = argv[argv.index("--name") + 1] if "--name" in argv else None
        if name:  # left by an agent that ended without stopping it: the task starts afresh
            subprocess.run([argv[0], "rm", "-f", "--ignore", "-t", "5", name], capture_output=True, timeout=60)
        # In the log's folder: conmon may leave a file named `oom` in its working directory after
        # an out-of-memory kill, which must not land in the caller's (a checkout).
        log_dir = os.path.dirname(getattr(log_file, "name", "") or "") or None
        process = subprocess.Popen(
            argv,
            env=podman_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(read_fd,),
            start_new_session=True,
            cwd=log_dir if log_dir and os.path.isdir(log_dir) else None,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    threading.Thread(target=write, name=f"env-{argv[-1] if argv else ''}", daemon=True).start()
    return process


def stop(name: str, process: subprocess.Popen | None, timeout: int = DEFAULT_STOP_TIMEOUT) -> None:
    """A task's stop: `podman stop -t N` (SIGTERM, then SIGKILL after N s), then the foreground
    `podman run` ends; if it does not, the container is removed by force."""
    exe = podman()
    try:
        subprocess.run([exe, "stop", "-t", str(timeout), name], capture_output=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        pass
    if process is not None:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    subprocess.run([exe, "rm", "-f", "--ignore", name], capture_output=True, timeout=60)


def exists(name: str) -> bool:
    return subprocess.run([podman(), "container", "exists", name], capture_output=True, timeout=30).returncode == 0


def remove_run_containers(run_token: str, timeout: float = 120) -> list[str]:
    """Remove (by force) every container labelled with this local platform run: what a crashed
    `lakehub local up` left for `lakehub local down`. Returns their names."""
    if not run_token or not shutil.which("podman"):
        return []
    listed = subprocess.run(
        [podman(), "ps", "-a", "--filter", f"label={RUN_LABEL}={run_token}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    names = [n for n in listed.stdout.split() if n]
    if names:
        subprocess.run([podman(), "rm", "-f", "-t", "5", *names], capture_output=True, timeout=timeout)
    return names


# ---- health checks ---------------------------------------------------------------------------

HEALTHY, UNHEALTHY, UNKNOWN = "HEALTHY", "UNHEALTHY", "UNKNOWN"


def health_check_argv(name: str, health: dict) -> list[str] | None:
    """`podman exec` of a task definition's healthCheck command (None: no check)."""
    command = list(health.get("command") or [])
    if not command or command[0] == "NONE":
        return None
    if command[0] == "CMD-SHELL":
        run = ["/bin/sh", "-c", " ".join(command[1:])]
    elif command[0] == "CMD":
        run = command[1:]
    else:  # ECS: a command without CMD/CMD-SHELL runs as CMD
        run = command
    return [podman(), "exec", name, *run]


class HealthMonitor:
    """Runs a container's health check as ECS's agent does: every `interval` seconds (default
    30), each attempt bounded by `timeout` (5); `retries` (3) failures in a row make it
    UNHEALTHY, one success HEALTHY; failures during `startPeriod` (0) do not count. UNKNOWN
    until the first decision. `report(status)` is called on every change."""

    def __init__(self, name: str, health: dict, report: Callable[[str], None]):
        self.argv = health_check_argv(name, health)
        self.interval = float(health.get("interval") or 30)
        self.timeout = float(health.get("timeout") or 5)
        self.retries = int(health.get("retries") or 3)
        self.start_period = float(health.get("startPeriod") or 0)
        self.report = report
        self.status = UNKNOWN
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"health-{name}", daemon=True)

    def start(self) -> "HealthMonitor":
        if self.argv:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> bool:
        try:
            return subprocess.run(self.argv, capture_output=True, timeout=self.timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _run(self) -> None:
        started = time.monotonic()
        failures = 0
        while not self._stop.wait(self.interval):
            ok = self.check_once()
            if self._stop.is_set():
                return
            if ok:
                failures, status = 0, HEALTHY
            elif time.monotonic() - started < self.start_period:
                continue
            else:
                failures += 1
                status = UNHEALTHY if failures >= self.retries else self.status
            if status != self.status:
                self.status = status
                self.report(status)
