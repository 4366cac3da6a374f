"""The `lakehub` command: argparse and rich only.

Each subcommand has its module here (build, publish, deploy, local, restore, cost) with
`register(subparsers)`; the parser it adds sets `func` (called with the parsed arguments, returns
an exit code). The work is done by the library (lakehub.release, lakehub.cost, lakehub.local),
which returns data; these modules parse the arguments and print. A user's mistake is raised as
LakehubError and printed as one line, with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from lakehub import __version__
from lakehub.cli import build, cost, deploy, local, publish, restore
from lakehub.errors import LakehubError

# The subcommands, in the order `lakehub --help` lists them.
COMMANDS = (build, publish, deploy, local, restore, cost)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehub",
        description="Multi-tenant JupyterHub over an S3 data lake on AWS: templates, deploy, local, cost.",
    )
    parser.add_argument("--version", action="version", version=f"lakehub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except LakehubError as exc:
        print(f"lakehub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lakehub: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`lakehub ... | head`): no traceback, and nothing more to write at
        # exit (Python's signal documentation, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
