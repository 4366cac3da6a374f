"""Per-user homes (issue 15): the hub gives each user an EFS access point and a task definition
of their own that mounts it at /home/<unix name>; the local agent maps the volume to a folder
that outlives the task. Against the emulator (moto's EFS and ECS) and the real local agent; a
plain `python -m http.server` stands in for the user server."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from waiting import http_ok, wait_for
from lakehub_hub import fargate
from lakehub_hub.accounts import stable_uid, unix_username

from lakehub.local.emulator import port_in_use
from lakehub.local.agent import LocalAgent


pytestmark = pytest.mark.e2e

# The stand-in server: counts its starts in its home, records its environment there, and serves
# its working directory on its port.
HOME_CMD = [
    "sh",
    "-c",
    'echo start >> "$HOME/starts.txt" && env > "$HOME/env.txt" && exec python -m http.server --bind 127.0.0.1 "$PORT"',
]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def homes(ecs_world, aws_client, monkeypatch):
    """The platform's homes file system, given to the hub as the tier template does."""
    efs = aws_client("efs")
    fs = efs.create_file_system(CreationToken=f"homes-{ecs_world.tier}", Encrypted=True)["FileSystemId"]
    monkeypatch.setenv("LAKEHUB_HOMES_FILE_SYSTEM_ID", fs)
    return SimpleNamespace(efs=efs, fs=fs)


def access_points(homes):
    return homes.efs.describe_access_points(FileSystemId=homes.fs)["AccessPoints"]


def definition_of(ecs_world, spawner):
    task = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[spawner.task_arn])["tasks"][0]
    return ecs_world.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"], include=["TAGS"])


def test_the_first_spawn_gives_the_user_an_access_point_and_a_definition_that_mount_their_home(make_spawner, ecs_world, homes):
    spawner = make_spawner(user="alice@example.org")
    run(spawner.start())

    unix = unix_username("alice@example.org")
    uid = stable_uid(unix)
    (ap,) = access_points(homes)
    assert ap["RootDirectory"] == {
        "Path": f"/tiers/{ecs_world.tier}/{unix}",
        "CreationInfo": {"OwnerUid": uid, "OwnerGid": uid, "Permissions": "0700"},
    }
    assert ap["PosixUser"] == {"Uid": uid, "Gid": uid}
    tags = {t["Key"]: t["Value"] for t in ap["Tags"]}
    assert tags["lakehub:tier"] == ecs_world.tier and tags["lakehub:user"] == "alice@example.org"

    described = definition_of(ecs_world, spawner)
    td = described["taskDefinition"]
    assert td["family"] == f"{ecs_world.family}-{unix}"
    # Same roles as the tier's definition: nothing but the home changes.
    assert (td["taskRoleArn"], td["executionRoleArn"]) == (ecs_world.tier_role, ecs_world.exec_role)
    (volume,) = td["volumes"]
    assert volume["name"] == "home"
    efs_config = dict(volume["efsVolumeConfiguration"])
    assert efs_config.pop("rootDirectory", "/") == "/"  # the access point is the root (ECS requires "/")
    assert efs_config == {
        "fileSystemId": homes.fs,
        "transitEncryption": "ENABLED",
        "authorizationConfig": {"accessPointId": ap["AccessPointId"], "iam": "ENABLED"},
    }
    (container,) = td["containerDefinitions"]
    assert container["mountPoints"] == [{"sourceVolume": "home", "containerPath": f"/home/{unix}", "readOnly": False}]
    assert container["user"] == f"{uid}:{uid}"
    assert container["workingDirectory"] == f"/home/{unix}"
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["HOME"] == env["LAKEHUB_HOME"] == f"/home/{unix}"
    tags = {t["key"]: t["value"] for t in described["tags"]}
    assert tags["lakehub:component"] == "user-server"  # the tier definition's own tags stay
    assert tags["lakehub:tier"] == ecs_world.tier and len(tags["lakehub:definition-digest"]) == 64
    run(spawner.stop())


def test_later_spawns_reuse_the_access_point_and_the_registered_revision(make_spawner, ecs_world, homes):
    first = make_spawner(user="bruno")
    run(first.start())
    arn = definition_of(ecs_world, first)["taskDefinition"]["taskDefinitionArn"]
    run(first.stop())

    again = make_spawner(user="bruno")  # a new spawner, as after a hub restart
    run(again.start())
    assert definition_of(ecs_world, again)["taskDefinition"]["taskDefinitionArn"] == arn
    assert len(access_points(homes)) == 1
    run(again.stop())


def test_a_changed_tier_definition_gives_the_user_a_new_revision(make_spawner, ecs_world, homes):
    spawner = make_spawner(user="carla")
    run(spawner.start())
    before = definition_of(ecs_world, spawner)["taskDefinition"]
    assert before["family"] == f"{ecs_world.family}-{unix_username('carla')}"
    run(spawner.stop())
    # The platform publishes a new image: a new revision of the tier's definition.
    base = ecs_world.ecs.describe_task_definition(taskDefinition=ecs_world.family)["taskDefinition"]
    container = dict(base["containerDefinitions"][0], image=base["containerDefinitions"][0]["image"] + "-v2")
    ecs_world.register_definition(ecs_world.family, [container])
    run(spawner.start())
    after = definition_of(ecs_world, spawner)["taskDefinition"]
    assert after["family"] == before["family"] and after["revision"] == before["revision"] + 1
    assert after["containerDefinitions"][0]["image"].endswith("-v2")
    run(spawner.stop())


def test_an_access_point_with_another_uid_is_refused_with_the_fix(make_spawner, ecs_world, homes):
    unix = unix_username("dora")
    homes.efs.create_access_point(
        ClientToken="tampered",
        FileSystemId=homes.fs,
        PosixUser={"Uid": 0, "Gid": 0},
        RootDirectory={"Path": f"/tiers/{ecs_world.tier}/{unix}"},
        Tags=[{"Key": "lakehub:tier", "Value": ecs_world.tier}],
    )
    spawner = make_spawner(user="dora")
    with pytest.raises(fargate.FargateSpawnError) as err:
        run(spawner.start())
    assert "does not carry your user id" in err.value.jupyterhub_message
    assert not spawner.task_arn  # nothing ran as root


def test_without_a_homes_file_system_the_tier_definition_runs(make_spawner, ecs_world, monkeypatch):
    monkeypatch.delenv("LAKEHUB_HOMES_FILE_SYSTEM_ID", raising=False)
    spawner = make_spawner(user="emil")
    run(spawner.start())
    assert definition_of(ecs_world, spawner)["taskDefinition"]["taskDefinitionArn"] == ecs_world.task_definition_arn
    run(spawner.stop())


# ---- with the local agent ------------------------------------------------------------------------


@pytest.fixture
def agent(ecs_world, tmp_path):
    agent = LocalAgent(
        ecs_world.endpoint_url,
        clusters=[ecs_world.cluster],
        work_dir=tmp_path / "agent",
        efs_dir=tmp_path / "efs",
        poll_interval=0.1,
    )
    agent.start()
    yield agent
    agent.stop()


def start_server(make_spawner, user):
    spawner = make_spawner(user=user, wait_for_local_endpoint=True, cmd=HOME_CMD)
    url = run(spawner.start())
    wait_for(lambda: http_ok(url + "/env.txt"))
    return spawner, url


def stop_server(spawner, url, agent):
    run(spawner.stop())
    port = int(url.rsplit(":", 1)[1])
    wait_for(lambda: not port_in_use(port) and spawner.task_arn not in agent.tasks)


def home_folder(tmp_path, homes, ecs_world, user) -> Path:
    return tmp_path / "efs" / homes.fs / "tiers" / ecs_world.tier / unix_username(user)


def env_of(home: Path) -> dict:
    return dict(line.split("=", 1) for line in (home / "env.txt").read_text().splitlines() if "=" in line)


def test_a_users_home_survives_a_server_stop_and_start(make_spawner, ecs_world, homes, agent, tmp_path):
    spawner, url = start_server(make_spawner, "hana")
    home = home_folder(tmp_path, homes, ecs_world, "hana")
    # The server started in its home (served from there) and wrote there.
    assert http_ok(url + "/starts.txt")
    (home / "analysis.csv").write_text("x\n1\n")  # as if uploaded
    env = env_of(home)
    assert env["HOME"] == env["LAKEHUB_HOME"] == str(home)
    stop_server(spawner, url, agent)

    again, url = start_server(make_spawner, "hana")  # a new task
    assert (home / "starts.txt").read_text() == "start\nstart\n"
    assert (home / "analysis.csv").read_text() == "x\n1\n"
    assert http_ok(url + "/analysis.csv")
    stop_server(again, url, agent)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs servers as their users' accounts only as root")
def test_two_users_get_their_own_folders_owned_by_their_uid_with_mode_0700(make_spawner, ecs_world, homes, agent, tmp_path):
    assert agent.isolate
    servers = [start_server(make_spawner, user) for user in ("ines", "jonas")]
    homes_seen = set()
    for user in ("ines", "jonas"):
        home = home_folder(tmp_path, homes, ecs_world, user)
        uid = stable_uid(unix_username(user))
        st = home.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, uid, 0o700)
        # The server ran as that uid: what it wrote is the user's.
        assert (home / "env.txt").stat().st_uid == uid
        assert env_of(home)["USER"] == unix_username(user)
        homes_seen.add(home)
    assert len(homes_seen) == 2
    # The folders above the homes let users pass, not list.
    tier_folder = home_folder(tmp_path, homes, ecs_world, "ines").parent
    assert stat.S_IMODE(tier_folder.stat().st_mode) == 0o711 and tier_folder.stat().st_uid == 0
    for spawner, url in servers:
        stop_server(spawner, url, agent)
