"""Observe (issue 18): the alarm topic, the alarms and the platform's dashboard.

`add_*` helpers used by main (the topic, the platform alarms, the dashboard) and tier (each
tier's alarms). The hub's own figures come from its metrics exporter (lakehub_hub.metrics:
namespace `lakehub`, dimensions Platform and Tier, 60 s); their names are imported from it, so
the exporter, the alarms and the dashboard share one list.

Alarms (all to the topic, OK too):
- per tier: hub down (HubUp), hub unhealthy (the target group's UnHealthyHostCount), spawn
  failures (SpawnFailures), capacity errors (CapacityErrors);
- platform: NAT instance down (EC2 StatusCheckFailed of its Auto Scaling group), custom-resource
  failures (AWS/Lambda Errors of the platform's custom resource functions).

Hub down and the nightly stop (decision). The tier's schedule scales the hub service to 0
outside business hours; the hub-down alarm must not fire then. It is a single-metric alarm on
HubUp (Minimum < 1 for 3 of 3 minutes) with TreatMissingData = notBreaching: the exporter runs
inside the hub task and sends HubUp 0 every minute while the task runs and the hub does not
answer (hung, overloaded, its API down); a task that is not running sends nothing, which the
alarm reads as "no news", so the scheduled stop is silent with no moving part. A hub task that
keeps dying is the hub-unhealthy alarm's case (its targets fail the load balancer's health
checks). Not chosen: TreatMissingData = breaching with EventBridge Scheduler calling
DisableAlarmActions/EnableAlarmActions on the schedule's crons: three more resources and an IAM
role per tier (and grants for every Service Catalog launch role), and an alarm that sat in ALARM
all night does not notify again when actions come back in the morning, so a hub that failed to
start would stay silent unless a third schedule reset it. The gap of the choice: a hub service
that cannot start any task at all (no capacity, image gone) sends nothing and registers no
target; ECS reports it in the service's events (README, "Observe (AWS)").
"""

from __future__ import annotations

import json
from typing import Any

from awacs.aws import Allow, Condition, PolicyDocument, Principal, Statement
from awacs.sns import Publish
from troposphere import Equals, If, Not, Ref, Select, Split, Sub, cloudwatch, sns

from lakehub.stacks import names
from lakehub.stacks.builder import Builder, platform_tags
from lakehub.stacks.policies import same_account
from lakehub_hub import metrics as M

ALARM_TOPIC = "AlarmTopic"
ALARM_TOPIC_POLICY = "AlarmTopicPolicy"
DASHBOARD = "Dashboard"
GROUP = "Monitoring"
HAS_ALARM_EMAIL = "HasAlarmEmail"

# Thresholds (build-time settings; an operator changes the alarm in the console if needed).
HUB_DOWN_MINUTES = 3
SPAWN_FAILURES_THRESHOLD = 3  # failed spawns ...
SPAWN_FAILURES_WINDOW = 15 * 60  # ... in 15 minutes
CAPACITY_ERRORS_THRESHOLD = 1  # any refusal in 5 minutes: users waited or were refused
CAPACITY_ERRORS_WINDOW = 5 * 60
UNHEALTHY_MINUTES = 3


def add_alarm_email_param(b: Builder) -> None:
    b.param(
        names.ALARM_EMAIL,
        GROUP,
        "Alarm e-mail",
        "E-mail address subscribed to the platform's alarm topic (AWS sends a confirmation mail first); empty: none (subscribe later to the AlarmTopicArn output)",
        Default="",
        AllowedPattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
        ConstraintDescription="an e-mail address, or empty",
        MaxLength=254,
    )
    b.t.add_condition(HAS_ALARM_EMAIL, Not(Equals(Ref(names.ALARM_EMAIL), "")))


def topic_policy_document(topic: Any) -> PolicyDocument:
    """CloudWatch alarms in this account may publish; nobody else gets anything here."""
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="CloudWatchAlarmsPublish",
                Effect=Allow,
                Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                Action=[Publish],
                Resource=[topic],
                Condition=Condition(same_account()),
            )
        ],
    )


def add_alarm_topic(b: Builder) -> sns.Topic:
    """The SNS topic every alarm notifies (ALARM and OK), with the optional e-mail subscription.
    Not encrypted with the AWS-managed key alias/aws/sns: CloudWatch could not publish to it
    (docs/AWS_NOTES.md; rule alarm-topic-not-aws-managed-key). A customer managed key would cost
    $1 a month; alarm messages hold alarm names and figures only."""
    from lakehub.stacks.builder import add_checkov_skip

    topic = b.add(
        sns.Topic(
            ALARM_TOPIC,
            TopicName=Sub("${PlatformName}-alarms"),
            DisplayName=Sub("lakehub ${PlatformName} alarms"),
            Subscription=If(
                HAS_ALARM_EMAIL, [sns.Subscription(Protocol="email", Endpoint=Ref(names.ALARM_EMAIL))], Ref("AWS::NoValue")
            ),
            Tags=platform_tags(),
        )
    )
    add_checkov_skip(
        topic,
        "CKV_AWS_26",
        "Alarm topic: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key alias/aws/sns, and a customer managed key costs $1 a month; messages hold alarm names and figures only",
    )
    b.add(sns.TopicPolicy(ALARM_TOPIC_POLICY, Topics=[Ref(topic)], PolicyDocument=topic_policy_document(Ref(topic))))
    return topic


def alarm(
    title: str,
    name: Any,
    description: Any,
    topic: Any,
    namespace: str,
    metric: str,
    dimensions: list[tuple[str, Any]],
    statistic: str,
    period: int,
    evaluation_periods: int,
    threshold: float,
    comparison: str,
    missing: str,
    condition: str | None = None,
) -> cloudwatch.Alarm:
    """A single-metric alarm (no metric math: the local evaluator reads each one, lakehub.local)
    whose ALARM and OK both go to the topic."""
    kwargs: dict[str, Any] = {}
    if condition:
        kwargs["Condition"] = condition
    return cloudwatch.Alarm(
        title,
        AlarmName=name,
        AlarmDescription=description,
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[cloudwatch.MetricDimension(Name=k, Value=v) for k, v in dimensions],
        Statistic=statistic,
        Period=period,
        EvaluationPeriods=evaluation_periods,
        DatapointsToAlarm=evaluation_periods,
        Threshold=threshold,
        ComparisonOperator=comparison,
        TreatMissingData=missing,
        ActionsEnabled=True,
        AlarmActions=[topic],
        OKActions=[topic],
        **kwargs,
    )


def hub_dimensions() -> list[tuple[str, Any]]:
    return [(M.PLATFORM, Ref(names.PLATFORM_NAME)), (M.TIER, Ref(names.TIER_NAME))]


def target_group_full_name(tg: Any) -> Select:
    """targetgroup/<name>/<id> from the target group's ARN (what CloudWatch's TargetGroup
    dimension wants; the same as GetAtt TargetGroupFullName, which the emulator lacks)."""
    return Select(5, Split(":", Ref(tg)))


def add_tier_alarms(b: Builder, topic: Any, target_group: Any) -> list[cloudwatch.Alarm]:
    """The tier's four alarms (see the module's docstring for hub down and the nightly stop)."""
    name = "${PlatformName}-${TierName}-"
    made = [
        alarm(
            "HubDownAlarm",
            Sub(name + "hub-down"),
            Sub(
                f"lakehub tier ${{TierName}}: the hub does not answer (HubUp below 1 for {HUB_DOWN_MINUTES} minutes while its task runs). Look at the task's log; ECS replaces a task whose health check fails."
            ),
            topic,
            M.NAMESPACE,
            M.HUB_UP,
            hub_dimensions(),
            "Minimum",
            M.PERIOD,
            HUB_DOWN_MINUTES,
            1,
            "LessThanThreshold",
            # No data = no hub task (the nightly stop): not a failure; see the module docstring.
            "notBreaching",
        ),
        alarm(
            "HubUnhealthyAlarm",
            Sub(name + "hub-unhealthy"),
            Sub("lakehub tier ${TierName}: a hub task fails the load balancer's health check (/hub/health) for 3 minutes"),
            topic,
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            [("TargetGroup", target_group_full_name(target_group)), ("LoadBalancer", Ref(names.LOAD_BALANCER_FULL_NAME))],
            "Maximum",
            M.PERIOD,
            UNHEALTHY_MINUTES,
            1,
            "GreaterThanOrEqualToThreshold",
            "notBreaching",
        ),
        alarm(
            "SpawnFailuresAlarm",
            Sub(name + "spawn-failures"),
            Sub(f"lakehub tier ${{TierName}}: {SPAWN_FAILURES_THRESHOLD} or more users' servers failed to start in 15 minutes"),
            topic,
            M.NAMESPACE,
            M.SPAWN_FAILURES,
            hub_dimensions(),
            "Sum",
            SPAWN_FAILURES_WINDOW,
            1,
            SPAWN_FAILURES_THRESHOLD,
            "GreaterThanOrEqualToThreshold",
            "notBreaching",
        ),
        alarm(
            "CapacityErrorsAlarm",
            Sub(name + "capacity-errors"),
            Sub(
                "lakehub tier ${TierName}: ECS refused users' server tasks for lack of capacity (Fargate Spot, or the account's Fargate vCPU quota)"
            ),
            topic,
            M.NAMESPACE,
            M.CAPACITY_ERRORS,
            hub_dimensions(),
            "Sum",
            CAPACITY_ERRORS_WINDOW,
            1,
            CAPACITY_ERRORS_THRESHOLD,
            "GreaterThanOrEqualToThreshold",
            "notBreaching",
        ),
    ]
    return [b.add(a) for a in made]


def function_name(arn: Any) -> Select:
    """A Lambda function's name from its ARN (arn:aws:lambda:region:account:function:NAME)."""
    return Select(6, Split(":", arn))


def add_platform_alarms(
    b: Builder, topic: Any, functions: dict[str, Any], nat_group: Any | None, nat_condition: str | None
) -> list:
    """Custom-resource failures (one alarm per platform function behind a custom resource: a
    failed create, update or delete of a tier or the platform) and, with the NAT instance, NAT down."""
    made = []
    for logical, arn in functions.items():
        made.append(
            b.add(
                alarm(
                    f"{logical}ErrorsAlarm",
                    Sub("${PlatformName}-" + logical + "-errors"),
                    f"lakehub: the platform function {logical} failed (a custom resource of a platform or tier stack); see its log group",
                    topic,
                    "AWS/Lambda",
                    "Errors",
                    [("FunctionName", function_name(arn))],
                    "Sum",
                    300,
                    1,
                    1,
                    "GreaterThanOrEqualToThreshold",
                    "notBreaching",
                )
            )
        )
    if nat_group is not None:
        made.append(
            b.add(
                alarm(
                    "NatInstanceDownAlarm",
                    Sub("${PlatformName}-nat-instance-down"),
                    "lakehub: the NAT instance fails its EC2 status checks: private subnets have no internet egress (PyPI, CRAN). Its Auto Scaling group replaces an impaired instance.",
                    topic,
                    "AWS/EC2",
                    "StatusCheckFailed",
                    [("AutoScalingGroupName", nat_group)],
                    "Maximum",
                    M.PERIOD * 5,
                    2,
                    1,
                    # A stopped NAT (nightly schedule) sends nothing: not a failure.
                    "GreaterThanOrEqualToThreshold",
                    "notBreaching",
                    condition=nat_condition,
                )
            )
        )
    return made


# ---- the dashboard --------------------------------------------------------------------------
REGION = "${AWS::Region}"
PLATFORM = "${PlatformName}"


def _search(metric: str, extra_dims: tuple[str, ...], stat: str, label: str, period: int = M.PERIOD) -> dict:
    """A SEARCH over every tier of this platform (tiers launched from Service Catalog included:
    they publish with the same Platform dimension)."""
    dims = ",".join((M.PLATFORM, M.TIER) + extra_dims)
    found = {
        "expression": f"SEARCH('{{{M.NAMESPACE},{dims}}} MetricName=\"{metric}\" {M.PLATFORM}=\"{PLATFORM}\"', '{stat}', {period})"
    }
    if label:
        found["label"] = label
    return found


def _widget(
    title: str,
    metrics: list,
    x: int,
    y: int,
    w: int = 12,
    h: int = 6,
    stat: str = "Sum",
    view: str = "timeSeries",
    stacked: bool = False,
    period: int = M.PERIOD,
) -> dict:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": w,
        "height": h,
        "properties": {
            "title": title,
            "region": REGION,
            "view": view,
            "stacked": stacked,
            "stat": stat,
            "period": period,
            "metrics": metrics,
        },
    }


def dashboard_widgets(nat: bool, functions: list[str]) -> list[dict]:
    """The dashboard's widgets (a Sub template: ${PlatformName}, ${AWS::Region}, ${<Name>})."""

    def search(*args, **kwargs):
        return [_search(*args, **kwargs)]

    lambda_metrics = [["AWS/Lambda", "Errors", "FunctionName", "${" + f + "}"] for f in functions]
    # (title, metrics, _widget's options): laid out in two columns, left to right, then down.
    panels: list[tuple[str, list, dict]] = [
        ("Hubs up (1 = answering)", [search(M.HUB_UP, (), "Minimum", "")], {"stat": "Minimum"}),
        (
            "Active users, running servers",
            [search(M.ACTIVE_USERS, (), "Maximum", "active"), search(M.RUNNING_SERVERS, (), "Maximum", "running")],
            {"stat": "Maximum"},
        ),
        (
            "Spawns: successes and failures",
            [search(M.SPAWN_SUCCESSES, (), "Sum", "ok"), search(M.SPAWN_FAILURES, (), "Sum", "failed")],
            {},
        ),
        (
            "Spawn latency (seconds)",
            [search(M.SPAWN_DURATION, (), "Average", "mean"), search(M.SPAWN_DURATION, (), "Maximum", "max")],
            {"stat": "Average"},
        ),
        (
            "User tasks by size and capacity (cost driver)",
            [search(M.USER_TASKS, (M.SIZE, M.CAPACITY), "Maximum", "")],
            {"stat": "Maximum", "stacked": True},
        ),
        (
            "Spot interruptions, capacity errors",
            [search(M.SPOT_INTERRUPTIONS, (), "Sum", "spot"), search(M.CAPACITY_ERRORS, (), "Sum", "capacity")],
            {},
        ),
        ("Servers stopped by reason", [search(M.SERVERS_STOPPED, (M.REASON,), "Sum", "")], {"stacked": True}),
        # S3: the notebook bucket's daily storage metrics are free; 4xx/5xx are request metrics
        # (paid, $0.30 per metric-month, off): the dashboard shows storage, errors show in the
        # custom-resource and hub alarms and in the hubs' logs (docs/COST.md).
        (
            "Notebook bucket size (bytes, daily)",
            [["AWS/S3", "BucketSizeBytes", "BucketName", "${NotebookBucket}", "StorageType", "StandardStorage"]],
            {"stat": "Average", "period": 86400},
        ),
        ("Platform functions: errors", lambda_metrics or [search("Errors", (), "Sum", "")], {}),
    ]
    if nat:
        panels.append(
            (
                "NAT instance: status check failures, bytes out (cost driver)",
                [
                    ["AWS/EC2", "StatusCheckFailed", "AutoScalingGroupName", "${NatGroup}", {"stat": "Maximum"}],
                    ["AWS/EC2", "NetworkOut", "AutoScalingGroupName", "${NatGroup}", {"stat": "Sum", "yAxis": "right"}],
                ],
                {},
            )
        )
    return [_widget(title, metrics, 12 * (i % 2), 6 * (i // 2), **options) for i, (title, metrics, options) in enumerate(panels)]


def dashboard_body(nat: bool, functions: list[str]) -> str:
    widgets = dashboard_widgets(nat, functions)
    for i, widget in enumerate(widgets):  # expressions need ids unique within a widget
        for j, row in enumerate(widget["properties"]["metrics"]):
            if isinstance(row[0], dict):
                row[0]["id"] = f"w{i}e{j}"
    return json.dumps({"widgets": widgets}, sort_keys=True, separators=(",", ":"))


def add_dashboard(b: Builder, notebook_bucket: Any, functions: dict[str, Any], nat_group: Any | None) -> cloudwatch.Dashboard:
    """One dashboard per platform, named after it. The body is JSON built here with Sub
    variables: the hubs' figures through SEARCH expressions (every tier of the platform,
    including tiers launched later from Service Catalog), the platform's own resources by name."""
    variables: dict[str, Any] = {"NotebookBucket": notebook_bucket}
    variables.update({f: function_name(arn) for f, arn in functions.items()})
    if nat_group is not None:
        variables["NatGroup"] = nat_group
    body = dashboard_body(nat_group is not None, list(functions))
    return b.add(
        cloudwatch.Dashboard(DASHBOARD, DashboardName=Sub("${PlatformName}-lakehub"), DashboardBody=Sub(body, **variables))
    )
