"""Minimal JupyterHub config for tests/spawner/test_hub_e2e.py: FargateSpawner on the emulator.

Only what the spawner needs; the product's hub config (hub_images/jupyterhub_config.py) has its
own tests. Users are created and servers started through the REST API with a test service token.
"""

import hashlib
import os
import sys
from pathlib import Path

from lakehub_hub.fargate import configure_per_user_hub
from lakehub_hub.stop_reasons import configure_hub as configure_stop_reasons

c = get_config()  # noqa: F821

work = os.environ["LAKEHUB_E2E_DIR"]
# The product's layout: the database in LAKEHUB_STATE_DIR (what lakehub_hub.hub_state restores and
# replicates), the cookie secret from LAKEHUB_COOKIE_SECRET when set (the tier's secret on AWS).
state = os.environ.get("LAKEHUB_STATE_DIR") or work
os.makedirs(state, exist_ok=True)
c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ['LAKEHUB_E2E_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['LAKEHUB_E2E_PROXY_API_PORT']}"
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
if os.environ.get("LAKEHUB_COOKIE_SECRET"):
    c.JupyterHub.cookie_secret = hashlib.sha256(os.environ["LAKEHUB_COOKIE_SECRET"].encode()).digest()
else:
    c.JupyterHub.cookie_secret_file = f"{work}/cookie_secret"
c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.template_paths = [str(Path(__file__).resolve().parents[2] / "hub_images" / "templates")]
c.FargateSpawner.describe_interval = 0.5
if os.environ.get("LAKEHUB_E2E_POLL_INTERVAL"):
    c.Spawner.poll_interval = int(os.environ["LAKEHUB_E2E_POLL_INTERVAL"])
# Users come from the REST API; the null authenticator allows no browser sign-in.
c.JupyterHub.authenticator_class = "null"
c.Authenticator.allow_all = True
if os.environ.get("LAKEHUB_E2E_PASSWORD"):
    # Browser sign-in (a session cookie) for tests that need one: any user, this password.
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ["LAKEHUB_E2E_PASSWORD"]
c.JupyterHub.services = [{"name": "e2e", "api_token": os.environ["LAKEHUB_E2E_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "e2e",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:users:activity", "tokens"],
        "services": ["e2e"],
    }
]

cull_timeout = os.environ.get("LAKEHUB_E2E_CULL_TIMEOUT")
if cull_timeout:
    # The idle culler stops servers idle longer than the timeout: a user's task runs only while used.
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull_timeout}", "--cull-every=1"],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    )

# As the product's hub config: the culler's stops recorded as cull, and POST /hub/api/lakehub/drain.
configure_stop_reasons(c, culler_service="idle-culler")

# What the product's hub config calls in per-user mode (after db_url): spawner, hub API address
# (LAKEHUB_HUB_API_PORT, LAKEHUB_HUB_CONNECT_URL), timeouts, cleanup_servers (off when the database persists: LAKEHUB_KEEP_SERVERS_ON_HUB_STOP or LAKEHUB_HUB_STATE_BUCKET), orphans.
stopped = configure_per_user_hub(c)
print(f"lakehub: reconcile_orphans stopped {len(stopped)} task(s): {stopped}", flush=True)
