"""Stopping child processes that lead their own process group (servers started with start_new_session=True)."""

from __future__ import annotations

import os
import signal
import subprocess

from lakehub.waiting import tries


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


# ------------------------------------------------------------------------------------------
# processes recorded by a supervisor that may have crashed: found again by pid, start time and
# the run's marker in their environment, and ended without touching anyone else's processes
# ------------------------------------------------------------------------------------------
RUN_MARKER = "LAKEHUB_LOCAL_RUN"  # every process of one local platform run carries its token
PART_MARKER = "LAKEHUB_LOCAL_PART"  # ... and the part (emulator, "pii hub") that started it


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None
    when it is gone: with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        if fields[0] == b"Z":  # a zombie has ended; only its parent's wait is missing
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def record(pid: int) -> dict:
    """What a state file keeps of a process that leads its own group."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    return {"pid": pid, "pgid": pgid, "start": start_time(pid)}


def is_recorded(rec: dict) -> bool:
    """The recorded process still runs (same pid and the same start time: not a reused pid)."""
    return bool(rec.get("pid")) and rec.get("start") is not None and start_time(int(rec["pid"])) == rec["start"]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def marked(token: str, part: str | None = None) -> list[int]:
    """Processes whose environment carries RUN_MARKER=token (and PART_MARKER=part when given):
    every process a run started, however it was started (its own session, reparented to init)."""
    if not token:
        return []
    want = f"{RUN_MARKER}={token}".encode()
    want_part = f"{PART_MARKER}={part}".encode() if part is not None else None
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        env = _environ(int(entry.name)).split(b"\0")
        if want in env and (want_part is None or want_part in env):
            found.append(int(entry.name))
    return found


def _group_members(groups: set[int]) -> set[int]:
    members = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    members.add(int(entry.name))
            except OSError:
                pass
    return members


def end_processes(records: list[dict], token: str = "", part: str | None = None, timeout: float = 15) -> list[int]:
    """SIGTERM the recorded groups that are still ours (leader's pid and start time match) and
    every process marked with the run's token (and part), wait up to `timeout`, SIGKILL what is
    left. Returns the pids that were running."""
    groups = {int(r["pgid"]) for r in records if is_recorded(r) and r.get("pgid")}
    groups.discard(os.getpgrp())
    pids = {int(r["pid"]) for r in records if is_recorded(r)} | set(marked(token, part)) | _group_members(groups)
    pids.discard(os.getpid())
    starts = {pid: s for pid in pids if (s := start_time(pid)) is not None}

    def alive() -> list[int]:
        return [p for p, s in starts.items() if start_time(p) == s]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            break
        for g in groups:
            try:
                os.killpg(g, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in alive():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for _ in tries(timeout if sig == signal.SIGTERM else 5, interval=0.1):
            if not alive():
                break
    return sorted(starts)
