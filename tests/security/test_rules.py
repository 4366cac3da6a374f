"""lakehub's own rules (lakehub/checks/rules.py): the generated templates pass every one, and each
rule fails on a fixture written to break it, so none can silently stop working."""

from __future__ import annotations

import random
import string
from datetime import date

import pytest

from lakehub.checks import rules
from lakehub.cfn.template import load

from .conftest import FIXTURES, assert_rule_meets_fixture, template_paths

RULE_NAMES = sorted(rules.RULES)


def fixture_for(rule_name: str):
    return FIXTURES / f"bad_{rule_name.replace('-', '_')}.yaml"


def fake_keys() -> dict[str, str]:
    """Key-shaped strings made up at run time, so no file holds one."""
    rng = random.Random()
    key_id = "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "aB3" + "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(37))
    return {"@FAKE_ACCESS_KEY_ID@": key_id, "@FAKE_SECRET_KEY@": secret}


def load_fixture(path, tmp_path):
    text = path.read_text()
    for placeholder, value in fake_keys().items():
        text = text.replace(placeholder, value)
    copy = tmp_path / path.name
    copy.write_text(text)
    return load(copy)


@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_generated_templates_pass_rule(rule_name, generated_templates):
    found = [f"{name}: {v}" for name, t in generated_templates.items() for v in rules.RULES[rule_name](t)]
    assert not found, "\n".join(found)


def test_strict_templates_pass_every_rule(strict_templates):
    """The strict compliance profile (KMS keys and their policies, functions in the VPC, ...)."""
    found = [f"{name}: {v}" for name, t in strict_templates.items() for rule in RULE_NAMES for v in rules.RULES[rule](t)]
    assert not found, "\n".join(found)
    assert any(r["Type"] == "AWS::KMS::Key" for t in strict_templates.values() for r in t["Resources"].values())


@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_rule_fails_on_its_bad_fixture(rule_name, tmp_path):
    path = fixture_for(rule_name)
    assert path.exists(), f"rule {rule_name} has no failing fixture {path.name}"
    assert_rule_meets_fixture(rule_name, rules.RULES[rule_name], load_fixture(path, tmp_path))


def test_every_fixture_belongs_to_a_rule():
    known = {fixture_for(r).name for r in RULE_NAMES}
    assert {p.name for p in FIXTURES.glob("bad_*.yaml")} <= known


def test_templates_exist_and_hold_what_the_rules_check(generated_templates):
    """Guard against rules passing because there is nothing to check."""
    assert len(template_paths()) >= 7
    types = [r["Type"] for t in generated_templates.values() for r in t.get("Resources", {}).values()]
    for rtype, at_least in {
        "AWS::S3::Bucket": 3,
        "AWS::ECS::Service": 1,
        "AWS::ECS::TaskDefinition": 2,
        "AWS::ElasticLoadBalancingV2::Listener": 2,
        "AWS::ECR::Repository": 1,
        "AWS::Logs::LogGroup": 4,
        "AWS::Lambda::Function": 3,
        "AWS::EC2::LaunchTemplate": 1,
        "AWS::EC2::SecurityGroup": 4,
        "AWS::IAM::Role": 8,
    }.items():
        assert types.count(rtype) >= at_least, rtype


def test_a_runtime_fails_once_its_deprecation_date_has_passed():
    template = {"Resources": {"F": {"Type": "AWS::Lambda::Function", "Properties": {"Runtime": "python3.12"}}}}
    ends = rules.LAMBDA_RUNTIME_DEPRECATION["python3.12"]
    assert rules.lambda_runtimes_supported(template, today=date(ends.year - 1, 1, 1)) == []
    [v] = rules.lambda_runtimes_supported(template, today=ends)
    assert "deprecated" in v.message


def test_only_python_312_or_later_is_accepted():
    for runtime in rules.LAMBDA_RUNTIME_DEPRECATION:
        major, minor = runtime.removeprefix("python").split(".")
        assert (int(major), int(minor)) >= (3, 12), runtime


@pytest.mark.parametrize(
    "name, secret",
    [
        ("LAKEHUB_LDAP_BIND_PASSWORD", True),
        ("OAUTH_CLIENT_SECRET", True),
        ("JUPYTERHUB_API_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("STRIPE_APIKEY", True),
        ("DB_PWD", True),
        ("LAKEHUB_DATA_KMS_KEY_ARN", False),
        ("LAKEHUB_OAUTH_CLIENT_ID", False),
        ("LAKEHUB_NOTEBOOK_BUCKET", False),
        ("JUPYTERHUB_API_TOKEN_FILE", False),
    ],
)
def test_secret_names(name, secret):
    assert rules.secret_name(name) is secret


def test_sha1_hashes_are_not_mistaken_for_secret_keys():
    assert not rules.looks_like_aws_secret_key("0123456789abcdef0123456789abcdef01234567")
    keys = fake_keys()
    assert rules.looks_like_aws_secret_key(keys["@FAKE_SECRET_KEY@"])
    assert rules.AWS_ACCESS_KEY_ID.search(keys["@FAKE_ACCESS_KEY_ID@"])


def test_command_line_reports_violations_and_exit_status(capsys):
    assert rules.main([]) == 0
    assert rules.main([str(fixture_for("ecr-scans-on-push"))]) == 1
    out = capsys.readouterr().out
    assert "BadUnscannedRepository" in out and "GoodRepository" not in out
