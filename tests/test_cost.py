"""`lakehub cost`: the estimate read from the generated templates.

Expected figures are computed here by hand from the price file's numbers (explicit arithmetic,
not the estimate's code); schedules are counted from the default business hours:
hubs 07:05-19:00 and the NAT instance 07:00-19:15, Monday to Friday (lakehub.stacks.network).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR
from lakehub.cli import main as cli_main
from lakehub.cost import PRICES_FILE, Profile, estimate, parse_cron, weekly_hours

RAW = yaml.safe_load(PRICES_FILE.read_text())
P = {k: v.get("usd", v.get("fraction")) for k, v in RAW["regions"]["us-east-1"].items()}
A = {k: v["value"] for k, v in RAW["assumptions"].items()}
HOURS = 730
WEEKS = 730 / 168
SPOT = 1 - P["fargate_spot_discount"]
NANO = RAW["regions"]["us-east-1"]["ec2_instance_hour"]["usd_by_type"]["t4g.nano"]

# Default schedule, by hand: hubs 11 h 55 min a day, the NAT 12 h 15 min, five days a week.
HUB_HOURS = (11 + 55 / 60) * 5 * WEEKS
NAT_HOURS = (12 + 15 / 60) * 5 * WEEKS
NONCURRENT_DAYS = 90  # storage template default (NoncurrentVersionDays)
ECR_KEEP = 20  # pipeline lifecycle: imageCountMoreThan 20
LOG_STORE = 1.0  # 30-day retention: a month of logs stored


def arm(vcpu, gb):
    return vcpu * P["fargate_arm_vcpu_hour"] + gb * P["fargate_arm_gb_hour"]


ACCESS_LOG_DAYS = 365  # the ALB's log bucket and the storage stack's access-log bucket: ExpireAccessLogs


def access_logs_per_hour():
    """Access logs the standard templates already turn on, stored a year at the S3 price: the
    ALB's request log lines and the S3 server access log records of the notebook bucket (saves,
    opens) and the demo lake (reads)."""
    alb_gb = A["alb_log_bytes_per_user_hour"] / 1e9
    s3_gb = (
        (A["notebook_puts_per_user_hour"] + A["notebook_gets_per_user_hour"] + A["data_reads_per_user_hour"])
        * A["s3_access_log_bytes_per_request"]
        / 1e9
    )
    return (alb_gb + s3_gb) * ACCESS_LOG_DAYS / 30 * P["s3_standard_gb_month"]


def common_per_hour():
    """Per user-hour beside the server itself: ALB LCUs, user logs, notebook requests, access logs."""
    return (
        access_logs_per_hour()
        + A["alb_lcu_per_active_user"] * P["alb_lcu_hour"]
        + A["user_log_gb_per_user_hour"] * (P["logs_ingest_gb"] + LOG_STORE * P["logs_store_gb_month"])
        + A["notebook_puts_per_user_hour"] / 1000 * P["s3_put_per_1000"]
        + A["notebook_gets_per_user_hour"] / 1000 * P["s3_get_per_1000"]
    )


def homes(users, gb=None):
    """Users' EFS homes: half in Infrequent Access (the lifecycle's 30 days), AWS Backup's
    recovery points on top (backup policy ENABLED)."""
    gb = A["home_gb_per_user"] if gb is None else gb
    ia = A["home_ia_share"]
    per_gb = (
        (1 - ia) * P["efs_standard_gb_month"]
        + ia * P["efs_ia_gb_month"]
        + A["home_backup_gb_per_home_gb"] * P["efs_backup_warm_gb_month"]
    )
    return users * gb * per_gb


def monitoring(hub_task_hours_total, alarms=12):
    """Issue 18: the alarms (4 per tier, 3 custom-resource functions, the NAT instance's), the
    dashboard (within the 3 free), 3 always-sent metrics per hub while it runs, a PutMetricData a minute."""
    return (
        alarms * P["cloudwatch_alarm_month"]
        + 3 * hub_task_hours_total / HOURS * P["cloudwatch_custom_metric_month"]
        + 60 * hub_task_hours_total / 1000 * P["cloudwatch_put_metric_data_1k"]
    )


def fixed(users, hub_task_hours_total, hub_zones=2, alarms=12):
    """Components every configuration here shares: ALB, ALB IPv4, zone, secrets, logs, storage, homes, ECR, CodeBuild,
    monitoring; and each per-user tier's private zone of its hub's name (Cloud Map namespace: 2 per-user tiers by default)."""
    return (
        homes(users)
        + monitoring(hub_task_hours_total, alarms)
        + hub_zones * P["route53_hosted_zone_month"]
        + P["alb_hour"] * HOURS
        + 2 * P["public_ipv4_hour"] * HOURS
        + P["route53_hosted_zone_month"]
        + 2 * P["secrets_manager_secret_month"]  # one secret per tier (cookie + Cognito client secret), two tiers
        + hub_task_hours_total
        / HOURS
        * A["hub_log_gb_per_task_month"]
        * (P["logs_ingest_gb"] + LOG_STORE * P["logs_store_gb_month"])
        + users * (A["notebook_gb_per_user"] + A["noncurrent_gb_per_user_per_day"] * NONCURRENT_DAYS) * P["s3_standard_gb_month"]
        + (A["image_gb"] + A["image_delta_gb_per_build"] * (ECR_KEEP - 1)) * P["ecr_gb_month"]
        + A["builds_per_month"] * A["build_minutes"] * 0.005
    )


def nat_instance_scheduled():
    return NAT_HOURS * (NANO + P["public_ipv4_hour"]) + 8 * P["ebs_gp3_gb_month"] * NAT_HOURS / HOURS


# --------------------------------------------------------------------------------------------
# three configurations, by hand
# --------------------------------------------------------------------------------------------
def test_default_configuration_matches_hand_computed_figures():
    r = estimate(profile=Profile(users=20, hours_per_day=8, days_per_month=21, server_size="2048/8192"))
    hub = 2 * arm(0.25, 0.5) * SPOT * HUB_HOURS
    idle = fixed(20, 2 * HUB_HOURS) + nat_instance_scheduled() + hub
    per_hour = arm(2, 8) * SPOT + common_per_hour()
    assert r["components"]["hub_tasks"]["idle_monthly_usd"] == pytest.approx(hub, abs=1e-3)
    assert r["components"]["egress"]["idle_monthly_usd"] == pytest.approx(
        NAT_HOURS * NANO + 8 * 0.08 * NAT_HOURS / HOURS, abs=1e-3
    )
    assert r["idle_monthly_usd"] == pytest.approx(idle, abs=1e-3)
    assert r["per_user_hour_usd"] == pytest.approx(per_hour, abs=1e-5)
    # plus one idle-culler timeout (IdleTimeoutSeconds 3600) a user and working day
    tail = 20 * 21 * 1 * 1.0 * arm(2, 8) * SPOT
    assert r["profile_monthly_usd"] == pytest.approx(idle + 20 * 8 * 21 * per_hour + tail, abs=1e-2)


def test_nat_gateway_always_on_demand_matches_hand_computed_figures():
    params = {"EgressMode": "nat-gateway", "Schedule": "always", "UseSpot": "false", "UserServersOnSpot": "false"}
    r = estimate(parameters=params, profile=Profile(users=10, hours_per_day=6, days_per_month=20, server_size="small"))
    hub = 2 * arm(0.25, 0.5) * HOURS
    gateways = 2 * P["nat_gateway_hour"] * HOURS + 2 * P["public_ipv4_hour"] * HOURS  # two NAT gateways and their EIPs
    idle = fixed(10, 2 * HOURS, alarms=11) + gateways + hub  # no NAT instance: no NAT alarm
    per_hour = arm(1, 4) + common_per_hour() + A["nat_gb_per_user_hour"] * P["nat_gateway_gb"]
    assert r["idle_monthly_usd"] == pytest.approx(idle, abs=1e-3)
    assert r["per_user_hour_usd"] == pytest.approx(per_hour, abs=1e-5)
    tail = 10 * 20 * 1 * 1.0 * arm(1, 4)  # one culler timeout a user and day, on-demand
    assert r["profile_monthly_usd"] == pytest.approx(idle + 10 * 6 * 20 * per_hour + tail, abs=1e-2)


def test_shared_mode_matches_hand_computed_figures():
    params = {"ServerMode": "shared", "TaskCpu": "4096", "TaskMemory": "16384", "MaxTasks": "3", "UseSpot": "false"}
    r = estimate(parameters=params, profile=Profile(users=12, hours_per_day=8, days_per_month=20, server_size="1024/4096"))
    task = arm(4, 16)  # 0.18648 per hour, on-demand
    hub = 2 * task * HUB_HOURS  # MinTasks 1 per tier, on the schedule
    idle = fixed(12, 2 * HUB_HOURS, hub_zones=0) + nat_instance_scheduled() + hub
    # 6 users per tier, 4 servers of 1 vCPU / 4 GB per 4 vCPU / 16 GB task: 2 tasks, 1 beyond MinTasks.
    extra = 2 * 1 * task * 8 * 20
    per_hour_other = common_per_hour()
    assert r["configuration"]["tiers"][0]["server_mode"] == "shared"
    assert r["idle_monthly_usd"] == pytest.approx(idle, abs=1e-3)
    assert r["components"]["user_capacity"]["per_user_hour_usd"] == pytest.approx(task / 4, abs=1e-5)
    assert r["components"]["user_capacity"]["profile_monthly_usd"] == pytest.approx(extra, abs=1e-3)
    assert r["profile_monthly_usd"] == pytest.approx(idle + extra + 12 * 8 * 20 * per_hour_other, abs=1e-2)


def test_reference_design_and_sagemaker_come_from_the_same_prices():
    r = estimate()
    x86 = P["fargate_x86_vcpu_hour"] + 2 * P["fargate_x86_gb_hour"]
    ref = 2 * x86 * HOURS + P["alb_hour"] * HOURS + 2 * P["public_ipv4_hour"] * HOURS + P["route53_hosted_zone_month"]
    assert r["reference_idle_monthly_usd"] == pytest.approx(ref, abs=1e-3)  # about $96
    assert r["sagemaker"]["instance"] == "ml.m5.large"
    assert r["sagemaker"]["profile_monthly_usd"] == pytest.approx(3360 * 0.115, abs=1e-2)


# --------------------------------------------------------------------------------------------
# what the issue asks the defaults to reach
# --------------------------------------------------------------------------------------------
def test_default_idle_cost_is_at_most_a_third_of_the_reference_design():
    r = estimate()
    assert set(r) >= {"idle_monthly_usd", "per_user_hour_usd", "profile_monthly_usd", "reference_idle_monthly_usd", "components"}
    assert r["configuration"]["egress_mode"] == "nat-instance"  # tasks in private subnets
    # The platform's own idle cost. Users' persistent homes (issue 15: EFS, $0.455 per user-month
    # at 2 GB with backups) are what the reference design did not keep at all (its homes
    # vanished with the task): counted in the estimate, not held against this bound.
    # Issue 18's monitoring (alarms, dashboard, the hubs' metrics) is likewise what the reference
    # design had none of ("nothing tells them that a hub is unhealthy"): counted, bounded below.
    platform_idle = (
        r["idle_monthly_usd"] - r["components"]["homes"]["idle_monthly_usd"] - r["components"]["monitoring"]["idle_monthly_usd"]
    )
    # Issue 16 added each per-user tier's hub name (a Cloud Map private DNS namespace, a Route 53
    # private zone at $0.50 a month), without which users' servers lose a replaced hub: that put
    # the platform $0.52 over the third (33.9%). Issue 19 recovered it by a cost cut, not by
    # counting less: one Secrets Manager secret per tier instead of two ($0.80 a month).
    assert r["components"]["secrets"]["idle_monthly_usd"] == pytest.approx(2 * P["secrets_manager_secret_month"])
    assert platform_idle <= r["reference_idle_monthly_usd"] / 3


def test_monitoring_is_priced_and_stays_small():
    """Issue 18: 12 alarms at $0.10, the dashboard within the 3 free, each hub's three
    always-sent metrics at $0.30 a metric-month for the hours its task runs, one PutMetricData a
    minute at $0.01 per 1,000."""
    r = estimate()
    m = r["components"]["monitoring"]
    hub_hours = 2 * r["configuration"]["schedule"]["hub_hours_per_month"] if "schedule" in r["configuration"] else None
    assert "12 alarms" in m["detail"] and "0 beyond the 3 free" in m["detail"]
    if hub_hours:
        expected = 12 * 0.10 + 3 * hub_hours / HOURS * 0.30 + 60 * hub_hours / 1000 * 0.01
        assert m["idle_monthly_usd"] == pytest.approx(expected, abs=0.01)
    assert 1.2 < m["idle_monthly_usd"] <= 2.5
    always = estimate(parameters={"Schedule": "always"})["components"]["monitoring"]["idle_monthly_usd"]
    assert always > m["idle_monthly_usd"]  # metrics are paid for the hours the hubs run


def test_a_2_vcpu_8_gb_user_hour_costs_at_most_35_cents_in_a_hundred():
    assert estimate(profile=Profile(server_size="2048/8192"))["per_user_hour_usd"] <= 0.035


def test_nat_instance_is_cheaper_than_nat_gateways():
    inst = estimate(parameters={"EgressMode": "nat-instance"})
    gw = estimate(parameters={"EgressMode": "nat-gateway"})
    assert inst["idle_monthly_usd"] < gw["idle_monthly_usd"]
    assert inst["components"]["egress"]["idle_monthly_usd"] < gw["components"]["egress"]["idle_monthly_usd"] / 10


def test_spot_and_schedule_each_lower_the_estimate():
    base = estimate()
    assert (
        estimate(parameters={"UseSpot": "false"})["components"]["hub_tasks"]["idle_monthly_usd"]
        > base["components"]["hub_tasks"]["idle_monthly_usd"]
    )
    assert estimate(parameters={"UserServersOnSpot": "false"})["per_user_hour_usd"] > base["per_user_hour_usd"]
    always = estimate(parameters={"Schedule": "always"})
    assert always["components"]["hub_tasks"]["idle_monthly_usd"] == pytest.approx(2 * arm(0.25, 0.5) * SPOT * HOURS, abs=1e-3)
    assert always["components"]["egress"]["idle_monthly_usd"] > base["components"]["egress"]["idle_monthly_usd"]


# --------------------------------------------------------------------------------------------
# the estimate follows the templates
# --------------------------------------------------------------------------------------------
def build_into(tmp_path: Path, settings) -> Path:
    """Generate the entry point and its children into tmp_path (no catalog: not needed here)."""
    from lakehub.release.build import _children, render, write_all
    from lakehub.stacks.main import build_main

    tmp_path.mkdir(parents=True, exist_ok=True)
    children = _children(settings)
    rendered = {name: render(t) for name, t in {names.MAIN_TEMPLATE: build_main(settings, children), **children}.items()}
    write_all(rendered, tmp_path)
    return tmp_path


def copy_templates(tmp_path: Path) -> Path:
    for p in TEMPLATES_DIR.glob("*.template.yaml"):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def set_default(path: Path, parameter: str, old: str, new: str) -> None:
    """Change a parameter's Default in a template file (the Parameters section)."""
    text = path.read_text()
    start = text.index(f"\n  {parameter}:\n", text.index("\nParameters:\n"))
    end = text.index("    Type:", start)
    block = text[start:end]
    assert f"Default: {old}" in block, block
    path.write_text(text[:start] + block.replace(f"Default: {old}", f"Default: {new}") + text[end:])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_a_bigger_hub_task_in_the_settings_raises_the_estimate(tmp_path):
    from lakehub.settings import default_settings

    s = default_settings()
    bigger = replace(s, tiers=tuple(replace(t, cpu=512, memory=1024) for t in s.tiers))
    small = estimate(templates_dir=build_into(tmp_path / "a", s))
    big = estimate(templates_dir=build_into(tmp_path / "b", bigger))
    ratio = arm(0.5, 1) / arm(0.25, 0.5)
    assert big["components"]["hub_tasks"]["idle_monthly_usd"] == pytest.approx(
        small["components"]["hub_tasks"]["idle_monthly_usd"] * ratio, rel=1e-4
    )


def test_shorter_business_hours_in_the_template_lower_the_estimate(tmp_path):
    d = copy_templates(tmp_path)
    base = estimate(templates_dir=d)
    # main passes its own schedule parameters to the network and tier stacks
    for name in (names.MAIN_TEMPLATE, names.TIER_TEMPLATE, names.NETWORK_TEMPLATE):
        set_default(d / name, "BusinessHoursEnd", "19", "17")
    shorter = estimate(templates_dir=d)
    two_hours = 2 * 5 * WEEKS
    assert shorter["configuration"]["tiers"][0]["hub_hours_per_month"] == pytest.approx(HUB_HOURS - two_hours, abs=0.01)
    assert shorter["components"]["hub_tasks"]["idle_monthly_usd"] == pytest.approx(
        2 * arm(0.25, 0.5) * SPOT * (HUB_HOURS - two_hours), abs=1e-3
    )
    assert shorter["idle_monthly_usd"] < base["idle_monthly_usd"]


def test_egress_mode_and_nat_instance_type_come_from_the_templates(tmp_path):
    d = copy_templates(tmp_path)
    base = estimate(templates_dir=d)
    edit(d / names.NETWORK_TEMPLATE, "InstanceType: t4g.nano", "InstanceType: t4g.medium")
    medium = estimate(templates_dir=d)
    t4g_medium = RAW["regions"]["us-east-1"]["ec2_instance_hour"]["usd_by_type"]["t4g.medium"]
    assert medium["idle_monthly_usd"] - base["idle_monthly_usd"] == pytest.approx((t4g_medium - NANO) * NAT_HOURS, abs=1e-3)
    set_default(d / names.MAIN_TEMPLATE, "EgressMode", "nat-instance", "nat-gateway")
    gateway = estimate(templates_dir=d)
    assert gateway["configuration"]["egress_mode"] == "nat-gateway"
    assert gateway["components"]["egress"]["idle_monthly_usd"] == pytest.approx(2 * P["nat_gateway_hour"] * HOURS, abs=1e-3)


def test_removing_the_scheduled_actions_makes_the_hub_run_all_month(tmp_path):
    d = copy_templates(tmp_path)
    edit(d / names.TIER_TEMPLATE, "ScheduledActions: !If", "ScheduledActionsRemoved: !If")
    r = estimate(templates_dir=d)
    assert r["configuration"]["tiers"][0]["hub_hours_per_month"] == pytest.approx(HOURS)


# --------------------------------------------------------------------------------------------
# schedules and input errors
# --------------------------------------------------------------------------------------------
def test_cron_forms_of_both_scaling_services():
    assert parse_cron("cron(5 7 ? * MON-FRI *)") == ({5}, {7}, {1, 2, 3, 4, 5})
    assert parse_cron("15 19 * * 1-5") == ({15}, {19}, {1, 2, 3, 4, 5})
    assert parse_cron("cron(0 8 ? * 1,7 *)")[2] == {0, 6}  # Application Auto Scaling: 1 = Sunday
    assert weekly_hours([("0 9 * * 0-6", 1), ("0 17 * * 0-6", 0)], 1) == pytest.approx(56)
    assert weekly_hours([], 2) == pytest.approx(2 * 168)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--parameter", "NoSuchThing=1"], "NoSuchThing"),
        (["--region", "eu-west-1"], "eu-west-1"),
        (["--users", "-2"], "--users"),
        (["--users", "many"], "--users"),
        (["--parameter", "EgressMode=nat-box"], "nat-instance, nat-gateway"),
        (["--parameter", "TaskCpu=512"], "memory must be"),
        (["--server-size", "huge"], "--server-size"),
        (["--parameter", "Schedule"], "Key=Value"),
        (["--off-hours-hub-hours", "-3"], "--off-hours-hub-hours"),
        (["--off-hours-hub-hours", "800"], "--off-hours-hub-hours"),
        (["--off-hours-hub-hours", "evenings"], "--off-hours-hub-hours"),
        (["--home-gb-per-user", "-1"], "--home-gb-per-user"),
        (["--home-gb-per-user", "lots"], "--home-gb-per-user"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(capsys, argv, says):
    code = cli_main(["cost", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and says in err[0]


@pytest.mark.parametrize(
    "size, says",
    [
        ("3000/7000", "3000 CPU units"),  # no such CPU size
        ("1024/30720", "2048-8192 MiB"),  # too much memory for 1 vCPU
        ("8192/18000", "in steps of 4096"),  # not on 8 vCPU's 4 GB steps
        ("256/4096", "512, 1024 or 2048 MiB"),  # 0.25 vCPU has three sizes only
        ("0/0", "must be positive"),
    ],
)
def test_server_size_must_be_a_size_fargate_offers(capsys, size, says):
    code = cli_main(["cost", "--server-size", size])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and says in err[0], err


@pytest.mark.parametrize("size", ["256/512", "2048/16384", "8192/61440", "16384/32768", "16384/122880"])
def test_every_fargate_size_is_accepted(size):
    assert estimate(profile=Profile(server_size=size))["per_user_hour_usd"] > 0


def test_json_and_table_output(capsys):
    assert cli_main(["cost", "--format", "json", "--users", "20"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert math.isclose(data["idle_monthly_usd"], sum(c["idle_monthly_usd"] for c in data["components"].values()), abs_tol=1e-2)
    assert set(data["components"]) >= {
        "alb",
        "public_ipv4",
        "egress",
        "hub_tasks",
        "user_capacity",
        "route53",
        "logs",
        "notebook_storage",
        "ecr",
        "codebuild",
    }
    assert cli_main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "Reference design" in out and "SageMaker" in out and "Hub tasks" in out


def test_every_price_has_a_source_and_a_date():
    for region, items in RAW["regions"].items():
        for key, item in items.items():
            assert item.get("source") and item.get("recorded"), f"{region}.{key}"


def test_a_tier_left_out_at_launch_costs_nothing():
    both = estimate()
    one = estimate(parameters={"DeployNonpiiTier": "false"})
    assert [t["name"] for t in one["configuration"]["tiers"]] == ["pii"]
    assert one["components"]["hub_tasks"]["idle_monthly_usd"] == pytest.approx(
        both["components"]["hub_tasks"]["idle_monthly_usd"] / 2, abs=1e-3
    )
    assert one["idle_monthly_usd"] < both["idle_monthly_usd"]


# --------------------------------------------------------------------------------------------
# on-demand hubs outside business hours keep the NAT instance running (defect 11)
# --------------------------------------------------------------------------------------------
NAT_HOUR_BY_HAND = NANO + 8 * P["ebs_gp3_gb_month"] / HOURS + P["public_ipv4_hour"]  # instance, its 8 GB, its IPv4


def test_off_hours_hub_hours_add_the_nat_instance_hours_to_the_profile():
    base = estimate()
    late = estimate(profile=Profile(off_hours_hub_hours=40))
    assert late["idle_monthly_usd"] == base["idle_monthly_usd"], "an idle platform runs no hub"
    assert late["profile_monthly_usd"] - base["profile_monthly_usd"] == pytest.approx(40 * NAT_HOUR_BY_HAND, abs=1e-3)
    egress = late["components"]["egress"]["profile_monthly_usd"] - base["components"]["egress"]["profile_monthly_usd"]
    assert egress == pytest.approx(40 * (NANO + 8 * P["ebs_gp3_gb_month"] / HOURS), abs=1e-4)
    assert late["configuration"]["schedule"]["nat_instance_hours_for_hubs_per_month"] == 40
    assert "outside business hours" in late["components"]["egress"]["detail"]


def test_off_hours_beyond_the_schedules_gap_are_capped_and_said():
    r = estimate(profile=Profile(off_hours_hub_hours=700))
    gap = HOURS - NAT_HOURS
    assert r["configuration"]["schedule"]["nat_instance_hours_for_hubs_per_month"] == pytest.approx(gap, abs=0.01)
    assert r["profile_monthly_usd"] - estimate()["profile_monthly_usd"] == pytest.approx(gap * NAT_HOUR_BY_HAND, abs=1e-3)
    assert any("--off-hours-hub-hours 700" in n for n in r["notes"])


@pytest.mark.parametrize("params", [{"Schedule": "always"}, {"EgressMode": "nat-gateway"}])
def test_off_hours_hubs_add_nothing_where_egress_runs_all_month(params):
    base = estimate(parameters=params)
    late = estimate(parameters=params, profile=Profile(off_hours_hub_hours=40))
    assert late["profile_monthly_usd"] == base["profile_monthly_usd"]
    assert any("add nothing" in n for n in late["notes"])


def test_off_hours_hub_hours_on_the_command_line(capsys):
    assert cli_main(["cost", "--format", "json", "--off-hours-hub-hours", "40"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"]["off_hours_hub_hours_per_month"] == 40
    assert data["configuration"]["schedule"]["nat_instance_hours_for_hubs_per_month"] == 40


def test_homes_are_counted_per_user_with_infrequent_access_and_backups():
    r = estimate(profile=Profile(users=20))
    line = r["components"]["homes"]
    assert line["idle_monthly_usd"] == pytest.approx(homes(20), abs=1e-3)
    # 20 users x 2 GB x ($0.15 Standard half + $0.0125 IA half + 1.3 x $0.05 backups) = $9.10
    assert line["idle_monthly_usd"] == pytest.approx(9.10, abs=1e-2)
    bigger = estimate(profile=Profile(users=20, home_gb_per_user=10))
    assert bigger["components"]["homes"]["idle_monthly_usd"] == pytest.approx(homes(20, 10), abs=1e-3)
    assert bigger["idle_monthly_usd"] - r["idle_monthly_usd"] == pytest.approx(homes(20, 10) - homes(20), abs=1e-3)


def test_a_file_system_without_backups_or_lifecycle_costs_standard_storage_only(tmp_path):
    d = copy_templates(tmp_path)
    edit(
        d / names.CLUSTER_TEMPLATE,
        "      BackupPolicy:\n        Status: ENABLED",
        "      BackupPolicy:\n        Status: DISABLED",
    )
    edit(d / names.CLUSTER_TEMPLATE, "TransitionToIA: AFTER_30_DAYS", "TransitionToArchive: AFTER_90_DAYS")
    r = estimate(templates_dir=d, profile=Profile(users=20))
    assert r["components"]["homes"]["idle_monthly_usd"] == pytest.approx(
        20 * A["home_gb_per_user"] * P["efs_standard_gb_month"], abs=1e-3
    )


def test_recording_data_events_adds_their_price_per_user_hour_only():
    """RecordDataEvents=true: each object call of an active user (notebook saves and opens,
    data-lake reads) is a data event at $0.10 per 100,000; nothing when nobody works."""
    off = estimate()
    on = estimate(parameters={"RecordDataEvents": "true"})
    assert off["components"]["data_events"]["per_user_hour_usd"] == 0
    events = A["notebook_puts_per_user_hour"] + A["notebook_gets_per_user_hour"] + A["data_reads_per_user_hour"]
    price = RAW["regions"]["us-east-1"]["cloudtrail_data_events_per_100k"]["usd"]
    assert price == 0.10
    assert on["components"]["data_events"]["per_user_hour_usd"] == pytest.approx(events / 100_000 * price)
    assert on["components"]["data_events"]["idle_monthly_usd"] == 0
    assert on["per_user_hour_usd"] == pytest.approx(off["per_user_hour_usd"] + events / 100_000 * price)
