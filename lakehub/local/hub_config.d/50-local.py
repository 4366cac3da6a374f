"""Local environment only (lakehub local up sets LAKEHUB_CONFIG_D to this folder).

Several hubs share one machine: each gets its own hub API and proxy API port. In per-user mode
the user servers (run by the local agent on 127.0.0.1) reach the hub API on loopback.
"""

import os

from lakehub_hub import contract

c = get_config()  # noqa: F821

c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["LAKEHUB_LOCAL_HUB_API_PORT"])
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{os.environ['LAKEHUB_LOCAL_HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['LAKEHUB_LOCAL_PROXY_API_PORT']}"
if os.environ.get(contract.ENV_SERVER_MODE) == contract.PER_USER:
    # A user's server is a local process started by the agent: it answers in seconds.
    c.Spawner.start_timeout = 120

# Every process of a local platform run carries its run's marker (lakehub.local.processes.RUN_MARKER),
# so `lakehub local down` finds what a crashed supervisor or a killed hub left running: the proxy
# inherits the hub's environment; the culler and shared-mode servers get it here.
_MARKERS = {k: os.environ[k] for k in ("LAKEHUB_LOCAL_RUN", "LAKEHUB_LOCAL_PART") if k in os.environ}
if _MARKERS:
    c.Spawner.env_keep = list(c.Spawner.env_keep) + [k for k in _MARKERS if k not in c.Spawner.env_keep]
    for _service in c.JupyterHub.services:
        _service["environment"] = dict(_service.get("environment") or {}, **_MARKERS)
