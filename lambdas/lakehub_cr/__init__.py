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


# The same crhelper settings for every function: plain-text logs, quiet boto, a short wait
# before a Delete's answer, polls a minute apart.
HELPER_SETTINGS = {"json_logging": False, "log_level": "INFO", "boto_level": "CRITICAL", "sleep_on_delete": 5, "polling_interval": 1}


def new_helper(cls=None):
    """The function's module-level crhelper helper (`cls`: a CfnResource subclass, if any)."""
    from crhelper import CfnResource

    return (cls or CfnResource)(**HELPER_SETTINGS)


def clients(helper, *services: str) -> tuple:
    """The function's module-level boto3 clients (boto3 honours AWS_ENDPOINT_URL: tests and the
    local runner point it at the emulator). If they cannot be made, crhelper answers FAILED for
    every request with the cause."""
    import boto3

    try:
        return tuple(boto3.client(service) for service in services)
    except Exception as exc:  # noqa: BLE001
        helper.init_failure(exc)
        return tuple(None for _ in services)
