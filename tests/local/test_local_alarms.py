"""The local alarm evaluator (lakehub.local.alarms) against a real moto server: CloudWatch's
rules as the CloudWatch user guide states them, and the SNS message a subscriber receives.

The table of "Configuring how CloudWatch alarms treat missing data" (an alarm of 3 evaluation
periods and 3 datapoints to alarm, evaluated over a range of 5; `X` breaching, `0` not
breaching, `-` missing, the newest datapoint on the right) is test_missing_data_table.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from lakehub.local.alarms import AlarmEvaluator, current_state

PERIOD = 60
RETAIN = "retain"
# (datapoints oldest -> newest, {TreatMissingData: expected state})
TABLE = [
    ("0-X-X", {"missing": "OK", "ignore": "OK", "breaching": "ALARM", "notBreaching": "OK"}),
    ("----0", {"missing": "OK", "ignore": "OK", "breaching": "OK", "notBreaching": "OK"}),
    ("-----", {"missing": "INSUFFICIENT_DATA", "ignore": RETAIN, "breaching": "ALARM", "notBreaching": "OK"}),
    ("0XX-X", {"missing": "ALARM", "ignore": "ALARM", "breaching": "ALARM", "notBreaching": "OK"}),
    ("--X--", {"missing": RETAIN, "ignore": RETAIN, "breaching": "ALARM", "notBreaching": "OK"}),
]


@pytest.fixture
def now() -> float:
    """A moment 30 s into the current minute's period (nothing is published in it)."""
    return (int(time.time()) // PERIOD) * PERIOD + 30.0


@pytest.fixture
def evaluator(aws_client):
    return AlarmEvaluator(lambda service: aws_client(service), interval=3600)


def _put(cw, metric: str, dims: list[dict], values_by_age: dict[int, list[float]], now: float) -> None:
    """values_by_age: {periods before the current one: [values]} (1 = the last complete period)."""
    current = int(now // PERIOD) * PERIOD
    data = []
    for age, values in values_by_age.items():
        for i, value in enumerate(values):
            ts = datetime.fromtimestamp(current - age * PERIOD + 5 + i, timezone.utc)
            data.append({"MetricName": metric, "Dimensions": dims, "Timestamp": ts, "Value": value})
    if data:
        cw.put_metric_data(Namespace="lakehub-test", MetricData=data)


def _alarm(cw, name: str, metric: str, dims: list[dict], **kwargs) -> None:
    params = dict(
        AlarmName=name,
        Namespace="lakehub-test",
        MetricName=metric,
        Dimensions=dims,
        Period=PERIOD,
        EvaluationPeriods=3,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Statistic="Maximum",
    )
    params.update(kwargs)
    cw.put_metric_alarm(**params)


def _state(cw, name: str) -> dict:
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


@pytest.mark.parametrize("row,expected", TABLE, ids=[r for r, _ in TABLE])
@pytest.mark.parametrize("treat", ["missing", "ignore", "breaching", "notBreaching"])
@pytest.mark.parametrize("before", ["OK", "ALARM"])
def test_missing_data_table(aws_client, evaluator, now, row, expected, treat, before):
    cw = aws_client("cloudwatch")
    name = f"table-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Case", "Value": name}]
    values = {5 - i: [2.0 if c == "X" else 0.0] for i, c in enumerate(row) if c != "-"}
    _put(cw, "Probe", dims, values, now)
    _alarm(cw, name, "Probe", dims, DatapointsToAlarm=3, TreatMissingData=treat)
    cw.set_alarm_state(AlarmName=name, StateValue=before, StateReason="set by the test")
    evaluator.evaluate_once(now=now, prefix=name)
    want = before if expected[treat] == RETAIN else expected[treat]
    assert current_state(_state(cw, name)) == want, f"{row} {treat} from {before}"


def test_m_of_n_needs_m_breaching_datapoints(aws_client, evaluator, now):
    cw = aws_client("cloudwatch")
    two, three = f"m2-{uuid.uuid4().hex[:8]}", f"m3-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Case", "Value": two}]
    _put(cw, "Errors", dims, {3: [5.0], 2: [0.0], 1: [5.0]}, now)
    _alarm(cw, two, "Errors", dims, DatapointsToAlarm=2)
    _alarm(cw, three, "Errors", dims, DatapointsToAlarm=3)
    evaluator.evaluate_once(now=now, prefix=two)
    evaluator.evaluate_once(now=now, prefix=three)
    alarm = _state(cw, two)
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateReason"].startswith("Threshold Crossed: 2 out of the last 3 datapoints [")
    assert "was greater than or equal to" not in alarm["StateReason"]
    assert "(minimum 2 datapoints for OK -> ALARM transition)" in alarm["StateReason"]
    assert _state(cw, three)["StateValue"] == "OK"
    data = json.loads(alarm["StateReasonData"])
    assert data["recentDatapoints"] == [5.0, 0.0, 5.0] and data["threshold"] == 1.0


@pytest.mark.parametrize(
    "operator,value,breaches",
    [
        ("GreaterThanThreshold", 1.0, False),
        ("GreaterThanThreshold", 1.5, True),
        ("GreaterThanOrEqualToThreshold", 1.0, True),
        ("LessThanThreshold", 1.0, False),
        ("LessThanThreshold", 0.0, True),
        ("LessThanOrEqualToThreshold", 1.0, True),
    ],
)
def test_comparison_operators(aws_client, evaluator, now, operator, value, breaches):
    cw = aws_client("cloudwatch")
    name = f"op-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Case", "Value": name}]
    _put(cw, "Gauge", dims, {1: [value]}, now)
    _alarm(cw, name, "Gauge", dims, EvaluationPeriods=1, ComparisonOperator=operator)
    evaluator.evaluate_once(now=now, prefix=name)
    assert _state(cw, name)["StateValue"] == ("ALARM" if breaches else "OK")


@pytest.mark.parametrize(
    "statistic,threshold,breaches",
    [
        ({"Statistic": "Sum"}, 6.0, True),  # 1+2+3 = 6
        ({"Statistic": "Average"}, 2.5, False),  # 2
        ({"Statistic": "Maximum"}, 3.0, True),
        ({"Statistic": "Minimum"}, 1.5, False),
        ({"Statistic": "SampleCount"}, 3.0, True),
        ({"ExtendedStatistic": "p50"}, 2.0, True),  # nearest rank of 1, 2, 3
        ({"ExtendedStatistic": "p50"}, 2.5, False),
    ],
)
def test_statistics_over_a_period(aws_client, evaluator, now, statistic, threshold, breaches):
    cw = aws_client("cloudwatch")
    name = f"stat-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Case", "Value": name}]
    _put(cw, "Latency", dims, {1: [1.0, 2.0, 3.0]}, now)
    _alarm(cw, name, "Latency", dims, EvaluationPeriods=1, Threshold=threshold, **statistic)
    if "ExtendedStatistic" in statistic:
        cw.put_metric_alarm(**{k: v for k, v in _describe_params(_state(cw, name)).items()})
    evaluator.evaluate_once(now=now, prefix=name)
    assert _state(cw, name)["StateValue"] == ("ALARM" if breaches else "OK")


def _describe_params(alarm: dict) -> dict:
    """PutMetricAlarm's parameters for an alarm as DescribeAlarms gives it (without Statistic
    when it has an ExtendedStatistic)."""
    keep = (
        "AlarmName",
        "Namespace",
        "MetricName",
        "Dimensions",
        "Period",
        "EvaluationPeriods",
        "Threshold",
        "ComparisonOperator",
        "ExtendedStatistic",
    )
    return {k: alarm[k] for k in keep if alarm.get(k) is not None}


@pytest.fixture
def subscriber(aws_client):
    """An SNS topic with an SQS queue subscribed; .receive() reads its notifications."""
    sns, sqs = aws_client("sns"), aws_client("sqs")
    name = f"alarms-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    class Subscriber:
        arn = topic

        @staticmethod
        def receive() -> list[dict]:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return [json.loads(m["Body"]) for m in got]

    return Subscriber


def test_a_change_publishes_cloudwatchs_message_to_the_alarm_actions_topic(aws_client, evaluator, now, subscriber):
    cw = aws_client("cloudwatch")
    name = f"HubDown-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Platform", "Value": "lakehub"}, {"Name": "Tier", "Value": name}]
    _put(cw, "HubUp", dims, {1: [1.0]}, now)
    _alarm(
        cw,
        name,
        "HubUp",
        list(reversed(dims)),
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="LessThanThreshold",
        Statistic="Minimum",
        TreatMissingData="breaching",
        AlarmActions=[subscriber.arn],
        OKActions=[subscriber.arn],
        AlarmDescription="the hub does not answer",
    )
    evaluator.evaluate_once(now=now, prefix=name)  # INSUFFICIENT_DATA (moto's initial OK) -> OK
    first = subscriber.receive()
    assert [json.loads(n["Message"])["NewStateValue"] for n in first] == ["OK"]
    _put(cw, "HubUp", dims, {0: [0.0]}, now)  # the hub stopped answering, in the current period
    changes = evaluator.evaluate_once(now=now, prefix=name)
    assert [(c.alarm, c.old, c.new) for c in changes] == [(name, "OK", "ALARM")]
    notes = subscriber.receive()
    assert len(notes) == 1 and notes[0]["TopicArn"] == subscriber.arn
    assert notes[0]["Subject"] == f'ALARM: "{name}" in US East (N. Virginia)'
    body = json.loads(notes[0]["Message"])
    assert body["AlarmName"] == name and body["OldStateValue"] == "OK" and body["NewStateValue"] == "ALARM"
    assert body["NewStateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [0.0 (")
    assert "was less than the threshold (1.0)" in body["NewStateReason"]
    assert body["AlarmDescription"] == "the hub does not answer" and body["Region"] == "US East (N. Virginia)"
    assert body["AlarmArn"].endswith(f":alarm:{name}")
    datetime.strptime(body["StateChangeTime"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert body["Trigger"]["MetricName"] == "HubUp" and body["Trigger"]["Statistic"] == "MINIMUM"
    assert body["Trigger"]["Dimensions"] == [{"value": name, "name": "Tier"}, {"value": "lakehub", "name": "Platform"}]
    assert body["Trigger"]["TreatMissingData"] == "breaching" and body["Trigger"]["Period"] == PERIOD
    assert evaluator.evaluate_once(now=now, prefix=name) == [] and subscriber.receive() == []  # no change, no message


def test_no_message_when_actions_are_disabled(aws_client, evaluator, now, subscriber):
    cw = aws_client("cloudwatch")
    name = f"quiet-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "Case", "Value": name}]
    _put(cw, "Gauge", dims, {1: [5.0]}, now)
    _alarm(cw, name, "Gauge", dims, EvaluationPeriods=1, AlarmActions=[subscriber.arn], ActionsEnabled=False)
    evaluator.evaluate_once(now=now, prefix=name)
    assert _state(cw, name)["StateValue"] == "ALARM"
    assert subscriber.receive() == []


def test_metric_math_alarms_are_left_alone(aws_client, evaluator, now):
    cw = aws_client("cloudwatch")
    name = f"math-{uuid.uuid4().hex[:8]}"
    cw.put_metric_alarm(
        AlarmName=name,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        Metrics=[
            {"Id": "e", "Expression": "m * 2", "ReturnData": True},
            {
                "Id": "m",
                "ReturnData": False,
                "MetricStat": {"Metric": {"Namespace": "lakehub-test", "MetricName": "Gauge"}, "Period": PERIOD, "Stat": "Sum"},
            },
        ],
    )
    evaluator.evaluate_once(now=now, prefix=name)
    alarm = _state(cw, name)
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"
    assert "metric-math" in evaluator.skipped[name]
