"""Single-user server configuration: notebooks in S3 under the tier's prefix.

Loaded by every user's Jupyter server (the hub points JUPYTER_CONFIG_PATH here; the image also
copies it to /etc/jupyter). The hub passes the non-secret settings in the environment:

  LAKEHUB_NOTEBOOK_BUCKET, LAKEHUB_NOTEBOOK_PREFIX   where notebooks live (tier root)
  LAKEHUB_S3_ENDPOINT_URL                          only for the emulator
  AWS_REGION                                       the bucket's region
  JUPYTERHUB_USER                                  set by JupyterHub for each server

The file browser shows two folders:
  shared/        -> s3://<bucket>/<prefix>/shared/            everyone in the tier
  <username>/    -> s3://<bucket>/<prefix>/users/<username>/  this user's own notebooks

The contents manager (the mount router and the S3 manager of each mount) lives in
lakehub_hub.contents. Credentials come only from the AWS default chain (on ECS: the task role
through the container-credential variables the hub keeps); no key is ever configured here.
"""

import os
import sys

from lakehub_hub.accounts import storage_name
from lakehub_hub.contents import TierContentsManager

c = get_config()  # noqa: F821


def _setting(name):
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"lakehub user server: missing environment variable {name}; the hub sets it", file=sys.stderr)
        sys.exit(2)
    return value


BUCKET = _setting("LAKEHUB_NOTEBOOK_BUCKET")
PREFIX = _setting("LAKEHUB_NOTEBOOK_PREFIX").strip("/")
USER = _setting("JUPYTERHUB_USER")
# The user's own folder is named after them; a user literally called "shared" gets "shared-user".
HOME_FOLDER = USER if USER != "shared" else "shared-user"
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ENDPOINT = os.environ.get("LAKEHUB_S3_ENDPOINT_URL") or f"https://s3.{REGION}.amazonaws.com"
SHARED = "shared"

# AWS credentials: this user's session of the tier role, through a loopback relay (before the
# contents manager's S3 clients and any kernel; lakehub_hub.credential_relay).
c.ServerApp.jpserver_extensions.update({"lakehub_hub.credential_relay": True})
c.ServerApp.contents_manager_class = TierContentsManager
c.TierContentsManager.bucket = BUCKET
c.TierContentsManager.endpoint_url = ENDPOINT
c.TierContentsManager.region_name = REGION
c.TierContentsManager.mounts = {
    SHARED: f"{PREFIX}/shared",
    HOME_FOLDER: f"{PREFIX}/users/{storage_name(USER)}",  # the tier role's ${aws:PrincipalTag/lakehub-user}
}
# Open JupyterLab in the user's own folder.
c.ServerApp.default_url = f"/lab/tree/{HOME_FOLDER}"
# Notebooks are trusted per user; no terminals into the shared task's file system beyond home.
c.ServerApp.terminals_enabled = True
