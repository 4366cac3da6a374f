"""The hub's spawners share their DescribeTasks calls (lakehub_hub.ecs_poller), against moto's
ECS in server mode: 250 running tasks polled by 250 spawners at once take at most 3 calls, each
spawner still gets its own task's status, and a batch the hub role may not describe falls back to
one call per task. Calls are counted on the spawners' own boto3 client (a botocore event hook)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from lakehub_hub import fargate

pytestmark = pytest.mark.e2e  # starts the emulator

TASKS = 250


def run_tasks(world, count: int) -> list[str]:
    """`count` running tasks of the tier (RunTask takes at most 10 a call); moto runs nothing."""
    arns: list[str] = []
    while len(arns) < count:
        response = world.ecs.run_task(
            cluster=world.cluster,
            taskDefinition=world.family,
            count=min(10, count - len(arns)),
            launchType="FARGATE",
            startedBy=fargate.started_by(world.tier),
            networkConfiguration={"awsvpcConfiguration": {"subnets": world.subnets, "securityGroups": [world.security_group]}},
            tags=[{"key": fargate.TAG_TIER, "value": world.tier}],
        )
        arns += [t["taskArn"] for t in response["tasks"]]
    return arns


def spawners_for(make_spawner, arns: list[str], **traits) -> list[fargate.FargateSpawner]:
    spawners = []
    for i, arn in enumerate(arns):
        spawner = make_spawner(user=f"user{i}", **traits)
        spawner.load_state({"task_arn": arn})  # as a hub loads it from its database
        spawners.append(spawner)
    return spawners


@pytest.fixture
def describe_calls(ecs_world):
    """Every DescribeTasks the spawners send (their cached client), with its task count."""
    client = fargate.ecs_client(None, ecs_world.endpoint_url)
    calls: list[int] = []

    def count(params, **_):
        calls.append(len(params.get("tasks") or []))

    client.meta.events.register("before-parameter-build.ecs.DescribeTasks", count)
    yield calls
    client.meta.events.unregister("before-parameter-build.ecs.DescribeTasks", count)


def test_250_spawners_polling_at_once_share_at_most_3_describe_calls(make_spawner, ecs_world, describe_calls):
    arns = run_tasks(ecs_world, TASKS)
    spawners = spawners_for(make_spawner, arns, poll_interval=1)
    stopped = arns[117]

    async def scenario():
        first = await asyncio.gather(*(s.poll() for s in spawners))
        calls_first = list(describe_calls)
        await asyncio.to_thread(ecs_world.ecs.stop_task, cluster=ecs_world.cluster, task=stopped, reason="Spot interruption")
        await asyncio.sleep(1.1)  # older than the poll interval: the next round asks ECS again
        del describe_calls[:]
        second = await asyncio.gather(*(s.poll() for s in spawners))
        return first, calls_first, second, list(describe_calls)

    first, calls_first, second, calls_second = asyncio.run(scenario())
    assert first == [None] * TASKS
    assert len(calls_first) <= 3 and max(calls_first) <= 100, calls_first
    assert sum(calls_first) == TASKS
    assert len(calls_second) <= 3, calls_second
    assert second[117] == 0  # the stopped task, for its own spawner only
    assert second[:117] + second[118:] == [None] * (TASKS - 1)


def test_polls_within_one_poll_interval_reuse_the_last_answer(make_spawner, ecs_world, describe_calls):
    arns = run_tasks(ecs_world, 30)
    spawners = spawners_for(make_spawner, arns, poll_interval=30)

    async def scenario():
        await asyncio.gather(*(s.poll() for s in spawners[:10]))  # the others are not known yet
        await asyncio.gather(*(s.poll() for s in spawners))
        await asyncio.gather(*(s.poll() for s in spawners))  # all answered less than 30 s ago
        return list(describe_calls)

    assert len(asyncio.run(scenario())) == 2


def test_start_and_stop_loops_get_an_answer_asked_after_they_asked(make_spawner, ecs_world, describe_calls):
    spawner = make_spawner(user="fresh")
    asyncio.run(spawner.start())
    arn = spawner.task_arn

    async def scenario():
        assert await spawner.poll() is None
        await asyncio.to_thread(ecs_world.ecs.stop_task, cluster=ecs_world.cluster, task=arn, reason="test")
        return await spawner._describe(arn)  # max_age 0: not the poll's answer

    assert asyncio.run(scenario())["lastStatus"] == "STOPPED"


def test_a_refused_batch_is_described_task_by_task_and_only_the_refused_task_errs(make_spawner, ecs_world, describe_calls):
    """The hub role may describe only its tier's tasks: ECS refuses a whole DescribeTasks that
    names another tier's task (injected here at the client, as ECS answers; moto has no such
    condition). Every other spawner still gets its task; the foreign one gets its own refusal,
    as its single call did before batching, and is described alone from then on."""
    arns = run_tasks(ecs_world, 12)
    foreign = arns[5]
    client = fargate.ecs_client(None, ecs_world.endpoint_url)

    def refuse_foreign(params, **_):  # before-call: params is the request, its body the JSON sent
        if foreign in json.loads(params.get("body") or b"{}").get("tasks", []):
            return (
                SimpleNamespace(status_code=400, headers={}),
                {
                    "Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecs:DescribeTasks"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
            )
        return None

    client.meta.events.register_first("before-call.ecs.DescribeTasks", refuse_foreign)
    try:
        spawners = spawners_for(make_spawner, arns, poll_interval=1)

        async def rounds():
            first = await asyncio.gather(*(s._describe(a) for s, a in zip(spawners, arns)), return_exceptions=True)
            calls_first = len(describe_calls)
            del describe_calls[:]
            second = await asyncio.gather(*(s._describe(a) for s, a in zip(spawners, arns)), return_exceptions=True)
            calls_second = list(describe_calls)
            del describe_calls[:]
            polls = await asyncio.gather(*(s.poll() for s in spawners))
            return first, calls_first, second, calls_second, polls, list(describe_calls)

        first, calls_first, second, calls_second, polls, calls_polls = asyncio.run(rounds())
    finally:
        client.meta.events.unregister("before-call.ecs.DescribeTasks", refuse_foreign)
    for results in (first, second):
        assert "AccessDenied" in str(results[5])
        assert [r["taskArn"] for i, r in enumerate(results) if i != 5] == arns[:5] + arns[6:]
    assert calls_first == 1 + len(arns)  # the refused batch, then one call per task
    assert calls_second == [len(arns) - 1, 1]  # the other 11 in one call, the refused one alone
    # Polls within the interval reuse those answers; a refusal is not kept, so only the refused
    # task is asked again, and its spawner assumes it runs, as before batching.
    assert calls_polls == [1]
    assert polls == [None] * len(arns)
