"""A user restores a notebook version themselves (issue 18): the versions of a home file's
central copy in the versioned notebook bucket are its checkpoints (JupyterLab's "Revert
Notebook to Checkpoint" lists them with their times), against the emulator's S3 and through
jupyter_server's REST API, as JupyterLab asks it."""

from __future__ import annotations

import json

import nbformat
import pytest
from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError

USER = "alice"  # as tests/contents/conftest.py


def _notebook(text: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(text)]
    return json.loads(nbformat.writes(nb))


def _versions(s3, bucket, key):
    out = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in out.get("Versions", []) if v["Key"] == key]  # newest first


def _source(s3, bucket, key, version_id=None) -> str:
    extra = {"VersionId": version_id} if version_id else {}
    body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read().decode()
    return nbformat.reads(body, as_version=4).cells[0].source


def test_each_save_is_a_checkpoint_whose_id_is_its_s3_version_id_newest_last(home_manager, s3, notebook_bucket, tier_prefix):
    key = f"{tier_prefix}/users/{USER}/analysis.ipynb"
    for text in ("first", "second", "third"):
        home_manager.save({"type": "notebook", "content": _notebook(text)}, "analysis.ipynb")
        home_manager.create_checkpoint("analysis.ipynb")  # JupyterLab: after each save
    checkpoints = home_manager.list_checkpoints("analysis.ipynb")
    versions = _versions(s3, notebook_bucket, key)
    assert [c["id"] for c in checkpoints] == [v["VersionId"] for v in reversed(versions)]
    assert [_source(s3, notebook_bucket, key, c["id"]) for c in checkpoints] == ["first", "second", "third"]
    assert all(c["last_modified"].tzinfo is not None for c in checkpoints)


def test_restoring_an_older_version_makes_it_current_by_copy_and_keeps_every_version(
    home_manager, home_dir, s3, notebook_bucket, tier_prefix
):
    key = f"{tier_prefix}/users/{USER}/report.ipynb"
    for text in ("old", "new"):
        home_manager.save({"type": "notebook", "content": _notebook(text)}, "report.ipynb")
    before = _versions(s3, notebook_bucket, key)
    old_id = before[-1]["VersionId"]
    home_manager.restore_checkpoint(old_id, "report.ipynb")
    # the user's file shows the old content ...
    assert nbformat.read(home_dir / "report.ipynb", as_version=4).cells[0].source == "old"
    # ... the bucket's current body is the old content, in a new version made from the old one
    after = _versions(s3, notebook_bucket, key)
    assert _source(s3, notebook_bucket, key) == "old"
    assert len(after) == len(before) + 1
    assert {v["VersionId"] for v in before} <= {v["VersionId"] for v in after}  # "new" is still there
    assert _source(s3, notebook_bucket, key, before[0]["VersionId"]) == "new"
    head = s3.head_object(Bucket=notebook_bucket, Key=key)
    assert (
        head["Metadata"].get("sha256") == s3.head_object(Bucket=notebook_bucket, Key=key, VersionId=old_id)["Metadata"]["sha256"]
    )
    # restoring the current version again changes nothing in the bucket
    home_manager.restore_checkpoint(after[0]["VersionId"], "report.ipynb")
    assert len(_versions(s3, notebook_bucket, key)) == len(after)


@pytest.mark.parametrize("bad", ["../other", "a b", "", "x" * 1025, "v1/../../etc"])
def test_a_checkpoint_id_that_is_not_a_version_id_is_refused_before_s3_is_asked(
    home_manager, s3, notebook_bucket, tier_prefix, bad
):
    key = f"{tier_prefix}/users/{USER}/n.ipynb"
    home_manager.save({"type": "notebook", "content": _notebook("kept")}, "n.ipynb")
    with pytest.raises(HTTPError) as e:
        home_manager.restore_checkpoint(bad, "n.ipynb")
    assert e.value.status_code == 400
    assert len(_versions(s3, notebook_bucket, key)) == 1 and _source(s3, notebook_bucket, key) == "kept"


def test_a_version_id_of_no_version_of_this_file_is_not_found(home_manager, s3, notebook_bucket, tier_prefix):
    home_manager.save({"type": "notebook", "content": _notebook("a")}, "a.ipynb")
    home_manager.save({"type": "notebook", "content": _notebook("b")}, "b.ipynb")
    other = _versions(s3, notebook_bucket, f"{tier_prefix}/users/{USER}/b.ipynb")[0]["VersionId"]
    with pytest.raises(HTTPError) as e:
        home_manager.restore_checkpoint(other, "a.ipynb")  # b's version is not one of a's
    assert e.value.status_code == 404
    assert home_manager.get("a.ipynb")["content"].cells[0].source == "a"


@pytest.fixture
def jp_server_config(home_config):
    return {
        "ServerApp": {"contents_manager_class": "lakehub_hub.contents.HomeContentsManager"},
        "HomeContentsManager": home_config,
    }


async def test_the_rest_api_lists_versions_and_restores_one_as_jupyterlab_does(jp_fetch, jp_serverapp, home_config):
    jp_serverapp.contents_manager.root_dir = home_config["root_dir"]
    for text in ("draft one", "draft two"):
        body = json.dumps({"type": "notebook", "format": "json", "content": _notebook(text)})
        await jp_fetch("api", "contents", "paper.ipynb", method="PUT", body=body)
        await jp_fetch("api", "contents", "paper.ipynb", "checkpoints", method="POST", body="")
    listed = json.loads((await jp_fetch("api", "contents", "paper.ipynb", "checkpoints")).body)
    assert len(listed) == 2 and listed[0]["last_modified"] <= listed[1]["last_modified"]
    await jp_fetch("api", "contents", "paper.ipynb", "checkpoints", listed[0]["id"], method="POST", body="")
    model = json.loads((await jp_fetch("api", "contents", "paper.ipynb")).body)
    assert model["content"]["cells"][0]["source"] == "draft one"
    with pytest.raises(HTTPClientError) as e:  # (the route admits [\w-]+ ids only; the manager checks the rest)
        await jp_fetch("api", "contents", "paper.ipynb", "checkpoints", "nosuchversion", method="POST", body="")
    assert e.value.code == 404
