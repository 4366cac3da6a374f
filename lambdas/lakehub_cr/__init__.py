"""What every lakehub custom-resource function shares (packed into each function's zip as
lakehub_cr/, see lakehub.assets.FUNCTIONS)."""

from __future__ import annotations

import functools

# CloudFormation keeps a reason of at most 256 characters, and crhelper cuts a longer one at its
# beginning, which is where the cause is named.
MAX_REASON = 256


def short(message: str) -> str:
    """The message within MAX_REASON characters, cut at its end."""
    return message if len(message) <= MAX_REASON else message[: MAX_REASON - 3] + "..."


def short_reason(func):
    """Fail with at most MAX_REASON characters, cut at the end (the cause stays readable)."""

    @functools.wraps(func)
    def wrapper(event, context):
        try:
            return func(event, context)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if len(message) > MAX_REASON:
                raise RuntimeError(short(message)) from exc
            raise

    return wrapper
