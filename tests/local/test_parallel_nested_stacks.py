"""The emulator creates sibling nested stacks at the same time, as CloudFormation does, so a
race between them (issue 13's listener priorities) shows locally."""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from lakehub.local import emulator_server

CHILD = """
Resources:
  Topic:
    Type: AWS::SNS::Topic
"""


def parent(n: int, depends: bool = False) -> str:
    lines = ["Resources:"]
    for i in range(n):
        lines += [
            f"  Child{i}:",
            "    Type: AWS::CloudFormation::Stack",
            "    Properties:",
            "      TemplateURL: https://lakehub-parallel.s3.amazonaws.com/child.yaml",
        ]
        if depends and i:
            lines.append(f"    DependsOn: [Child{i - 1}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def rendezvous(monkeypatch):
    """Every nested stack creation waits for the others: only concurrent creation completes."""
    from moto.cloudformation.models import Stack
    from moto.cloudformation.parsing import ResourceMap

    monkeypatch.setattr(ResourceMap, "create", ResourceMap.create)
    monkeypatch.setattr(ResourceMap, "_lakehub_parallel", False, raising=False)
    original = Stack.create_from_cloudformation_json.__func__
    state = {"barrier": None, "threads": set()}

    def create(cls, *args, **kwargs):
        state["threads"].add(threading.current_thread().name)
        if state["barrier"] is not None:
            state["barrier"].wait()
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Stack, "create_from_cloudformation_json", classmethod(create))
    return state


def parallel_cloudformation():
    """(Inside mock_aws) the emulator's parallel nested stacks installed and the child template
    uploaded where parent() points: a CloudFormation client."""
    emulator_server.install_parallel_nested_stacks()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lakehub-parallel")
    s3.put_object(Bucket="lakehub-parallel", Key="child.yaml", Body=CHILD.encode())
    return boto3.client("cloudformation", region_name="us-east-1")


@mock_aws
def test_sibling_nested_stacks_are_created_concurrently(rendezvous):
    cfn = parallel_cloudformation()
    rendezvous["barrier"] = threading.Barrier(3, timeout=20)  # sequential creation breaks it
    cfn.create_stack(StackName="siblings", TemplateBody=parent(3))
    assert cfn.describe_stacks(StackName="siblings")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert len(rendezvous["threads"]) == 3


@mock_aws
def test_a_nested_stack_waits_for_the_stack_it_depends_on(rendezvous):
    cfn = parallel_cloudformation()
    cfn.create_stack(StackName="chain", TemplateBody=parent(3, depends=True))
    assert cfn.describe_stacks(StackName="chain")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert len(rendezvous["threads"]) == 1  # one after another, in this thread
