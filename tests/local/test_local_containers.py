"""End to end on the container runtime (issue 17): `lakehub local up --runtime container` runs
the hub image built from hub_images/Dockerfile as podman containers, as ECS runs it: each
tier's hub is its service's ECS task, each user's server a task of the user task definition,
both run by the local agent as containers of the image their task definitions name.

One `up` (per-user mode) is shared by the module (CI time); the last test takes it down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import nbformat
import pytest
import requests

from lakehub.local.platform import free_base_port

from .helpers import Platform, admin_client, lakehub, running_tasks, user_server
from .test_local_up import PROBE

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]  # one `up` on containers (the image cached) for the module

# The R kernel's probe: reticulate + boto3, the way the image's R example notebook reads S3.
R_PROBE = """
suppressPackageStartupMessages(library(reticulate))
s3 <- import("boto3")$client("s3")
probe <- function(key) tryCatch({{ s3$get_object(Bucket = "{bucket}", Key = key)$Body$read(); "read" }},
  error = function(e) if (grepl("AccessDenied", conditionMessage(e))) "AccessDenied" else conditionMessage(e))
cat("pii:", probe("pii/customers.csv"), "nonpii:", probe("nonpii/sales.csv"), "\\n")
"""
# The hubs' idle culler timeout for this module (LAKEHUB_IDLE_TIMEOUT in `up`'s environment; the
# templates' minimum is 300 s): long enough for any one test's pauses, short enough that the
# culler test's user (started first) is culled by the time that test runs.
IDLE_TIMEOUT = 90
RUN_LABEL = "lakehub.run"
TASK_LABEL = "lakehub.task"


# ------------------------------------------------------------------------------------------
# without podman (no platform needed)
# ------------------------------------------------------------------------------------------
def test_runtime_container_without_podman_fails_in_one_line_and_starts_nothing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    state = tmp_path / "state"
    base = free_base_port()
    proc = lakehub(
        "local",
        "up",
        "--runtime",
        "container",
        "--state-dir",
        str(state),
        "--base-port",
        str(base),
        timeout=120,
        env={"PATH": str(empty)},
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "podman is not installed" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (state / "state.json").exists()
    from lakehub.local.emulator import port_in_use

    assert not port_in_use(base)


def test_the_default_runtime_falls_back_to_processes_with_one_line_why(tmp_path, monkeypatch):
    from lakehub.local import images
    from lakehub.local.lifecycle import choose_runtime

    monkeypatch.setenv("PATH", str(tmp_path))
    images.podman_problem.cache_clear()
    err: list[str] = []
    try:
        assert choose_runtime(None, warn=err.append) == "process"
        assert choose_runtime("process", warn=err.append) == "process"
    finally:
        images.podman_problem.cache_clear()
    assert len(err) == 1, err
    assert err[0].startswith("containers: podman is not installed") and "as processes" in err[0]


def test_only_hub_tasks_get_the_hubs_folders_never_a_users_task(tmp_path):
    """The hub's state folder (its database, cookie secret) and the local hooks are mounted into
    the tier's hub task only: a user's task carries lakehub:hub = the tier too (the spawner tags
    the hub that started it), and must get none of them."""
    from lakehub.local.platform import CONTAINER_CONFIG_D, CONTAINER_STATE_DIR, LocalPlatform
    from lakehub.local.state import StateDir

    platform = LocalPlatform(StateDir(tmp_path / "state"), base_port=9100, runtime="container")
    hub_task = {"tags": [{"key": "lakehub:tier", "value": "pii"}, {"key": "lakehub:hub", "value": "pii"}]}
    user_task = {"tags": hub_task["tags"] + [{"key": "lakehub:user", "value": "alice"}]}
    mounts = platform.hub_task_mounts(hub_task)
    assert {(c, ro) for _, c, ro in mounts} == {(CONTAINER_STATE_DIR, False), (CONTAINER_CONFIG_D, True)}
    assert mounts[0][0] == str(tmp_path / "state" / "hubs" / "pii" / "state")
    assert platform.hub_task_mounts(user_task) == []
    assert platform.hub_task_mounts({"tags": [{"key": "lakehub:hub", "value": "elsewhere"}]}) == []


# ------------------------------------------------------------------------------------------
# one platform on containers
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make setup)")
    p = Platform(
        tmp_path_factory.mktemp("lakehub-containers"),
        free_base_port(),
        runtime="container",
        env={"LAKEHUB_IDLE_TIMEOUT": str(IDLE_TIMEOUT)},
    )
    p.up_ok(log_tail=4000)
    yield p
    if p.state().get("phase") == "ready":
        p.down()


def _podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60, check=True).stdout


def _containers(p: Platform) -> dict[str, dict]:
    """{task ARN: podman's inspect of its container} for the run's containers."""
    for _ in range(5):
        names = _podman("ps", "-a", "--filter", f"label={RUN_LABEL}={p.state()['run_token']}", "--format", "{{.Names}}").split()
        if not names:
            return {}
        # a container the agent removes between the listing and the inspect fails the whole inspect
        # (podman exit 125, "no such object"; seen in a run): list again
        inspected = subprocess.run(["podman", "inspect", *names], capture_output=True, text=True, timeout=60)
        if inspected.returncode == 0:
            return {c["Config"]["Labels"][TASK_LABEL]: c for c in json.loads(inspected.stdout)}
        if "no such" not in inspected.stderr.lower():
            raise AssertionError(f"podman inspect: {inspected.stderr.strip()}")
        time.sleep(0.5)
    raise AssertionError("the run's containers kept changing while they were inspected")


def _tasks(p: Platform, tag: str, value: str) -> list[dict]:
    """The running tasks tagged `tag` = `value`: lakehub:user = a user's; lakehub:hub = a tier's
    hub task (users' tasks carry lakehub:hub too, the hub that started them: left out)."""
    return [
        task
        for task, tags in running_tasks(p.state())
        if tags.get(tag) == value and (tag != "lakehub:hub" or "lakehub:user" not in tags)
    ]


def _image_id(reference: str) -> str:
    return _podman("image", "inspect", "--format", "{{.Id}}", reference).strip()


@pytest.fixture(scope="module")
def idle_user(platform):
    """A nonpii user's server started first and never used again: the idle culler's."""
    tier = platform.tier("nonpii")
    user = tier["users"][1]
    server = user_server(tier, user)
    (task,) = _tasks(platform, "lakehub:user", user["username"])
    return {"tier": tier, "user": user, "server": server, "task": task, "since": time.monotonic()}


@pytest.mark.usefixtures("idle_user")
@pytest.mark.e2e
def test_status_says_the_platform_runs_on_containers(platform):
    status = platform.status()
    assert status["runtime"] == "container"
    assert status["healthy"], status["parts"]
    assert platform.state()["runtime"] == "container"
    assert {t["name"] for t in status["tiers"]} == {"pii", "nonpii"}
    table = lakehub("local", "status", "--state-dir", str(platform.state_dir), timeout=60)
    assert "runtime container" in table.stdout, table.stdout


@pytest.mark.e2e
def test_each_hub_is_its_services_ecs_task_in_a_container_of_the_hub_image_and_healthy(platform):
    state = platform.state()
    containers = _containers(platform)
    ecs, cluster = platform.admin_client("ecs"), state["outputs"]["ClusterName"]
    hub_image = _image_id(state["task_image"])
    assert hub_image == _image_id(state["hub_image"])  # the local build, under its emulated ECR name
    for tier in ("pii", "nonpii"):
        (task,) = _tasks(platform, "lakehub:hub", tier)
        assert task["startedBy"] == f"ecs-svc/{tier}-hub"
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        # Issue 18: the task definition names the digest the ImageTag resolved to in the emulated
        # ECR (Custom::ImageDigest), never the mutable tag.
        repo_uri, tag = state["task_image"].rsplit(":", 1)
        image = definition["containerDefinitions"][0]["image"]
        assert image.startswith(f"{repo_uri}@sha256:"), image
        ecr = admin_client(state, "ecr")
        (detail,) = ecr.describe_images(repositoryName=repo_uri.split("/", 1)[1], imageIds=[{"imageTag": tag}])["imageDetails"]
        assert image == f"{repo_uri}@{detail['imageDigest']}", (image, detail)
        container = containers[task["taskArn"]]
        assert container["State"]["Running"], container["State"]
        assert container["Image"] == hub_image
        # The image's own command (lakehub_hub.hub_state under tini), not the host's Python.
        assert container["Config"]["Cmd"][:3] == ["python", "-m", "lakehub_hub.hub_state"], container["Config"]["Cmd"]
        # DescribeTasks reports the task definition's health check, run by the agent (interval 30 s).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            described = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]
            if described.get("healthStatus") == "HEALTHY":
                break
            time.sleep(2)
        assert described.get("healthStatus") == "HEALTHY", described
        # The image's command replicates the hub's database with Litestream to the emulator's S3
        # (per-user tiers: LAKEHUB_HUB_STATE_BUCKET, the notebook bucket, under hub-state/<tier>/).
        listed = platform.admin_s3().list_objects_v2(Bucket=state["outputs"]["NotebookBucketName"], Prefix=f"hub-state/{tier}/")
        assert any(o["Key"].endswith(".ltx") for o in listed.get("Contents", [])), listed.get("Contents")


@pytest.mark.e2e
def test_two_users_of_a_tier_get_their_own_container_running_as_a_non_root_user(platform):
    tier = platform.tier("pii")
    state = platform.state()
    hub_image = _image_id(state["task_image"])
    seen = {}
    for user in tier["users"][:2]:
        server = user_server(tier, user)
        uid, cwd, home = server.run("python3", "import os; print(os.geteuid(), os.getcwd(), os.environ['HOME'])").split()
        assert uid != "0" and cwd == home, (uid, cwd, home)  # the server starts in its home
        (task,) = _tasks(platform, "lakehub:user", user["username"])
        container = _containers(platform)[task["taskArn"]]
        assert container["State"]["Running"]
        assert container["Image"] == hub_image
        # The user the container runs as: the home's EFS access point's PosixUser (the task
        # definition's User 1000 otherwise), never root, and the kernel's uid.
        assert container["Config"]["User"].split(":")[0] == uid, container["Config"]["User"]
        seen[user["username"]] = container["Id"]
    assert len(set(seen.values())) == 2, seen


@pytest.mark.e2e
def test_python_and_r_kernels_read_the_tiers_data_and_are_refused_the_other_tiers(platform):
    bucket = platform.state()["outputs"]["DataBucketName"]
    for name, expected in (
        ("pii", ["pii:", "read", "nonpii:", "AccessDenied"]),
        ("nonpii", ["pii:", "AccessDenied", "nonpii:", "read"]),
    ):
        tier = platform.tier(name)
        server = user_server(tier, tier["users"][0])
        assert server.run("python3", PROBE.format(bucket=bucket)).split() == expected
        assert server.run("ir", R_PROBE.format(bucket=bucket), timeout=180).split() == expected


@pytest.mark.e2e
def test_a_saved_notebook_lands_in_the_notebook_bucket_under_its_tier(platform):
    tier = platform.tier("pii")
    user = tier["users"][0]
    server = user_server(tier, user)
    server.save_notebook("saved-in-a-container.ipynb", "print('kept')")
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    key = f"tiers/pii/users/{user['username']}/saved-in-a-container.ipynb"
    body = platform.admin_s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert nbformat.reads(body, as_version=4).cells[0].source == "print('kept')"


@pytest.mark.e2e
def test_the_idle_culler_stops_an_idle_users_container(platform, idle_user):
    ecs, cluster = platform.admin_client("ecs"), platform.state()["outputs"]["ClusterName"]
    arn = idle_user["task"]["taskArn"]
    url = f"{idle_user['tier']['url']}/hub/api/users/{idle_user['user']['username']}"
    headers = {"Authorization": f"token {idle_user['server'].token}"}
    # The timeout, the culler's period, the stop; and the hub's own record of the stop, which
    # comes after ECS says STOPPED (the spawner's poll; seen in a CI rehearsal: the task and its
    # container were gone while the hub still listed the server).
    deadline = max(idle_user["since"] + IDLE_TIMEOUT + 150, time.monotonic() + 60)
    while True:
        described = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        info = requests.get(url, headers=headers, timeout=30).json()
        if described["lastStatus"] == "STOPPED" and arn not in _containers(platform) and not info.get("servers"):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    assert described["lastStatus"] == "STOPPED", described
    assert arn not in _containers(platform)
    assert not info.get("servers"), info


@pytest.mark.e2e
def test_down_stops_every_task_and_leaves_no_container_of_the_run(platform):
    token = platform.state()["run_token"]
    assert _containers(platform)  # the hubs at least
    down = platform.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _podman("ps", "-a", "--filter", f"label={RUN_LABEL}={token}", "--format", "{{.Names}}").split()
    for tier in platform.state()["tiers"]:
        with pytest.raises(requests.RequestException):
            requests.get(f"{tier['url']}/hub/health", timeout=3)
