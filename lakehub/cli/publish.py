"""`lakehub publish`: the arguments and the table of what was uploaded (lakehub.release.publish uploads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.release import publish


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "publish",
        help="upload templates and function zips to an assets bucket",
        description=publish.__doc__.replace("`lakehub publish`: ", "", 1),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bucket", help="assets bucket (the templates' AssetsBucketName)")
    p.add_argument(
        "--prefix",
        default=publish.DEFAULT_PREFIX,
        help=f"key prefix (the templates' AssetsKeyPrefix; default {publish.DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--region",
        help="the region the stacks will be deployed in; the bucket must be there (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)",
    )
    p.add_argument("--endpoint-url", help="S3 endpoint (an emulator); default: AWS, or AWS_ENDPOINT_URL")
    p.add_argument(
        "--stage-dir",
        metavar="DIR",
        help="only lay the files out in DIR (templates/, functions/, source/), as taskcat uploads them",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if args.stage_dir:
        keys = publish.stage(Path(args.stage_dir))
        print(f"staged {len(keys)} files in {args.stage_dir}")
        return 0
    if not args.bucket:
        raise LakehubError("--bucket is required (the S3 bucket the templates' AssetsBucketName names)")
    prefix = publish.normalize_prefix(args.prefix)
    keys, region = publish._publish(args.bucket, prefix, args.region, args.endpoint_url)
    _print(args.bucket, prefix, keys)
    url = publish.template_url(args.bucket, prefix, region)
    print(f"\nlaunch: aws cloudformation create-stack --stack-name lakehub --region {region} --template-url {url} \\")
    print(
        f"  --parameters ParameterKey=AssetsBucketName,ParameterValue={args.bucket} "
        f"ParameterKey=AssetsKeyPrefix,ParameterValue={prefix or chr(39) * 2} ... "
        "--capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND"
    )
    return 0


def _print(bucket: str, prefix: str, keys: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"uploaded to s3://{bucket}/{prefix}", title_justify="left")
    table.add_column("key")
    table.add_column("kind")
    for key in keys:
        rel = key[len(prefix) :]
        table.add_row(key, rel.split("/", 1)[0])
    Console(soft_wrap=True).print(table)
    print(f"{len(keys)} files uploaded")
