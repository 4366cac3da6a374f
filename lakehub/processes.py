"""Stopping child processes that lead their own process group (servers started with start_new_session=True)."""

from __future__ import annotations

import os
import signal
import subprocess


def terminate_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process's group, wait up to `timeout`, then SIGKILL it. A process that has
    already exited (or a group that is gone) is left alone."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)
