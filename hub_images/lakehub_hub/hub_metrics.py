"""Counters the hub process keeps for what JupyterHub itself does not count (issue 18).

They are prometheus_client metrics in the hub's default registry, so they appear on the hub's
own Prometheus endpoint /hub/metrics beside JupyterHub's, where the metrics exporter reads them.
(P3 created this module with the one counter it increments; the exporter's part defines the rest.)
"""

from prometheus_client import Counter

# Every stop of a user's server, by why it stopped (lakehub_hub.stop_reasons.REASONS).
SERVERS_STOPPED = Counter(
    "lakehub_servers_stopped",  # exposed as lakehub_servers_stopped_total
    "User servers stopped, by reason (cull, oom, spot, scheduled, image-update, user, other)",
    ["reason"],
)
