"""`lakehub restore-home`: the arguments and what is printed (lakehub.release.restore restores)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from botocore.exceptions import BotoCoreError, ClientError

from lakehub.cli.argtypes import positive_seconds
from lakehub.errors import LakehubError
from lakehub.release import restore
from lakehub.release.deploy import client_config, make_client, resolve_region, unreachable


def parse_time(text: str) -> datetime.datetime:
    """argparse type: an ISO 8601 time (UTC when it names no zone)."""
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; give ISO 8601, e.g. 2026-12-01T18:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def recovery_point_arn(text: str) -> str:
    if not restore.RECOVERY_POINT_ARN.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a recovery point ARN (arn:aws:backup:REGION:ACCOUNT:recovery-point:ID); "
            "leave it out to use the newest, or see `aws backup list-recovery-points-by-resource`"
        )
    return text.strip()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "restore-home",
        help="restore a user's home from AWS Backup (item-level, into the same file system)",
        description=restore.__doc__.split("\n\n")[0],
    )
    p.add_argument("--tier", required=True, help="the user's tier, e.g. pii")
    p.add_argument("--user", required=True, help="the hub user name, e.g. alice")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--recovery-point", type=recovery_point_arn, metavar="ARN", help="this recovery point (default: the newest)"
    )
    which.add_argument(
        "--before", type=parse_time, metavar="TIME", help="the newest backup taken before TIME (ISO 8601, UTC by default)"
    )
    p.add_argument(
        "--platform",
        default=restore.DEFAULT_PLATFORM,
        help=f"the platform name (main stack's PlatformName; default {restore.DEFAULT_PLATFORM})",
    )
    p.add_argument("--file-system-id", help="the homes file system (default: the platform's SSM value HomesFileSystemId)")
    p.add_argument(
        "--iam-role-arn", help=f"the role AWS Backup restores with (default: the account's {restore.DEFAULT_ROLE_NAME})"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=restore.DEFAULT_WAIT,
        metavar="SECONDS",
        help="how long to wait for the restore job (default 3600; 0: start it and return)",
    )
    p.add_argument("--region", help="AWS region (default: AWS_REGION, then the profile's)")
    p.add_argument("--endpoint-url", help="an AWS emulator's endpoint (moto has no AWS Backup restore jobs)")
    p.add_argument("--timeout", type=positive_seconds, default=60.0, help="seconds each AWS call may take (default 60)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args) -> int:
    region = resolve_region(args.region)
    config = client_config(args.timeout, args.endpoint_url)
    made: dict = {}

    def clients(service: str):
        if service not in made:
            made[service] = make_client(service, region, args.endpoint_url, config)
        return made[service]

    if args.wait < 0:
        raise LakehubError(f"--wait {args.wait:g}: give 0 (do not wait) or a number of seconds")
    try:
        result = restore.restore_home(
            clients,
            args.tier,
            args.user,
            platform=args.platform,
            fs_id=args.file_system_id,
            recovery_point=args.recovery_point,
            before=args.before,
            iam_role_arn=args.iam_role_arn,
            wait=args.wait,
            say=lambda line: print(f"lakehub: {line}", file=sys.stderr),
        )
    except (BotoCoreError, ClientError) as exc:
        line = unreachable(exc, "AWS", args.endpoint_url or region or "AWS")
        if line is not None:
            raise line from None
        raise LakehubError(f"restore-home: {exc}") from None
    if args.format == "json":
        print(json.dumps(dict(result, move_back=restore.move_back_commands(result)), indent=2, default=str))
        return 0
    print(f"restore job {result['restore_job_id']}: {result['status']}")
    print(
        f"the home {result['item']} of file system {result['file_system_id']} comes back under "
        f"{result['restored_under']} (AWS Backup never overwrites); to move it back, from a host that mounts the file system's root:"
    )
    for line in restore.move_back_commands(result):
        print(f"  {line}")
    return 0
