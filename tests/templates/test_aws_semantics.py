"""Defects only a real AWS account shows (issue 13), each pinned on the generated templates,
the hub configuration or the buildspec. The AWS facts behind them: docs/AWS_NOTES.md."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from lakehub.checks import aws_rules
from lakehub.stacks import names


def hub_secrets(resolve_tier, **params) -> dict[str, str]:
    res = resolve_tier(**params).resources()
    [hub] = res["HubTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {s["Name"]: s["ValueFrom"] for s in hub["Secrets"]}


# What a launcher tried to pass before issue 14: a secret of their choosing, which the hub would
# send to the token endpoint or LDAP server they also chose.
ATTACKER_SECRETS = {"OAuthClientSecretName": "lakehub/pii/cookie-secret", "LdapBindPasswordSecretName": "payroll/db-password"}


def given(templates, **params) -> dict:
    """Only the parameters the tier template still has (the secret names are gone)."""
    return {k: v for k, v in params.items() if k in templates["tier.template.yaml"]["Parameters"]}


SIGN_IN_SECRETS = [("oidc", "LAKEHUB_OAUTH_CLIENT_SECRET", "oidc_client_secret"), ("ldap", "LAKEHUB_LDAP_BIND_PASSWORD", "ldap_bind_password")]


@pytest.mark.parametrize("mode, variable, leaf", SIGN_IN_SECRETS)
def test_the_sign_in_secret_reaches_ecs_as_its_looked_up_full_arn_in_the_tiers_namespace(templates, resolve_tier, mode, variable, leaf):
    # Defect 3: ECS reads a ValueFrom that is not an ARN as an SSM parameter name. Issue 14: the
    # secret is the platform team's, at a fixed name under <platform>/<tier>/, whatever a launch
    # says; ECS asks for its *full* ARN (name + 6 random characters), which only a lookup knows.
    res = resolve_tier(AuthMode=mode, TierName="nonpii", **given(templates, **ATTACKER_SECRETS)).resources()
    secrets = hub_secrets(resolve_tier, AuthMode=mode, TierName="nonpii", **given(templates, **ATTACKER_SECRETS))
    value_from = secrets[variable]
    assert re.fullmatch(r"<\w+\.Arn>", value_from), f"{variable} takes {value_from}, not a looked-up ARN"
    lookup = value_from.strip("<>").split(".")[0]
    assert res[lookup]["Type"] == "Custom::SecretArn"
    assert res[lookup]["Properties"]["SecretName"] == f"lakehub/nonpii/{leaf}"
    assert res[lookup]["Properties"]["ServiceToken"] == "<ssm:" + names.SECRET_ARN_FUNCTION_ARN + ">"  # the platform value
    # The execution role reads exactly that ARN.
    readable = [r for p in res["ExecutionRole"]["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]
                if "secretsmanager:GetSecretValue" in st["Action"] for r in st["Resource"]]
    assert value_from in readable


@pytest.mark.parametrize("mode, variable, leaf", SIGN_IN_SECRETS)
def test_a_tier_looks_up_only_the_secret_of_its_mode(resolve_tier, mode, variable, leaf):
    raw = resolve_tier().template["Resources"]
    lookups = {n: r for n, r in raw.items() if r["Type"] == "Custom::SecretArn"}
    assert len(lookups) == 2
    [(name, lookup)] = [(n, r) for n, r in lookups.items() if r["Properties"]["SecretName"]["Fn::Sub"].endswith("/" + leaf)]
    assert lookup["Condition"] == {"oidc": "UseOidc", "ldap": "UseLdap"}[mode]
    # Only in its own mode: in cognito mode (no platform secret to find) and the other mode
    # no lookup exists, so none can fail the stack.
    other = {"oidc": "ldap", "ldap": "oidc"}[mode]
    assert name in resolve_tier(AuthMode=mode).resources()
    for absent in ("cognito", other):
        assert name not in resolve_tier(AuthMode=absent).resources()


def test_the_platform_publishes_the_lookup_function_that_reads_only_its_own_secrets(templates):
    cluster = templates["cluster.template.yaml"]["Resources"]
    fn = cluster["SecretArnFunction"]["Properties"]
    assert fn["Environment"]["Variables"]["LAKEHUB_PLATFORM_NAME"] == {"Ref": names.PLATFORM_NAME}
    [policy] = cluster["SecretArnFunctionRole"]["Properties"]["Policies"]
    grants = [st for st in policy["PolicyDocument"]["Statement"] if not any(a.startswith("logs:") for a in st["Action"])]
    assert grants == [{
        "Sid": "DescribePlatformSecrets", "Effect": "Allow", "Action": ["secretsmanager:DescribeSecret"],
        "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${PlatformName}/*"}],
    }]
    published = {r["Properties"]["Name"]["Fn::Sub"]: r["Properties"]["Value"] for r in cluster.values() if r["Type"] == "AWS::SSM::Parameter"}
    assert published[names.SSM_NAME_SUB + names.SECRET_ARN_FUNCTION_ARN] == {"Fn::GetAtt": ["SecretArnFunction", "Arn"]}
    tier = templates["tier.template.yaml"]["Parameters"][names.SECRET_ARN_FUNCTION_ARN]
    assert tier["Type"] == "AWS::SSM::Parameter::Value<String>" and tier["Default"].endswith("/" + names.SECRET_ARN_FUNCTION_ARN)


@pytest.mark.parametrize("mode", ["cognito", "oidc", "ldap"])
def test_the_execution_role_reads_secrets_of_its_tier_namespace_only(templates, resolve_tier, mode):
    """Issue 14 (high): the execution role read `secret:<any name a launcher gave>-??????`. It
    may read only secrets under <platform>/<tier>/."""
    res = resolve_tier(AuthMode=mode, TierName="nonpii", **given(templates, **ATTACKER_SECRETS)).resources()
    docs = [p["PolicyDocument"] for p in res["ExecutionRole"]["Properties"]["Policies"]]
    readable = [
        r for d in docs for s in d["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert readable
    prefix = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
    for r in readable:
        # A Ref to a secret the stack makes stands for its ARN (<CookieSecret>), the Arn of a
        # Custom::SecretArn for the full ARN it looked up (<OidcClientSecretArn.Arn>): named under the namespace.
        if r.startswith("<"):
            logical = r.strip("<>").removesuffix(".Arn")
            props = res[logical]["Properties"]
            name = props["SecretName"] if res[logical]["Type"] == "Custom::SecretArn" else props["Name"]
            assert name.startswith("lakehub/nonpii/"), name
            continue
        assert r.startswith(prefix + "lakehub/nonpii/"), r
    others = [prefix + n for n in ("lakehub/pii/cookie-secret-AbCdEf", "payroll/db-password-AbCdEf", "lakehub/nonpii-x/oidc_client_secret-AbCdEf")]
    assert not [o for o in others for r in readable if fnmatch.fnmatchcase(o, r)]


def test_functions_reserve_no_concurrency(templates):
    # Defect 4: a reservation fails the stack where the account's quota is below 100 + it.
    functions = [r for t in templates.values() for r in t.get("Resources", {}).values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 3
    assert all("ReservedConcurrentExecutions" not in f["Properties"] for f in functions)


# --- defect 8: Cognito sign-out ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def hub_logout_uri(tmp_path, public_url: str) -> str:
    """What the real hub configuration sends Cognito's /logout as logout_uri."""
    env = {
        "PATH": os.environ["PATH"],
        "LAKEHUB_TIER": "pii",
        "LAKEHUB_SERVER_MODE": "shared",
        "LAKEHUB_ALLOWED_GROUPS": "pii-users",
        "LAKEHUB_NOTEBOOK_BUCKET": "example-notebooks",
        "LAKEHUB_NOTEBOOK_PREFIX": "tiers/pii/",
        "LAKEHUB_PUBLIC_URL": public_url,
        "LAKEHUB_STATE_DIR": str(tmp_path / "state"),
        "LAKEHUB_CONFIG_D": str(tmp_path / "no-hooks"),
        "AWS_REGION": "us-east-1",
        "LAKEHUB_AUTH_MODE": "cognito",
        "LAKEHUB_COGNITO_DOMAIN": "https://lakehub-123456789012.auth.us-east-1.amazoncognito.com",
        "LAKEHUB_OAUTH_CLIENT_ID": "client-id",
        "LAKEHUB_OAUTH_CLIENT_SECRET": "sample-not-a-secret",
        "SAMPLE_AUTH_STATE": "{}",
    }
    loader, config = ROOT / "tests" / "hub" / "load_hub_config.py", ROOT / "hub_images" / "jupyterhub_config.py"
    result = subprocess.run([sys.executable, str(loader), str(config)], env=env, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("LAKEHUB-CONFIG ")][-1]
    redirect = json.loads(line.split(" ", 1)[1])["logout_redirect_url"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)
    assert query["client_id"] == ["client-id"]
    return query["logout_uri"][0]


def test_the_sign_out_url_the_hub_sends_is_registered_on_the_tier_client(resolve_tier, tmp_path):
    res = resolve_tier(HostName="pii", DomainName="lakehub.example.com").resources()
    props = res["UserPoolClient"]["Properties"]
    public_url = "https://pii.lakehub.example.com"
    assert props["CallbackURLs"] == [public_url + "/hub/oauth_callback"]
    sent = hub_logout_uri(tmp_path, public_url)
    assert sent in props["LogoutURLs"], f"the hub signs out to {sent}; Cognito refuses unregistered {props['LogoutURLs']}"
    assert urllib.parse.urlsplit(sent).path == names.HUB_LOGOUT_RETURN_PATH


def test_the_sign_out_url_is_not_the_hub_logout_page(resolve_tier):
    # /hub/logout would send the user straight back to Cognito's /logout: a redirect loop.
    res = resolve_tier().resources()
    assert all(not u.endswith("/hub/logout") for u in res["UserPoolClient"]["Properties"]["LogoutURLs"])


# --- defect 5: per-user containers' working directory ---------------------------------------


def dockerfile() -> str:
    return (ROOT / "hub_images" / "Dockerfile").read_text()


def test_the_user_server_runs_in_the_home_of_its_user(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    [notebook] = res["UserServerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert notebook["User"] == "1000"
    assert notebook["WorkingDirectory"] == "/home/lakehub"


def test_the_image_gives_uid_1000_that_home_and_keeps_its_workdir_closed():
    text = dockerfile()
    useradd = re.search(r"useradd --uid (\d+) .*?--home-dir (\S+)", text, re.S)
    assert useradd and useradd.groups() == ("1000", names.IMAGE_USER_HOMES["1000"]) and "--create-home" in text
    # Why the task definition must say so: the image's WORKDIR is root's and closed to others.
    assert re.findall(r"^WORKDIR (\S+)", text, re.M)[-1] == "/srv/jupyterhub"
    assert "chmod 0700 /srv/jupyterhub" in text


# --- defect 9: ecs:ListTasks authorization ----------------------------------------------------


def test_the_hub_may_list_tasks_on_any_resource_in_its_cluster_only(resolve_tier):
    res = resolve_tier(ServerMode="per-user").resources()
    [policy] = [p for p in res["HubRole"]["Properties"]["Policies"] if p["PolicyName"] == "spawn-user-servers"]
    [listing] = [s for s in policy["PolicyDocument"]["Statement"] if "ecs:ListTasks" in s["Action"]]
    assert listing["Resource"] == ["*"]
    assert listing["Condition"] == {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/lakehub"}}


# --- defect 6: certificate ----------------------------------------------------------------------


def test_the_certificate_is_the_wildcard_only_and_nothing_uses_the_apex(templates):
    cert = templates["cluster.template.yaml"]["Resources"]["Certificate"]["Properties"]
    assert cert["DomainName"] == {"Fn::Sub": "*.${DomainName}"}
    assert "SubjectAlternativeNames" not in cert
    assert [o["DomainName"] for o in cert["DomainValidationOptions"]] == [{"Fn::Sub": "*.${DomainName}"}]
    # every name the platform serves is one label under the domain
    served = [r["Properties"]["Name"] for t in templates.values() for r in t.get("Resources", {}).values() if r["Type"] == "AWS::Route53::RecordSet"]
    assert served and all(isinstance(n, dict) and n["Fn::Sub"].endswith(".${DomainName}") and n["Fn::Sub"].count(".") == 1 for n in served), served


# --- minor items ----------------------------------------------------------------------------------


def test_the_ldap_url_must_be_ldaps_on_the_port_the_security_groups_open(templates):
    pattern = templates["tier.template.yaml"]["Parameters"]["LdapUrl"]["AllowedPattern"]
    for ok in ("", "ldaps://ldap.example.com", "ldaps://ldap.example.com:636"):
        assert re.fullmatch(pattern, ok), ok
    for refused in ("ldap://ldap.example.com", "ldap://ldap.example.com:389", "ldaps://ldap.example.com:389"):
        assert not re.fullmatch(pattern, refused), refused
    egress = templates["cluster.template.yaml"]["Resources"]["TaskSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert {r["FromPort"] for r in egress if r["CidrIp"] == "0.0.0.0/0"} == {443, 636}


def test_codecommit_is_offered_with_its_closure_said(templates):
    spec = templates["pipeline.template.yaml"]["Parameters"]["SourceType"]
    assert "codecommit" in spec["AllowedValues"] and "closed to new customers" in spec["Description"]


def test_the_readme_says_precisely_what_survives_a_restart():
    # Defect 12: per-user servers start in a new task; shared homes were lost every night.
    # Issue 15 puts homes on EFS in every mode (tests/templates/test_homes.py,
    # tests/spawner/test_homes.py): the README says so, and no more than that.
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "these survive a server restart" not in text
    assert "do **not** survive in per-user mode" not in text
    assert "it survives server stops, task replacement and the nightly stop" in text
    assert "Notebooks also live in S3" in text


def test_every_aws_rule_is_in_the_notes():
    notes = (ROOT / "docs" / "AWS_NOTES.md").read_text()
    for name in aws_rules.AWS_RULES:
        assert f"`{name}`" in notes, name


# --- issue 14: membership re-checks refresh Cognito tokens ----------------------------------

UNIT_SECONDS = {"minutes": 60, "hours": 3600, "days": 86400}


@pytest.mark.parametrize("template", ["tier.template.yaml", "hub-instance.template.yaml"])
def test_the_cognito_client_gives_the_hub_refresh_tokens_that_outlive_a_membership_check(templates, template):
    """The hub re-checks each user's groups by refreshing their Cognito tokens (the new ID token
    carries cognito:groups). Only the authorization-code grant returns a refresh token, and one
    that lapses before the next check ends a member's access like a removal (docs/AWS_NOTES.md)."""
    [client] = [r["Properties"] for r in templates[template]["Resources"].values() if r["Type"] == "AWS::Cognito::UserPoolClient"]
    assert client["AllowedOAuthFlows"] == ["code"]
    assert "ALLOW_REFRESH_TOKEN_AUTH" in client.get("ExplicitAuthFlows", ["ALLOW_REFRESH_TOKEN_AUTH"])
    unit = (client.get("TokenValidityUnits") or {}).get("RefreshToken", "days")
    lifetime = client.get("RefreshTokenValidity", 30) * UNIT_SECONDS[unit]
    assert lifetime >= 3600, "refresh tokens must outlive the longest check interval (LAKEHUB_MEMBERSHIP_CHECK_SECONDS <= 3600)"
