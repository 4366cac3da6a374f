"""FargateSpawner against moto's ECS in server mode: the real boto3 calls, the real task records.

What moto cannot produce (a Spot capacity failure) is injected through the spawner's one
documented hook, `_call_run_task`; a task stopping during start is driven through the
emulator's own stop_task while start() is waiting.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from botocore.exceptions import ClientError

from lakehub_hub import fargate
from lakehub_hub.fargate import FargateSpawnError, FargateSpawner

pytestmark = pytest.mark.e2e  # starts the emulator


class RecordingSpawner(FargateSpawner):
    """Records every RunTask request it sends (then sends it to the emulator unchanged)."""

    requests: list

    def _call_run_task(self, request):
        self.requests = getattr(self, "requests", []) + [request]
        return super()._call_run_task(request)


class NoSpotCapacitySpawner(RecordingSpawner):
    """Fargate Spot out of capacity, as ECS reports it: a `failures` entry and no task."""

    def _call_run_task(self, request):
        provider = request["capacityProviderStrategy"][0]["capacityProvider"]
        if provider == "FARGATE_SPOT":
            self.requests = getattr(self, "requests", []) + [request]
            return {
                "tasks": [],
                "failures": [
                    {
                        "arn": "",
                        "reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone",
                    }
                ],
            }
        return super()._call_run_task(request)


class SpotThrottledSpawner(RecordingSpawner):
    """Fargate Spot out of capacity reported as an API error instead of a failure entry."""

    def _call_run_task(self, request):
        if request["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT":
            self.requests = getattr(self, "requests", []) + [request]
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "FARGATE_SPOT capacity is not available"}},
                "RunTask",
            )
        return super()._call_run_task(request)


class ColdStartSpawner(RecordingSpawner):
    """RunTask answers PROVISIONING, as ECS does (moto answers RUNNING at once)."""

    def _call_run_task(self, request):
        response = super()._call_run_task(request)
        for task in response["tasks"]:
            task["lastStatus"] = "PROVISIONING"
        return response


def describe(world, arn):
    return world.ecs.describe_tasks(cluster=world.cluster, tasks=[arn], include=["TAGS"])["tasks"][0]


def run(coro):
    return asyncio.run(coro)


async def submitted_start(spawner) -> asyncio.Future:
    """The spawner's start() under way, once it has submitted its task (or after 20 s)."""
    start = asyncio.ensure_future(spawner.start())
    for _ in range(400):  # up to 20 s on a loaded machine
        if spawner.task_arn:
            break
        await asyncio.sleep(0.05)
    return start


async def start_with_progress(spawner):
    """Run start() and progress() together, as JupyterHub does; return (url, messages)."""
    spawner._start_done = False  # JupyterHub may ask for progress before start() runs
    events = []

    async def collect():
        async for event in spawner.progress():
            events.append(event)

    collector = asyncio.ensure_future(collect())
    try:
        url = await spawner.start()
    finally:
        await asyncio.wait_for(collector, 10)
    return url, [e["message"] for e in events], [e["progress"] for e in events]


def test_start_runs_the_tier_task_with_configured_role_network_size_and_tags(make_spawner, ecs_world):
    spawner = make_spawner(RecordingSpawner, user="alice", user_options={"profile": "medium"})
    url = run(spawner.start())

    task = describe(ecs_world, spawner.task_arn)
    # The task definition is the tier's user-server one, so its task role is the tier role.
    assert task["taskDefinitionArn"] == ecs_world.task_definition_arn
    td = ecs_world.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert td["taskRoleArn"] == ecs_world.tier_role
    assert task["lastStatus"] == "RUNNING"
    assert task["capacityProviderName"] == "FARGATE"
    assert task["startedBy"] == f"lakehub-{ecs_world.tier}"
    # Size from the chosen profile.
    assert task["overrides"]["cpu"] == "2048" and task["overrides"]["memory"] == "8192"
    # Tags: user, server, tier, hub.
    tags = fargate.task_tags(task)
    assert tags["lakehub:user"] == "alice"
    assert tags["lakehub:tier"] == ecs_world.tier
    assert tags["lakehub:hub"] == ecs_world.tier
    assert tags["lakehub:server"] == ""
    # Network: the configured private subnet and security group, no public IP.
    eni_id = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}["networkInterfaceId"]
    eni = ecs_world.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert eni["SubnetId"] in ecs_world.subnets
    assert [g["GroupId"] for g in eni["Groups"]] == [ecs_world.security_group]
    (request,) = spawner.requests
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ecs_world.subnets,
        "securityGroups": [ecs_world.security_group],
        "assignPublicIp": "DISABLED",
    }
    assert request["enableECSManagedTags"] is True and request["propagateTags"] == "TASK_DEFINITION"
    # ECS refuses overrides over 8192 characters: JupyterHub's own variables leave ample room.
    assert len(json.dumps(request["overrides"], separators=(",", ":"))) < 4096
    # The server in the task reaches the hub API through hub_connect_url and gets its token.
    (container,) = task["overrides"]["containerOverrides"]
    assert container["name"] == "notebook"
    assert "command" not in container  # the task definition's command runs
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["JUPYTERHUB_API_URL"] == "http://10.20.1.10:8081/hub/api"
    assert "JUPYTERHUB_API_TOKEN" not in env  # in the spawn's environment file (test_spawn_secrets.py)
    assert container["environmentFiles"][0]["type"] == "s3"
    assert env["JUPYTERHUB_USER"] == "alice"
    assert env["JUPYTERHUB_SERVICE_URL"].startswith("http://0.0.0.0:8888")
    assert env["LAKEHUB_TIER"] == ecs_world.tier and env["LAKEHUB_PROFILE"] == "medium"
    assert env["MEM_LIMIT"] == str(8192 * 1024 * 1024)
    # The URL the hub's proxy uses: the task's private IP and the server port.
    assert url == f"http://{fargate.task_private_ip(task)}:8888"
    assert spawner.get_state()["task_arn"] == spawner.task_arn


def test_the_hub_tasks_credentials_and_path_never_reach_a_user_task(make_spawner, ecs_world, monkeypatch):
    # The hub config keeps these for shared mode (env_keep); a user task gets its own from ECS.
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/hub-task-creds")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/hub")
    monkeypatch.setenv("TZ", "Europe/Paris")
    keep = ["PATH", "TZ", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "ECS_CONTAINER_METADATA_URI_V4"]
    spawner = make_spawner(user="tess", env_keep=keep, environment={"AWS_ACCESS_KEY_ID": "AKIAHUBKEY", "LAKEHUB_X": "1"})
    run(spawner.start())
    (container,) = describe(ecs_world, spawner.task_arn)["overrides"]["containerOverrides"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["TZ"] == "Europe/Paris" and env["LAKEHUB_X"] == "1"
    for name in ("PATH", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "ECS_CONTAINER_METADATA_URI_V4", "AWS_ACCESS_KEY_ID"):
        assert name not in env


def test_spot_capacity_setting_starts_on_fargate_spot(make_spawner, ecs_world, monkeypatch):
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "FARGATE_SPOT")
    spawner = make_spawner(user="spotty")
    run(spawner.start())
    assert describe(ecs_world, spawner.task_arn)["capacityProviderName"] == "FARGATE_SPOT"
    assert spawner.get_state()["capacity"] == "FARGATE_SPOT"


def test_progress_reports_each_step_until_the_task_runs(make_spawner, ecs_world):
    spawner = make_spawner(user="prog")
    url, messages, progress = run(start_with_progress(spawner))
    assert messages[0].startswith("Requesting a Small: 1 vCPU, 4 GB server on Fargate")
    assert any("submitted on FARGATE" in m for m in messages)
    assert any(m.startswith("Task RUNNING") for m in messages)
    assert messages[-1] == f"Server at {url}; waiting for it to answer"
    assert progress == sorted(progress)


def test_progress_follows_the_task_from_provisioning_to_running(make_spawner, ecs_world):
    spawner = make_spawner(ColdStartSpawner, user="cold")
    _, messages, _ = run(start_with_progress(spawner))
    statuses = [m.split(":")[0] for m in messages if m.startswith("Task ") and ":" in m]
    assert statuses == ["Task PROVISIONING", "Task RUNNING"]
    assert any(m.startswith("Task PROVISIONING: Fargate is finding capacity") for m in messages)


def test_poll_is_none_while_running_and_stop_stops_the_task(make_spawner, ecs_world):
    spawner = make_spawner(user="stopper")
    run(spawner.start())
    assert run(spawner.poll()) is None
    arn = spawner.task_arn
    run(spawner.stop())
    task = describe(ecs_world, arn)
    assert task["lastStatus"] == "STOPPED"
    assert "Stopped by JupyterHub" in task["stoppedReason"]
    assert run(spawner.poll()) == 0


def test_poll_reports_a_task_stopped_outside_the_hub(make_spawner, ecs_world):
    spawner = make_spawner(user="interrupted")
    run(spawner.start())
    ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=spawner.task_arn, reason="Spot interruption")
    assert run(spawner.poll()) == 0


def test_a_new_hub_takes_back_a_running_task_from_its_saved_state(make_spawner, ecs_world):
    before = make_spawner(user="carol")
    url = run(before.start())
    state = json.loads(json.dumps(before.get_state()))  # as stored in the hub's database

    after = make_spawner(user="carol")  # hub restarted: a fresh spawner object
    after.load_state(state)
    assert after.task_arn == before.task_arn
    assert run(after.poll()) is None
    found = fargate.list_tier_tasks(ecs_world.cluster, ecs_world.tier, ecs=ecs_world.ecs)
    (task,) = [t for t in found if fargate.task_tags(t)["lakehub:user"] == "carol"]
    assert after.server_url(task) == url
    run(after.stop())
    assert run(after.poll()) == 0


def test_reconcile_orphans_stops_only_tasks_no_user_owns(make_spawner, ecs_world, monkeypatch):
    kept = make_spawner(user="dave")
    orphan = make_spawner(user="erin")
    run(kept.start())
    run(orphan.start())
    other_hub = make_spawner(user="frank", hub_id="another-hub")
    run(other_hub.start())

    stopped = fargate.reconcile_orphans(known_task_arns={kept.task_arn}, ecs=ecs_world.ecs)

    assert stopped == [orphan.task_arn]
    assert describe(ecs_world, orphan.task_arn)["lastStatus"] == "STOPPED"
    assert "orphan" in describe(ecs_world, orphan.task_arn)["stoppedReason"]
    assert run(kept.poll()) is None
    assert run(other_hub.poll()) is None  # another hub's users are not this hub's to stop
    # Idempotent: a second pass finds nothing more to stop.
    assert fargate.reconcile_orphans(known_task_arns={kept.task_arn}, ecs=ecs_world.ecs) == []


def test_known_task_arns_come_from_the_hub_database(tmp_path):
    from jupyterhub import orm

    db_url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    db = orm.new_session_factory(db_url)()
    user = orm.User(name="gina")
    db.add(user)
    db.commit()
    db.add(orm.Spawner(user=user, name="", state={"task_arn": "arn:aws:ecs:us-east-1:1:task/c/abc"}))
    db.add(orm.Spawner(user=user, name="other", state={}))
    db.commit()
    db.close()
    assert fargate.known_task_arns_from_db(db_url) == {"arn:aws:ecs:us-east-1:1:task/c/abc"}
    assert fargate.known_task_arns_from_db(f"sqlite:///{tmp_path}/missing.sqlite") == set()


@pytest.mark.parametrize("cls", [NoSpotCapacitySpawner, SpotThrottledSpawner])
def test_spot_without_capacity_falls_back_to_on_demand_fargate(make_spawner, ecs_world, monkeypatch, cls):
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "FARGATE_SPOT")
    spawner = make_spawner(cls, user="henry")
    url, messages, _ = run(start_with_progress(spawner))
    assert [r["capacityProviderStrategy"][0]["capacityProvider"] for r in spawner.requests] == [
        "FARGATE_SPOT",
        "FARGATE",
    ]
    assert describe(ecs_world, spawner.task_arn)["capacityProviderName"] == "FARGATE"
    assert any("Spot has no capacity" in m and "on-demand" in m for m in messages)
    assert url.endswith(":8888")


def test_spot_without_capacity_and_no_fallback_tells_the_user(make_spawner, ecs_world, monkeypatch):
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "FARGATE_SPOT")
    monkeypatch.setenv("LAKEHUB_USER_SPOT_FALLBACK", "false")
    spawner = make_spawner(NoSpotCapacitySpawner, user="irene")
    with pytest.raises(FargateSpawnError) as err:
        run(spawner.start())
    assert "Fargate Spot has no spare capacity" in err.value.jupyterhub_message
    assert "Capacity is unavailable" in err.value.jupyterhub_message
    assert len(spawner.requests) == 1 and not spawner.task_arn


def test_a_task_that_stops_during_start_gives_the_user_its_reason(make_spawner, ecs_world):
    # Waiting for the local agent keeps start() waiting: no agent runs here, so the task stays
    # "starting" until the test stops it through the emulator, as ECS would after a failed pull.
    spawner = make_spawner(user="judy", wait_for_local_endpoint=True)
    reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"

    async def scenario():
        start = await submitted_start(spawner)
        assert spawner.task_arn, "start() never submitted a task"
        await asyncio.to_thread(ecs_world.ecs.stop_task, cluster=ecs_world.cluster, task=spawner.task_arn, reason=reason)
        with pytest.raises(FargateSpawnError) as err:
            await asyncio.wait_for(start, 20)
        return err.value

    error = run(scenario())
    assert error.jupyterhub_message.startswith("Your server's task stopped before it was ready")
    assert reason in error.jupyterhub_message


def test_start_timeout_stops_the_task_and_says_so(make_spawner, ecs_world, monkeypatch):
    monkeypatch.setenv("LAKEHUB_START_TIMEOUT", "1")
    spawner = make_spawner(user="kim", wait_for_local_endpoint=True)
    with pytest.raises(FargateSpawnError, match="did not start within 1 s"):
        run(spawner.start())
    assert describe(ecs_world, spawner.task_arn)["lastStatus"] == "STOPPED"


def test_the_local_agent_endpoint_tag_is_the_server_url(make_spawner, ecs_world):
    spawner = make_spawner(user="lee", wait_for_local_endpoint=True)

    async def scenario():
        start = await submitted_start(spawner)
        await asyncio.to_thread(
            ecs_world.ecs.tag_resource,
            resourceArn=spawner.task_arn,
            tags=[{"key": fargate.TAG_LOCAL_ENDPOINT, "value": "127.0.0.1:45678"}],
        )
        return await asyncio.wait_for(start, 20)

    assert run(scenario()) == "http://127.0.0.1:45678"


def test_on_aws_the_local_endpoint_tag_is_ignored(make_spawner, monkeypatch):
    monkeypatch.delenv("LAKEHUB_ECS_ENDPOINT_URL", raising=False)
    spawner = make_spawner(user="una")
    task = {
        "tags": [{"key": fargate.TAG_LOCAL_ENDPOINT, "value": "198.51.100.7:80"}],
        "attachments": [{"type": "ElasticNetworkInterface", "details": [{"name": "privateIPv4Address", "value": "10.0.5.9"}]}],
    }
    assert spawner.server_url(task) == "http://10.0.5.9:8888"


def test_defaults_come_from_the_hub_task_environment(ecs_world, monkeypatch):
    monkeypatch.setenv("LAKEHUB_USER_PROFILES", json.dumps([{"name": "tiny", "cpu": 512, "memory": 1024}]))
    monkeypatch.setenv("LAKEHUB_USER_SERVER_PORT", "9999")
    monkeypatch.setenv("LAKEHUB_HUB_ID", "hub-a")
    spawner = FargateSpawner()
    assert spawner.cluster == ecs_world.cluster
    assert spawner.subnets == ecs_world.subnets
    assert spawner.security_groups == [ecs_world.security_group]
    assert spawner.profiles == [{"name": "tiny", "display": "Tiny: 0.5 vCPU, 1 GB", "cpu": 512, "memory": 1024}]
    assert spawner.port == 9999 and spawner.ip == "0.0.0.0"
    assert spawner.start_timeout == 300
    assert spawner.describe_interval == 2.0 and spawner.poll_interval == 30  # JupyterHub's own
    assert spawner.hub_id == "hub-a"
    assert spawner.wait_for_local_endpoint is True  # emulator endpoint set
    assert spawner.profiles_form() == ""  # one size: no form


def test_the_form_offers_the_profiles_and_rejects_unknown_ones(make_spawner, ecs_world):
    spawner = make_spawner(user="mia")
    form = spawner.profiles_form()
    for profile in fargate.DEFAULT_PROFILES:
        assert f'value="{profile["name"]}"' in form and profile["display"] in form
    assert spawner.run_options_from_form({"profile": ["large"]}) == {"profile": "large"}
    spawner.user_options = {"profile": "huge"}
    with pytest.raises(FargateSpawnError, match="Unknown server size 'huge'"):
        spawner.selected_profile()


@pytest.mark.parametrize(
    "profiles, message",
    [
        ('[{"name": "x", "cpu": 1024, "memory": 1024}]', "Fargate has no 1024 MiB size with 1024 CPU units"),
        ('[{"name": "x", "cpu": 3000, "memory": 4096}]', "Fargate has no size of 3000 CPU units"),
        ("[not json", "not valid JSON"),
        ("[]", "at least one size"),
        ("", "at least one size"),
        ("small:1024", "'small:1024' is not name:cpu:memory"),
        ("small:1024:999", "profile 'small': Fargate has no 999 MiB size"),
    ],
)
def test_bad_profiles_are_refused_with_the_fix(profiles, message):
    with pytest.raises(fargate.ConfigurationError, match=message):
        fargate.parse_profiles(profiles)


def test_oversized_environment_is_refused_before_calling_ecs(make_spawner, ecs_world):
    spawner = make_spawner(RecordingSpawner, user="ola", environment={"LAKEHUB_BIG": "x" * 9000})
    with pytest.raises(FargateSpawnError, match="too large for ECS.*LAKEHUB_BIG"):
        run(spawner.start())
    assert not getattr(spawner, "requests", None)


def test_started_by_fits_ecs_rules():
    assert fargate.started_by("pii") == "lakehub-pii"
    assert fargate.started_by("data science.eu") == "lakehub-data-science-eu"
    assert len(fargate.started_by("x" * 80)) == 36


def test_profiles_in_the_tier_templates_compact_form(monkeypatch):
    # The tier template's parameter: name:cpu:memory items separated by commas.
    assert fargate.parse_profiles("small:1024:4096, large:4096:16384") == [
        {"name": "small", "display": "Small: 1 vCPU, 4 GB", "cpu": 1024, "memory": 4096},
        {"name": "large", "display": "Large: 4 vCPU, 16 GB", "cpu": 4096, "memory": 16384},
    ]
    monkeypatch.setenv("LAKEHUB_USER_PROFILES", "small:1024:4096,xlarge:8192:32768")
    assert [p["name"] for p in FargateSpawner().profiles] == ["small", "xlarge"]


def test_missing_settings_name_the_variables(make_spawner, monkeypatch):
    for key in (
        "LAKEHUB_CLUSTER",
        "LAKEHUB_USER_SUBNETS",
        "LAKEHUB_USER_SECURITY_GROUPS",
        "LAKEHUB_USER_TASK_DEFINITION",
        "LAKEHUB_TIER",
        "LAKEHUB_ECS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    spawner = make_spawner(user="nobody")
    with pytest.raises(fargate.ConfigurationError, match="LAKEHUB_CLUSTER, LAKEHUB_USER_TASK_DEFINITION"):
        run(spawner.start())


def test_settings_are_checked_at_hub_start_up(ecs_world, monkeypatch):
    FargateSpawner.validate_environment()  # the fixture's settings are complete
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "SPOTTY")
    with pytest.raises(fargate.ConfigurationError, match="'SPOTTY' is not FARGATE or FARGATE_SPOT"):
        FargateSpawner.validate_environment()
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "fargate_spot")
    monkeypatch.setenv("LAKEHUB_USER_PROFILES", '[{"name": "x", "cpu": 1024, "memory": 999}]')
    with pytest.raises(fargate.ConfigurationError, match="profile 'x': Fargate has no 999 MiB size"):
        FargateSpawner.validate_environment()
    monkeypatch.delenv("LAKEHUB_USER_PROFILES")
    monkeypatch.delenv("LAKEHUB_USER_SUBNETS")
    with pytest.raises(fargate.ConfigurationError, match="missing settings: LAKEHUB_USER_SUBNETS"):
        FargateSpawner.validate_environment()


def test_hub_connect_url_comes_from_the_task_metadata_endpoint(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(
                {"Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.17"]}]}]}
            ).encode()
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"http://127.0.0.1:{server.server_address[1]}/v4/abc")
        assert fargate.hub_connect_url_from_metadata(8081) == "http://10.0.3.17:8081"
        monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4")
        assert fargate.hub_connect_url_from_metadata(8081) is None
    finally:
        server.shutdown()
        server.server_close()


def test_configure_per_user_hub_sets_up_the_hub_and_stops_orphans(make_spawner, ecs_world, monkeypatch, tmp_path):
    from traitlets.config import Config

    orphan = make_spawner(user="xavi")
    run(orphan.start())
    monkeypatch.setenv("LAKEHUB_HUB_API_PORT", "8181")
    monkeypatch.setenv("LAKEHUB_START_TIMEOUT", "400")
    c = Config()
    c.JupyterHub.db_url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"  # first start: no database yet
    messages = []
    stopped = fargate.configure_per_user_hub(c, log=messages.append)
    assert stopped == [orphan.task_arn] and "stopped 1 orphan" in messages[0]
    assert c.JupyterHub.spawner_class is FargateSpawner
    assert (c.JupyterHub.hub_ip, c.JupyterHub.hub_port) == ("127.0.0.1", 8181)  # emulator: loopback
    assert c.JupyterHub.hub_connect_url == "http://127.0.0.1:8181"
    # a stopping hub stops users' tasks unless its database is persistent
    assert c.FargateSpawner.start_timeout == 400 and c.JupyterHub.cleanup_servers is True
    monkeypatch.setenv("LAKEHUB_KEEP_SERVERS_ON_HUB_STOP", "true")
    kept = Config()
    kept.JupyterHub.db_url = c.JupyterHub.db_url
    fargate.configure_per_user_hub(kept, log=messages.append)
    assert kept.JupyterHub.cleanup_servers is False
    # the tier template's way: the database replicated to S3 (lakehub_hub.hub_state)
    monkeypatch.delenv("LAKEHUB_KEEP_SERVERS_ON_HUB_STOP")
    monkeypatch.setenv("LAKEHUB_HUB_STATE_BUCKET", ecs_world.bucket)
    replicated = Config()
    replicated.JupyterHub.db_url = c.JupyterHub.db_url
    fargate.configure_per_user_hub(replicated, log=messages.append)
    assert replicated.JupyterHub.cleanup_servers is False
    monkeypatch.delenv("LAKEHUB_HUB_STATE_BUCKET")

    monkeypatch.delenv("LAKEHUB_ECS_ENDPOINT_URL")
    monkeypatch.setenv("LAKEHUB_HUB_CONNECT_URL", "http://10.0.1.5:8181")
    monkeypatch.delenv("LAKEHUB_CLUSTER")
    failures = []
    assert fargate.configure_per_user_hub(Config(), fail=failures.append) == []
    assert failures == [
        "FargateSpawner is missing settings: LAKEHUB_CLUSTER (set them on the hub task, or the matching c.FargateSpawner traits)"
    ]


def test_a_spot_interruption_is_kept_for_the_user_across_clear_state_and_a_hub_restart(make_spawner, ecs_world):
    """poll() finds the task stopped by Fargate Spot (moto keeps ECS's reason, not the stop code):
    the reason outlives clear_state() and the hub's database (get_state/load_state), and the next
    start clears it. A stop the hub asked for leaves nothing to explain."""
    spawner = make_spawner(user="sami")
    run(spawner.start())
    ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=spawner.task_arn, reason="Your Spot Task was interrupted.")
    assert run(spawner.poll()) is not None
    spawner.clear_state()  # what JupyterHub does with a server that stopped by itself
    state = spawner.get_state()
    assert "task_arn" not in state
    assert "AWS reclaimed the Fargate Spot capacity" in state["last_stop"] and state["last_stop_at"].endswith("Z")
    restored = make_spawner(user="sami")  # the next hub, from its database
    restored.load_state(state)
    assert restored.last_stop == state["last_stop"]
    run(restored.start())
    assert restored.last_stop == "" and "last_stop" not in restored.get_state()
    run(restored.stop())
    assert "last_stop" not in restored.get_state()


def _counted(name: str, labels: dict | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_the_spawner_counts_capacity_errors_spot_interruptions_and_its_tasks_for_the_metrics(
    make_spawner, ecs_world, monkeypatch
):
    """What lakehub_hub.metrics sends as CapacityErrors, SpotInterruptions and UserTasks: the
    hub's prometheus_client series (issue 18)."""
    errors = _counted("lakehub_capacity_errors_total")
    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "FARGATE_SPOT")
    spawner = make_spawner(NoSpotCapacitySpawner, user="metrics-cap")
    run(spawner.start())
    assert _counted("lakehub_capacity_errors_total") == errors + 1
    assert _counted("lakehub_user_servers", {"size": spawner.user_server_size(), "capacity": "FARGATE"}) >= 1
    run(spawner.stop())

    monkeypatch.setenv("LAKEHUB_USER_CAPACITY", "FARGATE")
    spawner = make_spawner(user="metrics-spot")
    run(spawner.start())
    size = spawner.user_server_size()
    running = _counted("lakehub_user_servers", {"size": size, "capacity": "FARGATE"})
    interruptions = _counted("lakehub_spot_interruptions_total")
    ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=spawner.task_arn, reason="Your Spot Task was interrupted.")
    assert run(spawner.poll()) is not None
    assert run(spawner.poll()) is not None  # polled again: still one interruption
    assert _counted("lakehub_spot_interruptions_total") == interruptions + 1
    spawner.clear_state()
    assert _counted("lakehub_user_servers", {"size": size, "capacity": "FARGATE"}) == running - 1
