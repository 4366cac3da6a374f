"""Custom::ListenerPriority: a free rule priority on the platform's HTTPS listener for a tier.

Properties
  ListenerArn   the listener
  Preferred     optional whole number 1-50000 (0 or absent: any); used when it is free

Create: the Preferred priority when free, otherwise the lowest free priority (1-50000).
Update: the same priority as before while the listener is the same (the rule that holds it is
this tier's own rule, so it must not be recomputed); a new listener gets a new priority (a new
physical id, so CloudFormation replaces the rule).
Delete: nothing to release (the priority is free once the tier's rule is gone); succeeds.
Data: Priority (string, e.g. "3"), ListenerArn.
PhysicalResourceId: `<listener id>/<priority>` (the part of the ARN after `:listener/`).

Two tiers created at the same moment can be given the same priority (nothing reserves it until
the rule exists); the second rule then fails with PriorityInUse and a retry picks the next one.
"""

from __future__ import annotations

import functools
import logging
import re

import boto3
from botocore.exceptions import ClientError
from crhelper import CfnResource

logger = logging.getLogger(__name__)

helper = CfnResource(
    json_logging=False,
    log_level="INFO",
    boto_level="CRITICAL",
    sleep_on_delete=5,
    polling_interval=1,
)

try:
    # boto3 honours AWS_ENDPOINT_URL (tests and the local runner point it at the emulator).
    elbv2 = boto3.client("elbv2")
except Exception as exc:  # noqa: BLE001 - crhelper answers FAILED for every request
    helper.init_failure(exc)

MAX_PRIORITY = 50000
MAX_REASON = 256
LISTENER_ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener/(.+)$")


def _props(event) -> tuple[str, int]:
    props = event.get("ResourceProperties") or {}
    arn = props.get("ListenerArn")
    if not isinstance(arn, str) or not LISTENER_ARN.match(arn.strip()):
        raise ValueError(f"Invalid property ListenerArn: {str(arn)[:160]!r} is not a load balancer listener ARN")
    raw = props.get("Preferred", 0)
    try:
        preferred = int(str(raw).strip() or 0)
    except ValueError:
        raise ValueError(f"Invalid property Preferred: {str(raw)[:40]!r} is not a whole number") from None
    if not 0 <= preferred <= MAX_PRIORITY:
        raise ValueError(f"Invalid property Preferred: {preferred} is outside 0-{MAX_PRIORITY}")
    return arn.strip(), preferred


def _listener_id(arn: str) -> str:
    return LISTENER_ARN.match(arn).group(1)


def _used_priorities(arn: str) -> set[int]:
    used: set[int] = set()
    kwargs = {"ListenerArn": arn, "PageSize": 400}
    for _ in range(200):  # 50000 rules at most, 400 a page: bounded
        try:
            page = elbv2.describe_rules(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ListenerNotFound":
                raise ValueError(f"Listener {arn} does not exist") from exc
            raise
        for rule in page.get("Rules", []):
            priority = rule.get("Priority", "default")
            if priority != "default":
                used.add(int(priority))
        marker = page.get("NextMarker")
        if not marker:
            break
        kwargs["Marker"] = marker
    return used


def _allocate(arn: str, preferred: int) -> str:
    used = _used_priorities(arn)
    if preferred and preferred not in used:
        priority = preferred
    else:
        priority = next((p for p in range(1, MAX_PRIORITY + 1) if p not in used), 0)
        if not priority:
            raise ValueError(f"No free rule priority on listener {_listener_id(arn)}: all {MAX_PRIORITY} are in use")
        if preferred:
            logger.info("preferred priority %d is taken; using %d", preferred, priority)
    return _answer(arn, priority)


def _answer(arn: str, priority: int) -> str:
    helper.Data.update({"Priority": str(priority), "ListenerArn": arn})
    return f"{_listener_id(arn)}/{priority}"



def _short_reason(func):
    """Fail with at most 256 characters, cut at the end: crhelper cuts a longer reason at its
    beginning, which is where the cause is named."""

    @functools.wraps(func)
    def wrapper(event, context):
        try:
            return func(event, context)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if len(message) > MAX_REASON:
                raise RuntimeError(message[: MAX_REASON - 3] + "...") from exc
            raise

    return wrapper

@helper.create
@_short_reason
def create(event, _context):
    arn, preferred = _props(event)
    return _allocate(arn, preferred)


@helper.update
@_short_reason
def update(event, _context):
    arn, preferred = _props(event)
    old_arn = (event.get("OldResourceProperties") or {}).get("ListenerArn")
    physical_id = event.get("PhysicalResourceId", "")
    listener_id, _, priority = physical_id.rpartition("/")
    if arn == old_arn and listener_id == _listener_id(arn) and priority.isdigit():
        # Ours already: the tier's rule holds it. Keep it (recomputing would move the rule).
        return _answer(arn, int(priority))
    logger.info("listener changed (or unknown physical id %r): allocating again", physical_id)
    return _allocate(arn, preferred)


@helper.delete
@_short_reason
def delete(event, _context):
    # Nothing to release: the priority is free once the tier's listener rule is deleted.
    logger.info("nothing to delete for %s", event.get("PhysicalResourceId"))


def handler(event, context):
    helper(event, context)
