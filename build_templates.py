#!/usr/bin/env python3
"""Generate lakehub's CloudFormation templates into templates/ (see lakehub/release/build.py)."""

import sys

from lakehub.release.build import main

if __name__ == "__main__":
    sys.exit(main())
