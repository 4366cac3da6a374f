"""Single-user server configuration: the file browser opens the user's home, with the tier's shared/ folder from S3.

Loaded by every user's Jupyter server (the hub points JUPYTER_CONFIG_PATH here; the image also
copies it to /etc/jupyter). The hub passes the non-secret settings in the environment:

  LAKEHUB_NOTEBOOK_BUCKET, LAKEHUB_NOTEBOOK_PREFIX   the versioned notebook bucket, the tier root
  LAKEHUB_HOME                                     the home (else HOME): the file browser's root
  LAKEHUB_S3_ENDPOINT_URL                          only for the emulator
  AWS_REGION                                       the bucket's region
  JUPYTERHUB_USER                                  set by JupyterHub for each server
  MEM_LIMIT, CPU_LIMIT                             the server's size (per-user mode): the meter's scale

The file browser shows the home (kernels and terminals start there, so code reads and writes
files next to the notebook by relative paths) and one virtual folder at its root:
  shared/   -> s3://<bucket>/<prefix>/shared/     everyone in the tier
Every file saved through Jupyter in the home is also copied to
s3://<bucket>/<prefix>/users/<storage_name(user)>/<path> (the central copy, versioned: its versions are
the file's checkpoints, "Revert to checkpoint" restores them). A real folder named `shared` in the
home is not shown. The contents manager is lakehub_hub.contents.HomeContentsManager.

Users' own packages live in the home and survive restarts: `pip install --user` -> ~/.local
(PYTHONUSERBASE), R's install.packages -> ~/R/library (R_LIBS_USER), pip's cache ~/.cache/pip.
Credentials: this user's session of the tier's data role, served by the credential relay
(lakehub_hub.credential_relay) through the AWS default chain; no key is ever configured here.
"""

import os
import stat
import sys
import tempfile

from lakehub_hub.accounts import storage_name
from lakehub_hub.contents import HomeContentsManager

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
HOME = (os.environ.get("LAKEHUB_HOME") or "").strip() or _setting("HOME")
if not os.path.isdir(HOME):
    print(f"lakehub user server: the home folder {HOME} does not exist; the hub (or the task's volume) makes it", file=sys.stderr)
    sys.exit(2)
USER_FOLDER = storage_name(USER)  # the data role's ${aws:PrincipalTag/lakehub-user}
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ENDPOINT = os.environ.get("LAKEHUB_S3_ENDPOINT_URL") or f"https://s3.{REGION}.amazonaws.com"

# Users' packages in the home (kernels and terminals inherit this environment).
os.environ["HOME"] = HOME
os.environ["PYTHONUSERBASE"] = os.path.join(HOME, ".local")
os.environ["R_LIBS_USER"] = os.path.join(HOME, "R", "library")
os.environ["PIP_CACHE_DIR"] = os.path.join(HOME, ".cache", "pip")
for _folder in (os.environ["PYTHONUSERBASE"], os.environ["R_LIBS_USER"]):
    try:
        os.makedirs(_folder, exist_ok=True)
    except OSError as _e:  # the server still starts; pip and R say where they cannot write
        print(f"lakehub user server: cannot create {_folder}: {_e}", file=sys.stderr)

# Jupyter's runtime files (the server's and kernels' connection files) in the server's own
# temporary folder, not under ~/.local/share/jupyter: a user who points ~/.local somewhere they
# cannot write (`ln -s /etc ~/.local`) must still be able to start their server and undo it. The
# shared-mode hub already sets a private folder in the home; a per-user task's temporary folder is
# its own (the container's /tmp; the local agent's TMPDIR). A folder there that is not this user's
# own, private directory is not used.
if not os.environ.get("JUPYTER_RUNTIME_DIR"):
    _runtime = os.path.join(tempfile.gettempdir(), f"jupyter-runtime-{os.getuid()}")
    try:
        os.makedirs(_runtime, mode=0o700, exist_ok=True)
        _st = os.lstat(_runtime)
        if stat.S_ISDIR(_st.st_mode) and _st.st_uid == os.getuid() and not _st.st_mode & 0o077:
            os.environ["JUPYTER_RUNTIME_DIR"] = _runtime
        else:
            print(
                f"lakehub user server: {_runtime} is not a private folder of this user; Jupyter's default is used",
                file=sys.stderr,
            )
    except OSError as _e:
        print(f"lakehub user server: cannot create {_runtime}: {_e}; Jupyter's default is used", file=sys.stderr)

# AWS credentials: this user's session of the tier role, through a loopback relay (before the
# contents manager's S3 clients and any kernel; lakehub_hub.credential_relay).
c.ServerApp.jpserver_extensions.update({"lakehub_hub.credential_relay": True})
c.ServerApp.root_dir = HOME  # kernels' and terminals' starting folder, and the file browser's root
c.ServerApp.contents_manager_class = HomeContentsManager
c.HomeContentsManager.root_dir = HOME
c.HomeContentsManager.bucket = BUCKET
c.HomeContentsManager.endpoint_url = ENDPOINT
c.HomeContentsManager.region_name = REGION
c.HomeContentsManager.central_prefix = f"{PREFIX}/users/{USER_FOLDER}"
c.HomeContentsManager.shared_prefix = f"{PREFIX}/shared"
# Open JupyterLab in the home (the file browser's root).
c.ServerApp.default_url = "/lab"
c.ServerApp.terminals_enabled = True

# Per-user mode: the server ends itself once idle even while its hub is away (the nightly stop,
# a replacement), as the hub's idle culler would: kernels nobody is connected to and that are not
# busy are shut down after LAKEHUB_SERVER_IDLE_TIMEOUT seconds without activity, then the server
# after as long with no kernel, terminal or request (its task then stops). A busy kernel, or one a
# browser is connected to (an open JupyterLab, which autosaves), keeps the server running.
_IDLE = os.environ.get("LAKEHUB_SERVER_IDLE_TIMEOUT", "").strip()
if _IDLE.isdigit() and int(_IDLE) > 0:
    c.MappingKernelManager.cull_idle_timeout = int(_IDLE)
    c.MappingKernelManager.cull_interval = max(60, min(300, int(_IDLE) // 4))
    c.MappingKernelManager.cull_busy = False
    c.MappingKernelManager.cull_connected = False
    c.ServerApp.shutdown_no_activity_timeout = int(_IDLE)

# The memory and CPU meter in JupyterLab's status bar (jupyter-resource-usage): memory against
# the server's size and CPU. The per-user spawner sets MEM_LIMIT (bytes) and CPU_LIMIT (vCPUs)
# from the size the user picked (the task's memory and cpu), which the extension reads by default.
c.ResourceUseDisplay.track_cpu_percent = True
c.ResourceUseDisplay.mem_warning_threshold = 0.1  # the meter turns red with 10 % of the memory left
