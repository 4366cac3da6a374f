"""The `lakehub` command.

Each subcommand lives in its own module, which exposes `register(subparsers)`; the parser it
adds sets `func` (called with the parsed arguments, returns an exit code). A user's mistake is
raised as LakehubError and printed as one line, with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lakehub import __version__
from lakehub.errors import LakehubError

# Modules that add subcommands, in the order `lakehub --help` lists them.
COMMAND_MODULES = [
    "lakehub.release.build",  # build (templates, zips, lint)
    "lakehub.release.publish",  # publish (templates and zips to an assets bucket)
    "lakehub.release.deploy",  # deploy (change set, progress, outputs)
    "lakehub.local.cli",  # local up / status / down
    "lakehub.release.restore",  # restore-home (AWS Backup)
    "lakehub.cost",  # cost (estimate from the generated templates)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehub",
        description="Multi-tenant JupyterHub over an S3 data lake on AWS: templates, deploy, local, cost.",
    )
    parser.add_argument("--version", action="version", version=f"lakehub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A command whose module is not part of this build is simply not offered.
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LakehubError as exc:
        print(f"lakehub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lakehub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
