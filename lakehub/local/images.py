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

`say` is told each step in one line; a caller with a live display (lakehub.cli.local on a
terminal) passes `step` too: it is told what each build runs now, (title, current step), and
`say` then only of the build's start and end.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.waiting import tries

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
        return (
            "runc is not installed (podman runs containers here with runc; crun fails on this cgroup layout): "
            "run `make setup` (or `apt-get install runc`)"
        )
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
        return (
            f"a trial `podman run` of {bases[-1]} was refused: {_first_error_line(trial.stderr)} "
            "(check `podman run --runtime runc` and the ulimits in lakehub.local.images.run_args)"
        )
    return None


# ------------------------------------------------------------------------------------------
# Where things are kept
# ------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
HUB_CONTEXT = ROOT / "hub_images"
HUB_REPO = "localhost/lakehub-hub"
PYTHON_STANDIN_REPO = "localhost/lakehub-standin-python"
NODE_STANDIN_REPO = "localhost/lakehub-standin-node"
BUILD_LOCK_TIMEOUT = 3600  # another process's first build takes several minutes
BUILD_TIMEOUT = 3600
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def cache_dir() -> Path:
    """Downloaded tarballs, the debootstrap root file system and build logs:
    $LAKEHUB_IMAGE_CACHE, else $XDG_CACHE_HOME/lakehub/images, else ~/.cache/lakehub/images."""
    if os.environ.get("LAKEHUB_IMAGE_CACHE"):
        return Path(os.environ["LAKEHUB_IMAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lakehub" / "images"


def _short_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------
# The Debian bookworm base: one debootstrap minbase root file system
# ------------------------------------------------------------------------------------------
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# ca-certificates: both official images carry it. python3.11 + python3-venv: the Python stand-in's
# interpreter and ensurepip (its pip wheel is Debian's, which trusts the system CA bundle).
# libpython3.11: the shared library the official image has (built --enable-shared) and R's
# reticulate loads (sysconfig's LIBDIR/LDLIBRARY); without it every R notebook that imports boto3
# failed with "Python shared library not found" (tests/local/test_local_containers.py).
BASE_PACKAGES = ("ca-certificates", "python3.11", "python3-venv", "libpython3.11")
# The apt sources of the official python:*-bookworm and node:*-bookworm images (debootstrap writes
# only `bookworm main` to sources.list: without updates and security, the Dockerfile's pinned
# deb12uN revisions are "not found").
DEBIAN_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # node:*-bookworm-slim
PYTHON_PATH = "/usr/local/bin:" + DEFAULT_PATH  # python:*-slim-bookworm puts /usr/local/bin first


def _arch() -> tuple[str, str]:
    """(Debian architecture, Node's platform name) of this machine."""
    machine = platform.machine()
    if machine in ("x86_64", "amd64"):
        return "amd64", "x64"
    if machine in ("aarch64", "arm64"):
        return "arm64", "arm64"
    raise LakehubError(
        f"no Node.js build for this machine's architecture ({machine}): the local hub image needs x86_64 or aarch64"
    )


def base_recipe() -> dict:
    return {
        "suite": SUITE,
        "mirror": MIRROR,
        "variant": "minbase",
        "include": list(BASE_PACKAGES),
        "arch": _arch()[0],
        "sources": DEBIAN_SOURCES,
        "path": DEFAULT_PATH,
        "lang": "C.UTF-8",
    }


def base_tag() -> str:
    return f"{BASE_REPO}:{_short_hash(json.dumps(base_recipe(), sort_keys=True))}"


# ------------------------------------------------------------------------------------------
# What the Dockerfile asks for
# ------------------------------------------------------------------------------------------
# The npm that each Node release bundles (nodejs.org/dist/index.json, field "npm"; nodejs.org is
# not reachable from here, the npm registry is). Add a row when the Dockerfile's NODE_IMAGE moves.
NODE_BUNDLED_NPM = {"20.19.5": "10.8.2"}


def dockerfile_bases(dockerfile: Path | None = None) -> dict[str, str]:
    """The default tags of the Dockerfile's PYTHON_IMAGE and NODE_IMAGE build arguments."""
    text = (dockerfile or HUB_CONTEXT / "Dockerfile").read_text()
    found = dict(re.findall(r"^ARG\s+(PYTHON_IMAGE|NODE_IMAGE)=(\S+)\s*$", text, re.MULTILINE))
    missing = {"PYTHON_IMAGE", "NODE_IMAGE"} - set(found)
    if missing:
        raise LakehubError(
            f"hub_images/Dockerfile has no default for {', '.join(sorted(missing))} "
            "(`ARG NAME=image:tag`): the local build takes the versions from there"
        )
    return found


def node_version(node_image: str) -> str:
    match = re.fullmatch(r"node:(\d+\.\d+\.\d+)-bookworm(-slim)?(@sha256:[0-9a-f]+)?", node_image)
    if not match:
        raise LakehubError(
            f"NODE_IMAGE {node_image!r} is not node:<x.y.z>-bookworm[-slim]: the local stand-in is built for that form only"
        )
    return match.group(1)


def python_minor(python_image: str) -> str:
    match = re.fullmatch(r"python:(3\.\d+)(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]+)?", python_image)
    if not match:
        raise LakehubError(
            f"PYTHON_IMAGE {python_image!r} is not python:<3.x.y>-slim-bookworm: the local stand-in is built for that form only"
        )
    if match.group(1) != "3.11":
        raise LakehubError(
            f"PYTHON_IMAGE asks for Python {match.group(1)}; Debian bookworm has 3.11, so the local stand-in cannot provide it"
        )
    return match.group(1)


# ------------------------------------------------------------------------------------------
# Stand-in recipes (Containerfiles built on the base)
# ------------------------------------------------------------------------------------------
def _standin_labels(for_image: str, base: str, what: str, built_from: str) -> str:
    """The LABEL instruction that says a stand-in is one, what it stands in for and what it is built from."""
    return f"""\
LABEL org.opencontainers.image.title="lakehub stand-in for {for_image}" \\
      org.opencontainers.image.description="NOT the official image: {what}, for building the hub image where no registry is reachable" \\
      org.opencontainers.image.base.name="{base}" \\
      io.lakehub.standin.for="{for_image}" \\
      io.lakehub.standin.built-from="{built_from}\""""


def python_containerfile(base: str, for_image: str) -> str:
    # A venv at /usr/local over Debian's python3.11 gives the official image's layout:
    # /usr/local/bin/python and pip, purelib /usr/local/lib/python3.11/site-packages, pip allowed
    # (Debian's EXTERNALLY-MANAGED marker applies to the system prefix only), `--prefix=/install`
    # lays out /install/lib/python3.11/site-packages. include-system-site-packages = true keeps
    # the user site on, so `pip install --user` works as in the official image.
    return f"""\
FROM {base}
RUN python3.11 -m venv /usr/local \\
 && sed -i 's/^include-system-site-packages = .*/include-system-site-packages = true/' /usr/local/pyvenv.cfg \\
 && ln -sf python3.11 /usr/local/bin/python3 \\
 && /usr/local/bin/python -m pip --version \\
 && /usr/local/bin/python -c "import site, sys, sysconfig; assert site.ENABLE_USER_SITE; assert sysconfig.get_paths()['purelib'] == '/usr/local/lib/python3.11/site-packages', sysconfig.get_paths()" \\
 && /usr/local/bin/python -c "import os, sysconfig; lib = os.path.join(sysconfig.get_config_var('LIBDIR'), 'libpython3.11.so.1.0'); assert os.path.exists(lib), lib"
ENV PATH={PYTHON_PATH} LANG=C.UTF-8
{
        _standin_labels(
            for_image,
            base,
            "Debian bookworm's python3.11 in a venv at /usr/local (the official layout)",
            "debootstrap bookworm minbase + Debian python3.11, python3-venv; python3.11 -m venv /usr/local",
        )
    }
CMD ["python3"]
"""


def node_containerfile(base: str, for_image: str, node_tgz: str, npm_tgz: str, version: str, npm_version: str) -> str:
    # The official node image: /usr/local/bin/node, npm at /usr/local/lib/node_modules/npm with
    # bin links, user node (uid 1000). The Node binary is the official build, published on the
    # npm registry as node-linux-<arch>; npm is the version that Node release bundles.
    return f"""\
FROM {base}
COPY {node_tgz} {npm_tgz} /tmp/
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && mkdir -p /usr/local/lib/node_modules/npm \\
 && tar -xzf /tmp/{node_tgz} -C /usr/local --strip-components=1 --no-same-owner package/bin/node package/include package/share \\
 && tar -xzf /tmp/{npm_tgz} -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner \\
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && rm /tmp/{node_tgz} /tmp/{npm_tgz} \\
 && test "$(node --version)" = "v{version}" && test "$(npm --version)" = "{npm_version}"
ENV PATH={DEFAULT_PATH} NODE_VERSION={version} LANG=C.UTF-8
{
        _standin_labels(
            for_image,
            base,
            f"the official Node {version} binary (npm registry package {node_tgz.rsplit('-', 1)[0]}) and npm {npm_version} on Debian bookworm",
            f"debootstrap bookworm minbase + npm pack {node_tgz[:-4].rsplit('-', 1)[0]}@{version} + npm pack npm@{npm_version}",
        )
    }
CMD ["node"]
"""


# ------------------------------------------------------------------------------------------
# The hub image's inputs
# ------------------------------------------------------------------------------------------
def _dockerignore_patterns(context: Path) -> list[tuple[bool, re.Pattern]]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line[1:] if keep else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((keep, re.compile(regex + r"(?:/.*)?\Z")))
    return rules


def context_files(context: Path | None = None) -> list[str]:
    """The files of the build context the build reads (.dockerignore applied), relative, sorted."""
    context = context or HUB_CONTEXT
    rules = _dockerignore_patterns(context)
    files = []
    for path in sorted(context.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(context).as_posix()
        excluded = False
        for keep, regex in rules:  # the last matching rule wins, as in Docker
            if regex.match(rel):
                excluded = not keep
        if not excluded:
            files.append(rel)
    return files


# How the hub image is built, beyond its inputs (part of its tag: a change here rebuilds).
# --format docker: the OCI format, podman's default, drops the Dockerfile's SHELL (its RUN steps
# would lose `pipefail`) and HEALTHCHECK; Docker, as CodeBuild runs it, keeps both.
HUB_BUILD_FLAGS = ("--format", "docker", "--network", "host", "--pull=never", "--layers")
STANDIN_BUILD_FLAGS = ("--format", "docker", "--network", "none", "--pull=never")


def hub_content_hash(python_id: str, node_id: str, context: Path | None = None, flags: tuple[str, ...] = HUB_BUILD_FLAGS) -> str:
    """Every file the build reads (name, executable bit, bytes), the stand-ins' image ids and the
    build flags."""
    context = context or HUB_CONTEXT
    parts: list[str | bytes] = [f"python={python_id}", f"node={node_id}", " ".join(flags)]
    for rel in context_files(context):
        path = context / rel
        parts += [rel, "x" if os.access(path, os.X_OK) else "-", path.read_bytes()]
    return _short_hash(*parts)


# ------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------
@dataclass
class HubImage:
    ref: str
    image_id: str
    size_bytes: int
    built: bool  # False: found in podman's storage
    seconds: float


def _image_id(ref: str) -> str | None:
    try:
        out = _run(["podman", "image", "inspect", "--format", "{{.Id}}", ref])
    except subprocess.TimeoutExpired:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _image_size(ref: str) -> int:
    out = _run(["podman", "image", "inspect", "--format", "{{.Size}}", ref])
    try:
        return int(out.stdout.strip())
    except ValueError:
        return 0


@contextlib.contextmanager
def _build_lock(say):
    """One build at a time on this machine (several test workers, `make local` and a benchmark
    may all ask for the image at once); the others wait and then find the tag."""
    lock_path = cache_dir() / "build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        told = False
        for _ in tries(BUILD_LOCK_TIMEOUT, interval=1):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    say(f"waiting for another lakehub image build on this machine (lock {lock_path})")
                    told = True
        else:
            raise LakehubError(
                f"another lakehub image build held {lock_path} for over {BUILD_LOCK_TIMEOUT} s; "
                "wait for it, or end it and run `lakehub local image` again"
            )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Progress:
    """What a build runs now: to `step` (title, current step; None when it ended) when given, for a
    live display; else one line per build step through `say`."""

    STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)$")
    PHASE = re.compile(
        r"^(Retrieving Release|Installing core|Unpacking required|Configuring required|"
        r"Unpacking the base|Configuring the base|Base system installed)"
    )

    def __init__(self, title: str, say, step=None):
        self.title = title
        self.say = say
        self.started = time.monotonic()
        self.stage_names: dict[str, str] = {}
        self.current = "starting"
        self.live = step

    def __enter__(self):
        if self.live:
            self.live(self.title, self.current)
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live(self.title, None)  # the build ended

    def line(self, text: str) -> None:
        """One line of the build tool's output: update the display."""
        match = self.STEP.match(text.strip())
        if match:
            stage, stages, step, steps, what = match.groups()
            as_name = re.search(r"\bAS\s+(\S+)", what)
            if stage and what.startswith("FROM") and as_name:
                self.stage_names[stage] = as_name.group(1)
            where = f"stage {stage}/{stages} {self.stage_names.get(stage, '')} ".replace("  ", " ") if stage else ""
            self.current = f"{where}STEP {step}/{steps}: {what}"
            if not self.live:
                self.say(f"{self.title}: {self.current[:110]} ({self.elapsed():.0f} s)")
        elif text.startswith("I: "):  # debootstrap: hundreds of lines; its phases only when not live
            self.current = text[3:].strip()
            if not self.live and self.PHASE.match(self.current):
                self.say(f"{self.title}: {self.current} ({self.elapsed():.0f} s)")
        if self.live:
            self.live(self.title, self.current)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _stream(cmd: list[str], log_path: Path, progress: _Progress, timeout: float = BUILD_TIMEOUT, **kwargs) -> int:
    """Run a build command, every output line to the log and to the progress display."""
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        # A build that stops printing is still ended on time: the timer kills it, the pipe closes.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                progress.line(line.rstrip("\n"))
            code = proc.wait(timeout=60)
        finally:
            watchdog.cancel()
        if code < 0:
            log.write(f"\n[lakehub] {cmd[0]} {cmd[1]} ended by signal {-code} (time limit {timeout:.0f} s)\n")
        return code


def _failure_line(log_path: Path, what: str) -> str:
    """The last build step before the failure and the tool's error line, from the log."""
    step = error = ""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if _Progress.STEP.match(line.strip()):
            step = line.strip()
        if re.match(r"^(Error|error|E: |W: Failed|npm ERR!|ERROR)", line.strip()):
            error = line.strip()
    where = f" at {step[:160]}" if step else ""
    why = f": {error[:240]}" if error else ""
    return f"{what} failed{where}{why}; full log: {log_path}"


def _new_log(name: str) -> Path:
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    path.write_text("")
    return path


def _podman_build(tag: str, context: Path, log_name: str, title: str, say, extra: list[str], step=None) -> None:
    """`podman build` into an image id; the tag is added only once the whole build succeeded."""
    log_path = _new_log(log_name)
    iidfile = cache_dir() / f".{log_name}.iid"
    iidfile.unlink(missing_ok=True)
    cmd = ["podman", "build", *run_args(), "--iidfile", str(iidfile), *extra, str(context)]
    with _Progress(title, say, step) as progress:
        code = _stream(cmd, log_path, progress)
    if code != 0 or not iidfile.exists():
        raise LakehubError(_failure_line(log_path, title))
    image_id = iidfile.read_text().strip()
    iidfile.unlink(missing_ok=True)
    tagged = _run(["podman", "tag", image_id, tag])
    if tagged.returncode != 0:
        raise LakehubError(f"could not tag {image_id[:19]} as {tag}: {_first_error_line(tagged.stderr)}")


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LakehubError(f"{what} needs root (debootstrap and rootful podman): run `lakehub local image` as root, or with sudo")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return sorted((line.split()[1] for line in lines if line.split()[1].startswith(prefix)), reverse=True)


def _remove_rootfs(path: Path) -> None:
    """Remove a debootstrap target, never through a file system still mounted inside it."""
    if not path.exists():
        return
    for mount in _mounts_under(path):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=60)
    if _mounts_under(path):
        raise LakehubError(
            f"{path} still has mounts inside ({', '.join(_mounts_under(path))}); unmount them, remove it and try again"
        )
    shutil.rmtree(path)


def ensure_base(say=print, step=None) -> str:
    """`localhost/lakehub-bookworm:<recipe hash>`, imported from a debootstrap root file system
    (kept as a tarball in the cache) when podman does not have it."""
    tag = base_tag()
    if _image_id(tag):
        return tag
    _require_root("building the Debian base image")
    if not shutil.which("debootstrap"):
        raise LakehubError("debootstrap is not installed: run `make setup` (or `apt-get install debootstrap`)")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    digest = tag.rsplit(":", 1)[1]
    tarball = cache / f"bookworm-{digest}.tar"
    if not tarball.exists():
        rootfs = cache / f"rootfs-{digest}.tmp"
        _remove_rootfs(rootfs)
        log_path = _new_log("bookworm-debootstrap")
        say(f"building the Debian bookworm root file system (debootstrap; about a minute); log {log_path}")
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            f"--arch={_arch()[0]}",
            SUITE,
            str(rootfs),
            MIRROR,
        ]
        with _Progress("debootstrap bookworm", say, step) as progress:
            code = _stream(cmd, log_path, progress, timeout=1800)
        if code != 0:
            _remove_rootfs(rootfs)
            raise LakehubError(_failure_line(log_path, "debootstrap of Debian bookworm"))
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(DEBIAN_SOURCES)
        for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):  # as the official images ship
            for item in (rootfs / folder).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = cache / f"bookworm-{digest}.tar.partial"
        tarred = _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."], timeout=900)
        _remove_rootfs(rootfs)
        if tarred.returncode != 0:
            partial.unlink(missing_ok=True)
            raise LakehubError(f"could not pack the bookworm root file system: {_first_error_line(tarred.stderr)}")
        partial.rename(tarball)
    say(f"importing {tarball.name} as {tag}")
    changes = [
        f"ENV PATH={DEFAULT_PATH}",
        "ENV LANG=C.UTF-8",
        'CMD ["bash"]',
        "LABEL org.opencontainers.image.title=lakehub-bookworm",
        f"LABEL io.lakehub.built-from=debootstrap-{SUITE}-minbase+{'+'.join(BASE_PACKAGES)}",
    ]
    cmd = ["podman", "import", "--quiet"]
    for change in changes:
        cmd += ["--change", change]
    imported = _run([*cmd, str(tarball), tag], timeout=900)
    if imported.returncode != 0:
        raise LakehubError(f"podman import of {tarball} failed: {_first_error_line(imported.stderr)}")
    return tag


def _npm_pack(spec: str, say) -> Path:
    """`npm pack <spec>` into the cache (npm checks the registry's integrity hash)."""
    folder = cache_dir() / "npm"
    folder.mkdir(parents=True, exist_ok=True)
    name, version = spec.rsplit("@", 1)
    path = folder / f"{name}-{version}.tgz"
    if path.exists():
        return path
    if not shutil.which("npm"):
        raise LakehubError(
            "npm is not installed on this machine: it fetches the Node stand-in from the npm registry "
            "(`apt-get install npm`, or `make setup`)"
        )
    say(f"fetching {spec} from the npm registry")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = _run(["npm", "pack", spec, "--pack-destination", tmp, "--json", "--loglevel=error"], timeout=600)
        packed = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or len(packed) != 1:
            raise LakehubError(
                f"`npm pack {spec}` failed: {_first_error_line(out.stderr or out.stdout)}; "
                "check that the npm registry is reachable (npm config get registry)"
            )
        packed[0].rename(path)
    return path


def ensure_python_standin(base: str, python_image: str, say=print, step=None) -> str:
    python_minor(python_image)
    base_id = _image_id(base) or ""
    text = python_containerfile(base, python_image)
    tag = f"{PYTHON_STANDIN_REPO}:3.11-bookworm-{_short_hash(base_id, text, *STANDIN_BUILD_FLAGS)}"
    if _image_id(tag):
        return tag
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        (Path(tmp) / "Containerfile").write_text(text)
        _podman_build(
            tag,
            Path(tmp),
            "standin-python",
            f"stand-in for {python_image}",
            say,
            [*STANDIN_BUILD_FLAGS, "-f", str(Path(tmp) / "Containerfile")],
            step,
        )
    return tag


def ensure_node_standin(base: str, node_image: str, say=print, step=None) -> str:
    version = node_version(node_image)
    npm_version = NODE_BUNDLED_NPM.get(version)
    if not npm_version:
        raise LakehubError(
            f"which npm Node {version} bundles is not known here: add it to NODE_BUNDLED_NPM in "
            'lakehub/local/images.py (the "npm" field of nodejs.org/dist/index.json)'
        )
    node_spec, npm_spec = f"node-linux-{_arch()[1]}@{version}", f"npm@{npm_version}"
    # The tag names the versions (npm pack checks each tarball against the registry's integrity
    # hash), so finding the image needs no download; the tarballs are fetched to build it.
    node_name, npm_name = (spec.replace("@", "-") + ".tgz" for spec in (node_spec, npm_spec))
    text = node_containerfile(base, node_image, node_name, npm_name, version, npm_version)
    tag = f"{NODE_STANDIN_REPO}:{version}-bookworm-{_short_hash(_image_id(base) or '', text, *STANDIN_BUILD_FLAGS)}"
    if _image_id(tag):
        return tag
    tarballs = [_npm_pack(node_spec, say), _npm_pack(npm_spec, say)]
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        for tgz in tarballs:
            shutil.copy(tgz, Path(tmp) / tgz.name)
        (Path(tmp) / "Containerfile").write_text(text)
        sums = ",".join(f"{tgz.name}:sha256:{_file_sha(tgz)}" for tgz in tarballs)
        _podman_build(
            tag,
            Path(tmp),
            "standin-node",
            f"stand-in for {node_image}",
            say,
            [*STANDIN_BUILD_FLAGS, "--label", f"io.lakehub.standin.tarballs={sums}", "-f", str(Path(tmp) / "Containerfile")],
            step,
        )
    return tag


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _host_ca_bundle() -> str:
    for candidate in (os.environ.get("SSL_CERT_FILE"), *HOST_CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return candidate
    raise LakehubError(
        "no CA bundle on this machine (/etc/ssl/certs/ca-certificates.crt): "
        "`apt-get install ca-certificates`; the build reaches PyPI and npm through it"
    )


def _git_commit() -> str:
    try:
        out = _run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def ensure_hub_image(say=print, rebuild: bool = False, step=None) -> str:
    """The local hub image reference, `localhost/lakehub-hub:<content hash>`; built (with the
    stand-ins, when missing) only when podman does not have that tag, or with rebuild=True."""
    return hub_image(say=say, rebuild=rebuild, step=step).ref


def hub_image(say=print, rebuild: bool = False, step=None) -> HubImage:
    started = time.monotonic()
    problem = podman_problem()
    if problem:
        raise LakehubError(problem)
    bases = dockerfile_bases()
    with _build_lock(say):
        base = ensure_base(say, step)
        python_ref = ensure_python_standin(base, bases["PYTHON_IMAGE"], say, step)
        node_ref = ensure_node_standin(base, bases["NODE_IMAGE"], say, step)
        python_id, node_id = _image_id(python_ref) or "", _image_id(node_ref) or ""
        digests = f"python={python_ref}@{python_id[:12]},node={node_ref}@{node_id[:12]} (local stand-ins)"
        # GIT_COMMIT keeps the Dockerfile's default: a build argument that changes with every commit
        # would miss podman's layer cache for every step after its ARG (apt, the Python packages).
        # The commit is recorded by a --label instead, which podman applies after the last step.
        recipe = (
            *HUB_BUILD_FLAGS,
            "--build-arg",
            f"PYTHON_IMAGE={python_ref}",
            "--build-arg",
            f"NODE_IMAGE={node_ref}",
            "--build-arg",
            f"BASE_DIGESTS={digests}",
        )
        ref = f"{HUB_REPO}:{hub_content_hash(python_id, node_id, flags=recipe)}"
        if not rebuild:
            found = _image_id(ref)
            if found:
                return HubImage(ref, found, _image_size(ref), False, time.monotonic() - started)
        _require_root("building the hub image")
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            npmrc = Path(tmp) / "npmrc"
            ca = _host_ca_bundle()
            npmrc.write_text("cafile=/etc/ssl/certs/ca-certificates.crt\n")  # where the bundle is mounted
            extra = [
                *recipe,
                # The host's CA bundle (the network here goes through an intercepting proxy with its
                # own CA) and an npmrc naming it: mounted for the build only, nothing lands in the image.
                "-v",
                f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro",
                "-v",
                f"{npmrc}:/usr/local/etc/npmrc:ro",
                "--label",
                f"org.opencontainers.image.revision={_git_commit()}",
                "--label",
                f"io.lakehub.content-hash={ref.rsplit(':', 1)[1]}",
                "-f",
                str(HUB_CONTEXT / "Dockerfile"),
            ]
            say(f"building the hub image {ref} from hub_images/Dockerfile (the first build takes several minutes)")
            _podman_build(ref, HUB_CONTEXT, "hub", "hub image", say, extra, step)
        image_id = _image_id(ref) or ""
        return HubImage(ref, image_id, _image_size(ref), True, time.monotonic() - started)
