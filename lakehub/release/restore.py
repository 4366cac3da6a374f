"""`lakehub restore-home`: put a user's home back from AWS Backup (the homes file system's backups).

The homes file system has `BackupPolicy: ENABLED` (lakehub/stacks/cluster.py): AWS Backup's default
EFS plan takes a backup a day and keeps it 35 days, in the vault `aws/efs/automatic-backup-vault`.
A user's home is `/tiers/<tier>/<unix name>` on that file system (the user's access point root,
lakehub_hub.fargate.user_home). This command:

1. finds the file system (`--file-system-id`, else the platform's SSM value
   `/lakehub/<platform>/HomesFileSystemId`) and its ARN (DescribeFileSystems);
2. picks a recovery point (ListRecoveryPointsByResource): `--recovery-point ARN`, else the newest
   COMPLETED one, taken before `--before TIME` when given;
3. starts an item-level restore of the home's path into the same file system
   (StartRestoreJob, ResourceType EFS, metadata `file-system-id`, `newFileSystem` false,
   `itemsToRestore` ["/tiers/<tier>/<unix name>"], `Encrypted`, `PerformanceMode`,
   `CreationToken`; docs/AWS_NOTES.md has the keys and their source);
4. waits (bounded by `--wait`) for the job (DescribeRestoreJob) and says where the files are.

AWS Backup never overwrites: it restores into a new folder `aws-backup-restore_<datetime>` at the
file system's root, with the item's whole path below it. The command does not move the files
back itself, on purpose: nothing in the platform mounts the file system's root (each server
mounts its own home's access point, the hub only its tier's folder), and a task that could would
need `elasticfilesystem:ClientRootAccess` on every home, a standing privilege for a rare job. The
operator moves them from a host that mounts the root (the printed commands), and can first
look at what came back next to what the user has now.

moto has no AWS Backup restore jobs (its backup backend has plans and vaults only), so the
requests are tested with botocore's Stubber, which validates each one against the service model
(tests/test_restore.py).
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid

from botocore.exceptions import ClientError

from lakehub.stacks import names
from lakehub.errors import LakehubError

DEFAULT_PLATFORM = "lakehub"
DEFAULT_WAIT = 3600.0  # an item-level restore of one home: minutes; a large one longer
POLL_SECONDS = 15.0
# AWS Backup's default service role: the console creates it on first use; `--iam-role-arn` otherwise.
DEFAULT_ROLE_NAME = "service-role/AWSBackupDefaultServiceRole"
RESTORE_FOLDER_PREFIX = "aws-backup-restore_"
TIER_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")  # tier names (settings): lower case, digits, hyphens
RECOVERY_POINT_ARN = re.compile(r"arn:aws[a-z-]*:backup:[a-z0-9-]+:\d{12}:recovery-point:[A-Za-z0-9-]+")
FILE_SYSTEM_ID = re.compile(r"fs-[0-9a-f]{8,40}")
DONE = ("COMPLETED", "ABORTED", "FAILED")


def home_path(tier: str, user: str) -> str:
    """The user's home on the homes file system: /tiers/<tier>/<unix name> (what the spawner
    makes the user's access point root)."""
    from lakehub_hub.accounts import unix_username

    if not TIER_NAME.fullmatch(tier or ""):
        raise LakehubError(f"--tier {tier!r} is not a tier name (lower-case letters, digits, hyphens); e.g. --tier pii")
    if not (user or "").strip():
        raise LakehubError("--user is empty; give the hub user name, e.g. --user alice")
    return f"{names.HOMES_TIERS_ROOT}/{tier}/{unix_username(user)}"


def file_system_id(clients, platform: str, given: str | None) -> str:
    if given:
        if not FILE_SYSTEM_ID.fullmatch(given):
            raise LakehubError(f"--file-system-id {given!r} is not an EFS file system id (fs-...)")
        return given
    name = names.ssm_name(platform, names.HOMES_FILE_SYSTEM_ID)
    try:
        return clients("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ParameterNotFound":
            raise LakehubError(
                f"no platform {platform!r} here: SSM has no {name}; pass --platform (the main "
                "stack's PlatformName) or --file-system-id"
            ) from None
        raise


def choose_recovery_point(points: list[dict], before: datetime.datetime | None) -> dict | None:
    """The newest COMPLETED recovery point, created before `before` when given."""
    done = [p for p in points if p.get("Status") == "COMPLETED"]
    if before is not None:
        done = [p for p in done if p["CreationDate"] < before]
    return max(done, key=lambda p: p["CreationDate"], default=None)


def list_recovery_points(backup, resource_arn: str) -> list[dict]:
    points, kwargs = [], {"ResourceArn": resource_arn}
    for _ in range(100):  # pages of up to 100 (35 daily backups by default)
        page = backup.list_recovery_points_by_resource(**kwargs)
        points += page.get("RecoveryPoints", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return points


def restore_metadata(fs: dict, item: str, token: str) -> dict[str, str]:
    """StartRestoreJob's metadata for an item-level restore of `item` into the same file system
    (values are strings; itemsToRestore a JSON list of paths from the file system's root)."""
    return {
        "file-system-id": fs["FileSystemId"],
        "newFileSystem": "false",
        "itemsToRestore": json.dumps([item]),
        "Encrypted": "true" if fs.get("Encrypted") else "false",
        "PerformanceMode": fs.get("PerformanceMode") or "generalPurpose",
        "CreationToken": token,
    }


def restore_home(
    clients,
    tier: str,
    user: str,
    *,
    platform: str = DEFAULT_PLATFORM,
    fs_id: str | None = None,
    recovery_point: str | None = None,
    before: datetime.datetime | None = None,
    iam_role_arn: str | None = None,
    wait: float = DEFAULT_WAIT,
    poll: float = POLL_SECONDS,
    sleep=time.sleep,
    now=time.monotonic,
    say=lambda line: None,
) -> dict:
    """Start (and wait for) the restore of one user's home; returns what happened."""
    item = home_path(tier, user)
    fs_id = file_system_id(clients, platform, fs_id)
    efs, backup = clients("efs"), clients("backup")
    try:
        found = efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "FileSystemNotFound":
            raise LakehubError(f"file system {fs_id} does not exist in this account and region; check --region") from None
        raise
    fs = found[0]
    fs_arn = fs.get("FileSystemArn") or f"arn:aws:elasticfilesystem:{efs.meta.region_name}:{fs['OwnerId']}:file-system/{fs_id}"
    points = list_recovery_points(backup, fs_arn)
    if recovery_point:
        point = next((p for p in points if p["RecoveryPointArn"] == recovery_point), None)
        if point is None:
            raise LakehubError(
                f"{recovery_point} is not a recovery point of {fs_id}; leave --recovery-point out "
                "to use the newest, or list them with `aws backup list-recovery-points-by-resource "
                f"--resource-arn {fs_arn}`"
            )
    else:
        point = choose_recovery_point(points, before)
        if point is None:
            when = f" taken before {before.isoformat()}" if before else ""
            raise LakehubError(
                f"no completed backup of {fs_id}{when} (AWS Backup's daily plan takes the first "
                "within a day of creating the file system); nothing to restore"
            )
    role = iam_role_arn or f"arn:aws:iam::{fs['OwnerId']}:role/{DEFAULT_ROLE_NAME}"
    token = f"lakehub-restore-{uuid.uuid4().hex[:16]}"
    say(f"restoring {item} from {point['RecoveryPointArn']} ({point['CreationDate']:%Y-%m-%d %H:%M} UTC)")
    try:
        job_id = backup.start_restore_job(
            RecoveryPointArn=point["RecoveryPointArn"],
            IamRoleArn=role,
            ResourceType="EFS",
            IdempotencyToken=token,
            Metadata=restore_metadata(fs, item, token),
        )["RestoreJobId"]
    except ClientError as exc:
        error = exc.response["Error"]
        hint = (
            " (pass --iam-role-arn: a role AWS Backup may assume, with AWSBackupServiceRolePolicyForRestores)"
            if "role" in error.get("Message", "").lower()
            else ""
        )
        raise LakehubError(f"AWS Backup refused the restore: {error.get('Code')}: {error.get('Message')}{hint}") from None
    result = {
        "restore_job_id": job_id,
        "recovery_point_arn": point["RecoveryPointArn"],
        "item": item,
        "file_system_id": fs_id,
        "status": "STARTED",
        "restored_under": f"/{RESTORE_FOLDER_PREFIX}<datetime>{item}",
    }
    if wait <= 0:
        return result
    deadline = now() + wait
    while True:
        job = backup.describe_restore_job(RestoreJobId=job_id)
        status = job.get("Status", "")
        result["status"] = status
        if status in DONE:
            break
        if now() + poll > deadline:
            result["status"] = f"{status or 'PENDING'} (still running after {wait:.0f} s)"
            return result
        say(f"restore job {job_id}: {status} {job.get('PercentDone') or ''}".rstrip())
        sleep(poll)
    if status != "COMPLETED":
        raise LakehubError(
            f"restore job {job_id} {status}: {job.get('StatusMessage') or 'no message'}; "
            "see `aws backup describe-restore-job --restore-job-id " + job_id + "`"
        )
    created = job.get("CreationDate")
    result["started_at"] = created.isoformat() if isinstance(created, datetime.datetime) else created
    return result


def move_back_commands(result: dict) -> list[str]:
    item = result["item"]
    return [
        f"sudo mount -t efs -o tls,iam {result['file_system_id']}:/ /mnt/homes",
        f"ls -d /mnt/homes/{RESTORE_FOLDER_PREFIX}*{item}   # the newest is this job's",
        f"sudo rsync -a /mnt/homes/{RESTORE_FOLDER_PREFIX}<datetime>{item}/ /mnt/homes{item}/",
    ]
