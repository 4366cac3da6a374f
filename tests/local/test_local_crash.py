"""Durable local S3 end to end (issue 16): what is saved in the local platform survives a crash
of the emulator or of the supervisor, not only a clean `down`.

One platform (`lakehub local up`) for the module: a notebook saved through the hub and a file
in the shared folder are on disk the moment they are saved; `kill -9` of the emulator, then
`down` (non-zero: it could not export) and `up` bring them back; then `kill -9` of the
supervisor (and, as a machine crash would, of everything it started), and `up` again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nbformat
import pytest

from lakehub.local.platform import free_base_port
from lakehub.waiting import tries

from .helpers import Platform, running, user_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def _processes_of(state_dir: Path) -> list[int]:
    """Processes this module's platform started (their command line or working folder is in its
    own temporary state folder): what a crashed supervisor leaves behind."""
    mine = []
    marker = str(state_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            mine.append(int(entry.name))
    return mine


def _kill_all(state_dir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (pids := _processes_of(state_dir)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    assert not _processes_of(state_dir), "processes of the crashed platform are still running"


def _wait_gone(pid: int, timeout: float = 30) -> None:
    for _ in tries(timeout, interval=0.2):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
    raise AssertionError(f"process {pid} still there")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("lakehub-crash"), free_base_port())
    yield from running(p)
    _kill_all(p.state_dir)


def test_a_saved_notebook_survives_killing_the_emulator_and_down_says_it_could_not_export(platform):
    mirror = platform.state_dir / "notebooks-export"
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    # A file in the shared folder lives only in S3 (homes are on disk): on disk at once, before
    # any `down` (only `down` wrote this folder before).
    platform.admin_s3().put_object(Bucket=bucket, Key="shared/team-note.txt", Body=b"only in S3")
    assert (mirror / "shared" / "team-note.txt").is_file(), "not in the folder before `down`"
    assert (mirror / "shared" / "team-note.txt").read_bytes() == b"only in S3"
    # A notebook saved through the hub: its central copy too.
    tier = platform.tier("nonpii")
    user = tier["users"][0]
    server = user_server(tier, user)
    server.save_notebook("before-crash.ipynb", "print('saved before the crash')")
    notebook = mirror / "tiers" / "nonpii" / "users" / user["username"] / "before-crash.ipynb"
    assert notebook.is_file(), sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*"))

    os.kill(platform.state()["children"]["emulator"], signal.SIGKILL)
    down = platform.down()
    assert down.returncode != 0, down.stdout + down.stderr
    assert "not exported" in down.stderr and str(mirror) in down.stderr, down.stderr
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert notebook.is_file() and (mirror / "shared" / "team-note.txt").is_file()

    platform.up_ok()
    s3 = platform.admin_s3()
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    key = f"tiers/nonpii/users/{user['username']}/before-crash.ipynb"
    body = nbformat.reads(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode(), as_version=4)
    assert body.cells[0].source == "print('saved before the crash')"
    assert s3.get_object(Bucket=bucket, Key="shared/team-note.txt")["Body"].read() == b"only in S3"


def test_writes_and_deletes_survive_killing_the_supervisor(platform):
    mirror = platform.state_dir / "notebooks-export"
    s3 = platform.admin_s3()
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    s3.put_object(Bucket=bucket, Key="shared/after-restart.txt", Body=b"written after the restart")
    s3.delete_object(Bucket=bucket, Key="shared/team-note.txt")
    supervisor = platform.state()["pid"]
    os.kill(supervisor, signal.SIGKILL)
    _wait_gone(supervisor)
    # What is left of it (emulator, identity provider, hubs, proxies) dies too, as in a crash
    # of the machine; the folder was written as the bucket was.
    _kill_all(platform.state_dir)
    assert (mirror / "shared" / "after-restart.txt").read_bytes() == b"written after the restart"
    assert not (mirror / "shared" / "team-note.txt").exists()

    platform.up_ok()
    s3 = platform.admin_s3()
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    assert s3.get_object(Bucket=bucket, Key="shared/after-restart.txt")["Body"].read() == b"written after the restart"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="shared/team-note.txt")
    down = platform.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "exported" in down.stdout
    assert (mirror / "shared" / "after-restart.txt").is_file()
