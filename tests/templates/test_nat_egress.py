"""Defect 11: with the business-hours schedule the NAT instance stops at night, so an on-demand
hub launched or working outside business hours had no egress (Session Manager, ECR, Secrets
Manager, cfn-signal). Now an EventBridge rule on EC2 state changes invokes the NAT egress
function, which keeps the NAT group at 1 while any of the platform's hubs is pending or running,
and the night action lowers only the group's floor."""

from __future__ import annotations

import importlib.util

import pytest

from lakehub.stacks import names
from lakehub.assets import LAMBDAS_DIR
from lakehub.cfn.template import Resolver

PARAMS = {"AssetsBucketName": "assets", "PlatformName": "analytics", "EgressMode": "nat-instance", "Schedule": "business-hours"}
PENDING = {  # EC2 user guide, "State change events for Amazon EC2 instances" (sample event)
    "source": "aws.ec2",
    "detail-type": "EC2 Instance State-change Notification",
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "pending"},
}


def matches(pattern: dict, event: dict) -> bool:
    """EventBridge matching for the shapes used here: each listed field's value is one of the
    listed values (nested under `detail`)."""
    for key, want in pattern.items():
        if isinstance(want, dict):
            if not isinstance(event.get(key), dict) or not matches(want, event[key]):
                return False
        elif event.get(key) not in want:
            return False
    return True


def decision():
    spec = importlib.util.spec_from_file_location("nat_egress_decision", LAMBDAS_DIR / "nat_egress" / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.wanted_capacity


def invoked_by(res: dict, event: dict) -> list[str]:
    found = []
    for rule_id, r in res.items():
        if r["Type"] == "AWS::Events::Rule" and matches(r["Properties"].get("EventPattern") or {"never": []}, event):
            found += [t["Arn"].strip("<>").removesuffix(".Arn") for t in r["Properties"]["Targets"]]
    return found


@pytest.fixture
def network(templates):
    return Resolver(templates["network.template.yaml"], PARAMS).resources()


def test_with_business_hours_a_hub_launched_at_night_brings_nat_egress_up(network, templates):
    # The night: the stop action has run. What it leaves must let the NAT run for a hub.
    group = dict(network["NatInstanceGroup"]["Properties"])
    stop = network["NatInstanceStop"]["Properties"]
    assert stop["AutoScalingGroupName"] == "<NatInstanceGroup>"
    for key in ("MinSize", "MaxSize", "DesiredCapacity"):
        if key in stop:
            group[key] = stop[key]
    assert int(group["MinSize"]) == 0, "the night still lowers the floor: an idle platform pays no NAT"
    assert int(group["MaxSize"]) >= 1, "a hub at night must be able to start the NAT"
    assert "DesiredCapacity" not in stop, "a scheduled DesiredCapacity would fight the function that keeps egress up"

    # A hub's launch (pending) reaches a function that manages this group...
    (fn_id,) = invoked_by(network, PENDING)
    fn = network[fn_id]["Properties"]
    env = fn["Environment"]["Variables"]
    assert env["NAT_GROUP_NAME"] == "<NatInstanceGroup>"
    # ... and recognises hubs by the tags the hub template puts on its instance.
    hub = Resolver(templates["hub-instance.template.yaml"], {"Owner": "alice", "PlatformName": "analytics"}).resources()["Instance"]
    tags = {t["Key"]: t["Value"] for t in hub["Properties"]["Tags"]}
    assert tags[names.TAG_PRODUCT] == env["HUB_PRODUCT"]
    assert tags[names.TAG_PLATFORM] == env["PLATFORM_NAME"] == "analytics"
    # Its decision with one hub running at night: the NAT runs.
    assert decision()(int(group["MinSize"]), 1) == 1
    assert decision()(int(group["MinSize"]), 0) == 0


def test_every_state_that_starts_or_ends_a_hub_invokes_the_function(network):
    for state in ("pending", "running", "stopping", "stopped", "shutting-down", "terminated"):
        event = {**PENDING, "detail": {**PENDING["detail"], "state": state}}
        assert invoked_by(network, event) == ["NatEgressFunction"], state


def test_eventbridge_may_invoke_the_function_from_its_two_rules_only(network):
    rules = {k for k, r in network.items() if r["Type"] == "AWS::Events::Rule"}
    assert rules == {"NatEgressOnInstanceStateRule", "NatEgressReconcileRule"}
    assert network["NatEgressReconcileRule"]["Properties"]["ScheduleExpression"].startswith("rate(")
    permissions = [r["Properties"] for r in network.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert {p["SourceArn"] for p in permissions} == {f"<{r}.Arn>" for r in rules}
    assert all(p["Principal"] == "events.amazonaws.com" and p["FunctionName"] == "<NatEgressFunction>" for p in permissions)


def test_the_function_may_resize_only_the_nat_group(network):
    (policy,) = network["NatEgressFunctionRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    (resize,) = [s for s in statements if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert resize["Action"] == ["autoscaling:SetDesiredCapacity"]
    (arn,) = resize["Resource"]
    assert arn == "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/<NatInstanceGroup>"
    writes = {a for s in statements for a in s["Action"] if not a.split(":")[1].startswith(("Describe", "CreateLogStream", "PutLogEvents"))}
    assert writes == {"autoscaling:SetDesiredCapacity"}
    assert "ReservedConcurrentExecutions" not in network["NatEgressFunction"]["Properties"]


def test_business_hours_start_the_nat_with_or_without_hubs(network):
    start = network["NatInstanceStart"]["Properties"]
    assert (start["MinSize"], start["MaxSize"], start["DesiredCapacity"]) == (1, 1, 1)


@pytest.mark.parametrize("params", [{"Schedule": "always"}, {"EgressMode": "nat-gateway"}])
def test_no_function_where_egress_never_stops(templates, params):
    res = Resolver(templates["network.template.yaml"], {**PARAMS, **params}).resources()
    assert not [k for k, r in res.items() if r["Type"] in ("AWS::Lambda::Function", "AWS::Events::Rule")]


def test_main_gives_the_network_stack_the_function_code(templates):
    passed = templates["main.template.yaml"]["Resources"]["NetworkStack"]["Properties"]["Parameters"]
    for name in ("AssetsBucketName", "AssetsKeyPrefix", "LogRetentionDays"):
        assert passed[name] == {"Ref": name}
