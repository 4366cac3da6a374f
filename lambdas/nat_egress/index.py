"""NAT egress for on-demand hubs: keep the NAT instance up while any on-demand hub may need it.

Not a custom resource: EventBridge invokes it
- on every `EC2 Instance State-change Notification` (EventBridge cannot filter on tags, so it
  sees every instance of the account and Region and looks up which are this platform's hubs),
- every few minutes, to catch the end of business hours and any event it missed.

Decision (`wanted_capacity`): the NAT instance's group runs 1 instance when the group's
MinSize is 1 (business hours: the schedule's start action sets MinSize, MaxSize and
DesiredCapacity to 1, its stop action sets MinSize to 0 and nothing else) OR any on-demand hub
of this platform (tags lakehub:platform = PLATFORM_NAME and lakehub:product = on-demand-hub) is
pending or running; otherwise 0. Only DesiredCapacity is set, and only when it differs.

Raising is eager, lowering is careful: an event that says an instance is pending or running
keeps the NAT up when that instance cannot be read yet (EC2's eventual consistency right after
a launch) or is one of the platform's hubs; the next periodic run decides again.

Environment: NAT_GROUP_NAME, PLATFORM_NAME, HUB_PRODUCT (the lakehub:product value of hubs).
Returns {"group", "min_size", "desired", "wanted", "hubs", "changed"} (logged as one line).
"""

from __future__ import annotations

import json
import logging
import os

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

TAG_PLATFORM = "lakehub:platform"
TAG_PRODUCT = "lakehub:product"
ACTIVE_STATES = ("pending", "running")
MAX_PAGES = 50  # 50 x 1000 instances: a bound, not a limit any platform reaches

_clients: dict = {}


def _client(name: str):
    # Created on first use, so a missing Region or endpoint fails the invocation, not the import.
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (the network template sets it)")
    return value


def wanted_capacity(min_size: int, active_hubs: int) -> int:
    """1 when business hours hold the group's floor at 1 or any hub may need egress, else 0."""
    return 1 if min_size >= 1 or active_hubs > 0 else 0


def active_hubs(platform: str, product: str) -> list[str]:
    """Instance ids of the platform's on-demand hubs that are pending or running."""
    ec2 = _client("ec2")
    filters = [
        {"Name": f"tag:{TAG_PLATFORM}", "Values": [platform]},
        {"Name": f"tag:{TAG_PRODUCT}", "Values": [product]},
        {"Name": "instance-state-name", "Values": list(ACTIVE_STATES)},
    ]
    ids: list[str] = []
    token = None
    for _ in range(MAX_PAGES):
        kwargs = {"Filters": filters, "MaxResults": 1000}
        if token:
            kwargs["NextToken"] = token
        page = ec2.describe_instances(**kwargs)
        ids += [i["InstanceId"] for r in page.get("Reservations", []) for i in r.get("Instances", [])]
        token = page.get("NextToken")
        if not token:
            break
    return sorted(ids)


def _event_instance(event: dict) -> tuple[str, str] | None:
    """(instance id, state) of an EC2 state-change event, else None."""
    if not isinstance(event, dict) or event.get("source") != "aws.ec2":
        return None
    detail = event.get("detail") or {}
    iid, state = detail.get("instance-id"), detail.get("state")
    return (iid, state) if isinstance(iid, str) and isinstance(state, str) else None


def _may_be_active_hub(instance_id: str, platform: str, product: str) -> bool:
    """Whether an instance an event reports as pending/running may be one of the platform's
    hubs: yes when it is, and when EC2 cannot show it yet."""
    try:
        reservations = _client("ec2").describe_instances(InstanceIds=[instance_id]).get("Reservations", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidInstanceID.NotFound":
            return True
        raise
    for r in reservations:
        for inst in r.get("Instances", []):
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            if tags.get(TAG_PLATFORM) == platform and tags.get(TAG_PRODUCT) == product:
                return True
    return False


def reconcile(event: dict | None = None) -> dict:
    group_name = _setting("NAT_GROUP_NAME")
    platform = _setting("PLATFORM_NAME")
    product = _setting("HUB_PRODUCT")
    autoscaling = _client("autoscaling")
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name]).get("AutoScalingGroups", [])
    if not groups:
        raise RuntimeError(f"Auto Scaling group {group_name} not found")
    group = groups[0]
    min_size, desired = int(group["MinSize"]), int(group["DesiredCapacity"])
    hubs = active_hubs(platform, product)
    reported = _event_instance(event or {})
    if reported and reported[1] in ACTIVE_STATES and reported[0] not in hubs:
        if _may_be_active_hub(reported[0], platform, product):
            hubs.append(reported[0])
    wanted = wanted_capacity(min_size, len(hubs))
    changed = wanted != desired
    if changed:
        autoscaling.set_desired_capacity(AutoScalingGroupName=group_name, DesiredCapacity=wanted, HonorCooldown=False)
    result = {"group": group_name, "min_size": min_size, "desired": desired, "wanted": wanted, "hubs": hubs, "changed": changed}
    logger.info(json.dumps(result))
    return result


def handler(event, context):
    return reconcile(event)
