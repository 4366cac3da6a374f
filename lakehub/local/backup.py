"""`lakehub local backup` and `lakehub local restore-home`: the local platform's backups of what
users cannot lose, and an operator's restore of a deleted user's home.

A backup is a folder `<state>/backups/<UTC time, e.g. 20261202T013000Z>/`:

  efs/<file system folder>/tiers/<tier>/<unix name>/   every home, as on the emulated EFS
                                                        (owners, modes, times and links kept)
  hubs/<tier>/jupyterhub.sqlite                          each hub's database (SQLite's online
                                                        backup: consistent while the hub runs)
  manifest.json                                          when, what, how many files and bytes

Files that did not change since the previous backup are hard links to it (as `rsync
--link-dest` makes them), so a backup of unchanged homes costs no space. `down` takes one after
everything stopped; at most `KEEP` backups are kept (the oldest go first).

The notebook bucket is not here: it has its own export (`notebooks-export/`, README "What survives
what, locally") and its versions are the notebooks' checkpoints.

`restore-home --tier T --user U [--from TIME] [--force]` copies the user's home from the newest
backup that holds it (or the one named or taken at or before TIME) back to the emulated EFS. It
refuses to replace a home that holds files unless `--force`, and then first keeps that home as a
backup of its own. On AWS the same job is `lakehub restore-home` (AWS Backup; lakehub/release/restore.py).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.local.state import StateDir

BACKUPS_DIR = "backups"
EFS_DIR = "efs"  # lakehub.local.platform.EFS_DIR
HUBS_DIR = "hubs"
DB_NAME = "jupyterhub.sqlite"
MANIFEST = "manifest.json"
KEEP = 10
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"\d{8}T\d{6}Z(-\d+)?")
TIER_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass
class Backup:
    name: str
    path: Path
    files: int = 0
    linked: int = 0
    bytes: int = 0
    homes: list[str] = field(default_factory=list)
    hub_databases: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        text = (
            f"backup {self.name}: {len(self.homes)} homes ({self.files} files, {self.bytes / 1e6:.1f} MB, "
            f"{self.linked} unchanged since the last backup), {len(self.hub_databases)} hub databases in {self.path}"
        )
        if self.problems:
            text += f"; {len(self.problems)} not copied: {'; '.join(self.problems[:3])}"
        return text


def backups_root(state: StateDir) -> Path:
    return state.path / BACKUPS_DIR


def list_backups(state: StateDir) -> list[Path]:
    """The backups, oldest first (names sort by time)."""
    root = backups_root(state)
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and NAME.fullmatch(p.name) and (p / MANIFEST).exists()),
        key=lambda p: backup_time(p.name),
    )


def backup_time(name: str) -> datetime.datetime:
    return datetime.datetime.strptime(name.split("-")[0], NAME_FORMAT).replace(tzinfo=datetime.UTC)


def _new_folder(state: StateDir, now: datetime.datetime | None = None) -> Path:
    root = backups_root(state)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = (now or datetime.datetime.now(datetime.UTC)).strftime(NAME_FORMAT)
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue
    raise LakehubError(f"cannot make a new backup folder in {root}")


def _copy_tree(src: Path, dst: Path, previous: Path | None, backup: Backup) -> None:
    """Copy `src` to `dst` without following links: owners (as root), modes and times kept;
    a regular file equal in size and mtime to `previous`'s copy is a hard link to it."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        try:
            entries = sorted(os.listdir(src))
        except OSError as exc:
            backup.problems.append(f"{src}: {exc.strerror}")
            entries = []
        for name in entries:
            _copy_tree(src / name, dst / name, previous / name if previous else None, backup)
    elif stat.S_ISREG(st.st_mode):
        old = None
        if previous is not None:
            try:
                old = os.lstat(previous)
            except OSError:
                old = None
        if old is not None and stat.S_ISREG(old.st_mode) and old.st_size == st.st_size and old.st_mtime_ns == st.st_mtime_ns:
            os.link(previous, dst)
            backup.linked += 1
            backup.files += 1
            return
        try:
            shutil.copyfile(src, dst, follow_symlinks=False)
        except OSError as exc:
            backup.problems.append(f"{src}: {exc.strerror}")
            return
        backup.files += 1
        backup.bytes += st.st_size
    else:
        return  # sockets, fifos, devices: not part of a home worth keeping
    _keep_metadata(dst, st)


def _keep_metadata(path: Path, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _homes(efs: Path) -> list[tuple[str, str, str]]:
    """(file system folder, tier, unix name) of every home under an efs/ folder."""
    found = []
    if not efs.is_dir():
        return found
    for fs in sorted(p for p in efs.iterdir() if p.is_dir()):
        tiers = fs / "tiers"
        if not tiers.is_dir():
            continue
        for tier in sorted(p for p in tiers.iterdir() if p.is_dir()):
            for home in sorted(p for p in tier.iterdir() if p.is_dir() and not p.is_symlink()):
                found.append((fs.name, tier.name, home.name))
    return found


def _hub_databases(state: StateDir) -> list[tuple[str, Path]]:
    """(tier, database) of each hub: <state>/hubs/<tier>/state/ (containers) or hubs/<tier>/ (processes)."""
    hubs = state.path / HUBS_DIR
    found = []
    if hubs.is_dir():
        for tier in sorted(p for p in hubs.iterdir() if p.is_dir()):
            for db in (tier / "state" / DB_NAME, tier / DB_NAME):
                if db.is_file():
                    found.append((tier.name, db))
                    break
    return found


def _copy_database(src: Path, dst: Path) -> None:
    """SQLite's online backup: a consistent copy while the hub writes (WAL included)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(str(dst))
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(dst, 0o600)


def take_backup(
    state: StateDir,
    homes: list[tuple[str, str, str]] | None = None,
    keep: int = KEEP,
    now: datetime.datetime | None = None,
    databases: bool = True,
    note: str = "",
) -> Backup:
    """A backup of every home (or of `homes`) and each hub's database; prunes to `keep`."""
    efs = state.path / EFS_DIR
    earlier = list_backups(state)
    previous = earlier[-1] if earlier else None
    folder = _new_folder(state, now)
    backup = Backup(folder.name, folder)
    for fs, tier, unix in _homes(efs) if homes is None else homes:
        rel = Path(EFS_DIR, fs, "tiers", tier, unix)
        # the folders above a home: as on the emulated EFS (traverse-only for others)
        for up in (Path(EFS_DIR), Path(EFS_DIR, fs), Path(EFS_DIR, fs, "tiers"), Path(EFS_DIR, fs, "tiers", tier)):
            if not (folder / up).exists():
                (folder / up).mkdir(mode=0o700)
                _keep_metadata(folder / up, os.lstat(state.path / up))
        _copy_tree(state.path / rel, folder / rel, (previous / rel) if previous else None, backup)
        backup.homes.append(f"{tier}/{unix}")
    if databases:
        for tier, db in _hub_databases(state):
            out = folder / HUBS_DIR / tier
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                _copy_database(db, out / DB_NAME)
                backup.hub_databases.append(tier)
            except (sqlite3.Error, OSError) as exc:
                backup.problems.append(f"hub database {db}: {exc}")
    manifest = {
        "name": backup.name,
        "time": backup_time(backup.name).isoformat(),
        "homes": backup.homes,
        "hub_databases": backup.hub_databases,
        "files": backup.files,
        "bytes": backup.bytes,
        "linked": backup.linked,
        "problems": backup.problems,
        "note": note,
        "kind": "backup" if homes is None else "kept",
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for old in list_backups(state)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return backup


def _kind(path: Path) -> str:
    try:
        return json.loads((path / MANIFEST).read_text()).get("kind") or "backup"
    except (OSError, ValueError):
        return "backup"


def pick_backup(state: StateDir, tier: str, unix: str, when: str | None) -> Path:
    backups = list_backups(state)
    if not backups:
        raise LakehubError(f"no backups in {backups_root(state)}; take one with `lakehub local backup` (`down` takes one too)")
    if when:
        named = [b for b in backups if b.name == when]
        if named:
            return named[0]
        try:
            at = datetime.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
        except ValueError:
            raise LakehubError(
                f"--from {when!r} is neither a backup ({', '.join(b.name for b in backups[-3:])}, ...) "
                "nor a time (ISO 8601, e.g. 2026-12-01T18:00Z)"
            ) from None
        at = at if at.tzinfo else at.replace(tzinfo=datetime.UTC)
        earlier = [b for b in backups if backup_time(b.name) <= at]
        if not earlier:
            raise LakehubError(f"no backup taken at or before {at.isoformat()}; the oldest is {backups[0].name}")
        return earlier[-1]
    # (not the copies restore-home --force kept of a replaced home: they are newer than what was restored)
    holding = [b for b in backups if _kind(b) == "backup" and any(h[1:] == (tier, unix) for h in _homes(b / EFS_DIR))]
    return (holding or backups)[-1]


def restore_home(state: StateDir, tier: str, user: str, when: str | None = None, force: bool = False) -> str:
    """Put `user`'s home in `tier` back from a backup; returns one line saying what was done."""
    from lakehub_hub.accounts import unix_username

    if not TIER_NAME.fullmatch(tier or ""):
        raise LakehubError(f"--tier {tier!r} is not a tier name (lower-case letters, digits, hyphens); e.g. --tier pii")
    if not (user or "").strip():
        raise LakehubError("--user is empty; give the hub user name, e.g. --user alice")
    unix = unix_username(user)
    backup = pick_backup(state, tier, unix, when)
    homes = _homes(backup / EFS_DIR)
    tiers = sorted({t for _, t, _ in homes})
    if tier not in tiers:
        raise LakehubError(f"backup {backup.name} has no tier {tier!r} (its tiers: {', '.join(tiers) or 'none'})")
    found = [h for h in homes if h[1:] == (tier, unix)]
    if not found:
        here = sorted(u for _, t, u in homes if t == tier)
        raise LakehubError(
            f"backup {backup.name} has no home of user {user!r} ({unix}) in tier {tier} "
            f"(homes there: {', '.join(here) or 'none'}); check the name, or --from an older backup"
        )
    fs = found[0][0]
    rel = Path(EFS_DIR, fs, "tiers", tier, unix)
    target = state.path / rel
    kept = ""
    if target.exists() or target.is_symlink():
        occupied = target.is_symlink() or not target.is_dir() or any(True for _ in os.scandir(target))
        if occupied:
            if not force:
                raise LakehubError(
                    f"the home of {user!r} in tier {tier} exists and holds files ({target}); "
                    "stop their server and pass --force to replace it (its files are kept as a backup first)"
                )
            kept = take_backup(
                state,
                homes=[(fs, tier, unix)],
                keep=0,
                databases=False,
                note=f"kept by restore-home --force before restoring {backup.name}",
            ).name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    for up in (Path(EFS_DIR), Path(EFS_DIR, fs), Path(EFS_DIR, fs, "tiers"), Path(EFS_DIR, fs, "tiers", tier)):
        if not (state.path / up).exists():
            (state.path / up).mkdir(mode=0o700)
            _keep_metadata(state.path / up, os.lstat(backup / up))
    restored = Backup(backup.name, target)
    _copy_tree(backup / rel, target, None, restored)
    if restored.problems:
        raise LakehubError(f"restored {restored.files} files of {user!r}'s home but not: {'; '.join(restored.problems[:3])}")
    line = f"restored the home of {user!r} in tier {tier} ({restored.files} files) from backup {backup.name} to {target}"
    if kept:
        line += f"; the files it replaced are backup {kept}"
    return line


def backup_at_down(state: StateDir, say=lambda line: None, warn=lambda line: None) -> None:
    """`down`'s backup, after everything stopped (`say` is told of it); a failure is one line
    to `warn`, not a failed `down`."""
    if not (state.path / EFS_DIR).is_dir() and not _hub_databases(state):
        return
    try:
        backup = take_backup(state, note="taken by `lakehub local down`")
    except (OSError, LakehubError) as exc:
        warn(f"no backup taken at down: {exc}")
        return
    say(backup.line)
