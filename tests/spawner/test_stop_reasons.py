"""Why a user's server stopped (issue 18, lakehub_hub.stop_reasons): the classification of ECS's
answer, the spawner's state, and in a real JupyterHub the culler's stop (known from the request's
owner), the drain of servers on an old image, and the user's own stop that clears the message."""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3

import pytest
import requests
from prometheus_client import REGISTRY

import test_hub_e2e  # tests/spawner is on sys.path (prepend import mode)
from test_hub_e2e import Hub

from lakehub.local.agent import LocalAgent
from waiting import wait_for
from lakehub_hub import stop_reasons
from lakehub_hub.stop_reasons import OOM_REASON, classify_task, explain

hub_env = test_hub_e2e.hub_env  # the fixture: a hub's environment on the emulator

UTC = datetime.UTC
HUB_START = datetime.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def run(coro):
    return asyncio.run(coro)


def stopped_task(**fields) -> dict:
    """A DescribeTasks task as ECS reports a stopped one (its essential container: notebook)."""
    container = fields.pop("container", {})
    task = {
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "stoppedAt": HUB_START + datetime.timedelta(hours=1),
        "containers": [dict({"name": "notebook", "lastStatus": "STOPPED", "exitCode": 1}, **container)],
    }
    task.update(fields)
    return task


def stops_counted(reason: str) -> float:
    return REGISTRY.get_sample_value("lakehub_servers_stopped_total", {"reason": reason}) or 0.0


# ---- classification ---------------------------------------------------------------------------


def test_an_out_of_memory_kill_is_told_as_such_with_a_bigger_size_to_pick():
    task = stopped_task(container={"exitCode": 137, "reason": OOM_REASON})
    assert classify_task(task, "notebook", HUB_START) == ("oom", OOM_REASON)
    sentence = explain("oom", size="Small: 1 vCPU, 4 GB")
    assert "ran out of memory" in sentence and "Small: 1 vCPU, 4 GB" in sentence and "bigger size" in sentence


def test_a_spot_interruption_by_stop_code_or_reason():
    assert classify_task(stopped_task(stopCode="SpotInterruption"), "notebook", HUB_START)[0] == "spot"
    assert classify_task(stopped_task(stoppedReason="Your Spot Task was interrupted."), "notebook", HUB_START)[0] == "spot"


def test_a_server_that_ended_itself_while_no_hub_ran_is_the_scheduled_stop():
    """Exit code 0 (the server's own idle shutdown) before this hub process started: the hub was
    away (the off-hours scale to 0). The same exit while the hub ran, or a crash, is not."""
    before = HUB_START - datetime.timedelta(hours=8)
    clean = {"exitCode": 0}
    assert classify_task(stopped_task(stoppedAt=before, container=clean), "notebook", HUB_START)[0] == "scheduled"
    assert classify_task(stopped_task(container=clean), "notebook", HUB_START)[0] == "other"
    crashed = classify_task(stopped_task(stoppedAt=before, container={"exitCode": 2}), "notebook", HUB_START)
    assert crashed == ("other", "Essential container in task exited; exit code 2")
    assert "Essential container in task exited; exit code 2" in explain(crashed[0], detail=crashed[1])


def test_each_reason_has_one_sentence_that_says_what_was_kept_and_what_to_do():
    for reason in ("cull", "oom", "spot", "scheduled", "image-update", "other"):
        sentence = explain(reason)
        assert "kept" in sentence and "start" in sentence.lower(), (reason, sentence)
    assert "60 minutes without activity" in explain("cull")


# ---- the spawner's state ----------------------------------------------------------------------


def test_a_task_ecs_no_longer_knows_after_the_hubs_start_was_the_scheduled_stop(make_spawner, ecs_world):
    """The hub comes back in the morning: ECS forgot the task that ended at night (it keeps stopped
    tasks about an hour), so the spawner taken back from the database says so, once."""
    spawner = make_spawner(user="mona")
    spawner.load_state({"task_arn": f"arn:aws:ecs:us-east-1:123456789012:task/{ecs_world.cluster}/0123456789abcdef"})
    before = stops_counted("scheduled")
    assert run(spawner.poll()) == 0
    assert run(spawner.poll()) == 0
    assert spawner.last_stop_reason == "scheduled" and "while the hub was away" in spawner.last_stop
    assert stops_counted("scheduled") == before + 1
    spawner.clear_state()
    state = spawner.get_state()
    assert state["last_stop_reason"] == "scheduled"
    restored = make_spawner(user="mona")
    restored.load_state(state)
    assert restored.last_stop_reason == "scheduled" and restored.last_stop == spawner.last_stop


def test_a_spawners_own_start_never_says_scheduled_when_its_task_disappears(make_spawner, ecs_world):
    spawner = make_spawner(user="nils")
    run(spawner.start())
    spawner.task_arn = spawner.task_arn[:-4] + "ffff"  # a task ECS does not know
    assert run(spawner.poll()) == 0
    assert spawner.last_stop == "" and "last_stop" not in spawner.get_state()
    run(spawner.stop())


def test_a_stop_the_culler_asked_for_is_kept_and_the_users_own_clears_it(make_spawner, ecs_world):
    spawner = make_spawner(user="olga")
    run(spawner.start())
    before = stops_counted("cull")
    stop_reasons.mark_stop(spawner, "cull")
    run(spawner.stop())
    assert spawner.last_stop_reason == "cull" and "without activity" in spawner.last_stop
    assert stops_counted("cull") == before + 1
    run(spawner.start())
    assert spawner.last_stop == ""  # a new start clears it
    users = stops_counted("user")
    run(spawner.stop())  # the user's own stop: nothing to explain
    assert spawner.last_stop == "" and "last_stop_reason" not in spawner.get_state()
    assert stops_counted("user") == users + 1


# ---- a real hub: the culler's stop, the drain --------------------------------------------------


def start_hub(ecs_world, env, workdir, **extra):
    agent = LocalAgent(
        ecs_world.endpoint_url, clusters=[ecs_world.cluster], work_dir=workdir / "tasks", poll_interval=0.2
    ).start()
    hub = Hub(dict(env, **extra), workdir)
    try:
        hub.start()
    except BaseException:
        agent.stop()
        raise
    return hub, agent


def spawner_state(hub, user: str) -> dict:
    """The user's default server's state as the hub keeps it (its database)."""
    db = hub.workdir / "jupyterhub.sqlite"
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
            "WHERE users.name = ? AND spawners.name = ''",
            (user,),
        ).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def wait_until(check, timeout, what, hub):
    return wait_for(check, timeout, 0.5, what, detail=lambda: hub.log()[-3000:])


@pytest.mark.e2e
def test_in_a_hub_the_idle_cullers_stop_is_recorded_as_cull(ecs_world, hub_env, tmp_path):
    """The idle-culler service's DELETE is recorded as cull: known from the request's owner (the
    culler's token), not from timestamps. The sentence names the tier's idle timeout."""
    hub, agent = start_hub(ecs_world, hub_env, tmp_path, LAKEHUB_E2E_CULL_TIMEOUT="4", LAKEHUB_IDLE_TIMEOUT="240")
    try:
        assert hub.call("POST", "/users", json={"usernames": ["cora"]}).status_code == 201
        assert hub.call("POST", "/users/cora/server", json={}).status_code in (201, 202)
        hub.wait_ready("cora")
        wait_until(lambda: not hub.call("GET", "/users/cora").json()["servers"], 60, "cora culled", hub)
        state = wait_until(
            lambda: (s := spawner_state(hub, "cora")).get("last_stop_reason") and s, 20, "cora's stop recorded", hub
        )
        assert state["last_stop_reason"] == "cull", state
        assert "4 minutes without activity" in state["last_stop"]
    finally:
        hub.stop()
        agent.stop()


@pytest.mark.e2e
def test_in_a_hub_an_admins_stop_says_nothing_and_the_drain_stops_only_servers_on_an_old_image(ecs_world, hub_env, tmp_path):
    """An admin's (the e2e service's) DELETE leaves nothing to explain. POST /hub/api/lakehub/drain
    (admin:servers) stops the servers whose task runs another image than the tier's task definition
    now names, and records image-update."""
    hub, agent = start_hub(ecs_world, hub_env, tmp_path)
    try:
        assert hub.call("POST", "/users", json={"usernames": ["dora", "emil"]}).status_code == 201
        for user in ("dora", "emil"):
            assert hub.call("POST", f"/users/{user}/server", json={}).status_code in (201, 202)
        hub.wait_ready("dora")
        hub.wait_ready("emil")
        assert hub.call("DELETE", "/users/dora/server").status_code in (202, 204)
        wait_until(lambda: not hub.call("GET", "/users/dora").json()["servers"], 30, "dora stopped", hub)
        assert "last_stop_reason" not in spawner_state(hub, "dora")

        assert requests.post(f"{hub.api}/lakehub/drain", timeout=30).status_code == 403
        answer = hub.call("POST", "/lakehub/drain")
        assert answer.status_code == 200 and answer.json() == {"stopped": [], "current": 1, "unknown": 0}, answer.text
        td = ecs_world.ecs.describe_task_definition(taskDefinition=ecs_world.family)["taskDefinition"]
        container = dict(td["containerDefinitions"][0])
        container["image"] = container["image"].replace(":latest", ":v2")
        ecs_world.register_definition(ecs_world.family, [container])
        answer = hub.call("POST", "/lakehub/drain")
        assert answer.status_code == 200 and answer.json()["stopped"] == ["emil/"], answer.text
        assert not hub.call("GET", "/users/emil").json()["servers"]
        state = spawner_state(hub, "emil")
        assert state["last_stop_reason"] == "image-update" and "updated software image" in state["last_stop"], state
    finally:
        hub.stop()
        agent.stop()


def test_the_drain_api_is_added_beside_the_handlers_other_parts_of_the_hub_config_append():
    """The credentials endpoint (lakehub_hub.credentials) appends its handler to traitlets' lazy
    value; the drain must add to it, not replace or iterate it (the product's hub died at start)."""
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.extra_handlers.append(("/lakehub/aws-credentials", object))
    stop_reasons.configure_hub(c)
    c.JupyterHub.extra_handlers.append(("/later", object))
    paths = [path for path, _ in c.JupyterHub.extra_handlers.get_value([])]
    assert paths == ["/lakehub/aws-credentials", stop_reasons.DRAIN_PATH, "/later"]
