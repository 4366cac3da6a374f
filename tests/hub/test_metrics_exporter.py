"""The hub's metrics exporter (lakehub_hub.metrics) sends the hub's figures to CloudWatch (issue 18).

End to end on loopback, no mocks: JupyterHub with hub_images/jupyterhub_config.py, the
configurable-http-proxy, a real OpenID Connect provider, and the emulator's CloudWatch. The
exporter runs as the hub's managed service, reads /hub/metrics and the users API with its own
token and sends one PutMetricData per interval (shortened to 2 s here). A site hook counts what
the per-user spawner would (a capacity error, a Spot interruption, stopped servers, a user task)
through lakehub_hub.hub_metrics, in the hub's process, so the lakehub_* series travel the whole
way. Then the hub process is killed: the exporter's last word is HubUp 0, and it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

import psutil
import pytest

import hub_harness as H
import waiting
from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, emulator_client
from lakehub_hub import metrics as M

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

GROUP = "analysts"
INTERVAL = 2
HOOK = """
from lakehub_hub import hub_metrics

hub_metrics.count_capacity_error()
hub_metrics.count_spot_interruption()
hub_metrics.count_server_stopped("oom")
hub_metrics.count_server_stopped("cull")
hub_metrics.count_server_stopped("cull")


class _Task:  # what FargateSpawner offers the user-task gauge
    task_arn = "arn:aws:ecs:us-east-1:123456789012:task/c/t1"
    capacity_used = "FARGATE_SPOT"

    def user_server_size(self):
        return "medium"


hub_metrics._kept_for_test = _Task()
hub_metrics.track_spawner(hub_metrics._kept_for_test)
"""


def series(cw, platform: str, tier: str, name: str, stat: str = "Sum", extra: dict | None = None) -> list[dict]:
    dims = [{"Name": "Platform", "Value": platform}, {"Name": "Tier", "Value": tier}]
    dims += [{"Name": k, "Value": v} for k, v in (extra or {}).items()]
    now = time.time()
    answer = cw.get_metric_statistics(
        Namespace=M.NAMESPACE,
        MetricName=name,
        Dimensions=dims,
        StartTime=now - 900,
        EndTime=now + 60,
        Period=60,
        Statistics=[stat],
    )
    return answer["Datapoints"]


def total(cw, platform, tier, name, stat="Sum", extra=None) -> float:
    points = series(cw, platform, tier, name, stat, extra)
    if stat == "Minimum":
        return min((p[stat] for p in points), default=float("nan"))
    if stat == "Maximum":
        return max((p[stat] for p in points), default=float("nan"))
    return sum(p[stat] for p in points)


def wait_for(check, what: str, log, timeout: float = 60.0):
    return waiting.wait_for(check, timeout=timeout, interval=1.0, what=what, detail=lambda: f"--- hub log ---\n{log()[-5000:]}")


@pytest.fixture(scope="module")
def hub(moto_server, tmp_path_factory):
    if not (H.NODE_BIN / "configurable-http-proxy").exists():
        pytest.fail("configurable-http-proxy is missing; run `make setup`")
    hooks = tmp_path_factory.mktemp("metrics-hooks")
    (hooks / "90-count.py").write_text(HOOK)
    platform = f"obs{uuid.uuid4().hex[:6]}"
    extra = dict(
        LAKEHUB_ALLOWED_GROUPS=GROUP,
        LAKEHUB_IDLE_TIMEOUT="0",
        LAKEHUB_PLATFORM=platform,
        LAKEHUB_METRICS_INTERVAL=str(INTERVAL),
        LAKEHUB_CLOUDWATCH_ENDPOINT_URL=moto_server.endpoint_url,
        LAKEHUB_CONFIG_D=str(hooks),
    )
    cw = emulator_client("cloudwatch", moto_server.endpoint_url)
    with (
        H.notebook_lake(moto_server.endpoint_url, EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY) as lake,
        H.tier_hub(
            "oidc",
            "metrics",
            lake["bucket"],
            "tiers/metrics",
            moto_server.endpoint_url,
            lake["creds"].url,
            ("alice",),
            {GROUP: ["alice"]},
            extra,
        ) as t,
    ):
        session, response = t.sign_in(t.hub.url, "alice", t.passwords["alice"])
        assert response.status_code == 200, f"sign-in: {response.status_code}\n{t.hub.log()[-3000:]}"
        token = H.api_token(session, t.hub.url, "alice")
        H.wait_ready(t.hub.url, "alice", token)
        yield {"hub": t.hub, "cw": cw, "platform": platform, "tier": "metrics", "token": token}


def exporter_process(hub_pid: int) -> psutil.Process:
    for child in psutil.Process(hub_pid).children(recursive=True):
        try:
            if "lakehub_hub.metrics" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("the metrics service is not running under the hub")


def test_the_hub_figures_arrive_in_cloudwatch_with_the_alarms_dimensions(hub):
    cw, platform, tier, log = hub["cw"], hub["platform"], hub["tier"], hub["hub"].log
    # alice's server is running and she was just active: the users API and /hub/metrics say so.
    wait_for(lambda: total(cw, platform, tier, M.RUNNING_SERVERS, "Maximum") == 1, "RunningServers 1", log)
    wait_for(lambda: total(cw, platform, tier, M.ACTIVE_USERS, "Maximum") == 1, "ActiveUsers 1", log)
    assert total(cw, platform, tier, M.HUB_UP, "Minimum") == 1
    # One successful spawn, counted once however many rounds went by, with its duration.
    wait_for(lambda: total(cw, platform, tier, M.SPAWN_SUCCESSES) == 1, "SpawnSuccesses 1", log)
    time.sleep(2 * INTERVAL)
    assert total(cw, platform, tier, M.SPAWN_SUCCESSES) == 1
    assert series(cw, platform, tier, M.SPAWN_FAILURES) == []  # nothing failed: nothing sent (paid per hour sent)
    duration = series(cw, platform, tier, M.SPAWN_DURATION, "SampleCount")
    assert sum(p["SampleCount"] for p in duration) == 1
    seconds = total(cw, platform, tier, M.SPAWN_DURATION, "Maximum")
    assert 0 < seconds < 120, seconds
    # What the spawner counts (here a site hook, in the hub's process) arrives as deltas.
    assert total(cw, platform, tier, M.CAPACITY_ERRORS) == 1
    assert total(cw, platform, tier, M.SPOT_INTERRUPTIONS) == 1
    assert total(cw, platform, tier, M.SERVERS_STOPPED, extra={"Reason": "cull"}) == 2
    assert total(cw, platform, tier, M.SERVERS_STOPPED, extra={"Reason": "oom"}) == 1
    assert series(cw, platform, tier, M.SERVERS_STOPPED, extra={"Reason": "spot"}) == []  # nothing moved
    assert total(cw, platform, tier, M.USER_TASKS, "Maximum", extra={"Size": "medium", "Capacity": "FARGATE_SPOT"}) == 1
    # Every metric it sent is one the exporter declares, with exactly the declared dimensions.
    listed = cw.list_metrics(Namespace=M.NAMESPACE, Dimensions=[{"Name": "Platform", "Value": platform}])["Metrics"]
    assert listed
    for metric in listed:
        unit, extra = M.CLOUDWATCH[metric["MetricName"]]
        assert sorted(d["Name"] for d in metric["Dimensions"]) == sorted(("Platform", "Tier", *extra)), metric


def test_the_service_gets_its_settings_and_none_of_the_hubs_secrets(hub):
    exporter = exporter_process(hub["hub"].process.pid)
    env = exporter.environ()
    assert env["LAKEHUB_PLATFORM"] == hub["platform"] and env["LAKEHUB_METRICS_INTERVAL"] == str(INTERVAL)
    assert "LAKEHUB_COOKIE_SECRET" not in env and "LAKEHUB_OAUTH_CLIENT_SECRET" not in env


def test_a_gone_hub_is_reported_as_down_and_the_exporter_ends(hub):
    cw, platform, tier = hub["cw"], hub["platform"], hub["tier"]
    process = hub["hub"].process
    exporter = exporter_process(process.pid)
    process.kill()  # the hub process alone, at once (the exporter is in its own session)
    process.wait(timeout=10)
    try:
        wait_for(lambda: total(cw, platform, tier, M.HUB_UP, "Minimum") == 0, "HubUp 0", hub["hub"].log, timeout=30)
        exporter.wait(timeout=3 * INTERVAL + 15)  # its last word said; it does not linger
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the proxy, left in the hub's process group
        with contextlib.suppress(psutil.NoSuchProcess):
            exporter.kill()
