"""lambdas/nat_egress against the emulator (moto in server mode): the NAT instance's Auto
Scaling group and EC2 instances are real emulator resources, the events are EventBridge's
documented shapes (EC2 Instance State-change Notification, Scheduled Event)."""

from __future__ import annotations

import uuid

import pytest

from lakehub.stacks import names

PLATFORM = "analytics"
FUNCTION = "analytics-nat-egress"


def state_event(instance_id: str, state: str) -> dict:
    # The documented sample (EC2 user guide, "State change events for Amazon EC2 instances").
    return {
        "id": str(uuid.uuid4()),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-12-01T21:29:54Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": state},
    }


SCHEDULED = {"id": "s-1", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


@pytest.fixture
def nat(client, monkeypatch):
    """A NAT group as the network template leaves it outside business hours (floor 0), and a
    way to set its floor and desired capacity as the scheduled actions would."""
    ec2, asg = client("ec2"), client("autoscaling")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(LaunchTemplateName="nat", LaunchTemplateData={"ImageId": image, "InstanceType": "t4g.nano"})
    name = f"nat-{uuid.uuid4().hex[:6]}"
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "1"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=0,
        AvailabilityZones=["us-east-1a"],
    )
    monkeypatch.setenv("NAT_GROUP_NAME", name)
    monkeypatch.setenv("PLATFORM_NAME", PLATFORM)
    monkeypatch.setenv("HUB_PRODUCT", names.ON_DEMAND_HUB_PRODUCT)

    class Nat:
        group = name

        def set(self, min_size: int, desired: int) -> None:
            asg.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=min_size, MaxSize=1, DesiredCapacity=desired)

        def desired(self) -> int:
            return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"]

    return Nat()


@pytest.fixture
def launch(client):
    ec2 = client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def run(platform: str | None = PLATFORM, product: str | None = names.ON_DEMAND_HUB_PRODUCT) -> str:
        tags = [{"Key": k, "Value": v} for k, v in ((names.TAG_PLATFORM, platform), (names.TAG_PRODUCT, product)) if v]
        kwargs = {"TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]} if tags else {}
        return ec2.run_instances(ImageId=image, InstanceType="t4g.large", MinCount=1, MaxCount=1, **kwargs)["Instances"][0][
            "InstanceId"
        ]

    return run


@pytest.fixture
def fn(load_handler):
    return load_handler("nat_egress")


def test_a_hub_launched_at_night_brings_the_nat_up(nat, launch, fn):
    hub = launch()
    result = fn.handler(state_event(hub, "pending"), None)
    assert nat.desired() == 1
    assert result["hubs"] == [hub] and result["changed"] is True


def test_the_last_hub_stopping_at_night_lets_the_nat_stop(nat, launch, fn, client):
    first, second = launch(), launch()
    nat.set(0, 1)
    client("ec2").stop_instances(InstanceIds=[first])
    fn.handler(state_event(first, "stopped"), None)
    assert nat.desired() == 1, "another hub still runs"
    client("ec2").terminate_instances(InstanceIds=[second])
    fn.handler(state_event(second, "terminated"), None)
    assert nat.desired() == 0


def test_a_hub_started_again_at_night_brings_the_nat_up(nat, launch, fn, client):
    hub = launch()
    ec2 = client("ec2")
    ec2.stop_instances(InstanceIds=[hub])
    fn.handler(state_event(hub, "stopped"), None)
    assert nat.desired() == 0
    ec2.start_instances(InstanceIds=[hub])
    fn.handler(state_event(hub, "pending"), None)
    assert nat.desired() == 1


def test_business_hours_keep_the_nat_up_without_any_hub(nat, fn):
    nat.set(1, 1)
    result = fn.handler(SCHEDULED, None)
    assert nat.desired() == 1 and result["changed"] is False and result["hubs"] == []


def test_the_periodic_run_after_business_hours_stops_an_unneeded_nat(nat, fn):
    nat.set(0, 1)  # the stop action lowered the floor only
    fn.handler(SCHEDULED, None)
    assert nat.desired() == 0


def test_the_periodic_run_keeps_the_nat_for_a_hub_working_late(nat, launch, fn):
    launch()
    nat.set(0, 1)
    fn.handler(SCHEDULED, None)
    assert nat.desired() == 1


def test_other_instances_do_not_keep_the_nat_up(nat, launch, fn):
    # another platform's hub, an untagged instance, and the NAT instance itself (platform tag only)
    other_platform, untagged, nat_itself = launch(platform="other"), launch(platform=None, product=None), launch(product=None)
    for iid in (other_platform, untagged, nat_itself):
        fn.handler(state_event(iid, "running"), None)
    assert nat.desired() == 0


def test_an_instance_ec2_cannot_show_yet_keeps_egress_until_the_next_run(nat, fn):
    """Right after a launch, DescribeInstances may not know the instance yet (EC2's eventual
    consistency): raising on such an event is cheap, failing a hub's boot is not."""
    fn.handler(state_event("i-0123456789abcdef0", "pending"), None)
    assert nat.desired() == 1
    fn.handler(SCHEDULED, None)
    assert nat.desired() == 0


@pytest.mark.parametrize(("min_size", "hubs", "wanted"), [(0, 0, 0), (0, 1, 1), (0, 3, 1), (1, 0, 1), (1, 2, 1)])
def test_wanted_capacity(fn, min_size, hubs, wanted):
    assert fn.wanted_capacity(min_size, hubs) == wanted


def test_a_missing_setting_names_the_variable(nat, fn, monkeypatch):
    monkeypatch.delenv("NAT_GROUP_NAME")
    with pytest.raises(RuntimeError, match="NAT_GROUP_NAME is not set"):
        fn.handler(SCHEDULED, None)


def test_a_missing_group_is_named(nat, fn, monkeypatch):
    monkeypatch.setenv("NAT_GROUP_NAME", "no-such-group")
    with pytest.raises(RuntimeError, match="no-such-group not found"):
        fn.handler(SCHEDULED, None)
