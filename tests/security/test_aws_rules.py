"""The AWS-behaviour rules (lakehub/checks/aws_rules.py): every generated template passes each one,
and each fails on a fixture written to break it (tests/security/fixtures/aws/bad_<rule>.yaml)."""

from __future__ import annotations

import pytest

from lakehub.checks import aws_rules
from lakehub.cfn.template import load

from .conftest import FIXTURES, assert_rule_meets_fixture

AWS_FIXTURES = FIXTURES / "aws"
RULE_NAMES = sorted(aws_rules.AWS_RULES)


def fixture_for(rule_name: str):
    return AWS_FIXTURES / f"bad_{rule_name.replace('-', '_')}.yaml"


def test_the_rule_set_covers_each_aws_fact():
    assert set(RULE_NAMES) == {
        "ecs-secrets-by-arn",
        "no-reserved-concurrency",
        "ecs-list-tasks-on-any-resource",
        "ecs-task-access-by-tier-tag",
        "listener-priorities-by-construction",
        "cognito-logout-urls-registered",
        "containers-work-where-their-user-can-enter",
        "buildspec-variables-exist-for-source",
        "scheduled-egress-follows-on-demand-instances",
        "efs-volumes-over-tls-with-iam",
        "alarm-topic-not-aws-managed-key",
    }


@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_generated_templates_pass_aws_rule(rule_name, generated_templates):
    found = [f"{name}: {v}" for name, t in generated_templates.items() for v in aws_rules.AWS_RULES[rule_name](t)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_aws_rule_fails_on_its_bad_fixture(rule_name):
    path = fixture_for(rule_name)
    assert path.exists(), f"rule {rule_name} has no failing fixture {path.name}"
    assert_rule_meets_fixture(rule_name, aws_rules.AWS_RULES[rule_name], load(path))


def test_every_aws_fixture_belongs_to_a_rule():
    assert {p.name for p in AWS_FIXTURES.glob("bad_*.yaml")} == {fixture_for(r).name for r in RULE_NAMES}


def test_the_templates_hold_what_the_aws_rules_check(generated_templates):
    """Guard against rules passing because there is nothing to check."""
    types = [r["Type"] for t in generated_templates.values() for r in t.get("Resources", {}).values()]
    for rtype in (
        "AWS::ECS::TaskDefinition",
        "AWS::Lambda::Function",
        "AWS::Cognito::UserPoolClient",
        "AWS::CodeBuild::Project",
        "Custom::ListenerPriority",
        "AWS::CloudFormation::Stack",
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Alarm",
    ):
        assert rtype in types, rtype
    tier = generated_templates["tier.template.yaml"]["Resources"]
    secrets = [s for c in tier["HubTaskDefinition"]["Properties"]["ContainerDefinitions"] for s in c["Secrets"]]
    assert len(secrets) >= 3


def test_command_line_reports_violations_and_exit_status(capsys):
    assert aws_rules.main([]) == 0
    assert aws_rules.main([str(fixture_for("no-reserved-concurrency"))]) == 1
    out = capsys.readouterr().out
    assert "BadReservedFunction" in out and "GoodFunction" not in out


def test_build_lint_runs_the_aws_rules_and_fails_on_a_violation(tmp_path):
    from lakehub.release.build import aws_findings

    assert aws_findings(sorted((FIXTURES.parent.parent.parent / "templates").glob("*.template.yaml"))) == []
    bad = tmp_path / "bad.template.yaml"
    bad.write_text(fixture_for("ecs-secrets-by-arn").read_text())
    findings = aws_findings([bad])
    assert findings and all(f.startswith("bad.template.yaml: ecs-secrets-by-arn: ") for f in findings)


def test_strict_templates_pass_the_aws_rules(strict_template_paths):
    from lakehub.release.build import aws_findings

    assert len(strict_template_paths) >= 7
    assert aws_findings(strict_template_paths) == []
