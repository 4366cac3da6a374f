"""Notebooks in S3 for the single-user servers: one S3 contents manager per mount, and the router.

`TierContentsManager` is the server's contents manager (hub_images/singleuser/
jupyter_server_config.py configures it). It mounts one `LakehubS3ContentsManager` per top-level
folder -- `shared/` and the user's own folder -- and the root is a read-only listing of the
mounts. Every call below a mount is handed to that mount with all of its arguments
(`require_hash` included); moving and copying between mounts is done here, server-side in S3.

`LakehubS3ContentsManager` extends s3contents' `S3ContentsManager` with what jupyter_server 2.x
and JupyterLab 4 ask of a contents manager. We stay on s3contents 0.11.2: it is the last
release for Python 3.11 (0.12+ implement `require_hash` but require Python >= 3.12), and both
the hub image's Python and this project's are 3.11. What 0.11.2 lacks or gets wrong, and is
done here instead:

- `get(..., require_hash=True)`: `hash`/`hash_algorithm` (sha256 of the stored bytes, from the
  same read as the content); the keys are always present (None unless asked), as in
  FileContentsManager. 0.11.2 drops the flag and JupyterLab 4.6 cannot open any notebook.
- deletes and renames: s3contents deletes through s3fs's `rm`, which sends a multi-object delete
  (DeleteObjects) even for one key and ignores the per-key `Errors` of its 200 answer: a refused
  file stayed while s3contents reported success (a rename was a copy that left the old name).
  Here one file is deleted with DeleteObject, and a folder with DeleteObjects, which S3
  authorizes per key as s3:DeleteObject; each key it refuses (an `Errors` entry of the 200
  answer) makes the call an HTTP error naming it -- 403 for AccessDenied, 500 otherwise -- and
  the keys it did delete are not named as kept. A rename is a copy then a delete: when the delete
  is refused the error says that both names exist. No version id is ever sent: on the versioned
  notebook bucket a delete is a delete marker and every old version stays recoverable.
- hidden files and folders (a name starting with ".") are refused (400 on writes, 404 on
  reads) and not listed unless `allow_hidden`, as FileContentsManager does.
- copy of files and folders (server-side CopyObject), to another mount as well.
- chunked uploads (JupyterLab sends 1 MiB base64 chunks numbered 1, 2, ... and -1 for the last)
  are streamed into an S3 multipart upload instead of being held in memory.
- checkpoints live in S3 beside the file (`<folder>/.ipynb_checkpoints/<name>-checkpoint<ext>`
  in the same mount), not on the task's local disk (s3contents' default).
- s3fs's listing cache is not used: every answer is read from S3 (several servers share a tier
  prefix, and another user's save must show up).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
import mimetypes
import os
import posixpath
import re
import time

import nbformat
from botocore.exceptions import ClientError
from fsspec.asyn import sync
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.services.contents.checkpoints import Checkpoints
from jupyter_server.services.contents.largefilemanager import LargeFileManager
from jupyter_server.services.contents.manager import ContentsManager, copy_pat
from s3contents import S3ContentsManager
from tornado.web import HTTPError
from traitlets import Bool, Dict, HasTraits, Int, Unicode, default, observe

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
HASH_ALGORITHM = "sha256"
DIR_KEEP_FILE = ".s3keep"  # s3contents' folder marker
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
COPY_CONCURRENCY = 16
STALE_UPLOAD_SECONDS = 3600
MAX_SINGLE_COPY = 5 * 1024**3  # CopyObject's limit
FILES_HANDLER_ROOT = "/nonexistent/lakehub-files-come-from-s3"


def _norm(path: str | None) -> str:
    """An API path without leading/trailing slashes; 404 for `.`/`..` segments (no escaping)."""
    path = (path or "").strip("/")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise HTTPError(404, f"No such file or directory: {path}")
    return "/".join(parts)


def _split_parent(path: str) -> tuple[str, str]:
    return tuple(path.rsplit("/", 1)) if "/" in path else ("", path)  # type: ignore[return-value]


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _seconds(ts: datetime.datetime | None) -> datetime.datetime:
    """S3 timestamps to whole seconds in UTC (listings and HEAD differ in precision)."""
    if ts is None:
        return EPOCH
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.UTC)
    return ts.astimezone(datetime.UTC).replace(microsecond=0)


class FilesThroughManager(HasTraits):
    """/files/<path> (downloads, images in notebooks) read through the manager's get(), never
    from the local disk: jupyter_server's FilesHandler is a StaticFileHandler whose get() asks the
    contents manager; tornado still wants a root folder, so it gets one that holds nothing. S3
    mounts are served from S3, and the home's virtual `shared/` never from a real folder."""

    @default("files_handler_class")
    def _default_files_handler_class(self):
        return FilesHandler

    @default("files_handler_params")
    def _default_files_handler_params(self):
        return {"path": FILES_HANDLER_ROOT}


class S3Checkpoints(Checkpoints):
    """One checkpoint per file (id "checkpoint", like FileCheckpoints), kept in S3 next to the
    file under `.ipynb_checkpoints/` of the same mount; created and restored by server-side copy."""

    checkpoint_dir = Unicode(".ipynb_checkpoints", config=True)
    checkpoint_id = "checkpoint"

    def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
        parent, name = _split_parent(_norm(path))
        base, ext = posixpath.splitext(name)
        return _join(parent, self.checkpoint_dir, f"{base}-{checkpoint_id}{ext}")

    def _model(self, head: dict) -> dict:
        return {"id": self.checkpoint_id, "last_modified": _seconds(head.get("LastModified"))}

    def create_checkpoint(self, contents_mgr, path):
        cp = self.checkpoint_path(self.checkpoint_id, path)
        contents_mgr._copy_key(contents_mgr._key(path), contents_mgr, contents_mgr._key(cp))
        return self._model(contents_mgr._head(cp))

    def restore_checkpoint(self, contents_mgr, checkpoint_id, path):
        cp = self.checkpoint_path(checkpoint_id, path)
        if contents_mgr._head(cp) is None:
            raise HTTPError(404, f"checkpoint does not exist: {path}@{checkpoint_id}")
        contents_mgr._copy_key(contents_mgr._key(cp), contents_mgr, contents_mgr._key(path))

    def rename_checkpoint(self, checkpoint_id, old_path, new_path):
        self.move_checkpoint(checkpoint_id, old_path, self, new_path)

    def move_checkpoint(self, checkpoint_id, old_path, target: S3Checkpoints, new_path):
        """Move a checkpoint to `new_path` of `target` (the same or another mount's)."""
        mgr, to_mgr = self.parent, target.parent
        old_cp = self.checkpoint_path(checkpoint_id, old_path)
        new_cp = target.checkpoint_path(checkpoint_id, new_path)
        if mgr._head(old_cp) is None:
            return
        mgr._copy_key(mgr._key(old_cp), to_mgr, to_mgr._key(new_cp))
        mgr._delete_key(mgr._key(old_cp))

    def delete_checkpoint(self, checkpoint_id, path):
        mgr = self.parent
        cp = self.checkpoint_path(checkpoint_id, path)
        if mgr._head(cp) is None:
            raise HTTPError(404, f"checkpoint does not exist: {path}@{checkpoint_id}")
        mgr._delete_key(mgr._key(cp))

    def list_checkpoints(self, path):
        head = self.parent._head(self.checkpoint_path(self.checkpoint_id, path))
        return [] if head is None else [self._model(head)]


class _Upload:
    """A chunked upload in progress: an S3 multipart upload fed part by part."""

    def __init__(self, key: str, upload_id: str | None):
        self.key, self.upload_id = key, upload_id
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.started = time.monotonic()


CREDENTIALS_WAIT = 60.0  # server start: how long the S3 mounts wait for the credential relay's session
_credentials_ready = False


def wait_for_credentials(timeout: float = CREDENTIALS_WAIT, sleep=time.sleep) -> None:
    """Resolve AWS credentials as the mounts' S3 clients will, retrying with back-off (bounded)
    while the container provider (the server's credential relay) cannot answer yet.

    s3contents touches each mount's folder as the manager is made; botocore's container provider
    gives up after 3 attempts of 2 s and a failure there would end the server at start (the hub
    then waits out http_timeout). Only when the server gets its credentials from a container URI
    (the relay); once per process."""
    global _credentials_ready
    if _credentials_ready or not os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return
    import botocore.session
    from botocore.exceptions import CredentialRetrievalError, MetadataRetrievalError

    deadline, delay = time.monotonic() + timeout, 1.0
    while True:
        try:
            botocore.session.Session().get_credentials()
            _credentials_ready = True
            return
        except (CredentialRetrievalError, MetadataRetrievalError) as exc:
            if time.monotonic() + delay >= deadline:
                raise
            logging.getLogger("lakehub.contents").warning("no AWS credentials yet (%s); trying again in %.0f s", exc, delay)
            sleep(delay)
            delay = min(delay * 2, 10.0)


class LakehubS3ContentsManager(FilesThroughManager, S3ContentsManager):
    """s3contents' S3ContentsManager completed for jupyter_server 2.x (see the module docstring)."""

    hash_algorithm = Unicode(HASH_ALGORITHM, help="Hash of the stored bytes in get(require_hash=True); fixed.")
    max_copy_folder_size_mb = Int(500, config=True, help="The largest folder (MB) that can be copied.")
    delete_to_trash = Bool(
        True,
        config=True,
        help="On the versioned notebook bucket a delete leaves old versions (S3's trash): deleting a "
        "non-empty folder is then allowed. False (with always_delete_dir False) refuses non-empty "
        "folders, as FileContentsManager does without a trash.",
    )
    always_delete_dir = Bool(False, config=True, help="Delete non-empty folders even when delete_to_trash is False.")
    upload_part_bytes = Int(8 * 1024 * 1024, config=True, help="Multipart part size for chunked uploads (S3: >= 5 MiB).")

    @default("checkpoints_class")
    def _default_checkpoints_class(self):
        return S3Checkpoints

    def __init__(self, *args, **kwargs):
        wait_for_credentials()  # s3contents touches the folder while it is made (below)
        super().__init__(*args, **kwargs)
        self._uploads: dict[str, _Upload] = {}

    # --- S3 primitives (no s3fs listing cache) ---------------------------------------------
    @property
    def _s3(self):
        return self.fs.fs  # the s3fs.S3FileSystem s3contents built (credentials, endpoint)

    @property
    def _root_key(self) -> str:
        return self.prefix.strip("/")

    def _key(self, path: str) -> str:
        return _join(self._root_key, path)

    def _dir_key(self, path: str) -> str:
        key = self._key(path)
        return f"{key}/" if key else ""

    def _call(self, method: str, **kwargs):
        return sync(self._s3.loop, self._s3._call_s3, method, **kwargs)

    def _head(self, path: str, key: str | None = None) -> dict | None:
        try:
            return self._call("head_object", Bucket=self.bucket, Key=key or self._key(path))
        except FileNotFoundError:  # s3fs translates 404/NoSuchKey; AccessDenied stays an error
            return None

    def _read(self, path: str) -> tuple[bytes, dict] | None:
        async def read():
            try:
                resp = await self._s3._call_s3("get_object", Bucket=self.bucket, Key=self._key(path))
            except FileNotFoundError:
                return None
            try:
                return await resp["Body"].read(), resp
            finally:
                resp["Body"].close()

        return sync(self._s3.loop, read)

    def _put(self, path: str, data: bytes) -> None:
        self._call("put_object", Bucket=self.bucket, Key=self._key(path), Body=data)

    def _list(self, path: str, recursive: bool = False):
        """(sub-folder names, object dicts) directly under `path`, or every object below it."""
        prefix, dirs, objects, token = self._dir_key(path), [], [], None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix}
            if not recursive:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            dirs += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            objects += page.get("Contents", [])
            if not page.get("IsTruncated"):
                return dirs, objects
            token = page["NextContinuationToken"]

    def _is_file(self, path: str) -> bool:
        return bool(path) and posixpath.basename(path) != DIR_KEEP_FILE and self._head(path) is not None

    def _is_dir(self, path: str) -> bool:
        if not path:
            return True
        page = self._call("list_objects_v2", Bucket=self.bucket, Prefix=self._dir_key(path), MaxKeys=1)
        return page.get("KeyCount", 0) > 0

    async def _acopy(self, src_key: str, target: LakehubS3ContentsManager, dst_key: str) -> None:
        # CopyObject (no s3fs cache lookups); s3fs's managed multipart copy above 5 GB.
        head = await self._s3._call_s3("head_object", Bucket=self.bucket, Key=src_key)
        size = head.get("ContentLength", 0)
        if size <= MAX_SINGLE_COPY:
            await self._s3._call_s3(
                "copy_object", Bucket=target.bucket, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key}
            )
        else:
            await self._s3._copy_managed(f"{self.bucket}/{src_key}", f"{target.bucket}/{dst_key}", size)

    def _copy_key(self, src_key: str, target: LakehubS3ContentsManager, dst_key: str) -> None:
        sync(self._s3.loop, self._acopy, src_key, target, dst_key)

    def _copy_keys(self, pairs: list[tuple[str, str]], target: LakehubS3ContentsManager) -> None:
        async def copy_all():
            sem = asyncio.Semaphore(COPY_CONCURRENCY)

            async def one(src, dst):
                async with sem:
                    await self._acopy(src, target, dst)

            await asyncio.gather(*(one(s, d) for s, d in pairs))

        sync(self._s3.loop, copy_all)

    def _rel(self, key: str) -> str:
        """A key as the user knows it: its path in this mount."""
        root = self._root_key
        return key[len(root) + 1 :] if root and key.startswith(root + "/") else key

    def _delete_key(self, key: str) -> None:
        """DeleteObject: authorized per key; no version id, so the versioned bucket keeps the old
        versions behind a delete marker. A refusal is an HTTP error naming the file (403 for
        AccessDenied, which s3fs raises as PermissionError)."""
        try:
            self._call("delete_object", Bucket=self.bucket, Key=key)
        except PermissionError as e:
            raise HTTPError(403, f"S3 refused to delete {self._rel(key)} (AccessDenied): {e}") from e

    def _delete_keys(self, keys: list[str]) -> None:
        """DeleteObjects in batches of 1000. S3 deletes each key as its own DeleteObject (authorized
        per key as s3:DeleteObject) and reports each refusal as an entry of the `Errors` list of a
        200 answer: any entry is an HTTP error naming the keys that stay (403 when every refusal
        is AccessDenied, 500 otherwise) and counting the ones deleted -- never a false success,
        and nothing named as kept that S3 deleted. Refused keys are not retried one by one: on AWS
        and in the emulator alike the answer would be the same refusal."""
        errors: list[dict] = []
        done = 0
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            try:
                out = self._call(
                    "delete_objects",
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except Exception as e:  # the whole request failed (network, the bucket's own errors)
                status = 403 if isinstance(e, PermissionError) else 500
                raise HTTPError(status, f"S3 deleted {done} of {len(keys)} object(s), then failed: {e}") from e
            batch_errors = out.get("Errors", [])
            errors += batch_errors
            done += len(batch) - len(batch_errors)
        if not errors:
            return
        status = 403 if all(e.get("Code") == "AccessDenied" for e in errors) else 500
        shown = ", ".join(f"{self._rel(e.get('Key', ''))} ({e.get('Code')})" for e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise HTTPError(
            status,
            f"S3 refused to delete {len(errors)} of {len(keys)} object(s), which stay: "
            f"{shown}{more}; the other {done} were deleted",
        )

    # --- models ---------------------------------------------------------------------------
    def _hidden(self, path: str) -> bool:
        return not self.allow_hidden and self.is_hidden(path)

    def is_hidden(self, path):
        return any(part.startswith(".") for part in _norm(path).split("/") if part)

    def file_exists(self, path):
        return self._is_file(_norm(path))

    def dir_exists(self, path):
        return self._is_dir(_norm(path))

    def exists(self, path):
        path = _norm(path)
        return self._is_file(path) or self._is_dir(path)

    def _base(self, path: str, kind: str, last_modified, size) -> dict:
        ts = _seconds(last_modified)
        return {
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "type": kind,
            "writable": True,
            "created": ts,  # S3 keeps no creation time
            "last_modified": ts,
            "content": None,
            "format": None,
            "mimetype": mimetypes.guess_type(path)[0] if kind == "file" else None,
            "size": size,
            "hash": None,
            "hash_algorithm": None,
        }

    def _dir_times(self, path: str):
        head = self._head("", key=_join(self._key(path), DIR_KEEP_FILE))
        return head["LastModified"] if head else None

    def _dir_model(self, path: str, content: bool) -> dict:
        model = self._base(path, "directory", self._dir_times(path), None)
        if not content:
            return model
        dirs, objects = self._list(path)
        prefix = self._dir_key(path)
        entries = []
        for name in dirs:
            if self.should_list(name) and (self.allow_hidden or not name.startswith(".")):
                entries.append(name)
        sub_times = dict(zip(entries, self._many_dir_times([_join(path, n) for n in entries])))
        children = [self._base(_join(path, n), "directory", sub_times[n], None) for n in entries if sub_times[n] is not False]
        for obj in objects:
            name = obj["Key"][len(prefix) :]
            if not name or name == DIR_KEEP_FILE or "/" in name:
                continue
            if not self.should_list(name) or (not self.allow_hidden and name.startswith(".")):
                continue
            child = _join(path, name)
            kind = "notebook" if name.endswith(".ipynb") else "file"
            children.append(self._base(child, kind, obj.get("LastModified"), obj.get("Size")))
        model.update(content=children, format="json")
        return model

    def _many_dir_times(self, paths: list[str]) -> list:
        """Each folder's time (its marker's), None without a marker, False if it holds no live
        object: the emulator (moto) still reports a folder whose objects are all behind delete
        markers (versioned bucket) as a CommonPrefix; S3 does not."""

        async def heads():
            async def one(p):
                try:
                    h = await self._s3._call_s3("head_object", Bucket=self.bucket, Key=_join(self._key(p), DIR_KEEP_FILE))
                    return h["LastModified"]
                except FileNotFoundError:
                    page = await self._s3._call_s3("list_objects_v2", Bucket=self.bucket, Prefix=self._dir_key(p), MaxKeys=1)
                    return None if page.get("KeyCount", 0) else False

            return await asyncio.gather(*(one(p) for p in paths))

        return sync(self._s3.loop, heads) if paths else []

    def get(self, path, content=True, type=None, format=None, require_hash=False, **kwargs):
        path = _norm(path)
        if self._hidden(path):
            raise HTTPError(404, f"file or directory does not exist: {path!r}")
        if type not in (None, "directory", "notebook", "file"):
            raise HTTPError(400, f"Unknown type passed: {type!r}")
        read = None
        if path and (content or require_hash):
            read = self._read(path)
            head = read[1] if read else None
        else:
            head = self._head(path) if path else None
        if head is None or posixpath.basename(path) == DIR_KEEP_FILE:
            if not self._is_dir(path):
                raise HTTPError(404, f"file or directory does not exist: {path!r}")
            if type not in (None, "directory"):
                raise HTTPError(400, f"{path} is a directory, not a {type}", reason="bad type")
            model = self._dir_model(path, content)
        else:
            if type == "directory":
                raise HTTPError(400, f"{path} is not a directory", reason="bad type")
            kind = "notebook" if type == "notebook" or (type is None and path.endswith(".ipynb")) else "file"
            model = self._base(path, kind, head.get("LastModified"), head.get("ContentLength"))
            if read is not None:
                data = read[0]
                if content:
                    self._fill_content(model, data, format)
                if require_hash:
                    model.update(hash=hashlib.sha256(data).hexdigest(), hash_algorithm=HASH_ALGORITHM)
        self.emit(data={"action": "get", "path": path})
        return model

    def _fill_content(self, model: dict, data: bytes, format: str | None) -> None:
        path = model["path"]
        if model["type"] == "notebook":
            validation_error: dict = {}
            try:
                nb = nbformat.reads(data.decode("utf-8"), as_version=4, capture_validation_error=validation_error)
            except Exception as e:
                raise HTTPError(400, f"Unreadable Notebook: {path} {e!r}") from e
            self.mark_trusted_cells(nb, path)
            model.update(content=nb, format="json")
            self.validate_notebook_model(model, validation_error=validation_error)
            return
        if format in (None, "text", "json"):
            try:
                model.update(content=data.decode("utf-8"), format="text")
            except UnicodeError as e:
                if format in ("text", "json"):
                    raise HTTPError(400, f"{path} is not UTF-8 encoded", reason="bad format") from e
        if model["content"] is None:
            model.update(content=base64.b64encode(data).decode("ascii"), format="base64")
        if model["mimetype"] is None:
            model["mimetype"] = "text/plain" if model["format"] == "text" else "application/octet-stream"

    # --- saving ---------------------------------------------------------------------------
    def _check_writable(self, path: str, what: str = "create") -> None:
        if not path:
            raise HTTPError(400, f"Cannot {what} the root folder")
        if self._hidden(path):
            raise HTTPError(400, f"Cannot {what} hidden file or directory {path!r}")
        parent = _split_parent(path)[0]
        if parent and not self._is_dir(parent):
            raise HTTPError(404, f"No such directory: {parent}")

    @staticmethod
    def _decode(model: dict, path: str) -> bytes:
        fmt, content = model.get("format"), model.get("content")
        try:
            if fmt == "text":
                return content.encode("utf-8")
            if fmt == "base64":
                return base64.b64decode(content.encode("ascii"))
        except Exception as e:
            raise HTTPError(400, f"Encoding error saving {path}: {e}") from e
        raise HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")

    def save(self, model, path=""):
        path = _norm(path)
        if model.get("chunk") is not None:
            return self._save_chunk(model, path)
        if "type" not in model:
            raise HTTPError(400, "No file type provided")
        if "content" not in model and model["type"] != "directory":
            raise HTTPError(400, "No file content provided")
        if model["type"] not in ("notebook", "file", "directory"):
            raise HTTPError(400, f"Unhandled contents type: {model['type']}")
        self._check_writable(path)
        self.run_pre_save_hooks(model=model, path=path)

        validation_error: dict = {}
        try:
            if model["type"] == "notebook":
                nb = nbformat.from_dict(model["content"])
                self.check_and_sign(nb, path)
                text = nbformat.writes(nb, version=nbformat.NO_CONVERT, capture_validation_error=validation_error)
                self._put(path, text.encode("utf-8"))
                # One checkpoint always exists for a notebook (as FileContentsManager keeps one).
                if not self.checkpoints.list_checkpoints(path):
                    self.create_checkpoint(path)
            elif model["type"] == "file":
                self._put(path, self._decode(model, path))
            else:
                if self._is_file(path):
                    raise HTTPError(400, f"Not a directory: {path}")
                if self._head("", key=_join(self._key(path), DIR_KEEP_FILE)) is None:
                    self._put(_join(path, DIR_KEEP_FILE), b"")
        except HTTPError:
            raise
        except Exception as e:
            self.log.exception("Error while saving file: %s", path)
            raise HTTPError(500, f"Unexpected error while saving file: {path} {e}") from e

        message = None
        if model["type"] == "notebook":
            self.validate_notebook_model(model, validation_error=validation_error)
            message = model.get("message")
        out = self.get(path, content=False)
        if message:
            out["message"] = message
        self.run_post_save_hook(model=out, s3_path=self._key(path))
        self.emit(data={"action": "save", "path": path})
        return out

    def _save_chunk(self, model: dict, path: str) -> dict:
        """Chunked upload (chunk 1, 2, ..., -1 for the last): parts of an S3 multipart upload."""
        chunk = int(model["chunk"])
        if "type" not in model:
            raise HTTPError(400, "No file type provided")
        if model["type"] != "file":
            raise HTTPError(400, f'File type "{model["type"]}" is not supported for large file transfer')
        if "content" not in model:
            raise HTTPError(400, "No file content provided")
        data = self._decode(model, path)
        self._prune_uploads()
        upload = self._uploads.get(path)
        if chunk == 1 or (chunk == -1 and upload is None):
            self._check_writable(path)
            if upload is not None:  # a new upload of the same file replaces an unfinished one
                self._abort(path)
            self.run_pre_save_hooks(model=model, path=path)
            upload = _Upload(self._key(path), None)
            self._uploads[path] = upload
        elif upload is None:
            # The parts so far lived in another server process (restarted): start again.
            raise HTTPError(400, f"Chunk {chunk} of {path} has no upload in progress: upload the file again")
        try:
            upload.buffer += data
            while len(upload.buffer) >= self.upload_part_bytes:
                self._upload_part(upload, bytes(upload.buffer[: self.upload_part_bytes]))
                del upload.buffer[: self.upload_part_bytes]
            if chunk == -1:
                if upload.upload_id is None:  # it all fitted in one part: one PUT
                    self._put(path, bytes(upload.buffer))
                else:
                    if upload.buffer:
                        self._upload_part(upload, bytes(upload.buffer))
                    self._call(
                        "complete_multipart_upload",
                        Bucket=self.bucket,
                        Key=upload.key,
                        UploadId=upload.upload_id,
                        MultipartUpload={"Parts": upload.parts},
                    )
                del self._uploads[path]
        except Exception:
            self._abort(path)
            raise
        if chunk != -1:  # the object exists only once the upload completes
            return self._base(path, "file", datetime.datetime.now(datetime.UTC), None)
        out = self.get(path, content=False)
        if chunk == -1:
            self.run_post_save_hook(model=out, s3_path=self._key(path))
            self.emit(data={"action": "save", "path": path})
        return out

    def _upload_part(self, upload: _Upload, data: bytes) -> None:
        if upload.upload_id is None:
            upload.upload_id = self._call("create_multipart_upload", Bucket=self.bucket, Key=upload.key)["UploadId"]
        number = len(upload.parts) + 1
        out = self._call(
            "upload_part", Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, PartNumber=number, Body=data
        )
        upload.parts.append({"PartNumber": number, "ETag": out["ETag"]})

    def _abort(self, path: str) -> None:
        upload = self._uploads.pop(path, None)
        if upload and upload.upload_id:
            try:
                self._call("abort_multipart_upload", Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id)
            except Exception:  # best effort; a lifecycle rule or the next upload cleans up
                self.log.warning("could not abort the multipart upload of %s", path, exc_info=True)

    def _prune_uploads(self) -> None:
        now = time.monotonic()
        for path in [p for p, u in self._uploads.items() if now - u.started > STALE_UPLOAD_SECONDS]:
            self._abort(path)

    # --- delete, rename, copy -------------------------------------------------------------
    def delete_file(self, path):
        path = _norm(path)
        if not path:
            raise HTTPError(400, "Can't delete root")
        if self._hidden(path):
            raise HTTPError(400, f"Cannot delete hidden file or directory {path!r}")
        if self._is_file(path):
            self._delete_key(self._key(path))
            return
        if not self._is_dir(path):
            raise HTTPError(404, f"file or directory does not exist: {path!r}")
        _, objects = self._list(path, recursive=True)
        keys = [o["Key"] for o in objects]
        if not self.delete_to_trash and not self.always_delete_dir:
            own = {_join(self._key(path), DIR_KEEP_FILE)}
            cp_dir = self._dir_key(_join(path, self.checkpoints.checkpoint_dir))
            if any(k not in own and not k.startswith(cp_dir) for k in keys):
                raise HTTPError(400, f"Directory {path} not empty")
        self._delete_keys(keys)

    def rename_file(self, old_path, new_path):
        self.move(old_path, self, new_path)

    def move(self, old_path: str, target: LakehubS3ContentsManager, new_path: str) -> None:
        """Rename/move a file or folder to `new_path` in `target` (this mount or another)."""
        old_path, new_path = _norm(old_path), _norm(new_path)
        if target is self and old_path == new_path:
            return
        if not old_path or not new_path:
            raise HTTPError(400, "Cannot rename the root folder")
        if self._hidden(old_path) or target._hidden(new_path):
            raise HTTPError(400, f"Cannot rename file or directory {old_path!r}")
        is_file = self._is_file(old_path)
        if not is_file and not self._is_dir(old_path):
            raise HTTPError(404, f"File or directory does not exist: {old_path}")
        if target.exists(new_path):
            raise HTTPError(409, f"File already exists: {new_path}")
        if target is self and new_path.startswith(old_path + "/"):
            raise HTTPError(400, f"Cannot move {old_path} into itself")
        parent = _split_parent(new_path)[0]
        if parent and not target._is_dir(parent):
            raise HTTPError(404, f"No such directory: {parent}")
        if is_file:
            keys = [self._key(old_path)]
            self._copy_key(keys[0], target, target._key(new_path))
        else:
            _, objects = self._list(old_path, recursive=True)
            src_prefix, dst_prefix = self._dir_key(old_path), target._dir_key(new_path)
            keys = [o["Key"] for o in objects]
            self._copy_keys([(k, dst_prefix + k[len(src_prefix) :]) for k in keys], target)
        try:
            if is_file:
                self._delete_key(keys[0])
            else:
                self._delete_keys(keys)
        except HTTPError as e:  # the copy is made: say that both names now exist
            raise HTTPError(e.status_code, f"{new_path} was written, but {old_path} could not be removed: {e.log_message}") from e

    def copy(self, from_path, to_path=None, target: LakehubS3ContentsManager | None = None):
        """Copy a file or folder (server-side); `to_path` a folder (the copy gets a free
        "-Copy<n>" name there) or a new path; `target` another mount's manager (default: this)."""
        target = target or self
        path = _norm(from_path)
        to_path = None if to_path is None else _norm(to_path)
        if not path:
            raise HTTPError(400, "Cannot copy the root folder")
        if self._hidden(path) or (to_path and target._hidden(to_path)):
            raise HTTPError(400, f"Cannot copy hidden file or directory {path!r}")
        from_dir, from_name = _split_parent(path)
        is_file = self._is_file(path)
        if not is_file and not self._is_dir(path):
            raise HTTPError(404, f"file or directory does not exist: {path!r}")
        specified = to_path is not None
        if not specified:
            to_path = from_dir
        if target._is_dir(to_path):
            to_name = target.increment_filename(copy_pat.sub(".", from_name), to_path, insert="-Copy")
            dest = _join(to_path, to_name)
        elif is_file and specified:
            parent = _split_parent(to_path)[0]
            if parent and not target._is_dir(parent):
                raise HTTPError(404, f"No such parent directory: {parent} to copy file in")
            dest = to_path
        elif not is_file and specified:  # a folder into a new folder (as FileContentsManager)
            dest = _join(to_path, from_name)
        else:
            raise HTTPError(404, f"No such directory: {to_path}")
        if is_file:
            self._copy_key(self._key(path), target, target._key(dest))
        else:
            _, objects = self._list(path, recursive=True)
            size = sum(o.get("Size", 0) for o in objects)
            if size > self.max_copy_folder_size_mb * 1024 * 1024:
                raise HTTPError(400, f"Can't copy folders larger than {self.max_copy_folder_size_mb}MB, {path!r} is {size} bytes")
            src_prefix, dst_prefix = self._dir_key(path), target._dir_key(dest)
            self._copy_keys([(o["Key"], dst_prefix + o["Key"][len(src_prefix) :]) for o in objects], target)
        target.emit(data={"action": "copy", "path": dest, "source_path": path})
        return target.get(dest, content=False)

    def get_kernel_path(self, path, model=None):
        return ""


class TierContentsManager(FilesThroughManager, ContentsManager):
    """Mounts one LakehubS3ContentsManager per top-level folder: `shared` and the user's own.

    The root is a read-only listing of the mounts; everything below a mount is handed to that
    mount's manager (paths made relative to it) with every argument, checkpoints included.
    Renames and copies between mounts are server-side S3 copies (then a delete, for a move).
    """

    mounts = Dict(help="folder name -> S3 prefix (relative to the bucket)").tag(config=True)
    bucket = Unicode().tag(config=True)
    endpoint_url = Unicode().tag(config=True)
    region_name = Unicode().tag(config=True)
    hash_algorithm = Unicode(HASH_ALGORITHM)
    mount_class = LakehubS3ContentsManager
    # Settings of the mounts, set once here for all of them (names as FileContentsManager's).
    max_copy_folder_size_mb = Int(500, config=True, help="The largest folder (MB) that can be copied.")
    delete_to_trash = Bool(True, config=True, help="See LakehubS3ContentsManager.delete_to_trash.")
    always_delete_dir = Bool(False, config=True, help="See LakehubS3ContentsManager.always_delete_dir.")
    # ... and one notary (notebook trust signatures) for the router and every mount.
    _MOUNT_SETTINGS = ("allow_hidden", "max_copy_folder_size_mb", "delete_to_trash", "always_delete_dir", "notary")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._managers = {
            name: self.mount_class(
                parent=self,
                log=self.log,
                bucket=self.bucket,
                prefix=prefix,
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                **{name: getattr(self, name) for name in self._MOUNT_SETTINGS},
            )
            for name, prefix in self.mounts.items()
        }

    @observe(*_MOUNT_SETTINGS)
    def _mount_setting_changed(self, change):
        for mgr in getattr(self, "_managers", {}).values():
            setattr(mgr, change["name"], change["new"])

    # --- mount resolution (the one place paths are mapped) ----------------------------------
    def _split(self, path, write=False):
        """(mount name, its manager, path inside it) for an API path below a mount."""
        path = _norm(path)
        head, _, rest = path.partition("/")
        if head not in self._managers:
            if write:
                raise HTTPError(403, f"{path or '/'}: the top level is read-only; save in {' or '.join(sorted(self._managers))}/")
            raise HTTPError(404, f"{path or '/'}: notebooks live in {' or '.join(sorted(self._managers))}/")
        return head, self._managers[head], rest

    @staticmethod
    def _outer(mount, path):
        """The API path of `path` inside `mount`."""
        return f"{mount}/{path}" if path else mount

    def _prefix(self, mount, model):
        model["path"] = self._outer(mount, model["path"])
        model["name"] = model["path"].rsplit("/", 1)[-1]
        if model.get("type") == "directory" and isinstance(model.get("content"), list):
            for child in model["content"]:
                self._prefix(mount, child)
        return model

    def _root_model(self, content):
        model = {
            "name": "",
            "path": "",
            "type": "directory",
            "writable": False,
            "created": EPOCH,
            "last_modified": EPOCH,
            "mimetype": None,
            "format": None,
            "content": None,
            "size": None,
            "hash": None,
            "hash_algorithm": None,
        }
        if content:
            children = []
            for name in sorted(self._managers):
                child = self._prefix(name, self._managers[name].get("", content=False))
                children.append(child)
            model.update(format="json", content=children)
        return model

    @staticmethod
    def _is_root(path):
        return not (path or "").strip("/")

    # --- queries ----------------------------------------------------------------------------
    def _ask(self, path, at_root, question):
        """A yes/no query: `at_root` at the top level, False for a path in no mount, else what
        `question(manager, path inside it)` answers."""
        if self._is_root(path):
            return at_root
        try:
            _mount, mgr, rest = self._split(path)
        except HTTPError:
            return False
        return question(mgr, rest)

    def dir_exists(self, path):
        return self._ask(path, True, lambda mgr, rest: mgr.dir_exists(rest))

    def file_exists(self, path=""):
        return self._ask(path, False, lambda mgr, rest: bool(rest) and mgr.file_exists(rest))

    def is_hidden(self, path):
        return self._ask(path, False, lambda mgr, rest: mgr.is_hidden(rest))

    def get(self, path, content=True, type=None, format=None, require_hash=False, **kwargs):
        if self._is_root(path):
            if type not in (None, "directory"):
                raise HTTPError(400, f"/ is a directory, not a {type}", reason="bad type")
            return self._root_model(content)
        mount, mgr, rest = self._split(path)
        model = mgr.get(rest, content=content, type=type, format=format, require_hash=require_hash, **kwargs)
        return self._prefix(mount, model)

    def get_kernel_path(self, path, model=None):
        return ""  # kernels start in the user's home directory

    # --- changes ----------------------------------------------------------------------------
    def save(self, model, path="", **kwargs):
        mount, mgr, rest = self._split(path, write=True)
        if not rest:
            raise HTTPError(400, f"{mount}/ is a mount point and cannot be replaced")
        return self._prefix(mount, mgr.save(model, rest, **kwargs))

    def delete(self, path):
        if self._is_root(path):
            raise HTTPError(400, "Can't delete root")
        mount, mgr, rest = self._split(path, write=True)
        if not rest:
            raise HTTPError(400, f"{mount}/ cannot be deleted")
        mgr.delete(rest)

    def delete_file(self, path):
        self.delete(path)

    def rename(self, old_path, new_path):
        _old_mount, old_mgr, old_rest = self._split(old_path, write=True)
        _new_mount, new_mgr, new_rest = self._split(new_path, write=True)
        if not old_rest or not new_rest:
            raise HTTPError(400, "the top-level folders cannot be renamed")
        if old_mgr is new_mgr:
            old_mgr.rename(old_rest, new_rest)  # moves its checkpoints too
        else:
            was_file = old_mgr.file_exists(old_rest)
            old_mgr.move(old_rest, new_mgr, new_rest)  # a folder's checkpoints move inside it
            if was_file:
                old_mgr.checkpoints.move_checkpoint(S3Checkpoints.checkpoint_id, old_rest, new_mgr.checkpoints, new_rest)
        self.emit(data={"action": "rename", "path": _norm(new_path), "source_path": _norm(old_path)})

    def rename_file(self, old_path, new_path):
        self.rename(old_path, new_path)

    def copy(self, from_path, to_path=None):
        """JupyterLab's copy (POST /api/contents/<dir> {"copy_from": path}), also across mounts."""
        from_mount, from_mgr, from_rest = self._split(from_path)
        if not from_rest:
            raise HTTPError(400, f"{from_mount}/ is a mount point and cannot be copied")
        if to_path is None:
            to_path = _split_parent(_norm(from_path))[0]
        to_mount, to_mgr, to_rest = self._split(to_path, write=True)
        return self._prefix(to_mount, from_mgr.copy(from_rest, to_rest, target=to_mgr))

    # --- checkpoints: each mount keeps its own ----------------------------------------------
    def create_checkpoint(self, path):
        _mount, mgr, rest = self._split(path)
        return mgr.create_checkpoint(rest)

    def list_checkpoints(self, path):
        _mount, mgr, rest = self._split(path)
        return mgr.list_checkpoints(rest)

    def restore_checkpoint(self, checkpoint_id, path):
        _mount, mgr, rest = self._split(path, write=True)
        return mgr.restore_checkpoint(checkpoint_id, rest)

    def delete_checkpoint(self, checkpoint_id, path):
        _mount, mgr, rest = self._split(path, write=True)
        return mgr.delete_checkpoint(checkpoint_id, rest)


# ----------------------------------------------------------------------------------------------
# The user's home as the file browser's root (issue 15)
# ----------------------------------------------------------------------------------------------
# An S3 version id as S3 and the emulator give them (URL-safe characters; "null" for an object
# written while the bucket was unversioned); a checkpoint id that is not one is refused (400).
VERSION_ID = re.compile(r"null|[A-Za-z0-9._+=-]{1,1024}")
SHA256_META = "sha256"  # user metadata on each central copy: the bytes' hash (the ETag is not an
#                         MD5 under SSE-KMS or for multipart uploads)


def _file_sha256(os_path: str) -> str:
    digest = hashlib.sha256()
    with open(os_path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class CentralCopyCheckpoints(Checkpoints):
    """Checkpoints of home files = the S3 versions of their central copy (the versioned notebook
    bucket): the newest `max_checkpoints` of them, the id is the S3 version id. The list is in
    time order, the newest last, as JupyterLab reads it: its "Revert to checkpoint" picker reverses
    the list to show the newest first, and its "Last Checkpoint" is the list's last entry.

    - create_checkpoint makes sure the central copy holds the file as it is now (every save
      through Jupyter already wrote it; a file written by code gets its first copy here) and
      returns that version: no second version of the same bytes.
    - restore_checkpoint writes the version's bytes back to the home file and to the central copy
      (a new version: the restored state is itself a version; nothing is lost).
    - versions are never deleted here (no version id is ever sent with a delete): delete_checkpoint
      is refused, deleting or renaming a file leaves the old versions behind a delete marker
      (the bucket's lifecycle rule expires noncurrent versions).
    """

    max_checkpoints = Int(20, config=True, help="How many versions of a file the checkpoint list shows (newest first).")

    @property
    def _home(self) -> HomeContentsManager:
        return self.parent

    @staticmethod
    def _model(version_id: str, last_modified) -> dict:
        return {"id": version_id, "last_modified": _seconds(last_modified)}

    def create_checkpoint(self, contents_mgr, path):
        head = contents_mgr._mirror_file(path, only_if_changed=True)
        # "null": S3's version id of an object written while the bucket was unversioned
        return self._model(head.get("VersionId") or "null", head["LastModified"])

    def restore_checkpoint(self, contents_mgr, checkpoint_id, path):
        contents_mgr._restore_version(path, checkpoint_id)

    def rename_checkpoint(self, checkpoint_id, old_path, new_path):
        pass  # the central copy moved with the file (HomeContentsManager.rename_file)

    def rename_all_checkpoints(self, old_path, new_path):
        pass

    def delete_checkpoint(self, checkpoint_id, path):
        raise HTTPError(403, "Versions of your files are kept in the notebook bucket and cannot be deleted from JupyterLab")

    def delete_all_checkpoints(self, path):
        pass  # the versions stay behind the delete marker (the trash)

    def list_checkpoints(self, path):
        newest_first = self._home._versions(path, self.max_checkpoints)
        return [self._model(v["VersionId"], v["LastModified"]) for v in reversed(newest_first)]


class HomeContentsManager(FilesThroughManager, LargeFileManager):
    """The single-user server's contents manager: the user's home (jupyter_server's own
    LargeFileManager, its semantics unchanged) with `shared/` at the root a virtual folder on S3
    (a LakehubS3ContentsManager on the tier's shared prefix), and a central copy of every file
    saved through Jupyter in the versioned notebook bucket (`central_prefix`/<path>), whose S3
    versions are the file's checkpoints (CentralCopyCheckpoints).

    A real folder named `shared` in the home is not shown: the name is the tier's shared folder.
    A failure to write the central copy is an HTTP error the user sees; the home file is saved.
    """

    bucket = Unicode(config=True, help="The notebook bucket (versioned).")
    endpoint_url = Unicode(config=True, help="S3 endpoint (the emulator's in local mode).")
    region_name = Unicode(config=True)
    central_prefix = Unicode(config=True, help="Where the central copies go: tiers/<tier>/users/<user folder>.")
    shared_prefix = Unicode("", config=True, help="The tier's shared folder (tiers/<tier>/shared); empty: none.")
    shared_name = Unicode("shared", help="The virtual folder's name at the root.")
    hash_algorithm = Unicode(HASH_ALGORITHM)

    @default("checkpoints_class")
    def _default_checkpoints_class(self):
        return CentralCopyCheckpoints

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        s3 = {
            "parent": self,
            "log": self.log,
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
        }
        self._central = LakehubS3ContentsManager(prefix=self.central_prefix.strip("/"), **s3)
        self._shared = LakehubS3ContentsManager(prefix=self.shared_prefix.strip("/"), **s3) if self.shared_prefix else None

    # --- shared/ routing ------------------------------------------------------------------
    def _in_shared(self, path) -> str | None:
        """The path inside shared/ for an API path at or below it, else None."""
        if self._shared is None:
            return None
        head, _, rest = (path or "").strip("/").partition("/")
        return _norm(rest) if head == self.shared_name else None

    def _outer(self, rest: str) -> str:
        return f"{self.shared_name}/{rest}" if rest else self.shared_name

    def _prefixed(self, model: dict) -> dict:
        model["path"] = self._outer(model["path"])
        model["name"] = model["path"].rsplit("/", 1)[-1]
        if model.get("type") == "directory" and isinstance(model.get("content"), list):
            for child in model["content"]:
                self._prefixed(child)
        return model

    def file_exists(self, path=""):
        rest = self._in_shared(path)
        return super().file_exists(path) if rest is None else bool(rest) and self._shared.file_exists(rest)

    def dir_exists(self, path):
        rest = self._in_shared(path)
        return super().dir_exists(path) if rest is None else (not rest or self._shared.dir_exists(rest))

    def exists(self, path):
        rest = self._in_shared(path)
        return super().exists(path) if rest is None else (not rest or self._shared.exists(rest))

    def is_hidden(self, path):
        rest = self._in_shared(path)
        return super().is_hidden(path) if rest is None else self._shared.is_hidden(rest)

    def get(self, path, content=True, type=None, format=None, require_hash=False, **kwargs):
        rest = self._in_shared(path)
        if rest is not None:
            model = self._shared.get(rest, content=content, type=type, format=format, require_hash=require_hash)
            model = self._prefixed(model)
            if not rest:
                model["writable"] = False  # the folder itself cannot be renamed or deleted
            return model
        model = super().get(path, content=content, type=type, format=format, require_hash=require_hash)
        if self._shared is not None and not path.strip("/") and isinstance(model.get("content"), list):
            children = [m for m in model["content"] if m["name"] != self.shared_name]
            shared = self._prefixed(self._shared.get("", content=False))
            shared["writable"] = False
            model["content"] = [shared, *children]
        return model

    def get_kernel_path(self, path, model=None):
        if self._in_shared(path) is not None:
            return ""  # a notebook in shared/ runs in the home
        return super().get_kernel_path(path, model)

    # --- changes --------------------------------------------------------------------------
    def _refuse_mount(self, rest: str | None, what: str) -> None:
        if rest == "":
            raise HTTPError(400, f"{self.shared_name}/ is the tier's shared folder and cannot be {what}")

    def save(self, model, path=""):
        rest = self._in_shared(path)
        if rest is not None:
            self._refuse_mount(rest, "replaced")
            return self._prefixed(self._shared.save(model, rest))
        out = super().save(model, path)
        chunk = model.get("chunk")
        if model.get("type") in ("file", "notebook") and chunk in (None, -1):
            # (a notebook's first save already made its first checkpoint: the same bytes)
            self._mirror_file(path, only_if_changed=True)
        return out

    def delete(self, path):
        rest = self._in_shared(path)
        if rest is None:
            return super().delete(path)
        self._refuse_mount(rest, "deleted")
        self._shared.delete(rest)

    def delete_file(self, path):
        path = path.strip("/")
        was_dir = super().dir_exists(path)
        super().delete_file(path)
        self._central_call(path, "delete", self._delete_central, path, was_dir)

    def rename(self, old_path, new_path):
        old_rest, new_rest = self._in_shared(old_path), self._in_shared(new_path)
        if old_rest is None and new_rest is None:
            return super().rename(old_path, new_path)
        self._refuse_mount(old_rest, "renamed")
        self._refuse_mount(new_rest, "replaced")
        if old_rest is not None and new_rest is not None:
            self._shared.rename(old_rest, new_rest)
        else:  # between the home and shared/: a copy, then the original is deleted
            if self.exists(new_path):
                raise HTTPError(409, f"File already exists: {new_path}")
            if not self.file_exists(old_path):
                raise HTTPError(
                    400,
                    f"{old_path}: only files move between your home and {self.shared_name}/ (copy a folder's files one by one)",
                )
            self._save_as(old_path, new_path)
            self.delete(old_path)
        self.emit(data={"action": "rename", "path": new_path.strip("/"), "source_path": old_path.strip("/")})

    def rename_file(self, old_path, new_path):
        old_path, new_path = old_path.strip("/"), new_path.strip("/")
        super().rename_file(old_path, new_path)
        if old_path != new_path:
            self._central_call(new_path, "rename", self._rename_central, old_path, new_path)

    def copy(self, from_path, to_path=None):
        from_rest = self._in_shared(from_path)
        if to_path is None:
            to_path = _split_parent(from_path.strip("/"))[0]
        to_rest = self._in_shared(to_path)
        if from_rest is None and to_rest is None:
            out = super().copy(from_path, to_path)  # files: through save (mirrored there)
            if out["type"] == "directory":
                self._central_call(out["path"], "copy", self._mirror_tree, out["path"])
            return out
        self._refuse_mount(from_rest, "copied")
        if from_rest is not None and to_rest is not None:
            return self._prefixed(self._shared.copy(from_rest, to_rest))
        return ContentsManager.copy(self, from_path, to_path)  # get + save: files only (400 for folders)

    def _save_as(self, from_path: str, to_path: str) -> None:
        model = self.get(from_path, content=True)
        self.save({"type": model["type"], "format": model["format"], "content": model["content"]}, to_path)

    # --- the central copy -----------------------------------------------------------------
    def _central_call(self, path: str, what: str, fn, *args):
        """Run an S3 step of the central copy; a failure is the user's error to see, with S3's
        status where it gave one (403: refused)."""
        try:
            return fn(*args)
        except HTTPError as e:
            status = 403 if e.status_code == 403 else 500
            raise HTTPError(status, f"{path}: done in your home, but the central copy's {what} failed: {e.log_message}") from e
        except Exception as e:  # botocore/s3fs errors of every kind
            self.log.exception("central copy %s of %s failed", what, path)
            where = f"s3://{self.bucket}/{self._central._key(path)}"
            status = 403 if isinstance(e, PermissionError) else 500
            raise HTTPError(status, f"{path}: done in your home, but the central copy's {what} ({where}) failed: {e}") from e

    def _mirror_file(self, path: str, only_if_changed: bool = False) -> dict:
        """Write the home file's bytes to its central copy; (with only_if_changed) keep the
        newest version when it holds the same bytes. Returns the copy's HEAD (VersionId...)."""
        path = path.strip("/")

        def put():
            os_path = self._get_os_path(path)
            if not os.path.isfile(os_path):
                raise HTTPError(404, f"No such file: {path}")
            digest = _file_sha256(os_path)
            key = self._central._key(path)
            if only_if_changed:
                head = self._central._head("", key=key)
                if head is not None and head.get("Metadata", {}).get(SHA256_META) == digest:
                    return head
            with open(os_path, "rb") as f:
                self._central._call("put_object", Bucket=self.bucket, Key=key, Body=f.read(), Metadata={SHA256_META: digest})
            return self._central._head("", key=key)

        return self._central_call(path, "write", put)

    def _mirror_tree(self, path: str) -> None:
        root = self._get_os_path(path)
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if self.allow_hidden or not d.startswith(".")]
            for name in files:
                if self.allow_hidden or not name.startswith("."):
                    rel = os.path.relpath(os.path.join(folder, name), self.root_dir).replace(os.sep, "/")
                    self._mirror_file(rel)

    def _delete_central(self, path: str, was_dir: bool) -> None:
        if was_dir:
            _, objects = self._central._list(path, recursive=True)
            if objects:
                self._central._delete_keys([o["Key"] for o in objects])
        elif self._central._head(path) is not None:
            self._central._delete_key(self._central._key(path))  # a delete marker; versions stay

    def _rename_central(self, old_path: str, new_path: str) -> None:
        if super().dir_exists(new_path):
            _, objects = self._central._list(old_path, recursive=True)
            src, dst = self._central._dir_key(old_path), self._central._dir_key(new_path)
            keys = [o["Key"] for o in objects]
            self._central._copy_keys([(k, dst + k[len(src) :]) for k in keys], self._central)
            self._central._delete_keys(keys)
            return
        if self._central._head(old_path) is not None:
            self._central._copy_key(self._central._key(old_path), self._central, self._central._key(new_path))
            self._central._delete_key(self._central._key(old_path))
        else:  # a file written by code: its first central copy
            self._mirror_file(new_path)

    def _versions(self, path: str, limit: int) -> list[dict]:
        """The central copy's versions (not delete markers), newest first, at most `limit`."""
        if self._in_shared(path) is not None:
            return []
        key = self._central._key(path.strip("/"))
        found, kwargs = [], {"Bucket": self.bucket, "Prefix": key}
        for _ in range(100):  # pages of up to 1000 versions; other keys may share the prefix
            if len(found) >= limit:
                break
            page = self._central._call("list_object_versions", **kwargs)
            found += [v for v in page.get("Versions", []) if v["Key"] == key]
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page.get("NextVersionIdMarker"))
        return found[:limit]  # S3 lists a key's versions newest first

    def _restore_version(self, path: str, version_id: str) -> None:
        """Put version `version_id` of the file's central copy back: the home file gets its
        bytes, and the central copy a new current version made from it by a server-side copy
        (CopyObject with the version id: its bytes and its sha256 metadata). The version it
        replaces stays a version: nothing is lost, and the restore itself can be undone."""
        path = path.strip("/")
        if not VERSION_ID.fullmatch(version_id or ""):
            raise HTTPError(400, f"{version_id!r} is not a checkpoint of {path}: checkpoint ids are S3 version ids")
        key = self._central._key(path)
        s3 = self._central._s3

        async def read():
            resp = await s3._call_s3("get_object", Bucket=self.bucket, Key=key, VersionId=version_id)
            try:
                return await resp["Body"].read()
            finally:
                resp["Body"].close()

        try:
            data = sync(s3.loop, read)
        except (FileNotFoundError, ClientError) as e:
            raise HTTPError(404, f"checkpoint does not exist: {path}@{version_id}") from e
        os_path = self._get_os_path(path)
        self._save_file(os_path, base64.b64encode(data).decode("ascii"), "base64")
        current = self._central._head("", key=key)
        if current is None or (current.get("VersionId") or "null") != version_id:
            # (S3 refuses to copy the current version onto itself; restoring it only rewrites the home file)
            source = {"Bucket": self.bucket, "Key": key, "VersionId": version_id}
            self._central_call(
                path, "restore", lambda: self._central._call("copy_object", Bucket=self.bucket, Key=key, CopySource=source)
            )
        self._mirror_file(path, only_if_changed=True)  # (a version written without the hash: once more)

    # --- shared/ checkpoints go to the S3 manager -------------------------------------------
    def create_checkpoint(self, path):
        rest = self._in_shared(path)
        return super().create_checkpoint(path) if rest is None else self._shared.create_checkpoint(rest)

    def list_checkpoints(self, path):
        rest = self._in_shared(path)
        return super().list_checkpoints(path) if rest is None else self._shared.list_checkpoints(rest)

    def restore_checkpoint(self, checkpoint_id, path):
        rest = self._in_shared(path)
        if rest is None:
            return super().restore_checkpoint(checkpoint_id, path)
        return self._shared.restore_checkpoint(checkpoint_id, rest)

    def delete_checkpoint(self, checkpoint_id, path):
        rest = self._in_shared(path)
        if rest is None:
            return super().delete_checkpoint(checkpoint_id, path)
        return self._shared.delete_checkpoint(checkpoint_id, rest)
