"""The local environment's state folder (default `.lakehub/local/`, gitignored).

lock                  held (flock) by the running supervisor: a second `up` sees it
supervisor.pid        the supervisor's process id
state.json            phase, progress lines, endpoints, tiers, demo users and passwords (0600);
                      run_token (the marker every process of the run carries), groups (each
                      part's pid, pgid and start time, written as it starts), tasks (the agent's
                      task processes), parts (each part's state and restarts)
control-token         what the emulator's control API (/moto-api/...) requires (0600)
(the folder is 0700: user servers run as other Unix accounts and cannot enter it)
supervisor.log        the supervisor's log; emulator/, idp/, hubs/<tier>/, agent/ hold the rest
notebooks-export/     the notebook bucket's current objects (bodies only, one file per key):
                      written through by the emulator as the bucket is written, so it
                      survives a crash of the emulator or the supervisor; exported once more
                      by `down`; restored into the new bucket by the next `up`
notebooks-export.writing/  the emulator's temporary files (each write is a rename from here)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from lakehub.assets import ROOT
from lakehub.errors import LakehubError

DEFAULT_STATE_DIR = ROOT / ".lakehub" / "local"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
PID_FILE = "supervisor.pid"
LOG_FILE = "supervisor.log"
EXPORT_DIR = "notebooks-export"


class StateDir:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get("LAKEHUB_LOCAL_DIR") or DEFAULT_STATE_DIR).resolve()
        self._lock_fd: int | None = None

    # -- files ------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    def ensure(self) -> None:
        """The folder, private to the supervisor (it holds the admin key and the emulator's
        control token; user servers run as other accounts and must not read it)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private, except the traverse-only o+x the local agent grants while it runs so users'
        # servers reach their homes under efs/ (names only; nothing here is readable by others).
        os.chmod(self.path, 0o700 | (os.stat(self.path).st_mode & 0o001))

    def read(self) -> dict:
        try:
            return json.loads(self.file(STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def write(self, state: dict) -> None:
        self.ensure()
        tmp = self.file(STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2, default=str)
        os.replace(tmp, self.file(STATE_FILE))

    def update(self, **changes) -> dict:
        state = self.read()
        state.update(changes)
        self.write(state)
        return state

    def progress(self, line: str) -> None:
        state = self.read()
        lines = state.get("progress", [])
        lines.append({"t": round(time.time(), 2), "line": line})
        state["progress"] = lines[-200:]
        self.write(state)

    # -- the lock -----------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """The supervisor's pid when one holds the lock, else None."""
        if not self.file(LOCK_FILE).exists():
            return None
        fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(self.file(PID_FILE).read_text().strip() or 0) or -1
            except (OSError, ValueError):
                return -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Hold the lock for this process's life (released when it exits)."""
        self.ensure()
        fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise already_running(self) from None
        self._lock_fd = fd
        self.file(PID_FILE).write_text(str(os.getpid()))

    def release(self) -> None:
        if self._lock_fd is not None:
            self.file(PID_FILE).unlink(missing_ok=True)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def already_running(state: StateDir) -> LakehubError:
    pid = state.running_pid()
    return LakehubError(
        f"a local platform is already running from {state.path} (pid {pid}); "
        "see `lakehub local status`, or stop it with `lakehub local down`"
    )
