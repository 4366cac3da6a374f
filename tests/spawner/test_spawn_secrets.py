"""Issue 14: a user server's API token never travels in RunTask's overrides. Whoever may call
ecs:DescribeTasks on the task (or read CloudTrail's RunTask records) sees the overrides; the
token goes into a per-spawn environment file in S3 that ECS reads with the execution role, and
the hub deletes that file (its one version) when the server stops.

Real spawns through the emulator (moto in server mode); the object store is the emulator's S3.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from lakehub_hub import fargate

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(coro)


def task_record(ecs_world, arn):
    return ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[arn], include=["TAGS"])["tasks"][0]


def env_file_of(task) -> tuple[str, str]:
    (container,) = task["overrides"]["containerOverrides"]
    (env_file,) = container["environmentFiles"]
    assert env_file["type"] == "s3"
    bucket, key = env_file["value"].split(":::", 1)[1].split("/", 1)
    return bucket, key


def test_describe_tasks_shows_no_token_of_a_spawned_server(make_spawner, ecs_world):
    spawner = make_spawner(user="amy")
    run(spawner.start())
    task = task_record(ecs_world, spawner.task_arn)
    # Nothing DescribeTasks returns holds the token: not the overrides, not the tags.
    assert "test-token-amy" not in json.dumps(task, default=str)
    (container,) = task["overrides"]["containerOverrides"]
    names = {e["name"] for e in container["environment"]}
    assert not {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"} & names
    assert "JUPYTERHUB_USER" in names  # the plain settings still travel as overrides


def test_the_token_reaches_the_task_through_its_environment_file(make_spawner, ecs_world):
    spawner = make_spawner(user="ben", environment={"LAKEHUB_SOME_SECRET": "s3cr3t", "LAKEHUB_PLAIN": "1"})
    run(spawner.start())
    task = task_record(ecs_world, spawner.task_arn)
    bucket, key = env_file_of(task)
    assert bucket == ecs_world.bucket
    assert key.startswith(f"spawn-env/{ecs_world.tier}/") and key.endswith(".env")
    assert "ben" not in key  # the key names no user
    obj = ecs_world.s3.get_object(Bucket=bucket, Key=key)
    assert obj["ServerSideEncryption"] == "AES256"
    lines = obj["Body"].read().decode().splitlines()
    assert "JUPYTERHUB_API_TOKEN=test-token-ben" in lines and "JPY_API_TOKEN=test-token-ben" in lines
    assert "LAKEHUB_SOME_SECRET=s3cr3t" in lines  # named like a secret: the file, not the overrides
    assert not any(line.startswith("LAKEHUB_PLAIN=") for line in lines)
    assert spawner.get_state()["env_file_key"] == key


def test_stopping_the_server_deletes_every_version_of_its_environment_file(make_spawner, ecs_world):
    spawner = make_spawner(user="cat")
    run(spawner.start())
    _, key = env_file_of(task_record(ecs_world, spawner.task_arn))
    run(spawner.stop())
    listed = ecs_world.s3.list_object_versions(Bucket=ecs_world.bucket, Prefix=key)
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")
    assert "env_file_key" not in spawner.get_state()


def test_a_failed_start_deletes_its_environment_file(make_spawner, ecs_world):
    spawner = make_spawner(user="dan", task_definition="lakehub-no-such-family")
    with pytest.raises(fargate.FargateSpawnError):
        run(spawner.start())
    listed = ecs_world.s3.list_object_versions(Bucket=ecs_world.bucket, Prefix=f"spawn-env/{ecs_world.tier}/")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")


def test_a_secret_value_with_a_line_break_is_refused_in_one_line():
    with pytest.raises(fargate.FargateSpawnError, match="LAKEHUB_X_TOKEN cannot be passed"):
        fargate.env_file_text({"LAKEHUB_X_TOKEN": "a\nEVIL=1"})


def test_the_spawner_needs_the_bucket_for_environment_files(make_spawner, ecs_world, monkeypatch):
    monkeypatch.delenv("LAKEHUB_NOTEBOOK_BUCKET")
    with pytest.raises(fargate.ConfigurationError, match="LAKEHUB_NOTEBOOK_BUCKET"):
        make_spawner(user="eve").check_settings()


def test_the_spawner_and_the_tier_template_agree_on_the_prefix():
    from lakehub.stacks import names

    assert fargate.SPAWN_ENV_ROOT == names.SPAWN_ENV_ROOT
