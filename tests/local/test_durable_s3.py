"""Durable local S3 (issue 16): the emulator mirrors the notebook bucket to a folder as it is
written (lakehub.local.emulator_server.install_bucket_persistence), so the folder always equals
the bucket's current objects and a crash of the emulator loses no saved notebook.

A real emulator process (moto in server mode with the project's patches), started with
--persist-dir; each write is checked the moment its request returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lakehub.local.emulator import emulator_client, start_emulator_server
from lakehub.local import control
from lakehub.local.emulator_server import PERSIST_PATH, key_path

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "lakehub-local-notebooks"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    work = tmp_path_factory.mktemp("durable-s3")
    mirror = work / "state" / "notebooks-export"
    server = start_emulator_server(work, work_dir=work / "emulator", persist_dir=mirror)
    url, token = server.endpoint_url, server.control_token
    s3 = emulator_client("s3", url)
    yield {"url": url, "token": token, "s3": s3, "mirror": mirror, "work": work}
    server.stop()


def persist(emulator, body: dict, token: str | None = None) -> dict:
    return json.loads(
        control.control_request(
            emulator["url"],
            PERSIST_PATH,
            emulator["token"] if token is None else token,
            data=json.dumps(body).encode(),
            method="POST",
            content_type="application/json",
        )
    )


def folder(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}


def bucket(s3, name: str = BUCKET) -> dict[str, bytes]:
    """The bucket's current objects whose keys can be files (what the mirror keeps)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            if key_path(Path("/x"), obj["Key"]) is not None:
                out[obj["Key"]] = s3.get_object(Bucket=name, Key=obj["Key"])["Body"].read()
    return out


def assert_mirrored(emulator):
    assert folder(emulator["mirror"]) == bucket(emulator["s3"])


def test_key_paths_never_leave_the_folder(tmp_path):
    root = tmp_path / "m"
    assert key_path(root, "tiers/pii/users/alice/a.ipynb") == root / "tiers/pii/users/alice/a.ipynb"
    for key in ("", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "shared/", "..", "a/..", "a\0b"):
        assert key_path(root, key) is None, key


def test_the_folder_equals_the_bucket_after_every_write(emulator):
    s3, mirror = emulator["s3"], emulator["mirror"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="tiers/pii/users/alice/before.ipynb", Body=b"saved before the watch")
    assert not mirror.exists(), "nothing is mirrored before the bucket is named"
    # Naming the bucket makes the folder equal to it at once.
    assert persist(emulator, {"bucket": BUCKET})["files"] == 1
    assert_mirrored(emulator)

    # PutObject, and an overwrite (the file is the newest body the moment the call returns).
    key = "tiers/pii/users/alice/a.ipynb"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"one")
    assert (mirror / key).read_bytes() == b"one"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"two")
    assert (mirror / key).read_bytes() == b"two"
    assert_mirrored(emulator)

    # CompleteMultipartUpload.
    big = "shared/data/big.bin"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=big)["UploadId"]
    part1, part2 = b"a" * (5 * 1024 * 1024), b"tail"
    etags = [
        s3.upload_part(Bucket=BUCKET, Key=big, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, part1), (2, part2))
    ]
    assert not (mirror / big).exists(), "parts are not objects yet"
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=big,
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]},
    )
    assert (mirror / big).read_bytes() == part1 + part2

    # CopyObject into the bucket, from another bucket and within it (a rename's first half).
    s3.create_bucket(Bucket="elsewhere")
    s3.put_object(Bucket="elsewhere", Key="x.csv", Body=b"from elsewhere")
    assert not (mirror / "x.csv").exists(), "another bucket is not mirrored"
    s3.copy_object(Bucket=BUCKET, Key="shared/x.csv", CopySource={"Bucket": "elsewhere", "Key": "x.csv"})
    assert (mirror / "shared/x.csv").read_bytes() == b"from elsewhere"
    s3.copy_object(Bucket=BUCKET, Key="tiers/pii/users/alice/b.ipynb", CopySource={"Bucket": BUCKET, "Key": key})
    assert (mirror / "tiers/pii/users/alice/b.ipynb").read_bytes() == b"two"
    assert_mirrored(emulator)

    # DeleteObject (a delete marker in a versioned bucket): the file goes.
    s3.delete_object(Bucket=BUCKET, Key="tiers/pii/users/alice/b.ipynb")
    assert not (mirror / "tiers/pii/users/alice/b.ipynb").exists()
    # Deleting the delete marker brings the object back, and so its file.
    marker = next(m for m in s3.list_object_versions(Bucket=BUCKET, Prefix="tiers/pii/users/alice/b.ipynb")["DeleteMarkers"])
    s3.delete_object(Bucket=BUCKET, Key=marker["Key"], VersionId=marker["VersionId"])
    assert (mirror / "tiers/pii/users/alice/b.ipynb").read_bytes() == b"two"
    # Deleting the current version makes the previous one current.
    current = next(v for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"] if v["IsLatest"])
    s3.delete_object(Bucket=BUCKET, Key=key, VersionId=current["VersionId"])
    assert (mirror / key).read_bytes() == b"one"
    assert_mirrored(emulator)

    # DeleteObjects: every key's file goes, and emptied folders with them.
    answer = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}, {"Key": big}, {"Key": "shared/x.csv"}]})
    assert not answer.get("Errors")
    assert not (mirror / key).exists() and not (mirror / "shared").exists()
    assert_mirrored(emulator)
    assert set(folder(mirror)) == {"tiers/pii/users/alice/before.ipynb", "tiers/pii/users/alice/b.ipynb"}


def test_keys_that_cannot_be_files_never_leave_the_folder(emulator):
    s3, work = emulator["s3"], emulator["work"]
    if not persist(emulator, {"sync": True}).get("bucket"):
        s3.create_bucket(Bucket=BUCKET)
        persist(emulator, {"bucket": BUCKET})
    before = {p for p in work.rglob("*")}
    for key in ("../escaped.txt", "a/../../escaped.txt", "/abs/escaped.txt", "shared/folder/", "x/./y"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"outside?")
    created = {p for p in work.rglob("*")} - before
    assert all(p.is_relative_to(emulator["mirror"]) or p.parent == work for p in created), created
    assert not list(work.rglob("escaped.txt"))
    assert_mirrored(emulator)
    status = json.loads(control.control_request(emulator["url"], PERSIST_PATH, emulator["token"]))
    assert "../escaped.txt" in status["not_mirrored"]
    # S3 holds `a` and `a/b` at once; a folder cannot: the second is left out and said, and a
    # full export still works (it does not fail every `down` from then on).
    s3.put_object(Bucket=BUCKET, Key="conflict", Body=b"a file")
    s3.put_object(Bucket=BUCKET, Key="conflict/inner.txt", Body=b"under a file")
    assert (emulator["mirror"] / "conflict").read_bytes() == b"a file"
    synced = persist(emulator, {"sync": True})
    assert "conflict/inner.txt" in synced["not_mirrored"] and synced["errors_since_last_sync"] == 0
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "conflict"}, {"Key": "conflict/inner.txt"}]})
    assert not (emulator["mirror"] / "conflict").exists()
    assert_mirrored(emulator)


def test_only_the_supervisor_names_the_mirrored_bucket(emulator):
    for token in ("", "not-the-token"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            persist(emulator, {"bucket": "elsewhere"}, token=token)
        assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as missing:
        persist(emulator, {"bucket": "no-such-bucket"})
    assert missing.value.code == 404


# ------------------------------------------------------------------------------------------
# `lakehub local down` says when the export failed (a stand-in supervisor holds the state)
# ------------------------------------------------------------------------------------------
STAND_IN = """
import signal, sys, time
from lakehub.local.state import StateDir
state = StateDir(sys.argv[1])
state.acquire()
state.write({"phase": "ready", "outputs": {"NotebookBucketName": "b"}})
def stop(*_):
    if sys.argv[2] == "fail":
        state.update(export_error="the emulator did not answer ([Errno 111] Connection refused)")
    else:
        state.update(exported=3)
    state.update(phase="stopped")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("outcome", ["fail", "ok"])
def test_down_exits_non_zero_and_names_the_last_good_copy_when_the_export_failed(tmp_path, outcome):
    from .helpers import lakehub

    state_dir = tmp_path / "state"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(state_dir), outcome], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    import threading

    try:
        assert supervisor.stdout.readline().strip() == "ready"
        # Reaped as it exits (`down` waits until the pid is gone, and a zombie still has it).
        threading.Thread(target=supervisor.wait, daemon=True).start()
        down = lakehub("local", "down", "--state-dir", str(state_dir), timeout=120)
    finally:
        supervisor.kill()
        supervisor.wait(timeout=10)
    if outcome == "ok":
        assert down.returncode == 0, down.stderr
        assert f"exported 3 notebook files to {state_dir / 'notebooks-export'}" in down.stdout
        return
    assert down.returncode != 0, down.stdout + down.stderr
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in down.stderr, down.stderr
    assert "not exported" in lines[0] and "Connection refused" in lines[0]
    assert f"last good copy is {state_dir / 'notebooks-export'}" in lines[0]
