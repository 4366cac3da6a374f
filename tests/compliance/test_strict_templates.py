"""What the strict compliance profile builds, beyond the Guard evaluation (issue 19): the values an
operator may choose stay within the controls, and what the controls need at run time is wired."""

from __future__ import annotations

import re
import sys

import pytest

from lakehub.stacks import names
from lakehub.release.build import render_all
from lakehub.cfn.template import loads
from lakehub.settings import SettingsError, parse_settings
from .guard import ROOT, RULES_DIR


def _load(text: str) -> dict:
    return loads(text)


@pytest.fixture(scope="module")
def strict():
    return {name: _load(text) for name, text in render_all(parse_settings({"compliance": "strict"})).items()}


@pytest.fixture(scope="module")
def standard():
    return {name: _load(text) for name, text in render_all(parse_settings({})).items()}


def _resources(templates, type_):
    return [(name, logical, r) for name, t in templates.items() for logical, r in t["Resources"].items() if r["Type"] == type_]


def test_standard_has_none_of_strict_paid_features(standard, strict):
    assert not _resources(standard, "AWS::KMS::Key")
    assert len(_resources(strict, "AWS::KMS::Key")) >= 5
    assert all("VpcConfig" not in r["Properties"] for _, _, r in _resources(standard, "AWS::Lambda::Function"))


def test_every_strict_log_group_is_encrypted_with_its_stacks_key_and_kept_a_year(strict):
    groups = _resources(strict, "AWS::Logs::LogGroup")
    assert len(groups) >= 8
    for name, logical, group in groups:
        props = group["Properties"]
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["LogsKey", "Arn"]}, (name, logical)
        retention = strict[name]["Parameters"][props["RetentionInDays"]["Ref"]]
        assert min(int(v) for v in retention["AllowedValues"]) >= 365 and int(retention["Default"]) >= 365, name


def test_strict_keys_rotate_and_are_kept(strict):
    for name, logical, key in _resources(strict, "AWS::KMS::Key"):
        assert key["Properties"]["EnableKeyRotation"] is True, (name, logical)
        assert key["DeletionPolicy"] == "Retain", (name, logical)


def test_strict_refuses_a_retention_under_a_year_in_one_line():
    with pytest.raises(SettingsError) as err:
        parse_settings({"compliance": "strict", "log_retention_days": 30})
    assert "\n" not in str(err.value) and str(err.value).startswith("settings: log_retention_days:") and "365" in str(err.value)
    assert parse_settings({"compliance": "strict", "log_retention_days": 731}).log_retention_days == 731
    assert parse_settings({"log_retention_days": 30}).log_retention_days == 30  # standard: as before


def test_every_strict_function_runs_in_the_vpc_and_main_passes_the_subnets(strict):
    functions = _resources(strict, "AWS::Lambda::Function")
    assert len(functions) >= 6
    for name, logical, fn in functions:
        config = fn["Properties"]["VpcConfig"]
        assert len(config["SubnetIds"]) == 2 and config["SecurityGroupIds"] == [{"Ref": "FunctionsSecurityGroup"}], (
            name,
            logical,
        )
    for main in (names.MAIN_TEMPLATE, names.MAIN_EXISTING_VPC_TEMPLATE):
        stacks = strict[main]["Resources"]
        for logical in ("StorageStack", "PipelineStack", "CatalogStack"):
            assert names.PRIVATE_SUBNET_1_ID in stacks[logical]["Properties"]["Parameters"], (main, logical)


def test_every_hub_instance_type_strict_allows_encrypts_in_transit(strict):
    """CT.EC2.PR.19 lists the Nitro families that encrypt traffic between instances: every value
    the strict InstanceType parameter allows is one of them, not only the default."""
    rule = (RULES_DIR / "ec2" / "ct-ec2-pr-19.guard").read_text()
    patterns = [re.compile(p) for p in re.findall(r"/(\^[^/]+\$)/", rule)]
    assert len(patterns) > 20
    allowed = strict[names.HUB_INSTANCE_TEMPLATE]["Parameters"]["InstanceType"]["AllowedValues"]
    assert allowed
    for instance_type in allowed:
        assert any(p.match(instance_type) for p in patterns), instance_type


def test_the_spawner_gives_the_container_the_tasks_memory():
    """CT.ECS.PR.7 puts a hard limit on the user server's container (the definition's 4 GB): the
    spawner overrides it with the size chosen, or a larger size would be capped at 4 GB."""
    if str(ROOT / "hub_images") not in sys.path:
        sys.path.insert(0, str(ROOT / "hub_images"))
    from jupyterhub.objects import Hub

    from lakehub_hub import fargate

    class User:
        name = escaped_name = "alice"
        url = "/user/alice/"

    spawner = fargate.FargateSpawner(
        user=User(),
        hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
        api_token="t",
        oauth_client_id="c",
        hub_connect_url="http://10.0.0.1:8081",
    )
    for profile in fargate.DEFAULT_PROFILES:
        overrides = spawner.run_task_request(profile, "FARGATE", {})["overrides"]
        (container,) = overrides["containerOverrides"]
        assert container["memory"] == int(overrides["memory"]) == int(profile["memory"])


def test_strict_user_server_definition_limits_the_container_to_the_task(strict):
    tier = strict[names.TIER_TEMPLATE]["Resources"]
    user = tier["UserServerTaskDefinition"]["Properties"]
    (container,) = user["ContainerDefinitions"]
    assert container["Memory"] == int(user["Memory"])
    (hub,) = tier["HubTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert hub["Memory"] == {"Ref": "TaskMemory"}
