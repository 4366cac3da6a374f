"""Unix accounts for the local agent's user servers (issue 14, local mode).

When the supervisor runs as root, each hub user's server runs as that user's own unprivileged
Unix account, never as the supervisor: code in a kernel then cannot read the state folder (the
admin key, the control token; 0700/0600 of the supervisor) nor other processes' environments in
/proc (other tiers' container-credential tokens, other users' role credentials), which Linux
shows only to the same user.

Names and uids follow the hub image's shared mode (one rule: ``lakehub_hub.accounts``): ``lh-<name>``, the comment ``lakehub <hub name>``, so the
same person is the same account on a machine that runs both, and the tests' clean-up of lh-*
accounts finds these too.

Not root: the supervisor cannot switch users; servers run as its own user (``up`` says so once).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub_hub.accounts import stable_uid, unix_username


def can_isolate() -> bool:
    """Only root can run a process as another user."""
    return os.geteuid() == 0


def not_isolated_warning() -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    return (
        f"warning: user servers will run as {user}, like the platform itself, so code in a notebook can read "
        "the state folder (admin key) and other servers' credentials; run `lakehub local up` as root for "
        "one Unix account per user"
    )


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    created: bool  # made by this process (removed again when the agent stops)


def ensure_account(hub_name: str) -> Account:
    """The hub user's Unix account, created (no home; the agent gives each task a folder) when
    missing. Never uid 0."""
    name = unix_username(hub_name)
    created = False
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        uid = stable_uid(name)
        cmd = [
            "useradd",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "--comment",
            f"lakehub {hub_name}"[:60],
        ]
        try:
            pwd.getpwuid(uid)
        except KeyError:
            cmd += ["--uid", str(uid)]
        proc = subprocess.run(cmd + [name], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise LakehubError(f"cannot create the Unix account {name} for {hub_name}: {proc.stderr.strip()}")
        entry = pwd.getpwnam(name)
        created = True
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LakehubError(f"refusing to run {hub_name}'s server as {name}: it has uid or gid 0")
    return Account(name, entry.pw_uid, entry.pw_gid, created)


def remove_account(account: Account) -> None:
    if account.created:
        subprocess.run(["userdel", account.name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", account.name], capture_output=True, timeout=30)


def make_private_folder(parent_fd: int, name: str, account: Account) -> None:
    """Create `name` under the open folder `parent_fd` (which only root can write) as the
    account's own 0700 folder. Nothing is followed: the folder is made here, and chowned
    through a descriptor opened with O_NOFOLLOW."""
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        os.fchown(fd, account.uid, account.gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def open_for_others(paths) -> list[tuple[Path, int]]:
    """User servers run this machine's Python and the checkout's code as other accounts. Where
    a folder on the way forbids others to pass (pyenv under /root, mode 0700), add traverse-only
    permission (o+x: no listing, no reading of anything not itself readable). Returns what to
    restore."""
    changed: list[tuple[Path, int]] = []
    seen: set[Path] = set()
    for target in paths:
        target = Path(os.path.realpath(target))
        for folder in [*reversed(target.parents), *([target] if target.is_dir() else [])]:
            if folder in seen:
                continue
            seen.add(folder)
            st = os.stat(folder)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o001:
                os.chmod(folder, stat.S_IMODE(st.st_mode) | 0o001)
                changed.append((folder, stat.S_IMODE(st.st_mode)))
    return changed


def restore_modes(changed: list[tuple[Path, int]]) -> None:
    for folder, mode in reversed(changed):
        try:
            st = os.stat(folder, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(folder, mode)
        except OSError:
            pass


def interpreter_paths() -> list[str]:
    """What a user server needs to reach: this Python (the venv and the interpreter it links to)
    and the checkout (editable install)."""
    root = Path(__file__).resolve().parents[2]
    return [sys.executable, os.path.realpath(sys.executable), sys.prefix, os.path.realpath(sys.base_prefix), str(root)]
