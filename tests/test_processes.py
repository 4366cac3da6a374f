"""Issue 16 (nothing left behind, supervision): what a supervisor records of its processes finds
them again (and only them), and a part that dies is restarted with a bounded back-off."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from waiting import wait_for

from lakehub.local import platform as lp
from lakehub.local.state import StateDir
from lakehub.local.processes import PART_MARKER, RUN_MARKER, end_processes, marked, record, start_time

# A parent that starts a child in a session of its own (as JupyterHub starts its proxy), prints
# the child's pid and waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""


def _start(env_extra: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=dict(os.environ, **env_extra),
    )
    return proc, int(proc.stdout.readline())


def _gone(pid: int, start: int | None) -> bool:
    return start_time(pid) != start


def test_end_processes_ends_the_recorded_group_and_what_carries_the_marker_only():
    mine, my_child = _start({RUN_MARKER: "run-a", PART_MARKER: "pii hub"})
    other, other_child = _start({RUN_MARKER: "run-b"})
    try:
        rec = record(mine.pid)
        child_start = start_time(my_child)
        assert set(marked("run-a")) == {mine.pid, my_child}
        assert marked("run-a", part="pii hub") == sorted([mine.pid, my_child])
        ended = end_processes([rec], "run-a", timeout=5)
        assert set(ended) == {mine.pid, my_child}
        mine.wait(timeout=5)
        assert wait_for(lambda: _gone(my_child, child_start), timeout=5)
        assert other.poll() is None and start_time(other_child) is not None  # another run's: untouched
    finally:
        for p in (mine, other):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for pid in (my_child, other_child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_recorded_pid_with_another_start_time_is_not_ours():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        rec = dict(record(proc.pid), start=record(proc.pid)["start"] - 1)  # as if the pid were reused
        assert end_processes([rec], "", timeout=1) == []
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def health():
    """An HTTP server that answers 200: the part's health check."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.slow
def test_a_dead_part_is_restarted_with_a_growing_back_off_then_failed(tmp_path, health, caplog, monkeypatch):
    monkeypatch.setattr(lp, "RESTART_LIMIT", 3)
    platform = lp.LocalPlatform(StateDir(tmp_path), base_port=8700)
    cmd = [sys.executable, "-c", "import time; time.sleep(300)"]

    def launch():
        return platform._spawn("worker", cmd, dict(os.environ), tmp_path, tmp_path / "worker.log")

    platform.add_part("worker", launch(), health, launch, ready_timeout=10)
    caplog.set_level(logging.INFO, logger="lakehub.local")
    delays = []
    try:
        for restart in (1, 2, 3):
            part = platform.parts["worker"]
            old = part.proc
            assert platform.state.read()["groups"]["worker"]["pid"] == old.pid  # recorded as started
            os.kill(old.pid, signal.SIGKILL)
            old.wait(timeout=5)
            platform.watch()
            assert part.state == "restarting"
            delays.append(round(part.due - lp.time.monotonic()))
            line = caplog.records[-1].getMessage()
            assert f"worker (pid {old.pid}) killed by SIGKILL (exit code 137); restarting it in" in line
            wait_for(lambda: platform.watch() or part.state == "running", timeout=10, interval=0.2)
            assert part.restarts == restart and part.proc.pid != old.pid
        assert delays == [1, 2, 4]
        os.kill(platform.parts["worker"].proc.pid, signal.SIGKILL)
        platform.parts["worker"].proc.wait(timeout=5)
        platform.watch()
        assert platform.parts["worker"].state == "failed"
        assert "3 restarts within 600 s, not restarting it again" in caplog.records[-1].getMessage()
        rows = {r["name"]: r for r in platform.state.read()["parts"]}
        assert rows["worker"]["state"] == "failed" and rows["worker"]["restarts"] == 3
    finally:
        for _, proc in platform.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
