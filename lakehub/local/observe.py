"""The dashboard's figures on the local platform, read from the emulator's CloudWatch (what each
hub's metrics exporter published: namespace `lakehub`, dimensions Platform and Tier) and its
alarms (DescribeAlarms, states set by lakehub.local.alarms): for `lakehub local status` and the
optional Prometheus endpoint (`lakehub local up --metrics-port PORT`).

Gauges (HubUp, ActiveUsers, RunningServers, UserTasks) are the latest minute's value within the
last GAUGE_WINDOW seconds (None: nothing published, e.g. the hub's exporter is not running);
counts (spawns, failures, capacity errors, Spot interruptions, servers stopped) are sums over
the last COUNT_WINDOW seconds; spawn latency is the mean and the maximum of SpawnDuration over
that window (the exporter publishes statistic sets, from which no percentile can be computed,
on AWS either).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

NAMESPACE = "lakehub"
GAUGE_WINDOW = 300
COUNT_WINDOW = 3600
GAUGES = {"HubUp": "hub_up", "ActiveUsers": "active_users", "RunningServers": "running_servers"}
COUNTS = {
    "SpawnSuccesses": "spawns",
    "SpawnFailures": "spawn_failures",
    "CapacityErrors": "capacity_errors",
    "SpotInterruptions": "spot_interruptions",
}


def session_keys(credentials: dict | None) -> dict:
    """boto3's keyword arguments for STS-style credentials (AccessKeyId...); none for None."""
    if not credentials:
        return {}
    return dict(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials.get("SessionToken"),
    )


def client(service: str, endpoint: str, credentials: dict | None = None, region: str = "us-east-1"):
    """A boto3 client on the emulator that gives up fast (status must stay bounded)."""
    import boto3
    from botocore.config import Config

    keys = session_keys(credentials)
    config = Config(connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1})
    # a session of its own: the metrics endpoint calls this from its own threads
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=region, config=config, **keys)


def empty_tier() -> dict:
    return {
        "hub_up": None,
        "active_users": None,
        "running_servers": None,
        "spawns": 0,
        "spawn_failures": 0,
        "spawn_seconds_mean": None,
        "spawn_seconds_max": None,
        "capacity_errors": 0,
        "spot_interruptions": 0,
        "servers_stopped": {},
        "user_tasks": [],
    }


def _series(cloudwatch, platform: str) -> list[dict]:
    metrics = {}  # moto lists a series once per datapoint: one each here
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE):
        for m in page.get("Metrics", []):
            dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
            if dims.get("Platform") == platform and dims.get("Tier"):
                metrics[(m["MetricName"], tuple(sorted(dims.items())))] = {
                    "name": m["MetricName"],
                    "dims": dims,
                    "listed": m.get("Dimensions", []),
                }
    return list(metrics.values())


def figures(cloudwatch, platform: str, tiers: list[str], now: float | None = None) -> dict[str, dict]:
    """{tier: figures} for `tiers` (and any other tier that published), from one ListMetrics and
    one GetMetricData."""
    now = time.time() if now is None else now
    out = {t: empty_tier() for t in tiers}
    queries, meaning = [], {}
    for i, s in enumerate(_series(cloudwatch, platform)):
        metric = {
            "Namespace": NAMESPACE,
            "MetricName": s["name"],
            # in the order ListMetrics gives: moto's GetMetricData compares sorted() lists of
            # its Dimension objects, whose ordering is broken (another order finds nothing)
            "Dimensions": [{"Name": d["Name"], "Value": d["Value"]} for d in s["listed"]],
        }
        if s["name"] in GAUGES or s["name"] == "UserTasks":
            stats = [("Maximum", 60)] if s["name"] != "HubUp" else [("Minimum", 60)]
        elif s["name"] == "SpawnDuration":
            stats = [("Sum", COUNT_WINDOW), ("SampleCount", COUNT_WINDOW), ("Maximum", COUNT_WINDOW)]
        elif s["name"] in COUNTS or s["name"] == "ServersStopped":
            stats = [("Sum", COUNT_WINDOW)]
        else:
            continue
        for stat, period in stats:
            qid = f"q{i}_{stat.lower()}"
            queries.append({"Id": qid, "MetricStat": {"Metric": metric, "Period": period, "Stat": stat}, "ReturnData": True})
            meaning[qid] = (s, stat, period)
    results = {}
    for window in (GAUGE_WINDOW, COUNT_WINDOW):  # gauges by the minute, counts in one bucket
        mine = [q for q in queries if (q["MetricStat"]["Period"] == 60) == (window == GAUGE_WINDOW)]
        for start in range(0, len(mine), 500):  # GetMetricData takes at most 500 queries
            answer = cloudwatch.get_metric_data(
                MetricDataQueries=mine[start : start + 500],
                StartTime=datetime.fromtimestamp(now - window, timezone.utc),
                EndTime=datetime.fromtimestamp(now, timezone.utc),
                ScanBy="TimestampDescending",
            )
            for r in answer.get("MetricDataResults", []):
                results[r["Id"]] = list(zip(r.get("Timestamps", []), r.get("Values", [])))
    spawn: dict[str, dict] = {}
    for qid, (s, stat, period) in meaning.items():
        points = [(ts, v) for ts, v in results.get(qid, []) if v is not None]
        tier = out.setdefault(s["dims"]["Tier"], empty_tier())
        if period == 60:  # a gauge: the latest minute within GAUGE_WINDOW
            recent = [(ts, v) for ts, v in points if ts.timestamp() >= now - GAUGE_WINDOW]
            value = max(recent, key=lambda p: p[0])[1] if recent else None
            if s["name"] == "UserTasks":
                if value is not None:
                    tier["user_tasks"].append(
                        {"size": s["dims"].get("Size", ""), "capacity": s["dims"].get("Capacity", ""), "tasks": int(value)}
                    )
            else:
                tier[GAUGES[s["name"]]] = None if value is None else (int(value) if s["name"] != "HubUp" else int(value >= 1))
            continue
        total = sum(v for _, v in points)
        if s["name"] == "SpawnDuration":
            entry = spawn.setdefault(s["dims"]["Tier"], {})
            entry[stat] = max((v for _, v in points), default=None) if stat == "Maximum" else total
        elif s["name"] == "ServersStopped":
            reason = s["dims"].get("Reason", "other")
            tier["servers_stopped"][reason] = tier["servers_stopped"].get(reason, 0) + int(total)
        else:
            tier[COUNTS[s["name"]]] += int(total)
    for name, entry in spawn.items():
        if entry.get("SampleCount"):
            out[name]["spawn_seconds_mean"] = round(entry.get("Sum", 0.0) / entry["SampleCount"], 2)
            out[name]["spawn_seconds_max"] = entry.get("Maximum")
    for tier in out.values():
        tier["user_tasks"].sort(key=lambda r: (r["size"], r["capacity"]))
    return out


def alarms(cloudwatch) -> list[dict]:
    """Every metric alarm of the emulator: name, state, reason, since, tier (its Tier dimension)."""
    from lakehub.local.alarms import current_state, evaluable

    rows = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for a in page.get("MetricAlarms", []):
            dims = {d["Name"]: d["Value"] for d in a.get("Dimensions", [])}
            updated = a.get("StateUpdatedTimestamp")
            rows.append(
                {
                    "name": a["AlarmName"],
                    "state": current_state(a),
                    "reason": a.get("StateReason", ""),
                    "since": updated.isoformat() if isinstance(updated, datetime) else None,
                    "tier": dims.get("Tier", ""),
                    "metric": a.get("MetricName") or "",
                    "evaluated_locally": not evaluable(a),
                }
            )
    rows.sort(key=lambda r: (r["tier"], r["name"]))
    return rows


def observe(endpoint: str, credentials: dict | None, platform: str, tiers: list[str]) -> dict:
    """{'metrics': {tier: figures}, 'alarms': [...], 'error': ''}; a one-line error (and empty
    figures) when the emulator does not answer."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cloudwatch = client("cloudwatch", endpoint, credentials)
        return {"metrics": figures(cloudwatch, platform, tiers), "alarms": alarms(cloudwatch), "error": ""}
    except (BotoCoreError, ClientError, OSError) as exc:
        why = re.sub(r"\s+", " ", str(exc))[:200]
        return {"metrics": {}, "alarms": [], "error": f"the emulator's CloudWatch did not answer ({why})"}


# ------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------
class DashboardCollector:
    """prometheus_client collector: the same figures, read from the emulator at each scrape."""

    def __init__(self, read):
        self._read = read  # () -> observe(...)'s answer

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        seen = self._read()
        tiers = seen.get("metrics") or {}

        def per_tier(name: str, doc: str, key: str):
            family = GaugeMetricFamily(name, doc, labels=["tier"])
            for tier, f in sorted(tiers.items()):
                if f.get(key) is not None:
                    family.add_metric([tier], float(f[key]))
            return family

        yield GaugeMetricFamily(
            "lakehub_dashboard_up",
            "1 when the emulator's CloudWatch answered this scrape",
            value=0.0 if seen.get("error") else 1.0,
        )
        yield per_tier("lakehub_dashboard_hub_up", "HubUp: 1 when the tier's hub answers (latest minute)", "hub_up")
        yield per_tier("lakehub_dashboard_active_users", "ActiveUsers (latest minute)", "active_users")
        yield per_tier("lakehub_dashboard_running_servers", "RunningServers (latest minute)", "running_servers")
        yield per_tier("lakehub_dashboard_spawns_last_hour", "SpawnSuccesses in the last hour", "spawns")
        yield per_tier("lakehub_dashboard_spawn_failures_last_hour", "SpawnFailures in the last hour", "spawn_failures")
        yield per_tier(
            "lakehub_dashboard_spawn_duration_mean_seconds", "SpawnDuration mean over the last hour", "spawn_seconds_mean"
        )
        yield per_tier(
            "lakehub_dashboard_spawn_duration_max_seconds", "SpawnDuration maximum over the last hour", "spawn_seconds_max"
        )
        yield per_tier("lakehub_dashboard_capacity_errors_last_hour", "CapacityErrors in the last hour", "capacity_errors")
        yield per_tier(
            "lakehub_dashboard_spot_interruptions_last_hour", "SpotInterruptions in the last hour", "spot_interruptions"
        )
        stopped = GaugeMetricFamily(
            "lakehub_dashboard_servers_stopped_last_hour", "ServersStopped in the last hour", labels=["tier", "reason"]
        )
        tasks = GaugeMetricFamily(
            "lakehub_dashboard_user_tasks", "UserTasks (latest minute)", labels=["tier", "size", "capacity"]
        )
        for tier, f in sorted(tiers.items()):
            for reason, count in sorted(f.get("servers_stopped", {}).items()):
                stopped.add_metric([tier, reason], float(count))
            for row in f.get("user_tasks", []):
                tasks.add_metric([tier, row["size"], row["capacity"]], float(row["tasks"]))
        yield stopped
        yield tasks
        alarm = GaugeMetricFamily(
            "lakehub_dashboard_alarm_state", "1 for each alarm's current state", labels=["alarm", "tier", "state"]
        )
        for a in seen.get("alarms") or []:
            alarm.add_metric([a["name"], a["tier"], a["state"]], 1.0)
        yield alarm


def serve_metrics(port: int, read) -> object:
    """Serve the collector's figures on 127.0.0.1:port/metrics (Prometheus text format).
    Returns the HTTP server (call .shutdown() to stop it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(DashboardCollector(read))
    answer = start_http_server(port, addr="127.0.0.1", registry=registry)
    return answer[0] if isinstance(answer, tuple) else answer
