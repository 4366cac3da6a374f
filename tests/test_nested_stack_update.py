"""A stack update in the local emulator updates its nested stacks in place, as CloudFormation
does: each nested stack keeps its id and name, goes UPDATE_IN_PROGRESS -> UPDATE_COMPLETE and
its own resources are updated; the parent's resource keeps its physical id. moto instead
deletes the nested stack and creates a new one under a new name (seen on the upgrade
rehearsal: new child stack names in CREATE_IN_PROGRESS). A value that changes only through
another resource (a nested stack parameter fed by a sibling's output) is updated too, since
CloudFormation compares resolved values, not template text.

Deployed with `lakehub.deploy.deploy()` and a template file, as `lakehub deploy
--template-file` does, into the local emulator server (tests/conftest.py: local_emulator).
"""

from __future__ import annotations

import boto3
import pytest

from lakehub.deploy import deploy
from lakehub.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY

BUCKET = "lakehub-nested-update"

CHILD = """
Parameters:
  Value:
    Type: String
  Name:
    Type: String
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Ref Name
      Type: String
      Value: !Ref Value
Outputs:
  Value:
    Value: !Ref Value
"""

PARENT = """
Parameters:
  Tag:
    Type: String
    Default: one
Resources:
  Child:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: https://lakehub-nested-update.s3.amazonaws.com/child.yaml
      Parameters:
        Value: !Ref Tag
        Name: /nested-update/child
  Reader:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: https://lakehub-nested-update.s3.amazonaws.com/child.yaml
      Parameters:
        Value: !GetAtt Child.Outputs.Value
        Name: /nested-update/reader
Outputs:
  Read:
    Value: !GetAtt Reader.Outputs.Value
"""


def _client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=EMULATOR_ACCESS_KEY, aws_secret_access_key=EMULATOR_SECRET_KEY)


@pytest.fixture
def env(local_emulator, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = _client("s3", local_emulator)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="child.yaml", Body=CHILD.encode())
    return local_emulator


def _nested(cfn, stack: str) -> dict[str, str]:
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


@pytest.mark.e2e
def test_an_update_updates_nested_stacks_in_place(env, tmp_path):
    template = tmp_path / "parent.yaml"
    template.write_text(PARENT)
    cfn, ssm = _client("cloudformation", env), _client("ssm", env)
    first = deploy({}, stack_name="nested-update", region="us-east-1", endpoint_url=env, template_file=template)
    assert first.status == "CREATE_COMPLETE", first
    before = _nested(cfn, "nested-update")
    ids = {name: cfn.describe_stacks(StackName=physical)["Stacks"][0]["StackId"] for name, physical in before.items()}
    stacks_before = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    assert ssm.get_parameter(Name="/nested-update/reader")["Parameter"]["Value"] == "one"

    second = deploy({"Tag": "two"}, stack_name="nested-update", region="us-east-1", endpoint_url=env, template_file=template)
    assert second.status == "UPDATE_COMPLETE", second
    assert _nested(cfn, "nested-update") == before  # the parent's resources keep their physical ids
    for name, physical in before.items():
        (child,) = cfn.describe_stacks(StackName=ids[name])["Stacks"]
        assert child["StackName"] == physical and child["StackStatus"] == "UPDATE_COMPLETE", child
        statuses = [e["ResourceStatus"] for e in cfn.describe_stack_events(StackName=ids[name])["StackEvents"]
                    if e["LogicalResourceId"] == physical]
        assert "UPDATE_IN_PROGRESS" in statuses and "UPDATE_COMPLETE" in statuses, statuses
    assert second.outputs["Read"] == "two"
    stacks_after = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    assert stacks_after == stacks_before  # no new nested stacks
    assert ssm.get_parameter(Name="/nested-update/child")["Parameter"]["Value"] == "two"
    # Changed only through the sibling's output: updated as CloudFormation does.
    assert ssm.get_parameter(Name="/nested-update/reader")["Parameter"]["Value"] == "two"
