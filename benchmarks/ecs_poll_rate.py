"""DescribeTasks call rate of one per-user hub with N running servers, before and after the
shared poller (lakehub_hub.ecs_poller), against the emulator.

Starts moto in server mode, runs N tasks of a Fargate task definition there (RunTask; moto
runs nothing and keeps them RUNNING), gives each to its own FargateSpawner (load_state, as a
hub restores its servers) and lets JupyterHub's own polling run: every spawner's
`Spawner.start_polling()` (a tornado PeriodicCallback with JupyterHub's jitter) started at a
random moment of the first interval, as servers started at different times, all in one event
loop as in the hub. Time is compressed: poll_interval I seconds (default 10) instead of
JupyterHub's 30, for D seconds (default 60); the spawner's coalescing window is compressed by
the same factor. DescribeTasks requests are counted on the spawners' boto3 client (a botocore
event hook), after the first interval (all spawners polling), and scaled to the real 30 s.

- per-spawner: the spawner before issue 16 (one DescribeTasks per poll, `_describe` as it was);
- shared: FargateSpawner as it is.

ECS throttles DescribeTasks with DescribeContainerInstances, ListAttributes,
ListContainerInstances and ListTasks in one bucket per account and Region: burst 100, sustained
20 requests per second (Amazon ECS API reference, "Request throttling for the Amazon ECS API";
docs/AWS_NOTES.md). Every tier's hub of the account shares it.

    .venv/bin/python benchmarks/ecs_poll_rate.py [--tasks 500] [--interval 10] [--duration 60]

Prints a table (rich) and writes JSON to benchmarks/results/ecs_poll_rate-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hub_images")]

import boto3  # noqa: E402
from jupyterhub.objects import Hub  # noqa: E402

from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, start_moto_server  # noqa: E402
from lakehub.local.agent import keep_tasks_running  # noqa: E402
from lakehub_hub import ecs_poller, fargate  # noqa: E402
from common import measure_table, save_result  # noqa: E402

REAL_POLL_INTERVAL = 30  # JupyterHub's Spawner.poll_interval default
ECS_SUSTAINED = 20  # DescribeTasks' bucket ("Cluster resource read actions"): refill per second
ECS_BURST = 100  # bucket size


class User:
    def __init__(self, name: str):
        self.name = self.escaped_name = name
        self.url = f"/user/{name}/"

    def progress_url(self, server_name=""):
        return f"/hub/api/users/{self.name}/server/progress"


class PerSpawnerCalls(fargate.FargateSpawner):
    """The spawner before issue 16: one DescribeTasks per question."""

    async def _describe(self, arn: str, include_tags: bool = True, max_age: float = 0.0) -> dict | None:
        kwargs: dict[str, Any] = {"cluster": self.cluster, "tasks": [arn]}
        if include_tags:
            kwargs["include"] = ["TAGS"]
        response = await self._ecs("describe_tasks", **kwargs)
        tasks = response.get("tasks") or []
        return tasks[0] if tasks else None


def world(endpoint: str, tasks: int) -> dict:
    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=EMULATOR_ACCESS_KEY,
        aws_secret_access_key=EMULATOR_SECRET_KEY,
    )
    ec2, ecs = boto3.client("ec2", **kw), boto3.client("ecs", **kw)
    keep_tasks_running(endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/20")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="users", Description="user servers", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="lakehub-bench")
    ecs.register_task_definition(
        family="lakehub-bench-user",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "notebook", "image": "lakehub-hub:latest", "memoryReservation": 128}],
    )
    arns: list[str] = []
    while len(arns) < tasks:
        arns += [
            t["taskArn"]
            for t in ecs.run_task(
                cluster="lakehub-bench",
                taskDefinition="lakehub-bench-user",
                count=min(10, tasks - len(arns)),
                launchType="FARGATE",
                startedBy=fargate.started_by("bench"),
                networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}},
            )["tasks"]
        ]
    return {"arns": arns, "subnet": subnet, "sg": sg}


async def measure(cls, endpoint: str, w: dict, interval: int, duration: float, window: float) -> dict:
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    spawners = []
    for i, arn in enumerate(w["arns"]):
        s = cls(
            user=User(f"user{i}"),
            hub=hub,
            api_token=f"t{i}",
            oauth_client_id=f"jupyterhub-user-user{i}",
            cluster="lakehub-bench",
            task_definition="lakehub-bench-user",
            subnets=[w["subnet"]],
            security_groups=[w["sg"]],
            tier="bench",
            region="us-east-1",
            ecs_endpoint_url=endpoint,
            poll_interval=interval,
            describe_window=window,
        )
        s.load_state({"task_arn": arn})
        spawners.append(s)
    client = fargate.ecs_client("us-east-1", endpoint)
    calls: list[float] = []
    polls: list[float] = []

    def count(**_):
        calls.append(time.monotonic())

    client.meta.events.register("before-parameter-build.ecs.DescribeTasks", count)
    answered_running = 0
    original_poll = cls.poll

    async def counted_poll(self):
        nonlocal answered_running
        status = await original_poll(self)
        polls.append(time.monotonic())
        answered_running += status is None
        return status

    cls.poll = counted_poll
    rng = random.Random(16)
    try:
        for s in spawners:  # servers started at different moments of one interval
            asyncio.get_running_loop().call_later(rng.uniform(0, interval), s.start_polling)
        started = time.monotonic()
        await asyncio.sleep(duration)
        for s in spawners:
            s.stop_polling()
    finally:
        cls.poll = original_poll
        client.meta.events.unregister("before-parameter-build.ecs.DescribeTasks", count)
    since = started + 2 * interval  # every spawner has polled at least once by then
    span = started + duration - since
    steady_calls = sum(1 for t in calls if t >= since)
    steady_polls = sum(1 for t in polls if t >= since)
    rate = steady_calls / span
    scale = interval / REAL_POLL_INTERVAL
    return {
        "describe_calls_total": len(calls),
        "polls_total": len(polls),
        "polls_answered_running": answered_running,
        "steady_seconds": round(span, 1),
        "steady_polls_per_s": round(steady_polls / span, 2),
        "steady_describe_calls_per_s": round(rate, 3),
        "describe_calls_per_s_at_30s_interval": round(rate * scale, 3),
        "expected_per_s_at_30s_interval": round(
            (len(spawners) if cls is PerSpawnerCalls else math.ceil(len(spawners) / ecs_poller.MAX_TASKS_PER_CALL))
            / REAL_POLL_INTERVAL,
            3,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--interval", type=int, default=10, help="compressed poll interval, seconds (real: 30)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of polling per mode")
    args = parser.parse_args(argv)
    window = ecs_poller.DEFAULT_WINDOW * args.interval / REAL_POLL_INTERVAL
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID=EMULATOR_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=EMULATOR_SECRET_KEY, AWS_DEFAULT_REGION="us-east-1"
    )
    server = start_moto_server()
    try:
        w = world(server.endpoint_url, args.tasks)
        result = {
            "benchmark": "ecs_poll_rate",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "tasks": args.tasks,
            "compressed_poll_interval_s": args.interval,
            "duration_s": args.duration,
            "window_s": round(window, 4),
            "ecs_limit": {
                "bucket": "Cluster resource read actions (DescribeTasks, ListTasks, ...)",
                "burst": ECS_BURST,
                "sustained_per_s": ECS_SUSTAINED,
                "scope": "account and Region",
            },
        }
        for name, cls in (("per_spawner", PerSpawnerCalls), ("shared_poller", fargate.FargateSpawner)):
            result[name] = asyncio.run(measure(cls, server.endpoint_url, w, args.interval, args.duration, window))
    finally:
        server.stop()
    out = save_result(f"ecs_poll_rate-n{args.tasks}-{result['date'][:10]}", result)

    from rich.console import Console

    table = measure_table(
        f"DescribeTasks of one hub with {args.tasks} running servers (emulator; poll interval "
        f"{args.interval} s compressed from 30 s, {args.duration:.0f} s per mode)",
        "per spawner (before)",
        "shared poller",
    )
    for key, label in (
        ("steady_polls_per_s", "polls answered / s (compressed)"),
        ("steady_describe_calls_per_s", "DescribeTasks / s (compressed)"),
        ("describe_calls_per_s_at_30s_interval", "DescribeTasks / s at JupyterHub's 30 s"),
        ("expected_per_s_at_30s_interval", "expected at 30 s (N/30 vs ceil(N/100)/30)"),
    ):
        table.add_row(label, str(result["per_spawner"][key]), str(result["shared_poller"][key]))
    table.add_row(
        "ECS limit, account and Region (sustained / burst)", f"{ECS_SUSTAINED} / {ECS_BURST}", f"{ECS_SUSTAINED} / {ECS_BURST}"
    )
    Console(width=160).print(table)
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
