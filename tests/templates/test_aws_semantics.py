"""Defects only a real AWS account shows (issue 13), each pinned on the generated templates,
the hub configuration or the buildspec. The AWS facts behind them: docs/AWS_NOTES.md."""

from __future__ import annotations

import pytest


def hub_secrets(resolve_tier, **params) -> dict[str, str]:
    res = resolve_tier(**params).resources()
    [hub] = res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {s["Name"]: s["ValueFrom"] for s in hub["Secrets"]}


@pytest.mark.parametrize(
    "mode, param, variable",
    [("oidc", "OAuthClientSecretName", "LAKEHUB_OAUTH_CLIENT_SECRET"), ("ldap", "LdapBindPasswordSecretName", "LAKEHUB_LDAP_BIND_PASSWORD")],
)
def test_a_secret_given_by_name_reaches_ecs_as_its_arn(resolve_tier, mode, param, variable):
    # Defect 3: ECS reads a ValueFrom that is not an ARN as an SSM parameter name.
    by_name = hub_secrets(resolve_tier, AuthMode=mode, **{param: "lakehub/idp-secret"})
    assert by_name[variable] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:lakehub/idp-secret"
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lakehub/idp-secret-AbCdEf"
    assert hub_secrets(resolve_tier, AuthMode=mode, **{param: arn})[variable] == arn


def test_the_execution_role_may_read_a_secret_given_by_arn(resolve_tier):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lakehub/ldap-AbCdEf"
    res = resolve_tier(AuthMode="ldap", LdapBindPasswordSecretName=arn).resources()
    docs = [p["PolicyDocument"] for p in res["ExecutionRole"]["Properties"]["Policies"]]
    resources = [r for d in docs for s in d["Statement"] for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    assert arn in resources


def test_functions_reserve_no_concurrency(templates):
    # Defect 4: a reservation fails the stack where the account's quota is below 100 + it.
    functions = [r for t in templates.values() for r in t.get("Resources", {}).values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 3
    assert all("ReservedConcurrentExecutions" not in f["Properties"] for f in functions)
