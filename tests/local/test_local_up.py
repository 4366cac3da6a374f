"""End to end through `lakehub local up`: the real templates deployed into the emulator, the
custom resources run by the local Lambda runner, IAM enforcement on, one hub per tier with the
real hub config, per-user servers run by the local agent with the tier roles the templates made.

One `up` is shared by the module's tests (CI time); the last test takes it down and up again.
"""

from __future__ import annotations

import socket
from pathlib import Path

import nbformat
import pytest
import requests

from lakehub.local.platform import free_base_port

from .helpers import Platform, admin_client, lakehub, running, running_tasks, user_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import boto3, botocore
s3 = boto3.client("s3")
def probe(key):
    try:
        s3.get_object(Bucket="{bucket}", Key=key)["Body"].read()
        return "read"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
print("pii:", probe("pii/customers.csv"), "nonpii:", probe("nonpii/sales.csv"))
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    yield from running(Platform(tmp_path_factory.mktemp("lakehub-local"), free_base_port()))


def test_up_ends_with_tiers_urls_users_and_the_emulator(platform):
    status = platform.status()
    assert {"tiers", "emulator_endpoint"} <= set(status)  # and each part's state (tests/local/test_supervision.py)
    assert status["emulator_endpoint"] == f"http://127.0.0.1:{platform.base}"
    assert {t["name"] for t in status["tiers"]} == {"pii", "nonpii"}
    for tier in status["tiers"]:
        assert set(tier) == {"name", "url", "users"}
        assert requests.get(f"{tier['url']}/hub/health", timeout=10).status_code == 200
        assert tier["users"]
        for user in tier["users"]:
            assert set(user) == {"username", "password", "groups"}
            assert len(user["password"]) >= 12
            assert user["groups"] == [f"{tier['name']}-users"]


def test_both_default_tiers_get_distinct_listener_priorities(platform):
    """Issue 13, defect 1: the tier stacks are created concurrently (as CloudFormation does,
    and the emulator now does too), and each tier's rule holds its own priority."""
    cfn, elbv2 = platform.admin_client("cloudformation"), platform.admin_client("elbv2")
    priorities, listeners = {}, set()
    for stack in cfn.describe_stacks()["Stacks"]:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if "ListenerRulePriorityUsed" in outputs and "TierUrl" in outputs:
            priorities[outputs["TierUrl"]] = int(outputs["ListenerRulePriorityUsed"])
    assert len(priorities) == 2 and len(set(priorities.values())) == 2, priorities
    for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
        listeners |= {
            x["ListenerArn"]
            for x in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            if x["Port"] == 443
        }
    held = sorted(
        int(r["Priority"])
        for arn in listeners
        for r in elbv2.describe_rules(ListenerArn=arn)["Rules"]
        if r["Priority"] != "default"
    )
    assert held == sorted(priorities.values())


def test_pii_member_reads_pii_and_is_refused_nonpii(platform):
    tier = platform.tier("pii")
    server = user_server(tier, tier["users"][0])
    out = server.run("python3", PROBE.format(bucket=platform.state()["outputs"]["DataBucketName"]))
    assert out.split() == ["pii:", "read", "nonpii:", "AccessDenied"]


def test_nonpii_member_reads_nonpii_and_is_refused_pii(platform):
    tier = platform.tier("nonpii")
    server = user_server(tier, tier["users"][0])
    out = server.run("python3", PROBE.format(bucket=platform.state()["outputs"]["DataBucketName"]))
    assert out.split() == ["pii:", "AccessDenied", "nonpii:", "read"]


def test_user_servers_run_with_the_tier_role_from_the_templates(platform):
    tier = platform.tier("pii")
    server = user_server(tier, tier["users"][0])
    out = server.run("python3", "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])")
    role_arn = platform.state()["outputs"]["TierPiiRoleArn"]
    assert f":assumed-role/{role_arn.rsplit('/', 1)[-1]}/" in out


def test_two_users_of_one_tier_get_two_tasks_with_the_user_task_role(platform):
    tier = platform.tier("pii")
    for user in tier["users"][:2]:
        user_server(tier, user)
    state = platform.state()
    ecs = admin_client(state, "ecs")
    owners = {}
    for task, tags in running_tasks(state):
        if tags.get("lakehub:tier") == "pii":
            owners.setdefault(tags.get("lakehub:user"), []).append(task)
    assert {u["username"] for u in tier["users"][:2]} <= set(owners)
    for user in tier["users"][:2]:
        (task,) = owners[user["username"]]
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        # Issue 15: users' tasks run with the user task role (no data), never the tier's data role.
        assert definition["taskRoleArn"] != state["outputs"]["TierPiiRoleArn"]
        assert "UserTaskRole" in definition["taskRoleArn"], definition["taskRoleArn"]


def test_saved_notebook_lands_in_the_notebook_bucket_under_its_tier(platform):
    tier = platform.tier("pii")
    user = tier["users"][0]
    server = user_server(tier, user)
    server.save_notebook("saved-by-test.ipynb", "print('kept')")  # in the home: its central copy
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    key = f"tiers/pii/users/{user['username']}/saved-by-test.ipynb"
    # As a notebook file on disk: nbformat may keep a cell's source as a list of lines.
    body = nbformat.reads(platform.admin_s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode(), as_version=4)
    assert body.cells[0].source == "print('kept')"
    # Its earlier versions are the user's restore points: the template's VersioningConfiguration
    # holds in the emulator too (moto's CloudFormation ignored it, and JupyterLab's checkpoint
    # picker had one entry).
    assert platform.admin_s3().get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    server.save_notebook("saved-by-test.ipynb", "print('kept, twice')")
    versions = platform.admin_s3().list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len([v for v in versions if v["Key"] == key]) == 2


def _persistent_home(server) -> str:
    """The contract of the local agent (issue 15, homes): a per-user task's HOME and LAKEHUB_HOME
    are its user's persistent folder (the EFS access point's folder under the state folder)."""
    home = server.run("python3", "import os; print(os.environ.get('LAKEHUB_HOME') or '')").strip().splitlines()
    assert home and home[-1], "the local agent gave the per-user task no LAKEHUB_HOME"
    return home[-1]


@pytest.mark.per_user_homes
def test_per_user_mode_users_python_and_r_packages_with_c_code_survive_a_server_restart(platform):
    """Per-user mode: pip install --user (a C extension) and install.packages (src/*.c) go to the
    home, and load again in the next task after the server is stopped and started."""
    import user_packages as UP
    from hubclient import wait_ready, wait_stopped

    tier = platform.tier("pii")
    user = tier["users"][1]
    server = user_server(tier, user)
    _persistent_home(server)
    name = "lhtinyperuser"
    installed = UP.install_both(server, name)
    headers = {"Authorization": f"token {server.token}"}
    requests.delete(f"{tier['url']}/hub/api/users/{user['username']}/server", headers=headers, timeout=60)
    wait_stopped(tier["url"], user["username"], server.token, timeout=180)
    wait_ready(tier["url"], user["username"], server.token, timeout=180)  # a new task
    UP.assert_in_home(installed, UP.check_both(server, name), name)


@pytest.mark.per_user_homes
def test_per_user_mode_a_user_who_points_their_local_folder_elsewhere_still_gets_their_server(platform):
    """`ln -s /etc ~/.local` from a kernel: Jupyter's runtime files (the server's and kernels'
    connection files) must not be under ~/.local, or the server fails at every start and the user
    cannot undo it from JupyterLab (seen in shared mode in stop 27's CI). They go to the task's
    own temporary folder."""
    from hubclient import wait_ready, wait_stopped

    tier = platform.tier("pii")
    user = tier["users"][1]
    server = user_server(tier, user)
    home = Path(_persistent_home(server))  # the host folder (the local agent's process runtime)
    local, saved = home / ".local", home / ".local-before-the-test"
    server.run(
        "python3",
        f"import os\nif os.path.lexists({str(local)!r}): os.rename({str(local)!r}, {str(saved)!r})\nos.symlink('/etc', {str(local)!r})",
    )
    try:
        assert local.is_symlink()
        headers = {"Authorization": f"token {server.token}"}
        requests.delete(f"{tier['url']}/hub/api/users/{user['username']}/server", headers=headers, timeout=60)
        wait_stopped(tier["url"], user["username"], server.token, timeout=180)
        wait_ready(tier["url"], user["username"], server.token, timeout=180)  # a new task, ~/.local still /etc
        out = server.run("python3", "import os; print('runtime:', os.environ.get('JUPYTER_RUNTIME_DIR'))")
        runtime = out.strip().splitlines()[-1].split("runtime: ", 1)[-1]
        assert runtime not in ("", "None") and not runtime.startswith(str(home)), out
    finally:  # as root, from outside: the home as it was, for the later tests
        if local.is_symlink():
            local.unlink()
        if saved.exists() and not local.exists():
            saved.rename(local)


def _settled(status: dict) -> dict:
    """The status without its live CloudWatch figures (`metrics`), which move on their own as the
    emulator's metric windows take in earlier tests' sign-ins and servers."""
    return {key: value for key, value in status.items() if key != "metrics"}


def test_a_second_up_fails_in_one_line_and_leaves_the_running_one(platform):
    before = platform.status()
    proc = platform.up()
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "already running" in lines[0], proc.stderr
    after = platform.status()
    assert _settled(after) == _settled(before)
    assert set(after["metrics"]) == set(before["metrics"])  # the same tiers still report
    for tier in before["tiers"]:
        assert requests.get(f"{tier['url']}/hub/health", timeout=10).status_code == 200


def test_a_port_in_use_fails_in_one_line_and_leaves_the_running_one(platform, tmp_path):
    # Another state folder on the running platform's ports; and a port held by something else.
    other = Platform(tmp_path / "other", platform.base)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        third = lakehub("local", "up", "--state-dir", str(tmp_path / "third"), "--base-port", str(busy))
    proc = other.up()
    for result in (proc, third):
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "already in use" in lines[0], result.stderr
    for tier in platform.status()["tiers"]:
        assert requests.get(f"{tier['url']}/hub/health", timeout=10).status_code == 200


# Code in a kernel that tries what issue 14 found (local mode): switch IAM enforcement off, dump
# the emulator, read the state folder's keys, and read other processes' credentials in /proc.
ATTACK = r"""
import glob, json, os, urllib.error, urllib.request
def call(path, data=None):
    req = urllib.request.Request(ENDPOINT + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "text/plain"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
out = {"uid": os.geteuid(), "reset_auth": call("/moto-api/reset-auth", b"1000000"),
       "data_json": call("/moto-api/data.json")}
for name in ("state.json", "control-token"):
    try:
        open(os.path.join(STATE, name)).read()
        out[name] = "read"
    except OSError as e:
        out[name] = type(e).__name__
mine = ("AWS_SECRET_ACCESS_KEY=" + os.environ.get("AWS_SECRET_ACCESS_KEY", "")).encode()
found = set()
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        if os.stat(path).st_uid == os.geteuid():
            continue  # this user's own processes (its server, its relay's token): its own
        data = open(path, "rb").read()
    except OSError:
        continue
    for line in data.split(b"\0"):
        if line.startswith(b"AWS_CONTAINER_AUTHORIZATION_TOKEN="):
            found.add("a container-credentials token")
        if line.startswith(b"AWS_SECRET_ACCESS_KEY=") and line != mine:
            found.add("another secret key")
out["found"] = sorted(found)
print(json.dumps(out))
"""


def test_code_in_a_kernel_cannot_switch_enforcement_off_nor_read_keys(platform):
    """Issue 14 (local mode): a nonpii user's kernel, while a pii user's server runs."""
    import json

    pii = platform.tier("pii")
    user_server(pii, pii["users"][0])  # another tier's server (its role's keys in its environment)
    tier = platform.tier("nonpii")
    server = user_server(tier, tier["users"][0])
    state = platform.state()
    code = f"ENDPOINT = {state['emulator_endpoint']!r}\nSTATE = {str(platform.state_dir)!r}\n" + ATTACK
    seen = json.loads(server.run("python3", code).strip().splitlines()[-1])
    assert seen["uid"] != 0, seen
    assert (seen["reset_auth"], seen["data_json"]) == (403, 403), seen
    assert (seen["state.json"], seen["control-token"]) == ("PermissionError", "PermissionError"), seen
    assert seen["found"] == [], seen
    # Enforcement is still on: the pii prefix stays closed to this tier.
    out = server.run("python3", PROBE.format(bucket=state["outputs"]["DataBucketName"]))
    assert out.split() == ["pii:", "AccessDenied", "nonpii:", "read"]
    # The supervisor's token still opens the control API.
    from lakehub.local.control import control_request

    assert control_request(
        state["emulator_endpoint"], "/moto-api/state-manager/get-transition?model_name=ecs::task", platform.control_token()
    )


def test_up_save_down_up_keeps_the_notebook(platform):
    tier = platform.tier("nonpii")
    user = tier["users"][0]
    server = user_server(tier, user)
    server.save_notebook("survives.ipynb", "print('still here')")  # in the home (its central copy in S3)
    down = platform.down()
    assert down.returncode == 0, down.stderr
    assert (
        platform.state_dir / "notebooks-export" / "tiers" / "nonpii" / "users" / user["username"] / "survives.ipynb"
    ).is_file()
    for t in platform.state()["tiers"]:
        with pytest.raises(requests.RequestException):
            requests.get(f"{t['url']}/hub/health", timeout=3)
    platform.up_ok()
    tier = platform.tier("nonpii")
    user = next(u for u in tier["users"] if u["username"] == user["username"])  # new password
    server = user_server(tier, user)
    r = server.api("GET", "contents/survives.ipynb")
    assert r.status_code == 200, r.text
    assert r.json()["content"]["cells"][0]["source"] == "print('still here')"
