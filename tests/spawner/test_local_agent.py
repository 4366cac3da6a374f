"""The local agent runs the emulator's user-server tasks as local processes, and the spawner
reaches them through the agent's endpoint tag. A plain `python -m http.server` stands in for
the user server."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from waiting import http_ok, wait_for

from lakehub.local.emulator import port_in_use
from lakehub.local.agent import LocalAgent, image_environment
from lakehub_hub import fargate

pytestmark = pytest.mark.e2e

# The stand-in server: records its environment, then serves the task folder on its port.
SERVER_CMD = ["sh", "-c", 'env > env.txt && exec python -m http.server --bind 127.0.0.1 "$PORT"']


def server_container(**fields) -> dict:
    """The stand-in server's container definition (`fields` adds its environment, secrets)."""
    return {"name": "notebook", "image": "lakehub-hub", "memoryReservation": 512, "command": SERVER_CMD, **fields}


def task_folder(agent, task_id) -> Path:
    """Where the agent runs a task: its own folder under the agent's task root when it runs
    tasks as their users' accounts (root), else under its work folder."""
    return Path(getattr(agent, "task_root", None) or agent.work_dir) / task_id


def task_env(agent, task_arn: str, name: str) -> dict[str, str]:
    """The environment the stand-in server recorded (env.txt in its task's folder), once it
    holds the variable `name`."""
    path = task_folder(agent, task_arn.rsplit("/", 1)[-1]) / "env.txt"
    wait_for(path.exists)
    wait_for(lambda: f"{name}=" in path.read_text())
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def agent(ecs_world, tmp_path):
    agent = LocalAgent(ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=tmp_path, poll_interval=0.1)
    agent.start()
    yield agent
    agent.stop()


def test_agent_runs_a_spawned_task_locally_and_ends_it_on_stop(make_spawner, ecs_world, agent, tmp_path):
    spawner = make_spawner(user="olga", wait_for_local_endpoint=True, cmd=SERVER_CMD)
    url = asyncio.run(spawner.start())
    host_port = url.removeprefix("http://")
    assert host_port.startswith("127.0.0.1:")
    port = int(host_port.split(":")[1])
    wait_for(lambda: http_ok(url + "/env.txt"))

    # The process got the hub's environment, its own port, and the tier role's credentials.
    env = task_env(agent, spawner.task_arn, "JUPYTERHUB_USER")
    assert env["JUPYTERHUB_USER"] == "olga"
    assert env["JUPYTERHUB_API_TOKEN"] == "test-token-olga"
    assert env["JUPYTERHUB_SERVICE_URL"] == f"http://127.0.0.1:{port}/"
    assert env["AWS_ENDPOINT_URL"] == ecs_world.endpoint_url
    # ...and what the image's ENV gives every container (R finds Python without searching).
    assert env["RETICULATE_PYTHON"] == sys.executable
    sts = boto3.client(
        "sts",
        endpoint_url=ecs_world.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )
    assert f"assumed-role/lakehub-{ecs_world.tier}-tier/" in sts.get_caller_identity()["Arn"]

    assert asyncio.run(spawner.poll()) is None
    asyncio.run(spawner.stop())
    # The agent notices the stopped task, ends the process (the port closes) and forgets it.
    wait_for(lambda: not port_in_use(port) and spawner.task_arn not in agent.tasks)


def test_agent_stops_the_task_when_its_process_exits(make_spawner, ecs_world, agent):
    spawner = make_spawner(user="pete", wait_for_local_endpoint=True, cmd=["sh", "-c", "sleep 0.5; exit 3"])
    asyncio.run(spawner.start())
    wait_for(lambda: asyncio.run(spawner.poll()) is not None)
    task = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[spawner.task_arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"] == "Essential container in task exited (exit code 3)"


def test_a_server_that_cannot_start_gives_the_user_the_reason(make_spawner, ecs_world, agent):
    spawner = make_spawner(user="rita", wait_for_local_endpoint=True, cmd=["lakehub-no-such-server"])
    with pytest.raises(fargate.FargateSpawnError) as err:
        asyncio.run(spawner.start())
    message = err.value.jupyterhub_message
    assert message.startswith("Your server's task stopped before it was ready: CannotStartContainerError")
    assert "lakehub-no-such-server" in message


def test_agent_leaves_tasks_that_are_not_user_servers_alone(ecs_world, agent):
    other = ecs_world.run_task(ecs_world.family)["taskArn"]
    time.sleep(0.5)
    assert other not in agent.tasks
    tags = ecs_world.ecs.list_tags_for_resource(resourceArn=other)["tags"]
    assert fargate.TAG_LOCAL_ENDPOINT not in {t["key"] for t in tags}


def test_stopping_the_agent_ends_its_processes_and_their_tasks(make_spawner, ecs_world, tmp_path):
    agent = LocalAgent(ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=tmp_path, poll_interval=0.1).start()
    try:
        spawner = make_spawner(user="quinn", wait_for_local_endpoint=True, cmd=SERVER_CMD)
        url = asyncio.run(spawner.start())
        wait_for(lambda: http_ok(url))
    finally:
        agent.stop()
    assert not port_in_use(int(url.rsplit(":", 1)[1]))
    assert asyncio.run(spawner.poll()) == 0


def test_agent_command_names_an_unreachable_emulator_in_one_line():
    import subprocess
    import sys

    from lakehub.local.emulator import free_port

    result = subprocess.run(
        [sys.executable, "-m", "lakehub.local.agent", "--endpoint-url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("lakehub agent: error: the AWS emulator at http://127.0.0.1:")
    assert "Traceback" not in result.stderr


def test_agent_gives_processes_the_environment_the_image_gives_its_containers():
    """The agent stands in for the image: every variable it sets is one the Dockerfile's ENV sets."""
    dockerfile = (Path(__file__).resolve().parents[2] / "hub_images" / "Dockerfile").read_text()
    env_block = re.search(r"^ENV (.+?)(?=^\S)", dockerfile.split("FROM ${PYTHON_IMAGE} AS hub", 1)[1], re.S | re.M)
    assert env_block, "the hub stage of hub_images/Dockerfile has no ENV"
    image_keys = set(re.findall(r"(\w+)=", env_block.group(1)))
    assert set(image_environment()) <= image_keys
    assert "RETICULATE_PYTHON" in image_environment()


def test_agent_merges_environment_files_as_ecs_does(ecs_world, agent, tmp_path):
    """Files first (later files win), then the container's environment, then the overrides'."""
    s3 = ecs_world.s3
    s3.put_object(Bucket=ecs_world.bucket, Key="spawn-env/t/a.env", Body=b"# comment\nA=from-a\nB=from-a\nC=from-a\n\n")
    s3.put_object(Bucket=ecs_world.bucket, Key="spawn-env/t/b.env", Body=b"B=from-b\nURL=x=y\n")
    td = ecs_world.register_definition(
        f"{ecs_world.family}-files", [server_container(environment=[{"name": "C", "value": "from-definition"}])]
    )["taskDefinitionArn"]
    arn = f"arn:aws:s3:::{ecs_world.bucket}/spawn-env/t/"
    task = ecs_world.run_task(
        td,
        overrides={
            "containerOverrides": [
                {
                    "name": "notebook",
                    "environment": [{"name": "D", "value": "from-overrides"}],
                    "environmentFiles": [{"value": arn + "a.env", "type": "s3"}, {"value": arn + "b.env", "type": "s3"}],
                }
            ]
        },
        tags=[{"key": "lakehub:user", "value": "fay"}],
    )
    env = task_env(agent, task["taskArn"], "D")
    assert (env["A"], env["B"], env["C"], env["D"], env["URL"]) == (
        "from-a",
        "from-b",
        "from-definition",
        "from-overrides",
        "x=y",
    )


def test_a_task_whose_environment_file_cannot_be_read_stops_like_on_ecs(make_spawner, ecs_world, agent):
    """ECS fetches environment files before the container starts and stops the task when one
    cannot be read; the spawner tells the user why, with no traceback."""

    class LostFileSpawner(fargate.FargateSpawner):
        def _call_run_task(self, request):
            self.s3.delete_object(Bucket=self.spawn_env_bucket, Key=self.env_file_key)  # gone before ECS reads it
            return super()._call_run_task(request)

    spawner = make_spawner(LostFileSpawner, user="gus", wait_for_local_endpoint=True, cmd=SERVER_CMD)
    with pytest.raises(fargate.FargateSpawnError) as err:
        asyncio.run(spawner.start())
    message = err.value.jupyterhub_message
    assert message.startswith(
        "Your server's task stopped before it was ready: ResourceInitializationError: failed to download env files:"
    )
    assert "Traceback" not in message


# ------------------------------------------------------------------------------------------
# isolation (issue 14, local mode): a task is code its user controls
# ------------------------------------------------------------------------------------------
# Run as a task: what can this code see? Then stay alive, so the next task can look at it.
PROBE = r"""
import glob, json, os, sys, time
markers = [m.encode() for m in sys.argv[1:]]
out = {"uid": os.geteuid(), "gid": os.getegid(), "groups": os.getgroups(), "home": os.environ.get("HOME"),
       "cwd": os.getcwd(), "tmp": os.environ.get("TMPDIR")}
try:
    out["state"] = open(os.environ["PROBE_STATE_FILE"]).read()
except OSError as e:
    out["state"] = type(e).__name__
out["found"] = []
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    out["found"] += [m.decode() for m in markers if m in data]
open("probe.json.tmp", "w").write(json.dumps(out))
os.rename("probe.json.tmp", "probe.json")
time.sleep(120)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run tasks as other accounts")
def test_a_task_runs_as_its_users_account_and_sees_neither_the_state_nor_others_credentials(
    make_spawner, ecs_world, agent, tmp_path
):
    from lakehub.local.state import StateDir

    state = StateDir(tmp_path / "state")
    state.write({"admin": {"SecretAccessKey": "state-admin-key-marker"}})
    # Another tier's hub: a process of the supervisor holding a container-credentials token.
    decoy = subprocess.Popen(["sleep", "120"], env={"AWS_CONTAINER_AUTHORIZATION_TOKEN": "other-tier-token-marker"})
    probes = {}
    try:
        for user in ("olga", "pete"):
            spawner = make_spawner(
                user=user,
                cmd=["python", "-c", PROBE, "other-tier-token-marker", "olga-only-marker"],
                environment={
                    "PROBE_STATE_FILE": str(state.file("state.json")),
                    "OLGA_SECRET": "olga-only-marker" if user == "olga" else "",
                },
            )
            asyncio.run(spawner.start())
            folder = task_folder(agent, spawner.task_arn.rsplit("/", 1)[-1])
            wait_for(lambda: (folder / "probe.json").exists(), timeout=60)
            probes[user] = (json.loads((folder / "probe.json").read_text()), folder)
    finally:
        decoy.kill()
        decoy.wait()
    uids = set()
    for user, (probe, folder) in probes.items():
        account = pwd.getpwnam(f"lh-{user}")
        assert (probe["uid"], probe["gid"]) == (account.pw_uid, account.pw_gid) != (0, 0)
        assert 0 not in probe["groups"]
        assert probe["state"] == "PermissionError"
        # Its own processes' environments, yes (the probe works); another's or the supervisor's, no.
        assert set(probe["found"]) == ({"olga-only-marker"} if user == "olga" else set()), probe["found"]
        assert probe["home"] == probe["cwd"] == str(folder)
        st = os.stat(folder, follow_symlinks=False)
        assert (st.st_uid, st.st_mode & 0o777) == (account.pw_uid, 0o700)
        assert os.stat(probe["tmp"]).st_uid == account.pw_uid
        uids.add(probe["uid"])
    assert len(uids) == 2
    agent.stop()
    for user in probes:  # the agent made these accounts, and removes them with its tasks
        with pytest.raises(KeyError):
            pwd.getpwnam(f"lh-{user}")


def test_a_killed_server_is_logged_with_its_signal_and_stops_like_a_killed_container(make_spawner, ecs_world, agent, caplog):
    """A server killed by SIGKILL (the kernel's OOM killer, a user's `kill -9`): the log names the
    signal, and the task stops with the exit code a container reports for it (128 + 9)."""
    import logging

    caplog.set_level(logging.INFO, logger="lakehub.local.agent")
    spawner = make_spawner(user="kim", wait_for_local_endpoint=True, cmd=["sh", "-c", "sleep 0.5; kill -KILL $$"])
    asyncio.run(spawner.start())
    wait_for(lambda: asyncio.run(spawner.poll()) is not None)
    task = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[spawner.task_arn])["tasks"][0]
    assert task["stoppedReason"] == "Essential container in task exited (exit code 137: killed by SIGKILL)"
    lines = [r.getMessage() for r in caplog.records if spawner.task_arn in r.getMessage()]
    assert any("killed by SIGKILL (exit code 137)" in line for line in lines), lines
    # never Popen's negative return code (the task's id may itself contain "-9")
    assert not any(re.search(r"(exited with|code) -9\b", line.replace(spawner.task_arn, "")) for line in lines), lines


def test_the_process_runtime_resolves_secrets_with_the_execution_role(ecs_world, agent, aws_client):
    """Secrets Manager (full ARN, and ARN:json-key::) and SSM (name, SecureString decrypted)
    arrive in the process's environment, as ECS gives them to a container."""
    sm, ssm = aws_client("secretsmanager"), aws_client("ssm")
    plain = sm.create_secret(Name=f"{ecs_world.tier}/plain", SecretString="sm-value")["ARN"]
    doc = sm.create_secret(Name=f"{ecs_world.tier}/doc", SecretString=json.dumps({"k": "json-value"}))["ARN"]
    ssm.put_parameter(Name=f"/{ecs_world.tier}/secure", Value="ssm-value", Type="SecureString")
    secrets = [
        {"name": "S1", "valueFrom": plain},
        {"name": "S2", "valueFrom": f"{doc}:k::"},
        {"name": "S3", "valueFrom": f"/{ecs_world.tier}/secure"},
    ]
    td = ecs_world.register_definition(f"{ecs_world.family}-secrets", [server_container(secrets=secrets)])["taskDefinitionArn"]
    task = ecs_world.run_task(td, tags=[{"key": "lakehub:user", "value": "sid"}])
    env = task_env(agent, task["taskArn"], "S3")
    assert (env["S1"], env["S2"], env["S3"]) == ("sm-value", "json-value", "ssm-value")
