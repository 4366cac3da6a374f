"""The local agent's container runtime (issue 17): the emulator's ECS tasks run as podman
containers of the hub image, as their task definitions say. Real podman, the local emulator
(lakehub.local.emulator_server, for its DescribeTasks status endpoint), one agent and one image
for the module."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import pytest
from waiting import wait_for

from lakehub.stacks import tier
from lakehub.local import containers
from lakehub.local.agent import LocalAgent

from .helpers import register_fargate_definition

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.container]

IMAGE = os.environ.get("LAKEHUB_TEST_HUB_IMAGE", "")
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)
_n = itertools.count()


@pytest.fixture(scope="module")
def hub_image():
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (apt-get install podman runc)")
    if "LAKEHUB_TEST_HUB_IMAGE" in os.environ:  # an image of one's own (e.g. an older one)
        if not containers.image_exists(IMAGE):
            pytest.fail(f"LAKEHUB_TEST_HUB_IMAGE={IMAGE}: podman has no such image")
        return IMAGE
    from lakehub.local.images import ensure_hub_image, podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    return ensure_hub_image(say=lambda *a, **k: None)  # cached: built only when missing


@pytest.fixture(scope="module")
def world(local_emulator, hub_image, tmp_path_factory):
    """A cluster, a tier role and an execution role in the local emulator, and a container
    agent watching the cluster."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(key, raising=False)

        def client(service):
            return boto3.client(service, endpoint_url=local_emulator, region_name="us-east-1")

        ec2, ecs, iam = client("ec2"), client("ecs"), client("iam")
        vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="p2-users", Description="users", VpcId=vpc)["GroupId"]
        tier_role = iam.create_role(RoleName="lakehub-p2-tier", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        exec_role = iam.create_role(RoleName="lakehub-p2-exec", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        cluster = "lakehub-p2-containers"
        ecs.create_cluster(clusterName=cluster, capacityProviders=["FARGATE"])
        work = tmp_path_factory.mktemp("container-agent")
        agent = LocalAgent(
            local_emulator,
            clusters=[cluster],
            work_dir=work,
            poll_interval=0.2,
            control_token=local_emulator.control_token,
            runtime="container",
        ).start()

        class World:
            pass

        w = World()
        w.__dict__.update(
            ecs=ecs,
            sm=client("secretsmanager"),
            ssm=client("ssm"),
            cluster=cluster,
            tier_role=tier_role,
            exec_role=exec_role,
            subnet=subnet,
            sg=sg,
            agent=agent,
            image=hub_image,
            endpoint_url=str(local_emulator),
            client=client,
        )

        def register(volumes=None, **container):
            """A user-server definition with the tier's roles, of one container (user 1000, the hub
            image); with `volumes`, the task's volumes. Its ARN."""
            container.setdefault("name", "notebook")
            container.setdefault("image", hub_image)
            container.setdefault("memoryReservation", 512)
            container.setdefault("user", "1000")
            return register_fargate_definition(
                ecs,
                f"lakehub-p2-{next(_n)}",
                [container],
                taskRoleArn=tier_role,
                executionRoleArn=exec_role,
                **({"volumes": volumes} if volumes else {}),
            )["taskDefinitionArn"]

        def run(td, user="ann", hub=None, **kwargs):
            tags = [{"key": "lakehub:user", "value": user}] if user else []
            tags += [{"key": "lakehub:hub", "value": hub}] if hub else []
            return ecs.run_task(
                cluster=cluster,
                taskDefinition=td,
                launchType="FARGATE",
                tags=tags,
                networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}},
                **kwargs,
            )["tasks"][0]["taskArn"]

        def describe(arn):
            return ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])["tasks"][0]

        def stopped(arn, timeout=60):
            return wait_for(lambda: (t := describe(arn))["lastStatus"] == "STOPPED" and t, timeout=timeout)

        def endpoint(arn, timeout=60):
            def tag():
                tags = {t["key"]: t["value"] for t in describe(arn).get("tags") or []}
                return tags.get("lakehub:local-endpoint")

            return wait_for(tag, timeout=timeout)

        def log_of(arn):
            path = agent.work_dir / f"{arn.rsplit('/', 1)[-1]}.log"
            return path.read_text(errors="replace") if path.exists() else ""

        w.register, w.run, w.describe, w.stopped, w.endpoint, w.log_of = register, run, describe, stopped, endpoint, log_of
        yield w
        agent.stop()


def _request(url, method="GET", body=None, token=None, timeout=10):
    req = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return None, str(err)


# ---- the working-directory defect (real-account issue; aws rule containers-work-where-...) ----

SERVER = ["sh", "-c", 'exec jupyter server --ip=127.0.0.1 --port="$PORT" --no-browser']


def test_per_user_server_without_working_directory_cannot_start_a_kernel_and_with_it_can(world):
    """The per-user task definition before the fix (User 1000, no WorkingDirectory): the server
    starts in the image's WORKDIR /srv/jupyterhub (root's, 0700) and a notebook's kernel start
    fails with Permission denied. With the template's WorkingDirectory (the user's home) it starts."""
    token = "p2-kernel-test-token"
    env = [{"name": "JUPYTER_TOKEN", "value": token}]
    old = world.register(command=SERVER, environment=env)
    fixed = world.register(command=SERVER, environment=env, workingDirectory=tier.USER_SERVER_HOME)
    arns = {"old": world.run(old, user="wd-old"), "fixed": world.run(fixed, user="wd-fixed")}
    answers = {}
    for which, arn in arns.items():
        url = "http://" + world.endpoint(arn)
        assert wait_for(lambda: _request(f"{url}/api/status", token=token)[0] == 200, timeout=120), world.log_of(arn)
        answers[which] = _request(
            f"{url}/api/sessions",
            "POST",
            token=token,
            timeout=60,
            body={"path": "Untitled.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}},
        )
    status, text = answers["old"]
    assert status == 500 and "Permission denied: '/srv/jupyterhub'" in text, answers["old"]
    status, text = answers["fixed"]
    assert status == 201, answers["fixed"]
    assert json.loads(text)["kernel"]["name"] == "python3"
    for arn in arns.values():
        world.ecs.stop_task(cluster=world.cluster, task=arn, reason="test done")
    for arn in arns.values():
        name = containers.container_name(arn.rsplit("/", 1)[-1])
        assert wait_for(lambda: not containers.exists(name), timeout=60)


# ---- what ECS gives a container ---------------------------------------------------------------

PROBE = r"""
import json, os, sys, urllib.request, urllib.error
out = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
       "env": {k: os.environ.get(k) for k in ("PLAIN", "SM_FULL", "SM_KEY", "SSM_NAME", "SSM_ARN", "MULTI",
               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AGENT_ONLY_MARKER")}}
try:
    open("/etc/lakehub-probe", "w").write("x")
    out["write"] = "ok"
except OSError as e:
    out["write"] = e.strerror
import boto3
out["arn"] = boto3.client("sts").get_caller_identity()["Arn"]
try:
    urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/data.json", timeout=10)
    out["control"] = 200
except urllib.error.HTTPError as e:
    out["control"] = e.code
print("PROBE " + json.dumps(out), flush=True)
import time
time.sleep(600)
"""


def test_a_container_gets_its_user_environment_secrets_and_role_and_nothing_else(world, monkeypatch):
    sm_arn = world.sm.create_secret(Name=f"lakehub-p2/plain-{next(_n)}", SecretString="sm-secret-value")["ARN"]
    json_arn = world.sm.create_secret(
        Name=f"lakehub-p2/json-{next(_n)}", SecretString=json.dumps({"password": "json-secret-value"})
    )["ARN"]
    world.ssm.put_parameter(Name="/lakehub-p2/ssm-secure", Value="ssm-secret-value", Type="SecureString")
    world.ssm.put_parameter(Name="/lakehub-p2/ssm-arn", Value="ssm-arn-value", Type="String")
    ssm_arn = "arn:aws:ssm:us-east-1:123456789012:parameter/lakehub-p2/ssm-arn"
    monkeypatch.setenv("AGENT_ONLY_MARKER", "agent-environment-leaked")  # the agent's own: must not arrive
    td = world.register(
        command=["python", "-c", PROBE],
        workingDirectory=tier.USER_SERVER_HOME,
        readonlyRootFilesystem=True,
        environment=[{"name": "PLAIN", "value": "plain-value"}],
        secrets=[
            {"name": "SM_FULL", "valueFrom": sm_arn},
            {"name": "SM_KEY", "valueFrom": f"{json_arn}:password::"},
            {"name": "SSM_NAME", "valueFrom": "/lakehub-p2/ssm-secure"},
            {"name": "SSM_ARN", "valueFrom": ssm_arn},
        ],
    )
    arn = world.run(
        td,
        user="probe",
        overrides={
            "containerOverrides": [{"name": "notebook", "environment": [{"name": "MULTI", "value": "line one\nline two"}]}]
        },
    )
    line = wait_for(lambda: next((x for x in world.log_of(arn).splitlines() if x.startswith("PROBE ")), None), timeout=120)
    assert line, world.log_of(arn)
    probe = json.loads(line.removeprefix("PROBE "))
    assert (probe["uid"], probe["gid"]) == (1000, 1000)
    assert probe["cwd"] == tier.USER_SERVER_HOME
    env = probe["env"]
    assert (env["PLAIN"], env["SM_FULL"], env["SM_KEY"], env["SSM_NAME"], env["SSM_ARN"], env["MULTI"]) == (
        "plain-value",
        "sm-secret-value",
        "json-secret-value",
        "ssm-secret-value",
        "ssm-arn-value",
        "line one\nline two",
    )
    assert env["AGENT_ONLY_MARKER"] is None
    # The task role, as ECS gives it: an endpoint and a token; boto3 gets the role's identity.
    assert env["AWS_ACCESS_KEY_ID"] is None and env["AWS_SECRET_ACCESS_KEY"] is None
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert "assumed-role/lakehub-p2-tier/" in probe["arn"]
    assert probe["write"] == "Read-only file system"
    assert probe["control"] == 403  # the emulator's control API needs the supervisor's token
    # Nothing secret on podman's command line.
    local = world.agent.tasks[arn]
    cmdline = open(f"/proc/{local.process.pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    assert "podman" in cmdline and "--user 1000" in cmdline
    for value in (
        "sm-secret-value",
        "json-secret-value",
        "ssm-secret-value",
        "plain-value",
        "line one",
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
    ):
        assert value not in cmdline
    # Stop: the container goes, DescribeTasks has its exit code, the role entry answers 403.
    world.ecs.stop_task(cluster=world.cluster, task=arn, reason="test done")
    task = world.stopped(arn)
    name = containers.container_name(arn.rsplit("/", 1)[-1])
    assert wait_for(lambda: not containers.exists(name), timeout=60)
    container = wait_for(lambda: (c := world.describe(arn)["containers"][0]).get("exitCode") is not None and c, timeout=60)
    assert container["exitCode"] in (137, 143), container  # SIGTERM (python does not handle it) or SIGKILL
    assert task["stoppedReason"] == "test done"
    status, _ = _request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], token=env["AWS_CONTAINER_AUTHORIZATION_TOKEN"])
    assert status is None or status == 403


def test_a_container_that_exits_stops_its_task_with_its_exit_code(world):
    arn = world.run(world.register(command=["sh", "-c", "sleep 1; exit 3"], workingDirectory=tier.USER_SERVER_HOME))
    task = world.stopped(arn)
    assert task["stoppedReason"] == "Essential container in task exited (exit code 3)"
    assert wait_for(lambda: world.describe(arn)["containers"][0].get("exitCode") == 3, timeout=30)


# A server that allocates past its task's memory: the cgroup's limit (read inside the container),
# then 64 MiB chunks written (so the pages are really used) until the kernel kills it.
HOG = r"""
import sys, time
for label, paths in (("LIMIT", ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max")),
                     ("CPU", ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"))):
    for path in paths:  # cgroup v1, then v2
        try:
            print(label, open(path).read().strip(), flush=True)
            break
        except OSError:
            pass
hog = []
for i in range(64):  # at most 4 GiB: far past the 512 MiB the task has
    hog.append(b"x" * (64 << 20))
    time.sleep(0.02)
print("SURVIVED", flush=True)
time.sleep(600)
"""


def test_a_users_server_gets_its_tasks_memory_and_cpu_and_is_killed_past_it_like_on_ecs(world):
    """The RunTask override's size (what the spawner sends for the size a user picked) is enforced:
    memory without swap, cpu as a quota; past the memory the task stops as ECS reports an OOM kill."""
    td = world.register(command=["python", "-c", HOG], workingDirectory=tier.USER_SERVER_HOME)
    arn = world.run(td, overrides={"cpu": "512", "memory": "512"})
    task = world.stopped(arn, timeout=120)
    log = world.log_of(arn)
    assert f"LIMIT {512 * 1024 * 1024}" in log, log
    assert "CPU 50000" in log or "CPU 50000 100000" in log, log  # 0.5 vCPU: 50 ms per 100 ms period
    assert "SURVIVED" not in log, log
    container = wait_for(lambda: (c := world.describe(arn)["containers"][0]).get("reason") and c, timeout=30)
    assert container["reason"] == "OutOfMemoryError: Container killed due to memory usage", container
    assert container["exitCode"] == 137, container
    assert task["stoppedReason"].startswith("Essential container in task exited"), task["stoppedReason"]
    name = containers.container_name(arn.rsplit("/", 1)[-1])
    assert wait_for(lambda: not containers.exists(name), timeout=60), "the agent removes the exited container"


def test_task_limits_take_the_container_limit_then_the_override_then_the_definition():
    task_def = {"cpu": "1024", "memory": "4096"}
    assert containers.task_limits({}, task_def, {}) == containers.Limits(4096, 1024)
    assert containers.task_limits({"overrides": {"cpu": "2048", "memory": "8192"}}, task_def, {}) == containers.Limits(8192, 2048)
    assert containers.task_limits({"overrides": {"memory": "8192"}}, task_def, {"memory": 1024}).memory == 1024
    args = containers.Limits(512, 1024 * 64).args()
    assert args[:4] == ["--memory", "512m", "--memory-swap", "512m"]  # no swap, as on Fargate
    assert float(args[5]) <= (os.cpu_count() or 1)  # podman refuses more CPUs than the host has


def test_an_image_podman_does_not_have_stops_the_task_like_a_failed_pull(world):
    arn = world.run(world.register(image="localhost/lakehub-no-such-image:1", command=["true"]))
    task = world.stopped(arn)
    assert task["stoppedReason"].startswith("CannotPullContainerError: ")
    assert "localhost/lakehub-no-such-image:1" in task["stoppedReason"]


def test_an_unreadable_secret_stops_the_task_like_on_ecs(world):
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lakehub-p2/missing-AbCdEf"
    arn = world.run(world.register(command=["true"], secrets=[{"name": "S", "valueFrom": missing}]))
    task = world.stopped(arn)
    assert task["stoppedReason"].startswith(
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval "
        f"failed: unable to retrieve secret from asm: failed to fetch secret {missing}"
    )


def test_a_users_server_never_runs_as_root(world):
    td = register_fargate_definition(
        world.ecs,
        f"lakehub-p2-{next(_n)}",
        [{"name": "notebook", "image": world.image, "memoryReservation": 512, "command": ["sleep", "60"]}],
    )["taskDefinitionArn"]
    task = world.stopped(world.run(td))
    assert task["stoppedReason"].startswith("CannotStartContainerError: a user's server must not run as root")


def test_efs_volumes_and_extra_mounts_are_bind_mounts_at_their_container_paths(world, tmp_path):
    """An EFS volume through an access point: its folder is bound at the mount point's
    containerPath (no path rewriting) and the container runs as the access point's PosixUser;
    extra_mounts(task) adds the platform's own folders (here read-only)."""
    efs = world.client("efs")
    fs = efs.create_file_system(CreationToken=f"p2-homes-{next(_n)}", Encrypted=True)["FileSystemId"]
    ap = efs.create_access_point(
        FileSystemId=fs,
        PosixUser={"Uid": 1000, "Gid": 1000},
        RootDirectory={"Path": "/homes/efs-user", "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "700"}},
    )["AccessPointId"]
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "config.txt").write_text("from the host")
    os.chmod(tmp_path, 0o755)
    td = world.register(
        volumes=[
            {
                "name": "home",
                "efsVolumeConfiguration": {
                    "fileSystemId": fs,
                    "rootDirectory": "/",
                    "transitEncryption": "ENABLED",
                    "authorizationConfig": {"accessPointId": ap, "iam": "ENABLED"},
                },
            }
        ],
        workingDirectory="/home/efs-user",
        mountPoints=[{"sourceVolume": "home", "containerPath": "/home/efs-user", "readOnly": False}],
        command=[
            "sh",
            "-c",
            "id -u > /home/efs-user/written-by; cat /srv/extra/config.txt; "
            'touch /srv/extra/nope 2>/dev/null || echo "extra is read-only"; pwd; sleep 600',
        ],
    )
    world.agent.extra_mounts = lambda task: [(str(extra), "/srv/extra", True)]
    try:
        arn = world.run(td, user="efs-user")
        assert wait_for(lambda: "extra is read-only" in world.log_of(arn), timeout=60), world.log_of(arn)
    finally:
        world.agent.extra_mounts = None
    log = world.log_of(arn)
    assert "from the host" in log and "/home/efs-user" in log
    written = next(world.agent.efs_dir.rglob("written-by"))
    assert written.parent.name == "efs-user" and written.read_text().strip() == "1000"
    assert written.stat().st_uid == 1000
    assert not (extra / "nope").exists()
    world.ecs.stop_task(cluster=world.cluster, task=arn, reason="test done")
    world.stopped(arn)


# ---- health checks ----------------------------------------------------------------------------


def _health(world, arn):
    task = world.describe(arn)
    return task.get("healthStatus"), task["containers"][0].get("healthStatus")


def test_health_checks_are_run_and_reported_in_describe_tasks(world):
    ready_later = world.register(
        command=["sh", "-c", "sleep 3; touch /tmp/ready; sleep 600"],
        workingDirectory=tier.USER_SERVER_HOME,
        healthCheck={
            "command": ["CMD-SHELL", "test -e /tmp/ready"],
            "interval": 1,
            "timeout": 5,
            "retries": 2,
            "startPeriod": 30,
        },
    )
    failing = world.register(
        command=["sleep", "600"],
        workingDirectory=tier.USER_SERVER_HOME,
        healthCheck={"command": ["CMD", "false"], "interval": 1, "timeout": 5, "retries": 2},
    )
    good = world.run(ready_later, user="healthy")
    bad = world.run(failing, user="unhealthy")
    # a hub task (tag lakehub:hub) of a tier's service
    in_service = world.run(failing, user=None, hub="p2tier", startedBy="ecs-svc/1234567890")
    world.endpoint(good)
    assert _health(world, good) == ("UNKNOWN", "UNKNOWN")  # start period: failures do not count
    assert wait_for(lambda: _health(world, good) == ("HEALTHY", "HEALTHY"), timeout=60), _health(world, good)
    assert wait_for(lambda: _health(world, bad) == ("UNHEALTHY", "UNHEALTHY"), timeout=60), _health(world, bad)
    # A task of a service is stopped when unhealthy, one run by RunTask keeps running (as on ECS).
    assert world.stopped(in_service)["stoppedReason"] == "Task failed container health checks"
    assert world.describe(bad)["lastStatus"] == "RUNNING"
    for arn in (good, bad):
        world.ecs.stop_task(cluster=world.cluster, task=arn, reason="test done")
    for arn in (good, bad, in_service):
        name = containers.container_name(arn.rsplit("/", 1)[-1])
        assert wait_for(lambda: not containers.exists(name), timeout=60)


# ---- clean-up after a crash ----------------------------------------------------------------------


def test_remove_run_containers_removes_only_that_runs_containers(world):
    run, other = f"p2-run-{time.time_ns()}", f"p2-other-{time.time_ns()}"
    names = {}
    for token in (run, other):
        names[token] = f"lakehub-p2-{token}"
        subprocess.run(
            [
                containers.podman(),
                "run",
                "-d",
                "--name",
                names[token],
                "--label",
                f"{containers.RUN_LABEL}={token}",
                *containers.run_args(),
                world.image,
                "sleep",
                "600",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    try:
        assert containers.remove_run_containers(run) == [names[run]]
        assert not containers.exists(names[run])
        assert containers.exists(names[other])
    finally:
        subprocess.run(
            [containers.podman(), "rm", "-f", "--ignore", "-t", "0", names[run], names[other]], capture_output=True, timeout=120
        )


def test_no_value_of_the_environment_is_on_the_podman_command_line():
    argv = containers.run_argv(
        "lakehub-task-x",
        "img",
        {
            "user": "1000",
            "workingDirectory": "/home/lakehub",
            "entryPoint": ["tini", "--"],
            "command": ["a"],
            "readonlyRootFilesystem": True,
        },
        {"command": ["b", "c"]},
        user="1000",
        env_file="/dev/fd/5",
        env_names=["MULTI"],
    )
    tail = argv[argv.index("--env-file") :]
    assert tail == [
        "--env-file",
        "/dev/fd/5",
        "--env",
        "MULTI",
        "--user",
        "1000",
        "--workdir",
        "/home/lakehub",
        "--entrypoint",
        '["tini", "--"]',
        "--read-only",
        "--read-only-tmpfs=false",
        "img",
        "b",
        "c",
    ]


def test_the_task_status_endpoint_is_part_of_the_guarded_control_api(local_emulator):
    from lakehub.local.control import control_request

    url = f"{local_emulator}/moto-api/lakehub/ecs-task"
    body = {"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/none/0", "healthStatus": "HEALTHY"}
    assert _request(url, "POST", body)[0] == 403  # no token: what code in a container gets
    with pytest.raises(urllib.error.HTTPError) as err:
        control_request(
            local_emulator,
            "/moto-api/lakehub/ecs-task",
            local_emulator.control_token,
            data=json.dumps(body).encode(),
            method="POST",
        )
    assert err.value.code == 404  # with the token: answered (no such task)
