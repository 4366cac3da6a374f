"""The project's contents manager (lakehub_hub.contents) on the emulator's versioned S3: what
JupyterLab 4.6 needs (hashes), deletes and renames that really happen, copies and moves between
the user's folder and shared/, large chunked uploads, and the read-only root."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import nbformat
import pytest
import tornado.httpclient
from lakehub_hub.contents import TierContentsManager
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets.config import Config

USER = "alice"


def _keys(s3, bucket, prefix):
    return sorted(o["Key"][len(prefix) + 1 :] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", []))


def _names(cm, path):
    return sorted(c["name"] for c in cm.get(path)["content"])


def _notebook_bytes(cm, path):
    mgr = cm._managers[path.split("/", 1)[0]]
    return mgr._read(path.split("/", 1)[1])[0]


@pytest.fixture
def jp_server_config(tier_config):
    return Config(
        {
            "ServerApp": {"contents_manager_class": TierContentsManager, "jpserver_extensions": {}},
            "TierContentsManager": tier_config,
        }
    )


@pytest.fixture
def api(jp_fetch):
    async def call(method, path, body=None, **params):
        kwargs = {"method": method, "params": params}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            kwargs.update(body="", allow_nonstandard_methods=True)
        r = await jp_fetch("api", "contents", *path.split("/"), **kwargs)
        return json.loads(r.body) if r.body else None

    return call


# --- hashes (JupyterLab 4.6 opens every file with ?hash=1) --------------------------------------
def test_get_notebook_and_file_with_hash_is_sha256_of_the_stored_bytes(tier_manager):
    cm = tier_manager
    nb = cm.new_untitled(USER, type="notebook")
    cm.save({"type": "file", "format": "text", "content": "héllo\n"}, f"{USER}/notes.txt")
    for path, content in ((nb["path"], True), (f"{USER}/notes.txt", True), (f"{USER}/notes.txt", False)):
        model = cm.get(path, content=content, require_hash=True)
        assert model["hash_algorithm"] == "sha256"
        assert model["hash"] == hashlib.sha256(_notebook_bytes(cm, path)).hexdigest()
        assert (model["content"] is not None) == content
    plain = cm.get(nb["path"])
    assert plain["hash"] is None and plain["hash_algorithm"] is None  # keys present, not asked


async def test_rest_get_with_hash_1_answers_hash_and_algorithm(tier_manager, api):
    await api("POST", USER, {"type": "notebook"})
    model = await api("GET", f"{USER}/Untitled.ipynb", hash="1")
    assert model["hash"] and model["hash_algorithm"] == "sha256"
    assert model["content"]["nbformat"] == 4
    text = await api("GET", f"{USER}/Untitled.ipynb", hash="1", type="file", content="0")
    assert text["hash"] == model["hash"] and text["content"] is None


# --- rename and delete --------------------------------------------------------------------------
def test_rename_leaves_exactly_one_object(tier_role_manager, tier_role_env, tier_mounts, notebook_bucket):
    cm, s3 = tier_role_manager, tier_role_env
    nb = cm.new_untitled(USER, type="notebook")
    cm.rename(nb["path"], f"{USER}/analysis.ipynb")
    keys = _keys(s3, notebook_bucket, tier_mounts[USER])
    assert [k for k in keys if k.endswith(".ipynb") and "/.ipynb_checkpoints/" not in f"/{k}"] == ["analysis.ipynb"]
    assert _names(cm, USER) == ["analysis.ipynb"]
    assert cm.list_checkpoints(f"{USER}/analysis.ipynb")  # the checkpoint followed


def test_delete_removes_from_listing_and_keeps_an_old_version(tier_role_manager, tier_role_env, tier_mounts, notebook_bucket):
    cm, s3 = tier_role_manager, tier_role_env
    nb = cm.new_untitled(USER, type="notebook")
    cm.save({"type": "directory"}, f"{USER}/old")
    cm.save({"type": "file", "format": "text", "content": "x"}, f"{USER}/old/a.txt")
    cm.delete(nb["path"])
    cm.delete(f"{USER}/old")
    assert _names(cm, USER) == []
    assert not cm.file_exists(nb["path"])
    key = f"{tier_mounts[USER]}/Untitled.ipynb"
    versions = s3.list_object_versions(Bucket=notebook_bucket, Prefix=key)
    assert [v["Key"] for v in versions.get("Versions", [])] == [key]  # recoverable
    assert [m["Key"] for m in versions.get("DeleteMarkers", [])] == [key]


# --- between the user's folder and shared/ -------------------------------------------------------
async def test_copy_from_own_folder_into_shared(tier_manager, api):
    cm = tier_manager
    cm.new(path=f"{USER}/report.ipynb")
    copied = await api("POST", "shared", {"copy_from": f"{USER}/report.ipynb"})
    assert copied["path"] == "shared/report.ipynb"
    again = await api("POST", "shared", {"copy_from": f"{USER}/report.ipynb"})
    assert again["path"] == "shared/report-Copy1.ipynb"
    cm.save({"type": "directory"}, f"{USER}/project")
    cm.new(path=f"{USER}/project/step1.ipynb")
    folder = await api("POST", "shared", {"copy_from": f"{USER}/project"})  # JupyterLab copies folders too
    assert folder["path"] == "shared/project"
    assert _names(cm, "shared") == ["project", "report-Copy1.ipynb", "report.ipynb"]
    assert _names(cm, "shared/project") == ["step1.ipynb"]
    assert _names(cm, USER) == ["project", "report.ipynb"]
    assert cm.get("shared/report.ipynb")["content"] == cm.get(f"{USER}/report.ipynb")["content"]


async def test_move_between_own_folder_and_shared(tier_manager, api):
    cm = tier_manager
    cm.new(path=f"{USER}/model.ipynb")
    cm.save({"type": "directory"}, f"{USER}/data")
    cm.save({"type": "file", "format": "text", "content": "a,b\n"}, f"{USER}/data/t.csv")
    moved = await api("PATCH", f"{USER}/model.ipynb", {"path": "shared/model.ipynb"})
    assert moved["path"] == "shared/model.ipynb"
    await api("PATCH", f"{USER}/data", {"path": "shared/data"})
    assert _names(cm, USER) == []
    assert _names(cm, "shared") == ["data", "model.ipynb"]
    assert cm.get("shared/data/t.csv")["content"] == "a,b\n"
    assert cm.list_checkpoints("shared/model.ipynb")
    await api("PATCH", "shared/model.ipynb", {"path": f"{USER}/model.ipynb"})
    assert _names(cm, USER) == ["model.ipynb"]


# --- large uploads, downloads ---------------------------------------------------------------------
@pytest.mark.slow
async def test_100_mb_chunked_upload_then_get_and_download(tier_manager, api, http_server_client, jp_base_url, jp_auth_header):
    chunk_size = 1024 * 1024  # JupyterLab's chunk size
    total = 100 * chunk_size
    block = os.urandom(chunk_size)
    digest = hashlib.sha256()
    for i in range(100):
        piece = block[i:] + block[:i]  # 100 different chunks
        digest.update(piece)
        number = -1 if i == 99 else i + 1
        await api(
            "PUT",
            f"{USER}/big.bin",
            {"type": "file", "format": "base64", "chunk": number, "content": base64.b64encode(piece).decode()},
        )
    model = await api("GET", f"{USER}/big.bin", hash="1", content="0")
    assert model["size"] == total
    assert model["hash"] == digest.hexdigest()
    # Open (the whole model, 140 MB of JSON) and download: beyond the test client's 100 MB default.
    client = SimpleAsyncHTTPClient(force_instance=True, max_body_size=400 * 2**20)
    try:
        for path, params in (("api/contents/alice/big.bin", "?hash=1"), ("files/alice/big.bin", "")):
            r = await client.fetch(
                http_server_client.get_url(f"{jp_base_url}{path}{params}"), headers=jp_auth_header, request_timeout=300
            )
            if path.startswith("api"):
                body = json.loads(r.body)
                assert body["hash"] == digest.hexdigest()
                assert hashlib.sha256(base64.b64decode(body["content"])).hexdigest() == digest.hexdigest()
            else:
                assert hashlib.sha256(r.body).hexdigest() == digest.hexdigest()
    finally:
        client.close()


async def test_files_download_reads_from_s3(tier_manager, jp_fetch):
    tier_manager.save({"type": "file", "format": "text", "content": "id,v\n1,2\n"}, "shared/t.csv")
    r = await jp_fetch("files", "shared", "t.csv", method="GET")
    assert r.body == b"id,v\n1,2\n"


# --- the root ---------------------------------------------------------------------------------------
async def test_root_lists_the_two_mounts_read_only(tier_manager, api):
    root = await api("GET", "")
    assert root["writable"] is False
    assert sorted(c["name"] for c in root["content"]) == ["alice", "shared"]
    # Writing at the top level is forbidden (403), not "not found"; the mounts stay (400).
    for method, path, body, code in (
        ("PUT", "x.ipynb", {"type": "notebook", "content": nbformat.v4.new_notebook()}, 403),
        ("POST", "", {"type": "notebook"}, 403),
        ("PATCH", "shared", {"path": "renamed"}, 403),
        ("DELETE", "shared", None, 400),
    ):
        with pytest.raises(tornado.httpclient.HTTPClientError) as e:
            await api(method, path, body)
        assert e.value.code == code, (method, path)
    assert sorted(c["name"] for c in (await api("GET", ""))["content"]) == ["alice", "shared"]
