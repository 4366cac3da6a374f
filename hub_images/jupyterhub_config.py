"""lakehub hub configuration: one image for every tier, configured at run time.

Every value comes from an environment variable (docs/HUB_ENV.md). The configuration itself is
lakehub_hub.hub_config: `configure(c, os.environ)`, one function per concern (hub and state,
sign-in, user servers, users' AWS sessions, services). A mistake in the settings ends the hub
with one line on stderr and exit 2. Then the site hooks from jupyterhub_config.d/*.py (or
LAKEHUB_CONFIG_D) run, in name order, last: they may override anything.
"""

import os
import sys
from pathlib import Path

from lakehub_hub.hub_config import HubConfigError, configure, run_site_hooks

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)

HERE = Path(__file__).resolve().parent  # /etc/jupyterhub in the image: templates, singleuser/, hooks

try:
    configure(c, os.environ, here=HERE)
except HubConfigError as exc:
    print(f"lakehub hub: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
run_site_hooks(c, os.environ, here=HERE)
