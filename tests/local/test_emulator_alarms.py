"""AWS::CloudWatch::Alarm in the local emulator (lakehub.local.emulator_server._alarm_class):
moto's CloudFormation has no model for it, so the tiers' and the platform's alarms were
placeholders: nothing for the local alarm evaluator to read. Deployed here with the generated
tier template's hub-down alarm and main's alarm topic, topic policy and dashboard."""

from __future__ import annotations

import json
import time
import uuid

import boto3

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load
from lakehub_hub import metrics as M


def _client(service, url):
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )  # noqa: S106 - the emulator's


def _wait(cfn, stack_name, timeout=60):
    deadline = time.monotonic() + timeout
    while (stack := cfn.describe_stacks(StackName=stack_name)["Stacks"][0])["StackStatus"].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, stack
        time.sleep(0.5)
    return stack


def template(platform: str) -> dict:
    tier = load(TEMPLATES_DIR / "tier.template.yaml")["Resources"]["HubDownAlarm"]
    main = load(TEMPLATES_DIR / "main.template.yaml")["Resources"]
    literal = json.dumps(tier).replace('{"Ref": "PlatformName"}', json.dumps(platform)).replace('{"Ref": "TierName"}', '"pii"')
    literal = literal.replace('{"Ref": "AlarmTopicArn"}', '{"Ref": "AlarmTopic"}')
    alarm = json.loads(literal)
    alarm["Properties"]["AlarmName"] = f"{platform}-pii-hub-down"
    alarm["Properties"]["AlarmDescription"] = "hub down"
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {
            "PlatformName": {"Type": "String", "Default": platform},
            "AlarmEmail": {"Type": "String", "Default": "ops@example.com"},
        },
        "Conditions": {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}},
        "Resources": {
            "AlarmTopic": main["AlarmTopic"],
            "AlarmTopicPolicy": main["AlarmTopicPolicy"],
            "HubDownAlarm": alarm,
            "Dashboard": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {"DashboardName": f"{platform}-lakehub", "DashboardBody": json.dumps({"widgets": []})},
            },
        },
        "Outputs": {"AlarmRef": {"Value": {"Ref": "HubDownAlarm"}}, "Topic": {"Value": {"Ref": "AlarmTopic"}}},
    }


def test_the_templates_alarms_exist_in_the_emulators_cloudwatch(local_emulator):
    endpoint, platform = local_emulator, f"al{uuid.uuid4().hex[:6]}"
    cfn, cw, sns = _client("cloudformation", endpoint), _client("cloudwatch", endpoint), _client("sns", endpoint)
    stack_name = f"{platform}-alarms"
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template(platform)))
    stack = _wait(cfn, stack_name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["AlarmRef"] == f"{platform}-pii-hub-down"  # Ref: the alarm's name, as on AWS

    (alarm,) = cw.describe_alarms(AlarmNames=[outputs["AlarmRef"]])["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (M.NAMESPACE, M.HUB_UP, "Minimum")
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {M.PLATFORM: platform, M.TIER: "pii"}
    assert alarm["AlarmActions"] == alarm["OKActions"] == [outputs["Topic"]]
    assert alarm["TreatMissingData"] == "notBreaching" and alarm["ActionsEnabled"] is True
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["Period"], alarm["Threshold"]) == (3, 3, 60, 1.0)
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    subs = sns.list_subscriptions_by_topic(TopicArn=outputs["Topic"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]
    assert cw.get_dashboard(DashboardName=f"{platform}-lakehub")["DashboardName"] == f"{platform}-lakehub"

    cfn.delete_stack(StackName=stack_name)
    deadline = time.monotonic() + 60
    while any(
        s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE" for s in cfn.list_stacks()["StackSummaries"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert cw.describe_alarms(AlarmNames=[outputs["AlarmRef"]])["MetricAlarms"] == []
