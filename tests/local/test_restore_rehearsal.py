"""Restore rehearsals on the local platform (issue 18, "Must show"), on the container runtime with
per-user servers, one `up` for the module:

1. a deleted home: a user writes a file in their home, `lakehub local backup`, the user's server is
   stopped and their home deleted (as an operator deleting a user), `lakehub local restore-home`
   puts it back, and the user's new server sees the file again;
2. the hub's state: the hub task is killed and its state folder (its SQLite database) deleted, as
   a replaced ECS task starts with nothing; the supervisor starts a new hub task, which restores
   the database from its Litestream replica in S3: the user, their API token and their running
   server's record come back (the server is still there, not stopped as an orphan).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import requests
from hubclient import wait_stopped
from lakehub_hub.accounts import unix_username

from lakehub.local.platform import free_base_port

from .helpers import Platform, lakehub, user_server
from .test_local_containers import _containers, _tasks

pytestmark = [pytest.mark.e2e, pytest.mark.container, pytest.mark.timeout(1800)]

FILE = "precious-results.txt"
WRITE = f"""import os
path = os.path.join(os.environ["HOME"], "{FILE}")
open(path, "w").write("months of work")
print("wrote", path)"""
READ = f"""import os
print("read:", open(os.path.join(os.environ["HOME"], "{FILE}")).read())"""
HUB_RESTART_TIMEOUT = 240
SYNC_WAIT = 25  # Litestream ships changes every 10 s (LAKEHUB_HUB_STATE_SYNC_INTERVAL)


def test_a_replaced_hub_task_gets_an_empty_state_folder_when_its_folder_was_deleted(tmp_path):
    """A new ECS task starts with an empty folder; the local agent mounts the hub's state folder,
    and podman refuses a mount whose source is missing ("statfs ...: no such file or directory"):
    the relaunch after the folder was lost must make it again."""
    from lakehub.local.platform import CONTAINER_STATE_DIR, LocalPlatform
    from lakehub.local.state import StateDir

    platform = LocalPlatform(StateDir(tmp_path / "state"), base_port=9100, runtime="container")
    hub_task = {"tags": [{"key": "lakehub:tier", "value": "pii"}, {"key": "lakehub:hub", "value": "pii"}]}
    source = next(src for src, dst, _ in platform.hub_task_mounts(hub_task) if dst == CONTAINER_STATE_DIR)
    assert (tmp_path / "state" / "hubs" / "pii" / "state").is_dir() and source == str(
        tmp_path / "state" / "hubs" / "pii" / "state"
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make setup)")
    p = Platform(tmp_path_factory.mktemp("lakehub-restore"), free_base_port(), runtime="container")
    proc = p.up()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield p
    if p.state().get("phase") == "ready":
        p.down()


def _home(p: Platform, tier: str, user: str):
    (home,) = p.state_dir.glob(f"efs/*/tiers/{tier}/{unix_username(user)}")
    return home


@pytest.mark.e2e
def test_a_deleted_home_is_restored_from_a_local_backup_and_the_users_server_sees_it(platform):
    tier = platform.tier("pii")
    user = tier["users"][0]
    server = user_server(tier, user)
    assert server.run("python3", WRITE).startswith("wrote ")
    home = _home(platform, "pii", user["username"])
    assert (home / FILE).read_text() == "months of work"

    backup = lakehub("local", "backup", "--state-dir", str(platform.state_dir), timeout=300)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "hub databases" in backup.stdout, backup.stdout

    # the operator deletes the user's home: their server stopped first
    headers = {"Authorization": f"token {server.token}"}
    requests.delete(f"{tier['url']}/hub/api/users/{user['username']}/server", headers=headers, timeout=60)
    wait_stopped(tier["url"], user["username"], server.token, timeout=120)
    shutil.rmtree(home)

    restored = lakehub(
        "local", "restore-home", "--state-dir", str(platform.state_dir), "--tier", "pii", "--user", user["username"], timeout=300
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored the home of '{user['username']}' in tier pii" in restored.stdout

    again = user_server(tier, user)
    assert again.run("python3", READ).strip() == "read: months of work"
    # a second restore does not overwrite the home the user has now
    refused = lakehub(
        "local", "restore-home", "--state-dir", str(platform.state_dir), "--tier", "pii", "--user", user["username"], timeout=120
    )
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr


def _hub_container(p: Platform, tier: str) -> str:
    """The podman container of the tier's hub task (the service's task, lakehub:hub = tier)."""
    (task,) = _tasks(p, "lakehub:hub", tier)
    return _containers(p)[task["taskArn"]]["Id"]


@pytest.mark.e2e
def test_the_hub_database_comes_back_from_its_litestream_replica_when_the_task_is_replaced(platform):
    tier = platform.tier("pii")
    user = tier["users"][0]
    server = user_server(tier, user)  # the server the previous test started (or a new one)
    headers = {"Authorization": f"token {server.token}"}
    before = requests.get(f"{tier['url']}/hub/api/users/{user['username']}", headers=headers, timeout=30).json()
    assert (before.get("servers") or {}).get("", {}).get("ready"), before
    time.sleep(SYNC_WAIT)  # the replica has the token and the server's record

    state_folder = platform.state_dir / "hubs" / "pii" / "state"
    assert (state_folder / "jupyterhub.sqlite").exists()
    container = _hub_container(platform, "pii")
    subprocess.run(["podman", "kill", container], capture_output=True, timeout=60, check=True)
    shutil.rmtree(state_folder)  # a replaced task starts with an empty folder

    deadline = time.monotonic() + HUB_RESTART_TIMEOUT
    info = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{tier['url']}/hub/api/users/{user['username']}", headers=headers, timeout=10)
            if r.status_code == 200:
                info = r.json()
                if (info.get("servers") or {}).get("", {}).get("ready"):
                    break
        except requests.RequestException:
            pass
        time.sleep(2)
    assert info is not None, f"the hub did not come back within {HUB_RESTART_TIMEOUT} s"
    # the API token (a row of the database) still works, and the server's record came back
    assert (info.get("servers") or {}).get("", {}).get("ready"), info
    assert (state_folder / "jupyterhub.sqlite").exists()
    assert server.run("python3", READ).strip() == "read: months of work"  # the same server, through the new hub's proxy
    status = platform.status()
    hub = next(p for p in status["parts"] if p["name"] == "pii hub")
    assert hub["restarts"] >= 1, hub


@pytest.mark.e2e
def test_down_takes_a_backup_of_the_homes_and_the_hub_databases(platform):
    user = platform.tier("pii")["users"][0]
    down = platform.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "lakehub local: backup " in down.stdout and "2 hub databases" in down.stdout, down.stdout
    newest = sorted((platform.state_dir / "backups").iterdir())[-1]
    manifest = json.loads((newest / "manifest.json").read_text())
    assert manifest["note"] == "taken by `lakehub local down`" and not manifest["problems"], manifest
    assert f"pii/{unix_username(user['username'])}" in manifest["homes"]
    home = next(newest.glob(f"efs/*/tiers/pii/{unix_username(user['username'])}"))
    assert (home / FILE).read_text() == "months of work"
