"""Podman on this machine, and the hub image built locally from hub_images/Dockerfile.

No container registry is reachable from here, so the Dockerfile's two base images
(PYTHON_IMAGE, NODE_IMAGE) are *stand-ins* built from Debian bookworm: one debootstrap
root file system with the official images' apt sources, imported as
`localhost/lakehub-bookworm:<recipe hash>`; on it a Python stand-in (Debian's python3.11 in a
venv at /usr/local, the official image's layout) and a Node stand-in (the official Node binary
and the npm it bundles, from the npm registry, at the official layout). The hub image is then
built from the unchanged Dockerfile with those as build arguments and tagged
`localhost/lakehub-hub:<content hash>`; the production path (buildspec.yml, official images by
digest) does not use this module.

Public API (the container runtime and the platform call these):
  podman_problem() -> str | None    why containers cannot run here (one line), or None
  run_args() -> list[str]           arguments every `podman run` / `podman build` here needs
  ensure_hub_image(say, rebuild)    the local hub image reference, built when missing
"""

from __future__ import annotations

import functools
import json
import resource
import shutil
import subprocess
from pathlib import Path

from lakehub.errors import LakehubError

BASE_REPO = "localhost/lakehub-bookworm"
PROBE_TIMEOUT = 120

# RLIMIT_NOFILE has no kernel ceiling of its own beyond fs.nr_open; when the hard limit is
# unlimited, use podman's own default (containers/common: 1048576).
NOFILE_WHEN_UNLIMITED = 1048576


def _pid_max() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except (OSError, ValueError):
        return None


def run_args() -> list[str]:
    """`--runtime runc` and explicit nofile/nproc ulimits that this machine accepts.

    runc, not crun: crun fails on this machine's hybrid cgroup layout. The ulimits must be
    explicit (podman's defaults ask for more than the hard limits and are refused) and no
    higher than the hard limits, since a container cannot raise them. nproc is further capped at
    kernel.pid_max: podman lowers its *own* RLIMIT_NPROC to pid_max before it starts conmon and
    runc (containers/common pkg/config/default_linux.go, getDefaultProcessLimits), so runc
    cannot give a container more. Measured here: hard nproc 96365, pid_max 32768; nproc=32768
    runs, 32769 is refused with "error setting rlimit type 6: operation not permitted".
    """
    nofile = _hard_limit(resource.RLIMIT_NOFILE, NOFILE_WHEN_UNLIMITED)
    nproc = _hard_limit(resource.RLIMIT_NPROC, None)
    pid_max = _pid_max()
    if pid_max:
        nproc = pid_max if nproc is None else min(nproc, pid_max)
    if nproc is None:  # unlimited and no pid_max to read: podman's default
        nproc = NOFILE_WHEN_UNLIMITED
    return ["--runtime", "runc", "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _hard_limit(which: int, when_unlimited: int | None) -> int | None:
    hard = resource.getrlimit(which)[1]
    return when_unlimited if hard == resource.RLIM_INFINITY else int(hard)


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error") or "error" in line.lower():
            return line[:300]
    return lines[0][:300] if lines else "no output"


def _run(cmd: list[str], timeout: float = PROBE_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def local_images(repository: str) -> list[str]:
    """References (`repo:tag`) of the images of one repository in podman's storage."""
    try:
        out = _run(["podman", "images", "--format", "json", "--filter", f"reference={repository}"])
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    refs = []
    for image in json.loads(out.stdout or "[]"):
        refs.extend(name for name in image.get("Names") or [] if name.startswith(repository + ":"))
    return sorted(refs)


@functools.lru_cache(maxsize=1)
def podman_problem() -> str | None:
    """None when podman can run containers here; else one line: the cause and the fix.

    Cached per process (`podman_problem.cache_clear()` asks again). With a lakehub base image
    in storage it runs a trivial container of it; without one, `podman info` and runc present
    are enough (the first build will show the rest).
    """
    if not shutil.which("podman"):
        return "podman is not installed: run `make setup` (or `apt-get install podman runc`)"
    if not shutil.which("runc"):
        return ("runc is not installed (podman runs containers here with runc; crun fails on this cgroup layout): "
                "run `make setup` (or `apt-get install runc`)")
    try:
        info = _run(["podman", "info", "--format", "json"])
    except subprocess.TimeoutExpired:
        return f"`podman info` did not answer within {PROBE_TIMEOUT} s: check podman's storage (/var/lib/containers)"
    if info.returncode != 0:
        return f"`podman info` failed: {_first_error_line(info.stderr)}; fix podman's set-up (`make setup`)"
    bases = local_images(BASE_REPO)
    if not bases:
        return None
    try:
        trial = _run(["podman", "run", "--rm", *run_args(), "--network", "none", bases[-1], "true"])
    except subprocess.TimeoutExpired:
        return f"a trial `podman run` of {bases[-1]} did not end within {PROBE_TIMEOUT} s"
    if trial.returncode != 0:
        return (f"a trial `podman run` of {bases[-1]} was refused: {_first_error_line(trial.stderr)} "
                "(check `podman run --runtime runc` and the ulimits in lakehub.local.images.run_args)")
    return None
