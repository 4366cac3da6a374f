"""A real JupyterHub (with configurable-http-proxy) spawning user servers with FargateSpawner on
the emulator's ECS, each task run by the local agent as a real `jupyterhub-singleuser`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lakehub.local.emulator import free_port
from lakehub.local.agent import LocalAgent
from lakehub.waiting import tries
from lakehub_hub import fargate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("hub_config_e2e.py")
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"


class Hub:
    log_tail = 3000  # how much of its log a failed start shows

    def __init__(self, env: dict, workdir: Path):
        self.env, self.workdir = env, workdir
        self.url = f"http://127.0.0.1:{env['LAKEHUB_E2E_PORT']}"
        self.api = f"{self.url}/hub/api"
        self.headers = {"Authorization": f"token {env['LAKEHUB_E2E_TOKEN']}"}
        self.process = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "hub.log"

    def start(self, timeout=60):
        return self.launch([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], self.env, timeout)

    def launch(self, command: list[str], env: dict, timeout: float):
        """Start `command` (the hub, in a session of its own, its output appended to its log) and
        wait until the hub answers /hub/health."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        for _ in tries(timeout, interval=0.2):
            assert self.process.poll() is None, self.log()[-self.log_tail :]
            try:
                if requests.get(f"{self.url}/hub/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
        raise AssertionError("hub did not start:\n" + self.log()[-self.log_tail :])

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the hub and the proxy it started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, method, path, **kwargs):
        return requests.request(method, f"{self.api}{path}", headers=self.headers, timeout=30, **kwargs)

    def wait_ready(self, user, timeout=90):
        for _ in tries(timeout, interval=0.5):
            server = self.call("GET", f"/users/{user}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                return server
        raise AssertionError(f"{user}'s server not ready:\n" + self.log()[-4000:])

    def user_status(self, user):
        return requests.get(f"{self.url}/user/{user}/api/status", headers=self.headers, timeout=10)


def e2e_hub_env(ecs_world, moto_server, tmp_path, **more) -> dict:
    """The environment of a hub run with hub_config_e2e.py on the emulator (skips without the
    proxy): the emulator's client variables, the tier's, free ports, an admin token; `more` adds."""
    if not CHP.exists():
        pytest.skip("configurable-http-proxy is not installed (npm install)")
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "HOME")}
    env.update(moto_server.client_env())
    env.update(ecs_world.env)
    env.update(
        PATH=os.pathsep.join([str(CHP.parent), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        LAKEHUB_E2E_DIR=str(tmp_path),
        LAKEHUB_E2E_PORT=str(free_port()),
        LAKEHUB_HUB_API_PORT=str(free_port()),
        LAKEHUB_E2E_PROXY_API_PORT=str(free_port()),
        LAKEHUB_E2E_TOKEN=secrets.token_hex(16),
        LAKEHUB_START_TIMEOUT="90",
        **more,
    )
    return env


@pytest.fixture
def hub_env(ecs_world, moto_server, tmp_path):
    # the hub's database survives its restart here (same folder), as with EFS
    return e2e_hub_env(ecs_world, moto_server, tmp_path, LAKEHUB_KEEP_SERVERS_ON_HUB_STOP="true")


def test_two_users_get_two_tasks_that_survive_a_hub_restart(ecs_world, hub_env, tmp_path):
    agent = LocalAgent(
        ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=tmp_path / "tasks", poll_interval=0.2
    ).start()
    hub = Hub(hub_env, tmp_path)
    try:
        hub.start()
        assert hub.call("POST", "/users", json={"usernames": ["ana", "ben"]}).status_code == 201
        refused = hub.call("POST", "/users/ana/server", json={"profile": "huge"})
        assert refused.status_code == 400 and "Unknown server size 'huge'" in refused.json()["message"]
        assert hub.call("POST", "/users/ana/server", json={"profile": "small"}).status_code in (201, 202)
        assert hub.call("POST", "/users/ben/server", json={"profile": "medium"}).status_code in (201, 202)
        hub.wait_ready("ana")
        hub.wait_ready("ben")
        assert hub.user_status("ana").status_code == 200  # through the proxy to ana's process
        assert hub.user_status("ben").status_code == 200

        tasks = {
            fargate.task_tags(t)["lakehub:user"]: t
            for t in fargate.list_tier_tasks(ecs_world.cluster, ecs_world.tier, ecs=ecs_world.ecs)
        }
        assert set(tasks) == {"ana", "ben"}
        assert tasks["ana"]["taskArn"] != tasks["ben"]["taskArn"]
        assert (tasks["ana"]["overrides"]["cpu"], tasks["ben"]["overrides"]["cpu"]) == ("1024", "2048")

        # Hub restart: the tasks keep running; a task no user owns is stopped at start-up.
        hub.stop()
        ghost = ecs_world.run_task(
            ecs_world.family,
            startedBy=fargate.started_by(ecs_world.tier),
            tags=[
                {"key": "lakehub:user", "value": "ghost"},
                {"key": "lakehub:tier", "value": ecs_world.tier},
                {"key": "lakehub:hub", "value": ecs_world.tier},
            ],
        )["taskArn"]
        hub.start()
        assert "reconcile_orphans stopped 1 task(s)" in hub.log()
        ghost_task = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[ghost])["tasks"][0]
        assert ghost_task["lastStatus"] == "STOPPED"
        hub.wait_ready("ana", timeout=30)
        assert hub.user_status("ana").status_code == 200  # taken back, same task, same process

        # Stopping a server stops its task and the agent ends the process.
        assert hub.call("DELETE", "/users/ana/server").status_code in (202, 204)
        for _ in tries(30, interval=0.2):
            if tasks["ana"]["taskArn"] not in agent.tasks:
                break
        stopped = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[tasks["ana"]["taskArn"]])["tasks"][0]
        assert stopped["lastStatus"] == "STOPPED"
        assert tasks["ana"]["taskArn"] not in agent.tasks
    finally:
        hub.stop()
        agent.stop()


def test_the_idle_culler_stops_an_idle_users_task(ecs_world, hub_env, tmp_path):
    agent = LocalAgent(
        ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=tmp_path / "tasks", poll_interval=0.2
    ).start()
    hub = Hub(dict(hub_env, LAKEHUB_E2E_CULL_TIMEOUT="3"), tmp_path)
    try:
        hub.start()
        assert hub.call("POST", "/users", json={"usernames": ["cora"]}).status_code == 201
        assert hub.call("POST", "/users/cora/server", json={}).status_code in (201, 202)
        hub.wait_ready("cora")
        (task,) = [
            t
            for t in fargate.list_tier_tasks(ecs_world.cluster, ecs_world.tier, ecs=ecs_world.ecs)
            if fargate.task_tags(t)["lakehub:user"] == "cora"
        ]
        for _ in tries(45, interval=0.5):
            described = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[task["taskArn"]])["tasks"][0]
            if described["lastStatus"] == "STOPPED":
                break
        assert described["lastStatus"] == "STOPPED", hub.log()[-3000:]
        assert "Stopped by JupyterHub" in described["stoppedReason"]
        assert "culling" in hub.log().lower() or "idle-culler" in hub.log()
        # ECS says STOPPED before the hub's stop loop (it polls) has seen it and dropped the server.
        deadline = time.monotonic() + 30
        while hub.call("GET", "/users/cora").json()["servers"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not hub.call("GET", "/users/cora").json()["servers"], hub.log()[-3000:]
    finally:
        hub.stop()
        agent.stop()
