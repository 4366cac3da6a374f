"""AWS::SecretsManager::Secret in the local emulator (lakehub.local.emulator_server._secret_class):
moto's CloudFormation has no model for it, and the hub task definition's Secrets[].ValueFrom is
`!Ref CookieSecret`. CloudFormation's Ref of a secret is its full ARN, and ECS reads a bare name
as an SSM parameter (docs/AWS_NOTES.md), so a placeholder (its name, nothing behind it) gave the
hub's container a secret that could not be resolved."""

from __future__ import annotations

import json
import re
import uuid

from lakehub.local.emulator import emulator_client

from .helpers import create_stack, delete_stack

TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Generated": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Name": "lakehub/test/cookie-secret",
                "Description": "generated",
                "GenerateSecretString": {"PasswordLength": 64, "ExcludePunctuation": True},
            },
        },
        "Given": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {"Name": "lakehub/test/given", "SecretString": "a value the template gives"},
        },
        "Json": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Name": "lakehub/test/json",
                "GenerateSecretString": {
                    "SecretStringTemplate": '{"username": "hub"}',
                    "GenerateStringKey": "password",
                    "PasswordLength": 20,
                },
            },
        },
    },
    "Outputs": {
        "GeneratedRef": {"Value": {"Ref": "Generated"}},
        "GeneratedId": {"Value": {"Fn::GetAtt": ["Generated", "Id"]}},
        "GivenRef": {"Value": {"Ref": "Given"}},
        "JsonRef": {"Value": {"Ref": "Json"}},
    },
}
FULL_ARN = r"arn:aws:secretsmanager:us-east-1:\d{12}:secret:%s-[A-Za-z0-9]{6}"


def test_a_template_secret_exists_and_its_ref_is_the_full_arn_ecs_needs(local_emulator):
    endpoint, stack_name = local_emulator, f"secrets-{uuid.uuid4().hex[:8]}"
    cfn, sm = emulator_client("cloudformation", endpoint), emulator_client("secretsmanager", endpoint)
    stack = create_stack(cfn, stack_name, TEMPLATE)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert re.fullmatch(FULL_ARN % "lakehub/test/cookie-secret", outputs["GeneratedRef"]), outputs
    assert outputs["GeneratedId"] == outputs["GeneratedRef"]
    assert re.fullmatch(FULL_ARN % "lakehub/test/given", outputs["GivenRef"]), outputs

    generated = sm.get_secret_value(SecretId=outputs["GeneratedRef"])["SecretString"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", generated), generated  # PasswordLength, ExcludePunctuation
    assert sm.get_secret_value(SecretId="lakehub/test/cookie-secret")["SecretString"] == generated
    assert sm.get_secret_value(SecretId=outputs["GivenRef"])["SecretString"] == "a value the template gives"
    shaped = json.loads(sm.get_secret_value(SecretId=outputs["JsonRef"])["SecretString"])
    assert shaped["username"] == "hub" and len(shaped["password"]) == 20
    assert sm.describe_secret(SecretId=outputs["GeneratedRef"])["Description"] == "generated"

    delete_stack(cfn, stack_name)
    names = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    assert not names & {"lakehub/test/cookie-secret", "lakehub/test/given", "lakehub/test/json"}, names


def test_the_tiers_json_secret_resolves_key_by_key_as_ecs_reads_it(local_emulator):
    """Issue 19: a tier keeps its cookie secret (and cognito's client secret) in one JSON secret,
    HubSecret, and its task definition names each by `ARN:json-key::`. The tier template's own
    HubSecret and hub container secrets, created in the emulator, resolve to the generated
    value through what local mode reads them with (lakehub.local.agent.read_secret: the agent
    for tasks, the platform for hubs it runs as processes); a key the secret lacks is one line."""
    import pytest

    from lakehub.assets import TEMPLATES_DIR
    from lakehub.cfn.template import load
    from lakehub.local.agent import SecretsError, read_secret

    tier = load(TEMPLATES_DIR / "tier.template.yaml")["Resources"]
    hub_secret = tier["HubSecret"]
    props = {k: v for k, v in hub_secret["Properties"].items() if k != "Tags"}  # tags name the tier's parameters
    props["Name"] = "lakehub/test/hub-secret"
    props["GenerateSecretString"] = dict(props["GenerateSecretString"], SecretStringTemplate="{}")  # oidc / ldap mode
    [container] = tier["HubTaskDefinition"]["Properties"]["ContainerDefinitions"]
    cookie_value_from = next(s for s in container["Secrets"] if isinstance(s, dict) and s.get("Name") == "LAKEHUB_COOKIE_SECRET")[
        "ValueFrom"
    ]
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"HubSecret": {"Type": "AWS::SecretsManager::Secret", "Properties": props}},
        "Outputs": {"Cookie": {"Value": cookie_value_from}},
    }
    endpoint, stack_name = local_emulator, f"hub-secret-{uuid.uuid4().hex[:8]}"
    cfn, sm = emulator_client("cloudformation", endpoint), emulator_client("secretsmanager", endpoint)
    stack = create_stack(cfn, stack_name, template)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    value_from = stack["Outputs"][0]["OutputValue"]
    assert re.fullmatch(FULL_ARN % "lakehub/test/hub-secret" + ":cookie_secret::", value_from), value_from
    document = json.loads(sm.get_secret_value(SecretId="lakehub/test/hub-secret")["SecretString"])
    assert re.fullmatch(r"[A-Za-z0-9]{64}", document["cookie_secret"])

    clients = {"asm": sm, "ssm": emulator_client("ssm", endpoint)}
    assert read_secret(clients.__getitem__, value_from) == document["cookie_secret"]
    assert read_secret(clients.__getitem__, value_from.split(":cookie_secret")[0]) == json.dumps(document)  # the whole secret
    with pytest.raises(SecretsError, match="has no JSON key 'oauth_client_secret'"):
        read_secret(clients.__getitem__, value_from.replace("cookie_secret", "oauth_client_secret"))
    cfn.delete_stack(StackName=stack_name)
