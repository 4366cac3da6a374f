"""The hub image built locally with podman (lakehub.local.images): the Debian stand-ins for the
Dockerfile's base images have the official layout, the hub image runs as the Dockerfile says,
the build is cached by content, and a failed build is one line and no image.

Real podman. The first run on a fresh machine builds the stand-ins and the hub image once
(several minutes); every later run finds them in podman's storage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from lakehub.errors import LakehubError
from lakehub.local import images

ROOT = Path(__file__).resolve().parents[2]

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (make setup)")


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def run_in(
    image: str, *cmd: str, user: str | None = None, mounts: tuple[str, ...] = (), env: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess:
    args = ["run", "--rm", *images.run_args(), "--network", "none"]
    if user:
        args += ["--user", user]
    for mount in mounts:
        args += ["-v", mount]
    for item in env:
        args += ["-e", item]
    return podman(*args, image, *cmd, check=check)


def inspect(ref: str) -> dict:
    return json.loads(podman("image", "inspect", ref).stdout)[0]


# ------------------------------------------------------------------------------------------
# No container needed
# ------------------------------------------------------------------------------------------
def test_run_args_cap_nproc_at_pid_max_and_the_hard_limits(monkeypatch):
    limits = {images.resource.RLIMIT_NOFILE: (1024, 20000), images.resource.RLIMIT_NPROC: (96365, 96365)}
    monkeypatch.setattr(images.resource, "getrlimit", lambda which: limits[which])
    monkeypatch.setattr(images, "_pid_max", lambda: 32768)
    assert images.run_args() == ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
    limits[images.resource.RLIMIT_NPROC] = (4096, 8192)  # a lower hard limit wins over pid_max
    assert "nproc=8192:8192" in images.run_args()
    limits[images.resource.RLIMIT_NPROC] = (images.resource.RLIM_INFINITY, images.resource.RLIM_INFINITY)
    assert "nproc=32768:32768" in images.run_args()


def test_podman_problem_names_the_missing_tool_and_the_fix(monkeypatch, tmp_path):
    images.podman_problem.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no podman on it
    try:
        problem = images.podman_problem()
    finally:
        images.podman_problem.cache_clear()
    assert problem is not None and "\n" not in problem
    assert "podman is not installed" in problem and "make setup" in problem


def test_lakehub_local_image_without_podman_is_one_line_and_non_zero(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LAKEHUB_IMAGE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "local", "image"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["lakehub: error: podman is not installed: run `make setup` (or `apt-get install podman runc`)"]
    assert "Traceback" not in out.stderr


def copy_context(tmp_path: Path) -> Path:
    context = tmp_path / "hub_images"
    shutil.copytree(images.HUB_CONTEXT, context, ignore=shutil.ignore_patterns("__pycache__"))
    return context


def test_hub_tag_changes_with_every_input_the_build_reads(tmp_path):
    context = copy_context(tmp_path)
    before = images.hub_content_hash("sha256:py", "sha256:node", context)
    assert images.hub_content_hash("sha256:py", "sha256:node", context) == before  # deterministic
    assert images.hub_content_hash("sha256:py2", "sha256:node", context) != before  # a new Python stand-in
    assert images.hub_content_hash("sha256:py", "sha256:node2", context) != before  # a new Node stand-in
    assert images.hub_content_hash("sha256:py", "sha256:node", context, flags=("--format", "oci")) != before

    config = context / "jupyterhub_config.py"
    config.write_text(config.read_text() + "\n# changed\n")
    changed = images.hub_content_hash("sha256:py", "sha256:node", context)
    assert changed != before

    (context / "lakehub_hub" / "new_module.py").write_text("X = 1\n")  # a new file the build copies
    added = images.hub_content_hash("sha256:py", "sha256:node", context)
    assert added != changed

    # What .dockerignore keeps out of the build context does not change the tag.
    (context / "lakehub_hub" / "__pycache__").mkdir()
    (context / "lakehub_hub" / "__pycache__" / "contents.cpython-311.pyc").write_bytes(b"\0" * 16)
    (context / "notebooks" / ".ipynb_checkpoints").mkdir(exist_ok=True)
    (context / "notebooks" / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    (context / "requirements.in").write_text("changed\n")
    assert images.hub_content_hash("sha256:py", "sha256:node", context) == added
    assert "requirements.txt" in images.context_files(context)
    assert "requirements.in" not in images.context_files(context)


def test_dockerfile_base_tags_give_the_stand_in_versions():
    bases = images.dockerfile_bases()
    assert images.python_minor(bases["PYTHON_IMAGE"]) == "3.11"
    assert images.node_version(bases["NODE_IMAGE"]) in images.NODE_BUNDLED_NPM
    with pytest.raises(LakehubError, match="Debian bookworm has 3.11"):
        images.python_minor("python:3.12.7-slim-bookworm")
    with pytest.raises(LakehubError, match="not node:<x.y.z>-bookworm"):
        images.node_version("node:20-alpine")


def test_progress_names_the_stage_and_step_of_a_multi_stage_build():
    said: list[str] = []
    with images._Progress("hub image", said.append) as progress:  # not a terminal here: one line per step
        for line in [
            "[1/3] STEP 1/3: FROM localhost/lakehub-standin-node:20 AS proxy",
            "added 38 packages",
            "[2/3] STEP 1/3: FROM localhost/lakehub-standin-python:3.11 AS python-deps",
            "[2/3] STEP 3/3: RUN pip install --prefix=/install -r /tmp/requirements.txt",
            "I: Retrieving InRelease",
            "I: Base system installed successfully.",
        ]:
            progress.line(line)
    assert [line.rsplit(" (", 1)[0] for line in said] == [
        "hub image: stage 1/3 proxy STEP 1/3: FROM localhost/lakehub-standin-node:20 AS proxy",
        "hub image: stage 2/3 python-deps STEP 1/3: FROM localhost/lakehub-standin-python:3.11 AS python-deps",
        "hub image: stage 2/3 python-deps STEP 3/3: RUN pip install --prefix=/install -r /tmp/requirements.txt",
        "hub image: Base system installed successfully.",
    ]


def test_concurrent_callers_wait_for_the_build_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHUB_IMAGE_CACHE", str(tmp_path))
    said: list[str] = []
    order: list[str] = []
    holding = threading.Event()

    def first():
        with images._build_lock(said.append):
            holding.set()
            time.sleep(1.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    with images._build_lock(said.append):
        order.append("second in")
    thread.join(10)
    assert order == ["first done", "second in"]
    assert any("waiting for another lakehub image build" in line for line in said)


# ------------------------------------------------------------------------------------------
# Real podman: the base, the stand-ins, the hub image
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub():
    images.podman_problem.cache_clear()
    problem = images.podman_problem()
    if problem:
        pytest.skip(problem)
    return images.hub_image(say=lambda line: print(line, flush=True))


@pytest.fixture(scope="module")
def standins(hub):
    bases = images.dockerfile_bases()
    base = images.ensure_base()
    return {
        "base": base,
        "python": images.ensure_python_standin(base, bases["PYTHON_IMAGE"]),
        "node": images.ensure_node_standin(base, bases["NODE_IMAGE"]),
    }


@needs_podman
@pytest.mark.slow
def test_run_args_are_what_this_kernel_accepts_and_one_more_process_is_refused(standins):
    """The nproc cap is needed: pid_max + 1 is refused by runc, run_args() runs."""
    assert run_in(standins["base"], "true").returncode == 0
    pid_max = images._pid_max()
    hard = images.resource.getrlimit(images.resource.RLIMIT_NPROC)[1]
    if not pid_max or hard <= pid_max:
        pytest.skip("the hard nproc limit is below pid_max here: nothing above the cap to refuse")
    refused = podman(
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        f"nofile={images.resource.getrlimit(images.resource.RLIMIT_NOFILE)[1]}:"
        f"{images.resource.getrlimit(images.resource.RLIMIT_NOFILE)[1]}",
        "--ulimit",
        f"nproc={pid_max + 1}:{pid_max + 1}",
        standins["base"],
        "true",
        check=False,
    )
    assert refused.returncode != 0 and "rlimit" in refused.stderr


@needs_podman
@pytest.mark.slow
def test_base_has_the_official_images_apt_sources(standins):
    sources = run_in(standins["base"], "cat", "/etc/apt/sources.list.d/debian.sources").stdout
    assert "Suites: bookworm bookworm-updates" in sources and "Suites: bookworm-security" in sources
    assert run_in(standins["base"], "test", "-e", "/etc/apt/sources.list", check=False).returncode != 0


def make_wheel(folder: Path) -> Path:
    """A small pure-Python wheel, written here (no network, no build backend)."""
    name, version = "lakehub_probe", "1.0"
    files = {
        f"{name}/__init__.py": b"VALUE = 'probe ok'\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


@needs_podman
@pytest.mark.slow
def test_python_stand_in_has_the_official_layout(standins, tmp_path):
    ref = standins["python"]
    assert ref.startswith("localhost/lakehub-standin-python:3.11-bookworm-")
    out = run_in(
        ref,
        "python",
        "-c",
        "import json, shutil, site, sys, sysconfig; print(json.dumps({"
        "'python': shutil.which('python'), 'pip': shutil.which('pip'), 'version': sys.version_info[:2],"
        "'purelib': sysconfig.get_paths()['purelib'], 'user_site': site.ENABLE_USER_SITE}))",
    ).stdout
    layout = json.loads(out)
    assert layout == {
        "python": "/usr/local/bin/python",
        "pip": "/usr/local/bin/pip",
        "version": [3, 11],
        "purelib": "/usr/local/lib/python3.11/site-packages",
        "user_site": True,
    }
    assert "pip " in run_in(ref, "pip", "--version").stdout
    config = inspect(ref)["Config"]
    assert "LANG=C.UTF-8" in config["Env"]
    assert any(e.startswith("PATH=/usr/local/bin:") for e in config["Env"])
    labels = config["Labels"]
    assert labels["io.lakehub.standin.for"] == images.dockerfile_bases()["PYTHON_IMAGE"]
    assert "NOT the official image" in labels["org.opencontainers.image.description"]
    assert "python3.11 -m venv /usr/local" in labels["io.lakehub.standin.built-from"]

    # uid 1000 installs a package into its own user site, as a data scientist does.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)
    wheels.chmod(0o755)
    script = (
        "mkdir -p /tmp/h && pip install --no-index --user --no-warn-script-location /wheels/*.whl >/dev/null "
        "&& python -c 'import lakehub_probe; print(lakehub_probe.VALUE, lakehub_probe.__file__)'"
    )
    out = run_in(ref, "sh", "-c", script, user="1000:1000", mounts=(f"{wheels}:/wheels:ro",), env=("HOME=/tmp/h",))
    assert out.stdout.split() == ["probe", "ok", "/tmp/h/.local/lib/python3.11/site-packages/lakehub_probe/__init__.py"]


@needs_podman
@pytest.mark.slow
def test_node_stand_in_has_the_official_layout(standins):
    ref = standins["node"]
    version = images.node_version(images.dockerfile_bases()["NODE_IMAGE"])
    assert ref.startswith(f"localhost/lakehub-standin-node:{version}-bookworm-")
    out = run_in(ref, "sh", "-c", "command -v node; node --version; npm --version; readlink -f /usr/local/bin/npm").stdout
    assert out.split() == [
        "/usr/local/bin/node",
        f"v{version}",
        images.NODE_BUNDLED_NPM[version],
        "/usr/local/lib/node_modules/npm/bin/npm-cli.js",
    ]
    assert run_in(ref, "id", "-un", user="1000").stdout.strip() == "node"
    labels = inspect(ref)["Config"]["Labels"]
    assert labels["io.lakehub.standin.for"] == images.dockerfile_bases()["NODE_IMAGE"]
    assert "NOT the official image" in labels["org.opencontainers.image.description"]


@needs_podman
@pytest.mark.slow
def test_hub_image_runs_as_the_dockerfile_says(hub):
    assert hub.ref.startswith("localhost/lakehub-hub:")
    config = inspect(hub.ref)["Config"]
    assert config.get("User", "") in ("", "root")
    assert config["WorkingDir"] == "/srv/jupyterhub"
    assert config["Entrypoint"] == ["/usr/bin/tini", "-g", "--"]
    assert config["Cmd"][:3] == ["python", "-m", "lakehub_hub.hub_state"]
    assert config["Labels"]["io.lakehub.content-hash"] == hub.ref.rsplit(":", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{40}", config["Labels"]["org.opencontainers.image.revision"])  # the git commit
    assert "lakehub-standin-python" in config["Labels"]["org.opencontainers.image.base.digests"]
    # Docker's image format, as CodeBuild builds it: podman's default (OCI) drops HEALTHCHECK and
    # SHELL (the RUN steps' pipefail).
    whole = inspect(hub.ref)
    assert whole["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    health = whole.get("Healthcheck") or {}
    assert "hub/health" in " ".join(health.get("Test", [])), health
    assert (health["Interval"], health["Timeout"], health["Retries"]) == (30_000_000_000, 5_000_000_000, 3)

    assert run_in(hub.ref, "sh", "-c", "id -u; pwd").stdout.split() == ["0", "/srv/jupyterhub"]
    out = run_in(
        hub.ref,
        "python",
        "-c",
        "import jupyterhub, s3contents, pandas, lakehub_hub; print('imports ok')",
        user="1000",
        env=("HOME=/home/lakehub",),
    )
    assert out.stdout.strip() == "imports ok"
    kernels = run_in(hub.ref, "jupyter", "kernelspec", "list", "--json", user="1000").stdout
    assert {"python3", "ir"} <= set(json.loads(kernels)["kernelspecs"])
    assert run_in(hub.ref, "configurable-http-proxy", "--version").stdout.strip() == "5.3.0"
    # One setuptools, the locked one (users' builds use it): the copy of the locked packages over
    # the base's /usr/local left the base's setuptools-*.dist-info beside the locked one, and
    # Python reported the base's version.
    locked = re.search(r"^setuptools==(\S+)", (ROOT / "hub_images" / "requirements.txt").read_text(), re.M)[1]
    seen = run_in(
        hub.ref,
        "python",
        "-c",
        "import glob, importlib.metadata as m; "
        "print(m.version('setuptools'), len(glob.glob('/usr/local/lib/python3.11/site-packages/setuptools-*.dist-info')))",
    )
    assert seen.stdout.split() == [locked, "1"], seen.stdout


@needs_podman
@pytest.mark.slow
def test_second_call_finds_the_image_without_building(hub, tmp_path, monkeypatch):
    logs = set((images.cache_dir() / "logs").glob("*.log"))
    started = time.monotonic()
    again = images.hub_image(say=lambda line: None)
    seconds = time.monotonic() - started
    assert again.ref == hub.ref and not again.built
    assert set((images.cache_dir() / "logs").glob("*.log")) == logs  # no build ran
    assert seconds < 30, f"the cached call took {seconds:.1f} s"

    # podman's storage is what is cached: with an empty download cache nothing is fetched again.
    monkeypatch.setenv("LAKEHUB_IMAGE_CACHE", str(tmp_path / "empty-cache"))
    said: list[str] = []
    assert images.ensure_hub_image(say=said.append) == hub.ref
    assert said == []
    assert sorted(p.name for p in (tmp_path / "empty-cache").iterdir()) == ["build.lock"]

    out = subprocess.run(
        [str(ROOT / ".venv/bin/lakehub"), "local", "image", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["image"] == hub.ref and report["cached"] is True and report["build_seconds"] is None
    assert report["size_bytes"] > 500_000_000


@needs_podman
@pytest.mark.slow
def test_failed_build_is_one_line_naming_the_step_and_the_log_and_tags_nothing(standins, tmp_path, monkeypatch):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {standins['base']}\nRUN echo first\nRUN echo 'lakehub-test: this step fails' >&2 && exit 3\n"
    )
    tag = f"localhost/lakehub-p1-failing:{time.time_ns()}"
    with pytest.raises(LakehubError) as caught:
        images._podman_build(
            tag,
            context,
            "test-failing",
            "test image",
            lambda line: None,
            ["--network", "none", "--pull=never", "-f", str(context / "Containerfile")],
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "test image failed at STEP 3/3: RUN echo 'lakehub-test: this step fails'" in message
    log = Path(message.rsplit("full log: ", 1)[1])
    assert log.is_file() and "lakehub-test: this step fails" in log.read_text()
    assert podman("image", "exists", tag, check=False).returncode == 1
