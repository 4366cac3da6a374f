"""CloudWatch alarm evaluation for the local platform: moto stores metric alarms and metric data
but never evaluates an alarm (moto/cloudwatch/models.py: an alarm's state changes only through
SetAlarmState; docs/LOCAL.md). The supervisor runs `AlarmEvaluator` in a thread: every
EVALUATE_EVERY seconds it reads each metric alarm of the emulator (DescribeAlarms), reads its
metric (GetMetricData on the emulator), applies CloudWatch's rules and, when the state changes,
sets it (SetAlarmState, with a reason worded as CloudWatch words it) and publishes the alarm's
actions for the new state to SNS in the emulator, with the message CloudWatch sends.

CloudWatch's rules, as the CloudWatch user guide states them ("Evaluating an alarm",
"Configuring how CloudWatch alarms treat missing data"):
- each of the last EvaluationPeriods periods of Period seconds gives one datapoint (the alarm's
  Statistic or ExtendedStatistic over that period) or none (missing);
- the alarm is in ALARM when DatapointsToAlarm (M, default EvaluationPeriods = N) of those N are
  breaching (the datapoint compared with Threshold by ComparisonOperator), else OK;
- missing datapoints (TreatMissingData): `breaching` and `notBreaching` count them as such;
  `missing` (the default) and `ignore` take the most recent real datapoints of a wider
  evaluation range instead; when there are none, `missing` gives INSUFFICIENT_DATA and `ignore`
  keeps the state; when too few real datapoints are there to rule ALARM out and too few
  breach to reach M, the state is kept (no premature transition);
- actions run only on a change of state and only when ActionsEnabled.

Not evaluated locally (one line each in docs/LOCAL.md): metric-math alarms (`Metrics`), anomaly
detection, composite alarms; EvaluateLowSampleCountPercentile. Percentiles (ExtendedStatistic
pNN) are computed from per-second averages (moto computes no percentiles): exact while a series
gets at most one value a second.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

log = logging.getLogger("lakehub.local.alarms")

EVALUATE_EVERY = 15.0  # seconds between passes (LAKEHUB_ALARM_INTERVAL overrides)
INTERVAL_ENV = "LAKEHUB_ALARM_INTERVAL"
# Periods fetched beyond EvaluationPeriods for `missing`/`ignore` (the user guide's example
# evaluates a 3-of-3 alarm over a range of 5).
EXTRA_RANGE = 2
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
NOT_DECIDED = "Insufficient Data: too few datapoints to decide yet."
MOTO_INITIAL_REASON = "Unchecked: Initial alarm creation"  # moto starts alarms in OK; AWS in INSUFFICIENT_DATA
OPERATORS = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
}


def compare(value: float, operator: str, threshold: float) -> bool:
    return OPERATORS[operator][0](value, threshold)


@dataclass
class Verdict:
    """What one evaluation concluded: the new state (None: keep the current one) and why."""

    state: str | None
    reason: str
    evaluated: list = field(default_factory=list)  # [(timestamp, value or None)] newest first


def _fmt_time(ts: datetime) -> str:
    return ts.strftime("%d/%m/%y %H:%M:%S")


def _number(value: float) -> str:
    return repr(float(value))


def decide(alarm: dict, points: list[tuple[datetime, float | None]], current: str) -> Verdict:
    """CloudWatch's rules over `points`: one (period start, datapoint or None) per period of the
    evaluation range, newest first (at least EvaluationPeriods of them). Pure: no I/O."""
    n = int(alarm["EvaluationPeriods"])
    m = int(alarm.get("DatapointsToAlarm") or n)
    threshold = float(alarm["Threshold"])
    operator = alarm["ComparisonOperator"]
    words = OPERATORS[operator][1]
    treat = alarm.get("TreatMissingData") or "missing"
    window = points[:n]
    if treat in ("breaching", "notBreaching"):
        missing = sum(1 for _, v in window if v is None)
        real = [(t, v) for t, v in window if v is not None]
        breaching = sum(1 for _, v in real if compare(v, operator, threshold))
        if treat == "breaching":
            breaching += missing
        state = "ALARM" if breaching >= m else "OK"
        if not real:
            how = "Breaching" if treat == "breaching" else "NonBreaching"
            return Verdict(
                state,
                f"Threshold Crossed: no datapoints were received for {n} period{'s' * (n > 1)} and "
                f"{missing} missing datapoint{'s were' if missing > 1 else ' was'} treated as [{how}].",
                window,
            )
        return Verdict(
            state,
            _crossed(
                state, breaching if state == "ALARM" else len(window) - breaching, n, real, words, threshold, m, treat, missing
            ),
            window,
        )
    # missing / ignore: the most recent real datapoints in the whole range
    real = [(t, v) for t, v in points if v is not None][:n]
    if not real:
        if treat == "ignore":
            return Verdict(None, "", [])
        return Verdict("INSUFFICIENT_DATA", f"Insufficient Data: {n} datapoint{'s were' if n > 1 else ' was'} unknown.", [])
    breaching = sum(1 for _, v in real if compare(v, operator, threshold))
    if breaching >= m:
        return Verdict("ALARM", _crossed("ALARM", breaching, n, real, words, threshold, m, treat, 0), real)
    if breaching + (n - len(real)) >= m:  # the missing ones could still make it ALARM: keep the state
        return Verdict(None, "", real)
    return Verdict("OK", _crossed("OK", len(real) - breaching, n, real, words, threshold, m, treat, 0), real)


def _crossed(state: str, count: int, n: int, real: list, words: str, threshold: float, m: int, treat: str, missing: int) -> str:
    shown = ", ".join(f"{_number(v)} ({_fmt_time(t)})" for t, v in real)
    verb = "was" if count == 1 else "were"
    relation = words if state == "ALARM" else f"not {words}"
    text = (
        f"Threshold Crossed: {count} out of the last {n} datapoints [{shown}] {verb} {relation} "
        f"the threshold ({_number(threshold)})"
    )
    if missing:
        how = "Breaching" if treat == "breaching" else "NonBreaching"
        text += f" and {missing} missing datapoint{'s were' if missing > 1 else ' was'} treated as [{how}]"
    if state == "ALARM":
        text += f" (minimum {m} datapoint{'s' * (m > 1)} for OK -> ALARM transition)."
    else:
        text += " (minimum 1 datapoint for ALARM -> OK transition)."
    return text


def evaluable(alarm: dict) -> str:
    """'' when the local evaluator evaluates this alarm, else why not (one line)."""
    if alarm.get("Metrics"):
        return "metric-math alarms are not evaluated locally"
    if alarm.get("ComparisonOperator") not in OPERATORS:
        return f"{alarm.get('ComparisonOperator')} (anomaly detection) is not evaluated locally"
    if not alarm.get("MetricName"):
        return "no metric"
    return ""


def current_state(alarm: dict) -> str:
    """The alarm's state; moto's initial OK ('Unchecked') is CloudWatch's INSUFFICIENT_DATA."""
    if alarm.get("StateReason") == MOTO_INITIAL_REASON:
        return "INSUFFICIENT_DATA"
    return alarm.get("StateValue") or "INSUFFICIENT_DATA"


def _percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def series_dimensions(cloudwatch, alarm: dict) -> list[dict]:
    """The alarm's dimensions in the order the series was published (ListMetrics): moto's
    GetMetricData compares sorted() lists of its Dimension objects, whose ordering is broken, so
    the same dimensions in another order find nothing (CloudWatch ignores the order)."""
    wanted = {(d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])}
    listed = cloudwatch.list_metrics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=[{"Name": n, "Value": v} for n, v in sorted(wanted)],
    )
    for m in listed.get("Metrics", []):
        if {(d["Name"], d["Value"]) for d in m.get("Dimensions", [])} == wanted:
            return [{"Name": d["Name"], "Value": d["Value"]} for d in m["Dimensions"]]
    return [{"Name": n, "Value": v} for n, v in sorted(wanted)]


def fetch(cloudwatch, alarm: dict, now: float) -> list[tuple[datetime, float | None]]:
    """One (period start, datapoint or None) per period of the evaluation range, newest first.
    The newest is the current period when it has data already, else the last complete one."""
    period = int(alarm["Period"])
    n = int(alarm["EvaluationPeriods"])
    span = n + EXTRA_RANGE
    current = int(now // period) * period
    start = current - span * period
    metric = {
        "Namespace": alarm["Namespace"],
        "MetricName": alarm["MetricName"],
        "Dimensions": series_dimensions(cloudwatch, alarm),
    }
    extended = alarm.get("ExtendedStatistic")
    stat = {"Metric": metric, "Period": 1 if extended else period, "Stat": "Average" if extended else alarm["Statistic"]}
    if alarm.get("Unit"):
        stat["Unit"] = alarm["Unit"]
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": stat, "ReturnData": True}],
        StartTime=datetime.fromtimestamp(start, timezone.utc),
        EndTime=datetime.fromtimestamp(current + period, timezone.utc),
    )
    result = (answer.get("MetricDataResults") or [{}])[0]
    by_period: dict[int, list[float]] = {}
    for ts, value in zip(result.get("Timestamps", []), result.get("Values", [])):
        if value is None:
            continue
        key = int(ts.timestamp() // period) * period
        by_period.setdefault(key, []).append(float(value))
    points = []
    for begin in range(current, start - 1, -period):
        values = by_period.get(begin)
        if not values:
            value = None
        elif extended:
            value = _percentile(values, float(extended.lstrip("p")))
        else:
            value = values[0] if len(values) == 1 else sum(values) / len(values)
        points.append((datetime.fromtimestamp(begin, timezone.utc), value))
    if points and points[0][1] is None:
        points = points[1:]  # the current period has no data yet: not missing, just not over
    else:
        points = points[:-1]
    return points


def message(alarm: dict, old: str, new: str, reason: str, when: datetime, region: str, account: str) -> dict:
    """The JSON CloudWatch publishes to an alarm's SNS topics (the documented notification
    format: aws-lambda-go events/testdata/cloudwatch-alarm-sns-payload-single-metric.json)."""
    extended = alarm.get("ExtendedStatistic")
    trigger = {
        "MetricName": alarm.get("MetricName"),
        "Namespace": alarm.get("Namespace"),
        "StatisticType": "ExtendedStatistic" if extended else "Statistic",
        "Statistic": extended if extended else str(alarm.get("Statistic", "")).upper(),
        "Unit": alarm.get("Unit"),
        "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions", [])],
        "Period": alarm.get("Period"),
        "EvaluationPeriods": alarm.get("EvaluationPeriods"),
        "DatapointsToAlarm": alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods"),
        "ComparisonOperator": alarm.get("ComparisonOperator"),
        "Threshold": float(alarm.get("Threshold", 0)),
        "TreatMissingData": alarm.get("TreatMissingData") or "missing",
        "EvaluateLowSampleCountPercentile": alarm.get("EvaluateLowSampleCountPercentile") or "",
    }
    updated = alarm.get("AlarmConfigurationUpdatedTimestamp")
    return {
        "AlarmName": alarm["AlarmName"],
        "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _aws_time(updated) if isinstance(updated, datetime) else None,
        "NewStateValue": new,
        "NewStateReason": reason,
        "StateChangeTime": _aws_time(when),
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": alarm.get("AlarmArn"),
        "OldStateValue": old,
        "OKActions": alarm.get("OKActions", []),
        "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
        "Trigger": trigger,
    }


def _aws_time(ts: datetime) -> str:
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"


def subject(alarm: dict, new: str, region: str) -> str:
    text = f'{new}: "{alarm["AlarmName"]}" in {REGION_NAMES.get(region, region)}'
    return text[:100]  # SNS subjects are at most 100 characters


ACTIONS_FOR = {"ALARM": "AlarmActions", "OK": "OKActions", "INSUFFICIENT_DATA": "InsufficientDataActions"}


@dataclass
class Change:
    alarm: str
    old: str
    new: str
    reason: str
    published: list[str]


class AlarmEvaluator:
    """Evaluates every metric alarm of the emulator (one pass: evaluate_once; in a thread:
    start/stop). `session` gives boto3 clients bound to the emulator."""

    def __init__(self, client_factory, region: str = "us-east-1", interval: float | None = None):
        self._factory = client_factory
        self._clients: dict = {}
        self.region = region
        self.interval = interval if interval is not None else float(os.environ.get(INTERVAL_ENV) or EVALUATE_EVERY)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last_pass_seconds = 0.0
        self.skipped: dict[str, str] = {}  # alarm -> why it is not evaluated (logged once)

    def _client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    def evaluate_once(self, now: float | None = None, prefix: str = "") -> list[Change]:
        """One pass over every metric alarm (whose name starts with `prefix`)."""
        started = time.monotonic()
        now = time.time() if now is None else now
        cloudwatch = self._client("cloudwatch")
        alarms = []
        query = {"AlarmTypes": ["MetricAlarm"], **({"AlarmNamePrefix": prefix} if prefix else {})}
        for page in cloudwatch.get_paginator("describe_alarms").paginate(**query):
            alarms.extend(page.get("MetricAlarms", []))
        changes = []
        for alarm in alarms:
            why = evaluable(alarm)
            if why:
                if self.skipped.get(alarm["AlarmName"]) != why:
                    log.info("alarm %s: %s", alarm["AlarmName"], why)
                    self.skipped[alarm["AlarmName"]] = why
                continue
            try:
                change = self.evaluate_alarm(cloudwatch, alarm, now)
            except Exception:  # noqa: BLE001 - one alarm's failure must not stop the others
                log.exception("evaluating alarm %s", alarm["AlarmName"])
                continue
            if change:
                changes.append(change)
        self.passes += 1
        self.last_pass_seconds = time.monotonic() - started
        return changes

    def evaluate_alarm(self, cloudwatch, alarm: dict, now: float) -> Change | None:
        old = current_state(alarm)
        verdict = decide(alarm, fetch(cloudwatch, alarm, now), old)
        new = verdict.state
        if new is None:
            if alarm.get("StateReason") != MOTO_INITIAL_REASON:
                return None
            # moto's "OK (Unchecked)" is INSUFFICIENT_DATA on AWS until the first evaluation decides
            new, verdict.reason = "INSUFFICIENT_DATA", NOT_DECIDED
        if new == old and alarm.get("StateReason") != MOTO_INITIAL_REASON:
            return None
        when = datetime.now(timezone.utc)
        data = {
            "version": "1.0",
            "queryDate": _aws_time(when),
            "statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
            "period": alarm["Period"],
            "recentDatapoints": [v for _, v in verdict.evaluated if v is not None],
            "threshold": float(alarm["Threshold"]),
            "evaluatedDatapoints": [
                {"timestamp": _aws_time(t), **({"value": v} if v is not None else {})} for t, v in verdict.evaluated
            ],
        }
        cloudwatch.set_alarm_state(
            AlarmName=alarm["AlarmName"], StateValue=new, StateReason=verdict.reason[:1023], StateReasonData=json.dumps(data)
        )
        published = []
        if new != old:
            log.info("alarm %s: %s -> %s: %s", alarm["AlarmName"], old, new, verdict.reason)
            published = self.notify(alarm, old, new, verdict.reason, when)
        return Change(alarm["AlarmName"], old, new, verdict.reason, published)

    def notify(self, alarm: dict, old: str, new: str, reason: str, when: datetime) -> list[str]:
        if not alarm.get("ActionsEnabled", True):
            return []
        account = alarm.get("AlarmArn", "::::0").split(":")[4]
        body = json.dumps(message(alarm, old, new, reason, when, self.region, account))
        sent = []
        for arn in alarm.get(ACTIONS_FOR[new]) or []:
            if not arn.startswith("arn:aws:sns:"):
                log.info("alarm %s: action %s is not run locally (only SNS topics are)", alarm["AlarmName"], arn)
                continue
            try:
                self._client("sns").publish(TopicArn=arn, Message=body, Subject=subject(alarm, new, self.region))
                sent.append(arn)
            except Exception as exc:  # noqa: BLE001 - as on AWS, a failed action does not undo the state
                log.warning("alarm %s: publishing to %s failed: %s", alarm["AlarmName"], arn, exc)
        return sent

    # -- thread --------------------------------------------------------------------------------
    def start(self) -> "AlarmEvaluator":
        self._thread = threading.Thread(target=self._loop, name="alarm-evaluator", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.evaluate_once()
            except Exception as exc:  # noqa: BLE001 - the emulator restarting, a timeout: next pass
                log.warning("alarm evaluation pass failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
