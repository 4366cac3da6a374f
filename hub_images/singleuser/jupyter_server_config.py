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

Credentials come only from the AWS default chain (on ECS: the task role through the
container-credential variables the hub keeps); no key is ever configured here.
"""

import datetime
import os
import sys

from jupyter_server.files.handlers import FilesHandler
from jupyter_server.services.contents.manager import ContentsManager
from s3contents import S3ContentsManager
from tornado.web import HTTPError
from traitlets import Dict, Unicode

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


class TierContentsManager(ContentsManager):
    """Mounts one S3ContentsManager per top-level folder: `shared` and the user's own.

    The root is a read-only listing of the mounts; everything below a mount is handed to that
    mount's manager (with paths made relative to it), including checkpoints.
    """

    mounts = Dict(help="folder name -> S3 prefix (relative to the bucket)").tag(config=True)
    bucket = Unicode().tag(config=True)
    endpoint_url = Unicode().tag(config=True)
    region_name = Unicode().tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._managers = {
            name: S3ContentsManager(
                parent=self,
                log=self.log,
                bucket=self.bucket,
                prefix=prefix,
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
            )
            for name, prefix in self.mounts.items()
        }

    # /files/<path> must read through this manager, not from the local disk.
    files_handler_class = FilesHandler
    files_handler_params = {}

    def _split(self, path):
        path = (path or "").strip("/")
        head, _, rest = path.partition("/")
        if head not in self._managers:
            raise HTTPError(404, f"{path or '/'}: notebooks live in {' or '.join(sorted(self._managers))}/")
        return head, self._managers[head], rest

    @staticmethod
    def _prefix(mount, model):
        model["path"] = f"{mount}/{model['path']}".rstrip("/") if model["path"] else mount
        if not model.get("name"):
            model["name"] = model["path"].rsplit("/", 1)[-1]
        if model.get("type") == "directory" and isinstance(model.get("content"), list):
            for child in model["content"]:
                TierContentsManager._prefix(mount, child)
        return model

    def _root_model(self, content):
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        model = {
            "name": "", "path": "", "type": "directory", "writable": False, "created": epoch,
            "last_modified": epoch, "mimetype": None, "format": None, "content": None, "size": None,
        }
        if content:
            children = []
            for name in sorted(self._managers):
                child = self._managers[name].get("", content=False)
                child.update(name=name, path=name)
                children.append(child)
            model.update(format="json", content=children)
        return model

    # --- queries ---------------------------------------------------------------------------
    def dir_exists(self, path):
        if not (path or "").strip("/"):
            return True
        try:
            mount, mgr, rest = self._split(path)
        except HTTPError:
            return False
        return mgr.dir_exists(rest)

    def file_exists(self, path=""):
        try:
            mount, mgr, rest = self._split(path)
        except HTTPError:
            return False
        return bool(rest) and mgr.file_exists(rest)

    def is_hidden(self, path):
        if not (path or "").strip("/"):
            return False
        try:
            mount, mgr, rest = self._split(path)
        except HTTPError:
            return False
        return mgr.is_hidden(rest)

    def get(self, path, content=True, type=None, format=None, **kwargs):
        if not (path or "").strip("/"):
            if type not in (None, "directory"):
                raise HTTPError(400, "/ is a directory")
            return self._root_model(content)
        mount, mgr, rest = self._split(path)
        return self._prefix(mount, mgr.get(rest, content=content, type=type, format=format))

    def get_kernel_path(self, path, model=None):
        return ""  # kernels start in the user's home directory

    # --- changes ---------------------------------------------------------------------------
    def save(self, model, path=""):
        mount, mgr, rest = self._split(path)
        if not rest:
            raise HTTPError(400, f"{mount}/ is a mount point and cannot be replaced")
        return self._prefix(mount, mgr.save(model, rest))

    def delete(self, path):
        mount, mgr, rest = self._split(path)
        if not rest:
            raise HTTPError(400, f"{mount}/ cannot be deleted")
        mgr.delete(rest)

    def delete_file(self, path):
        self.delete(path)

    def rename(self, old_path, new_path):
        old_mount, old_mgr, old_rest = self._split(old_path)
        new_mount, new_mgr, new_rest = self._split(new_path)
        if not old_rest or not new_rest:
            raise HTTPError(400, "the top-level folders cannot be renamed")
        if old_mgr is new_mgr:
            return old_mgr.rename(old_rest, new_rest)
        model = old_mgr.get(old_rest, content=True)
        if model["type"] == "directory":
            raise HTTPError(400, "move folders between shared/ and your folder one file at a time")
        new_mgr.save(model, new_rest)
        old_mgr.delete(old_rest)

    def rename_file(self, old_path, new_path):
        self.rename(old_path, new_path)

    # --- checkpoints: each mount keeps its own --------------------------------------------
    def create_checkpoint(self, path):
        mount, mgr, rest = self._split(path)
        return mgr.create_checkpoint(rest)

    def list_checkpoints(self, path):
        mount, mgr, rest = self._split(path)
        return mgr.list_checkpoints(rest)

    def restore_checkpoint(self, checkpoint_id, path):
        mount, mgr, rest = self._split(path)
        return mgr.restore_checkpoint(checkpoint_id, rest)

    def delete_checkpoint(self, checkpoint_id, path):
        mount, mgr, rest = self._split(path)
        return mgr.delete_checkpoint(checkpoint_id, rest)


c.ServerApp.contents_manager_class = TierContentsManager
c.TierContentsManager.bucket = BUCKET
c.TierContentsManager.endpoint_url = ENDPOINT
c.TierContentsManager.region_name = REGION
c.TierContentsManager.mounts = {
    SHARED: f"{PREFIX}/shared",
    HOME_FOLDER: f"{PREFIX}/users/{USER}",
}
# Open JupyterLab in the user's own folder.
c.ServerApp.default_url = f"/lab/tree/{HOME_FOLDER}"
# Notebooks are trusted per user; no terminals into the shared task's file system beyond home.
c.ServerApp.terminals_enabled = True
