"""What the hub counts that JupyterHub does not: prometheus_client metrics in the hub process.

They appear on the hub's own Prometheus endpoint (`/hub/metrics`, scope `read:metrics`) beside
JupyterHub's, and the metrics exporter (lakehub_hub.metrics) turns them into CloudWatch metrics
(namespace `lakehub`; the mapping is `lakehub_hub.metrics.CLOUDWATCH`). The names here are a
contract shared with the exporter, the tier's alarms and the dashboard (lakehub.stacks.monitoring):
change them in one place only.

- lakehub_capacity_errors_total            RunTask refused for lack of capacity (Fargate Spot, or
                                           the account's Fargate quota), each refusal
- lakehub_spot_interruptions_total         users' tasks that AWS stopped to reclaim Spot capacity
- lakehub_servers_stopped_total{reason}    servers that stopped, by reason (STOP_REASONS)
- lakehub_user_servers{size,capacity}      users' server tasks the hub holds now (per-user mode),
                                           by size (profile name) and capacity provider
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily

from lakehub_hub.stop_reasons import REASONS

CAPACITY_ERRORS = "lakehub_capacity_errors"  # prometheus_client adds _total to counters
SPOT_INTERRUPTIONS = "lakehub_spot_interruptions"
SERVERS_STOPPED = "lakehub_servers_stopped"
USER_SERVERS = "lakehub_user_servers"

# Why a server stopped (the spawner keeps it as `last_stop_reason`): lakehub_hub.stop_reasons' list.
STOP_REASONS = REASONS
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")

capacity_errors = Counter(CAPACITY_ERRORS, "RunTask refusals for lack of capacity (Fargate Spot, or the Fargate quota)")
spot_interruptions = Counter(SPOT_INTERRUPTIONS, "Users' server tasks stopped by AWS to reclaim Fargate Spot capacity")
servers_stopped = Counter(SERVERS_STOPPED, "Users' servers that stopped, by reason", ["reason"])
for _reason in STOP_REASONS:
    servers_stopped.labels(reason=_reason)  # every reason shows (as 0) from the start


def count_capacity_error() -> None:
    capacity_errors.inc()


def count_spot_interruption() -> None:
    spot_interruptions.inc()


def count_server_stopped(reason: str) -> None:
    """One stopped server; an unknown reason counts as `other`."""
    servers_stopped.labels(reason=reason if reason in STOP_REASONS else "other").inc()


# ---- users' server tasks: counted at each scrape from the spawners that hold one ----------------
_spawners: weakref.WeakSet = weakref.WeakSet()
_spawners_lock = threading.Lock()


def track_spawner(spawner) -> None:
    """Count this spawner's task in lakehub_user_servers while it holds one. The spawner must
    have `task_arn`, `capacity_used` and `user_server_size()` (lakehub_hub.fargate)."""
    with _spawners_lock:
        _spawners.add(spawner)


def user_servers() -> dict[tuple[str, str], int]:
    """{(size, capacity): tasks} over the tracked spawners that hold a task now."""
    with _spawners_lock:
        spawners = list(_spawners)
    counts: dict[tuple[str, str], int] = {}
    for spawner in spawners:
        if not getattr(spawner, "task_arn", ""):
            continue
        try:
            size = spawner.user_server_size()
        except Exception:  # noqa: BLE001 - an unknown size still counts
            size = "unknown"
        key = (size or "unknown", getattr(spawner, "capacity_used", "") or "FARGATE")
        counts[key] = counts.get(key, 0) + 1
    return counts


class _UserServersCollector:
    def collect(self):
        family = GaugeMetricFamily(
            USER_SERVERS, "Users' server tasks the hub holds now, by size and capacity provider", labels=["size", "capacity"]
        )
        for (size, capacity), n in sorted(user_servers().items()):
            family.add_metric([size, capacity], n)
        yield family


_registered = False


def register_collectors(registry=REGISTRY) -> None:
    """Add the lakehub_user_servers collector to the registry (once)."""
    global _registered
    if not _registered:
        registry.register(_UserServersCollector())
        _registered = True


register_collectors()
