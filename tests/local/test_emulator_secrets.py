"""AWS::SecretsManager::Secret in the local emulator (lakehub.local.emulator_server._secret_class):
moto's CloudFormation has no model for it, and the hub task definition's Secrets[].ValueFrom is
`!Ref CookieSecret`. CloudFormation's Ref of a secret is its full ARN, and ECS reads a bare name
as an SSM parameter (docs/AWS_NOTES.md), so a placeholder (its name, nothing behind it) gave the
hub's container a secret that could not be resolved."""

from __future__ import annotations

import json
import re
import time
import uuid

import boto3

TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Generated": {"Type": "AWS::SecretsManager::Secret",
                      "Properties": {"Name": "lakehub/test/cookie-secret", "Description": "generated",
                                     "GenerateSecretString": {"PasswordLength": 64, "ExcludePunctuation": True}}},
        "Given": {"Type": "AWS::SecretsManager::Secret",
                  "Properties": {"Name": "lakehub/test/given", "SecretString": "a value the template gives"}},
        "Json": {"Type": "AWS::SecretsManager::Secret",
                 "Properties": {"Name": "lakehub/test/json",
                                "GenerateSecretString": {"SecretStringTemplate": '{"username": "hub"}',
                                                         "GenerateStringKey": "password", "PasswordLength": 20}}},
    },
    "Outputs": {
        "GeneratedRef": {"Value": {"Ref": "Generated"}},
        "GeneratedId": {"Value": {"Fn::GetAtt": ["Generated", "Id"]}},
        "GivenRef": {"Value": {"Ref": "Given"}},
        "JsonRef": {"Value": {"Ref": "Json"}},
    },
}
FULL_ARN = r"arn:aws:secretsmanager:us-east-1:\d{12}:secret:%s-[A-Za-z0-9]{6}"


def _client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 - the emulator's


def test_a_template_secret_exists_and_its_ref_is_the_full_arn_ecs_needs(local_emulator):
    endpoint, stack_name = local_emulator, f"secrets-{uuid.uuid4().hex[:8]}"
    cfn, sm = _client("cloudformation", endpoint), _client("secretsmanager", endpoint)
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(TEMPLATE))
    deadline = time.monotonic() + 60
    while (stack := cfn.describe_stacks(StackName=stack_name)["Stacks"][0])["StackStatus"].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, stack
        time.sleep(0.5)
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

    cfn.delete_stack(StackName=stack_name)
    deadline = time.monotonic() + 60
    while any(s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE" for s in cfn.list_stacks()["StackSummaries"]):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    names = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    assert not names & {"lakehub/test/cookie-secret", "lakehub/test/given", "lakehub/test/json"}, names
