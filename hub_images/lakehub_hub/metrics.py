"""The hub's metrics exporter: JupyterHub's Prometheus metrics to CloudWatch.

    python -m lakehub_hub.metrics

A JupyterHub-managed service in the hub task (lakehub_hub.hub_config.configure_metrics; its
role has only `read:metrics`, `list:users` and `read:servers`). Every LAKEHUB_METRICS_INTERVAL
seconds (default 60) it reads the hub's Prometheus endpoint (`/hub/metrics`) and its REST API
with the service's token, and makes ONE CloudWatch PutMetricData call with the hub's own
credentials (namespace `lakehub`, dimensions Platform and Tier):

| CloudWatch metric | from | unit |
|---|---|---|
| HubUp | 1 when /hub/metrics answers, else 0 (and nothing else is sent that round) | Count |
| ActiveUsers | REST API: users with a ready server active in the last ACTIVE_WINDOW seconds | Count |
| RunningServers | jupyterhub_running_servers | Count |
| SpawnSuccesses | jupyterhub_server_spawn_duration_seconds_count{status="success"}, delta (when it moved) | Count |
| SpawnFailures | the same with status failure or error (not reason already-pending), delta | Count |
| SpawnDuration | the successful spawns' histogram delta as a StatisticSet (count, sum; min and max are the bounds of the lowest and highest histogram bucket that moved) | Seconds |
| CapacityErrors | lakehub_capacity_errors_total, delta | Count |
| SpotInterruptions | lakehub_spot_interruptions_total, delta | Count |
| ServersStopped {Reason} | lakehub_servers_stopped_total{reason}, delta, reasons that moved | Count |
| UserTasks {Size, Capacity} | lakehub_user_servers{size,capacity}, non-zero ones | Count |

Counters go out as deltas since the previous report, and only in a round where they moved
(a custom metric is paid for each hour it is published; alarms read a missing point as
nothing happened): HubUp, ActiveUsers and RunningServers go out every round (ALWAYS_SENT).
The first report counts from zero (the exporter starts with the hub; a counter that went down
was reset, its value is the delta).
A failure (hub not answering, CloudWatch refusing) is one log line; the loop never ends on one.

Environment (docs/HUB_ENV.md): LAKEHUB_PLATFORM, LAKEHUB_TIER, LAKEHUB_METRICS_INTERVAL,
LAKEHUB_CLOUDWATCH_ENDPOINT_URL (emulator only; default LAKEHUB_ECS_ENDPOINT_URL, as the
spawner's EFS client), AWS_REGION; JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN from JupyterHub.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# Only the standard library at import: lakehub.stacks.monitoring (the templates' alarms and dashboard)
# imports the names below on machines without the hub's packages.


log = logging.getLogger("lakehub.metrics")

NAMESPACE = "lakehub"
# Dimensions
PLATFORM = "Platform"
TIER = "Tier"
REASON = "Reason"
SIZE = "Size"
CAPACITY = "Capacity"
# Metric names (the tier's alarms and the dashboard import these: lakehub.stacks.monitoring)
HUB_UP = "HubUp"
ACTIVE_USERS = "ActiveUsers"
RUNNING_SERVERS = "RunningServers"
SPAWN_SUCCESSES = "SpawnSuccesses"
SPAWN_FAILURES = "SpawnFailures"
SPAWN_DURATION = "SpawnDuration"
CAPACITY_ERRORS = "CapacityErrors"
SPOT_INTERRUPTIONS = "SpotInterruptions"
SERVERS_STOPPED = "ServersStopped"
USER_TASKS = "UserTasks"
# {CloudWatch metric: (unit, extra dimensions)}: everything the exporter can publish.
CLOUDWATCH = {
    HUB_UP: ("Count", ()),
    ACTIVE_USERS: ("Count", ()),
    RUNNING_SERVERS: ("Count", ()),
    SPAWN_SUCCESSES: ("Count", ()),
    SPAWN_FAILURES: ("Count", ()),
    SPAWN_DURATION: ("Seconds", ()),
    CAPACITY_ERRORS: ("Count", ()),
    SPOT_INTERRUPTIONS: ("Count", ()),
    SERVERS_STOPPED: ("Count", (REASON,)),
    USER_TASKS: ("Count", (SIZE, CAPACITY)),
}
# Sent every round while the hub answers (the others only when something moved): what the
# hub's custom metrics cost follows these (lakehub.cost).
ALWAYS_SENT = (HUB_UP, ACTIVE_USERS, RUNNING_SERVERS)
PERIOD = 60  # seconds: the default interval, and the period alarms and the dashboard use

DEFAULT_INTERVAL = 60
ACTIVE_WINDOW = 600  # a server reports activity every 300 s (JupyterHub's default)
HTTP_TIMEOUT = 10.0
SPAWN_HISTOGRAM = "jupyterhub_server_spawn_duration_seconds"


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = (os.environ.get(name) or "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a whole number; using %s", name, raw, default)
        return default
    return max(minimum, value)


# ---- reading the hub ------------------------------------------------------------------------
class HubDown(Exception):
    """The hub did not answer (connection refused, timeout, an HTTP error)."""


def _get(url: str, token: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the hub's own URL
            return response.read()
    except urllib.error.HTTPError as exc:
        raise HubDown(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise HubDown(f"{url}: {getattr(exc, 'reason', exc)}") from None


def metrics_url(api_url: str) -> str:
    """<hub>/hub/metrics from JUPYTERHUB_API_URL (<hub>/hub/api)."""
    base = api_url.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    return base + "/metrics"


def parse_metrics(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """{family name: [(sample name, labels, value)]}, with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        families.setdefault(family.name, []).extend((s.name, dict(s.labels), float(s.value)) for s in family.samples)
    return families


def _samples(families: dict, family: str, sample: str | None = None) -> list[tuple[dict[str, str], float]]:
    wanted = sample or family
    return [(labels, value) for name, labels, value in families.get(family, []) if name == wanted]


def active_users(api_url: str, token: str, now: datetime.datetime, timeout: float = HTTP_TIMEOUT) -> int:
    """Users with a ready server whose last activity is within ACTIVE_WINDOW (paginated API)."""
    cutoff = now - datetime.timedelta(seconds=ACTIVE_WINDOW)
    count, offset = 0, 0
    for _ in range(1000):  # 200 users a page: bounded
        query = urllib.parse.urlencode({"state": "ready", "offset": offset, "limit": 200})
        request = urllib.request.Request(
            f"{api_url.rstrip('/')}/users?{query}",
            headers={"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                page = json.load(response)
        except urllib.error.HTTPError as exc:
            raise HubDown(f"users API: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            raise HubDown(f"users API: {getattr(exc, 'reason', exc)}") from None
        items = page.get("items", []) if isinstance(page, dict) else page
        for user in items:
            for server in (user.get("servers") or {}).values():
                seen = _when(server.get("last_activity"))
                if server.get("ready") and seen and seen >= cutoff:
                    count += 1
                    break
        following = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
        if not following:
            break
        offset = following.get("offset", offset + len(items))
    return count


def _when(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ---- turning them into CloudWatch datapoints -----------------------------------------------
class Exporter:
    def __init__(self, platform: str, tier: str, api_url: str, token: str, cloudwatch, timeout: float = HTTP_TIMEOUT):
        self.platform, self.tier = platform, tier
        self.api_url, self.token = api_url, token
        self.cloudwatch = cloudwatch
        self.timeout = timeout
        self.previous: dict[Any, float] = {}  # counter key -> last value seen

    def dims(self, **extra: str) -> list[dict[str, str]]:
        return [{"Name": PLATFORM, "Value": self.platform}, {"Name": TIER, "Value": self.tier}] + [
            {"Name": k, "Value": v} for k, v in extra.items()
        ]

    def datum(self, name: str, value: float, now, **extra: str) -> dict:
        return {
            "MetricName": name,
            "Dimensions": self.dims(**extra),
            "Timestamp": now,
            "Value": float(value),
            "Unit": CLOUDWATCH[name][0],
        }

    def delta(self, key: Any, value: float) -> float:
        """The counter's increase since the last report (a lower value: reset, so all of it is new)."""
        before = self.previous.get(key, 0.0)
        self.previous[key] = value
        return value - before if value >= before else value

    def spawn_datapoints(self, families: dict, now) -> list[dict]:
        success, failure = 0.0, 0.0
        buckets: dict[float, float] = {}
        total = 0.0
        for labels, value in _samples(families, SPAWN_HISTOGRAM, SPAWN_HISTOGRAM + "_count"):
            status, reason = labels.get("status", ""), labels.get("reason", "")
            if status == "success":
                success += value
            elif status in ("failure", "error") and reason != "already-pending":
                failure += value
        for labels, value in _samples(families, SPAWN_HISTOGRAM, SPAWN_HISTOGRAM + "_sum"):
            if labels.get("status") == "success":
                total += value
        for labels, value in _samples(families, SPAWN_HISTOGRAM, SPAWN_HISTOGRAM + "_bucket"):
            if labels.get("status") == "success":
                le = float(labels.get("le", "inf"))
                buckets[le] = buckets.get(le, 0.0) + value
        spawned = self.delta(("spawn", "success"), success)
        failed = self.delta(("spawn", "failure"), failure)
        seconds = self.delta(("spawn", "sum"), total)
        moved = {le: self.delta(("spawn", "le", le), n) for le, n in sorted(buckets.items())}
        # Counters go out only in a round where they moved: a custom metric costs for each hour
        # it is published (the alarms read a missing point as "nothing happened").
        out = [self.datum(SPAWN_SUCCESSES, spawned, now)] if spawned > 0 else []
        if failed > 0:
            out.append(self.datum(SPAWN_FAILURES, failed, now))
        if spawned > 0:
            out.append(self.spawn_duration(spawned, seconds, moved, now))
        return out

    def spawn_duration(self, count: float, seconds: float, cumulative: dict[float, float], now) -> dict:
        """A StatisticSet from the histogram's delta: min/max are bucket bounds (cumulative
        buckets: the lowest whose count moved holds the fastest spawn, the first that holds them
        all the slowest), clamped so that min <= mean <= max."""
        bounds = sorted(cumulative)
        mean = seconds / count
        low = next((i for i, le in enumerate(bounds) if cumulative[le] > 0), len(bounds) - 1)
        high = next((le for le in bounds if cumulative[le] >= count), float("inf"))
        minimum = bounds[low - 1] if low > 0 else 0.0
        maximum = seconds if high == float("inf") else min(high, seconds)
        minimum, maximum = min(minimum, mean), max(maximum, mean)
        d = self.datum(SPAWN_DURATION, 0, now)
        d.pop("Value")
        d["StatisticValues"] = {"SampleCount": count, "Sum": seconds, "Minimum": minimum, "Maximum": maximum}
        return d

    def datapoints(self, families: dict, users: int | None, now) -> list[dict]:
        from lakehub_hub import hub_metrics  # (prometheus_client: the build side imports only the names above)

        out = [self.datum(HUB_UP, 1, now)]
        if users is not None:
            out.append(self.datum(ACTIVE_USERS, users, now))
        running = _samples(families, "jupyterhub_running_servers")
        if running:
            out.append(self.datum(RUNNING_SERVERS, running[0][1], now))
        out += self.spawn_datapoints(families, now)
        for metric, family in (
            (CAPACITY_ERRORS, hub_metrics.CAPACITY_ERRORS),
            (SPOT_INTERRUPTIONS, hub_metrics.SPOT_INTERRUPTIONS),
        ):
            value = sum(v for _, v in _samples(families, family, family + "_total"))
            moved = self.delta(metric, value)
            if moved > 0:
                out.append(self.datum(metric, moved, now))
        for labels, value in _samples(families, hub_metrics.SERVERS_STOPPED, hub_metrics.SERVERS_STOPPED + "_total"):
            reason = labels.get("reason", "other")
            moved = self.delta((SERVERS_STOPPED, reason), value)
            if moved > 0:
                out.append(self.datum(SERVERS_STOPPED, moved, now, **{REASON: reason}))
        for labels, value in _samples(families, hub_metrics.USER_SERVERS):
            if value > 0:
                out.append(
                    self.datum(
                        USER_TASKS,
                        value,
                        now,
                        **{SIZE: labels.get("size", "unknown"), CAPACITY: labels.get("capacity", "FARGATE")},
                    )
                )
        return out

    def collect(self, now) -> list[dict]:
        """This round's datapoints: everything when the hub answers, else HubUp 0 alone."""
        try:
            text = _get(metrics_url(self.api_url), self.token, self.timeout).decode("utf-8", "replace")
            families = parse_metrics(text)
        except HubDown as exc:
            log.warning("hub not answering (%s): HubUp 0", exc)
            return [self.datum(HUB_UP, 0, now)]
        except ValueError as exc:  # the parser: not Prometheus text
            log.warning("hub metrics unreadable (%s): HubUp 0", exc)
            return [self.datum(HUB_UP, 0, now)]
        try:
            users = active_users(self.api_url, self.token, now, self.timeout)
        except HubDown as exc:
            log.warning("active users not read (%s)", exc)
            users = None
        return self.datapoints(families, users, now)

    def report(self) -> int:
        """One round: collect and send in one PutMetricData call. The number of datapoints sent
        (0 when CloudWatch refused them)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        data = self.collect(now)
        try:
            self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
        except Exception as exc:  # noqa: BLE001 - botocore's errors, network: one line, next round
            error = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
            why = (
                f"{error.get('Code', '')} {error.get('Message', '')}".strip()
                or (str(exc).splitlines() or [type(exc).__name__])[0]
            )
            log.warning("PutMetricData failed (%s datapoints): %s", len(data), why)
            return 0
        return len(data)


def cloudwatch_client():
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (
        (os.environ.get("LAKEHUB_CLOUDWATCH_ENDPOINT_URL") or "").strip()
        or (os.environ.get("LAKEHUB_ECS_ENDPOINT_URL") or "").strip()
        or None
    )
    return boto3.session.Session().client(
        "cloudwatch",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"}),
    )


def run(exporter: Exporter, interval: float, stop: threading.Event, parent: int | None = None) -> None:
    """Report now, then every `interval` seconds (on a fixed schedule) until `stop` is set. With
    `parent` (the hub's pid): once the hub process is gone (this process was handed to another
    parent), one last report (HubUp 0) and the end; a hub that is alive but does not answer gets
    HubUp 0 every round."""
    next_at = time.monotonic()
    while not stop.is_set():
        if parent is not None and os.getppid() != parent:
            log.warning("the hub process %s is gone: a last report, then exit", parent)
            stop.set()
        try:
            exporter.report()
        except Exception as exc:  # noqa: BLE001 - never end the loop
            log.warning("metrics round failed: %s: %s", type(exc).__name__, exc)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
        if next_at < time.monotonic():
            next_at = time.monotonic()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s lakehub.metrics] %(message)s")
    platform = (os.environ.get("LAKEHUB_PLATFORM") or "").strip()
    tier = (os.environ.get("LAKEHUB_TIER") or "").strip()
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    missing = [
        n
        for n, v in (
            ("LAKEHUB_PLATFORM", platform),
            ("LAKEHUB_TIER", tier),
            ("JUPYTERHUB_API_URL", api_url),
            ("JUPYTERHUB_API_TOKEN", token),
        )
        if not v
    ]
    if missing:
        print(
            f"lakehub metrics: {', '.join(missing)} not set; run as a JupyterHub service "
            "(hub_images/jupyterhub_config.py sets it up)",
            file=sys.stderr,
        )
        return 2
    interval = env_int("LAKEHUB_METRICS_INTERVAL", DEFAULT_INTERVAL)
    exporter = Exporter(platform, tier, api_url, token, cloudwatch_client())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("publishing to CloudWatch namespace %s (Platform=%s, Tier=%s) every %s s", NAMESPACE, platform, tier, interval)
    run(exporter, interval, stop, parent=os.getppid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
