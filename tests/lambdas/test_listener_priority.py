"""Custom::ListenerPriority driven with CloudFormation events against the emulator (ELBv2)."""

from __future__ import annotations

import pytest

FUNCTION = "lakehub-listener-priority"
TYPE = "Custom::ListenerPriority"


@pytest.fixture
def alb(client):
    ec2, elbv2 = client("ec2"), client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    lb = elbv2.create_load_balancer(Name="lakehub-alb", Subnets=subnets, Type="application", Scheme="internet-facing")[
        "LoadBalancers"
    ][0]
    tg = elbv2.create_target_group(Name="lakehub-tier", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip")["TargetGroups"][
        0
    ]["TargetGroupArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]

    class Alb:
        arn = listener
        listener_id = listener.split(":listener/")[1]

        @staticmethod
        def add_rule(priority: int, host: str) -> str:
            return elbv2.create_rule(
                ListenerArn=listener,
                Priority=priority,
                Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": [host]}}],
                Actions=[{"Type": "forward", "TargetGroupArn": tg}],
            )["Rules"][0]["RuleArn"]

        @staticmethod
        def delete_listener():
            elbv2.delete_listener(ListenerArn=listener)

    return Alb()


@pytest.fixture
def allocate(load_handler, make_event, invoke, alb):
    module = load_handler("listener_priority")

    def run(request_type, props=None, **kwargs):
        props = props if props is not None else {"ListenerArn": alb.arn}
        event = make_event(request_type, TYPE, props, function=FUNCTION, logical_id="ListenerRulePriority", **kwargs)
        return invoke(module, event, function=FUNCTION)

    return run


def test_create_returns_the_lowest_free_priority(allocate, alb):
    alb.add_rule(1, "pii.example.org")
    alb.add_rule(2, "nonpii.example.org")
    alb.add_rule(4, "gpu.example.org")
    answer = allocate("Create")
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["Priority"] == "3"
    assert answer["PhysicalResourceId"] == f"{alb.listener_id}/3"


def test_create_on_an_empty_listener_returns_1(allocate, alb):
    answer = allocate("Create")
    assert answer["Data"]["Priority"] == "1"


def test_create_uses_the_preferred_priority_when_it_is_free(allocate, alb):
    alb.add_rule(1, "pii.example.org")
    answer = allocate("Create", {"ListenerArn": alb.arn, "Preferred": "10"})
    assert answer["Data"]["Priority"] == "10"
    assert answer["PhysicalResourceId"] == f"{alb.listener_id}/10"


def test_a_taken_preferred_priority_falls_back_to_the_lowest_free(allocate, alb):
    alb.add_rule(10, "pii.example.org")
    answer = allocate("Create", {"ListenerArn": alb.arn, "Preferred": "10"})
    assert answer["Data"]["Priority"] == "1"


def test_create_twice_gives_the_same_priority(allocate, alb):
    alb.add_rule(1, "pii.example.org")
    first, second = allocate("Create"), allocate("Create")
    assert first["Data"] == second["Data"] and first["PhysicalResourceId"] == second["PhysicalResourceId"]


def test_update_keeps_the_priority_its_own_rule_holds(allocate, alb):
    props = {"ListenerArn": alb.arn}
    created = allocate("Create", props)
    assert created["Data"]["Priority"] == "1"
    alb.add_rule(1, "newtier.example.org")  # the tier's own rule now holds 1
    answer = allocate("Update", {**props, "Preferred": "7"}, old_properties=props, physical_id=created["PhysicalResourceId"])
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["Priority"] == "1"
    assert answer["PhysicalResourceId"] == created["PhysicalResourceId"]


def test_update_to_another_listener_allocates_there(allocate, alb, client):
    props = {"ListenerArn": alb.arn}
    created = allocate("Create", props)
    alb.add_rule(1, "newtier.example.org")
    other = alb.arn.replace(alb.listener_id.split("/")[-1], "0123456789abcdef")
    answer = allocate("Update", {"ListenerArn": other}, old_properties=props, physical_id=created["PhysicalResourceId"])
    # That listener does not exist: a new allocation was attempted, and failed with the cause.
    assert answer["Status"] == "FAILED" and "does not exist" in answer["Reason"]
    assert answer["PhysicalResourceId"] == created["PhysicalResourceId"]


@pytest.mark.parametrize(
    "props, cause",
    [
        ({}, "Invalid property ListenerArn"),
        ({"ListenerArn": "not-an-arn"}, "Invalid property ListenerArn: 'not-an-arn'"),
        ({"ListenerArn": "arn:aws:s3:::bucket"}, "Invalid property ListenerArn"),
        ({"Preferred": "high"}, "Invalid property Preferred: 'high'"),
        ({"Preferred": "50001"}, "Invalid property Preferred: 50001 is outside 0-50000"),
        ({"Preferred": "-1"}, "Invalid property Preferred: -1"),
    ],
)
def test_missing_or_invalid_properties_fail_with_the_cause(allocate, alb, failed, props, cause):
    if "Preferred" in props:
        props = {"ListenerArn": alb.arn, **props}
    failed(allocate("Create", props), cause)


def test_create_fails_when_the_listener_does_not_exist(allocate, alb, failed):
    arn = alb.arn
    alb.delete_listener()
    failed(allocate("Create", {"ListenerArn": arn}), "Listener", "does not exist")


def test_delete_succeeds_and_changes_nothing(allocate, alb):
    alb.add_rule(1, "pii.example.org")
    answer = allocate("Delete", physical_id=f"{alb.listener_id}/1")
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == f"{alb.listener_id}/1"


def test_delete_succeeds_when_the_listener_is_gone(allocate, alb):
    alb.delete_listener()
    assert allocate("Delete", physical_id=f"{alb.listener_id}/1")["Status"] == "SUCCESS"


def test_delete_after_a_failed_create_succeeds(allocate):
    created = allocate("Create", {"ListenerArn": "nope"})
    assert created["Status"] == "FAILED"
    answer = allocate("Delete", {"ListenerArn": "nope"}, physical_id=created["PhysicalResourceId"])
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == created["PhysicalResourceId"]


# --- defect 1 of issue 13: tiers created at the same moment --------------------------------

PREFIX = "/lakehub/test/listener-priorities"


def _race(module, arn, owners, prefix):
    import threading

    start = threading.Barrier(len(owners), timeout=30)
    got: dict[str, int] = {}

    def one(owner):
        start.wait()
        got[owner] = module.choose(arn, 0, 100, prefix, owner)

    threads = [threading.Thread(target=one, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return got


def test_tiers_created_at_the_same_moment_get_distinct_priorities(load_handler, alb, allocate):
    module = load_handler("listener_priority")
    owners = [f"arn:aws:cloudformation:us-east-1:123456789012:stack/SC-{i}/id|ListenerRulePriority" for i in range(4)]
    got = _race(module, alb.arn, owners, PREFIX)
    assert len(got) == 4 and len(set(got.values())) == 4, got
    assert min(got.values()) >= 100  # below 100: main's tiers' explicit priorities


def test_without_a_claim_the_same_moment_gives_the_same_priority(load_handler, alb, allocate):
    # The defect itself: reading the listener's rules reserves nothing.
    module = load_handler("listener_priority")
    got = _race(module, alb.arn, ["a", "b"], None)
    assert got["a"] == got["b"] == 100


def test_a_claim_is_kept_by_a_repeated_create_and_released_by_delete(allocate, alb, client):
    ssm = client("ssm")
    props = {"ListenerArn": alb.arn, "ClaimParameterPrefix": PREFIX, "Minimum": "100"}
    first = allocate("Create", props)
    assert first["Data"]["Priority"] == "100", first
    assert allocate("Create", props)["Data"]["Priority"] == "100"  # same owner: same claim
    assert ssm.get_parameter(Name=f"{PREFIX}/100")["Parameter"]["Value"].endswith("|ListenerRulePriority")
    assert allocate("Delete", props, physical_id=first["PhysicalResourceId"])["Status"] == "SUCCESS"
    assert ssm.get_parameters_by_path(Path=PREFIX)["Parameters"] == []
    # a claim another stack holds is never released by this one
    ssm.put_parameter(Name=f"{PREFIX}/100", Value="someone-else", Type="String")
    assert allocate("Delete", props, physical_id=first["PhysicalResourceId"])["Status"] == "SUCCESS"
    assert ssm.get_parameter(Name=f"{PREFIX}/100")["Parameter"]["Value"] == "someone-else"
    assert allocate("Create", props)["Data"]["Priority"] == "101"


def test_an_invalid_claim_prefix_fails_with_the_cause(allocate, alb, failed):
    failed(
        allocate("Create", {"ListenerArn": alb.arn, "ClaimParameterPrefix": "no-slash"}), "Invalid property ClaimParameterPrefix"
    )
