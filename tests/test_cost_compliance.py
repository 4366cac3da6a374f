"""`lakehub cost --templates DIR` prices what a compliance profile adds (issue 19) by reading the
resources in DIR: customer managed keys, log retention, access logs, flow logs, detailed
monitoring, image scanning, secret rotation, WAF.

Each feature is put into a copy of the committed (standard) templates, the way a strict build
would carry it, and the test checks that the estimate's figure appears, equals the hand-computed
price, and follows the template when the template changes. Prices come from the price file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load
from lakehub.cli import main as cli_main
from lakehub.cost import PRICES_FILE, estimate

RAW = yaml.safe_load(PRICES_FILE.read_text())
ITEMS = RAW["regions"]["us-east-1"]
P = {k: v.get("usd", v.get("fraction")) for k, v in ITEMS.items()}
A = {k: v["value"] for k, v in RAW["assumptions"].items()}
HOURS = 730
WEEKS = 730 / 168
NAT_HOURS = (12 + 15 / 60) * 5 * WEEKS  # the NAT instance's default schedule (tests/test_cost.py)


class Templates:
    """A copy of the committed templates whose resources a test edits as dicts."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for p in TEMPLATES_DIR.glob("*.template.yaml"):
            shutil.copy(p, root / p.name)

    def edit(self, filename: str, change) -> None:
        path = self.root / filename
        t = load(path)
        change(t["Resources"])
        path.write_text(yaml.safe_dump(t, sort_keys=False))

    def cost(self, **kw) -> dict:
        return estimate(templates_dir=self.root, **kw)


@pytest.fixture
def tmpl(tmp_path) -> Templates:
    return Templates(tmp_path / "templates")


def component(r: dict, key: str) -> dict:
    return r["components"][key]


def key(alias: str) -> dict:
    return {
        "Type": "AWS::KMS::Key",
        "Properties": {"Description": alias, "EnableKeyRotation": True, "KeyPolicy": {"Version": "2012-10-17", "Statement": []}},
    }


# --------------------------------------------------------------------------------------------
# the standard templates
# --------------------------------------------------------------------------------------------
def test_the_standard_templates_carry_no_paid_compliance_feature():
    r = estimate()
    for k in ("kms", "detailed_monitoring", "image_scanning"):
        assert component(r, k)["idle_monthly_usd"] == 0 and component(r, k)["per_user_hour_usd"] == 0, k
    assert "free" in component(r, "image_scanning")["detail"]  # basic scan on push
    # The standard set already keeps ALB and S3 access logs a year: priced per user-hour.
    assert component(r, "access_logs")["per_user_hour_usd"] > 0


# --------------------------------------------------------------------------------------------
# each feature, from the templates
# --------------------------------------------------------------------------------------------
def test_customer_managed_keys_cost_a_dollar_each_and_their_requests(tmpl):
    base = tmpl.cost()
    tmpl.edit(names.CLUSTER_TEMPLATE, lambda res: res.update(LogsKey=key("logs")))
    tmpl.edit(names.STORAGE_TEMPLATE, lambda res: res.update(NotebookKey=key("notebooks"), DataKey=key("data")))
    three = tmpl.cost()
    k = component(three, "kms")
    assert k["idle_monthly_usd"] == pytest.approx(3 * P["kms_key_month"])
    assert k["per_user_hour_usd"] == pytest.approx(A["kms_requests_per_user_hour"] / 10_000 * P["kms_requests_10k"], abs=1e-6)
    assert "DataKey" in k["detail"] and "LogsKey" in k["detail"]
    assert three["idle_monthly_usd"] == pytest.approx(base["idle_monthly_usd"] + 3 * P["kms_key_month"], abs=1e-3)
    tmpl.edit(names.STORAGE_TEMPLATE, lambda res: res.pop("DataKey"))
    assert component(tmpl.cost(), "kms")["idle_monthly_usd"] == pytest.approx(2 * P["kms_key_month"])


def test_a_key_under_a_false_condition_costs_nothing(tmpl):
    def add(res):
        res["DemoKey"] = key("demo") | {
            "Condition": next(r["Condition"] for r in res.values() if r["Type"] == "AWS::CloudTrail::Trail")
        }

    tmpl.edit(names.STORAGE_TEMPLATE, add)  # the trail's condition: RecordDataEvents=false by default
    assert component(tmpl.cost(), "kms")["idle_monthly_usd"] == 0
    assert component(tmpl.cost(parameters={names.RECORD_DATA_EVENTS: "true"}), "kms")["idle_monthly_usd"] == pytest.approx(1.0)


def test_a_year_of_log_retention_stores_twelve_months_of_logs(tmpl):
    base = component(tmpl.cost(), "logs")

    def year(res):
        group = next(
            r for k, r in res.items() if r["Type"] == "AWS::Logs::LogGroup" and "tasks" in str(r["Properties"]["LogGroupName"])
        )
        group["Properties"]["RetentionInDays"] = 365

    tmpl.edit(names.CLUSTER_TEMPLATE, year)
    logs = component(tmpl.cost(), "logs")
    per_gb = lambda days: P["logs_ingest_gb"] + days / 30 * P["logs_store_gb_month"]  # noqa: E731
    assert logs["per_user_hour_usd"] == pytest.approx(A["user_log_gb_per_user_hour"] * per_gb(365), abs=1e-6)
    assert logs["idle_monthly_usd"] / base["idle_monthly_usd"] == pytest.approx(per_gb(365) / per_gb(30), rel=1e-2)
    assert "kept 365 days" in logs["detail"]


def test_alb_access_logs_follow_the_attribute_and_their_bucket_expiry(tmpl):
    def alb_share(r):
        detail = component(r, "access_logs")["detail"]
        assert ("LoadBalancer: " in detail) and ("access logs off" not in detail) or "access logs off" in detail
        return component(r, "access_logs")["per_user_hour_usd"]

    year = alb_share(tmpl.cost())

    def expiry(days):
        def f(res):
            for rule in res["LoadBalancerLogsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]:
                if "ExpirationInDays" in rule:
                    rule["ExpirationInDays"] = days

        return f

    tmpl.edit(names.CLUSTER_TEMPLATE, expiry(730))
    two_years = alb_share(tmpl.cost())
    alb = A["alb_log_bytes_per_user_hour"] / 1e9 * P["s3_standard_gb_month"] / 30
    assert two_years - year == pytest.approx(alb * (730 - 365), abs=2e-6)  # the estimate rounds to 6 places

    def off(res):
        for attr in res["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]:
            if attr["Key"] == "access_logs.s3.enabled":
                attr["Value"] = "false"

    tmpl.edit(names.CLUSTER_TEMPLATE, off)
    r = tmpl.cost()
    assert "LoadBalancer: access logs off" in component(r, "access_logs")["detail"]
    assert two_years - alb_share(r) == pytest.approx(alb * 730, abs=2e-6)


def test_s3_server_access_logs_are_priced_for_the_buckets_that_log(tmpl):
    before = component(tmpl.cost(), "access_logs")["per_user_hour_usd"]
    tmpl.edit(names.STORAGE_TEMPLATE, lambda res: res["NotebookBucket"]["Properties"].pop("LoggingConfiguration"))
    after = component(tmpl.cost(), "access_logs")
    notebook = (
        (A["notebook_puts_per_user_hour"] + A["notebook_gets_per_user_hour"])
        * A["s3_access_log_bytes_per_request"]
        / 1e9
        * 365
        / 30
        * P["s3_standard_gb_month"]
    )
    assert before - after["per_user_hour_usd"] == pytest.approx(notebook, abs=2e-6)
    assert notebook > 5e-6  # so the difference is not rounding
    assert "NotebookBucket" not in after["detail"] and "DemoLakeBucket" in after["detail"]


def test_detailed_monitoring_is_priced_for_the_hours_the_instance_runs(tmpl):
    seven = ITEMS["ec2_detailed_monitoring_metrics"]["count"] * P["ec2_detailed_monitoring_metrics"]

    def monitor(res):
        lt = next(r for r in res.values() if r["Type"] == "AWS::EC2::LaunchTemplate")
        lt["Properties"]["LaunchTemplateData"]["Monitoring"] = {"Enabled": True}

    tmpl.edit(names.NETWORK_TEMPLATE, monitor)
    d = component(tmpl.cost(), "detailed_monitoring")
    assert d["idle_monthly_usd"] == pytest.approx(seven * NAT_HOURS / HOURS, abs=1e-3)  # the NAT instance's schedule
    always = component(tmpl.cost(parameters={"Schedule": "always"}), "detailed_monitoring")
    assert always["idle_monthly_usd"] == pytest.approx(seven, abs=1e-3)  # $2.10 an instance-month


def test_enhanced_image_scanning_is_priced_and_basic_is_free(tmpl):
    def enhanced(res):
        res["RegistryScanning"] = {
            "Type": "AWS::ECR::RegistryScanningConfiguration",
            "Properties": {
                "ScanType": "ENHANCED",
                "Rules": [{"ScanFrequency": "CONTINUOUS_SCAN", "RepositoryFilters": [{"Filter": "*", "FilterType": "WILDCARD"}]}],
            },
        }

    tmpl.edit(names.PIPELINE_TEMPLATE, enhanced)
    s = component(tmpl.cost(), "image_scanning")
    kept = 20  # the repository's lifecycle keeps 20 images
    expected = (
        A["builds_per_month"] * P["ecr_enhanced_scan_image"]
        + A["enhanced_rescans_per_image_month"] * kept * P["ecr_enhanced_rescan_image"]
    )
    assert s["idle_monthly_usd"] == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def test_cost_templates_prices_the_folder_it_is_given(tmpl, capsys):
    tmpl.edit(names.CLUSTER_TEMPLATE, lambda res: res.update(LogsKey=key("logs")))
    assert cli_main(["cost", "--format", "json", "--templates", str(tmpl.root)]) == 0
    import json

    given = json.loads(capsys.readouterr().out)
    assert cli_main(["cost", "--format", "json"]) == 0
    committed = json.loads(capsys.readouterr().out)
    assert given["components"]["kms"]["idle_monthly_usd"] == pytest.approx(1.0)
    assert committed["components"]["kms"]["idle_monthly_usd"] == 0


def garbled(root: Path) -> Path:
    (root / names.TIER_TEMPLATE).write_text("Resources: [unclosed\n")
    return root


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda tmp: tmp / "nowhere", "no such folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "not found"),
        (lambda tmp: garbled(Templates(tmp / "g").root), "not valid YAML"),
    ],
)
def test_a_missing_or_garbled_templates_folder_is_one_line(tmp_path, capsys, make, says):
    folder = make(tmp_path)
    code = cli_main(["cost", "--templates", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and says in err[0] and "build_templates.py" in err[0], err


def test_container_insights_metrics_and_performance_logs_are_priced(tmpl):
    def enable(res):
        cluster = next(r for r in res.values() if r["Type"] == "AWS::ECS::Cluster")
        for setting in cluster["Properties"]["ClusterSettings"]:
            if setting["Name"] == "containerInsights":
                setting["Value"] = "enabled"

    assert component(tmpl.cost(), "container_insights")["idle_monthly_usd"] == 0
    tmpl.edit(names.CLUSTER_TEMPLATE, enable)
    r = tmpl.cost()
    hub_hours = r["configuration"]["tiers"][0]["hub_hours_per_month"]  # both tiers: the same schedule
    # the cluster's metrics, and each per-user tier's service and its two task families (hub, users)
    metrics = (
        A["container_insights_metrics_per_cluster"]
        + 2 * (A["container_insights_metrics_per_service"] + 2 * A["container_insights_metrics_per_task_family"])
    ) * hub_hours
    logs_gb = 2 * hub_hours * A["container_insights_log_kb_per_task_minute"] * 60 / 1e6
    expected = metrics * P["cloudwatch_custom_metric_month"] / HOURS + logs_gb * (P["logs_ingest_gb"] + P["logs_store_gb_month"])
    assert component(r, "container_insights")["idle_monthly_usd"] == pytest.approx(expected, abs=1e-3)


# --------------------------------------------------------------------------------------------
# the strict profile as the build makes it
# --------------------------------------------------------------------------------------------
def test_both_profiles_are_priced_from_their_built_templates(tmp_path):
    """`build_templates.py --settings <compliance: strict> --out DIR`, then `lakehub cost
    --templates DIR`: each paid feature the strict set carries is priced as the set says."""
    import subprocess
    import sys

    from lakehub.assets import ROOT

    settings = tmp_path / "strict.yaml"
    settings.write_text("compliance: strict\n")
    out = tmp_path / "strict"
    built = subprocess.run(
        [sys.executable, "build_templates.py", "--settings", str(settings), "--out", str(out), "--no-package"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    standard, strict = estimate(), estimate(templates_dir=out)

    # What the strict templates hold, read here without the estimate's code.
    main = load(out / names.MAIN_TEMPLATE)
    deployed = {names.MAIN_TEMPLATE: 1}
    for r in main["Resources"].values():
        if r["Type"] == "AWS::CloudFormation::Stack":
            child = next(
                f
                for f in (
                    names.NETWORK_TEMPLATE,
                    names.STORAGE_TEMPLATE,
                    names.PIPELINE_TEMPLATE,
                    names.CLUSTER_TEMPLATE,
                    names.TIER_TEMPLATE,
                    names.CATALOG_TEMPLATE,
                )
                if f in str(r["Properties"]["TemplateURL"])
            )
            deployed[child] = deployed.get(child, 0) + 1
    keys = sum(
        n * sum(1 for r in load(out / f)["Resources"].values() if r["Type"] == "AWS::KMS::Key" and "Condition" not in r)
        for f, n in deployed.items()
    )
    assert keys >= 1
    assert component(strict, "kms")["idle_monthly_usd"] == pytest.approx(keys * P["kms_key_month"])
    assert component(standard, "kms")["idle_monthly_usd"] == 0
    retention = int(load(out / names.MAIN_TEMPLATE)["Parameters"]["LogRetentionDays"]["Default"])
    assert retention >= 365 and f"kept {retention} days" in component(strict, "logs")["detail"]
    cluster = next(r for r in load(out / names.CLUSTER_TEMPLATE)["Resources"].values() if r["Type"] == "AWS::ECS::Cluster")
    insights = {s["Name"]: s["Value"] for s in cluster["Properties"]["ClusterSettings"]}["containerInsights"]
    assert (component(strict, "container_insights")["idle_monthly_usd"] > 0) is (insights in ("enabled", "enhanced"))
    assert strict["configuration"]["egress_mode"] == load(out / names.MAIN_TEMPLATE)["Parameters"]["EgressMode"]["Default"]
    # The strict profile costs more idle and per user-hour; the standard one keeps its bound.
    assert strict["idle_monthly_usd"] > standard["idle_monthly_usd"]
    assert strict["per_user_hour_usd"] > standard["per_user_hour_usd"]
    assert math_sum(strict) == pytest.approx(strict["idle_monthly_usd"], abs=0.01)


def math_sum(r: dict) -> float:
    return sum(c["idle_monthly_usd"] for c in r["components"].values())
