"""Restoring what was lost (issue 18):

- `lakehub restore-home` (AWS Backup, lakehub/release/restore.py): moto has no AWS Backup restore jobs,
  so each request is checked with botocore's Stubber, which validates it against the service
  model (a wrong parameter name or type fails the test), and with the values the docs give.
- `lakehub local backup` / `lakehub local restore-home` (lakehub/local/backup.py) on a state
  folder laid out as the local platform lays it out (homes under efs/, hub databases under hubs/).
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from lakehub.release import restore
from lakehub.errors import LakehubError
from lakehub.local import backup as local_backup
from lakehub.local.state import StateDir

ROOT = Path(__file__).resolve().parents[1]
UTC = datetime.UTC
FS_ID = "fs-0123456789abcdef0"
ACCOUNT = "123456789012"
FS_ARN = f"arn:aws:elasticfilesystem:eu-west-1:{ACCOUNT}:file-system/{FS_ID}"
POINT_OLD = f"arn:aws:backup:eu-west-1:{ACCOUNT}:recovery-point:11111111-aaaa-bbbb-cccc-000000000001"
POINT_NEW = f"arn:aws:backup:eu-west-1:{ACCOUNT}:recovery-point:11111111-aaaa-bbbb-cccc-000000000002"
POINT_PARTIAL = f"arn:aws:backup:eu-west-1:{ACCOUNT}:recovery-point:11111111-aaaa-bbbb-cccc-000000000003"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ------------------------------------------------------------------------------------------
# AWS Backup (Stubber: requests validated against botocore's model of the service)
# ------------------------------------------------------------------------------------------
def test_moto_has_no_aws_backup_restore_jobs_so_the_requests_are_stubbed():
    """Why these tests stub: when moto models restore jobs, test against the emulator instead."""
    from moto.backup.models import BackupBackend

    assert not hasattr(BackupBackend, "start_restore_job")


class World:
    def __init__(self):
        kwargs = {"region_name": "eu-west-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.made = {s: boto3.client(s, **kwargs) for s in ("ssm", "efs", "backup")}
        self.stubs = {s: Stubber(c) for s, c in self.made.items()}
        for stub in self.stubs.values():
            stub.activate()
        self.slept: list[float] = []
        self.clock = 0.0

    def clients(self, service):
        return self.made[service]

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.clock += seconds

    def now(self):
        return self.clock

    def file_system(self, via_ssm=True):
        if via_ssm:
            self.stubs["ssm"].add_response(
                "get_parameter",
                {"Parameter": {"Name": "/lakehub/lakehub/HomesFileSystemId", "Value": FS_ID, "Type": "String"}},
                {"Name": "/lakehub/lakehub/HomesFileSystemId"},
            )
        self.stubs["efs"].add_response(
            "describe_file_systems",
            {
                "FileSystems": [
                    {
                        "OwnerId": ACCOUNT,
                        "CreationToken": "x",
                        "FileSystemId": FS_ID,
                        "FileSystemArn": FS_ARN,
                        "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=UTC),
                        "LifeCycleState": "available",
                        "NumberOfMountTargets": 2,
                        "SizeInBytes": {"Value": 1},
                        "PerformanceMode": "generalPurpose",
                        "Encrypted": True,
                        "Tags": [],
                    }
                ]
            },
            {"FileSystemId": FS_ID},
        )

    def points(self):
        self.stubs["backup"].add_response(
            "list_recovery_points_by_resource",
            {
                "RecoveryPoints": [
                    {
                        "RecoveryPointArn": POINT_OLD,
                        "CreationDate": datetime.datetime(2026, 11, 30, 5, tzinfo=UTC),
                        "Status": "COMPLETED",
                        "BackupVaultName": "aws/efs/automatic-backup-vault",
                    },
                    {
                        "RecoveryPointArn": POINT_NEW,
                        "CreationDate": datetime.datetime(2026, 12, 1, 5, tzinfo=UTC),
                        "Status": "COMPLETED",
                        "BackupVaultName": "aws/efs/automatic-backup-vault",
                    },
                    {
                        "RecoveryPointArn": POINT_PARTIAL,
                        "CreationDate": datetime.datetime(2026, 12, 2, 5, tzinfo=UTC),
                        "Status": "PARTIAL",
                        "BackupVaultName": "aws/efs/automatic-backup-vault",
                    },
                ]
            },
            {"ResourceArn": FS_ARN},
        )

    def start(
        self, point, item="/tiers/pii/lh-alice", role=f"arn:aws:iam::{ACCOUNT}:role/service-role/AWSBackupDefaultServiceRole"
    ):
        expected = {
            "RecoveryPointArn": point,
            "IamRoleArn": role,
            "ResourceType": "EFS",
            "IdempotencyToken": _Token(),
            "Metadata": _Metadata(item),
        }
        self.stubs["backup"].add_response("start_restore_job", {"RestoreJobId": "job-1"}, expected)

    def job(self, *statuses):
        for status in statuses:
            self.stubs["backup"].add_response(
                "describe_restore_job",
                {
                    "RestoreJobId": "job-1",
                    "Status": status,
                    "PercentDone": "50%",
                    "CreationDate": datetime.datetime(2026, 12, 2, 1, 0, tzinfo=UTC),
                },
                {"RestoreJobId": "job-1"},
            )

    @classmethod
    def restoring(cls, *statuses):
        """The platform's file system and its backups, a restore of alice's home from the newest
        completed one started, and its job reporting `statuses`."""
        w = cls()
        w.file_system()
        w.points()
        w.start(POINT_NEW)
        w.job(*statuses)
        return w

    def done(self):
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


class _Token(str):
    """Matches the idempotency token the command makes (one per run)."""

    def __new__(cls):
        return super().__new__(cls, "")

    def __eq__(self, other):
        return isinstance(other, str) and other.startswith("lakehub-restore-")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = str.__hash__


class _Metadata(dict):
    """The EFS restore metadata the AWS Backup docs name for an item-level restore into the
    same file system (docs/AWS_NOTES.md); the CreationToken is the run's token."""

    def __init__(self, item):
        super().__init__()
        self.item = item

    def __eq__(self, other):
        return (
            isinstance(other, dict)
            and set(other)
            == {"file-system-id", "newFileSystem", "itemsToRestore", "Encrypted", "PerformanceMode", "CreationToken"}
            and other["file-system-id"] == FS_ID
            and other["newFileSystem"] == "false"
            and json.loads(other["itemsToRestore"]) == [self.item]
            and other["Encrypted"] == "true"
            and other["PerformanceMode"] == "generalPurpose"
            and other["CreationToken"].startswith("lakehub-restore-")
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None


def test_restore_home_restores_the_users_home_path_from_the_newest_completed_backup_and_waits():
    w = World.restoring("RUNNING", "RUNNING", "COMPLETED")
    result = restore.restore_home(w.clients, "pii", "alice", sleep=w.sleep, now=w.now, poll=15)
    w.done()
    assert result["status"] == "COMPLETED" and result["recovery_point_arn"] == POINT_NEW
    assert result["item"] == "/tiers/pii/lh-alice"  # the user's access point root (fargate.user_home)
    assert result["restored_under"] == "/aws-backup-restore_<datetime>/tiers/pii/lh-alice"
    assert w.slept == [15, 15]
    commands = restore.move_back_commands(result)
    assert (
        commands[-1]
        == "sudo rsync -a /mnt/homes/aws-backup-restore_<datetime>/tiers/pii/lh-alice/ /mnt/homes/tiers/pii/lh-alice/"
    )


def test_before_picks_the_newest_backup_taken_before_that_time_and_a_role_can_be_given():
    w = World()
    w.file_system(via_ssm=False)
    w.points()
    w.start(POINT_OLD, item=f"/tiers/nonpii/{_unix('Bob.B')}", role=f"arn:aws:iam::{ACCOUNT}:role/restorer")
    result = restore.restore_home(
        w.clients,
        "nonpii",
        "Bob.B",
        fs_id=FS_ID,
        before=datetime.datetime(2026, 12, 1, tzinfo=UTC),
        iam_role_arn=f"arn:aws:iam::{ACCOUNT}:role/restorer",
        wait=0,
    )
    w.done()
    assert result["status"] == "STARTED" and result["recovery_point_arn"] == POINT_OLD


def _unix(user):
    from lakehub_hub.accounts import unix_username

    return unix_username(user)


def test_the_wait_is_bounded_and_says_the_job_still_runs():
    w = World.restoring("RUNNING", "RUNNING", "RUNNING")
    result = restore.restore_home(w.clients, "pii", "alice", wait=40, poll=15, sleep=w.sleep, now=w.now)
    assert result["status"].startswith("RUNNING (still running after 40 s)")
    assert sum(w.slept) <= 40


def test_a_failed_job_no_backup_and_an_unknown_recovery_point_are_one_line_each():
    w = World.restoring("FAILED")
    with pytest.raises(LakehubError, match="restore job job-1 FAILED"):
        restore.restore_home(w.clients, "pii", "alice", sleep=w.sleep, now=w.now)
    w = World()
    w.file_system()
    w.points()
    with pytest.raises(LakehubError, match="no completed backup of fs-.* taken before 2026-11-01"):
        restore.restore_home(w.clients, "pii", "alice", before=datetime.datetime(2026, 11, 1, tzinfo=UTC))
    w = World()
    w.file_system()
    w.points()
    with pytest.raises(LakehubError, match="is not a recovery point of"):
        restore.restore_home(w.clients, "pii", "alice", recovery_point=POINT_OLD.replace("0001", "0009"))


def test_an_unknown_platform_is_one_line_naming_the_fix():
    w = World()
    w.stubs["ssm"].add_client_error("get_parameter", "ParameterNotFound", "not found")
    with pytest.raises(LakehubError, match="pass --platform .* or --file-system-id"):
        restore.restore_home(w.clients, "pii", "alice", platform="nope")


def test_restore_home_cli_mistakes_are_one_line_without_a_traceback():
    _one_line_error(
        _cli(
            "restore-home", "--tier", "PII!", "--user", "alice", "--region", "eu-west-1", "--endpoint-url", "http://127.0.0.1:9"
        ),
        "--tier",
        "not a tier name",
    )
    proc = _cli("restore-home", "--tier", "pii", "--user", "alice", "--recovery-point", "rp-1")
    assert proc.returncode == 2 and "not a recovery point ARN" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("restore-home", "--tier", "pii", "--user", "alice", "--before", "yesterday")
    assert proc.returncode == 2 and "not a time" in proc.stderr and "Traceback" not in proc.stderr
    assert "restore-home" in _cli("--help").stdout


# ------------------------------------------------------------------------------------------
# the local platform's backups
# ------------------------------------------------------------------------------------------
UID = 201234


def _home(state: Path, tier: str, unix: str) -> Path:
    return state / "efs" / "lakehub-homes" / "tiers" / tier / unix


@pytest.fixture
def state(tmp_path):
    root = tmp_path / "state"
    for tier, unix in (("pii", "lh-alice"), ("pii", "lh-bob"), ("nonpii", "lh-carol")):
        home = _home(root, tier, unix)
        home.mkdir(parents=True)
        (home / "notes.txt").write_text(f"{unix}'s notes\n")
        (home / ".local" / "lib").mkdir(parents=True)
        (home / ".local" / "lib" / "pkg.py").write_text("x = 1\n")
        os.symlink("notes.txt", home / "link")
        os.chmod(home, 0o700)
        if os.geteuid() == 0:
            for p in (home, home / "notes.txt"):
                os.lchown(p, UID, UID)
    db = root / "hubs" / "pii" / "state" / "jupyterhub.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("create table users (name text)")
    conn.execute("insert into users values ('alice')")
    conn.commit()
    yield root
    conn.close()


def test_backup_copies_every_home_with_owner_mode_and_links_and_each_hub_database(state):
    s = StateDir(state)
    b = local_backup.take_backup(s)
    assert sorted(b.homes) == ["nonpii/lh-carol", "pii/lh-alice", "pii/lh-bob"]
    assert b.hub_databases == ["pii"] and not b.problems
    copy = b.path / "efs" / "lakehub-homes" / "tiers" / "pii" / "lh-alice"
    assert (copy / "notes.txt").read_text() == "lh-alice's notes\n"
    assert (copy / ".local" / "lib" / "pkg.py").exists()
    assert os.readlink(copy / "link") == "notes.txt"
    assert oct(os.stat(copy).st_mode & 0o777) == "0o700"
    if os.geteuid() == 0:
        assert os.stat(copy / "notes.txt").st_uid == UID
    # the hub's database, consistent, while the hub (the fixture's connection) holds it open in WAL mode
    db = sqlite3.connect(b.path / "hubs" / "pii" / "jupyterhub.sqlite")
    assert db.execute("select name from users").fetchall() == [("alice",)]
    assert json.loads((b.path / "manifest.json").read_text())["files"] == b.files == 6


def test_a_second_backup_links_unchanged_files_and_keeps_at_most_keep(state):
    s = StateDir(state)
    first = local_backup.take_backup(s, now=datetime.datetime(2026, 12, 1, 1, tzinfo=UTC))
    (_home(state, "pii", "lh-alice") / "notes.txt").write_text("changed, longer than before\n")
    second = local_backup.take_backup(s, now=datetime.datetime(2026, 12, 1, 2, tzinfo=UTC))
    rel = Path("efs/lakehub-homes/tiers/pii")
    assert os.stat(first.path / rel / "lh-bob" / "notes.txt").st_ino == os.stat(second.path / rel / "lh-bob" / "notes.txt").st_ino
    assert (first.path / rel / "lh-alice" / "notes.txt").read_text() == "lh-alice's notes\n"
    assert (second.path / rel / "lh-alice" / "notes.txt").read_text() == "changed, longer than before\n"
    assert second.linked == 5
    local_backup.take_backup(s, keep=2, now=datetime.datetime(2026, 12, 1, 3, tzinfo=UTC))
    assert [p.name for p in local_backup.list_backups(s)] == ["20261201T020000Z", "20261201T030000Z"]


def test_restore_home_puts_a_deleted_home_back_as_it_was(state):
    import shutil

    s = StateDir(state)
    local_backup.take_backup(s)
    home = _home(state, "pii", "lh-alice")
    shutil.rmtree(home)
    line = local_backup.restore_home(s, "pii", "alice")
    assert "restored the home of 'alice' in tier pii (2 files)" in line
    assert (home / "notes.txt").read_text() == "lh-alice's notes\n"
    assert os.readlink(home / "link") == "notes.txt"
    assert oct(os.stat(home).st_mode & 0o777) == "0o700"
    if os.geteuid() == 0:
        assert os.stat(home).st_uid == UID and os.stat(home / "notes.txt").st_uid == UID


def test_restore_home_refuses_to_replace_a_home_with_files_unless_forced_and_then_keeps_them(state):
    s = StateDir(state)
    local_backup.take_backup(s, now=datetime.datetime(2026, 12, 1, 1, tzinfo=UTC))
    home = _home(state, "pii", "lh-alice")
    (home / "notes.txt").write_text("newer work\n")
    with pytest.raises(LakehubError, match="exists and holds files .*--force"):
        local_backup.restore_home(s, "pii", "alice")
    assert (home / "notes.txt").read_text() == "newer work\n"
    line = local_backup.restore_home(s, "pii", "alice", force=True)
    assert (home / "notes.txt").read_text() == "lh-alice's notes\n"
    kept = line.rsplit("backup ", 1)[1]
    assert (s.path / "backups" / kept / "efs/lakehub-homes/tiers/pii/lh-alice/notes.txt").read_text() == "newer work\n"
    # an empty home (a server started after the delete made it) is simply filled
    import shutil

    shutil.rmtree(home)
    home.mkdir()
    local_backup.restore_home(s, "pii", "alice", when="20261201T010000Z")
    assert (home / "notes.txt").read_text() == "lh-alice's notes\n"


def test_from_picks_the_backup_at_or_before_a_time(state):
    s = StateDir(state)
    local_backup.take_backup(s, now=datetime.datetime(2026, 12, 1, 1, tzinfo=UTC))
    (_home(state, "pii", "lh-alice") / "notes.txt").write_text("second\n")
    local_backup.take_backup(s, now=datetime.datetime(2026, 12, 1, 2, tzinfo=UTC))
    (_home(state, "pii", "lh-alice") / "notes.txt").write_text("third\n")
    local_backup.restore_home(s, "pii", "alice", when="2026-12-01T01:30", force=True)
    assert (_home(state, "pii", "lh-alice") / "notes.txt").read_text() == "lh-alice's notes\n"
    local_backup.restore_home(s, "pii", "alice", force=True)
    assert (_home(state, "pii", "lh-alice") / "notes.txt").read_text() == "second\n"


def test_local_backup_and_restore_home_cli_say_one_line_for_each_mistake(state, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(
        _cli("local", "restore-home", "--state-dir", str(empty), "--tier", "pii", "--user", "alice"),
        "no backups in",
        "lakehub local backup",
    )
    proc = _cli("local", "backup", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("lakehub local: backup ") and "3 homes" in proc.stdout and "1 hub databases" in proc.stdout
    _one_line_error(
        _cli("local", "restore-home", "--state-dir", str(state), "--tier", "gold", "--user", "alice"),
        "has no tier 'gold'",
        "nonpii, pii",
    )
    _one_line_error(
        _cli("local", "restore-home", "--state-dir", str(state), "--tier", "pii", "--user", "zed"),
        "no home of user 'zed' (lh-zed) in tier pii",
        "lh-alice, lh-bob",
    )
    _one_line_error(
        _cli("local", "restore-home", "--state-dir", str(state), "--tier", "pii", "--user", "alice", "--from", "last tuesday"),
        "--from 'last tuesday' is neither a backup",
    )
    _one_line_error(
        _cli("local", "restore-home", "--state-dir", str(state), "--tier", "pii", "--user", "alice"),
        "exists and holds files",
        "--force",
    )
