"""Custom::ListenerPriority: a free rule priority on the platform's HTTPS listener for a tier.

Properties
  ListenerArn           the listener
  Preferred             optional whole number 1-50000 (0 or absent: any); used when it is free
  Minimum               optional lowest priority to allocate (default 1); main's own tiers take
                        explicit priorities below it
  ClaimParameterPrefix  optional SSM path (e.g. /lakehub/<platform>/listener-priorities): each
                        priority is claimed there with PutParameter without Overwrite, which
                        succeeds for one caller only, so stacks created at the same moment never
                        get the same priority

Create: the Preferred priority when free, otherwise the lowest free priority (Minimum-50000);
"free" means no rule holds it and (with ClaimParameterPrefix) no other stack has claimed it.
Update: the same priority as before while the listener is the same (the rule that holds it is
this tier's own rule, so it must not be recomputed); a new listener gets a new priority (a new
physical id, so CloudFormation replaces the rule).
Delete: releases this resource's claim (the priority is free once the tier's rule is gone);
succeeds when there is nothing to release.
Data: Priority (string, e.g. "3"), ListenerArn.
PhysicalResourceId: `<listener id>/<priority>` (the part of the ARN after `:listener/`).

Without ClaimParameterPrefix, two tiers created at the same moment can be given the same
priority (nothing reserves it until the rule exists) and the second rule fails with
PriorityInUse; CloudFormation does not retry.
"""

from __future__ import annotations

import logging
import re

from botocore.exceptions import ClientError
from lakehub_cr import clients, error_code, new_helper, physical_id, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper()

elbv2, ssm = clients(helper, "elbv2", "ssm")

MAX_PRIORITY = 50000
CLAIM_PREFIX = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
LISTENER_ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener/(.+)$")


def _whole(props: dict, key: str, default: int, low: int) -> int:
    raw = props.get(key, default)
    try:
        value = int(str(raw).strip() or default)
    except ValueError:
        raise ValueError(f"Invalid property {key}: {str(raw)[:40]!r} is not a whole number") from None
    if not low <= value <= MAX_PRIORITY:
        raise ValueError(f"Invalid property {key}: {value} is outside {low}-{MAX_PRIORITY}")
    return value


def _props(event) -> tuple[str, int]:
    props = properties(event)
    arn = props.get("ListenerArn")
    if not isinstance(arn, str) or not LISTENER_ARN.match(arn.strip()):
        raise ValueError(f"Invalid property ListenerArn: {str(arn)[:160]!r} is not a load balancer listener ARN")
    return arn.strip(), _whole(props, "Preferred", 0, 0)


def _claim_props(event) -> tuple[int, str | None]:
    props = properties(event)
    minimum = _whole(props, "Minimum", 1, 1)
    prefix = props.get("ClaimParameterPrefix") or None
    if prefix is not None and (not isinstance(prefix, str) or not CLAIM_PREFIX.match(prefix)):
        raise ValueError(
            f"Invalid property ClaimParameterPrefix: {str(prefix)[:160]!r} is not an SSM path such as /lakehub/x/listener-priorities"
        )
    return minimum, prefix


def _owner(event) -> str:
    return f"{event.get('StackId', '')}|{event.get('LogicalResourceId', '')}"


def _listener_id(arn: str) -> str:
    return LISTENER_ARN.match(arn).group(1)


def _used_priorities(arn: str) -> set[int]:
    used: set[int] = set()
    kwargs = {"ListenerArn": arn, "PageSize": 400}
    for _ in range(200):  # 50000 rules at most, 400 a page: bounded
        try:
            page = elbv2.describe_rules(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ListenerNotFound":
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


def claim(prefix: str, priority: int, owner: str) -> bool:
    """Claim `priority` for `owner`: PutParameter without Overwrite succeeds for one caller
    only. True when the claim is (or already was) the owner's."""
    name = f"{prefix}/{priority}"
    try:
        ssm.put_parameter(
            Name=name,
            Value=owner,
            Type="String",
            Overwrite=False,
            Description="lakehub: listener rule priority claimed by this stack resource",
        )
        return True
    except ClientError as exc:
        if error_code(exc) != "ParameterAlreadyExists":
            raise
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"] == owner
    except ClientError as exc:  # released between the two calls: try again later in the loop
        if error_code(exc) == "ParameterNotFound":
            return False
        raise


def release(prefix: str, priority: int, owner: str) -> None:
    name = f"{prefix}/{priority}"
    try:
        if ssm.get_parameter(Name=name)["Parameter"]["Value"] == owner:
            ssm.delete_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise


def choose(arn: str, preferred: int, minimum: int = 1, prefix: str | None = None, owner: str = "") -> int:
    """The priority for this resource: Preferred when free, else the lowest free from `minimum`;
    with a claim prefix, only one that this owner claimed."""
    used = _used_priorities(arn)
    candidates = ([preferred] if preferred else []) + [p for p in range(minimum, MAX_PRIORITY + 1) if p != preferred]
    for priority in candidates:  # bounded: at most 50000
        if priority in used:
            continue
        if prefix is None or claim(prefix, priority, owner):
            if preferred and priority != preferred:
                logger.info("preferred priority %d is taken; using %d", preferred, priority)
            return priority
    raise ValueError(
        f"No free rule priority on listener {_listener_id(arn)}: all of {minimum}-{MAX_PRIORITY} are in use or claimed"
    )


def _allocate(arn: str, preferred: int, event=None) -> str:
    minimum, prefix = _claim_props(event or {})
    return _answer(arn, choose(arn, preferred, minimum, prefix, _owner(event or {})))


def _answer(arn: str, priority: int) -> str:
    helper.Data.update({"Priority": str(priority), "ListenerArn": arn})
    return f"{_listener_id(arn)}/{priority}"


def create(event):
    arn, preferred = _props(event)
    return _allocate(arn, preferred, event)


def update(event):
    arn, preferred = _props(event)
    old_arn = (event.get("OldResourceProperties") or {}).get("ListenerArn")
    physical = physical_id(event)
    listener_id, _, priority = physical.rpartition("/")
    if arn == old_arn and listener_id == _listener_id(arn) and priority.isdigit():
        # Ours already: the tier's rule holds it. Keep it (recomputing would move the rule).
        return _answer(arn, int(priority))
    logger.info("listener changed (or unknown physical id %r): allocating again", physical)
    return _allocate(arn, preferred, event)


def delete(event):
    # The rule is gone (or going) with the stack: release this resource's claim, if any.
    props = properties(event)
    prefix = props.get("ClaimParameterPrefix")
    _, _, priority = physical_id(event).rpartition("/")
    if isinstance(prefix, str) and CLAIM_PREFIX.match(prefix) and priority.isdigit():
        release(prefix, int(priority), _owner(event))
        logger.info("released the claim on priority %s", priority)
    else:
        logger.info("nothing to release for %s", event.get("PhysicalResourceId"))


handler = serve(helper, create=create, update=update, delete=delete)
