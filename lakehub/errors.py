"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class LakehubError(Exception):
    """A mistake the user can fix: the message names the cause and the fix."""

    exit_code = 2
