"""Custom::SecretArn driven with CloudFormation events against the emulator (Secrets Manager):
the full ARN of a sign-in secret the platform team created by name, for ECS ValueFrom."""

from __future__ import annotations

import re

import pytest

FUNCTION = "lakehub-secret-arn"
TYPE = "Custom::SecretArn"
NAME = "lakehub/pii/oidc_client_secret"
FULL_ARN = re.compile(r"^arn:aws:secretsmanager:us-east-1:\d{12}:secret:lakehub/pii/oidc_client_secret-[A-Za-z0-9]{6}$")


@pytest.fixture
def look_up(load_handler, make_event, invoke, monkeypatch):
    monkeypatch.setenv("LAKEHUB_PLATFORM_NAME", "lakehub")
    module = load_handler("secret_arn")

    def run(request_type, name=NAME, **kwargs):
        event = make_event(
            request_type, TYPE, {"SecretName": name}, function=FUNCTION, logical_id="OidcClientSecretArn", **kwargs
        )
        return invoke(module, event, function=FUNCTION)

    return run


@pytest.fixture
def secrets(client):
    return client("secretsmanager")


def test_create_returns_the_full_arn_of_the_named_secret(look_up, secrets):
    arn = secrets.create_secret(Name=NAME, SecretString="client-secret-for-tests")["ARN"]
    answer = look_up("Create")
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["Arn"] == arn
    assert FULL_ARN.match(answer["Data"]["Arn"]), answer["Data"]["Arn"]
    assert answer["PhysicalResourceId"] == arn


def test_a_missing_secret_fails_with_the_command_that_creates_it(look_up, failed):
    answer = look_up("Create")
    failed(answer, f"No secret {NAME}", f"aws secretsmanager create-secret --region us-east-1 --name {NAME} --secret-string")
    assert "\n" not in answer["Reason"] and "Traceback" not in answer["Reason"]


def test_the_longest_names_keep_the_whole_command_in_the_reason(look_up, monkeypatch, failed):
    platform, tier = "p" + "x" * 19, "t" + "y" * 15  # the templates' longest platform and tier names
    monkeypatch.setenv("LAKEHUB_PLATFORM_NAME", platform)
    name = f"{platform}/{tier}/oidc_client_secret"
    answer = look_up("Create", name)
    failed(answer, f"--name {name} --secret-string file://value.txt`, then deploy again")


@pytest.mark.parametrize(
    "name",
    [
        "other/pii/oidc_client_secret",  # another platform's namespace
        "lakehub-dev/pii/oidc_client_secret",  # a platform whose name only starts like this one
        "prod/db-password",
        "lakehub/",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:other/pii/oidc_client_secret-AbCdEf",
    ],
)
def test_a_name_outside_the_platforms_namespace_is_refused_without_looking(look_up, secrets, failed, name):
    plain = name if not name.startswith("arn:") else "other/pii/oidc_client_secret"
    if plain != "lakehub/":
        secrets.create_secret(Name=plain, SecretString="someone-elses")
    answer = look_up("Create", name)
    assert answer["Status"] == "FAILED", answer
    assert "Arn" not in (answer.get("Data") or {})
    failed(answer, "Refused SecretName", "reads only secrets named lakehub/...")


def test_the_platform_comes_from_the_environment_not_from_a_property(look_up, secrets, monkeypatch, failed):
    secrets.create_secret(Name="other/pii/oidc_client_secret", SecretString="someone-elses")
    monkeypatch.setenv("LAKEHUB_PLATFORM_NAME", "other")
    # The module reads the platform at each request: the same function deployed for "other".
    assert look_up("Create", "other/pii/oidc_client_secret")["Status"] == "SUCCESS"
    monkeypatch.delenv("LAKEHUB_PLATFORM_NAME")
    failed(look_up("Create", "other/pii/oidc_client_secret"), "LAKEHUB_PLATFORM_NAME")


def test_a_secret_scheduled_for_deletion_fails_with_the_restore_command(look_up, secrets, failed):
    secrets.create_secret(Name=NAME, SecretString="client-secret-for-tests")
    secrets.delete_secret(SecretId=NAME, RecoveryWindowInDays=7)
    failed(look_up("Create"), f"Secret {NAME} is scheduled for deletion", f"restore-secret --region us-east-1 --secret-id {NAME}")


def test_update_after_the_secret_was_created_again_returns_its_new_arn(look_up, secrets):
    first = secrets.create_secret(Name=NAME, SecretString="v1")["ARN"]
    assert look_up("Create")["Data"]["Arn"] == first
    secrets.delete_secret(SecretId=NAME, ForceDeleteWithoutRecovery=True)
    second = secrets.create_secret(Name=NAME, SecretString="v2")["ARN"]
    assert second != first
    answer = look_up("Update", old_properties={"SecretName": NAME}, physical_id=first)
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["Arn"] == second and answer["PhysicalResourceId"] == second


def test_delete_does_nothing_and_succeeds_even_when_the_secret_is_gone(look_up, secrets):
    arn = secrets.create_secret(Name=NAME, SecretString="v1")["ARN"]
    answer = look_up("Delete", physical_id=arn)
    assert answer["Status"] == "SUCCESS", answer
    assert secrets.describe_secret(SecretId=NAME)["ARN"] == arn  # the platform team's secret stays
    secrets.delete_secret(SecretId=NAME, ForceDeleteWithoutRecovery=True)
    assert look_up("Delete", physical_id=arn)["Status"] == "SUCCESS"
    # A failed Create's Delete (CloudFormation's generated physical id) succeeds too.
    assert look_up("Delete", name="other/x", physical_id="OidcClientSecretArn-ABC123")["Status"] == "SUCCESS"
