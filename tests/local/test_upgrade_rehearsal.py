"""Upgrade rehearsal on the local platform (issue 18, Must show): version N deployed with
`lakehub local up` (per-user mode, container runtime), a user signs in and saves a notebook
(central S3 copy) and a file in the home; then N+1, as an operator ships it: a new image tag
(the hub image under another tag, registered in the emulated ECR as a build pushes it) and a
changed main template, deployed with `lakehub deploy --endpoint-url <emulator> --template-file
... --parameter ImageTag=<new>`. The tier's Custom::ImageDigest resolves the new tag to its
digest, the hub task definition changes, and the supervisor rolls the hub as the tier's ECS
service does (stop the old task, start one of the new definition). The user signs in again:
notebook and home intact, and the hub runs the new digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR
from lakehub.local.platform import free_base_port

from .helpers import ROOT, Platform, user_server

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

NEW_TAG = "rehearsal-n1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("lakehub-upgrade"), free_base_port(), runtime="container")
    proc = p.up()
    log = p.state_dir / "supervisor.log"
    assert proc.returncode == 0, proc.stdout + proc.stderr + (log.read_text()[-3000:] if log.exists() else "")
    yield p
    p.down()
    repo = (p.state().get("outputs") or {}).get(names.IMAGE_REPOSITORY_URI)
    if repo:
        subprocess.run(["podman", "untag", p.state().get("hub_image", ""), f"{repo}:{NEW_TAG}"], capture_output=True, timeout=60)


def _hub_image(p: Platform, tier: str) -> str:
    ecs = p.admin_client("ecs")
    cluster = p.state()["outputs"][names.CLUSTER_NAME]
    (service,) = ecs.describe_services(cluster=cluster, services=[f"{tier}-hub"])["services"]
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    return definition["containerDefinitions"][0]["image"]


def _user_tasks(p: Platform) -> set[str]:
    """The users' servers running as ECS tasks (not a hub's)."""
    ecs = p.admin_client("ecs")
    cluster = p.state()["outputs"][names.CLUSTER_NAME]
    arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    return {
        t["taskArn"] for t in tasks if t.get("lastStatus") == "RUNNING" and not (t.get("startedBy") or "").startswith("ecs-svc/")
    }


def _running_hub_task(p: Platform, tier: str) -> dict:
    ecs = p.admin_client("ecs")
    cluster = p.state()["outputs"][names.CLUSTER_NAME]
    arns = ecs.list_tasks(cluster=cluster, startedBy=f"ecs-svc/{tier}-hub", desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    running = [t for t in tasks if t.get("lastStatus") == "RUNNING"]
    assert len(running) == 1, [(t["taskArn"], t.get("lastStatus")) for t in tasks]
    return running[0]


def test_upgrade_n_to_n_plus_1_keeps_notebooks_homes_and_rolls_the_hub_to_the_new_digest(platform, tmp_path):
    tier = platform.tier("pii")
    user = tier["users"][0]
    before_image = _hub_image(platform, "pii")
    assert "@sha256:" in before_image, before_image  # N runs a digest, not a tag
    before_task = _running_hub_task(platform, "pii")

    # N: sign in, save a notebook (its central copy in S3) and a file in the home.
    server = user_server(tier, user)
    server.save_notebook("upgrade-rehearsal.ipynb", "print('saved before the upgrade')")
    wrote = server.run(
        "python3", "import pathlib; p = pathlib.Path.home() / 'kept.txt'; p.write_text('home before N+1'); print(p)"
    )
    assert "kept.txt" in wrote
    servers = _user_tasks(platform)
    assert servers, "the user's server runs as an ECS task"

    # N+1: the image under a new tag, pushed (registered) in the emulated ECR ...
    state = platform.state()
    repo = state["outputs"][names.IMAGE_REPOSITORY_URI]
    tagged = subprocess.run(
        ["podman", "tag", state["hub_image"], f"{repo}:{NEW_TAG}"], capture_output=True, text=True, timeout=120
    )
    assert tagged.returncode == 0, tagged.stderr
    layer = "sha256:" + hashlib.sha256(f"lakehub-local-image:{NEW_TAG}".encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 12, "digest": layer}],
    }
    digest = platform.admin_client("ecr").put_image(
        repositoryName=repo.split("/", 1)[1], imageManifest=json.dumps(manifest), imageTag=NEW_TAG
    )["image"]["imageId"]["imageDigest"]
    # ... and a changed main template, deployed as an operator does.
    template = tmp_path / "main.template.yaml"
    text = (TEMPLATES_DIR / names.MAIN_TEMPLATE).read_text()
    assert "\nDescription: '" in text
    template.write_text(text.replace("\nDescription: '", "\nDescription: '(N+1) ", 1))
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=state["admin"]["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=state["admin"]["SecretAccessKey"],
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    deployed = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehub.cli",
            "deploy",
            "--endpoint-url",
            state["emulator_endpoint"],
            "--region",
            "us-east-1",
            "--stack-name",
            "lakehub",
            "--template-file",
            str(template),
            "--parameter",
            f"{names.IMAGE_TAG}={NEW_TAG}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=ROOT,
    )
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    deploy_seconds = time.monotonic() - started
    assert json.loads(deployed.stdout)["status"] == "UPDATE_COMPLETE"
    after_image = _hub_image(platform, "pii")
    assert after_image == f"{repo}@{digest}" and after_image != before_image

    # The supervisor rolls the hub: the old task stops, one of the new task definition runs.
    down_since, answered = None, None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ok = False
        try:
            ok = requests.get(f"{tier['url']}/hub/health", timeout=2).status_code == 200
        except requests.RequestException:
            pass
        rolls = platform.state().get("rolls") or []
        if not ok and down_since is None:
            down_since = time.monotonic()
        if ok and any(r["tier"] == "pii" for r in rolls):
            answered = time.monotonic()
            break
        time.sleep(1)
    assert answered is not None, (platform.state().get("rolls"), (platform.state_dir / "supervisor.log").read_text()[-4000:])
    after_task = _running_hub_task(platform, "pii")
    assert after_task["taskArn"] != before_task["taskArn"]
    assert after_task["taskDefinitionArn"] != before_task["taskDefinitionArn"]
    definition = platform.admin_client("ecs").describe_task_definition(taskDefinition=after_task["taskDefinitionArn"])[
        "taskDefinition"
    ]
    assert definition["containerDefinitions"][0]["image"] == f"{repo}@{digest}"  # the hub runs the new digest

    # The server that ran through the upgrade: the same task, usable through the new hub (its
    # proxy routes it again, the user's token is in the hub's database, which the roll kept).
    assert servers <= _user_tasks(platform)
    same = server.api("GET", "contents/upgrade-rehearsal.ipynb")
    assert same.status_code == 200, same.text[:300]

    # After: the user signs in again; the notebook and the home are intact.
    server = user_server(tier, user)
    got = server.api("GET", "contents/upgrade-rehearsal.ipynb")
    assert got.status_code == 200 and "saved before the upgrade" in json.dumps(got.json()["content"])
    out = server.run("python3", "import pathlib; print((pathlib.Path.home() / 'kept.txt').read_text())")
    assert "home before N+1" in out
    figures = {
        "deploy_seconds": round(deploy_seconds, 1),
        "hub_unavailable_seconds": round(answered - down_since, 1) if down_since else 0.0,
    }
    print(f"upgrade rehearsal figures: {json.dumps(figures)}")
