"""AWS::CloudWatch::Alarm in the local emulator (lakehub.local.emulator_server._alarm_class):
moto's CloudFormation has no model for it, so the tiers' and the platform's alarms were
placeholders: nothing for the local alarm evaluator to read. Deployed here with the generated
tier template's hub-down alarm and main's alarm topic, topic policy and dashboard."""

from __future__ import annotations

import json
import uuid

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load
from lakehub.local.emulator import emulator_client
from lakehub_hub import metrics as M

from .helpers import create_stack, delete_stack


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
    cfn, cw, sns = (emulator_client(service, endpoint) for service in ("cloudformation", "cloudwatch", "sns"))
    stack_name = f"{platform}-alarms"
    stack = create_stack(cfn, stack_name, template(platform))
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

    delete_stack(cfn, stack_name)
    assert cw.describe_alarms(AlarmNames=[outputs["AlarmRef"]])["MetricAlarms"] == []
