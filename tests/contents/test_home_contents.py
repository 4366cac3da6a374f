"""The file browser's root is the user's home (issue 15): jupyter_server's own file manager on a
local folder, `shared/` a virtual folder on the tier's S3 prefix, a central copy of every file saved
through Jupyter in the versioned notebook bucket (deletes and renames there too, delete markers
only), and checkpoints that are the S3 versions of that copy."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest
from lakehub_hub.accounts import storage_name
from tornado.web import HTTPError
from traitlets.config import Config

USER = "alice"  # as tests/contents/conftest.py


def _central(s3, bucket, tier_prefix):
    prefix = f"{tier_prefix}/users/{USER}/"
    keys = (o["Key"][len(prefix) :] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
    return sorted(k for k in keys if k != ".s3keep")  # s3contents' folder marker


def _versions(s3, bucket, key):
    out = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return ([v for v in out.get("Versions", []) if v["Key"] == key], [m for m in out.get("DeleteMarkers", []) if m["Key"] == key])


def _text(cm, path, content):
    return cm.save({"type": "file", "format": "text", "content": content}, path)


def test_root_is_the_home_with_a_virtual_shared_folder_and_a_real_shared_folder_is_not_shown(
    home_manager, home_dir, s3, notebook_bucket, tier_prefix
):
    (home_dir / "data.csv").write_text("a,b\n1,2\n")
    (home_dir / "shared").mkdir()
    (home_dir / "shared" / "local-only.txt").write_text("not the tier's")
    s3.put_object(Bucket=notebook_bucket, Key=f"{tier_prefix}/shared/team.txt", Body=b"hello team")
    root = home_manager.get("")
    names = [m["name"] for m in root["content"]]
    assert sorted(names) == ["data.csv", "shared"]
    shared = next(m for m in root["content"] if m["name"] == "shared")
    assert shared["type"] == "directory" and shared["writable"] is False
    assert [m["path"] for m in home_manager.get("shared")["content"]] == ["shared/team.txt"]
    assert home_manager.get("shared/team.txt")["content"] == "hello team"
    with pytest.raises(HTTPError):
        home_manager.get("shared/local-only.txt")


def test_save_in_the_home_writes_the_file_and_its_central_copy(home_manager, home_dir, s3, notebook_bucket, tier_prefix):
    home_manager.save({"type": "directory"}, "project")
    _text(home_manager, "project/notes.txt", "first")
    nb = home_manager.new_untitled("project", type="notebook")
    assert (home_dir / "project" / "notes.txt").read_text() == "first"
    assert _central(s3, notebook_bucket, tier_prefix) == sorted(["project/notes.txt", nb["path"]])
    body = s3.get_object(Bucket=notebook_bucket, Key=f"{tier_prefix}/users/{USER}/project/notes.txt")["Body"].read()
    assert body == b"first"


def test_chunked_upload_writes_the_central_copy_once_complete(home_manager, s3, notebook_bucket, tier_prefix):
    chunks = [b"x" * 1000, b"y" * 10]
    for number, data in zip((1, -1), chunks):
        home_manager.save(
            {"type": "file", "format": "base64", "chunk": number, "content": base64.b64encode(data).decode()}, "big.bin"
        )
        if number == 1:
            assert _central(s3, notebook_bucket, tier_prefix) == []  # not before the last chunk
    key = f"{tier_prefix}/users/{USER}/big.bin"
    assert s3.get_object(Bucket=notebook_bucket, Key=key)["Body"].read() == b"".join(chunks)


def test_delete_and_rename_follow_in_the_bucket_with_delete_markers_and_old_versions_stay(
    home_manager, home_dir, s3, notebook_bucket, tier_prefix
):
    home_manager.delete_to_trash = False
    home_manager.always_delete_dir = True
    _text(home_manager, "a.txt", "one")
    _text(home_manager, "a.txt", "two")
    home_manager.rename("a.txt", "b.txt")
    assert not (home_dir / "a.txt").exists() and (home_dir / "b.txt").read_text() == "two"
    assert _central(s3, notebook_bucket, tier_prefix) == ["b.txt"]
    old = f"{tier_prefix}/users/{USER}/a.txt"
    versions, markers = _versions(s3, notebook_bucket, old)
    assert len(versions) == 2 and len(markers) == 1  # both versions recoverable
    home_manager.save({"type": "directory"}, "dir")
    _text(home_manager, "dir/c.txt", "c")
    home_manager.rename("dir", "renamed")
    assert _central(s3, notebook_bucket, tier_prefix) == ["b.txt", "renamed/c.txt"]
    home_manager.delete("b.txt")
    home_manager.delete("renamed")
    assert _central(s3, notebook_bucket, tier_prefix) == []
    versions, markers = _versions(s3, notebook_bucket, f"{tier_prefix}/users/{USER}/b.txt")
    assert len(versions) == 1 and len(markers) == 1


def test_a_file_written_by_code_gets_its_central_copy_when_renamed_or_checkpointed(
    home_manager, home_dir, s3, notebook_bucket, tier_prefix
):
    (home_dir / "out.csv").write_text("written by a kernel")
    assert "out.csv" in [m["name"] for m in home_manager.get("")["content"]]
    home_manager.create_checkpoint("out.csv")
    assert _central(s3, notebook_bucket, tier_prefix) == ["out.csv"]
    (home_dir / "more.csv").write_text("also by code")
    home_manager.rename("more.csv", "kept.csv")
    assert _central(s3, notebook_bucket, tier_prefix) == ["kept.csv", "out.csv"]


def test_checkpoints_are_the_central_copys_versions_newest_first_and_restore_writes_the_home_file(home_manager, home_dir):
    nb = nbformat.v4.new_notebook()
    for text in ("v1", "v2", "v3"):
        nb.cells = [nbformat.v4.new_markdown_cell(text)]
        home_manager.save({"type": "notebook", "content": json.loads(nbformat.writes(nb))}, "work.ipynb")
        cp = home_manager.create_checkpoint("work.ipynb")  # JupyterLab: after every save
    cps = home_manager.list_checkpoints("work.ipynb")
    # no second version of the same bytes; in time order, the newest last (JupyterLab's reading)
    assert len(cps) == 3 and cps[-1] == cp
    assert [c["last_modified"] for c in cps] == sorted(c["last_modified"] for c in cps)
    home_manager.restore_checkpoint(cps[0]["id"], "work.ipynb")
    restored = nbformat.read(home_dir / "work.ipynb", as_version=4)
    assert restored.cells[0].source == "v1"
    after = home_manager.list_checkpoints("work.ipynb")
    assert len(after) == 4 and {c["id"] for c in cps} <= {c["id"] for c in after}  # nothing lost
    with pytest.raises(HTTPError) as e:
        home_manager.delete_checkpoint(cps[0]["id"], "work.ipynb")
    assert e.value.status_code == 403


def test_checkpoint_list_is_bounded(home_manager):
    home_manager.checkpoints.max_checkpoints = 2
    for i in range(4):
        _text(home_manager, "n.txt", str(i))
    cps = home_manager.list_checkpoints("n.txt")
    assert len(cps) == 2
    home_manager.restore_checkpoint(cps[0]["id"], "n.txt")  # the older of the two newest: "2"
    assert home_manager.get("n.txt")["content"] == "2"


def test_a_failing_central_copy_is_an_error_the_user_sees(home_manager, home_dir):
    cm = home_manager
    cm.bucket = cm._central.bucket = "lakehub-no-such-bucket"  # the bucket unreachable after start
    with pytest.raises(HTTPError) as e:
        _text(cm, "x.txt", "data")
    assert e.value.status_code == 500 and "central copy" in e.value.log_message
    assert (home_dir / "x.txt").read_text() == "data"  # the home file itself was saved


def test_kernels_start_in_the_notebooks_folder_and_shared_notebooks_in_the_home(home_manager):
    home_manager.save({"type": "directory"}, "project")
    assert home_manager.get_kernel_path("project/a.ipynb") == "project"
    assert home_manager.get_kernel_path("a.ipynb") == ""
    assert home_manager.get_kernel_path("shared/examples/a.ipynb") == ""


def test_copy_and_move_between_the_home_and_shared(home_manager, home_dir, s3, notebook_bucket, tier_prefix):
    _text(home_manager, "mine.txt", "mine")
    copied = home_manager.copy("mine.txt", "shared")
    assert copied["path"] == "shared/mine.txt"
    assert s3.get_object(Bucket=notebook_bucket, Key=f"{tier_prefix}/shared/mine.txt")["Body"].read() == b"mine"
    back = home_manager.copy("shared/mine.txt", "")
    assert back["path"] == "mine-Copy1.txt" and (home_dir / "mine-Copy1.txt").read_text() == "mine"
    assert "mine-Copy1.txt" in _central(s3, notebook_bucket, tier_prefix)
    home_manager.rename("mine-Copy1.txt", "shared/moved.txt")
    assert not (home_dir / "mine-Copy1.txt").exists()
    assert home_manager.get("shared/moved.txt")["content"] == "mine"
    for bad in (
        lambda: home_manager.delete("shared"),
        lambda: home_manager.rename("shared", "x"),
        lambda: _text(home_manager, "shared", "x"),
    ):
        with pytest.raises(HTTPError):
            bad()


@pytest.mark.parametrize(
    ("name", "expected"), [("alice", "alice"), ("alice.b@example.org", "alice.b@example.org"), ("a_b-c+d=e:f", "a_b-c+d=e:f")]
)
def test_storage_name_keeps_a_valid_tag_value(name, expected):
    assert storage_name(name) == expected


@pytest.mark.parametrize("name", ["alice smith", "ünï", "x" * 200, "..", "a//b", "a#b"])
def test_storage_name_cleans_other_names_and_keeps_them_apart(name):
    out = storage_name(name)
    assert out != name and 1 <= len(out) <= 128
    assert all(ch.isascii() and (ch.isalnum() or ch in "_.:/=+-@") for ch in out)
    assert storage_name(name + "!") != out


@pytest.fixture
def jp_server_config(home_config):
    from lakehub_hub.contents import HomeContentsManager

    return Config(
        {
            "ServerApp": {"contents_manager_class": HomeContentsManager, "jpserver_extensions": {}},
            "HomeContentsManager": home_config,
        }
    )


async def test_files_handler_serves_home_files_and_shared_from_s3_not_a_real_shared_folder(
    jp_fetch, home_dir, s3, notebook_bucket, tier_prefix
):
    (home_dir / "x.txt").write_text("home")
    (home_dir / "shared").mkdir()
    (home_dir / "shared" / "y.txt").write_text("local")
    s3.put_object(Bucket=notebook_bucket, Key=f"{tier_prefix}/shared/y.txt", Body=b"s3")
    assert (await jp_fetch("files", "x.txt")).body == b"home"
    assert (await jp_fetch("files", "shared", "y.txt")).body == b"s3"


def test_an_unversioned_bucket_still_gives_one_checkpoint(home_config, s3, notebook_bucket):
    """A bucket without versioning (a test double, or versioning not yet on): S3 names the one
    version "null"; saving, checkpointing and restoring still work."""
    from lakehub_hub.contents import HomeContentsManager

    bucket = f"{notebook_bucket}-unversioned"
    s3.create_bucket(Bucket=bucket)
    cm = HomeContentsManager(**{**home_config, "bucket": bucket})
    _text(cm, "u.txt", "one")
    cp = cm.create_checkpoint("u.txt")
    assert cp["id"] == "null" and [c["id"] for c in cm.list_checkpoints("u.txt")] == ["null"]
    _text(cm, "u.txt", "two")
    cm.restore_checkpoint("null", "u.txt")  # the only version there is: the latest
    assert cm.get("u.txt")["content"] == "two"
