"""What every lakehub custom-resource function shares (packed into each function's zip as
lakehub_cr/, see lakehub.assets.FUNCTIONS).

A function's index.py reads:

    helper = new_helper()                  # new_helper(polling=True) to wait across invocations
    (s3,) = clients(helper, "s3")          # module-level boto3 clients
    ...                                    # raise Failure("one line") for CloudFormation's reason
    handler = serve(helper, create=_write, update=_write, delete=nothing_to_delete("why"))

Every request function takes the event and returns the physical id (or None: keep the event's).
"""

from __future__ import annotations

import functools
import logging

from crhelper import CfnResource

logger = logging.getLogger(__name__)

# CloudFormation keeps a reason of at most 256 characters, and crhelper cuts a longer one at its
# beginning, which is where the cause is named.
MAX_REASON = 256


def short(message: str) -> str:
    """The message within MAX_REASON characters, cut at its end."""
    return message if len(message) <= MAX_REASON else message[: MAX_REASON - 3] + "..."


class Failure(RuntimeError):
    """A failure whose message is CloudFormation's reason (cut to MAX_REASON at its end)."""

    def __init__(self, message: str):
        super().__init__(short(message))


# The same crhelper settings for every function: plain-text logs, quiet boto, a short wait
# before a Delete's answer, polls a minute apart.
HELPER_SETTINGS = {
    "json_logging": False,
    "log_level": "INFO",
    "boto_level": "CRITICAL",
    "sleep_on_delete": 5,
    "polling_interval": 1,
}


class PollingHelper(CfnResource):
    """crhelper 2.0.12 schedules at least one poll (one minute later) whenever a poll function is
    registered for the request type. When Create/Update found nothing to wait for, it calls
    `answer_now()` and the answer goes out in this invocation instead."""

    finished = False

    def answer_now(self) -> None:
        self.finished = True

    def __call__(self, event, context):
        self.finished = False
        return super().__call__(event, context)

    def _poll_enabled(self):
        if self.finished and "CrHelperPoll" not in self._event:
            return False
        return super()._poll_enabled()


def new_helper(polling: bool = False) -> CfnResource:
    """The function's module-level crhelper helper (`polling`: it may wait across invocations,
    see serve's `poll`)."""
    return (PollingHelper if polling else CfnResource)(**HELPER_SETTINGS)


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


def serve(helper, *, create, update, delete, poll=None):
    """Register the request functions (each `f(event)`, failing with a short reason) on `helper`
    and return the Lambda entry point. `poll` (a helper from new_helper(polling=True)) is called
    a minute apart after a Create or Update that did not `answer_now()`, until it returns the
    physical id."""
    for register, func in ((helper.create, create), (helper.update, update), (helper.delete, delete)):
        register(_request(func))
    if poll is not None:
        helper.poll_create(_request(poll))
        helper.poll_update(_request(poll))

    def handler(event, context):
        helper(event, context)

    return handler


def _request(func):
    """`func(event)` as crhelper calls it, failing with at most MAX_REASON characters cut at the
    end (crhelper would cut at the beginning, where the cause is named)."""

    @functools.wraps(func)
    def request(event, _context):
        try:
            return func(event)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if len(message) > MAX_REASON:
                raise RuntimeError(short(message)) from exc
            raise

    return request


def nothing_to_delete(why: str):
    """A Delete that leaves everything in place (`why`: whose the thing is) and succeeds."""

    def delete(event) -> None:
        logger.info("nothing to delete for %s: %s", event.get("PhysicalResourceId"), why)

    return delete


def properties(event) -> dict:
    """The request's ResourceProperties."""
    return event.get("ResourceProperties") or {}


def physical_id(event) -> str:
    """The request's PhysicalResourceId ("" on Create)."""
    return str(event.get("PhysicalResourceId") or "")


def error_code(exc) -> str | None:
    """The error code of a botocore ClientError."""
    return exc.response.get("Error", {}).get("Code")


def dns_suffix(client) -> str:
    """The DNS suffix of the client's partition (S3 and ECR host names)."""
    return "amazonaws.com.cn" if client.meta.partition == "aws-cn" else "amazonaws.com"
