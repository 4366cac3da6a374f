"""Issue 14: one tier's hub cannot read or stop another tier's user servers.

ECS authorizes DescribeTasks and StopTask per task, with the task's tags as aws:ResourceTag
(Service Authorization Reference, Amazon ECS); the emulator ignores IAM conditions, so the
resolved statements of each tier's hub role are evaluated here the way IAM does for an
identity policy (an explicit Allow whose action, resource and every condition match; nothing
else allows). Rule ecs-task-access-by-tier-tag keeps the templates this way.
"""

from __future__ import annotations

import re

import pytest

ACCOUNT, REGION, CLUSTER = "123456789012", "us-east-1", "lakehub"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
PII_TASK = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/0123456789abcdef0123456789abcdef"
NONPII_TASK = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/fedcba9876543210fedcba9876543210"


def _wild(pattern: str, value: str, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


OPERATORS = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": lambda want, got: _wild(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": lambda want, got: _wild(want, got),
}


def _condition_holds(condition: dict, context: dict) -> bool:
    for operator, keys in (condition or {}).items():
        if operator not in OPERATORS:
            raise AssertionError(f"the test's evaluator does not know {operator}: teach it before trusting it")
        for key, wanted in keys.items():
            got = context.get(key)
            if got is None or not any(OPERATORS[operator](str(w), str(got)) for w in _listed(wanted)):
                return False
    return True


def allowed(statements: list[dict], action: str, resource: str, context: dict) -> bool:
    """Identity-policy evaluation for Allow statements (these roles have no Deny)."""
    assert all(s["Effect"] == "Allow" for s in statements)
    for s in statements:
        if not any(_wild(a, action, case=False) for a in _listed(s["Action"])):
            continue
        if not any(_wild(r, resource) for r in _listed(s["Resource"])):
            continue
        if _condition_holds(s.get("Condition"), context):
            return True
    return False


def hub_statements(resolve_tier, tier: str) -> list[dict]:
    res = resolve_tier(TierName=tier, HostName=tier, DataPrefixes=f"{tier}/", ServerMode="per-user", ClusterName=CLUSTER).resources()
    return [s for p in res["HubRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def task_context(tier: str) -> dict:
    return {"ecs:cluster": CLUSTER_ARN, "aws:ResourceTag/lakehub:tier": tier}


@pytest.mark.parametrize("action", ["ecs:DescribeTasks", "ecs:StopTask"])
def test_the_nonpii_hub_cannot_describe_or_stop_a_pii_task(resolve_tier, action):
    nonpii = hub_statements(resolve_tier, "nonpii")
    assert not allowed(nonpii, action, PII_TASK, task_context("pii"))
    # ...while its own tier's tasks stay in reach (the evaluator is not simply refusing).
    assert allowed(nonpii, action, NONPII_TASK, task_context("nonpii"))
    assert allowed(hub_statements(resolve_tier, "pii"), action, PII_TASK, task_context("pii"))


def test_an_untagged_task_or_another_cluster_is_out_of_reach(resolve_tier):
    pii = hub_statements(resolve_tier, "pii")
    assert not allowed(pii, "ecs:DescribeTasks", PII_TASK, {"ecs:cluster": CLUSTER_ARN})
    other = {"ecs:cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/other", "aws:ResourceTag/lakehub:tier": "pii"}
    assert not allowed(pii, "ecs:StopTask", PII_TASK.replace(CLUSTER, "other"), other)


def test_a_hub_tags_tasks_only_at_run_task_and_only_with_its_tier(resolve_tier):
    """Re-tagging a PII task `nonpii` would open it to the non-PII hub: TagResource is allowed
    only inside RunTask (ecs:CreateAction) and with the hub's own tier as the tier tag."""
    nonpii = hub_statements(resolve_tier, "nonpii")
    at_launch = {"ecs:CreateAction": "RunTask", "aws:RequestTag/lakehub:tier": "nonpii"}
    assert allowed(nonpii, "ecs:TagResource", NONPII_TASK, at_launch)
    assert not allowed(nonpii, "ecs:TagResource", PII_TASK, {"aws:RequestTag/lakehub:tier": "nonpii"})
    assert not allowed(nonpii, "ecs:TagResource", NONPII_TASK, {**at_launch, "aws:RequestTag/lakehub:tier": "pii"})


def test_listing_is_the_only_task_action_on_any_resource(resolve_tier):
    """ListTasks returns ARNs only and cannot be scoped by tag (authorized against '*'); it
    stays narrowed to the cluster. DescribeTaskDefinition (per-user homes: the tier's
    definition is read to derive the user's) is authorized against '*' only, and is no task
    action. PutMetricData (the metrics exporter) has no resource type either; its namespace
    condition scopes it (tests/templates/test_monitoring.py)."""
    stmts = hub_statements(resolve_tier, "pii")
    star = [s for s in stmts if "*" in _listed(s["Resource"]) and s["Action"] != ["cloudwatch:PutMetricData"]]
    assert [s["Action"] for s in star] == [["ecs:ListTasks"], ["ecs:DescribeTaskDefinition"]]
    assert star[0]["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}
