"""`python -m lakehub.cli ...`: the `lakehub` command."""

import sys

from lakehub.cli import main

sys.exit(main())
