"""Local environment only (lakehub local up sets LAKEHUB_CONFIG_D to this folder).

Several hubs share one machine: each gets its own hub API and proxy API port. In per-user mode
the user servers (run by the local agent on 127.0.0.1) reach the hub API on loopback.
"""

import os

c = get_config()  # noqa: F821

c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["LAKEHUB_LOCAL_HUB_API_PORT"])
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{os.environ['LAKEHUB_LOCAL_HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['LAKEHUB_LOCAL_PROXY_API_PORT']}"
if os.environ.get("LAKEHUB_SERVER_MODE") == "per-user":
    # A user's server is a local process started by the agent: it answers in seconds.
    c.Spawner.start_timeout = 120
