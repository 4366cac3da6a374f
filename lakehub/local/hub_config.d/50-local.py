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

extra = os.environ.get("LAKEHUB_LOCAL_EXTRA_CONFIG_PATH", "")
if extra:
    # Running as root (CI): user servers are local processes of the same user.
    env = dict(c.Spawner.environment or {})
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (extra, env.get("JUPYTER_CONFIG_PATH", "")) if p)
    c.Spawner.environment = env
