"""Deletes and renames through Jupyter (issue 16), on the emulator with the local platform's IAM
evaluator (DeleteObjects authorized per key as s3:DeleteObject, as on AWS), with an identity
allowed only the tier's prefix: in the S3 mounts (tier mode: the user's folder and shared/; shared/
in the home too) and in the home, whose central copies follow. A delete leaves a delete marker
and every version stays readable and restorable; a rename leaves one current object; a folder
rename leaves nothing under the old prefix; a key S3 refuses is an HTTP error naming it (403 for
AccessDenied), and what S3 did delete is not reported as kept, nor the reverse."""

from __future__ import annotations

import json

import nbformat
import pytest
import tornado.httpclient
from lakehub_hub.contents import TierContentsManager
from tornado.web import HTTPError
from traitlets.config import Config

BUCKET, USER = "lakehub-contents-tests", "alice"  # as tests/contents/conftest.py


def _nb(text: str) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])
    return {"type": "notebook", "content": nb}


def _current(s3, prefix: str) -> list[str]:
    """Current objects below `prefix`/ (not behind a delete marker), relative to it."""
    keys, kwargs = [], {"Bucket": BUCKET, "Prefix": prefix.rstrip("/") + "/"}
    for _ in range(100):
        page = s3.list_objects_v2(**kwargs)
        keys += [o["Key"][len(kwargs["Prefix"]) :] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    return sorted(k for k in keys if not k.endswith(".s3keep"))  # s3contents' folder marker


def _versions(s3, key: str):
    out = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return ([v for v in out.get("Versions", []) if v["Key"] == key], [m for m in out.get("DeleteMarkers", []) if m["Key"] == key])


def _source(s3, key: str, version_id: str) -> str:
    body = s3.get_object(Bucket=BUCKET, Key=key, VersionId=version_id)["Body"].read()
    return nbformat.reads(body.decode(), as_version=4).cells[0].source


def _no_checkpoints(keys: list[str]) -> list[str]:
    return [k for k in keys if ".ipynb_checkpoints/" not in f"/{k}"]


@pytest.fixture
def jp_server_config(tier_role_env, iam_server, tier_mounts):
    return Config(
        {
            "ServerApp": {"contents_manager_class": TierContentsManager, "jpserver_extensions": {}},
            "TierContentsManager": {
                "bucket": BUCKET,
                "endpoint_url": iam_server[0].endpoint_url,
                "region_name": "us-east-1",
                "mounts": tier_mounts,
            },
        }
    )


@pytest.fixture
def api(jp_fetch):
    async def call(method, path, body=None):
        kwargs = {"method": method}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        r = await jp_fetch("api", "contents", *path.split("/"), **kwargs)
        return json.loads(r.body) if r.body else None

    return call


async def _refused(call) -> tuple[int, str]:
    with pytest.raises(tornado.httpclient.HTTPClientError) as e:
        await call
    return e.value.code, json.loads(e.value.response.body)["message"]


# --- what a delete and a rename leave in S3 --------------------------------------------------------
@pytest.mark.parametrize("mount", ["shared", USER])
def test_a_deleted_notebook_is_gone_and_each_version_stays_readable_and_restorable(
    tier_role_manager, tier_role_env, tier_mounts, mount
):
    cm, s3 = tier_role_manager, tier_role_env
    path, key = f"{mount}/report.ipynb", f"{tier_mounts[mount]}/report.ipynb"
    cm.save(_nb("one"), path)
    cm.save(_nb("two"), path)
    cm.delete(path)
    assert "report.ipynb" not in [c["name"] for c in cm.get(mount)["content"]]
    assert _no_checkpoints(_current(s3, tier_mounts[mount])) == []
    versions, markers = _versions(s3, key)
    assert len(markers) == 1 and markers[0]["IsLatest"]  # a delete marker, no version id was sent
    assert [_source(s3, key, v["VersionId"]) for v in versions] == ["two", "one"]  # newest first
    # The user's own identity restores an old version: a copy of it becomes the current object.
    mine = s3.tier_client()
    mine.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": key, "VersionId": versions[1]["VersionId"]})
    assert cm.get(path)["content"].cells[0].source == "one"


@pytest.mark.parametrize("mount", ["shared", USER])
def test_renaming_a_notebook_leaves_one_current_object_and_its_checkpoint_follows(
    tier_role_manager, tier_role_env, tier_mounts, mount
):
    cm, s3 = tier_role_manager, tier_role_env
    cm.save(_nb("draft"), f"{mount}/draft.ipynb")
    cm.rename(f"{mount}/draft.ipynb", f"{mount}/final.ipynb")
    assert _current(s3, tier_mounts[mount]) == [".ipynb_checkpoints/final-checkpoint.ipynb", "final.ipynb"]
    assert [c["name"] for c in cm.get(mount)["content"]] == ["final.ipynb"]
    versions, markers = _versions(s3, f"{tier_mounts[mount]}/draft.ipynb")
    assert len(versions) == 1 and len(markers) == 1


@pytest.mark.parametrize("mount", ["shared", USER])
def test_a_folder_of_notebooks_renamed_leaves_nothing_under_the_old_prefix_and_deleted_leaves_nothing(
    tier_role_manager, tier_role_env, tier_mounts, mount
):
    cm, s3 = tier_role_manager, tier_role_env
    cm.save({"type": "directory"}, f"{mount}/project")
    cm.save({"type": "directory"}, f"{mount}/project/data")
    names = ["a.ipynb", "b.ipynb", "c.ipynb"]
    for name in names:
        cm.save(_nb(name), f"{mount}/project/{name}")
    cm.save({"type": "file", "format": "text", "content": "x,y\n"}, f"{mount}/project/data/table.csv")
    cm.rename(f"{mount}/project", f"{mount}/final")
    root = tier_mounts[mount]
    assert _current(s3, f"{root}/project") == []
    assert _no_checkpoints(_current(s3, f"{root}/final")) == [*names, "data/table.csv"]
    assert [c["name"] for c in cm.get(mount)["content"]] == ["final"]
    cm.delete(f"{mount}/final")
    assert _current(s3, root) == []
    assert [c["name"] for c in cm.get(mount)["content"]] == []
    for name in names:  # each behind its delete marker, its version kept
        versions, markers = _versions(s3, f"{root}/final/{name}")
        assert len(versions) == 1 and len(markers) == 1, name


def test_in_the_home_deletes_and_renames_follow_in_the_central_copy_and_in_shared(
    home_role_manager, tier_role_env, tier_prefix, home_dir
):
    cm, s3 = home_role_manager, tier_role_env
    central = f"{tier_prefix}/users/{USER}"
    cm.save({"type": "directory"}, "project")
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        cm.save(_nb(name), f"project/{name}")
    cm.save(_nb("one"), "notes.ipynb")
    cm.save(_nb("two"), "notes.ipynb")
    cm.rename("notes.ipynb", "journal.ipynb")
    assert _current(s3, central) == ["journal.ipynb", "project/a.ipynb", "project/b.ipynb", "project/c.ipynb"]
    versions, markers = _versions(s3, f"{central}/notes.ipynb")
    assert [_source(s3, f"{central}/notes.ipynb", v["VersionId"]) for v in versions] == ["two", "one"] and len(markers) == 1
    cm.rename("project", "done")
    assert _current(s3, f"{central}/project") == []
    assert _current(s3, central) == ["done/a.ipynb", "done/b.ipynb", "done/c.ipynb", "journal.ipynb"]
    cm.delete("done")
    cm.delete("journal.ipynb")
    assert _current(s3, central) == []
    assert sorted(p.name for p in home_dir.iterdir() if not p.name.startswith(".")) == []
    # shared/ in the home: the tier's S3 folder
    cm.save({"type": "directory"}, "shared/team")
    cm.save(_nb("t"), "shared/team/t.ipynb")
    cm.rename("shared/team", "shared/crew")
    assert _no_checkpoints(_current(s3, f"{tier_prefix}/shared")) == ["crew/t.ipynb"]
    cm.delete("shared/crew")
    assert _current(s3, f"{tier_prefix}/shared") == []


# --- what S3 refuses is an error the user sees -----------------------------------------------------
def test_the_emulator_authorizes_delete_objects_per_key(tier_role_env, tier_mounts):
    """As AWS: one DeleteObjects, one key allowed and one denied: the denied one is an Errors entry
    of the 200 answer, the allowed one is deleted."""
    s3 = tier_role_env
    ok, locked = f"{tier_mounts[USER]}/ok.txt", f"{tier_mounts[USER]}/locked.txt"
    for key in (ok, locked):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.deny_delete(locked)
    answer = s3.tier_client().delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": ok}, {"Key": locked}]})
    assert [d["Key"] for d in answer.get("Deleted", [])] == [ok]
    assert [(e["Key"], e["Code"]) for e in answer.get("Errors", [])] == [(locked, "AccessDenied")]
    assert _current(s3, tier_mounts[USER]) == ["locked.txt"]


async def test_a_folder_delete_with_one_key_refused_is_a_403_naming_it_and_the_others_are_deleted(
    tier_role_env, tier_role_manager, api, tier_mounts
):
    s3, root = tier_role_env, tier_mounts[USER]
    await api("PUT", f"{USER}/project", {"type": "directory"})
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        await api("PUT", f"{USER}/project/{name}", _nb(name))
    s3.deny_delete(f"{root}/project/b.ipynb")
    code, message = await _refused(api("DELETE", f"{USER}/project"))
    assert code == 403, message
    assert "project/b.ipynb" in message and "a.ipynb" not in message and "c.ipynb" not in message, message
    assert _current(s3, f"{root}/project") == ["b.ipynb"]  # the others (and the checkpoints) went
    listing = await api("GET", f"{USER}/project")
    assert [c["name"] for c in listing["content"]] == ["b.ipynb"]


async def test_a_key_a_bucket_policy_protects_is_a_403_too(tier_role_env, tier_role_manager, api, tier_mounts):
    """The refusal can come from the bucket's policy (a resource policy) as well as the caller's."""
    s3, root = tier_role_env, tier_mounts[USER]
    await api("PUT", f"{USER}/locked", {"type": "directory"})
    await api("PUT", f"{USER}/locked/a.txt", {"type": "file", "format": "text", "content": "x"})
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:DeleteObject",
                        "Resource": f"arn:aws:s3:::{BUCKET}/{root}/locked/a.txt",
                    }
                ],
            }
        ),
    )
    try:
        code, message = await _refused(api("DELETE", f"{USER}/locked"))
    finally:
        s3.delete_bucket_policy(Bucket=BUCKET)
    assert code == 403 and "locked/a.txt" in message, message
    assert _current(s3, f"{root}/locked") == ["a.txt"]


async def test_a_rename_whose_old_name_s3_refuses_to_delete_is_a_403_that_says_both_names(
    tier_role_env, tier_role_manager, api, tier_mounts
):
    s3, root = tier_role_env, tier_mounts[USER]
    await api("PUT", f"{USER}/draft.txt", {"type": "file", "format": "text", "content": "x"})
    s3.deny_delete(f"{root}/draft.txt")
    code, message = await _refused(api("PATCH", f"{USER}/draft.txt", {"path": f"{USER}/final.txt"}))
    assert code == 403, message
    assert "draft.txt" in message and "final.txt" in message, message
    assert _current(s3, root) == ["draft.txt", "final.txt"]  # as the message says: both are there


def test_in_the_home_a_refused_central_delete_is_a_403_naming_the_key(home_role_manager, tier_role_env, tier_prefix, home_dir):
    cm, s3 = home_role_manager, tier_role_env
    central = f"{tier_prefix}/users/{USER}"
    cm.save({"type": "directory"}, "project")
    for name in ("a.ipynb", "b.ipynb"):
        cm.save(_nb(name), f"project/{name}")
    cm.save(_nb("solo"), "solo.ipynb")
    s3.deny_delete(f"{central}/project/b.ipynb", f"{central}/solo.ipynb")
    with pytest.raises(HTTPError) as e:
        cm.delete("project")
    assert e.value.status_code == 403 and "project/b.ipynb" in e.value.log_message, e.value.log_message
    assert "a.ipynb" not in e.value.log_message, e.value.log_message
    with pytest.raises(HTTPError) as e:
        cm.delete("solo.ipynb")
    assert e.value.status_code == 403 and "solo.ipynb" in e.value.log_message, e.value.log_message
    assert _current(s3, central) == ["project/b.ipynb", "solo.ipynb"]
