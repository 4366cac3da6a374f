"""Observe (issue 18): the alarm topic, the alarms and the dashboard in the generated templates.

The names come from the hub's exporter (lakehub_hub.metrics), the one source: an alarm on a
metric, a dimension or a namespace the exporter does not send would never fire.
"""

from __future__ import annotations

import json
import re

import pytest

from lakehub.stacks import names
from lakehub.cfn.template import Resolver
from lakehub_hub import metrics as M

from .conftest import tier_params

ALARM = "AWS::CloudWatch::Alarm"
# AWS metrics the templates alarm on or show, with the dimensions AWS publishes them with.
AWS_METRICS = {
    ("AWS/ApplicationELB", "UnHealthyHostCount"): {"TargetGroup", "LoadBalancer"},
    ("AWS/Lambda", "Errors"): {"FunctionName"},
    ("AWS/EC2", "StatusCheckFailed"): {"AutoScalingGroupName"},
    ("AWS/EC2", "NetworkOut"): {"AutoScalingGroupName"},
    ("AWS/S3", "BucketSizeBytes"): {"BucketName", "StorageType"},
}


def alarms(template: dict) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == ALARM}


@pytest.fixture(scope="module")
def tier(templates):
    return templates["tier.template.yaml"]


@pytest.fixture(scope="module")
def main(templates):
    return templates["main.template.yaml"]


def test_each_tier_alarm_reads_a_metric_the_exporter_sends_with_exactly_its_dimensions(tier):
    found = alarms(tier)
    assert set(found) == {"HubDownAlarm", "HubUnhealthyAlarm", "SpawnFailuresAlarm", "CapacityErrorsAlarm"}
    ours = {k: a["Properties"] for k, a in found.items() if a["Properties"]["Namespace"] == M.NAMESPACE}
    assert {p["MetricName"] for p in ours.values()} == {M.HUB_UP, M.SPAWN_FAILURES, M.CAPACITY_ERRORS}
    for logical, p in ours.items():
        unit, extra = M.CLOUDWATCH[p["MetricName"]]
        dims = {d["Name"]: d["Value"] for d in p["Dimensions"]}
        assert set(dims) == {M.PLATFORM, M.TIER, *extra}, logical
        assert dims[M.PLATFORM] == {"Ref": names.PLATFORM_NAME} and dims[M.TIER] == {"Ref": names.TIER_NAME}
        assert p["Period"] % M.PERIOD == 0, logical
    # The hub gets the same Platform value, so its exporter runs and names it the same way.
    hub = tier["Resources"]["HubTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in hub["Environment"]}
    assert env["LAKEHUB_PLATFORM"] == {"Ref": names.PLATFORM_NAME} and env["LAKEHUB_TIER"] == {"Ref": names.TIER_NAME}
    unhealthy = found["HubUnhealthyAlarm"]["Properties"]
    assert {d["Name"] for d in unhealthy["Dimensions"]} == AWS_METRICS[(unhealthy["Namespace"], unhealthy["MetricName"])]


def test_the_hub_role_may_publish_only_in_the_exporters_namespace(tier):
    policies = tier["Resources"]["HubRole"]["Properties"]["Policies"]
    (doc,) = [p["PolicyDocument"] for p in policies if isinstance(p, dict) and p.get("PolicyName") == "publish-hub-metrics"]
    (statement,) = doc["Statement"]
    assert statement["Action"] == ["cloudwatch:PutMetricData"]
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": M.NAMESPACE}}


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok_and_is_single_metric(tier, main):
    for template, topic in ((tier, {"Ref": names.ALARM_TOPIC_ARN}), (main, {"Ref": "AlarmTopic"})):
        for logical, a in alarms(template).items():
            p = a["Properties"]
            assert p["AlarmActions"] == [topic] and p["OKActions"] == [topic], logical
            assert p["ActionsEnabled"] is True
            assert "Metrics" not in p and p["MetricName"] and p["Namespace"], f"{logical}: metric math is not evaluated locally"
            if p["Namespace"] != M.NAMESPACE:
                dims = {d["Name"] for d in p["Dimensions"]}
                assert dims == AWS_METRICS[(p["Namespace"], p["MetricName"])], logical
    assert {"SeedFunctionErrorsAlarm", "ListenerPriorityFunctionErrorsAlarm", "SecretArnFunctionErrorsAlarm", "NatInstanceDownAlarm"} <= set(alarms(main))
    assert main["Resources"]["NatInstanceDownAlarm"]["Condition"] == "UseNatInstance"


def evaluate(alarm: dict, points: list[float | None]) -> str:
    """AWS's evaluation of the last EvaluationPeriods points (None: missing), DatapointsToAlarm
    of them breaching (the CloudWatch user guide's rules, for the options the templates use)."""
    p = alarm["Properties"]
    n, m = int(p["EvaluationPeriods"]), int(p.get("DatapointsToAlarm", p["EvaluationPeriods"]))
    compare = {"LessThanThreshold": lambda v: v < p["Threshold"], "GreaterThanOrEqualToThreshold": lambda v: v >= p["Threshold"]}[p["ComparisonOperator"]]
    window = points[-n:]
    missing = p["TreatMissingData"]
    breaching = 0
    for v in window:
        if v is None:
            breaching += missing == "breaching"
        else:
            breaching += compare(v)
    if all(v is None for v in window) and missing == "missing":
        return "INSUFFICIENT_DATA"
    return "ALARM" if breaching >= m else "OK"


def test_the_hub_down_alarm_fires_on_a_hub_that_does_not_answer_and_not_on_the_nightly_stop(tier):
    hub_down = tier["Resources"]["HubDownAlarm"]
    minutes = int(hub_down["Properties"]["EvaluationPeriods"])
    # The hub task runs, the hub does not answer: the exporter sends HubUp 0 every minute.
    assert evaluate(hub_down, [1.0] * 5 + [0.0] * minutes) == "ALARM"
    assert evaluate(hub_down, [1.0] * 5 + [0.0] * (minutes - 1)) == "OK"  # a blip is not an outage
    # The schedule scales the hub service to 0: no task, no exporter, no data all night.
    assert evaluate(hub_down, [1.0] * 5 + [None] * 600) == "OK"
    # ... and the morning's hub answers again.
    assert evaluate(hub_down, [None] * 600 + [1.0] * minutes) == "OK"
    # No alarm of the tier reads missing data as breaching: none fires on the nightly stop.
    for logical, a in alarms(tier).items():
        assert a["Properties"]["TreatMissingData"] == "notBreaching", logical
        assert evaluate(a, [None] * 100) == "OK", logical


def test_the_alarm_topic_takes_cloudwatchs_messages_and_is_not_on_the_aws_managed_key(main):
    resources = main["Resources"]
    topic = resources["AlarmTopic"]["Properties"]
    assert "KmsMasterKeyId" not in topic
    (statement,) = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == ["sns:Publish"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # The optional e-mail: an AlarmEmail parameter with its label, group and pattern.
    email = main["Parameters"][names.ALARM_EMAIL]
    assert email["Default"] == "" and re.fullmatch(email["AllowedPattern"], "ops@example.com") and not re.fullmatch(email["AllowedPattern"], "not an address")
    interface = main["Metadata"]["AWS::CloudFormation::Interface"]
    assert names.ALARM_EMAIL in interface["ParameterLabels"]
    assert any(names.ALARM_EMAIL in g["Parameters"] for g in interface["ParameterGroups"])
    assert topic["Subscription"]["Fn::If"][0] == "HasAlarmEmail"
    assert main["Outputs"][names.ALARM_TOPIC_ARN]["Value"] == {"Ref": "AlarmTopic"}


def test_tiers_launched_alone_find_the_topic_in_the_platforms_ssm_path(templates, tier, main):
    cluster = templates["cluster.template.yaml"]
    written = [r["Properties"] for r in cluster["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"]
    (topic,) = [p for p in written if p["Name"] == {"Fn::Sub": names.SSM_NAME_SUB + names.ALARM_TOPIC_ARN}]
    assert topic["Value"] == {"Ref": names.ALARM_TOPIC_ARN}
    assert main["Resources"]["ClusterStack"]["Properties"]["Parameters"][names.ALARM_TOPIC_ARN] == {"Ref": "AlarmTopic"}
    param = tier["Parameters"][names.ALARM_TOPIC_ARN]
    assert param["Type"] == "AWS::SSM::Parameter::Value<String>" and param["Default"].endswith("/" + names.ALARM_TOPIC_ARN)


def dashboard(main) -> dict:
    body = main["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text, variables = body
    resolver = Resolver(main, {"PlatformName": "acme", "DomainName": "example.com", "HostedZoneId": "Z1", "AssetsBucketName": "assets"})
    values = {k: str(resolver.resolve(v)) for k, v in variables.items()}
    values.update({"PlatformName": "acme", "AWS::Region": "eu-west-1"})
    unknown = set(re.findall(r"\$\{([^}]+)\}", text)) - set(values)
    assert not unknown, f"the body names variables it does not define: {unknown}"
    return json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text))


SEARCH = re.compile(r"^SEARCH\('\{(?P<ns>[^,}]+),(?P<dims>[^}]+)\} MetricName=\"(?P<metric>[A-Za-z]+)\" Platform=\"acme\"', '(?P<stat>[A-Za-z0-9.]+)', (?P<period>\d+)\)$")


def test_the_dashboard_is_json_and_shows_only_metrics_that_exist(main):
    body = dashboard(main)
    titles = " ".join(w["properties"]["title"] for w in body["widgets"]).lower()
    for words in ("hubs up", "active users", "spawn latency", "failures", "size and capacity", "spot interruptions",
                  "stopped by reason", "nat", "bucket", "errors", "cost driver"):
        assert words in titles, words
    shown = set()
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # a SEARCH over every tier of the platform
                m = SEARCH.match(row[0]["expression"])
                assert m, row[0]["expression"]
                assert m["ns"] == M.NAMESPACE and m["metric"] in M.CLOUDWATCH
                _, extra = M.CLOUDWATCH[m["metric"]]
                assert m["dims"].split(",") == [M.PLATFORM, M.TIER, *extra], row
                shown.add(m["metric"])
            else:
                namespace, metric, *rest = row
                dims = [d for d in rest if isinstance(d, str)][::2]
                assert set(dims) == AWS_METRICS[(namespace, metric)], row
    assert shown == set(M.CLOUDWATCH), f"the dashboard leaves out {set(M.CLOUDWATCH) - shown}"


def test_the_dashboard_is_named_after_the_platform(main):
    props = main["Resources"]["Dashboard"]["Properties"]
    assert props["DashboardName"] == {"Fn::Sub": "${PlatformName}-lakehub"}


def test_a_resolved_tier_names_its_target_group_as_cloudwatch_does(tier):
    resolver = Resolver(tier, tier_params())
    dims = {d["Name"]: resolver.resolve(d["Value"]) for d in tier["Resources"]["HubUnhealthyAlarm"]["Properties"]["Dimensions"]}
    assert dims["LoadBalancer"] == f"<ssm:{names.LOAD_BALANCER_FULL_NAME}>"
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/pii-hub/0123456789abcdef"
    select = tier["Resources"]["HubUnhealthyAlarm"]["Properties"]["Dimensions"][0]["Value"]["Fn::Select"]
    assert arn.split(":")[int(select[0])] == "targetgroup/pii-hub/0123456789abcdef"
