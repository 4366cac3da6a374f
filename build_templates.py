#!/usr/bin/env python3
"""Generate lakehub's CloudFormation templates into templates/ (see lakehub/cli/build.py and lakehub/release/build.py)."""

import sys

from lakehub.cli.build import main

if __name__ == "__main__":
    sys.exit(main())
